//! One JWKS fetch over HTTP, with OIDC discovery, and the cause of a failure told apart.
//!
//! An operator paged at 3 a.m. for "JWKS fetch failed" needs to know at once whether
//! the identity provider is down (connection refused), unresolvable (DNS), presenting
//! the wrong certificate (TLS), slow (timeout), answering errors (HTTP status), serving
//! something that is not a key set, or whether tokengate is pointed at the wrong
//! issuer. Each failure therefore carries a stable `cause` for the log field, and its
//! text names the URL with any credentials and query removed: the configured `jwks_uri`
//! may carry a user:password or an API key, and logs are not a place for secrets.

use std::fmt;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::keys::{parse_jwks, VerifyKey};

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Nothing listens at the address.
    Refused { url: String },
    /// The host name does not resolve.
    Dns { url: String, detail: String },
    /// The TLS handshake failed (certificate, protocol, not TLS at all).
    Tls { url: String, detail: String },
    /// No complete answer within `timeout_ms`.
    Timeout { url: String },
    /// Any other transport failure (connection reset, bad HTTP, body cut short).
    Transport { url: String, detail: String },
    /// An answer other than 2xx.
    Status { url: String, status: u16 },
    /// Not JSON, not a discovery document, not a JWKS, or a JWKS with no signing key.
    Parse { url: String, detail: String },
    /// A JWKS whose keys none of the provider's algorithms can use.
    NoUsableKey {
        url: String,
        algorithms: String,
        found: String,
    },
    /// The discovery document names another issuer (OIDC Discovery §4.3).
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
}

impl FetchError {
    /// The stable cause, for the `cause` log field and the readiness body.
    pub fn cause(&self) -> &'static str {
        match self {
            FetchError::Refused { .. } => "connection_refused",
            FetchError::Dns { .. } => "dns",
            FetchError::Tls { .. } => "tls",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Transport { .. } => "transport",
            FetchError::Status { .. } => "http_status",
            FetchError::Parse { .. } => "parse",
            FetchError::NoUsableKey { .. } => "no_usable_key",
            FetchError::IssuerMismatch { .. } => "issuer_mismatch",
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = self.cause();
        match self {
            FetchError::Refused { url } => write!(f, "{cause}: {url}: connection refused"),
            FetchError::Timeout { url } => write!(f, "{cause}: {url}: no answer in time"),
            FetchError::Dns { url, detail }
            | FetchError::Tls { url, detail }
            | FetchError::Transport { url, detail }
            | FetchError::Parse { url, detail } => write!(f, "{cause}: {url}: {detail}"),
            FetchError::Status { url, status } => write!(f, "{cause}: {url}: HTTP {status}"),
            FetchError::NoUsableKey {
                url,
                algorithms,
                found,
            } => write!(
                f,
                "{cause}: {url}: no key usable with the provider's algorithms [{algorithms}] (the set has: {found})"
            ),
            FetchError::IssuerMismatch {
                url,
                expected,
                found,
            } => write!(
                f,
                "{cause}: {url}: the discovery document names issuer {found:?}, configured {expected:?}"
            ),
        }
    }
}

/// `url` as it may be logged: no user, password, query or fragment.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// A body and the `Cache-Control: max-age` it came with.
pub struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<u64>,
}

/// Sends `request` for `url`; a transport failure or a non-2xx status is the error.
async fn send_ok(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<reqwest::Response, FetchError> {
    let resp = request.send().await.map_err(|e| classify(&e, url))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: redact(url),
            status: status.as_u16(),
        });
    }
    Ok(resp)
}

/// GET `url`; any failure classified.
pub async fn get(client: &reqwest::Client, url: &str) -> Result<Fetched, FetchError> {
    let resp = send_ok(client.get(url), url).await?;
    let max_age = resp
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let body = resp.bytes().await.map_err(|e| classify(&e, url))?;
    Ok(Fetched {
        body: body.to_vec(),
        max_age,
    })
}

