//! Remote keys: a provider's JWKS fetched from `jwks_uri` (or found through OIDC
//! discovery), refreshed in the background, and re-fetched early when a token names a
//! key id nobody knows — the identity provider may just have rotated.
//!
//! - The refresh interval honours `Cache-Control: max-age` within configured bounds.
//! - A failed fetch keeps the last good keys; the next try comes sooner (backoff), and
//!   sooner still while no key set was ever loaded (checks answer 503 until then).
//! - Early fetches for unknown kids are budgeted per kid and globally
//!   ([`kid_budget`](super::kid_budget)); concurrent requests share one fetch.
//! - A key set none of whose keys suits the provider's algorithms, or a discovery
//!   document naming another issuer, is a failed fetch: nothing is installed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use tokio::sync::{Mutex, Notify};

use super::fetch::{self, FetchError};
use super::keys::VerifyKey;
use super::kid_budget::{KidBudget, Verdict};
use crate::config::JwksSettings;

/// Longest wait between tries while no key set was ever loaded: until then every token
/// of the provider is answered 503, so the first success should not wait for long.
const FIRST_LOAD_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait between tries once keys are loaded (they keep working meanwhile).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the JWKS lives.
#[derive(Debug, Clone)]
pub enum Source {
    Uri(String),
    /// Discover `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    Discovery {
        issuer: String,
    },
}

impl Source {
    /// For logs: the URL without credentials or query.
    fn describe(&self) -> String {
        match self {
            Source::Uri(u) => fetch::redact(u),
            Source::Discovery { issuer } => fetch::redact(issuer),
        }
    }
}

/// Records fetch outcomes (the metrics, without this module knowing them).
pub type FetchObserver = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// What started a fetch: the background loop re-reads the discovery document, an
/// unknown kid reuses the `jwks_uri` it gave (half the requests for the same answer).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Schedule,
    UnknownKid,
}

pub struct Remote {
    provider: String,
    source: Source,
    settings: JwksSettings,
    algorithms: Vec<Algorithm>,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    loaded: AtomicBool,
    /// Bumped on every successful fetch: lets concurrent unknown-kid callers see that a
    /// fetch happened while they waited.
    generation: AtomicU64,
    /// Serialises fetches and holds the unknown-kid budget.
    fetching: Mutex<KidBudget>,
    /// Why the last fetch failed; cleared by a success.
    last_error: RwLock<Option<FetchError>>,
    /// The `jwks_uri` the last discovery document gave.
    discovered: RwLock<Option<String>>,
    wake: Notify,
    observer: RwLock<Option<FetchObserver>>,
}

impl Remote {
    pub fn new(
        provider: &str,
        source: Source,
        settings: JwksSettings,
        algorithms: Vec<Algorithm>,
    ) -> Self {
        crate::crypto::install_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .user_agent(concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let budget = KidBudget::new(&settings, Instant::now());
        Remote {
            provider: provider.to_string(),
            source,
            settings,
            algorithms,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            loaded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            fetching: Mutex::new(budget),
            last_error: RwLock::new(None),
            discovered: RwLock::new(None),
            wake: Notify::new(),
            observer: RwLock::new(None),
        }
    }

    /// The current remote keys.
    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.read().clone()
    }

