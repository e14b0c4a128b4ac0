//! The one canonical form of a request's path, host and methods that every route rule
//! reads (docs/security.md, "Canonical requests"). Both transports reach it through
//! [`Engine::check_with`](super::Engine::check_with), so a path, host or method cannot
//! be judged one way over gRPC and another over HTTP.
//!
//! The path is resolved the way the common application servers resolve it (Tomcat, Jetty,
//! Spring, Express, Go's `net/http` each do some of this; together they do all of it):
//! percent-decoded once, `\` read as `/`, path parameters (`;…`) dropped from every
//! segment (so `..;` is `..`), dot segments removed as RFC 3986 §5.2.4 says, repeated
//! slashes merged. What a server might still decode a second time — an encoded dot,
//! slash or backslash left after one decoding — or what servers disagree about (control
//! bytes, a fragment, a relative path) is refused as `malformed_request` rather than
//! guessed at. Route rules then match both this form and the path as sent, the stricter
//! answer winning ([`super::routes::Matched`]).

use std::borrow::Cow;

use super::extract::{percent_decode, Headers};
use crate::reason::Reason;

/// Headers through which frameworks let a client pick another method than the request
/// line's (Rails/Laravel `_method` aside, which lives in the query or body). When one is
/// present, the rules of both methods apply.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The query parameter some frameworks read as a method override.
pub const METHOD_OVERRIDE_PARAM: &str = "_method";

/// The methods whose rules apply: the request's own, then each override a client sent
/// (an override header, the `_method` query parameter). Written into `out`; returns how
/// many. An override sent twice (or as a list), empty, or not readable as text is
/// `malformed_request`.
pub fn methods<'a, H: Headers>(
    method: &'a str,
    headers: &'a H,
    query: Option<&'a str>,
    out: &mut [&'a str; 5],
) -> Result<usize, Reason> {
    out[0] = method;
    let mut n = 1;
    for name in METHOD_OVERRIDE_HEADERS {
        let mut values = headers.values(name);
        if let Some(v) = values.next() {
            if values.next().is_some() {
                return Err(Reason::MalformedRequest);
            }
            let v = std::str::from_utf8(v)
                .map_err(|_| Reason::MalformedRequest)?
                .trim();
            // Two methods merged into one value (`GET,DELETE`) are two overrides.
            if v.is_empty() || v.contains(',') {
                return Err(Reason::MalformedRequest);
            }
            out[n] = v;
            n += 1;
        }
    }
    let mut params = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(k, _)| *k == METHOD_OVERRIDE_PARAM);
    if let Some((_, v)) = params.next() {
        if params.next().is_some() || v.contains(['%', ',']) || v.is_empty() {
            return Err(Reason::MalformedRequest);
        }
        out[n] = v;
        n += 1;
    }
    Ok(n)
}

/// The forms a path may take on the way to a handler, in which every rule is tried: the
/// path as sent, and its resolution under each combination of the choices servers make
/// differently — percent-decode once or not, `\\` a separator or not, `;params` dropped
/// or not, empty segments merged or not (dot segments are always removed). The first
/// form after the raw one is [`path`]'s. A path that is already canonical has one form
/// and costs nothing.
pub enum Forms<'a> {
    One(&'a str),
    Many(Vec<String>),
}