/// GET `url` with `Accept: accept`, refusing an answer larger than `max_bytes` (by its
/// `Content-Length`, or while reading when it has none) without reading the rest: a
/// fetched document is attacker-sized until proven otherwise. `Ok(None)`: too large.
pub async fn get_limited(
    client: &reqwest::Client,
    url: &str,
    accept: &str,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, FetchError> {
    let request = client.get(url).header(reqwest::header::ACCEPT, accept);
    let mut resp = send_ok(request, url).await?;
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    if resp.content_length().is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, url))? {
        if body.len().saturating_add(chunk.len()) > max_bytes {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The `jwks_uri` of the discovery document at `{issuer}/.well-known/openid-configuration`,
/// refused unless the document names exactly `issuer`: a document that names another
/// issuer is someone else's configuration (a wrong host, a proxy, a tenant mix-up), and
/// its keys would verify tokens tokengate was never told to trust.
pub async fn discover(client: &reqwest::Client, issuer: &str) -> Result<String, FetchError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let fetched = get(client, &url).await?;
    let parse = |detail: String| FetchError::Parse {
        url: redact(&url),
        detail,
    };
    let doc: serde_json::Value = serde_json::from_slice(&fetched.body)
        .map_err(|e| parse(format!("not a discovery document: {e}")))?;
    let found = doc
        .get("issuer")
        .and_then(|v| v.as_str())
        .ok_or_else(|| parse("the discovery document has no issuer".into()))?;
    if found != issuer {
        return Err(FetchError::IssuerMismatch {
            url: redact(&url),
            expected: issuer.to_string(),
            found: found.chars().take(200).collect(),
        });
    }
    doc.get("jwks_uri")
        .and_then(|v| v.as_str())
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_string)
        .ok_or_else(|| parse("the discovery document has no http(s) jwks_uri".into()))
}

/// The keys at `uri`, refused when none suits the provider's algorithms.
pub async fn jwks(
    client: &reqwest::Client,
    uri: &str,
    algorithms: &[Algorithm],
) -> Result<(Vec<VerifyKey>, Option<u64>), FetchError> {
    let fetched = get(client, uri).await?;
    let keys = parse_jwks(&fetched.body).map_err(|detail| FetchError::Parse {
        url: redact(uri),
        detail,
    })?;
    if !usable(&keys, algorithms) {
        return Err(FetchError::NoUsableKey {
            url: redact(uri),
            algorithms: names(algorithms),
            found: families(&keys),
        });
    }
    Ok((keys, fetched.max_age))
}

/// Whether any key can verify a token of any allowed algorithm.
pub fn usable(keys: &[VerifyKey], algorithms: &[Algorithm]) -> bool {
    keys.iter()
        .any(|k| algorithms.iter().any(|a| a.family() == k.family))
}

/// The algorithms as configured, for logs.
pub fn names(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key families present, for logs.
pub fn families(keys: &[VerifyKey]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for k in keys {
        let name = match k.family {
            AlgorithmFamily::Hmac => "HMAC",
            AlgorithmFamily::Rsa => "RSA",
            AlgorithmFamily::Ec => "EC",
            AlgorithmFamily::Ed => "OKP",
        };
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    if seen.is_empty() {
        "no keys".into()
    } else {
        seen.join(", ")
    }
}

/// Tells a transport failure's cause from reqwest's error and its sources. The text kept
/// is the sources' (without reqwest's own, which repeats the URL).
fn classify(e: &reqwest::Error, url: &str) -> FetchError {
    let url = redact(url);
    if e.is_timeout() {
        return FetchError::Timeout { url };
    }
    let mut detail = Vec::new();
    let mut refused = false;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            if io.kind() == std::io::ErrorKind::TimedOut {
                return FetchError::Timeout { url };
            }
        }
        detail.push(s.to_string());
        source = s.source();
    }
    // Each level tends to repeat the next; the last is the most specific.
    let detail = detail.last().cloned().unwrap_or_else(|| {
        if e.is_body() || e.is_decode() {
            "the answer was cut short or unreadable".to_string()
        } else {
            "the request failed".to_string()
        }
    });
    let all = detail.to_ascii_lowercase();
    if refused {
        FetchError::Refused { url }
    } else if all.contains("dns error") || all.contains("failed to lookup address") {
        FetchError::Dns { url, detail }
    } else if e.is_connect()
        && (all.contains("certificate")
            || all.contains("tls")
            || all.contains("handshake")
            || all.contains("corrupt message")
            || all.contains("peer is incompatible")
            || all.contains("alert"))
    {
        FetchError::Tls { url, detail }
    } else {
        FetchError::Transport { url, detail }
    }
}

