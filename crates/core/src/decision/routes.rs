//! Route rules (docs/spec.md §2 steps 1 and 5): which requests are exempt, and what an allowed
//! token must carry on a route. Normalised once at load; matching borrows the request.
//!
//! A request is judged in every form a server behind tokengate might give it: the path
//! as sent and its canonical form ([`canonical`]), the request's method and any method a
//! client asked for through an override header. It is exempt only when every form is
//! exempt, and the requirements of every form apply: the stricter answer wins.

use std::collections::BTreeMap;

use super::canonical;
use crate::config;
use crate::jwt::Claims;

#[derive(Debug, Clone)]
pub struct Route {
    prefix: String,
    /// Upper-case; empty = every method.
    methods: Vec<String>,
    /// Canonical host (lower-case, no port or trailing dot), or `*.suffix`; `None` =
    /// every host.
    host: Option<String>,
    pub exempt: bool,
    scopes: Vec<String>,
    roles: Vec<String>,
    claims: BTreeMap<String, String>,
    sender_constraint: Option<crate::config::SenderConstraint>,
}

impl Route {
    pub fn from_config(r: &config::Route) -> Self {
        Route {
            prefix: r.path_prefix.clone(),
            methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            host: r.host.as_deref().map(|h| canonical::host(h).into_owned()),
            exempt: r.exempt,
            scopes: r.require_scopes.clone(),
            roles: r.require_roles.clone(),
            claims: r.require_claims.clone(),
            sender_constraint: r.sender_constraint,
        }
    }

    /// `host` is canonical already.
    fn matches(&self, method: &str, host: Option<&str>, path: &str, ci: bool) -> bool {
        canonical::prefix_matches(&self.prefix, path, ci)
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self
                .host
                .as_deref()
                .is_none_or(|want| host.is_some_and(|h| host_matches(want, h)))
    }
}

/// `want` and `host` are canonical (lower-case, no port, no trailing dot).
fn host_matches(want: &str, host: &str) -> bool {
    match want.strip_prefix("*.") {
        Some(suffix) => host
            .len()
            .checked_sub(suffix.len() + 1)
            .is_some_and(|i| host.as_bytes()[i] == b'.' && &host[i + 1..] == suffix),
        None => host == want,
    }
}

/// The rule set: the rules in order and how they compare paths.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    rules: Vec<Route>,
    /// For backends that ignore case in paths (`route_matching.case_insensitive`).
    case_insensitive: bool,
}

impl Routes {
    pub fn new(rules: Vec<Route>, case_insensitive: bool) -> Self {
        Routes {
            rules,
            case_insensitive,
        }
    }

    /// The first rule that matches, if any.
    fn find(&self, method: &str, host: Option<&str>, path: &str) -> Option<&Route> {
        self.rules
            .iter()
            .find(|r| r.matches(method, host, path, self.case_insensitive))
    }
}

/// Most distinct rules one request can fall under before it is refused as too
/// ambiguous to judge (a rule set would need that many overlapping rules).
const MAX_RULES: usize = 8;

/// The rules a request falls under, in each of its forms.
pub struct Matched<'r> {
    exempt: bool,
    found: [Option<&'r Route>; MAX_RULES],
}

impl<'r> Matched<'r> {
    /// `methods` are the request's method and any override; `paths` every form of its
    /// path ([`canonical::forms`]); `host` is canonical. `None` when the forms fall
    /// under more distinct rules than can be held.
    pub fn find<'p>(
        routes: &'r Routes,
        methods: &[&str],
        host: Option<&str>,
        paths: impl Iterator<Item = &'p str> + Clone,
    ) -> Option<Self> {
        let mut m = Matched {
            exempt: true,
            found: [None; MAX_RULES],
        };
        for method in methods {
            for path in paths.clone() {
                let route = routes.find(method, host, path);
                m.exempt &= route.is_some_and(|r| r.exempt);
                if let Some(r) = route {
                    if !m.found.iter().flatten().any(|seen| std::ptr::eq(*seen, r)) {
                        *m.found.iter_mut().find(|slot| slot.is_none())? = Some(r);
                    }
                }
            }
        }
        Some(m)
    }

    /// Exempt only when every form of the request lands on an exempt rule.
    pub fn exempt(&self) -> bool {
        self.exempt
    }

    /// Each distinct rule that any form of the request matched.
    fn routes(&self) -> impl Iterator<Item = &'r Route> + '_ {
        self.found.iter().flatten().copied()
    }

    /// The strictest `sender_constraint` of the rules the request falls under.
    pub fn sender_constraint(&self) -> crate::config::SenderConstraint {
        self.routes()
            .filter_map(|r| r.sender_constraint)
            .max()
            .unwrap_or_default()
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
    fn hosts_match_exactly_or_by_wildcard() {
        assert!(host_matches("api.example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "aexample.com"));
        assert!(!host_matches("api.example.com", "api.example.com.evil"));
    }
}
