//! What a decision applies besides the token itself: route rules, what an allow
//! forwards, how answers look, which proxy the HTTP check trusts, CSRF, and the admin
//! and OAuth endpoints.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::Secret;

/// What an allowed request carries upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Forward {
    /// Upstream header ← claim name. A client-sent header of the same name is always
    /// overwritten, or removed when the token lacks the claim.
    #[serde(deserialize_with = "header_map")]
    pub headers: BTreeMap<String, String>,
    /// Remove `authorization` before the request goes upstream.
    pub remove_authorization: bool,
    /// gRPC only: put the verified claims in the CheckResponse's `dynamic_metadata`.
    /// Off by default since issue 20: Envoy merges every claim into the stream's
    /// metadata (3–5 µs a request, docs/performance.md), which only pays when a later
    /// filter reads it.
    pub dynamic_metadata: bool,
    /// Forward the verified payload, base64url-encoded as in the token, in this header
    /// (as Envoy jwt_authn's `forward_payload_header`).
    #[serde(deserialize_with = "optional_header_name")]
    pub payload_header: Option<String>,
}

impl Default for Forward {
    fn default() -> Self {
        Self {
            headers: BTreeMap::from([
                ("x-user-id".to_string(), "sub".to_string()),
                ("x-tenant-id".to_string(), "tid".to_string()),
            ]),
            remove_authorization: false,
            dynamic_metadata: false,
            payload_header: None,
        }
    }
}

fn header_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(d)?;
    if let Some(name) = map
        .keys()
        .find(|n| http::HeaderName::from_bytes(n.as_bytes()).is_err())
    {
        return Err(serde::de::Error::custom(format!(
            ".{name}: not a valid header name"
        )));
    }
    Ok(map)
}

fn optional_header_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    if let Some(n) = &name {
        if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
            return Err(serde::de::Error::custom("not a valid header name"));
        }
    }
    Ok(name)
}

/// A route rule: the first rule whose prefix (and method, when listed) matches applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRoute")]
pub struct Route {
    /// Canonical (no percent-encoding, `;`, `\`, `//`, `.` or `..` segments): requests
    /// are matched in canonical form.
    pub path_prefix: String,
    pub methods: Vec<String>,
    /// Host (`api.example.com` or `*.example.com`); any host when unset.
    pub host: Option<String>,
    /// Allow without a token (never with `require_scopes`).
    pub exempt: bool,
    /// Scopes the token must carry (space-separated `scope` claim or array `scp`).
    pub require_scopes: Vec<String>,
    /// Roles the token must carry (in the claim named by `tokens.claims.roles`).
    pub require_roles: Vec<String>,
    /// Claim (dotted path) → value the token must carry (equal, or contained in an array).
    pub require_claims: BTreeMap<String, String>,
    /// Sender constraint on this route, on top of the provider's (the stricter wins).
    pub sender_constraint: Option<super::SenderConstraint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path_prefix: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    exempt: bool,
    #[serde(default)]
    require_scopes: Vec<String>,
    #[serde(default)]
    require_roles: Vec<String>,
    #[serde(default)]
    require_claims: BTreeMap<String, String>,
    #[serde(default)]
    sender_constraint: Option<super::SenderConstraint>,
}

impl TryFrom<RawRoute> for Route {
    type Error = String;

    fn try_from(r: RawRoute) -> Result<Self, String> {
        if !r.path_prefix.starts_with('/') {
            return Err(".path_prefix: must start with '/'".into());
        }
        if !crate::decision::is_canonical_prefix(&r.path_prefix) {
            return Err(
                ".path_prefix: must be in canonical form (no percent-encoding, `;`, \
                        `\\`, `//`, `.` or `..` segments): requests are matched in canonical form"
                    .into(),
            );
        }
        if let Some(host) = &r.host {
            if host.contains(':') || host.ends_with('.') || host.is_empty() {
                return Err(".host: a host name without port or trailing dot \
                            (`api.example.com` or `*.example.com`)"
                    .into());
            }
        }
        if r.exempt && r.sender_constraint.is_some() {
            return Err(".sender_constraint: an exempt route has no token to constrain".into());
        }
        if r.exempt && !r.require_scopes.is_empty() {
            return Err("an exempt route cannot require scopes".into());
        }
        Ok(Route {
            path_prefix: r.path_prefix,
            methods: r.methods,
            host: r.host,
            exempt: r.exempt,
            require_scopes: r.require_scopes,
            require_roles: r.require_roles,
            require_claims: r.require_claims,
            sender_constraint: r.sender_constraint,
        })
    }
}

