//! tokengate: an external-authorization sidecar for Envoy that verifies JWTs and refuses
//! revoked ones. This crate wires configuration → components → listeners; the decision
//! itself lives in [`decision`] and knows nothing of transports.

pub mod grpc;
pub mod http;
pub mod ops;
pub mod reload;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

// The core (crates/core): the decision and everything it needs, no transport. Re-exported
// under the paths the server, the tests and the tools have always used.
pub use tokengate_core::{config, decision, json, jwt, metrics, reason, revocation, secret, ssf};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decision::Engine;
use crate::http::{AppState, Readiness};
use crate::metrics::Metrics;
use crate::revocation::cache::{CacheSettings, CachedStore};
use crate::revocation::memory::MemoryStore;
use crate::revocation::redis::RedisStore;
use crate::revocation::Store;

/// A start-up failure, with the component that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("keys: {0}")]
    Keys(#[from] jwt::KeyError),
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("revocation.{0}")]
    Store(#[from] revocation::redis::ConnectError),
    #[error("{field}: {source}")]
    Secret {
        field: String,
        #[source]
        source: secret::SecretError,
    },
    #[error("{0}: the secret is empty")]
    EmptySecret(String),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

/// The gRPC server stopped with an error (the HTTP listeners only stop on shutdown).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("gRPC listener: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

/// The addresses actually bound (port 0 in the config picks a free port).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// A configured server with its listeners bound, ready to [`run`](Server::run).
pub struct Server {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    config: Config,
    readiness: Arc<Readiness>,
    admin_api: config::AdminApi,
    introspection_clients: Arc<Vec<http::oauth::Client>>,
    ssf: Option<Arc<ssf::Receiver>>,
    grpc: TcpListener,
    http: TcpListener,
    admin: TcpListener,
    tls: tls::Listeners,
    grace: Duration,
    /// The revocation feed and the signals it follows (subscribed at bind, before any
    /// write), when `revocation_feed.enabled`.
    feed: Option<(
        Arc<http::feed::Endpoint>,
        tokio::sync::broadcast::Receiver<revocation::events::Signal>,
    )>,
}

impl Server {
    /// Loads keys, builds the store and binds the three listeners.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let verifier = jwt::Verifier::from_config(config)?;
        for name in verifier.development_providers() {
            tracing::warn!(
                provider = name,
                "provider uses the shipped DEVELOPMENT key: anyone can mint tokens it accepts; never use it in production"
            );
        }
        let providers: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        let metrics = Arc::new(Metrics::new(&providers)?);
        if config.tracing.enabled {
            telemetry::register_metrics(metrics.registry())?;
        }
        let store = build_store(config, metrics.clone())?;
        let policy = decision::Policy::new(config, Arc::new(verifier));
        let engine = Arc::new(Engine::new(policy, store, metrics.clone()));
        let readiness = Arc::new(Readiness::default());
        let feed = feed_endpoint(config, &engine)?;
        let tls = tls::Listeners::load(&config.tls, &metrics)?;
        let bind = |listener: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    listener,
                    addr,
                    source,
                })
        };
        Ok(Server {
            engine,
            metrics,
            config: config.clone(),
            readiness,
            admin_api: config.admin_api.clone(),
            introspection_clients: Arc::new(load_clients(&config.oauth)?),
            ssf: ssf::Receiver::from_config(config)?,
            grpc: bind("grpc", config.listen.grpc).await?,
            http: bind("http", config.listen.http).await?,
            admin: bind("admin", config.listen.admin).await?,
            tls,
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
            feed,
        })
    }

    pub fn addrs(&self) -> Addrs {
        let addr = |l: &TcpListener| l.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        Addrs {
            grpc: addr(&self.grpc),
            http: addr(&self.http),
            admin: addr(&self.admin),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests (bounded by
    /// the grace period) and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let addrs = self.addrs();
        reload::start_keys(&self.engine.policy().verifier, &self.metrics, &shutdown);
        if let Some(receiver) = &self.ssf {
            let m = self.metrics.clone();
            receiver.start(
                &shutdown,
                Arc::new(move |provider, ok| m.jwks_refresh(provider, ok)),
            );
        }
        if let Some(path) = self.config.source.clone() {
            reload::watch(
                path,
                self.config.clone(),
                self.engine.clone(),
                self.metrics.clone(),
                shutdown.clone(),
            );
        }
        self.tls.watch(
            Duration::from_secs(self.config.tls.reload_interval_seconds),
            shutdown.clone(),
        );
        let feed = self.feed.map(|(endpoint, signals)| {
            tokio::spawn(revocation::feed::run(
                endpoint.feed.clone(),
                StoreOf(self.engine.clone()),
                signals,
                shutdown.clone(),
            ));
            endpoint
        });
        let state = AppState {
            engine: self.engine.clone(),
            readiness: self.readiness.clone(),
            admin_scope: self.admin_api.scope.clone(),
            admin_providers: Arc::new(self.admin_api.providers.clone()),
            admin_enabled: self.admin_api.enabled,
            introspection_clients: self.introspection_clients.clone(),
            ssf: self.ssf.clone(),
            feed,
        };

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let (readiness, engine) = (self.readiness.clone(), self.engine.clone());
        http::grpc_health::follow(health_reporter, readiness, engine, shutdown.clone()).await;
        let authz = grpc::AuthzService::new(self.engine.clone());
        let grpc_shutdown = shutdown.clone();
        let grpc_limits = &self.config.server.grpc_limits;
        let grpc = serve::grpc_server(grpc_limits)
            .add_service(health_service)
            .add_service(authz)
            .serve_with_incoming_shutdown(
                // capped, with a handshake deadline, TCP_NODELAY set
                serve::GrpcIncoming::new(self.grpc, grpc_limits, self.tls.grpc.clone()),
                async move { grpc_shutdown.cancelled().await },
            );

        let http_limits = &self.config.server.http_limits;
        let http = serve::http(
            self.http,
            http::public_router(state.clone()),
            http_limits,
            "http",
            self.tls.http.clone(),
            shutdown.clone(),
        );
        let admin = serve::http(
            self.admin,
            http::admin_router(state),
            http_limits,
            "admin",
            self.tls.admin.clone(),
            shutdown.clone(),
        );

        let scheme =
            |t: &Option<Arc<tls::ListenerTls>>| if t.is_some() { "tls" } else { "plaintext" };
        tracing::info!(
            grpc = %addrs.grpc, http = %addrs.http, admin = %addrs.admin,
            grpc_transport = scheme(&self.tls.grpc), http_transport = scheme(&self.tls.http),
            admin_transport = scheme(&self.tls.admin),
            "tokengate listening"
        );

        let readiness = self.readiness.clone();
        let grace = self.grace;
        let drained = async {
            let (g, (), ()) = tokio::join!(grpc, http, admin);
            g.map_err(RunError::Grpc)
        };
        tokio::pin!(drained);
        tokio::select! {
            r = &mut drained => return r,
            _ = shutdown.cancelled() => readiness.set_shutting_down(),
        }
        match tokio::time::timeout(grace, drained).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    grace_seconds = grace.as_secs(),
                    "in-flight requests did not finish within the grace period"
                );
                Ok(())
            }
        }
    }
}