/// `max-age` of a Cache-Control value.
pub fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn client(timeout_ms: u64) -> reqwest::Client {
        crate::crypto::install_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .build()
            .unwrap()
    }

    /// A loopback server answering every connection with `response` verbatim (or never
    /// answering when `None`). Returns its address.
    async fn serve(response: Option<&'static str>) -> std::net::SocketAddr {
        serve_with(move |_| response).await
    }

    /// [`serve`] with a response made knowing the server's own address.
    async fn serve_with(
        response: impl FnOnce(std::net::SocketAddr) -> Option<&'static str>,
    ) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let response = response(addr);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                match response {
                    Some(r) => {
                        let _ = conn.write_all(r.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    }
                    None => held.push(conn),
                }
            }
        });
        addr
    }

    fn http(status: &str, body: &str) -> &'static str {
        Box::leak(
            format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        )
    }

    #[tokio::test]
    async fn each_failure_has_its_cause() {
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let silent = serve(None).await;
        let failing = serve(Some(http("503 Service Unavailable", "down"))).await;
        let garbage = serve(Some(http("200 OK", "<html>login</html>"))).await;
        let no_keys = serve(Some(http("200 OK", r#"{"keys":[]}"#))).await;
        let cases = [
            (format!("http://{refused}/jwks"), "connection_refused"),
            (format!("http://{silent}/jwks"), "timeout"),
            (format!("http://{failing}/jwks"), "http_status"),
            (format!("http://{garbage}/jwks"), "parse"),
            (format!("http://{no_keys}/jwks"), "parse"),
            // TLS spoken to a plain HTTP server
            (format!("https://{failing}/jwks"), "tls"),
            // RFC 6761: .invalid never resolves
            ("http://tokengate-test.invalid/jwks".to_string(), "dns"),
        ];
        for (url, cause) in cases {
            let e = jwks(&client(1_500), &url, &[Algorithm::RS256])
                .await
                .err()
                .unwrap_or_else(|| panic!("{url} fetched"));
            assert_eq!(e.cause(), cause, "{url}: {e}");
            assert!(e.to_string().starts_with(cause), "{e}");
        }
    }

    fn rsa_jwks() -> &'static str {
        let pem = include_bytes!("../../../../tests/fixtures/keys/rsa-private.pem");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("r".into());
        let set = serde_json::json!({ "keys": [jwk] });
        Box::leak(set.to_string().into_boxed_str())
    }

    #[tokio::test]
    async fn a_set_without_a_key_for_the_algorithms_is_refused_naming_them() {
        let addr = serve(Some(http("200 OK", rsa_jwks()))).await;
        let url = format!("http://{addr}/jwks");
        let e = jwks(&client(1_500), &url, &[Algorithm::ES256, Algorithm::EdDSA])
            .await
            .err()
            .expect("refused");
        assert_eq!(e.cause(), "no_usable_key");
        let text = e.to_string();
        assert!(
            text.contains("ES256, EdDSA") && text.contains("RSA"),
            "{text}"
        );
        // the same set is fine for RS256
        let (keys, _) = jwks(&client(1_500), &url, &[Algorithm::RS256])
            .await
            .unwrap();
        assert_eq!(keys.len(), 1);
    }

    #[tokio::test]
    async fn a_discovery_document_must_name_exactly_the_configured_issuer() {
        let own = |addr| {
            let doc = format!(r#"{{"issuer":"http://{addr}","jwks_uri":"http://{addr}/jwks"}}"#);
            Some(http("200 OK", &doc))
        };
        let addr = serve_with(own).await;
        let issuer = format!("http://{addr}");
        assert_eq!(
            discover(&client(1_500), &issuer).await,
            Ok(format!("{issuer}/jwks"))
        );
        // same server, other spellings of "the same" issuer: each is another issuer
        for configured in [
            format!("{issuer}/"),
            format!("http://localhost:{}", addr.port()),
        ] {
            let e = discover(&client(1_500), &configured)
                .await
                .err()
                .unwrap_or_else(|| panic!("{configured} accepted"));
            assert_eq!(e.cause(), "issuer_mismatch", "{e}");
            assert!(e.to_string().contains(&issuer), "{e}");
        }
        // a document naming some other host
        let doc = r#"{"issuer":"https://evil.test","jwks_uri":"https://evil.test/jwks"}"#;
        let addr = serve(Some(http("200 OK", doc))).await;
        let e = discover(&client(1_500), &format!("http://{addr}"))
            .await
            .expect_err("refused");
        assert_eq!(e.cause(), "issuer_mismatch", "{e}");
        // and documents that are not discovery documents at all
        for body in [r#"{"jwks_uri":"http://x/jwks"}"#, "[]", "<html>"] {
            let addr = serve(Some(http("200 OK", body))).await;
            let e = discover(&client(1_500), &format!("http://{addr}"))
                .await
                .expect_err("refused");
            assert_eq!(e.cause(), "parse", "{body}: {e}");
        }
    }

    #[test]
    fn logged_urls_carry_no_credentials_or_query() {
        assert_eq!(
            redact("https://user:s3cret@idp.test/jwks?api_key=k3y#frag"),
            "https://idp.test/jwks"
        );
        assert_eq!(redact("not a url"), "(invalid URL)");
    }
}
