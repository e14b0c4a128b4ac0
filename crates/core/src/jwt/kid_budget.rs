//! How many early JWKS fetches tokens naming an unknown `kid` may cause.
//!
//! A token with a `kid` nobody knows may mean the identity provider just rotated its
//! keys, so it may trigger a fetch before the next scheduled refresh. Anyone can send
//! such tokens, though, so the fetches are budgeted twice:
//!
//! - **per kid**: a `kid` causes at most one early fetch per interval. Once a fetch found
//!   it absent, the same `kid` repeated is answered from memory. The memory is a bounded
//!   map of keyed hashes (never the attacker's strings), so it cannot grow without bound.
//! - **globally**: a token bucket (`burst` fetches back to back, one more per `refill`)
//!   caps what a flood of *distinct* garbage kids costs the identity provider.
//!
//! A single global allowance per long interval (the old design) let one garbage `kid`
//! spend it and so refuse a genuine rotation for the whole interval. Here a genuine new
//! `kid` has never been seen, so only the global bucket can stop it, and the bucket
//! refills within `refill`; besides, any fetch after the rotation (even one a garbage
//! `kid` caused) brings the new key for everyone.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use crate::config::JwksSettings;

/// Why an unknown `kid` may or may not cause a fetch now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fetch: the per-kid and the global budget both allowed it (and were charged).
    Fetch,
    /// This `kid` already caused a fetch within the per-kid interval.
    KidRecentlyFetched,
    /// The global budget is spent until the next refill.
    GlobalBudgetSpent,
}

pub struct KidBudget {
    per_kid: Duration,
    burst: u32,
    refill: Duration,
    max_tracked: usize,
    /// Keyed per process, so that nobody can pick kids that collide on purpose.
    hasher: RandomState,
    /// When each recent kid (by hash) last caused a fetch.
    kids: HashMap<u64, Instant>,
    tokens: u32,
    /// The instant the bucket last gained a token (or was seen full).
    refilled: Instant,
}

impl KidBudget {
    pub fn new(settings: &JwksSettings, now: Instant) -> Self {
        let burst = settings.unknown_kid_burst.max(1);
        KidBudget {
            per_kid: Duration::from_secs(settings.unknown_kid_min_interval_seconds),
            burst,
            refill: Duration::from_millis(settings.unknown_kid_refill_ms.max(1)),
            max_tracked: settings.unknown_kid_tracked.max(1),
            hasher: RandomState::new(),
            kids: HashMap::new(),
            tokens: burst,
            refilled: now,
        }
    }