/// Reads the introspection clients' secrets (env var or file).
fn load_clients(oauth: &config::OAuth) -> Result<Vec<http::oauth::Client>, StartError> {
    oauth
        .introspection_clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let field = format!("oauth.introspection_clients[{i}]");
            let secret = c.secret.read().map_err(|source| StartError::Secret {
                field: format!("{field}.{}", c.secret.field("secret")),
                source,
            })?;
            if secret.is_empty() {
                return Err(StartError::EmptySecret(field));
            }
            Ok(http::oauth::Client {
                id: c.id.clone(),
                secret,
            })
        })
        .collect()
}

/// The configured store with the local cache in front. Never waits for a network store:
/// it connects in the background and readiness reports progress.
/// The engine's store, for the feed's task.
struct StoreOf(Arc<Engine>);

impl std::ops::Deref for StoreOf {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.0.store().inner()
    }
}

type FeedParts = (
    Arc<http::feed::Endpoint>,
    tokio::sync::broadcast::Receiver<revocation::events::Signal>,
);

/// The revocation feed (issue 20) when enabled: its token read now, so that a missing
/// secret stops start-up, and the store's signals subscribed before anything is written.
fn feed_endpoint(config: &Config, engine: &Arc<Engine>) -> Result<Option<FeedParts>, StartError> {
    use crate::revocation::RevocationStore;
    let f = &config.revocation_feed;
    let (true, Some(secret)) = (f.enabled, &f.token) else {
        return Ok(None);
    };
    let field = format!("revocation_feed.{}", secret.field("token"));
    let token = secret.read().map_err(|source| StartError::Secret {
        field: field.clone(),
        source,
    })?;
    if token.is_empty() {
        return Err(StartError::EmptySecret(field));
    }
    let signals = engine.store().inner().signals();
    let r = &config.revocation;
    let feed = Arc::new(revocation::feed::Feed::new(
        f.log_entries,
        Duration::from_secs(r.family_ttl_seconds),
        Duration::from_secs(r.session_ttl_seconds),
    ));
    let endpoint = http::feed::Endpoint::new(feed, &token, Duration::from_millis(f.max_wait_ms));
    Ok(Some((Arc::new(endpoint), signals)))
}

