//! The per-request rule: the verified payload's claims against the set, in tokengate's
//! order (docs/spec.md §2 step 4: jti, user, tenant, family, session) and with its
//! reading of each claim (crates/core/src/jwt/verify.rs), so that the fast path and
//! ext_authz never disagree about a token. Claims are read as slices of the payload;
//! the only writes are into buffers the VM keeps between requests.

use crate::json::{self, Malformed, Val};
use crate::reason::Reason;
use crate::set::{Set, Subject};

/// Claim names, from the plugin configuration (tokengate's `tokens.claims`).
#[derive(Debug, Clone)]
pub struct Names {
    pub user: Vec<u8>,
    pub tenant: Vec<u8>,
    pub user_version: Vec<u8>,
    pub tenant_version: Vec<u8>,
    pub family: Vec<u8>,
    pub session: Vec<u8>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            user: b"sub".to_vec(),
            tenant: b"tid".to_vec(),
            user_version: b"ver".to_vec(),
            tenant_version: b"tver".to_vec(),
            family: b"fam".to_vec(),
            session: b"sid".to_vec(),
        }
    }
}

/// What the judge needs besides the set.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub names: Names,
    /// `iss` → subject namespace (tokengate's providers' `subject_namespace`).
    pub namespaces: Vec<(Vec<u8>, Vec<u8>)>,
    /// The namespace of a token whose `iss` is not listed (one provider without an
    /// issuer); `None`: such a token is `wrong_issuer`.
    pub default_namespace: Option<Vec<u8>>,
    pub require_jti: bool,
    /// tokengate's provider `leeway_seconds`: an `iat` later than now + this is
    /// `not_yet_valid` (it would sort after every cut-off; jwt_authn does not check it).
    pub leeway_seconds: i64,
}

const ISS: usize = 0;
const JTI: usize = 1;
const USER: usize = 2;
const TENANT: usize = 3;
const FAMILY: usize = 4;
const SESSION: usize = 5;
const IDS: usize = 6;

/// Buffers kept by the VM between requests: nothing is allocated once they have grown
/// to the largest token seen.
#[derive(Debug, Default)]
pub struct Scratch {
    pub payload: Vec<u8>,
    ids: [Vec<u8>; IDS],
    key: Vec<u8>,
    keybuf: Vec<u8>,
}

/// The claims one request's check reads.
#[derive(Default)]
struct Found {
    /// Which of the id claims were present (their values are in `Scratch::ids`).
    has: [bool; IDS],
    user_version: Option<u64>,
    tenant_version: Option<u64>,
    iat_ms: Option<i64>,
    /// Names already seen: a duplicate is `malformed`, as tokengate refuses it.
    seen: u16,
}

/// Judges the base64url payload `p64` at unix second `now` (the VM's clock, read on its
/// timer): `None` allows, `Some(r)` denies.
pub fn judge(p64: &[u8], now: i64, rules: &Rules, set: &Set, s: &mut Scratch) -> Option<Reason> {
    if crate::b64::decode_url(p64, &mut s.payload).is_err() {
        return Some(Reason::Malformed);
    }
    let payload = core::mem::take(&mut s.payload);
    let out = match read(&payload, rules, s) {
        Ok(found)
            if found.iat_ms.map_or(false, |iat| {
                iat.div_euclid(1000) > now.saturating_add(rules.leeway_seconds)
            }) =>
        {
            Some(Reason::NotYetValid)
        }
        Ok(found) => decide(&found, rules, set, s),
        Err(r) => Some(r),
    };
    s.payload = payload;
    out
}

fn read(payload: &[u8], rules: &Rules, s: &mut Scratch) -> Result<Found, Reason> {
    let mut f = Found::default();
    let n = &rules.names;
    let ids = &mut s.ids;
    json::members(payload, &mut s.keybuf, |k, v| {
        let slot = if k == b"iss" {
            Some((0, Some(ISS)))
        } else if k == b"jti" {
            Some((1, Some(JTI)))
        } else if k == &n.user[..] {
            Some((2, Some(USER)))
        } else if k == &n.tenant[..] {
            Some((3, Some(TENANT)))
        } else if k == &n.family[..] {
            Some((4, Some(FAMILY)))
        } else if k == &n.session[..] {
            Some((5, Some(SESSION)))
        } else if k == &n.user_version[..] {
            Some((6, None))
        } else if k == &n.tenant_version[..] {
            Some((7, None))
        } else if k == b"iat" {
            Some((8, None))
        } else {
            None
        };
        let (bit, id) = match slot {
            Some(s) => s,
            None => return Ok(()),
        };
        if f.seen & (1 << bit) != 0 {
            return Err(Malformed);
        }
        f.seen |= 1 << bit;
        match (bit, id) {
            (_, Some(ISS)) => {
                // `iss` picks the namespace; tokengate checks it only as a string.
                if let Val::Str { .. } = v {
                    let mut tmp = core::mem::take(&mut ids[ISS]);
                    let got = v.str(&mut tmp)?.map(<[u8]>::to_vec);
                    ids[ISS] = got.unwrap_or_default();
                    f.has[ISS] = true;
                }
            }
            (_, Some(i)) => f.has[i] = id_claim(v, &mut ids[i])?,
            (6, None) => f.user_version = version_claim(v)?,
            (7, None) => f.tenant_version = version_claim(v)?,
            _ => {
                f.iat_ms = Some(match v {
                    Val::Num(raw) => json::date_ms(raw).ok_or(Malformed)?,
                    _ => return Err(Malformed),
                })
            }
        }
        Ok(())
    })
    .map_err(|_| Reason::Malformed)?;
    if rules.require_jti && !f.has[JTI] {
        return Err(Reason::MissingClaim);
    }
    Ok(f)
}

