//! Typed, validated configuration (SPEC §6).
//!
//! The YAML file is parsed once at start into these structs; the running code never sees
//! raw strings. Unknown fields are an error (`deny_unknown_fields` everywhere) because a
//! misspelled security setting that is silently ignored is worse than a refused start.
//! Errors name the file, the line and column when the parser knows them, and the dotted
//! path of the field (via `serde_path_to_error`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// A configuration problem, always naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{location}{field}: {message}")]
    Parse {
        file: String,
        /// `line:column: ` when known, else empty.
        location: String,
        field: String,
        message: String,
    },
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    pub providers: Vec<Provider>,
    #[serde(default)]
    pub tokens: Tokens,
    #[serde(default)]
    pub revocation: Revocation,
    #[serde(default)]
    pub forward: Forward,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub route_matching: RouteMatching,
    #[serde(default)]
    pub http_check: HttpCheck,
    #[serde(default)]
    pub csrf: Csrf,
    #[serde(default)]
    pub responses: Responses,
    #[serde(default)]
    pub admin_api: AdminApi,
    #[serde(default)]
    pub oauth: OAuth,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub log: Log,
    /// The file this configuration was read from (for reloads and messages); set by
    /// [`Config::load`], never read from YAML. Key and secret paths in the file are
    /// relative to the working directory, as in every shipped example.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default = "default_grpc")]
    pub grpc: SocketAddr,
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            grpc: default_grpc(),
            http: default_http(),
            admin: default_admin(),
        }
    }
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9001))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}

/// One identity provider: who issues tokens and with which keys they are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    /// Expected `iss`; checked when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; when non-empty the token's `aud` must contain one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithm allow-list. `none` cannot be named.
    pub algorithms: Vec<Algorithm>,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    pub keys: Vec<KeySource>,
    /// How remote keys (`jwks_uri`, `oidc_discovery`) are refreshed.
    #[serde(default)]
    pub jwks: JwksSettings,
    /// Accepted values of the JOSE header's `typ` (compared case-insensitively, an
    /// `application/` prefix ignored, as RFC 7515 §4.1.9 says); empty = any. For an OIDC
    /// provider, `[at+jwt]` (RFC 9068) keeps ID tokens and refresh tokens out.
    #[serde(default)]
    pub token_types: Vec<String>,
    /// Whose users and tokens this provider's revocations reach (issue 13): providers
    /// with the same namespace share revocations, others never touch each other's.
    /// Defaults to the provider's `name`.
    #[serde(default)]
    pub subject_namespace: Option<String>,
}

impl Provider {
    /// The subject namespace in force: the configured one, else the provider's name.
    pub fn namespace(&self) -> &str {
        self.subject_namespace.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksSettings {
    /// Refresh interval when the response has no `Cache-Control: max-age`.
    #[serde(default = "jwks_refresh")]
    pub refresh_seconds: u64,
    /// Bounds applied to `max-age`.
    #[serde(default = "jwks_min")]
    pub min_refresh_seconds: u64,
    #[serde(default = "jwks_max")]
    pub max_refresh_seconds: u64,
    /// Per `kid`: one token naming an unknown `kid` may cause an early fetch, and that
    /// `kid` causes no other for this many seconds (a fetch that found it absent is
    /// trusted that long), so one stale or garbage `kid` repeated costs one fetch.
    #[serde(default = "jwks_unknown_kid")]
    pub unknown_kid_min_interval_seconds: u64,
    /// Global: early fetches that may happen back to back, whatever the kids. With the
    /// refill below this caps what a flood of distinct garbage kids costs the identity
    /// provider, while a genuine new `kid` never waits longer than one refill.
    #[serde(default = "jwks_unknown_kid_burst")]
    pub unknown_kid_burst: u32,
    /// Global: one more early fetch becomes available every this many milliseconds.
    #[serde(default = "jwks_unknown_kid_refill")]
    pub unknown_kid_refill_ms: u64,
    /// How many recent kids are remembered for the per-kid limit (bounded memory; when
    /// full the oldest is forgotten, and the global budget still applies to it).
    #[serde(default = "jwks_unknown_kid_tracked")]
    pub unknown_kid_tracked: usize,
    /// Timeout of one fetch.
    #[serde(default = "jwks_timeout")]
    pub timeout_ms: u64,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            refresh_seconds: jwks_refresh(),
            min_refresh_seconds: jwks_min(),
            max_refresh_seconds: jwks_max(),
            unknown_kid_min_interval_seconds: jwks_unknown_kid(),
            unknown_kid_burst: jwks_unknown_kid_burst(),
            unknown_kid_refill_ms: jwks_unknown_kid_refill(),
            unknown_kid_tracked: jwks_unknown_kid_tracked(),
            timeout_ms: jwks_timeout(),
        }
    }
}

