//! The `htu` comparison of RFC 9449 §4.3 (check 9): the proof's URI and the request's,
//! each without query and fragment, compared after RFC 3986 §6.2.2 syntax-based and
//! §6.2.3 scheme-based normalisation, so that two spellings of one URI compare equal
//! and nothing else does.
//!
//! What is normalised: scheme and host lower-cased; the default port (80 for http, 443
//! for https) and an empty port dropped; an empty path read as `/`; percent-encodings
//! upper-cased, and decoded only where they encode an unreserved character (`%7E` is
//! `~`, `%2F` stays `%2F`); dot segments removed (RFC 3986 §5.2.4). Nothing else is
//! decoded: `%2F` and `/` are different paths to a server, and a proof made for one must
//! not be accepted for the other. The request side is built from the path as the proxy
//! received it, not from the canonical form route rules use
//! ([`crate::decision::canonical`]), which decodes more than a proof may.

/// The normalised form of an absolute `http(s)` URI, without query and fragment; `None`
/// for anything else (a relative reference, another scheme, userinfo, an empty host).
pub fn normalise(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else {
        return None;
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    from_parts(scheme, authority, path)
}

/// The normalised URI of a request: its scheme, its authority (`Host`), and its path
/// (the query, if still attached, is cut off).
pub fn of_request(scheme: &str, authority: &str, path: &str) -> Option<String> {
    let scheme = match scheme {
        s if s.eq_ignore_ascii_case("https") => "https",
        s if s.eq_ignore_ascii_case("http") => "http",
        _ => return None,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    if !path.is_empty() && !path.starts_with('/') {
        return None;
    }
    from_parts(scheme, authority, path)
}

fn from_parts(scheme: &'static str, authority: &str, path: &str) -> Option<String> {
    if authority.is_empty() || authority.contains(['@', ' ', '\t']) {
        return None;
    }
    let (host, port) = split_port(authority)?;
    if host.is_empty() {
        return None;
    }
    let default = if scheme == "https" { "443" } else { "80" };
    let mut out = String::with_capacity(scheme.len() + 3 + authority.len() + path.len() + 1);
    out.push_str(scheme);
    out.push_str("://");
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    if let Some(port) = port.filter(|p| !p.is_empty() && *p != default) {
        out.push(':');
        out.push_str(port);
    }
    let path = percent_normalise(path);
    out.push_str(&remove_dots(if path.is_empty() { "/" } else { &path }));
    Some(out)
}

/// `host[:port]`, `[v6][:port]`; the port digits only.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (h, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    // A port with leading zeros names the same port: `:0443` is `:443`.
    let port = port.map(|p| {
        let t = p.trim_start_matches('0');
        if t.is_empty() && !p.is_empty() {
            "0"
        } else {
            t
        }
    });
    Some((host, port))
}

/// Upper-case hex in every percent-encoding; unreserved characters decoded.
fn percent_normalise(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = (hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8;
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    out.push(v as char);
                } else {
                    out.push('%');
                    out.push(h.to_ascii_uppercase() as char);
                    out.push(l.to_ascii_uppercase() as char);
                }
                i += 3;
            }
            _ => {
                // Copy one whole character (the path may hold non-ASCII as sent).
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&path[i..i + len]);
                i += len;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dots(path: &str) -> String {
    if !path.split('/').any(|s| s == "." || s == "..") {
        return path.to_string();
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = matches!(seg, "." | "..");
        match seg {
            "." => {}
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
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_uri_are_equal() {
        let want = Some("https://api.example.com/a/b~c".to_string());
        for uri in [
            "https://api.example.com/a/b~c",
            "HTTPS://API.Example.COM/a/b~c",
            "https://api.example.com:443/a/b~c",
            "https://api.example.com:0443/a/b~c",
            "https://api.example.com/a/b%7ec",
            "https://api.example.com/a/b%7Ec?x=1#frag",
            "https://api.example.com/a/./x/../b~c",
        ] {
            assert_eq!(normalise(uri), want, "{uri}");
        }
        assert_eq!(
            normalise("http://h:80").as_deref(),
            Some("http://h/"),
            "empty path is /"
        );
        assert_eq!(
            of_request("https", "API.example.com:443", "/a/b%7ec?q=1").as_deref(),
            Some("https://api.example.com/a/b~c")
        );
    }

    #[test]
    fn different_uris_stay_different() {
        let base = normalise("https://api.example.com/a/b").unwrap();
        for uri in [
            "http://api.example.com/a/b",
            "https://api.example.com:8443/a/b",
            "https://api.example.com/a%2Fb",
            "https://api.example.com/A/b",
            "https://api.example.com/a/b/",
            "https://api.example.org/a/b",
            "https://api.example.com.evil/a/b",
        ] {
            assert_ne!(normalise(uri).as_deref(), Some(base.as_str()), "{uri}");
        }
        assert_eq!(
            normalise("https://h/a%2fb").as_deref(),
            Some("https://h/a%2Fb")
        );
    }

    #[test]
    fn what_is_not_an_absolute_http_uri_is_refused() {
        for uri in [
            "/a/b",
            "ftp://h/a",
            "https://user@h/a",
            "https:///a",
            "https://h:x/a",
            "//h/a",
            "",
        ] {
            assert_eq!(normalise(uri), None, "{uri}");
        }
        assert_eq!(of_request("https", "h", "a"), None);
        assert_eq!(of_request("gopher", "h", "/"), None);
    }
}