/// An identifier claim: a non-empty string, or an integer written as one; absent or
/// null is none; anything else is `malformed` (tokengate's `id_claim`).
fn id_claim(v: Val<'_>, out: &mut Vec<u8>) -> Result<bool, Malformed> {
    match v {
        Val::Null => Ok(false),
        Val::Str { raw, escaped } => {
            out.clear();
            if escaped {
                json::unescape(raw, out)?;
            } else {
                out.extend_from_slice(raw);
            }
            if out.is_empty() {
                Err(Malformed)
            } else {
                Ok(true)
            }
        }
        Val::Num(raw) if json::int(raw).is_some() || json::uint(raw).is_some() => {
            out.clear();
            // serde_json prints -0 as 0
            out.extend_from_slice(if raw == b"-0" { b"0" } else { raw });
            Ok(true)
        }
        _ => Err(Malformed),
    }
}

fn version_claim(v: Val<'_>) -> Result<Option<u64>, Malformed> {
    match v {
        Val::Null => Ok(None),
        Val::Num(raw) => json::uint(raw).map(Some).ok_or(Malformed),
        _ => Err(Malformed),
    }
}

fn decide(f: &Found, rules: &Rules, set: &Set, s: &mut Scratch) -> Option<Reason> {
    let listed = if f.has[ISS] {
        rules
            .namespaces
            .iter()
            .find(|(iss, _)| iss[..] == s.ids[ISS][..])
            .map(|(_, ns)| &ns[..])
    } else {
        None
    };
    let ns = match listed.or(rules.default_namespace.as_deref()) {
        Some(ns) => ns,
        None => return Some(Reason::WrongIssuer),
    };
    let ids = &s.ids;
    let key = &mut s.key;
    if scoped(f, ids, ns, JTI, key).map_or(false, |k| set.jti.contains_key(k)) {
        return Some(Reason::JtiRevoked);
    }
    let user = scoped(f, ids, ns, USER, key).and_then(|k| set.user.get(k).copied());
    if revokes(user, f.user_version, f.iat_ms) {
        return Some(Reason::UserRevoked);
    }
    let tenant = scoped(f, ids, ns, TENANT, key).and_then(|k| set.tenant.get(k).copied());
    if revokes(tenant, f.tenant_version, f.iat_ms) {
        return Some(Reason::TenantRevoked);
    }
    if scoped(f, ids, ns, FAMILY, key).map_or(false, |k| set.family.contains_key(k)) {
        return Some(Reason::FamilyRevoked);
    }
    if scoped(f, ids, ns, SESSION, key).map_or(false, |k| set.session.contains_key(k)) {
        return Some(Reason::SessionRevoked);
    }
    None
}

/// `{namespace}:{id}` of claim `i` in `key` (reused), as tokengate scopes ids.
fn scoped<'k>(
    f: &Found,
    ids: &[Vec<u8>; IDS],
    ns: &[u8],
    i: usize,
    key: &'k mut Vec<u8>,
) -> Option<&'k [u8]> {
    if !f.has[i] {
        return None;
    }
    key.clear();
    key.extend_from_slice(ns);
    key.push(b':');
    key.extend_from_slice(&ids[i]);
    Some(&key[..])
}

