//! base64url without padding (RFC 4648 §5), as jwt_authn forwards the payload: decoded
//! into the caller's buffer, so the request path does not allocate.

#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

fn val(c: u8) -> Result<u32, Invalid> {
    Ok(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return Err(Invalid),
    } as u32)
}

/// Decodes `input` into `out` (cleared first). Padding `=` at the end is accepted.
pub fn decode_url(input: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    out.clear();
    let mut input = input;
    while let Some((b'=', rest)) = input.split_last() {
        input = rest;
    }
    if input.len() % 4 == 1 {
        return Err(Invalid);
    }
    for chunk in input.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Ok(())
}

#[cfg(test)]
pub fn encode_url(input: &[u8]) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    for chunk in input.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(A[((acc >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        for s in ["", "a", "ab", "abc", "abcd", "{\"sub\":\"ü\"}"] {
            let mut out = Vec::new();
            decode_url(&encode_url(s.as_bytes()), &mut out).unwrap();
            assert_eq!(out, s.as_bytes());
        }
        let mut out = Vec::new();
        assert_eq!(decode_url(b"YQ==", &mut out), Ok(()));
        assert_eq!(out, b"a");
        assert_eq!(decode_url(b"a", &mut out), Err(Invalid));
        assert_eq!(decode_url(b"YQ+/", &mut out), Err(Invalid));
    }
}