impl JwksSettings {
    /// What the types cannot say: (field under `jwks`, message).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.unknown_kid_burst == 0 {
            return Err(("unknown_kid_burst", "must be at least 1"));
        }
        if self.unknown_kid_refill_ms == 0 {
            return Err(("unknown_kid_refill_ms", "must be at least 1"));
        }
        if self.unknown_kid_tracked == 0 {
            return Err(("unknown_kid_tracked", "must be at least 1"));
        }
        Ok(())
    }
}

fn jwks_refresh() -> u64 {
    300
}
fn jwks_min() -> u64 {
    30
}
fn jwks_max() -> u64 {
    86_400
}
fn jwks_unknown_kid() -> u64 {
    30
}
fn jwks_unknown_kid_burst() -> u32 {
    3
}
fn jwks_unknown_kid_refill() -> u64 {
    1_000
}
fn jwks_unknown_kid_tracked() -> usize {
    4_096
}
fn jwks_timeout() -> u64 {
    2_000
}

fn default_leeway() -> u64 {
    30
}

/// Where one key (or one set of keys) comes from. Exactly one of `public_key_file`,
/// `secret_env`, `secret_file` and `jwks_file` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySource {
    /// Key id matched against the token header's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// PEM public key (RSA, EC P-256/P-384 or Ed25519).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// PEM private key matching `public_key_file`; used only by `tokengate token mint`.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Name of an environment variable holding an HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding an HMAC secret (one trailing newline is ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Local JWKS document (RFC 7517).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Remote JWKS, fetched at start and refreshed (see the provider's `jwks`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Find the JWKS through OIDC discovery: `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub oidc_discovery: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Where to look for the token, in order.
    #[serde(default = "default_sources")]
    pub sources: Vec<TokenSource>,
    /// Tokens longer than this are refused before any parsing.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Refuse tokens without `jti` (`missing_claim`): they cannot be revoked one by one.
    #[serde(default = "yes")]
    pub require_jti: bool,
    #[serde(default)]
    pub claims: ClaimNames,
    /// Verified tokens remembered by their SHA-256 until they expire, so that a token
    /// seen again skips signature work; 0 turns it off.
    #[serde(default = "default_verified_cache")]
    pub verified_cache_entries: u64,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            max_bytes: default_max_bytes(),
            require_jti: true,
            claims: ClaimNames::default(),
            verified_cache_entries: default_verified_cache(),
        }
    }
}

fn default_verified_cache() -> u64 {
    100_000
}

fn default_sources() -> Vec<TokenSource> {
    vec![TokenSource {
        header: Some("authorization".into()),
        scheme: Some("Bearer".into()),
        ..TokenSource::default()
    }]
}
fn default_max_bytes() -> usize {
    8 * 1024
}
fn yes() -> bool {
    true
}

/// One token source: exactly one of `header`, `cookie`, `query`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSource {
    #[serde(default)]
    pub header: Option<String>,
    /// Scheme prefix of the header value, compared case-insensitively (e.g. `Bearer`).
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
}

/// Names of the claims that revocation reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimNames {
    #[serde(default = "c_user")]
    pub user: String,
    #[serde(default = "c_tenant")]
    pub tenant: String,
    #[serde(default = "c_user_version")]
    pub user_version: String,
    #[serde(default = "c_tenant_version")]
    pub tenant_version: String,
    #[serde(default = "c_family")]
    pub family: String,
    /// Roles for route rules' `require_roles`; a dotted path reaches nested claims
    /// (e.g. `realm_access.roles`).
    #[serde(default = "c_roles")]
    pub roles: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: c_user(),
            tenant: c_tenant(),
            user_version: c_user_version(),
            tenant_version: c_tenant_version(),
            family: c_family(),
            roles: c_roles(),
        }
    }
}

fn c_user() -> String {
    "sub".into()
}
fn c_tenant() -> String {
    "tid".into()
}
fn c_user_version() -> String {
    "ver".into()
}
fn c_tenant_version() -> String {
    "tver".into()
}
fn c_family() -> String {
    "fam".into()
}
fn c_roles() -> String {
    "roles".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Fail closed: 503 `store_unavailable`.
    #[default]
    Deny,
    /// Fail open: allow and count it.
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    #[serde(default)]
    pub store: StoreKind,
    #[serde(default)]
    pub redis: Option<Redis>,
    #[serde(default)]
    pub cache: Cache,
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// Prefix of every key the store writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Deadline of one store call.
    #[serde(default = "default_store_timeout")]
    pub store_timeout_ms: u64,
    /// Lifetime of a revoked refresh-token family (the longest refresh-token lifetime).
    #[serde(default = "default_family_ttl")]
    pub family_ttl_seconds: u64,
    /// Lifetime of user and tenant entries; none by default (they are small and a
    /// cut-off must outlive every token issued before it).
    #[serde(default)]
    pub subject_ttl_seconds: Option<u64>,
    /// Whether a Redis store also reads the keys of the layout before issuer namespaces
    /// (docs/operations.md, "Upgrading to issuer-scoped revocations").
    #[serde(default)]
    pub legacy_keys: LegacyKeys,
}