/// tokengate's `subject_revokes`: version first, then the inclusive cut-off, which also
/// revokes tokens without `iat`.
fn revokes(s: Option<Subject>, version: Option<u64>, iat_ms: Option<i64>) -> bool {
    let s = match s {
        Some(s) => s,
        None => return false,
    };
    let by_version = version.map_or(false, |v| s.ver > v);
    let by_cutoff = s.before_ms > 0 && iat_ms.map_or(true, |iat| iat <= s.before_ms);
    by_version || by_cutoff
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn b64(s: &str) -> Vec<u8> {
        crate::b64::encode_url(s.as_bytes())
    }

    fn rules() -> Rules {
        Rules {
            names: Names::default(),
            namespaces: vec![(b"https://a".to_vec(), b"a".to_vec())],
            default_namespace: None,
            require_jti: true,
            leeway_seconds: 30,
        }
    }

    fn set(lines: &str) -> Set {
        let mut s = Set::default();
        s.apply(lines.as_bytes()).unwrap();
        s
    }

    fn run(payload: &str, set: &Set) -> Option<Reason> {
        judge(&b64(payload), NOW, &rules(), set, &mut Scratch::default())
    }

    #[test]
    fn every_kind_in_tokengates_order() {
        let s = set(concat!(
            r#"{"v":2,"kind":"jti","id":"a:j1","exp":9999999999}"#,
            "\n",
            r#"{"v":2,"kind":"user","id":"a:u1","ver":3,"before":5000}"#,
            "\n",
            r#"{"v":2,"kind":"tenant","id":"a:7","ver":0,"before":5000}"#,
            "\n",
            r#"{"v":2,"kind":"family","id":"a:f1","exp":9999999999}"#,
            "\n",
            r#"{"v":2,"kind":"session","id":"a:s1","exp":9999999999}"#,
            "\n",
        ));
        let base = r#""iss":"https://a","iat":6"#;
        let p = |rest: &str| format!("{{{base},{rest}}}");
        assert_eq!(
            run(&p(r#""jti":"j1","sub":"u1""#), &s),
            Some(Reason::JtiRevoked)
        );
        assert_eq!(
            run(&p(r#""jti":"j2","sub":"u1","ver":2"#), &s),
            Some(Reason::UserRevoked)
        );
        assert_eq!(run(&p(r#""jti":"j2","sub":"u1","ver":3"#), &s), None);
        assert_eq!(
            run(r#"{"iss":"https://a","jti":"j2","sub":"u1","iat":5}"#, &s),
            Some(Reason::UserRevoked)
        );
        assert_eq!(
            run(r#"{"iss":"https://a","jti":"j2","sub":"u1"}"#, &s),
            Some(Reason::UserRevoked)
        );
        assert_eq!(
            run(r#"{"iss":"https://a","jti":"j2","tid":7,"iat":4.999}"#, &s),
            Some(Reason::TenantRevoked)
        );
        assert_eq!(
            run(&p(r#""jti":"j2","fam":"f1""#), &s),
            Some(Reason::FamilyRevoked)
        );
        assert_eq!(
            run(&p(r#""jti":"j2","sid":"s1""#), &s),
            Some(Reason::SessionRevoked)
        );
        assert_eq!(
            run(&p(r#""jti":"\u006a1""#), &s),
            Some(Reason::JtiRevoked),
            "escapes decode"
        );
    }

    #[test]
    fn namespaces_keep_issuers_apart() {
        let s = set(r#"{"v":2,"kind":"jti","id":"a:j1","exp":9999999999}"#);
        let mut r = rules();
        r.namespaces.push((b"https://b".to_vec(), b"b".to_vec()));
        let p = b64(r#"{"iss":"https://b","jti":"j1"}"#);
        assert_eq!(judge(&p, NOW, &r, &s, &mut Scratch::default()), None);
        assert_eq!(
            run(r#"{"iss":"https://c","jti":"j1"}"#, &s),
            Some(Reason::WrongIssuer)
        );
        assert_eq!(run(r#"{"jti":"j1"}"#, &s), Some(Reason::WrongIssuer));
    }

    #[test]
    fn what_tokengate_refuses_the_fast_path_refuses() {
        let s = Set::default();
        for (p, r) in [
            (
                r#"{"iss":"https://a","jti":"x","jti":"y"}"#,
                Reason::Malformed,
            ),
            (r#"{"iss":"https://a","jti":""}"#, Reason::Malformed),
            (r#"{"iss":"https://a","jti":1.5}"#, Reason::Malformed),
            (r#"{"iss":"https://a","jti":{"a":1}}"#, Reason::Malformed),
            (
                r#"{"iss":"https://a","jti":"x","ver":"1"}"#,
                Reason::Malformed,
            ),
            (
                r#"{"iss":"https://a","jti":"x","iat":null}"#,
                Reason::Malformed,
            ),
            (r#"{"iss":"https://a"}"#, Reason::MissingClaim),
            (
                r#"{"iss":"https://a","jti":"x","iat":1031}"#,
                Reason::NotYetValid,
            ),
            (r#"{"iss":"https://a","jti":null}"#, Reason::MissingClaim),
            ("not json", Reason::Malformed),
        ] {
            assert_eq!(run(p, &s), Some(r), "{p}");
        }
        assert_eq!(
            judge(b"!!", NOW, &rules(), &s, &mut Scratch::default()),
            Some(Reason::Malformed)
        );
    }
}
