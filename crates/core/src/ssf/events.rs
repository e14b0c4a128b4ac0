//! CAEP events and RFC 9493 subject identifiers → revocations. Only what can be mapped
//! without guessing is: a subject of another issuer, an email the provider does not use
//! as its user id, or a format tokengate does not know is refused, never approximated.

use serde_json::{Map, Value};

use super::{object, SetError};
use crate::config::{SubjectAs, Transmitter};

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

/// The CAEP event types the receiver knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    SessionRevoked,
    CredentialChange,
    AssuranceLevelChange,
    TokenClaimsChange,
}

impl EventType {
    fn parse(uri: &str) -> Option<Self> {
        Some(match uri.strip_prefix(CAEP)? {
            "session-revoked" => EventType::SessionRevoked,
            "credential-change" => EventType::CredentialChange,
            "assurance-level-change" => EventType::AssuranceLevelChange,
            "token-claims-change" => EventType::TokenClaimsChange,
            _ => return None,
        })
    }

    /// The audit reason of the revocation it causes.
    pub const fn reason(self) -> &'static str {
        match self {
            EventType::SessionRevoked => "ssf-session-revoked",
            EventType::CredentialChange => "ssf-credential-change",
            EventType::AssuranceLevelChange => "ssf-assurance-level-change",
            EventType::TokenClaimsChange => "ssf-token-claims-change",
        }
    }

    fn applies(self, t: &Transmitter) -> bool {
        match self {
            EventType::SessionRevoked => true,
            EventType::CredentialChange => t.events.credential_change,
            EventType::AssuranceLevelChange => t.events.assurance_level_change,
            // tokengate holds no claims to change: the token stays valid until its exp.
            EventType::TokenClaimsChange => false,
        }
    }
}

/// What one event revokes, with raw (unscoped) ids of the transmitter's provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Every token of the user issued so far.
    User(String),
    /// Every token of one session (their `sid`). A user named beside it must still be
    /// the provider's, but only the session ends.
    Session(String),
}

/// Every applicable event of `payload` with its action; events that do not apply are
/// left out (RFC 8935 lets a receiver ignore them), a subject that cannot be mapped
/// refuses the whole SET.
pub(super) fn actions(
    payload: &Map<String, Value>,
    t: &Transmitter,
    subject_issuer: &str,
) -> Result<Vec<(EventType, Action)>, SetError> {
    let events = object(payload, "events")
        .filter(|e| !e.is_empty())
        .ok_or(SetError::InvalidRequest("the SET has no events object"))?;
    let top = payload.get("sub_id");
    let mut out = Vec::new();
    for (uri, event) in events {
        let event = event
            .as_object()
            .ok_or(SetError::InvalidRequest("an event is not a JSON object"))?;
        let Some(kind) = EventType::parse(uri) else {
            continue;
        };
        if !kind.applies(t) {
            continue;
        }
        // SSF 1.0: `sub_id` beside `events`; CAEP drafts: `subject` inside the event.
        let subject = match (top, event.get("subject")) {
            (Some(a), Some(b)) if a != b => {
                return Err(SetError::InvalidRequest(
                    "sub_id and the event's subject differ",
                ))
            }
            (Some(s), _) | (None, Some(s)) => s,
            (None, None) => return Err(SetError::InvalidRequest("the event has no subject")),
        };
        let subject = subject
            .as_object()
            .ok_or(SetError::InvalidRequest("the subject is not a JSON object"))?;
        let action = match format(subject)? {
            "complex" => complex(subject, t, subject_issuer, kind)?,
            _ => Action::User(user(subject, t, subject_issuer)?),
        };
        out.push((kind, action));
    }
    Ok(out)
}

fn format(subject: &Map<String, Value>) -> Result<&str, SetError> {
    subject
        .get("format")
        .and_then(Value::as_str)
        .ok_or(SetError::InvalidRequest("the subject has no format"))
}

fn member<'a>(subject: &'a Map<String, Value>, name: &str) -> Result<&'a str, SetError> {
    match subject.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(SetError::InvalidRequest(
            "the subject lacks a member its format requires",
        )),
    }
}

/// A simple subject as the provider's user id.
fn user(
    subject: &Map<String, Value>,
    t: &Transmitter,
    subject_issuer: &str,
) -> Result<String, SetError> {
    let (id, mapped) = match format(subject)? {
        "iss_sub" => {
            if member(subject, "iss")? != subject_issuer {
                return Err(SetError::AccessDenied(
                    "the subject belongs to another issuer than the transmitter's provider",
                ));
            }
            (member(subject, "sub")?, SubjectAs::User)
        }
        "opaque" => (member(subject, "id")?, t.subjects.opaque),
        "email" => (member(subject, "email")?, t.subjects.email),
        _ => {
            return Err(SetError::InvalidRequest(
                "unsupported subject format (iss_sub, opaque, email, complex are)",
            ))
        }
    };
    match mapped {
        SubjectAs::User => Ok(id.to_string()),
        SubjectAs::Refuse => Err(SetError::InvalidRequest(
            "this subject format is not mapped to a user for this transmitter",
        )),
    }
}

/// `complex` {user, session}: the session (an `opaque` id: the `sid` of the provider's
/// tokens) for `session-revoked`, else the user. A user present is checked either way.
fn complex(
    subject: &Map<String, Value>,
    t: &Transmitter,
    subject_issuer: &str,
    kind: EventType,
) -> Result<Action, SetError> {
    let user = match object(subject, "user") {
        Some(u) if format(u)? == "complex" => {
            return Err(SetError::InvalidRequest("a complex subject nests another"))
        }
        Some(u) => Some(self::user(u, t, subject_issuer)?),
        None => None,
    };
    let session = match object(subject, "session") {
        Some(s) if format(s)? == "opaque" => Some(member(s, "id")?.to_string()),
        Some(_) => {
            return Err(SetError::InvalidRequest(
                "a session subject must be of format opaque",
            ))
        }
        None => None,
    };
    match (kind, session, user) {
        (EventType::SessionRevoked, Some(session), _) => Ok(Action::Session(session)),
        (_, _, Some(user)) => Ok(Action::User(user)),
        _ => Err(SetError::InvalidRequest(
            "the complex subject names no user",
        )),
    }
}