pub fn build_store(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<CachedStore<Store>, StartError> {
    let r = &config.revocation;
    let family_ttl = Duration::from_secs(r.family_ttl_seconds);
    let store = match &r.store {
        config::Store::Memory => Store::Memory(
            MemoryStore::new(family_ttl, r.subject_ttl_seconds.map(Duration::from_secs))
                .with_session_ttl(Duration::from_secs(r.session_ttl_seconds)),
        ),
        config::Store::Redis(redis) => Store::Redis(RedisStore::connect(redis, r)?),
    };
    let settings = CacheSettings {
        ttl: Duration::from_secs(r.cache.ttl_seconds),
        max_entries: r.cache.max_entries,
        family_ttl,
        deadline: Duration::from_millis(r.store_timeout_ms),
    };
    Ok(CachedStore::new(store, settings, metrics))
}

/// The tracing filter the configuration asks for. A bare level applies to tokengate's
/// own events; libraries stay at warn, so that `level: trace` cannot make an HTTP/2
/// library print request headers (tokens). Audit events are records, not chatter: they
/// stay on whatever the level. A full filter directive is taken as the operator wrote it.
pub fn log_directives(config: &config::Log) -> String {
    match config.level.as_str() {
        l @ ("trace" | "debug" | "info" | "warn" | "error" | "off") => {
            format!("warn,tokengate={l},tokengate_core={l},audit=info")
        }
        custom => format!("{custom},audit=info"),
    }
}

/// Sets up logging from the configuration (`RUST_LOG` overrides the level), and with
/// `telemetry` the OpenTelemetry layer beside it. The server logs to stdout; one-shot
/// commands log to stderr so that stdout carries only their result.
///
/// Each layer has its own filter: the log's level (events and spans as configured), and
/// for traces tokengate's own spans only (DEBUG-level callsites under the targets
/// `tokengate::trace` and `tokengate_core::trace`), so that a quiet log level does not
/// silence traces and tracing does not turn on debug logging.
pub fn init_logging(
    config: &config::Log,
    to_stderr: bool,
    telemetry: Option<&telemetry::Telemetry>,
) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let directives = log_directives(config);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let (writer, terminal) = if to_stderr {
        (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )
    } else {
        (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )
    };
    // Colour codes only for a person at a terminal, never into a log collector.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(terminal);
    let log: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = match config.format {
        config::LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        config::LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    // A `Targets` filter, not a closure: it gives each callsite its interest once, so
    // the hot callsites of other crates (h2, hyper, tonic) are never asked again at
    // run time. Only spans are created under these targets.
    let traces = telemetry.map(|t| {
        t.layer().with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("tokengate::trace", tracing::Level::DEBUG)
                .with_target("tokengate_core::trace", tracing::Level::DEBUG),
        )
    });
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init();
}
