//! `GET /v1/revocations/changes` and `GET /v1/revocations/snapshot` on the public HTTP
//! listener (docs/spec.md §4, issue 20): the revocation feed that Envoy's in-proxy fast
//! path long-polls through its `tokengate` cluster. On the public listener because that
//! is the one Envoy already reaches; guarded by a dedicated token
//! (`revocation_feed.token_env`/`token_file`) rather than the admin API's JWT, because
//! a proxy component that runs for months cannot renew an expiring token, and because
//! the admin listener is never routed to from a proxy. The feed lists revoked
//! identifiers (user ids among them), so it is never served without that token.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{deny_response_with, json_body, AppState};
use crate::reason::Reason;
use crate::revocation::feed::{Answer, Feed, Poll};

/// The feed, its caller's token (as a digest) and the longest wait it grants.
pub struct Endpoint {
    pub feed: Arc<Feed>,
    token_sha256: [u8; 32],
    max_wait: Duration,
}

impl Endpoint {
    pub fn new(feed: Arc<Feed>, token: &[u8], max_wait: Duration) -> Endpoint {
        Endpoint {
            feed,
            token_sha256: Sha256::digest(token).into(),
            max_wait,
        }
    }

    /// Whether the request carries the feed's token. Digests are compared, so the time
    /// the comparison takes says nothing about the token.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(v), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(token) = v
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, t)| t)
        else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(token).into();
        got.iter()
            .zip(self.token_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The query: `cursor` (absent: a snapshot) and `wait_ms` (absent or 0: answer at once).
fn query(raw: Option<&str>) -> Result<(Option<String>, u64), &'static str> {
    let mut cursor = None;
    let mut wait = 0;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*k {
            "cursor" if cursor.is_none() => cursor = Some(v.into_owned()),
            "wait_ms" => wait = v.parse().map_err(|_| "wait_ms: must be an integer")?,
            "cursor" => return Err("cursor: given twice"),
            _ => return Err("unknown query parameter"),
        }
    }
    Ok((cursor, wait))
}

pub async fn changes(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(endpoint) = state.feed.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !endpoint.authorized(&headers) {
        return unauthorized(&state);
    }
    let (cursor, wait_ms) = match query(raw.as_deref()) {
        Ok(q) => q,
        Err(message) => return super::admin::bad_request("query", message),
    };
    let wait = Duration::from_millis(wait_ms).min(endpoint.max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match endpoint.feed.poll(cursor.as_deref()) {
            Poll::Ready(answer) => return ok(&answer),
            Poll::NotReady => {
                return deny_response_with(&state.engine.policy(), &Reason::StoreUnavailable.into())
            }
            Poll::Wait(mut changed) => {
                let woke = tokio::time::timeout_at(deadline, changed.changed()).await;
                if !matches!(woke, Ok(Ok(()))) {
                    // The wait is over with nothing new: a heartbeat at the same cursor.
                    let cursor = cursor.as_deref().unwrap_or_default();
                    return ok(&Feed::unchanged(cursor));
                }
            }
        }
    }
}

pub async fn snapshot(state: State<AppState>, headers: HeaderMap) -> Response {
    changes(state, RawQuery(None), headers).await
}

fn ok(answer: &Answer) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        answer.body(),
    )
        .into_response()
}

fn unauthorized(state: &AppState) -> Response {
    let realm = state.engine.policy().responses.realm.clone();
    let body = r#"{"error":"invalid_token","message":"The revocation feed's token is required"}"#;
    let mut r = (StatusCode::UNAUTHORIZED, json_body(body.to_string())).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "Bearer realm=\"{}\", error=\"invalid_token\"",
        realm.replace(['"', '\\'], "")
    )) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}