/// Reading of the pre-namespace Redis layout, so that an upgrade keeps every revocation
/// enforced until `tokengate migrate` has copied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LegacyKeys {
    /// Every check also reads the legacy keys of the token's raw ids (same round trip).
    #[default]
    Read,
    /// Only the namespaced layout (after `tokengate migrate`).
    Off,
}

impl Default for Revocation {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            redis: None,
            cache: Cache::default(),
            on_store_error: OnStoreError::Deny,
            key_prefix: default_prefix(),
            store_timeout_ms: default_store_timeout(),
            family_ttl_seconds: default_family_ttl(),
            subject_ttl_seconds: None,
            legacy_keys: LegacyKeys::Read,
        }
    }
}

fn default_prefix() -> String {
    "tokengate:".into()
}
fn default_store_timeout() -> u64 {
    50
}
fn default_family_ttl() -> u64 {
    30 * 24 * 3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub url: String,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    #[serde(default = "default_cache_ttl")]
    pub ttl_seconds: u64,
    #[serde(default = "default_cache_entries")]
    pub max_entries: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            ttl_seconds: default_cache_ttl(),
            max_entries: default_cache_entries(),
        }
    }
}

fn default_cache_ttl() -> u64 {
    5
}
fn default_cache_entries() -> u64 {
    100_000
}

/// What an allowed request carries upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Upstream header ← claim name. A client-sent header of the same name is always
    /// overwritten, or removed when the token lacks the claim.
    #[serde(default = "default_forward_headers")]
    pub headers: BTreeMap<String, String>,
    /// Remove `authorization` before the request goes upstream.
    #[serde(default)]
    pub remove_authorization: bool,
    /// gRPC only: put the verified claims in the CheckResponse's `dynamic_metadata`.
    #[serde(default = "yes")]
    pub dynamic_metadata: bool,
    /// Forward the verified payload, base64url-encoded as in the token, in this header
    /// (as Envoy jwt_authn's `forward_payload_header`).
    #[serde(default)]
    pub payload_header: Option<String>,
}

impl Default for Forward {
    fn default() -> Self {
        Self {
            headers: default_forward_headers(),
            remove_authorization: false,
            dynamic_metadata: true,
            payload_header: None,
        }
    }
}

fn default_forward_headers() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("x-user-id".to_string(), "sub".to_string()),
        ("x-tenant-id".to_string(), "tid".to_string()),
    ])
}

/// A route rule: the first rule whose prefix (and method, when listed) matches applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Vec<String>,
    /// Host (`api.example.com` or `*.example.com`); any host when unset.
    #[serde(default)]
    pub host: Option<String>,
    /// Allow without a token.
    #[serde(default)]
    pub exempt: bool,
    /// Scopes the token must carry (space-separated `scope` claim or array `scp`).
    #[serde(default)]
    pub require_scopes: Vec<String>,
    /// Roles the token must carry (in the claim named by `tokens.claims.roles`).
    #[serde(default)]
    pub require_roles: Vec<String>,
    /// Claim (dotted path) → value the token must carry (equal, or contained in an array).
    #[serde(default)]
    pub require_claims: BTreeMap<String, String>,
}

/// How route rules compare paths.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatching {
    /// Compare path prefixes ignoring ASCII case, for backends that do (IIS, some Spring
    /// setups): `/ADMIN` then falls under the `/admin` rule.
    #[serde(default)]
    pub case_insensitive: bool,
}

/// The proxy that calls the HTTP-mode check, which decides where the original request's
/// method, URI and host are read from. Any other forwarded header is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustedProxy {
    /// Envoy's HTTP ext_authz: the check request itself (`/authz` + original path, its
    /// method, its `Host`).
    #[default]
    Envoy,
    /// nginx `auth_request` as the shipped configs set it: `X-Original-Method`,
    /// `X-Original-URI`, `X-Original-Host`.
    Nginx,
    /// ingress-nginx `auth-url`: `X-Original-Method` and `X-Original-URL`
    /// (`$scheme://$http_host$request_uri`).
    IngressNginx,
    /// Traefik `forwardAuth` (`trustForwardHeader: false`): `X-Forwarded-Method`,
    /// `X-Forwarded-Uri`, `X-Forwarded-Host`.
    Traefik,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    #[serde(default)]
    pub proxy: TrustedProxy,
}