impl Forms<'_> {
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        let (one, many) = match self {
            Forms::One(p) => (Some(*p), None),
            Forms::Many(v) => (None, Some(v.iter().map(String::as_str))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// The forms of `raw` (the path without its query string), or the refusal of a path
/// that cannot be judged.
pub fn forms(raw: &str) -> Result<Forms<'_>, Reason> {
    let raw = strip_absolute_form(raw);
    if raw.is_empty() {
        return Ok(Forms::One("/"));
    }
    if !raw.starts_with('/') {
        // `*` or a relative reference: no rule can be matched against it honestly.
        return Err(Reason::MalformedRequest);
    }
    if is_canonical(raw) {
        return Ok(Forms::One(raw));
    }
    let decoded = checked_decode(raw)?;
    let mut all = vec![raw.to_string()];
    for source in [decoded.as_ref(), raw] {
        for backslash in [true, false] {
            for params in [true, false] {
                for merge in [true, false] {
                    let form = resolve(source, backslash, params, merge);
                    if !all.contains(&form) {
                        all.push(form);
                    }
                }
            }
        }
    }
    Ok(Forms::Many(all))
}

/// The canonical path of `raw`: decoded once, `\\` a separator, `;params` dropped,
/// slashes merged, dot segments removed. Borrowed when the path is already canonical.
pub fn path(raw: &str) -> Result<Cow<'_, str>, Reason> {
    let raw = strip_absolute_form(raw);
    if raw.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if !raw.starts_with('/') {
        return Err(Reason::MalformedRequest);
    }
    if is_canonical(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = checked_decode(raw)?;
    Ok(Cow::Owned(resolve(&decoded, true, true, true)))
}

/// One percent-decoding, refusing what servers would read differently.
fn checked_decode(raw: &str) -> Result<Cow<'_, str>, Reason> {
    if raw.contains('#') {
        // A fragment never reaches a server from a browser; servers differ on whether
        // they cut it off or keep it in the path.
        return Err(Reason::MalformedRequest);
    }
    let decoded = percent_decode(raw);
    if decoded.bytes().any(|b| b.is_ascii_control()) || has_encoded_separator(&decoded) {
        return Err(Reason::MalformedRequest);
    }
    Ok(decoded)
}

/// Dot-segment removal (RFC 3986 §5.2.4) under one server's choices.
fn resolve(path: &str, backslash: bool, params: bool, merge: bool) -> String {
    let replaced;
    let path = if backslash && path.contains('\\') {
        replaced = path.replace('\\', "/");
        replaced.as_str()
    } else {
        path
    };
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        // Path parameters end at the next slash: `/a;x=1/b` is `/a/b`, `/..;/` is `/../`.
        let seg = if params {
            seg.split_once(';').map_or(seg, |(s, _)| s)
        } else {
            seg
        };
        trailing_slash = matches!(seg, "" | "." | "..");
        match seg {
            "." => {}
            "" if merge => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing_slash && !out.ends_with('/')) {
        out.push('/');
    }
    out
}

/// Whether a configured path prefix is already what [`path`] makes of it: rules are
/// written in the form they are matched in.
pub fn is_canonical_prefix(prefix: &str) -> bool {
    prefix.starts_with('/') && path(prefix).is_ok_and(|c| c == prefix)
}

/// Nothing to decode, resolve or merge, no parameter, no control byte.
fn is_canonical(p: &str) -> bool {
    let b = p.as_bytes();
    !b.iter()
        .any(|&c| matches!(c, b'%' | b'\\' | b';' | b'#') || c.is_ascii_control())
        && !p.contains("//")
        && !p.contains("/./")
        && !p.contains("/../")
        && !p.ends_with("/.")
        && !p.ends_with("/..")
}

/// `%2e`, `%2f` or `%5c` (any case) left after one decoding: a server that decodes again
/// would see a separator or a dot segment that the rules never saw.
fn has_encoded_separator(decoded: &str) -> bool {
    decoded.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c')
            )
    })
}

/// `http://host/path` (absolute-form, as a forward proxy may pass it) → `/path`.
fn strip_absolute_form(raw: &str) -> &str {
    // Compared as bytes: the path may hold non-ASCII (nginx passes it as typed), and a
    // string slice at a byte offset inside a character would panic.
    let lower_starts = |p: &str| {
        raw.as_bytes()
            .get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes()))
    };
    let rest = if lower_starts("http://") {
        &raw[7..]
    } else if lower_starts("https://") {
        &raw[8..]
    } else {
        return raw;
    };
    rest.find('/').map_or("", |i| &rest[i..])
}

