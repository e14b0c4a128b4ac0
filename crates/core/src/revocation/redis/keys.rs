//! The Redis key layout of docs/spec.md §3, in one place so the wire format is easy to review.
//!
//! Current layout: `{prefix}{kind}@{namespace}:{id}`, built from a scoped id
//! (`{namespace}:{id}`) without looking inside it. The layout before issuer namespaces
//! was `{prefix}{kind}:{id}`; it is still read during an upgrade and rewritten by
//! `tokengate migrate`. The two cannot be confused: after the kind, a legacy key has
//! `:` and a current one `@`, and kinds contain neither.

use crate::revocation::{scope, Kind};

/// Builds keys under the configured prefix (default `tokengate:`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The configured prefix (`tokengate:` by default).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}{kind}@{scoped}`: `tokengate:user@dev:alice` for user `alice` of
    /// namespace `dev`.
    pub fn key(&self, kind: Kind, scoped: &str) -> String {
        format!("{}{}@{}", self.prefix, kind.as_str(), scoped)
    }

    /// `{prefix}seen@{scoped}`: the replay guard of one logout token or security event.
    pub fn seen(&self, scoped: &str) -> String {
        format!("{}seen@{}", self.prefix, scoped)
    }

    /// The legacy key of the raw id inside `scoped`: `tokengate:user:alice` for
    /// `dev:alice`. `None` for an id without a namespace (nothing legacy to read).
    pub fn legacy_of(&self, kind: Kind, scoped: &str) -> Option<String> {
        scope::split(scoped).map(|(_, raw)| self.legacy(kind, raw))
    }

    /// `{prefix}{kind}:{raw}`: the layout before issuer namespaces.
    pub fn legacy(&self, kind: Kind, raw: &str) -> String {
        format!("{}{}:{}", self.prefix, kind.as_str(), raw)
    }

    /// A `SCAN MATCH` pattern for every legacy key of `kind` (glob characters of the
    /// prefix escaped, so that a prefix like `app[1]:` matches only itself).
    pub fn legacy_pattern(&self, kind: Kind) -> String {
        let mut p = String::with_capacity(self.prefix.len() + 16);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push_str(kind.as_str());
        p.push_str(":*");
        p
    }

    /// The kind and raw id of a legacy key; `None` for anything else (current keys,
    /// the events channel, other applications' keys).
    pub fn parse_legacy<'k>(&self, key: &'k str) -> Option<(Kind, &'k str)> {
        let (kind, raw) = key.strip_prefix(&self.prefix)?.split_once(':')?;
        Some((Kind::parse(kind)?, raw))
    }

    /// The name a script is given for a key the token does not have: the bare prefix,
    /// which no key of ours is (every key has a kind after it).
    pub fn absent(&self) -> &str {
        &self.prefix
    }

    /// The pub/sub channel of invalidation events: `{prefix}events`.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        let k = Keys::new("tokengate:");
        assert_eq!(k.key(Kind::Jti, "dev:abc"), "tokengate:jti@dev:abc");
        assert_eq!(k.key(Kind::User, "dev:u1"), "tokengate:user@dev:u1");
        assert_eq!(k.key(Kind::Tenant, "idp:t1"), "tokengate:tenant@idp:t1");
        assert_eq!(k.key(Kind::Family, "idp:f1"), "tokengate:family@idp:f1");
        assert_eq!(k.events(), "tokengate:events");
    }

    #[test]
    fn legacy_keys_are_the_old_layout_of_the_raw_id() {
        let k = Keys::new("tokengate:");
        assert_eq!(k.legacy(Kind::Jti, "abc"), "tokengate:jti:abc");
        assert_eq!(
            k.legacy_of(Kind::User, "dev:urn:u:1").as_deref(),
            Some("tokengate:user:urn:u:1")
        );
        assert_eq!(k.legacy_of(Kind::User, "bare"), None);
        assert_eq!(k.legacy_pattern(Kind::Family), "tokengate:family:*");
        assert_eq!(
            Keys::new("a*[b]:").legacy_pattern(Kind::Jti),
            r"a\*\[b\]:jti:*"
        );
    }

    #[test]
    fn legacy_and_current_keys_cannot_be_confused() {
        let k = Keys::new("tokengate:");
        assert_eq!(
            k.parse_legacy("tokengate:user:a@b:c"),
            Some((Kind::User, "a@b:c"))
        );
        assert_eq!(k.parse_legacy(&k.key(Kind::User, "dev:alice")), None);
        assert_eq!(k.parse_legacy("tokengate:events"), None);
        assert_eq!(k.parse_legacy("other:user:x"), None);
        assert_eq!(k.parse_legacy("tokengate:other:x"), None);
    }
}
