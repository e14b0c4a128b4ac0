//! Token Status List consumer (draft-ietf-oauth-status-list-20): a verified token that
//! carries `status.status_list {idx, uri}` is allowed only while the list at `uri` says
//! VALID at `idx`.
//!
//! Why each rule:
//! - Only hosts the provider allows are fetched: the `uri` is chosen by whoever minted
//!   the token, and tokengate must not become a request forwarder into the mesh (SSRF).
//!   For the same reason a redirect (which the draft says clients SHOULD follow) is
//!   followed only to an allowed host, at most [`MAX_REDIRECTS`] times.
//! - The list must be signed by the token's own provider (same keys, algorithms and
//!   `iss`) with `typ: statuslist+jwt` and `sub` equal to the `uri`: otherwise a list
//!   meant for other tokens, or an access token replayed as a list, could say VALID.
//! - The list is cached per `uri` for its `ttl` (bounded by `exp` and by the configured
//!   `min_ttl_seconds`/`max_ttl_seconds`), in this replica only: a list is public data,
//!   so nothing is gained by sharing it through the store, and the store stays the one
//!   place for tokengate's own revocations. Concurrent misses wait for one fetch.
//! - A list that cannot be fetched or verified is an outage, judged like a store outage
//!   (`on_store_error`); a failure is never cached as an answer, only shared with the
//!   requests that waited for that same fetch.
//! - Sizes are bounded before allocation: the fetched body by `max_bytes`, and the
//!   inflated list by `max_bytes` again while it is inflated (a zlib bomb).

mod list;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use list::{DecodeError, StatusList};

use crate::config::StatusListSettings;
use crate::jwt::{fetch, now_unix, Claims, Provider};
use crate::metrics::Metrics;
use crate::reason::Reason;

/// Status Type values (the draft's "Status Types").
pub const VALID: u8 = 0x00;
pub const INVALID: u8 = 0x01;
pub const SUSPENDED: u8 = 0x02;

/// How many lists one provider keeps at once. Lists come only from allowed hosts and
/// are signed by the provider, so this bounds a misbehaving issuer, not an attacker.
const MAX_LISTS: usize = 64;

/// Redirects followed for one fetch (each to an allowed host).
pub const MAX_REDIRECTS: usize = 3;

/// What the status step concluded about one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No status to check, or VALID.
    Valid,
    /// Refused for good: INVALID, SUSPENDED, or a status that cannot be read.
    Deny(Reason),
    /// The list could not be fetched or verified: an outage (`status_list_unavailable`
    /// unless `on_store_error: allow`).
    Unavailable,
}

/// The result label of `tokengate_status_list_fetches_total`.
pub const FETCH_RESULTS: [&str; 4] = ["ok", "unreachable", "invalid", "too_large"];

/// One provider's lists: settings, HTTP client, and the per-`uri` cache.
pub struct Lists {
    provider: String,
    settings: StatusListSettings,
    client: reqwest::Client,
    slots: parking_lot::Mutex<HashMap<String, Arc<Slot>>>,
}

/// One `uri`: its list while fresh, and when its last fetch failed. The async mutex
/// is the single flight: whoever holds it fetches, the others wait and reuse.
#[derive(Default)]
struct Slot {
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    list: Option<(Arc<StatusList>, Instant)>,
    failed_at: Option<Instant>,
}

/// Why a fetched list was not used.
enum Failure {
    Unreachable(fetch::FetchError),
    Invalid(&'static str),
    TooLarge,
}

impl Failure {
    fn result(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "unreachable",
            Failure::Invalid(_) => "invalid",
            Failure::TooLarge => "too_large",
        }
    }
}