    /// Whether `kid` (`None`: a token without one) may cause a fetch at `now`; a
    /// [`Verdict::Fetch`] is charged to both budgets.
    pub fn admit(&mut self, kid: Option<&str>, now: Instant) -> Verdict {
        let id = self.hasher.hash_one(kid);
        if self
            .kids
            .get(&id)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.per_kid)
        {
            return Verdict::KidRecentlyFetched;
        }
        self.refill(now);
        if self.tokens == 0 {
            return Verdict::GlobalBudgetSpent;
        }
        self.tokens -= 1;
        self.remember(id, now);
        Verdict::Fetch
    }

    /// Forgets the per-kid charge of `kid` (its fetch failed, so nothing was learnt
    /// about it); the global charge stays.
    pub fn forget(&mut self, kid: Option<&str>) {
        let id = self.hasher.hash_one(kid);
        self.kids.remove(&id);
    }

    /// How many kids are remembered (tests: the map stays bounded).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.kids.len()
    }

    fn refill(&mut self, now: Instant) {
        if self.tokens >= self.burst {
            self.refilled = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.refilled);
        let gained = elapsed.as_nanos() / self.refill.as_nanos().max(1);
        let room = u128::from(self.burst - self.tokens);
        if gained >= room {
            self.tokens = self.burst;
            self.refilled = now;
        } else if gained > 0 {
            // gained < burst, so it fits in u32 and the product cannot overflow
            let gained = gained as u32;
            self.tokens += gained;
            self.refilled += self.refill * gained;
        }
    }

    fn remember(&mut self, id: u64, now: Instant) {
        if self.kids.len() >= self.max_tracked && !self.kids.contains_key(&id) {
            let per_kid = self.per_kid;
            self.kids
                .retain(|_, at| now.saturating_duration_since(*at) < per_kid);
            if self.kids.len() >= self.max_tracked {
                // Still full of recent kids: forget the oldest. Costs a scan, but only
                // on a path the global bucket already rate-limits.
                if let Some(oldest) = self.kids.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    self.kids.remove(&oldest);
                }
            }
        }
        self.kids.insert(id, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_kid: u64, burst: u32, refill_ms: u64, tracked: usize) -> JwksSettings {
        JwksSettings {
            unknown_kid_min_interval_seconds: per_kid,
            unknown_kid_burst: burst,
            unknown_kid_refill_ms: refill_ms,
            unknown_kid_tracked: tracked,
            ..JwksSettings::default()
        }
    }

    #[test]
    fn a_kid_causes_one_fetch_per_interval_and_is_remembered_absent() {
        let t0 = Instant::now();
        let mut b = KidBudget::new(&settings(30, 100, 1, 16), t0);
        assert_eq!(b.admit(Some("k"), t0), Verdict::Fetch);
        // the fetch found it absent: the same kid, again and again, costs nothing
        for s in [0, 1, 10, 29] {
            assert_eq!(
                b.admit(Some("k"), t0 + Duration::from_secs(s)),
                Verdict::KidRecentlyFetched,
                "{s} s later"
            );
        }
        assert_eq!(
            b.admit(Some("k"), t0 + Duration::from_secs(30)),
            Verdict::Fetch
        );
        // a token without a kid is a kid of its own, distinct from every named one
        assert_eq!(b.admit(None, t0), Verdict::Fetch);
        assert_eq!(b.admit(None, t0), Verdict::KidRecentlyFetched);
        assert_eq!(b.admit(Some(""), t0), Verdict::Fetch);
    }

    #[test]
    fn distinct_kids_are_capped_by_the_global_bucket() {
        let t0 = Instant::now();
        let mut b = KidBudget::new(&settings(30, 3, 1_000, 1_000), t0);
        let mut fetches = 0;
        for i in 0..500 {
            if b.admit(Some(&format!("junk-{i}")), t0) == Verdict::Fetch {
                fetches += 1;
            }
        }
        assert_eq!(
            fetches, 3,
            "a burst of distinct kids spends exactly the burst"
        );
        // a genuine new kid just after the flood waits for one refill, not for the
        // per-kid interval
        let kid = Some("rotated");
        assert_eq!(
            b.admit(kid, t0 + Duration::from_millis(999)),
            Verdict::GlobalBudgetSpent
        );
        assert_eq!(
            b.admit(kid, t0 + Duration::from_millis(1_000)),
            Verdict::Fetch
        );
    }

    #[test]
    fn a_sustained_flood_costs_one_fetch_per_refill() {
        let t0 = Instant::now();
        let mut b = KidBudget::new(&settings(30, 2, 100, 100_000), t0);
        let mut fetches = 0u32;
        // 10 s of 1000 distinct kids per second
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if b.admit(Some(&format!("junk-{ms}")), now) == Verdict::Fetch {
                fetches += 1;
            }
        }
        // burst + one per 100 ms, never more
        assert!(fetches <= 2 + 100, "{fetches}");
        assert!(fetches >= 100, "the bucket refills: {fetches}");
    }

    #[test]
    fn the_bucket_never_holds_more_than_the_burst() {
        let t0 = Instant::now();
        let mut b = KidBudget::new(&settings(30, 2, 10, 100), t0);
        let later = t0 + Duration::from_secs(3_600);
        let admitted = (0..10)
            .filter(|i| b.admit(Some(&format!("k{i}")), later) == Verdict::Fetch)
            .count();
        assert_eq!(admitted, 2, "an hour of quiet saves up only the burst");
    }

    #[test]
    fn a_failed_fetch_does_not_mark_the_kid_absent() {
        let t0 = Instant::now();
        let mut b = KidBudget::new(&settings(30, 10, 1, 16), t0);
        assert_eq!(b.admit(Some("k"), t0), Verdict::Fetch);
        b.forget(Some("k"));
        assert_eq!(b.admit(Some("k"), t0), Verdict::Fetch);
    }

    #[test]
    fn the_kid_memory_is_bounded() {
        let t0 = Instant::now();
        let mut b = KidBudget::new(&settings(30, u32::MAX, 1, 64), t0);
        for i in 0..10_000 {
            b.admit(Some(&format!("junk-{i}")), t0 + Duration::from_micros(i));
            assert!(b.tracked() <= 64);
        }
        // the most recent kid is still remembered, the oldest was forgotten
        let now = t0 + Duration::from_micros(10_000);
        assert_eq!(b.admit(Some("junk-9999"), now), Verdict::KidRecentlyFetched);
        assert_eq!(b.admit(Some("junk-0"), now), Verdict::Fetch);
    }
}
