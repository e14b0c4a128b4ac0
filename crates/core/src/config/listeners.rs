//! `listen`, `server` and `log`: where tokengate listens, what each listener tolerates
//! from its clients, and how it logs.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            grpc: SocketAddr::from(([0, 0, 0, 0], 9001)),
            http: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// On SIGTERM, how long in-flight requests may take before the process exits anyway.
    pub shutdown_grace_seconds: u64,
    pub http_limits: HttpLimits,
    pub grpc_limits: GrpcLimits,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            shutdown_grace_seconds: 20,
            http_limits: HttpLimits::default(),
            grpc_limits: GrpcLimits::default(),
        }
    }
}

/// How long a client of an HTTP listener (public and admin, each counted on its own) may
/// hold a connection without finishing a request, and how many it may hold at once. A
/// client that opens connections and sends half a request costs the attacker nothing and
/// would otherwise keep a slot for ever (issue 13); the timeouts bound how long each slot
/// is held and the cap bounds how many there are. Every timeout is 1 s ..= 1 day, every
/// count at least 1.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A request head must be complete this long after the connection opened, or (on a
    /// kept-alive connection) after its first byte arrived (nginx `client_header_timeout`).
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub header_timeout_seconds: u64,
    /// Longest wait between two reads of a request body (nginx `client_body_timeout`).
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub body_timeout_seconds: u64,
    /// From a complete request head to the response: bounds a body trickled one byte at a
    /// time, each within `body_timeout_seconds`.
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// How long a connection with no request in flight waits for the next one (nginx
    /// `keepalive_timeout`).
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub idle_timeout_seconds: u64,
    /// Open connections per listener; further connections are accepted and closed at once.
    #[serde(deserialize_with = "super::connections")]
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout_seconds: 60,
            body_timeout_seconds: 60,
            request_timeout_seconds: 120,
            idle_timeout_seconds: 75,
            max_connections: 1024,
        }
    }
}

/// The gRPC listener's limits. Envoy keeps long-lived HTTP/2 connections to ext_authz and
/// multiplexes every check over them, so nothing here closes a connection that answers
/// pings; unresponsive peers are found by HTTP/2 PING, and silent sockets by the
/// handshake timeout.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcLimits {
    /// A new connection must send the HTTP/2 preface and its first frame within this.
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub handshake_timeout_seconds: u64,
    /// An HTTP/2 PING is sent when the connection has been quiet this long ...
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub keepalive_interval_seconds: u64,
    /// ... and the connection is closed when its answer takes longer than this.
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub keepalive_timeout_seconds: u64,
    /// Longest time one call may take (a shorter `grpc-timeout` from the client wins).
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Concurrent calls per connection (SETTINGS_MAX_CONCURRENT_STREAMS); Envoy opens
    /// another connection when it needs more.
    #[serde(deserialize_with = "super::positive_u32")]
    pub max_concurrent_streams: u32,
    /// Streams a client may open and reset before they are answered, before the
    /// connection is closed with GOAWAY (HTTP/2 rapid reset, CVE-2023-44487).
    #[serde(deserialize_with = "super::positive_usize")]
    pub max_pending_accept_reset_streams: usize,
    /// When set, a connection gets GOAWAY this long after it opened (its calls finish,
    /// each within `request_timeout_seconds`). Off by default: it would recycle Envoy's
    /// healthy connections.
    #[serde(deserialize_with = "super::optional_timeout_seconds")]
    pub max_connection_age_seconds: Option<u64>,
    /// Open connections; further connections are accepted and closed at once.
    #[serde(deserialize_with = "super::connections")]
    pub max_connections: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            handshake_timeout_seconds: 10,
            keepalive_interval_seconds: 60,
            keepalive_timeout_seconds: 20,
            request_timeout_seconds: 120,
            max_concurrent_streams: 1024,
            max_pending_accept_reset_streams: 20,
            max_connection_age_seconds: None,
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}
