//! Issuer namespaces of revocation identifiers (issue 13).
//!
//! Two trusted issuers may both have a user `alice` or a token `jti` `42` that are not
//! the same thing. Every identifier revocation stores is therefore qualified by the
//! subject namespace of the provider that verified the token: `{namespace}:{id}`. The
//! qualification happens once, when a token is verified (or when an operator names a
//! provider); below that, the cache, the stores and the events treat these scoped ids as
//! opaque strings, so they cannot mix namespaces up even by mistake.
//!
//! A namespace never contains `:`, so the first `:` of a scoped id ends the namespace
//! and everything after it is the identifier as the token carried it, whatever it
//! contains.

/// The longest namespace: it is part of every key and event.
pub const MAX_NAMESPACE: usize = 64;

/// Whether `s` may be a subject namespace: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_namespace(s: &str) -> bool {
    (1..=MAX_NAMESPACE).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `{namespace}:{id}`.
pub fn scoped(namespace: &str, id: &str) -> String {
    let mut s = String::with_capacity(namespace.len() + 1 + id.len());
    s.push_str(namespace);
    s.push(':');
    s.push_str(id);
    s
}

/// A scoped id's namespace and raw identifier; `None` when `scoped` has no namespace.
pub fn split(scoped: &str) -> Option<(&str, &str)> {
    scoped.split_once(':')
}

/// Why an operator's choice of namespace was refused (the message of a 400 or CLI
/// error about `provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    Unknown,
    Ambiguous,
}

impl Unresolved {
    pub const fn message(self) -> &'static str {
        match self {
            Unresolved::Unknown => "not a configured provider",
            Unresolved::Ambiguous => {
                "required: several subject namespaces are configured; name the provider whose users and tokens are meant"
            }
        }
    }
}

/// The namespace an operator means, from `(provider name, namespace)` pairs: the named
/// provider's, or with no name the only namespace there is. Guessing among several
/// would revoke the wrong issuer's user.
pub fn resolve<'a, I>(providers: I, named: Option<&str>) -> Result<&'a str, Unresolved>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut providers = providers.into_iter();
    if let Some(name) = named {
        return providers
            .find(|(n, _)| *n == name)
            .map(|(_, ns)| ns)
            .ok_or(Unresolved::Unknown);
    }
    let first = providers
        .next()
        .map(|(_, ns)| ns)
        .ok_or(Unresolved::Unknown)?;
    if providers.all(|(_, ns)| ns == first) {
        Ok(first)
    } else {
        Err(Unresolved::Ambiguous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_short_plain_names_without_a_colon() {
        for ok in ["dev", "idp.example-com_2", &"a".repeat(64)] {
            assert!(valid_namespace(ok), "{ok}");
        }
        for bad in ["", "a:b", "a b", "ä", "a/b", &"a".repeat(65)] {
            assert!(!valid_namespace(bad), "{bad}");
        }
    }

    #[test]
    fn a_provider_must_be_named_when_namespaces_differ() {
        let one = [("a", "idp"), ("b", "idp")];
        assert_eq!(resolve(one, None), Ok("idp"));
        assert_eq!(resolve(one, Some("b")), Ok("idp"));
        let two = [("a", "a"), ("b", "b")];
        assert_eq!(resolve(two, None), Err(Unresolved::Ambiguous));
        assert_eq!(resolve(two, Some("b")), Ok("b"));
        assert_eq!(resolve(two, Some("c")), Err(Unresolved::Unknown));
        // a namespace is not a provider name
        assert_eq!(
            resolve([("a", "idp")], Some("idp")),
            Err(Unresolved::Unknown)
        );
    }

    #[test]
    fn the_first_colon_ends_the_namespace() {
        let s = scoped("dev", "urn:user:1");
        assert_eq!(s, "dev:urn:user:1");
        assert_eq!(split(&s), Some(("dev", "urn:user:1")));
        assert_eq!(split("bare"), None);
    }
}
