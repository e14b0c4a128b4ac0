//! The revocation set one VM holds: every live revocation tokengate sent, keyed by the
//! scoped id (`{namespace}:{id}`, as tokengate's store keys them), so that a request's
//! check is a few hash lookups in the VM's own memory.
//!
//! The sync feed and the copy the singleton hands the workers share one line format:
//! newline-separated JSON objects, the same events tokengate publishes
//! (`{"v":2,"kind":"jti","id":"…","exp":…}`, `user`/`tenant` with `ver` and `before`,
//! `family`/`session` with the `exp` tokengate computed from its TTLs). Applying is a
//! merge that only ever revokes more (a later `exp`, a higher version, a later cut-off),
//! so a line applied twice, or out of order, leaves the same set.

use hashbrown::HashMap;

use crate::json::{self, Malformed, Val};

/// A user's or tenant's state: tokens with a lower version claim, or issued at or
/// before `before_ms`, are revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subject {
    pub ver: u64,
    pub before_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jti,
    User,
    Tenant,
    Family,
    Session,
}

impl Kind {
    fn parse(s: &[u8]) -> Option<Kind> {
        Some(match s {
            b"jti" => Kind::Jti,
            b"user" => Kind::User,
            b"tenant" => Kind::Tenant,
            b"family" => Kind::Family,
            b"session" => Kind::Session,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::User => "user",
            Kind::Tenant => "tenant",
            Kind::Family => "family",
            Kind::Session => "session",
        }
    }
}

type Map<V> = HashMap<Box<[u8]>, V>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Set {
    /// Marker kinds: scoped id → unix seconds after which the entry may be dropped.
    pub jti: Map<i64>,
    pub family: Map<i64>,
    pub session: Map<i64>,
    pub user: Map<Subject>,
    pub tenant: Map<Subject>,
}

/// One line of the feed, borrowed from its text.
#[derive(Debug, Default)]
struct Line {
    kind: Option<Kind>,
    id: Vec<u8>,
    exp: Option<i64>,
    ver: Option<u64>,
    before: Option<i64>,
    v: Option<u64>,
}

impl Set {
    pub fn len(&self) -> usize {
        self.jti.len()
            + self.family.len()
            + self.session.len()
            + self.user.len()
            + self.tenant.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies the feed lines of `text` (blank lines and objects that carry no `kind`,
    /// such as the feed's header, are skipped). A line this version cannot read is an
    /// error: it may have been a revocation, so the caller must not claim to be current.
    pub fn apply(&mut self, text: &[u8]) -> Result<usize, Malformed> {
        let mut n = 0;
        let mut keybuf = Vec::new();
        for raw in text.split(|b| *b == b'\n') {
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let mut line = Line::default();
            json::members(raw, &mut keybuf, |k, v| {
                match (k, v) {
                    (b"kind", v @ Val::Str { .. }) => {
                        let mut b = Vec::new();
                        let s = v.str(&mut b)?.ok_or(Malformed)?;
                        line.kind = Some(Kind::parse(s).ok_or(Malformed)?);
                    }
                    (b"id", v @ Val::Str { .. }) => {
                        let mut b = Vec::new();
                        line.id = v.str(&mut b)?.ok_or(Malformed)?.to_vec();
                    }
                    (b"exp", Val::Num(n)) => line.exp = Some(json::int(n).ok_or(Malformed)?),
                    (b"ver", Val::Num(n)) => line.ver = Some(json::uint(n).ok_or(Malformed)?),
                    (b"before", Val::Num(n)) => line.before = Some(json::int(n).ok_or(Malformed)?),
                    (b"v", Val::Num(n)) => line.v = Some(json::uint(n).ok_or(Malformed)?),
                    (b"kind" | b"id" | b"exp" | b"ver" | b"before" | b"v", _) => {
                        return Err(Malformed)
                    }
                    _ => {}
                }
                Ok(())
            })?;
            let kind = match line.kind {
                Some(k) => k,
                None => continue,
            };
            if line.v != Some(2) || line.id.is_empty() {
                return Err(Malformed);
            }
            let id = line.id.into_boxed_slice();
            match kind {
                Kind::Jti | Kind::Family | Kind::Session => {
                    let exp = line.exp.ok_or(Malformed)?;
                    let map = match kind {
                        Kind::Jti => &mut self.jti,
                        Kind::Family => &mut self.family,
                        _ => &mut self.session,
                    };
                    let e = map.entry(id).or_insert(exp);
                    *e = (*e).max(exp);
                }
                Kind::User | Kind::Tenant => {
                    let s = Subject {
                        ver: line.ver.ok_or(Malformed)?,
                        before_ms: line.before.ok_or(Malformed)?,
                    };
                    let map = if kind == Kind::User {
                        &mut self.user
                    } else {
                        &mut self.tenant
                    };
                    let e = map.entry(id).or_insert(s);
                    e.ver = e.ver.max(s.ver);
                    e.before_ms = e.before_ms.max(s.before_ms);
                }
            }
            n += 1;
        }
        Ok(n)
    }

    /// Drops markers whose token is dead (`exp` before `now`, unix seconds).
    pub fn prune(&mut self, now: i64) {
        for map in [&mut self.jti, &mut self.family, &mut self.session] {
            map.retain(|_, exp| *exp >= now);
        }
    }

    /// The whole set in the feed's line format (what the singleton hands the workers).
    pub fn write(&self, out: &mut Vec<u8>) {
        for (kind, map) in [
            (Kind::Jti, &self.jti),
            (Kind::Family, &self.family),
            (Kind::Session, &self.session),
        ] {
            for (id, exp) in map {
                line_head(out, kind, id);
                out.extend_from_slice(b",\"exp\":");
                out.extend_from_slice(exp.to_string().as_bytes());
                out.extend_from_slice(b"}\n");
            }
        }
        for (kind, map) in [(Kind::User, &self.user), (Kind::Tenant, &self.tenant)] {
            for (id, s) in map {
                line_head(out, kind, id);
                out.extend_from_slice(
                    format!(",\"ver\":{},\"before\":{}}}\n", s.ver, s.before_ms).as_bytes(),
                );
            }
        }
    }
}

fn line_head(out: &mut Vec<u8>, kind: Kind, id: &[u8]) {
    out.extend_from_slice(b"{\"v\":2,\"kind\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    push_json_str(out, id);
}

/// `s` as a JSON string (ids are UTF-8: tokengate sends them so).
pub fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => out.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_merges_and_round_trips() {
        let mut s = Set::default();
        let feed = concat!(
            "{\"cursor\":\"e.1\",\"reset\":true}\n",
            "{\"v\":2,\"kind\":\"jti\",\"id\":\"dev:a\\\"\\n\",\"exp\":50}\n",
            "{\"v\":2,\"kind\":\"user\",\"id\":\"dev:u\",\"ver\":2,\"before\":9}\n",
            "{\"v\":2,\"kind\":\"user\",\"id\":\"dev:u\",\"ver\":1,\"before\":12}\n",
            "{\"v\":2,\"kind\":\"family\",\"id\":\"dev:f\",\"exp\":10}\n",
        );
        assert_eq!(s.apply(feed.as_bytes()), Ok(4));
        assert_eq!(
            s.user.get(&b"dev:u"[..]),
            Some(&Subject {
                ver: 2,
                before_ms: 12
            })
        );
        let mut out = Vec::new();
        s.write(&mut out);
        let mut t = Set::default();
        t.apply(&out).unwrap();
        assert_eq!(s, t);
        t.prune(20);
        assert!(t.family.is_empty());
        assert!(t.jti.contains_key(&b"dev:a\"\n"[..]));
    }

    #[test]
    fn an_unreadable_line_is_an_error_not_a_skip() {
        for bad in [
            r#"{"v":2,"kind":"device","id":"x"}"#,
            r#"{"kind":"jti","id":"x","exp":1}"#,
            r#"{"v":2,"kind":"jti","id":"x"}"#,
            r#"{"v":2,"kind":"user","id":"x","ver":-1,"before":1}"#,
            "garbage",
        ] {
            assert!(Set::default().apply(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