/// Cookie tokens on the state-changing endpoints (logout, logout-all, RFC 7009, admin):
/// accepted only from requests a browser would not send cross-site unasked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Csrf {
    /// Origins (`https://app.example.com`) whose requests may carry the cookie token
    /// with a simple content type.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responses {
    /// `realm` of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// `retry-after` on 503 `store_unavailable`.
    #[serde(default = "default_retry_after")]
    pub retry_after_seconds: u64,
}

impl Default for Responses {
    fn default() -> Self {
        Self {
            realm: default_realm(),
            retry_after_seconds: default_retry_after(),
        }
    }
}

fn default_realm() -> String {
    "tokengate".into()
}
fn default_retry_after() -> u64 {
    1
}

/// The revocation API on the admin listener (SPEC §4): off unless enabled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminApi {
    #[serde(default)]
    pub enabled: bool,
    /// Scope the caller's bearer token must carry.
    #[serde(default = "default_admin_scope")]
    pub scope: String,
    /// Names of the providers whose tokens may administer: a scope alone is not enough,
    /// since any trusted issuer can put any scope in its tokens. Required when enabled.
    #[serde(default)]
    pub providers: Vec<String>,
}

impl Default for AdminApi {
    fn default() -> Self {
        Self {
            enabled: false,
            scope: default_admin_scope(),
            providers: Vec::new(),
        }
    }
}

fn default_admin_scope() -> String {
    "tokengate:admin".into()
}

/// RFC 7009 revocation and RFC 7662 introspection for services not behind Envoy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth {
    /// Clients allowed to introspect (HTTP Basic). Introspection is off when empty, so
    /// that it cannot be used to test tokens anonymously.
    #[serde(default)]
    pub introspection_clients: Vec<OAuthClient>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    pub id: String,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// On SIGTERM, how long in-flight requests may take before the process exits anyway.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    #[serde(default)]
    pub http_limits: HttpLimits,
    #[serde(default)]
    pub grpc_limits: GrpcLimits,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            shutdown_grace_seconds: default_grace(),
            http_limits: HttpLimits::default(),
            grpc_limits: GrpcLimits::default(),
        }
    }
}

fn default_grace() -> u64 {
    20
}

/// How long a client of an HTTP listener (public and admin, each counted on its own) may
/// hold a connection without finishing a request, and how many it may hold at once. A
/// client that opens connections and sends half a request costs the attacker nothing and
/// would otherwise keep a slot for ever (issue 13); the timeouts bound how long each slot
/// is held and the cap bounds how many there are.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// A request head must be complete this long after the connection opened, or (on a
    /// kept-alive connection) after its first byte arrived (nginx `client_header_timeout`).
    #[serde(default = "sixty")]
    pub header_timeout_seconds: u64,
    /// Longest wait between two reads of a request body (nginx `client_body_timeout`).
    #[serde(default = "sixty")]
    pub body_timeout_seconds: u64,
    /// From a complete request head to the response: bounds a body trickled one byte at a
    /// time, each within `body_timeout_seconds`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// How long a connection with no request in flight waits for the next one (nginx
    /// `keepalive_timeout`).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Open connections per listener; further connections are accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout_seconds: sixty(),
            body_timeout_seconds: sixty(),
            request_timeout_seconds: default_request_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

/// The gRPC listener's limits. Envoy keeps long-lived HTTP/2 connections to ext_authz and
/// multiplexes every check over them, so nothing here closes a connection that answers
/// pings; unresponsive peers are found by HTTP/2 PING, and silent sockets by the
/// handshake timeout.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcLimits {
    /// A new connection must send the HTTP/2 preface and its first frame within this.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_seconds: u64,
    /// An HTTP/2 PING is sent when the connection has been quiet this long ...
    #[serde(default = "sixty")]
    pub keepalive_interval_seconds: u64,
    /// ... and the connection is closed when its answer takes longer than this.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout_seconds: u64,
    /// Longest time one call may take (a shorter `grpc-timeout` from the client wins).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Concurrent calls per connection (SETTINGS_MAX_CONCURRENT_STREAMS); Envoy opens
    /// another connection when it needs more.
    #[serde(default = "default_max_streams")]
    pub max_concurrent_streams: u32,
    /// Streams a client may open and reset before they are answered, before the
    /// connection is closed with GOAWAY (HTTP/2 rapid reset, CVE-2023-44487).
    #[serde(default = "default_pending_resets")]
    pub max_pending_accept_reset_streams: usize,
    /// When set, a connection gets GOAWAY this long after it opened (its calls finish,
    /// each within `request_timeout_seconds`). Off by default: it would recycle Envoy's
    /// healthy connections.
    #[serde(default)]
    pub max_connection_age_seconds: Option<u64>,
    /// Open connections; further connections are accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            handshake_timeout_seconds: default_handshake_timeout(),
            keepalive_interval_seconds: sixty(),
            keepalive_timeout_seconds: default_keepalive_timeout(),
            request_timeout_seconds: default_request_timeout(),
            max_concurrent_streams: default_max_streams(),
            max_pending_accept_reset_streams: default_pending_resets(),
            max_connection_age_seconds: None,
            max_connections: default_max_connections(),
        }
    }
}

