//! Live reload (issue: providers, rules and forwarding change without a restart): on
//! SIGHUP, and when the configuration file's content changes, the file is read and
//! validated again and a new policy is swapped in whole. Requests in flight finish with
//! the policy they started with. An invalid file — or providers whose JWKS cannot be
//! fetched in time — is refused and logged, and the old policy keeps serving.
//!
//! Listener addresses, the revocation store and the `ssf` receiver are not reloaded (they
//! need a restart);
//! a change there is logged and otherwise ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decision::{Engine, Policy};
use crate::jwt::Verifier;
use crate::metrics::Metrics;

/// How long new remote keys may take to load before a reload is refused.
const KEYS_DEADLINE: Duration = Duration::from_secs(5);

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// Starts the verifier's JWKS refreshers with the metrics as their observer.
pub fn start_keys(verifier: &Verifier, metrics: &Arc<Metrics>, shutdown: &CancellationToken) {
    let m = metrics.clone();
    verifier.start(
        shutdown,
        Arc::new(move |provider, ok| m.jwks_refresh(provider, ok)),
    );
}

/// Why a reload was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("keys: {0}")]
    Keys(#[from] crate::jwt::KeyError),
    #[error("keys did not load within {deadline:?}: {problems}")]
    KeysLate {
        deadline: Duration,
        problems: String,
    },
}

/// Reads, parses and applies the file. Errors leave the engine untouched.
pub async fn reload(
    path: &Path,
    running: &Config,
    engine: &Engine,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Config, ReloadError> {
    let config = Config::load(path)?;
    let verifier = Arc::new(Verifier::from_config(&config)?);
    start_keys(&verifier, metrics, shutdown);
    let deadline = tokio::time::Instant::now() + KEYS_DEADLINE;
    while !verifier.ready() {
        if tokio::time::Instant::now() >= deadline {
            let why: Vec<String> = verifier
                .key_problems()
                .into_iter()
                .map(|(name, why)| format!("{name}: {why}"))
                .collect();
            return Err(ReloadError::KeysLate {
                deadline: KEYS_DEADLINE,
                problems: why.join("; "),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if format!("{:?}", config.listen) != format!("{:?}", running.listen)
        || format!("{:?}", config.revocation) != format!("{:?}", running.revocation)
        || format!("{:?}", config.ssf) != format!("{:?}", running.ssf)
    {
        tracing::warn!(
            "listen, revocation or ssf settings changed: they take effect at the next restart"
        );
    }
    engine.replace_policy(Policy::new(&config, verifier));
    Ok(config)
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// Reloads on SIGHUP and when the file's content changes, until `shutdown`.
pub fn watch(
    path: PathBuf,
    mut running: Config,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut seen = digest(&path);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hangup => "SIGHUP",
                _ = tokio::time::sleep(POLL) => {
                    let now = digest(&path);
                    if now == seen || now.is_none() {
                        continue;
                    }
                    "file changed"
                }
            };
            seen = digest(&path);
            let result = reload(&path, &running, &engine, &metrics, &shutdown).await;
            metrics.reload(result.is_ok());
            match result {
                Ok(config) => {
                    tracing::info!(file = %path.display(), trigger = why, "configuration reloaded");
                    running = config;
                }
                Err(e) => tracing::error!(
                    file = %path.display(),
                    trigger = why,
                    error = %e,
                    "configuration NOT reloaded; the previous one stays in force"
                ),
            }
        }
    });
}