/// How route rules compare paths.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteMatching {
    /// Compare path prefixes ignoring ASCII case, for backends that do (IIS, some Spring
    /// setups): `/ADMIN` then falls under the `/admin` rule.
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
#[serde(default, deny_unknown_fields)]
pub struct HttpCheck {
    pub proxy: TrustedProxy,
    /// Off (absent) by default: every answer says `Cache-Control: no-store`. When set, an
    /// allow for a verified token says `private, max-age=N` with N this, capped by the
    /// token's remaining life and by `revocation.cache.ttl_seconds`: a proxy that caches
    /// auth answers then enforces a logout within N seconds (docs/operations.md, "Auth
    /// answers and caches").
    #[serde(deserialize_with = "super::optional_timeout_seconds")]
    pub allow_max_age_seconds: Option<u64>,
    /// The scheme of the original request, for a DPoP proof's `htu`, when the trusted
    /// proxy does not say it (Envoy, nginx); ingress-nginx's `X-Original-URL` and
    /// Traefik's `X-Forwarded-Proto` say it themselves.
    pub original_scheme: OriginalScheme,
    /// Where the trusted proxy puts the client's certificate, for mTLS-bound tokens
    /// (RFC 8705); absent: no certificate is read, and a certificate-bound token fails.
    pub client_cert: Option<ClientCertHeader>,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginalScheme {
    Http,
    #[default]
    Https,
}

impl OriginalScheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            OriginalScheme::Http => "http",
            OriginalScheme::Https => "https",
        }
    }
}

/// The header in which the trusted proxy passes the verified client certificate. Only
/// set it when that proxy overwrites the header on every request: a value a client sent
/// through would be taken as its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCertHeader {
    /// Envoy `x-forwarded-client-cert` (`forward_client_cert_details: SANITIZE_SET`),
    /// one element with `Hash=` (hex SHA-256 of the DER) or `Cert=` (URL-encoded PEM).
    Xfcc,
    /// RFC 9440 `Client-Cert`: the DER as a structured-field byte sequence (`:base64:`).
    ClientCert,
    /// nginx `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert` (URL-encoded PEM).
    NginxEscaped,
}

impl ClientCertHeader {
    /// The header's name (lower-case).
    pub const fn header(self) -> &'static str {
        match self {
            ClientCertHeader::Xfcc => "x-forwarded-client-cert",
            ClientCertHeader::ClientCert => "client-cert",
            ClientCertHeader::NginxEscaped => "x-ssl-client-cert",
        }
    }
}

/// Cookie tokens on the state-changing endpoints (logout, logout-all, RFC 7009, admin):
/// accepted only from requests a browser would not send cross-site unasked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Csrf {
    /// Origins (`https://app.example.com`) whose requests may carry the cookie token
    /// with a simple content type.
    #[serde(deserialize_with = "origins")]
    pub allowed_origins: Vec<String>,
}

fn origins<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let origins = Vec::<String>::deserialize(d)?;
    for (i, origin) in origins.iter().enumerate() {
        let ok = origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
        });
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "[{i}]: an origin: scheme://host[:port], no path (https://app.example.com)"
            )));
        }
    }
    Ok(origins)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Responses {
    /// `realm` of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// `retry-after` on 503 `store_unavailable`.
    pub retry_after_seconds: u64,
}

impl Default for Responses {
    fn default() -> Self {
        Self {
            realm: "tokengate".into(),
            retry_after_seconds: 1,
        }
    }
}

/// The revocation API on the admin listener (docs/spec.md §4): off unless enabled.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "RawAdminApi")]
pub struct AdminApi {
    pub enabled: bool,
    /// Scope the caller's bearer token must carry (not empty when enabled).
    pub scope: String,
    /// Names of the providers whose tokens may administer: a scope alone is not enough,
    /// since any trusted issuer can put any scope in its tokens. Required when enabled;
    /// each must name a configured provider (checked with the providers).
    pub providers: Vec<String>,
}

impl Default for AdminApi {
    fn default() -> Self {
        Self {
            enabled: false,
            scope: "tokengate:admin".into(),
            providers: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAdminApi {
    enabled: bool,
    scope: String,
    providers: Vec<String>,
}

impl Default for RawAdminApi {
    fn default() -> Self {
        let d = AdminApi::default();
        Self {
            enabled: d.enabled,
            scope: d.scope,
            providers: d.providers,
        }
    }
}

impl TryFrom<RawAdminApi> for AdminApi {
    type Error = String;

    fn try_from(r: RawAdminApi) -> Result<Self, String> {
        if r.enabled && r.scope.trim().is_empty() {
            return Err(".scope: must not be empty".into());
        }
        if r.enabled && r.providers.is_empty() {
            return Err(
                ".providers: required when admin_api.enabled: the providers whose \
                        tokens may administer"
                    .into(),
            );
        }
        Ok(AdminApi {
            enabled: r.enabled,
            scope: r.scope,
            providers: r.providers,
        })
    }
}

/// RFC 7009 revocation and RFC 7662 introspection for services not behind Envoy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuth {
    /// Clients allowed to introspect (HTTP Basic). Introspection is off when empty, so
    /// that it cannot be used to test tokens anonymously.
    pub introspection_clients: Vec<OAuthClient>,
}

/// One introspection client: its id and its secret, from the environment
/// (`secret_env`) or a file (`secret_file`), exactly one of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawOAuthClient")]
pub struct OAuthClient {
    pub id: String,
    pub secret: Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuthClient {
    id: String,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<std::path::PathBuf>,
}

impl TryFrom<RawOAuthClient> for OAuthClient {
    type Error = String;

    fn try_from(r: RawOAuthClient) -> Result<Self, String> {
        if r.secret_env.is_some() && r.secret_file.is_some() {
            return Err("set exactly one of secret_env, secret_file".into());
        }
        match Secret::from_pair(r.secret_env, r.secret_file) {
            Some(secret) => Ok(OAuthClient { id: r.id, secret }),
            None => Err("set exactly one of secret_env, secret_file".into()),
        }
    }
}