fn sixty() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    120
}
fn default_idle_timeout() -> u64 {
    75
}
fn default_max_connections() -> usize {
    1024
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_keepalive_timeout() -> u64 {
    20
}
fn default_max_streams() -> u32 {
    1024
}
fn default_pending_resets() -> usize {
    20
}

/// Longest accepted timeout: beyond a day a "timeout" is no bound at all, and a bound
/// keeps deadline arithmetic far from overflow.
const MAX_TIMEOUT_SECONDS: u64 = 86_400;
/// Most connections one listener may be configured to hold (far above any file
/// descriptor limit; it also keeps the count within a semaphore's range).
const MAX_CONNECTIONS: usize = 1_000_000;

impl Server {
    /// The limits' own checks: every timeout 1 s ..= 1 day, every count at least 1.
    fn validate(&self) -> Result<(), (String, String)> {
        let h = &self.http_limits;
        let g = &self.grpc_limits;
        let timeouts = [
            (
                "http_limits.header_timeout_seconds",
                Some(h.header_timeout_seconds),
            ),
            (
                "http_limits.body_timeout_seconds",
                Some(h.body_timeout_seconds),
            ),
            (
                "http_limits.request_timeout_seconds",
                Some(h.request_timeout_seconds),
            ),
            (
                "http_limits.idle_timeout_seconds",
                Some(h.idle_timeout_seconds),
            ),
            (
                "grpc_limits.handshake_timeout_seconds",
                Some(g.handshake_timeout_seconds),
            ),
            (
                "grpc_limits.keepalive_interval_seconds",
                Some(g.keepalive_interval_seconds),
            ),
            (
                "grpc_limits.keepalive_timeout_seconds",
                Some(g.keepalive_timeout_seconds),
            ),
            (
                "grpc_limits.request_timeout_seconds",
                Some(g.request_timeout_seconds),
            ),
            (
                "grpc_limits.max_connection_age_seconds",
                g.max_connection_age_seconds,
            ),
        ];
        for (field, value) in timeouts {
            if let Some(v) = value {
                if !(1..=MAX_TIMEOUT_SECONDS).contains(&v) {
                    return Err((
                        format!("server.{field}"),
                        format!("must be between 1 and {MAX_TIMEOUT_SECONDS}"),
                    ));
                }
            }
        }
        let counts = [
            ("http_limits.max_connections", h.max_connections),
            ("grpc_limits.max_connections", g.max_connections),
        ];
        for (field, value) in counts {
            if !(1..=MAX_CONNECTIONS).contains(&value) {
                return Err((
                    format!("server.{field}"),
                    format!("must be between 1 and {MAX_CONNECTIONS}"),
                ));
            }
        }
        if g.max_concurrent_streams == 0 {
            return Err((
                "server.grpc_limits.max_concurrent_streams".into(),
                "must be greater than 0".into(),
            ));
        }
        if g.max_pending_accept_reset_streams == 0 {
            return Err((
                "server.grpc_limits.max_pending_accept_reset_streams".into(),
                "must be greater than 0".into(),
            ));
        }
        Ok(())
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
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut config = Self::parse(&file, &text)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates YAML text; `file` is only used in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let location = inner
                .location()
                .map(|l| format!("{}:{}: ", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::Parse {
                file: file.to_string(),
                location,
                field: if field == "." { "(top)".into() } else { field },
                message: strip_location(&inner.to_string()),
            }
        })?;
        config
            .validate()
            .map_err(|(field, message)| ConfigError::Invalid {
                file: file.to_string(),
                field,
                message,
            })?;
        Ok(config)
    }

    /// Checks what the types alone cannot say. Returns (field path, message).
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: String, message: &str| Err((field, message.to_string()));
        if self.providers.is_empty() {
            return bad("providers".into(), "at least one provider is required");
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if p.name.trim().is_empty() {
                return bad(format!("{at}.name"), "must not be empty");
            }
            if !names.insert(p.name.as_str()) {
                return bad(format!("{at}.name"), "duplicate provider name");
            }
            if !crate::revocation::scope::valid_namespace(p.namespace()) {
                let message = if p.subject_namespace.is_some() {
                    "must be 1 to 64 of A-Z a-z 0-9 . _ -"
                } else {
                    "required: the provider's name is not a valid namespace (1 to 64 of A-Z a-z 0-9 . _ -)"
                };
                return bad(format!("{at}.subject_namespace"), message);
            }
            if p.algorithms.is_empty() {
                return bad(
                    format!("{at}.algorithms"),
                    "at least one algorithm is required",
                );
            }
            if p.keys.is_empty() {
                return bad(format!("{at}.keys"), "at least one key is required");
            }
            if let Err((field, message)) = p.jwks.validate() {
                return bad(format!("{at}.jwks.{field}"), message);
            }
            for (k, key) in p.keys.iter().enumerate() {
                let set = [
                    key.public_key_file.is_some(),
                    key.secret_env.is_some(),
                    key.secret_file.is_some(),
                    key.jwks_file.is_some(),
                    key.jwks_uri.is_some(),
                    key.oidc_discovery,
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if set != 1 {
                    return bad(
                        format!("{at}.keys[{k}]"),
                        "set exactly one of public_key_file, secret_env, secret_file, jwks_file, jwks_uri, oidc_discovery",
                    );
                }
                if let Some(uri) = &key.jwks_uri {
                    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
                        return bad(format!("{at}.keys[{k}].jwks_uri"), "must be an http(s) URL");
                    }
                }
                if key.oidc_discovery && p.issuer.is_none() {
                    return bad(
                        format!("{at}.keys[{k}].oidc_discovery"),
                        "needs the provider's issuer",
                    );
                }
                if key.private_key_file.is_some() && key.public_key_file.is_none() {
                    return bad(
                        format!("{at}.keys[{k}].private_key_file"),
                        "needs public_key_file beside it",
                    );
                }
            }
        }
        if self.providers.len() > 1 && self.providers.iter().any(|p| p.issuer.is_none()) {
            return bad(
                "providers".into(),
                "with several providers every provider needs an issuer (tokens are routed by `iss`)",
            );
        }
        if self.tokens.sources.is_empty() {
            return bad(
                "tokens.sources".into(),
                "at least one token source is required",
            );
        }
        for (i, s) in self.tokens.sources.iter().enumerate() {
            let set = [s.header.is_some(), s.cookie.is_some(), s.query.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if set != 1 {
                return bad(
                    format!("tokens.sources[{i}]"),
                    "set exactly one of header, cookie, query",
                );
            }
            if s.scheme.is_some() && s.header.is_none() {
                return bad(
                    format!("tokens.sources[{i}].scheme"),
                    "only valid with header",
                );
            }
            if let Some(h) = &s.header {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return bad(
                        format!("tokens.sources[{i}].header"),
                        "not a valid header name",
                    );
                }
            }
        }
        if self.tokens.max_bytes == 0 {
            return bad("tokens.max_bytes".into(), "must be greater than 0");
        }
        if let Some(name) = &self.forward.payload_header {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return bad("forward.payload_header".into(), "not a valid header name");
            }
        }
        for name in self.forward.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return bad(format!("forward.headers.{name}"), "not a valid header name");
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !r.path_prefix.starts_with('/') {
                return bad(format!("routes[{i}].path_prefix"), "must start with '/'");
            }
            if !crate::decision::is_canonical_prefix(&r.path_prefix) {
                return bad(
                    format!("routes[{i}].path_prefix"),
                    "must be in canonical form (no percent-encoding, `;`, `\\`, `//`, `.` or `..` segments): requests are matched in canonical form",
                );
            }
            if let Some(host) = &r.host {
                if host.contains(':') || host.ends_with('.') || host.is_empty() {
                    return bad(
                        format!("routes[{i}].host"),
                        "a host name without port or trailing dot (`api.example.com` or `*.example.com`)",
                    );
                }
            }
            if r.exempt && !r.require_scopes.is_empty() {
                return bad(
                    format!("routes[{i}]"),
                    "an exempt route cannot require scopes",
                );
            }
        }
        for (i, origin) in self.csrf.allowed_origins.iter().enumerate() {
            let ok = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
            });
            if !ok {
                return bad(
                    format!("csrf.allowed_origins[{i}]"),
                    "an origin: scheme://host[:port], no path (https://app.example.com)",
                );
            }
        }
        for (i, c) in self.oauth.introspection_clients.iter().enumerate() {
            if c.secret_env.is_some() == c.secret_file.is_some() {
                return bad(
                    format!("oauth.introspection_clients[{i}]"),
                    "set exactly one of secret_env, secret_file",
                );
            }
        }
        if self.admin_api.enabled && self.admin_api.scope.trim().is_empty() {
            return bad("admin_api.scope".into(), "must not be empty");
        }
        if self.admin_api.enabled && self.admin_api.providers.is_empty() {
            return bad(
                "admin_api.providers".into(),
                "required when admin_api.enabled: the providers whose tokens may administer",
            );
        }
        for (i, name) in self.admin_api.providers.iter().enumerate() {
            if !names.contains(name.as_str()) {
                return bad(
                    format!("admin_api.providers[{i}]"),
                    "not the name of a configured provider",
                );
            }
        }
        if self.revocation.store == StoreKind::Redis && self.revocation.redis.is_none() {
            return bad(
                "revocation.redis".into(),
                "required when revocation.store is redis",
            );
        }
        if self.revocation.store_timeout_ms == 0 {
            return bad(
                "revocation.store_timeout_ms".into(),
                "must be greater than 0",
            );
        }
        if self.revocation.cache.max_entries == 0 {
            return bad(
                "revocation.cache.max_entries".into(),
                "must be greater than 0",
            );
        }
        self.server.validate()
    }
}

