//! Remote keys: a provider's JWKS fetched from `jwks_uri` (or found through OIDC
//! discovery), refreshed in the background, and re-fetched early when a token names a
//! key id nobody knows — the identity provider may just have rotated.
//!
//! - The refresh interval honours `Cache-Control: max-age` within configured bounds.
//! - A failed fetch keeps the last good keys; the next try comes sooner (backoff).
//! - Early fetches for unknown kids are rate-limited (one per
//!   `unknown_kid_min_interval_seconds`), so a flood of garbage kids costs the identity
//!   provider at most that many requests; concurrent requests share one fetch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};

use super::keys::{parse_jwks, VerifyKey};
use crate::config::JwksSettings;

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
    fn describe(&self) -> &str {
        match self {
            Source::Uri(u) => u,
            Source::Discovery { issuer } => issuer,
        }
    }
}

/// Records fetch outcomes (the metrics, without this module knowing them).
pub type FetchObserver = Arc<dyn Fn(&str, bool) + Send + Sync>;

pub struct Remote {
    provider: String,
    source: Source,
    settings: JwksSettings,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    loaded: AtomicBool,
    /// Bumped on every successful fetch: lets concurrent unknown-kid callers see that a
    /// fetch happened while they waited.
    generation: AtomicU64,
    /// Serialises fetches and remembers when the last unknown-kid fetch happened.
    fetching: Mutex<Option<Instant>>,
    wake: Notify,
    observer: RwLock<Option<FetchObserver>>,
}

impl Remote {
    pub fn new(provider: &str, source: Source, settings: JwksSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .user_agent(concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Remote {
            provider: provider.to_string(),
            source,
            settings,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            loaded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            fetching: Mutex::new(None),
            wake: Notify::new(),
            observer: RwLock::new(None),
        }
    }

    /// The current remote keys.
    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a fetch has ever succeeded.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn set_observer(&self, observer: FetchObserver) {
        *self.observer.write().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    /// Fetches once; on success installs the keys and returns the refresh delay the
    /// response asked for (`max-age`), if any.
    async fn fetch(&self) -> Result<Option<u64>, String> {
        let result = self.fetch_inner().await;
        if let Some(observe) = self
            .observer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            observe(&self.provider, result.is_ok());
        }
        let (keys, max_age) = result?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.loaded.store(true, Ordering::Release);
        Ok(max_age)
    }

    async fn fetch_inner(&self) -> Result<(Vec<VerifyKey>, Option<u64>), String> {
        let uri = match &self.source {
            Source::Uri(u) => u.clone(),
            Source::Discovery { issuer } => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let (body, _) = self.get(&url).await?;
                let doc: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
                doc.get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("{url}: no jwks_uri"))?
                    .to_string()
            }
        };
        let (body, max_age) = self.get(&uri).await?;
        let keys = parse_jwks(&body).map_err(|e| format!("{uri}: {e}"))?;
        Ok((keys, max_age))
    }

    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<u64>), String> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        Ok((body.to_vec(), max_age))
    }

    /// After a token named an unknown `kid`: fetch now unless one was done for that
    /// reason within the rate limit. True when the keys changed (worth verifying again).
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let mut last = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // Someone fetched while this caller waited.
            return true;
        }
        let interval = Duration::from_secs(self.settings.unknown_kid_min_interval_seconds);
        if last.is_some_and(|t| t.elapsed() < interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e, "JWKS fetch after an unknown kid failed; keeping the last keys");
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
                    match remote.fetch().await {
                        Ok(max_age) => {
                            backoff = Duration::from_millis(500);
                            let s = &remote.settings;
                            let secs = max_age.unwrap_or(s.refresh_seconds).clamp(
                                s.min_refresh_seconds,
                                s.max_refresh_seconds.max(s.min_refresh_seconds),
                            );
                            Duration::from_secs(secs.max(1))
                        }
                        Err(e) => {
                            tracing::warn!(provider = %remote.provider, source = %remote.source.describe(), error = %e, "JWKS fetch failed; keeping the last keys");
                            let wait = backoff
                                .min(Duration::from_secs(remote.settings.refresh_seconds.max(1)));
                            backoff = (backoff * 2).min(Duration::from_secs(30));
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

/// `max-age` of a Cache-Control value.
fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(super::max_age("public, max-age=3600"), Some(3600));
        assert_eq!(super::max_age("no-cache"), None);
        assert_eq!(super::max_age("Max-Age = 60"), Some(60));
    }
}
