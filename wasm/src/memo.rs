//! Verdicts for the payloads a worker judged since its set last changed, so that the
//! next request with the same token costs one hash and one comparison instead of the
//! decode, the claim scan and five lookups: the fast path's counterpart of jwt_authn's
//! `jwt_cache_config`, which spares the signature check the same way.
//!
//! A verdict is a function of the payload, the rules, the set and, for `not_yet_valid`
//! only, the clock. The rules are fixed for the VM's configuration (a new one makes a
//! new memo), the set changes only with a new generation (every change clears the
//! memo, [`Memo::clear`]), and `not_yet_valid` is never kept: a payload that is not yet
//! valid is judged again, and an allowed one cannot become "not yet valid" later. So a
//! kept verdict is always the verdict `judge` would give now.
//!
//! Direct-mapped: a payload has one slot, picked by its hash, and a hit is decided by
//! comparing the whole payload, never the hash alone. Nothing is evicted but by a later
//! payload of the same slot; memory is bounded by slots × [`MAX_PAYLOAD`]. A client
//! who makes payloads collide (it would need tokens the IdP signed) only makes misses.

use crate::reason::Reason;

/// Longer payloads are judged every time, not kept (bounds the memo's memory).
pub const MAX_PAYLOAD: usize = 2048;

#[derive(Debug, Default)]
struct Slot {
    /// The memo's epoch when filled: a slot of an older epoch is empty.
    epoch: u64,
    payload: Vec<u8>,
    verdict: Option<Reason>,
}

#[derive(Debug, Default)]
pub struct Memo {
    slots: Vec<Slot>,
    /// log2 of the slot count (the hash's top bits pick the slot).
    bits: u32,
    /// Starts at 1 (0 marks a slot never filled); each clear moves it on.
    epoch: u64,
}

impl Memo {
    /// A memo of `slots` slots, rounded up to a power of two; 0 keeps nothing.
    pub fn new(slots: usize) -> Memo {
        if slots == 0 {
            return Memo::default();
        }
        let n = slots.next_power_of_two();
        Memo {
            slots: (0..n).map(|_| Slot::default()).collect(),
            bits: n.trailing_zeros(),
            epoch: 1,
        }
    }

    /// Forgets every verdict (the set changed). O(1): the slots' buffers stay for reuse.
    pub fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
    }

    /// The slot of `p64`, or `None` when nothing is kept for payloads like it.
    pub fn slot(&self, p64: &[u8]) -> Option<usize> {
        if self.slots.is_empty() || p64.len() > MAX_PAYLOAD {
            return None;
        }
        if self.bits == 0 {
            return Some(0);
        }
        Some((hash(p64) >> (64 - self.bits)) as usize)
    }

    /// The kept verdict of `p64` in slot `i`: `Some(verdict)` on a hit.
    pub fn get(&self, i: usize, p64: &[u8]) -> Option<Option<Reason>> {
        let s = self.slots.get(i)?;
        if s.epoch == self.epoch && s.payload[..] == p64[..] {
            Some(s.verdict)
        } else {
            None
        }
    }

    /// Keeps `verdict` for `p64` in slot `i` (`not_yet_valid` is not kept: see above).
    pub fn put(&mut self, i: usize, p64: &[u8], verdict: Option<Reason>) {
        if verdict == Some(Reason::NotYetValid) {
            return;
        }
        let epoch = self.epoch;
        if let Some(s) = self.slots.get_mut(i) {
            s.payload.clear();
            s.payload.extend_from_slice(p64);
            s.verdict = verdict;
            s.epoch = epoch;
        }
    }
}

/// FxHash over 8-byte words: fast in the VM, and its quality only decides hit rates
/// (a hit is confirmed by comparing the payload).
fn hash(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut h = mix(0, b.len() as u64);
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        h = mix(h, w.iter().rev().fold(0, |a, &x| (a << 8) | u64::from(x)));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        h = mix(h, tail.iter().rev().fold(0, |a, &x| (a << 8) | u64::from(x)));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(m: &Memo, p: &[u8]) -> Option<Option<Reason>> {
        m.slot(p).and_then(|i| m.get(i, p))
    }

    fn keep(m: &mut Memo, p: &[u8], v: Option<Reason>) {
        if let Some(i) = m.slot(p) {
            m.put(i, p, v);
        }
    }

    #[test]
    fn a_verdict_is_kept_until_the_set_changes() {
        let mut m = Memo::new(256);
        assert_eq!(kept(&m, b"p1"), None);
        keep(&mut m, b"p1", None);
        keep(&mut m, b"p2", Some(Reason::JtiRevoked));
        assert_eq!(kept(&m, b"p1"), Some(None));
        assert_eq!(kept(&m, b"p2"), Some(Some(Reason::JtiRevoked)));
        m.clear();
        assert_eq!(kept(&m, b"p1"), None, "a new set forgets every verdict");
        assert_eq!(kept(&m, b"p2"), None);
    }

    #[test]
    fn a_hit_needs_the_same_payload_not_the_same_slot() {
        // One slot: every payload lands in it, and only the one kept hits.
        let mut m = Memo::new(1);
        keep(&mut m, b"payload-a", Some(Reason::UserRevoked));
        assert_eq!(kept(&m, b"payload-b"), None);
        assert_eq!(kept(&m, b"payload-a"), Some(Some(Reason::UserRevoked)));
        assert_eq!(kept(&m, b"payload-"), None, "a prefix is another payload");
        keep(&mut m, b"payload-b", None);
        assert_eq!(kept(&m, b"payload-a"), None, "evicted by the later one");
    }

    #[test]
    fn not_yet_valid_long_payloads_and_a_zero_size_are_never_kept() {
        let mut m = Memo::new(16);
        keep(&mut m, b"early", Some(Reason::NotYetValid));
        assert_eq!(kept(&m, b"early"), None);
        let long = vec![b'a'; MAX_PAYLOAD + 1];
        assert_eq!(m.slot(&long), None);
        let mut off = Memo::new(0);
        keep(&mut off, b"p", None);
        assert_eq!(kept(&off, b"p"), None);
    }

    #[test]
    fn the_hash_reads_every_byte() {
        let base = vec![b'x'; 37];
        for i in 0..base.len() {
            let mut other = base.clone();
            other[i] = b'y';
            assert_ne!(hash(&base), hash(&other), "byte {i}");
        }
        assert_ne!(hash(b"ab"), hash(b"ab\0"), "the length counts");
    }
}
