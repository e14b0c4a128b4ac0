//! Route rules (SPEC §2 steps 1 and 5): which requests are exempt, and what an allowed
//! token must carry on a route. Normalised once at load; matching borrows the request.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::config;
use crate::jwt::Claims;

#[derive(Debug, Clone)]
pub struct Route {
    prefix: String,
    /// Upper-case; empty = every method.
    methods: Vec<String>,
    /// Lower-case host, or `*.suffix`; `None` = every host.
    host: Option<String>,
    pub exempt: bool,
    scopes: Vec<String>,
    roles: Vec<String>,
    claims: BTreeMap<String, String>,
}

impl Route {
    pub fn from_config(r: &config::Route) -> Self {
        Route {
            prefix: r.path_prefix.clone(),
            methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            exempt: r.exempt,
            scopes: r.require_scopes.clone(),
            roles: r.require_roles.clone(),
            claims: r.require_claims.clone(),
        }
    }

    fn matches(&self, method: &str, host: Option<&str>, path: &str) -> bool {
        path.starts_with(&self.prefix)
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self
                .host
                .as_deref()
                .is_none_or(|want| host.is_some_and(|h| host_matches(want, h)))
    }
}

/// `want` is lower-case; `host` may carry a port and any case.
fn host_matches(want: &str, host: &str) -> bool {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    match want.strip_prefix("*.") {
        Some(suffix) => host.len().checked_sub(suffix.len() + 1).is_some_and(|i| {
            host.as_bytes()[i] == b'.' && host[i + 1..].eq_ignore_ascii_case(suffix)
        }),
        None => host.eq_ignore_ascii_case(want),
    }
}

/// The first rule that matches, if any.
fn find<'r>(
    routes: &'r [Route],
    method: &str,
    host: Option<&str>,
    path: &str,
) -> Option<&'r Route> {
    routes.iter().find(|r| r.matches(method, host, path))
}

/// The path as an origin server is likely to resolve it: percent-decoded, `\` read as
/// `/`, repeated slashes merged, `.` and `..` segments resolved. Borrowed when there is
/// nothing to do, which is the common case.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if !path.contains(['%', '\\']) && !path.contains("//") && !path.contains("/.") {
        return Cow::Borrowed(path);
    }
    let decoded = super::extract::percent_decode(path).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    if decoded.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// The rules a request falls under. Matched against the path as sent *and* against its
/// normalised form, because the proxy and the service behind tokengate may read the
/// path either way: a request is exempt only when both forms are exempt, and the
/// requirements of both apply. `/public/../admin` and `/%61dmin` cannot dodge a rule.
pub struct Matched<'r> {
    raw: Option<&'r Route>,
    normalized: Option<&'r Route>,
}

impl<'r> Matched<'r> {
    pub fn find(routes: &'r [Route], method: &str, host: Option<&str>, path: &str) -> Self {
        let raw = find(routes, method, host, path);
        let normalized = match normalize(path) {
            Cow::Borrowed(_) => raw,
            Cow::Owned(n) => find(routes, method, host, &n),
        };
        Matched { raw, normalized }
    }

    pub fn exempt(&self) -> bool {
        self.raw.is_some_and(|r| r.exempt) && self.normalized.is_some_and(|r| r.exempt)
    }

    fn routes(&self) -> impl Iterator<Item = &'r Route> {
        let second = match (self.raw, self.normalized) {
            (Some(a), Some(b)) if std::ptr::eq(a, b) => None,
            (_, b) => b,
        };
        self.raw.into_iter().chain(second)
    }

    /// What the token lacks, as the `scope` parameter of the challenge: the required
    /// scopes when any requirement (scope, role or claim) is unmet, else `None`.
    pub fn unmet(
        &self,
        from_envoy: Option<&str>,
        claims: Option<&Claims>,
        roles_claim: &str,
    ) -> Option<String> {
        let mut scopes: Vec<&str> = self
            .routes()
            .flat_map(|r| r.scopes.iter().map(String::as_str))
            .chain(from_envoy.into_iter().flat_map(|s| s.split(' ')))
            .filter(|s| !s.is_empty())
            .collect();
        scopes.dedup();
        let has = |f: &dyn Fn(&Claims) -> bool| claims.is_some_and(f);
        let mut ok = scopes.iter().all(|s| has(&|c| c.has_scope(s)));
        for r in self.routes() {
            ok &= r
                .roles
                .iter()
                .all(|role| has(&|c| c.has_value(roles_claim, role)));
            ok &= r
                .claims
                .iter()
                .all(|(path, v)| has(&|c| c.has_value(path, v)));
        }
        (!ok).then(|| scopes.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_resolves_what_servers_resolve() {
        for (raw, want) in [
            ("/api/items", "/api/items"),
            ("/public/../api/items", "/api/items"),
            ("/public/%2e%2e/api/items", "/api/items"),
            ("/public/..%2fapi/items", "/api/items"),
            ("/%61dmin/users", "/admin/users"),
            ("//admin/users", "/admin/users"),
            ("/api/./x/", "/api/x/"),
            ("/a\\..\\admin", "/admin"),
            ("/../../etc", "/etc"),
        ] {
            assert_eq!(normalize(raw), want, "{raw}");
        }
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard_and_ignore_ports() {
        assert!(host_matches("api.example.com", "API.example.com:8443"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "aexample.com"));
        assert!(!host_matches("api.example.com", "api.example.com.evil"));
    }
}
