//! Step 2 of the pipeline: find the token in the request without copying its headers.
//!
//! Each transport implements [`Headers`] over its own header representation (Envoy's
//! `headers` map or raw `header_map`, an `http::HeaderMap`), so lookups borrow from the
//! request as it arrived.

use std::borrow::Cow;

use crate::reason::Reason;

/// Read access to request headers by lower-case name.
pub trait Headers {
    /// Every value of the header `name` (lower-case), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl Headers for http::HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).iter().map(|v| v.as_bytes())
    }
}

/// A token source: the configuration's own type, its header name lower-cased when it
/// was parsed.
pub use crate::config::TokenSource as Source;

/// Finds the token: the first source that has one wins. A header sent more than once,
/// or not valid UTF-8, or a scheme with nothing after it, is `malformed`: an ambiguous
/// credential is refused rather than guessed at.
pub fn token<'a, H: Headers>(
    sources: &'a [Source],
    headers: &'a H,
    query: Option<&'a str>,
) -> Result<Cow<'a, str>, Reason> {
    token_and_source(sources, headers, query).map(|(t, _)| t)
}

/// [`token`], and the source it came from.
pub fn token_and_source<'a, H: Headers>(
    sources: &'a [Source],
    headers: &'a H,
    query: Option<&'a str>,
) -> Result<(Cow<'a, str>, &'a Source), Reason> {
    for source in sources {
        let found = match source {
            Source::Header { name, scheme } => from_header(headers, name, scheme.as_deref())?,
            Source::Cookie(name) => from_cookie(headers, name)?,
            Source::Query(name) => match query {
                Some(q) => from_query(q, name)?,
                None => None,
            },
        };
        if let Some(token) = found {
            return Ok((token, source));
        }
    }
    Err(Reason::MissingToken)
}

pub(crate) fn from_header<'a, H: Headers>(
    headers: &'a H,
    name: &'a str,
    scheme: Option<&str>,
) -> Result<Option<Cow<'a, str>>, Reason> {
    let mut values = headers.values(name);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reason::Malformed);
    }
    let value = std::str::from_utf8(value).map_err(|_| Reason::Malformed)?;
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let token = match scheme {
        None => value,
        Some(scheme) => {
            let Some((given, rest)) = value.split_once([' ', '\t']) else {
                // Just the scheme word (or a bare token where a scheme was expected).
                return if value.eq_ignore_ascii_case(scheme) {
                    Err(Reason::Malformed)
                } else {
                    Ok(None)
                };
            };
            if !given.eq_ignore_ascii_case(scheme) {
                // Another scheme (e.g. Basic): not ours to judge.
                return Ok(None);
            }
            rest.trim_start_matches([' ', '\t'])
        }
    };
    if token.is_empty() {
        return Err(Reason::Malformed);
    }
    Ok(Some(Cow::Borrowed(token)))
}

fn from_cookie<'a, H: Headers>(
    headers: &'a H,
    name: &'a str,
) -> Result<Option<Cow<'a, str>>, Reason> {
    let mut found = None;
    for value in headers.values("cookie") {
        let value = std::str::from_utf8(value).map_err(|_| Reason::Malformed)?;
        for pair in value.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        return Err(Reason::Malformed);
                    }
                    found = Some(Cow::Borrowed(v.trim_matches('"')));
                }
            }
        }
    }
    Ok(found)
}

/// The token parameter; sent twice is `malformed`, as a repeated header or cookie is:
/// the service behind may read the other copy.
fn from_query<'a>(query: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, Reason> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k) == name {
            if found.is_some() {
                return Err(Reason::Malformed);
            }
            found = Some(percent_decode(v));
        }
    }
    Ok(found)
}

