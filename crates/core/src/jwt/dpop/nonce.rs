//! Server nonces (RFC 9449 §8, §9) without server state: a nonce is a time window's
//! number and the HMAC-SHA256 of it under a secret every replica shares. Any replica
//! accepts any replica's nonce, nothing is stored, and a nonce dies by itself one
//! window after its own (so a client is never caught by a window changing between the
//! 401 that handed it the nonce and its retry).

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The nonce key and window length in force.
pub struct Nonces {
    key: hmac::Key,
    window: u64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("Nonces")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

const WINDOW_BYTES: usize = 8;
const TAG_BYTES: usize = 32;

impl Nonces {
    /// `secret` as read from the configuration; `window_seconds` at least 1.
    pub fn new(secret: &[u8], window_seconds: u64) -> Self {
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window: window_seconds.max(1),
        }
    }

    fn window_at(&self, now: i64) -> u64 {
        u64::try_from(now).unwrap_or(0) / self.window
    }

    /// The nonce to hand out at `now`.
    pub fn issue(&self, now: i64) -> String {
        let w = self.window_at(now).to_be_bytes();
        let tag = hmac::sign(&self.key, &w);
        let mut raw = [0u8; WINDOW_BYTES + TAG_BYTES];
        raw[..WINDOW_BYTES].copy_from_slice(&w);
        raw[WINDOW_BYTES..].copy_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was issued (by any replica sharing the secret) in this window or
    /// the one before it.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let mut raw = [0u8; WINDOW_BYTES + TAG_BYTES + 1];
        match URL_SAFE_NO_PAD.decode_slice(nonce.as_bytes(), &mut raw) {
            Ok(n) if n == WINDOW_BYTES + TAG_BYTES => {}
            _ => return false,
        }
        let mut w = [0u8; WINDOW_BYTES];
        w.copy_from_slice(&raw[..WINDOW_BYTES]);
        let issued = u64::from_be_bytes(w);
        let current = self.window_at(now);
        if issued != current && issued.checked_add(1) != Some(current) {
            return false;
        }
        hmac::verify(
            &self.key,
            &raw[..WINDOW_BYTES],
            &raw[WINDOW_BYTES..WINDOW_BYTES + TAG_BYTES],
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_lives_its_window_and_the_next_on_every_replica_with_the_secret() {
        let a = Nonces::new(b"shared secret", 60);
        let b = Nonces::new(b"shared secret", 60);
        let now = 1_800_000_000; // a window boundary (60 divides it)
        let n = a.issue(now);
        assert!(b.accepts(&n, now));
        assert!(b.accepts(&n, now + 59));
        assert!(b.accepts(&n, now + 119), "one window of grace");
        assert!(!b.accepts(&n, now + 120), "then it dies");
        assert!(!b.accepts(&n, now - 1), "not before its window");
    }

    #[test]
    fn another_secret_or_an_edited_nonce_is_refused() {
        let a = Nonces::new(b"one", 60);
        let other = Nonces::new(b"two", 60);
        let now = 1_800_000_000;
        let n = a.issue(now);
        assert!(!other.accepts(&n, now));
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[7] ^= 1;
        assert!(!a.accepts(&URL_SAFE_NO_PAD.encode(&raw), now));
        for junk in ["", "x", &n[..n.len() - 1], &format!("{n}A")] {
            assert!(!a.accepts(junk, now), "{junk}");
        }
    }
}