    /// Whether a fetch has ever succeeded.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Why the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<FetchError> {
        self.last_error.read().clone()
    }

    pub fn set_observer(&self, observer: FetchObserver) {
        *self.observer.write() = Some(observer);
    }

    /// Fetches once; on success installs the keys and returns the refresh delay the
    /// response asked for (`max-age`), if any. Every failure is logged with its cause.
    async fn fetch(&self, trigger: Trigger) -> Result<Option<u64>, FetchError> {
        use tracing::Instrument as _;
        let span = tracing::debug_span!(
            target: "tokengate_core::trace",
            "jwks.fetch",
            otel.name = "tokengate.jwks.fetch",
            otel.kind = "client",
            tokengate.provider = %self.provider,
        );
        self.fetch_traced(trigger).instrument(span).await
    }

    async fn fetch_traced(&self, trigger: Trigger) -> Result<Option<u64>, FetchError> {
        let result = self.fetch_inner(trigger).await;
        if let Some(observe) = self.observer.read().as_ref() {
            observe(&self.provider, result.is_ok());
        }
        match result {
            Ok((keys, max_age)) => {
                tracing::debug!(provider = %self.provider, keys = keys.len(), "JWKS fetched");
                *self.keys.write() = Arc::new(keys);
                *self.last_error.write() = None;
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.loaded.store(true, Ordering::Release);
                Ok(max_age)
            }
            Err(e) => {
                self.log_failure(&e, trigger);
                *self.last_error.write() = Some(e.clone());
                Err(e)
            }
        }
    }

    fn log_failure(&self, e: &FetchError, trigger: Trigger) {
        let keeping = if self.loaded() {
            "keeping the last keys"
        } else {
            "no keys yet: this provider's tokens are answered 503 keys_unavailable"
        };
        let trigger = match trigger {
            Trigger::Schedule => "schedule",
            Trigger::UnknownKid => "unknown_kid",
        };
        match e {
            FetchError::NoUsableKey {
                algorithms, found, ..
            } => tracing::error!(
                provider = %self.provider,
                source = %self.source.describe(),
                cause = e.cause(),
                algorithms = %algorithms,
                key_families = %found,
                trigger,
                error = %e,
                "JWKS has no key usable with the provider's algorithms; {keeping}"
            ),
            _ => tracing::warn!(
                provider = %self.provider,
                source = %self.source.describe(),
                cause = e.cause(),
                trigger,
                error = %e,
                "JWKS fetch failed; {keeping}"
            ),
        }
    }

    async fn fetch_inner(
        &self,
        trigger: Trigger,
    ) -> Result<(Vec<VerifyKey>, Option<u64>), FetchError> {
        let uri = match &self.source {
            Source::Uri(u) => u.clone(),
            Source::Discovery { issuer } => {
                let known = self.discovered.read().clone();
                match known {
                    Some(uri) if trigger == Trigger::UnknownKid => uri,
                    _ => {
                        let uri = fetch::discover(&self.client, issuer).await?;
                        *self.discovered.write() = Some(uri.clone());
                        uri
                    }
                }
            }
        };
        fetch::jwks(&self.client, &uri, &self.algorithms).await
    }

    /// After a token named an unknown `kid` (`None`: it named none and no key fitted):
    /// fetch now if the budget allows. True when the keys changed meanwhile, by this
    /// fetch or by one this caller waited for (worth verifying again).
    pub async fn refresh_for_unknown_kid(&self, kid: Option<&str>) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let mut budget = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // Someone fetched while this caller waited: share that fetch. Its answer may
            // predate this caller's kid, so nothing is remembered about the kid; if it
            // is still unknown, its next token goes through the budget as usual.
            return true;
        }
        match budget.admit(kid, Instant::now()) {
            Verdict::Fetch => {}
            verdict => {
                tracing::debug!(provider = %self.provider, ?verdict, "unknown kid: no early JWKS fetch");
                return false;
            }
        }
        match self.fetch(Trigger::UnknownKid).await {
            // Absent still? Then the budget remembers it was looked for.
            Ok(_) => true,
            Err(_) => {
                // Nothing was learnt about the kid: it may ask again (global budget
                // permitting) rather than be refused for the whole per-kid interval.
                budget.forget(kid);
                false
            }
        }
    }

    /// The background refresh loop; ends when the provider is dropped (config reload)
    /// or at shutdown.
    pub fn spawn(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let weak: Weak<Remote> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let Some(remote) = weak.upgrade() else { return };
                let wait = {
                    let _serial = remote.fetching.lock().await;
                    match remote.fetch(Trigger::Schedule).await {
                        Ok(max_age) => {
                            backoff = Duration::from_millis(500);
                            let s = &remote.settings;
                            let secs = max_age.unwrap_or(s.refresh_seconds).clamp(
                                s.min_refresh_seconds,
                                s.max_refresh_seconds.max(s.min_refresh_seconds),
                            );
                            Duration::from_secs(secs.max(1))
                        }
                        Err(_) => {
                            let cap = if remote.loaded() {
                                MAX_BACKOFF
                            } else {
                                FIRST_LOAD_MAX_BACKOFF
                            };
                            let wait = backoff
                                .min(Duration::from_secs(remote.settings.refresh_seconds.max(1)));
                            backoff = (backoff * 2).min(cap);
                            wait
                        }
                    }
                };
                let woken = remote.clone();
                drop(remote);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                    _ = woken.wake.notified() => {}
                }
            }
        });
    }

    /// Asks the background loop to fetch now (tests, reload).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_age_is_read_from_cache_control() {
        use super::fetch::max_age;
        assert_eq!(max_age("public, max-age=3600"), Some(3600));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("Max-Age = 60"), Some(60));
    }
}