/// Whether a request that carries its token in a cookie was sent by a page allowed to
/// use it (docs/security.md, "Cookie tokens and CSRF"): a browser attaches cookies to a
/// cross-site form post or a simple `fetch` unasked, but sends a non-simple content
/// type only after a CORS preflight the site allowed, and always names the `Origin` of
/// a cross-site POST.
pub fn same_site_intent<H: Headers>(headers: &H, allowed_origins: &[String]) -> bool {
    let one = |name: &'static str| {
        let mut v = headers.values(name);
        match (v.next(), v.next()) {
            (Some(x), None) => std::str::from_utf8(x).ok(),
            _ => None,
        }
    };
    let origin_allowed = one("origin").is_some_and(|o| {
        allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(o.trim()))
    });
    let non_simple_type = one("content-type").is_some_and(|t| {
        let essence = t.split(';').next().unwrap_or("").trim();
        !essence.is_empty()
            && ![
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "text/plain",
            ]
            .iter()
            .any(|simple| essence.eq_ignore_ascii_case(simple))
    });
    origin_allowed || non_simple_type
}

/// Minimal percent-decoding (query values, paths for route matching); borrows when there
/// is nothing to decode. Invalid UTF-8 after decoding is replaced, never an error.
pub(crate) fn percent_decode(v: &str) -> Cow<'_, str> {
    if !v.contains('%') {
        return Cow::Borrowed(v);
    }
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn bearer() -> Vec<Source> {
        vec![Source::Header {
            name: "authorization".into(),
            scheme: Some("Bearer".into()),
        }]
    }

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn scheme_is_case_insensitive_and_whitespace_tolerated() {
        for v in [
            "Bearer abc",
            "bearer abc",
            "BEARER   abc",
            "Bearer\tabc",
            " Bearer abc ",
        ] {
            let h = map(&[("authorization", v)]);
            assert_eq!(token(&bearer(), &h, None).unwrap(), "abc", "{v:?}");
        }
    }

    #[test]
    fn other_scheme_is_no_token_and_empty_bearer_is_malformed() {
        let h = map(&[("authorization", "Basic dXNlcg==")]);
        assert_eq!(token(&bearer(), &h, None), Err(Reason::MissingToken));
        let h = map(&[("authorization", "Bearer")]);
        assert_eq!(token(&bearer(), &h, None), Err(Reason::Malformed));
        let h = map(&[("authorization", "Bearer   ")]);
        assert_eq!(token(&bearer(), &h, None), Err(Reason::Malformed));
    }

    #[test]
    fn cookie_requests_need_a_non_simple_type_or_an_allowed_origin() {
        let allowed = vec!["https://app.example.com".to_string()];
        for (pairs, ok) in [
            (vec![], false),
            (vec![("content-type", "text/plain")], false),
            (
                vec![("content-type", "application/x-www-form-urlencoded")],
                false,
            ),
            (
                vec![("content-type", "Multipart/Form-Data; boundary=x")],
                false,
            ),
            (vec![("content-type", "application/json")], true),
            (vec![("origin", "https://evil.example")], false),
            (vec![("origin", "https://app.example.com")], true),
            (
                vec![
                    ("origin", "https://app.example.com"),
                    ("origin", "https://evil.example"),
                ],
                false,
            ),
            (
                vec![
                    ("content-type", "application/json"),
                    ("content-type", "text/plain"),
                ],
                false,
            ),
        ] {
            assert_eq!(same_site_intent(&map(&pairs), &allowed), ok, "{pairs:?}");
        }
    }

    #[test]
    fn two_authorization_headers_are_malformed() {
        let h = map(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(token(&bearer(), &h, None), Err(Reason::Malformed));
    }

    #[test]
    fn cookie_and_query_sources_in_order() {
        let sources = vec![
            bearer().remove(0),
            Source::Cookie("at".into()),
            Source::Query("access_token".into()),
        ];
        let h = map(&[("cookie", "x=1; at=tok; y=2")]);
        assert_eq!(token(&sources, &h, None).unwrap(), "tok");
        let h = map(&[]);
        assert_eq!(
            token(&sources, &h, Some("a=1&access_token=q%2Eb")).unwrap(),
            "q.b"
        );
        assert_eq!(token(&sources, &h, Some("a=1")), Err(Reason::MissingToken));
        for twice in [
            "access_token=a&access_token=b",
            "access_token=a&access_token=a",
            "access_token=a&%61ccess_token=b",
            "access_token=a&access_token",
        ] {
            assert_eq!(
                token(&sources, &h, Some(twice)),
                Err(Reason::Malformed),
                "{twice}"
            );
        }
    }
}