impl Lists {
    pub fn new(provider: &str, settings: StatusListSettings) -> Self {
        crate::crypto::install_provider();
        let timeout = Duration::from_millis(settings.fetch_timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(redirects(settings.allowed_hosts.clone()))
            .user_agent(concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Lists {
            provider: provider.to_string(),
            settings,
            client,
            slots: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The status step for one verified token of `provider`.
    pub async fn check(&self, provider: &Provider, claims: &Claims, metrics: &Metrics) -> Outcome {
        let (idx, uri) = match reference(&claims.payload) {
            Ok(None) => return Outcome::Valid,
            Ok(Some(r)) => r,
            Err(()) => return Outcome::Deny(Reason::TokenStatusUnknown),
        };
        if !self.allowed(uri) {
            tracing::debug!(provider = %self.provider, uri = %fetch::redact(uri), "status list host not allowed");
            return Outcome::Deny(Reason::TokenStatusUnknown);
        }
        let Some(list) = self.list(provider, uri, metrics).await else {
            return Outcome::Unavailable;
        };
        match list.get(idx) {
            Some(VALID) => Outcome::Valid,
            Some(INVALID) => Outcome::Deny(Reason::TokenStatusInvalid),
            Some(SUSPENDED) => Outcome::Deny(Reason::TokenStatusSuspended),
            // 0x03 and 0x0C-0x0F are application-specific: tokengate knows no
            // application, so such a token is not known to be valid.
            Some(_) | None => Outcome::Deny(Reason::TokenStatusUnknown),
        }
    }

    /// Whether `uri` is an http(s) URL without credentials on an allowed host.
    fn allowed(&self, uri: &str) -> bool {
        reqwest::Url::parse(uri).is_ok_and(|url| allowed_url(&self.settings.allowed_hosts, &url))
    }

    /// The fresh list at `uri`, fetched if needed; `None` when it cannot be had.
    async fn list(
        &self,
        provider: &Provider,
        uri: &str,
        metrics: &Metrics,
    ) -> Option<Arc<StatusList>> {
        let slot = self.slot(uri);
        let arrived = Instant::now();
        let mut state = slot.state.lock().await;
        if let Some((list, until)) = &state.list {
            if Instant::now() < *until {
                return Some(list.clone());
            }
        }
        if state.failed_at.is_some_and(|t| t >= arrived) {
            // The fetch this request waited for failed: share its answer.
            return None;
        }
        let fetched = self.fetch(provider, uri).await;
        match fetched {
            Ok((list, lifetime)) => {
                metrics.status_list_fetch(&self.provider, "ok");
                let list = Arc::new(list);
                // The configuration caps max_ttl_seconds, so this always adds up.
                let now = Instant::now();
                state.list = Some((list.clone(), now.checked_add(lifetime).unwrap_or(now)));
                state.failed_at = None;
                Some(list)
            }
            Err(failure) => {
                metrics.status_list_fetch(&self.provider, failure.result());
                let why = match &failure {
                    Failure::Unreachable(e) => e.to_string(),
                    Failure::Invalid(why) => (*why).to_string(),
                    Failure::TooLarge => "larger than max_bytes".to_string(),
                };
                tracing::warn!(
                    provider = %self.provider,
                    uri = %fetch::redact(uri),
                    result = failure.result(),
                    error = %why,
                    "status list unavailable"
                );
                state.list = None;
                state.failed_at = Some(Instant::now());
                None
            }
        }
    }

    fn slot(&self, uri: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        if let Some(s) = slots.get(uri) {
            return s.clone();
        }
        if slots.len() >= MAX_LISTS {
            // Forget slots nobody is using (in-flight fetches keep theirs alive).
            slots.retain(|_, s| Arc::strong_count(s) > 1);
            if slots.len() >= MAX_LISTS {
                slots.clear();
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(uri.to_string(), slot.clone());
        slot
    }

    /// One fetch and verification; the list and how long it may be used.
    async fn fetch(
        &self,
        provider: &Provider,
        uri: &str,
    ) -> Result<(StatusList, Duration), Failure> {
        let max = self.settings.max_bytes;
        let body = fetch::get_limited(&self.client, uri, "application/statuslist+jwt", max)
            .await
            .map_err(Failure::Unreachable)?
            .ok_or(Failure::TooLarge)?;
        let token = std::str::from_utf8(&body).map_err(|_| Failure::Invalid("not text"))?;
        let now = now_unix();
        let payload = provider
            .verify_status_list(token, now)
            .await
            .map_err(Failure::Invalid)?;
        if payload.get("sub").and_then(Value::as_str) != Some(uri) {
            return Err(Failure::Invalid("sub is not the referenced uri"));
        }
        let status_list = payload
            .get("status_list")
            .and_then(Value::as_object)
            .ok_or(Failure::Invalid("no status_list"))?;
        let bits = status_list
            .get("bits")
            .and_then(Value::as_u64)
            .ok_or(Failure::Invalid("status_list.bits is not a number"))?;
        let lst = status_list
            .get("lst")
            .and_then(Value::as_str)
            .ok_or(Failure::Invalid("status_list.lst is not a string"))?;
        let list = StatusList::decode(bits, lst, max).map_err(|e| match e {
            DecodeError::Bits => Failure::Invalid("status_list.bits is not 1, 2, 4 or 8"),
            DecodeError::Encoding => Failure::Invalid("status_list.lst is not base64url zlib"),
            DecodeError::TooLarge => Failure::TooLarge,
        })?;
        // `ttl` is "a positive number" (fractions round up); `exp` was checked to be a
        // NumericDate by the verification.
        let ttl = match payload.get("ttl") {
            None => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|n| n.is_finite() && *n > 0.0)
                    .map(|n| n.ceil().min(u64::MAX as f64) as u64)
                    .ok_or(Failure::Invalid("ttl is not a positive number"))?,
            ),
        };
        let exp = payload
            .get("exp")
            .and_then(Value::as_f64)
            .map(|n| n.floor() as i64);
        Ok((list, self.lifetime(ttl, exp, now)))
    }

    /// How long a list fetched at `now` is used: its `ttl` (or `min_ttl_seconds`
    /// without one) within the configured bounds, and never past its `exp`.
    fn lifetime(&self, ttl: Option<u64>, exp: Option<i64>, now: i64) -> Duration {
        let s = &self.settings;
        let mut secs = ttl
            .unwrap_or(s.min_ttl_seconds)
            .clamp(s.min_ttl_seconds, s.max_ttl_seconds);
        if let Some(exp) = exp {
            secs = secs.min(u64::try_from(exp.saturating_sub(now)).unwrap_or(0));
        }
        Duration::from_secs(secs)
    }
}

/// Whether `url` is http(s), without credentials, on one of `hosts` (`host` for any
/// port, `host:port` for one).
fn allowed_url(hosts: &[String], url: &reqwest::Url) -> bool {
    if !matches!(url.scheme(), "https" | "http")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let with_port = format!("{host}:{port}");
    hosts.iter().any(|h| *h == host || *h == with_port)
}

/// Follows a redirect only to an allowed host and only [`MAX_REDIRECTS`] times; any
/// other redirect ends the fetch with the 3xx answer (a failed fetch).
fn redirects(hosts: Vec<String>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS || !allowed_url(&hosts, attempt.url()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// The token's `status.status_list` reference: `Ok(None)` without one (or with only
/// other status mechanisms), `Err` when it is there but unreadable.
fn reference(payload: &serde_json::Map<String, Value>) -> Result<Option<(u64, &str)>, ()> {
    let Some(status) = payload.get("status") else {
        return Ok(None);
    };
    let Some(status) = status.as_object() else {
        return Err(());
    };
    let Some(entry) = status.get("status_list") else {
        return Ok(None);
    };
    let idx = entry.get("idx").and_then(Value::as_u64).ok_or(())?;
    let uri = entry.get("uri").and_then(Value::as_str).ok_or(())?;
    Ok(Some((idx, uri)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lists(hosts: &[&str], min: u64, max: u64) -> Lists {
        Lists::new(
            "p",
            StatusListSettings {
                allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
                min_ttl_seconds: min,
                max_ttl_seconds: max,
                fetch_timeout_ms: 100,
                max_bytes: 1024,
            },
        )
    }

    #[test]
    fn only_allowed_hosts_and_plain_urls_pass() {
        let l = lists(&["lists.test", "127.0.0.1:8443"], 1, 10);
        assert!(l.allowed("https://lists.test/1"));
        assert!(
            l.allowed("https://LISTS.test:9999/1"),
            "host alone: any port"
        );
        assert!(l.allowed("http://127.0.0.1:8443/x"));
        for bad in [
            "https://127.0.0.1:8444/x",
            "https://evil.test/1",
            "https://lists.test.evil.test/1",
            "https://user:pw@lists.test/1",
            "ftp://lists.test/1",
            "file:///etc/passwd",
            "lists.test/1",
            "",
        ] {
            assert!(!l.allowed(bad), "{bad}");
        }
    }

    #[test]
    fn lifetime_is_ttl_within_bounds_and_never_past_exp() {
        let l = lists(&["h"], 5, 100);
        let now = 1_000;
        assert_eq!(l.lifetime(Some(50), None, now), Duration::from_secs(50));
        assert_eq!(l.lifetime(Some(1), None, now), Duration::from_secs(5));
        assert_eq!(
            l.lifetime(Some(10_000), None, now),
            Duration::from_secs(100)
        );
        assert_eq!(l.lifetime(None, None, now), Duration::from_secs(5));
        assert_eq!(
            l.lifetime(Some(50), Some(now + 20), now),
            Duration::from_secs(20)
        );
        assert_eq!(l.lifetime(Some(50), Some(now - 1), now), Duration::ZERO);
    }

    #[test]
    fn references_are_read_or_refused() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(reference(&m(json!({}))), Ok(None));
        assert_eq!(reference(&m(json!({"status": {"other": 1}}))), Ok(None));
        let p = m(json!({"status": {"status_list": {"idx": 7, "uri": "https://h/1"}}}));
        assert_eq!(reference(&p), Ok(Some((7, "https://h/1"))));
        for bad in [
            json!({"status": "x"}),
            json!({"status": {"status_list": {"idx": -1, "uri": "https://h/1"}}}),
            json!({"status": {"status_list": {"idx": 1.5, "uri": "https://h/1"}}}),
            json!({"status": {"status_list": {"idx": "1", "uri": "https://h/1"}}}),
            json!({"status": {"status_list": {"idx": 1}}}),
            json!({"status": {"status_list": "https://h/1"}}),
        ] {
            assert_eq!(reference(&m(bad.clone())), Err(()), "{bad}");
        }
    }
}