/// The canonical host: lower-case, without port or trailing dot, so that
/// `API.example.com.:443` meets the rule for `api.example.com`.
pub fn host(raw: &str) -> Cow<'_, str> {
    let raw = raw.trim();
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080`
        rest.find(']').map_or(raw, |i| &raw[..i + 2])
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Whether `prefix` covers `path` on a segment boundary: `/healthz` covers `/healthz`
/// and `/healthz/…` but not `/healthz-x`; a prefix ending in `/` covers what is below it.
pub fn prefix_matches(prefix: &str, path: &str, case_insensitive: bool) -> bool {
    if path.len() < prefix.len() {
        return false;
    }
    let (head, tail) = path.split_at_checked(prefix.len()).unwrap_or(("", path));
    let same = if case_insensitive {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    same && (tail.is_empty() || prefix.ends_with('/') || tail.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Result<String, Reason> {
        path(p).map(|c| c.into_owned())
    }

    #[test]
    fn resolves_what_servers_resolve() {
        for (raw, want) in [
            ("/api/items", "/api/items"),
            ("", "/"),
            ("/", "/"),
            ("/public/../api/items", "/api/items"),
            ("/public/%2e%2e/api/items", "/api/items"),
            ("/public/..%2fapi/items", "/api/items"),
            ("/%61dmin/users", "/admin/users"),
            ("//admin/users", "/admin/users"),
            ("/api/./x/", "/api/x/"),
            ("/a\\..\\admin", "/admin"),
            ("/../../etc", "/etc"),
            ("/admin;jsessionid=1/users", "/admin/users"),
            ("/public/..;/admin", "/admin"),
            ("/public/..;x=1/admin", "/admin"),
            ("/admin;/", "/admin/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("http://evil/admin", "/admin"),
            ("HTTPS://evil", "/"),
            ("/%c3%a9t%c3%a9", "/été"),
            // found by the fuzz target: non-ASCII where `http://` would end
            ("/publi\u{fffd}c/..;/admin", "/admin"),
            ("/ééééé", "/ééééé"),
        ] {
            assert_eq!(canon(raw), Ok(want.to_string()), "{raw}");
        }
    }

    #[test]
    fn refuses_what_servers_might_read_twice_or_differently() {
        for raw in [
            "/public/%252e%252e/admin",
            "/public/%252fadmin",
            "/public/%255cadmin",
            "/a%00b",
            "/a%0d%0ab",
            "/a\tb",
            "/a#/../admin",
            "admin",
            "*",
        ] {
            assert_eq!(canon(raw), Err(Reason::MalformedRequest), "{raw:?}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_and_stable() {
        for p in ["/", "/api/items", "/a/b/", "/été", "/a.b/c..d/.e"] {
            assert!(matches!(path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
        for p in ["/a/../b", "//x", "/%41", "/a;b/c"] {
            let once = canon(p).unwrap();
            assert_eq!(canon(&once).unwrap(), once, "idempotent: {p}");
        }
    }

    #[test]
    fn forms_cover_servers_that_do_not_decode_strip_or_split_on_backslash() {
        let forms =
            |p: &str| -> Vec<String> { forms(p).unwrap().iter().map(str::to_string).collect() };
        // `..;` is a name to a server that keeps parameters
        assert!(forms("/p/../admin/..;/..").contains(&"/admin/".to_string()));
        // `%2e%2e` is a name to a server that does not decode
        assert!(forms("/p/../admin/%2e%2e/..").contains(&"/admin/".to_string()));
        // `\` is a name to a server that does not split on it
        assert!(forms("/%2e%2e%2fadmin/.\\%2E%2e")
            .iter()
            .any(|f| f.starts_with("/admin/")));
        // the path as sent is always one of them, the canonical form the next
        let f = forms("/public/../admin");
        assert_eq!(&f[..2], ["/public/../admin", "/admin"]);
        assert!(matches!(
            super::forms("/api/items"),
            Ok(Forms::One("/api/items"))
        ));
    }

    #[test]
    fn hosts_lose_case_port_and_trailing_dot() {
        for (raw, want) in [
            ("api.example.com", "api.example.com"),
            ("API.Example.com:8443", "api.example.com"),
            ("api.example.com.", "api.example.com"),
            ("api.example.com.:443", "api.example.com"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(host(raw), want, "{raw}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/healthz", "/healthz", false));
        assert!(prefix_matches("/healthz", "/healthz/live", false));
        assert!(!prefix_matches("/healthz", "/healthz-x", false));
        assert!(!prefix_matches("/healthz", "/health", false));
        assert!(prefix_matches("/public/", "/public/a", false));
        assert!(!prefix_matches("/public/", "/public", false));
        assert!(prefix_matches("/", "/anything", false));
        assert!(!prefix_matches("/Admin", "/admin", false));
        assert!(prefix_matches("/Admin", "/aDMIN/x", true));
        assert!(!prefix_matches("/é", "/\u{e9}x", false));
    }
}
