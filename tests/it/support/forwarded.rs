//! How each proxy that tokengate's HTTP-mode check can trust names the original request,
//! and the lies a client can tell in those same headers. Written once, so that every
//! test plays a proxy the way the proxy really asks, and every "the client cannot pick
//! the route" test tries the same whole set of headers.

/// A proxy asking the HTTP-mode check (`http_check.proxy` names which one is trusted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Proxy {
    /// Envoy's HTTP ext_authz: the original method and path under `/authz`.
    EnvoyHttp,
    /// nginx `auth_request`: `GET /authz`, the original in `X-Original-{Method,URI,Host}`.
    Nginx,
    /// ingress-nginx `auth-url`: `GET /authz`, `X-Original-Method` and `X-Original-URL`.
    IngressNginx,
    /// Traefik `forwardAuth`: `GET /authz`, the original in `X-Forwarded-*`.
    Traefik,
}

/// The subrequest `proxy` sends tokengate for a client's `method` on `host` with
/// `target` (path and query as the client wrote them): its method, its request target
/// on tokengate, and the headers the proxy sets itself (`host` first; the client's own
/// headers go after them).
pub fn subrequest(
    proxy: Proxy,
    method: &str,
    host: &str,
    target: &str,
) -> (String, String, Vec<(&'static str, String)>) {
    let get = |headers: Vec<(&'static str, String)>| {
        let mut all = vec![("host", "tokengate".to_string())];
        all.extend(headers);
        ("GET".to_string(), "/authz".to_string(), all)
    };
    match proxy {
        Proxy::EnvoyHttp => (
            method.to_string(),
            format!("/authz{target}"),
            vec![("host", host.to_string())],
        ),
        Proxy::Nginx => get(vec![
            ("x-original-method", method.to_string()),
            ("x-original-uri", target.to_string()),
            ("x-original-host", host.to_string()),
        ]),
        Proxy::IngressNginx => get(vec![
            ("x-original-method", method.to_string()),
            ("x-original-url", format!("https://{host}{target}")),
        ]),
        Proxy::Traefik => get(vec![
            ("x-forwarded-method", method.to_string()),
            ("x-forwarded-uri", target.to_string()),
            ("x-forwarded-host", host.to_string()),
            ("x-forwarded-proto", "https".to_string()),
        ]),
    }
}

/// Every header any supported proxy uses to name the original request, each claiming
/// the exempt `/public` prefix, the host `www.example.com` and the method `GET`: sent
/// by a client, none may change what tokengate checks (except as a second value of the
/// trusted proxy's own header, which is refused).
pub const LIES: [(&str, &str); 8] = [
    ("x-original-uri", "/public/x"),
    ("x-original-method", "GET"),
    ("x-original-host", "www.example.com"),
    ("x-original-url", "https://www.example.com/public/x"),
    ("x-forwarded-uri", "/public/x"),
    ("x-forwarded-method", "GET"),
    ("x-forwarded-host", "www.example.com"),
    ("x-forwarded-prefix", "/public"),
];
