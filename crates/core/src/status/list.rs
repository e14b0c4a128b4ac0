//! The Status List itself (draft-ietf-oauth-status-list-20, "Status List"): a byte array, zlib
//! compressed and base64url encoded in `lst`, holding one status of `bits` bits per
//! token index, least significant bits first within each byte.

use std::io::Read as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A decoded list, ready to be read at any index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    bytes: Vec<u8>,
}

/// Why `lst` could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// `bits` is not 1, 2, 4 or 8.
    Bits,
    /// `lst` is not base64url, or not a zlib stream.
    Encoding,
    /// The decompressed list would exceed the configured `max_bytes`.
    TooLarge,
}

impl StatusList {
    /// Decodes `lst`, inflating at most `max_bytes`: a few kilobytes of zlib can claim
    /// gigabytes (a zlib bomb), so the output is bounded while it is produced, never after.
    pub fn decode(bits: u64, lst: &str, max_bytes: usize) -> Result<Self, DecodeError> {
        let bits = match bits {
            1 | 2 | 4 | 8 => bits as u8,
            _ => return Err(DecodeError::Bits),
        };
        let compressed = URL_SAFE_NO_PAD
            .decode(lst.trim_end_matches('='))
            .map_err(|_| DecodeError::Encoding)?;
        let limit = u64::try_from(max_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|_| DecodeError::Encoding)?;
        if bytes.len() > max_bytes {
            return Err(DecodeError::TooLarge);
        }
        Ok(StatusList { bits, bytes })
    }

    /// A list of raw (decompressed) bytes, for tests.
    pub fn from_bytes(bits: u8, bytes: Vec<u8>) -> Self {
        StatusList { bits, bytes }
    }

    /// The status at `idx` (the draft's rule: byte `idx * bits / 8`, shifted right by
    /// `idx * bits % 8`, masked to `bits`), or `None` past the end of the list.
    pub fn get(&self, idx: u64) -> Option<u8> {
        let bits = u64::from(self.bits);
        let bit = idx.checked_mul(bits)?;
        let byte = usize::try_from(bit / 8).ok()?;
        let value = *self.bytes.get(byte)?;
        let mask = u16::try_from((1u32 << bits) - 1).ok()?;
        Some(((u16::from(value) >> (bit % 8)) & mask) as u8)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn zlib(bytes: &[u8]) -> String {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        URL_SAFE_NO_PAD.encode(e.finish().unwrap())
    }

    #[test]
    fn the_drafts_one_bit_example_reads_back() {
        // the draft's example: statuses 1 0 0 1 1 1 0 1 | 1 1 0 0 0 1 0 1 → bytes 0xB9 0xA3
        let list = StatusList::decode(1, &zlib(&[0xB9, 0xA3]), 16).unwrap();
        let want = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(list.get(i as u64), Some(*w), "index {i}");
        }
        assert_eq!(list.get(16), None, "past the end");
    }

    #[test]
    fn the_drafts_two_bit_example_reads_back() {
        // the draft's example: 1 2 0 3 0 1 0 1 1 2 3 3 → 0xC9 0x44 0xF9
        let list = StatusList::decode(2, &zlib(&[0xC9, 0x44, 0xF9]), 16).unwrap();
        let want = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(list.get(i as u64), Some(*w), "index {i}");
        }
    }

    #[test]
    fn four_and_eight_bits_and_huge_indexes() {
        let list = StatusList::from_bytes(4, vec![0x21, 0xF0]);
        assert_eq!(
            (0..4).map(|i| list.get(i)).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(0), Some(15)]
        );
        assert_eq!(list.get(4), None);
        let list = StatusList::from_bytes(8, vec![0, 1, 2, 0xFF]);
        assert_eq!(list.get(3), Some(0xFF));
        assert_eq!(list.get(4), None);
        assert_eq!(
            list.get(u64::MAX),
            None,
            "idx * bits overflows: out of range"
        );
        assert_eq!(StatusList::from_bytes(1, vec![]).get(0), None);
    }

    #[test]
    fn bad_bits_encodings_and_bombs_are_refused() {
        for bits in [0, 3, 5, 16, 256] {
            assert_eq!(
                StatusList::decode(bits, &zlib(&[0]), 16),
                Err(DecodeError::Bits)
            );
        }
        assert_eq!(StatusList::decode(1, "!!", 16), Err(DecodeError::Encoding));
        // raw DEFLATE without the zlib header is not what the draft says
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        raw.write_all(&[1, 2, 3]).unwrap();
        let raw = URL_SAFE_NO_PAD.encode(raw.finish().unwrap());
        assert_eq!(StatusList::decode(1, &raw, 16), Err(DecodeError::Encoding));
        // 1 MiB of zeros compresses to about a kilobyte; a 64 KiB limit stops it
        let bomb = zlib(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 4096);
        assert_eq!(
            StatusList::decode(1, &bomb, 64 * 1024),
            Err(DecodeError::TooLarge)
        );
        assert!(
            StatusList::decode(1, &bomb, 1 << 20).is_ok(),
            "exactly the limit"
        );
        // padding tolerated
        assert!(StatusList::decode(1, &format!("{}==", zlib(&[1])), 16).is_ok());
    }
}
