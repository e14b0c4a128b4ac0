//! The Redis key layout of SPEC §3, in one place so the wire format is easy to review.

use crate::revocation::Kind;

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

    /// `{prefix}jti:{id}`, `{prefix}user:{id}`, `{prefix}tenant:{id}`, `{prefix}family:{id}`.
    pub fn key(&self, kind: Kind, id: &str) -> String {
        format!("{}{}:{}", self.prefix, kind.as_str(), id)
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
        assert_eq!(k.key(Kind::Jti, "abc"), "tokengate:jti:abc");
        assert_eq!(k.key(Kind::User, "u1"), "tokengate:user:u1");
        assert_eq!(k.key(Kind::Tenant, "t1"), "tokengate:tenant:t1");
        assert_eq!(k.key(Kind::Family, "f1"), "tokengate:family:f1");
        assert_eq!(k.events(), "tokengate:events");
    }
}