/// serde_yaml_ng puts the field path in front of its messages and " at line X column Y"
/// after them; both are already printed, so drop the repetition.
fn strip_location(message: &str) -> String {
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c)) =>
        {
            rest.to_string()
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "providers:\n  - name: dev\n    algorithms: [HS256]\n    keys:\n      - secret_env: X\n";

    #[test]
    fn defaults_follow_the_spec() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        assert_eq!(c.listen.grpc.port(), 9001);
        assert_eq!(c.listen.http.port(), 8080);
        assert_eq!(c.listen.admin.port(), 9090);
        assert_eq!(c.revocation.store, StoreKind::Memory);
        assert_eq!(c.revocation.on_store_error, OnStoreError::Deny);
        assert_eq!(c.revocation.cache.ttl_seconds, 5);
        assert_eq!(c.revocation.store_timeout_ms, 50);
        assert_eq!(c.tokens.max_bytes, 8192);
        assert!(c.tokens.require_jti);
        assert_eq!(c.providers[0].leeway_seconds, 30);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = format!("{MINIMAL}revocation:\n  stor: redis\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.starts_with("t.yaml:7:"), "{err}");
        assert!(err.contains("revocation"), "{err}");
        assert!(err.contains("unknown field `stor`"), "{err}");
        assert_eq!(
            err.matches("revocation").count(),
            1,
            "path printed once: {err}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let text = format!("{MINIMAL}tokens:\n  max_bytes: lots\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("tokens.max_bytes"), "{err}");
        assert!(err.contains("t.yaml:7:"), "{err}");
    }

    #[test]
    fn alg_none_cannot_be_allowed() {
        let text = MINIMAL.replace("[HS256]", "[none]");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("providers[0].algorithms"), "{err}");
    }

    #[test]
    fn key_needs_exactly_one_source() {
        let text = MINIMAL.replace("- secret_env: X", "- kid: a");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("providers[0].keys[0]"), "{err}");
    }

    #[test]
    fn route_prefixes_must_be_canonical_and_hosts_bare() {
        for (route, field) in [
            ("path_prefix: /a/../b", "routes[0].path_prefix"),
            ("path_prefix: /%61dmin", "routes[0].path_prefix"),
            ("path_prefix: /admin;x", "routes[0].path_prefix"),
            ("path_prefix: //admin", "routes[0].path_prefix"),
            (
                "{path_prefix: /a, host: \"api.example.com:443\"}",
                "routes[0].host",
            ),
            (
                "{path_prefix: /a, host: api.example.com.}",
                "routes[0].host",
            ),
        ] {
            let text = format!("{MINIMAL}routes:\n  - {route}\n");
            let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.contains(field), "{route}: {err}");
        }
        let ok =
            format!("{MINIMAL}routes:\n  - path_prefix: /public/\n    host: \"*.example.com\"\n");
        assert!(Config::parse("t.yaml", &ok).is_ok());
    }

    #[test]
    fn trusted_proxy_and_csrf_origins_are_typed() {
        let text = format!("{MINIMAL}http_check:\n  proxy: apache\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("http_check.proxy"), "{err}");
        let text = format!("{MINIMAL}http_check:\n  proxy: ingress-nginx\n");
        assert_eq!(
            Config::parse("t.yaml", &text).unwrap().http_check.proxy,
            TrustedProxy::IngressNginx
        );
        let text = format!("{MINIMAL}csrf:\n  allowed_origins: [\"https://a.example/x\"]\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("csrf.allowed_origins[0]"), "{err}");
    }

    #[test]
    fn subject_namespace_defaults_to_the_name_and_is_validated() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        assert_eq!(c.providers[0].namespace(), "dev");
        let text = MINIMAL.replace(
            "    algorithms",
            "    subject_namespace: idp\n    algorithms",
        );
        let c = Config::parse("t.yaml", &text).unwrap();
        assert_eq!(c.providers[0].namespace(), "idp");
        for bad in ["a:b", "\"\"", "\"a b\""] {
            let text = MINIMAL.replace(
                "    algorithms",
                &format!("    subject_namespace: {bad}\n    algorithms"),
            );
            let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.contains("providers[0].subject_namespace"), "{err}");
        }
        // a name that cannot serve as a namespace needs an explicit one
        let text = MINIMAL.replace("name: dev", "name: \"dev:1\"");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("providers[0].subject_namespace"), "{err}");
    }

    #[test]
    fn admin_api_needs_its_providers_by_name() {
        let text = format!("{MINIMAL}admin_api:\n  enabled: true\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("admin_api.providers"), "{err}");
        let text = format!("{MINIMAL}admin_api:\n  enabled: true\n  providers: [dev, nope]\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("admin_api.providers[1]"), "{err}");
        let text = format!("{MINIMAL}admin_api:\n  enabled: true\n  providers: [dev]\n");
        assert!(Config::parse("t.yaml", &text).is_ok());
    }

    #[test]
    fn legacy_keys_are_read_unless_turned_off() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        assert_eq!(c.revocation.legacy_keys, LegacyKeys::Read);
        let text = format!("{MINIMAL}revocation:\n  legacy_keys: off\n");
        let c = Config::parse("t.yaml", &text).unwrap();
        assert_eq!(c.revocation.legacy_keys, LegacyKeys::Off);
        let text = format!("{MINIMAL}revocation:\n  legacy_keys: write\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("revocation.legacy_keys"), "{err}");
    }

    #[test]
    fn connection_limits_default_like_nginx() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        let h = c.server.http_limits;
        assert_eq!(h.header_timeout_seconds, 60);
        assert_eq!(h.body_timeout_seconds, 60);
        assert_eq!(h.request_timeout_seconds, 120);
        assert_eq!(h.idle_timeout_seconds, 75);
        assert_eq!(h.max_connections, 1024);
        let g = c.server.grpc_limits;
        assert_eq!(g.keepalive_interval_seconds, 60);
        assert_eq!(g.keepalive_timeout_seconds, 20);
        assert_eq!(
            g.max_connection_age_seconds, None,
            "Envoy's connections are not recycled"
        );
    }

    #[test]
    fn connection_limit_errors_name_the_field() {
        for (yaml, field) in [
            (
                "http_limits:\n    header_timeout_seconds: 0",
                "server.http_limits.header_timeout_seconds",
            ),
            (
                "http_limits:\n    body_timeout_seconds: 0",
                "server.http_limits.body_timeout_seconds",
            ),
            (
                "http_limits:\n    request_timeout_seconds: 86401",
                "server.http_limits.request_timeout_seconds",
            ),
            (
                "http_limits:\n    idle_timeout_seconds: 0",
                "server.http_limits.idle_timeout_seconds",
            ),
            (
                "http_limits:\n    max_connections: 0",
                "server.http_limits.max_connections",
            ),
            (
                "http_limits:\n    max_connections: 1000001",
                "server.http_limits.max_connections",
            ),
            (
                "grpc_limits:\n    handshake_timeout_seconds: 0",
                "server.grpc_limits.handshake_timeout_seconds",
            ),
            (
                "grpc_limits:\n    keepalive_interval_seconds: 0",
                "server.grpc_limits.keepalive_interval_seconds",
            ),
            (
                "grpc_limits:\n    keepalive_timeout_seconds: 0",
                "server.grpc_limits.keepalive_timeout_seconds",
            ),
            (
                "grpc_limits:\n    request_timeout_seconds: 0",
                "server.grpc_limits.request_timeout_seconds",
            ),
            (
                "grpc_limits:\n    max_connection_age_seconds: 0",
                "server.grpc_limits.max_connection_age_seconds",
            ),
            (
                "grpc_limits:\n    max_concurrent_streams: 0",
                "server.grpc_limits.max_concurrent_streams",
            ),
            (
                "grpc_limits:\n    max_pending_accept_reset_streams: 0",
                "server.grpc_limits.max_pending_accept_reset_streams",
            ),
            (
                "grpc_limits:\n    max_connections: 0",
                "server.grpc_limits.max_connections",
            ),
            ("http_limits:\n    header_timeout: 5", "server.http_limits"),
            (
                "http_limits:\n    max_connections: -1",
                "server.http_limits.max_connections",
            ),
            (
                "grpc_limits:\n    keepalive_interval_seconds: soon",
                "server.grpc_limits.keepalive_interval_seconds",
            ),
        ] {
            let text = format!("{MINIMAL}server:\n  {yaml}\n");
            let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn redis_store_needs_its_section() {
        let text = format!("{MINIMAL}revocation:\n  store: redis\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("revocation.redis"), "{err}");
    }
}
