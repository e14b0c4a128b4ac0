//! Property tests of the revocation rules against a deliberately naive model: random
//! histories of revocations and random tokens, and the store plus `evaluate` must agree
//! with the model on every token.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use tokengate::jwt::{Claims, Scoped};
use tokengate::reason::Reason;
use tokengate::revocation::memory::MemoryStore;
use tokengate::revocation::{
    evaluate, subject_revokes, Query, Record, RevocationStore, Subject, Target,
};

/// The model of one user's or tenant's state: every revocation ever done, with its
/// resulting version and cut-off, kept as a list.
fn model_revokes(history: &[(u64, i64)], version: Option<u64>, iat_ms: Option<i64>) -> bool {
    history.iter().any(|(ver, before)| {
        // "your version is older than one that was revoked past"
        version.is_some_and(|v| v < *ver)
            // "you were issued at or before a cut-off (or we cannot tell when)"
            || iat_ms.is_none_or(|iat| iat <= *before)
    })
}

proptest! {
    #[test]
    fn subject_rule_matches_the_model(
        cutoffs in proptest::collection::vec(1i64..1_000_000, 0..5),
        version in proptest::option::of(0u64..8),
        iat in proptest::option::of(0i64..1_100_000),
    ) {
        // build the store's view: versions 1..=n, cut-offs strictly increasing
        let mut sorted = cutoffs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let history: Vec<(u64, i64)> = sorted.iter().enumerate().map(|(i, b)| (i as u64 + 1, *b)).collect();
        let latest = history.last().map(|(v, b)| Subject::new(*v, *b));
        prop_assert_eq!(
            subject_revokes(latest, version, iat),
            model_revokes(&history, version, iat),
            "history {:?} version {:?} iat {:?}", history, version, iat
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Jti(u8),
    User(u8),
    Tenant(u8),
    Family(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::Jti),
        (0u8..4).prop_map(Op::User),
        (0u8..3).prop_map(Op::Tenant),
        (0u8..3).prop_map(Op::Family),
    ]
}

#[derive(Debug, Clone)]
struct Tok {
    jti: u8,
    user: u8,
    tenant: Option<u8>,
    family: Option<u8>,
    user_version: Option<u64>,
    /// Issued before (false) or after (true) the whole history.
    fresh: bool,
}

fn tok() -> impl Strategy<Value = Tok> {
    (
        0u8..6,
        0u8..4,
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..3),
        proptest::option::of(0u64..4),
        any::<bool>(),
    )
        .prop_map(|(jti, user, tenant, family, user_version, fresh)| Tok {
            jti,
            user,
            tenant,
            family,
            user_version,
            fresh,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn store_and_rules_agree_with_the_model(ops in proptest::collection::vec(op(), 0..12), toks in proptest::collection::vec(tok(), 1..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = MemoryStore::new(Duration::from_secs(60), None);
            let exp = tokengate::jwt::now_unix() + 600;
            let (mut jtis, mut fams) = (HashSet::new(), HashSet::new());
            let (mut users, mut tenants): (HashMap<u8, u64>, HashMap<u8, u64>) = Default::default();
            let before_history = tokengate::revocation::now_ms() - 10_000;
            for op in &ops {
                let r = Record::now("prop", None);
                match op {
                    Op::Jti(j) => { store.revoke(&Target::Jti { id: &format!("p:j{j}"), expires_at: exp }, &r).await.unwrap(); jtis.insert(*j); }
                    Op::User(u) => { store.revoke(&Target::User(&format!("p:u{u}")), &r).await.unwrap(); *users.entry(*u).or_default() += 1; }
                    Op::Tenant(t) => { store.revoke(&Target::Tenant(&format!("p:t{t}")), &r).await.unwrap(); *tenants.entry(*t).or_default() += 1; }
                    Op::Family(f) => { store.revoke(&Target::Family(&format!("p:f{f}")), &r).await.unwrap(); fams.insert(*f); }
                }
            }
            // a token "issued after the history": later than every cut-off written
            let after_history = tokengate::revocation::now_ms() + 10_000;
            for t in &toks {
                let (jti, user) = (format!("j{}", t.jti), format!("u{}", t.user));
                let tenant = t.tenant.map(|x| format!("t{x}"));
                let family = t.family.map(|x| format!("f{x}"));
                let scoped = Scoped::new(
                    "p",
                    "p",
                    Some(&jti),
                    Some(&user),
                    tenant.as_deref(),
                    family.as_deref(),
                );
                let claims = Claims {
                    provider: 0,
                    jti: Some(jti),
                    user: Some(user),
                    tenant,
                    family,
                    scoped,
                    user_version: t.user_version,
                    tenant_version: None,
                    iat_ms: Some(if t.fresh { after_history } else { before_history }),
                    exp,
                    payload: Default::default(),
                    payload_b64: String::new(),
                };
                let state = store.check(&Query::for_claims(&claims, exp)).await.unwrap();
                let got = evaluate(&claims, &state);
                // the model, in the order docs/spec.md §2 lists the reasons
                let user_bumps = users.get(&t.user).copied().unwrap_or(0);
                let tenant_bumps = t.tenant.and_then(|x| tenants.get(&x).copied()).unwrap_or(0);
                let want = if jtis.contains(&t.jti) {
                    Some(Reason::JtiRevoked)
                } else if user_bumps > 0 && (!t.fresh || t.user_version.is_some_and(|v| v < user_bumps)) {
                    Some(Reason::UserRevoked)
                } else if tenant_bumps > 0 && !t.fresh {
                    Some(Reason::TenantRevoked)
                } else if t.family.is_some_and(|f| fams.contains(&f)) {
                    Some(Reason::FamilyRevoked)
                } else {
                    None
                };
                prop_assert_eq!(got, want, "ops {:?} token {:?}", ops, t);
            }
            Ok(())
        })?;
    }
}
