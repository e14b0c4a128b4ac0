//! A reader for flat JSON objects: the JWT payload, the sync feed's lines and the plugin
//! configuration are all one object whose interesting members are strings and numbers.
//! Written by hand because no JSON crate that builds on rustc 1.63 for wasm32 is small,
//! and because the request path must not allocate: values are handed out as slices of
//! the input, and only a string holding escapes is decoded (into a caller's buffer).
//!
//! The grammar is RFC 8259's; nested objects and arrays are validated and skipped.
//! Anything else (trailing bytes, bad escapes, control characters in strings, nesting
//! beyond [`MAX_DEPTH`]) is an error: the caller fails closed.

/// How deep a skipped value may nest: bounds the reader's recursion on hostile input.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// One member's value as it appears in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val<'a> {
    /// The bytes between the quotes; `escaped` when they hold a `\` (decode with
    /// [`unescape`]).
    Str {
        raw: &'a [u8],
        escaped: bool,
    },
    /// A number's text, as written.
    Num(&'a [u8]),
    Bool(bool),
    Null,
    /// An object or array, validated, as written (read it with [`members`]).
    Nested(&'a [u8]),
}

impl<'a> Val<'a> {
    /// The string's value, decoded into `buf` when it holds escapes.
    pub fn str<'b>(&self, buf: &'b mut Vec<u8>) -> Result<Option<&'b [u8]>, Malformed>
    where
        'a: 'b,
    {
        match *self {
            Val::Str {
                raw,
                escaped: false,
            } => Ok(Some(raw)),
            Val::Str { raw, escaped: true } => {
                buf.clear();
                unescape(raw, buf)?;
                Ok(Some(&buf[..]))
            }
            _ => Ok(None),
        }
    }
}

/// Calls `f(key, value)` for each member of the object `input`, in order. `key` is
/// decoded (into `keybuf` when it holds escapes). Stops at the first error of `f`.
pub fn members<'a, F>(input: &'a [u8], keybuf: &mut Vec<u8>, mut f: F) -> Result<(), Malformed>
where
    F: FnMut(&[u8], Val<'a>) -> Result<(), Malformed>,
{
    let mut r = Reader { s: input, i: 0 };
    r.ws();
    r.expect(b'{')?;
    r.ws();
    if r.peek() == Some(b'}') {
        r.i += 1;
    } else {
        loop {
            r.ws();
            let (raw, escaped) = r.string()?;
            r.ws();
            r.expect(b':')?;
            r.ws();
            let val = r.value(0)?;
            if escaped {
                keybuf.clear();
                unescape(raw, keybuf)?;
                f(&keybuf[..], val)?;
            } else {
                f(raw, val)?;
            }
            r.ws();
            match r.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(Malformed),
            }
        }
    }
    r.ws();
    if r.i == input.len() {
        Ok(())
    } else {
        Err(Malformed)
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.i += 1;
        b
    }

    fn expect(&mut self, b: u8) -> Result<(), Malformed> {
        if self.next() == Some(b) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string at the cursor: its raw bytes and whether it holds escapes. Escapes are
    /// checked for shape here; [`unescape`] checks the rest.
    fn string(&mut self) -> Result<(&'a [u8], bool), Malformed> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.next() {
                None => return Err(Malformed),
                Some(b'"') => return Ok((&self.s[start..self.i - 1], escaped)),
                Some(b'\\') => {
                    escaped = true;
                    match self.next() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            for _ in 0..4 {
                                if !self.next().map_or(false, |b| b.is_ascii_hexdigit()) {
                                    return Err(Malformed);
                                }
                            }
                        }
                        _ => return Err(Malformed),
                    }
                }
                Some(0..=0x1f) => return Err(Malformed),
                Some(_) => {}
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Val<'a>, Malformed> {
        match self.peek() {
            Some(b'"') => {
                let (raw, escaped) = self.string()?;
                Ok(Val::Str { raw, escaped })
            }
            Some(b'{') | Some(b'[') => {
                let start = self.i;
                self.skip_nested(depth + 1)?;
                Ok(Val::Nested(&self.s[start..self.i]))
            }
            Some(b't') => self.word(b"true", Val::Bool(true)),
            Some(b'f') => self.word(b"false", Val::Bool(false)),
            Some(b'n') => self.word(b"null", Val::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Val::Num),
            _ => Err(Malformed),
        }
    }

    fn word(&mut self, w: &[u8], v: Val<'a>) -> Result<Val<'a>, Malformed> {
        if self.s.get(self.i..self.i + w.len()) == Some(w) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(Malformed)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<&'a [u8], Malformed> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let first = self.peek();
        let n = self.digits();
        if n == 0 || (first == Some(b'0') && n > 1) {
            return Err(Malformed);
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        Ok(&self.s[start..self.i])
    }

    fn skip_nested(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        let close = match self.next() {
            Some(b'{') => b'}',
            Some(b'[') => b']',
            _ => return Err(Malformed),
        };
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if close == b'}' {
                self.string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
            }
            self.value(depth)?;
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(c) if c == close => return Ok(()),
                _ => return Err(Malformed),
            }
        }
    }
}

/// Decodes a string's escapes (RFC 8259 §7) into `out` as UTF-8. Lone surrogates are
/// refused: serde_json (tokengate's reader) refuses them too, so both read one value.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *raw.get(i).ok_or(Malformed)?;
        i += 1;
        let c = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(raw, i)?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                        return Err(Malformed);
                    }
                    let lo = hex4(raw, i + 2)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Malformed);
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err(Malformed);
                } else {
                    hi
                };
                let ch = char::from_u32(cp).ok_or(Malformed)?;
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                continue;
            }
            _ => return Err(Malformed),
        };
        out.push(c);
    }
    Ok(())
}

fn hex4(raw: &[u8], at: usize) -> Result<u32, Malformed> {
    let digits = raw.get(at..at + 4).ok_or(Malformed)?;
    let mut v = 0u32;
    for d in digits {
        let x = (*d as char).to_digit(16).ok_or(Malformed)?;
        v = v * 16 + x;
    }
    Ok(v)
}

/// A number's text as an unsigned integer (no sign, fraction or exponent).
pub fn uint(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for d in raw {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

/// A signed integer (for the feed's times).
pub fn int(raw: &[u8]) -> Option<i64> {
    match raw.split_first() {
        Some((b'-', rest)) => uint(rest).and_then(|v| i64::try_from(v).ok()).map(|v| -v),
        _ => uint(raw).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A NumericDate (seconds, maybe with a fraction or exponent) in milliseconds, floored,
/// as tokengate reads `iat`: `None` when it is negative or beyond year 9999.
pub fn date_ms(raw: &[u8]) -> Option<i64> {
    let s = core::str::from_utf8(raw).ok()?;
    let n: f64 = s.parse().ok()?;
    if !(0.0..=253_402_300_799.0).contains(&n) {
        return None;
    }
    Some((n * 1000.0).floor() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &str) -> Result<Vec<(String, String)>, Malformed> {
        let mut out = Vec::new();
        let mut kb = Vec::new();
        members(s.as_bytes(), &mut kb, |k, v| {
            let mut b = Vec::new();
            let shown = match v {
                Val::Str { .. } => {
                    String::from_utf8(v.str(&mut b)?.unwrap_or(b"").to_vec()).unwrap()
                }
                Val::Num(n) => format!("#{}", String::from_utf8_lossy(n)),
                other => format!("{other:?}"),
            };
            out.push((String::from_utf8(k.to_vec()).unwrap(), shown));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_members_and_skips_nested_values() {
        let v = collect(
            r#" {"a":"x","b":12,"c":{"d":[1,{"e":null}]},"f":true,"\u006a":"\u00e9\ud83d\ude00"} "#,
        )
        .unwrap();
        assert_eq!(v[0], ("a".into(), "x".into()));
        assert_eq!(v[1], ("b".into(), "#12".into()));
        assert!(v[2].1.starts_with("Nested"));
        assert_eq!(v[4], ("j".into(), "é😀".into()));
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for bad in [
            "",
            "{",
            "{}x",
            r#"{"a"}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
        ] {
            assert!(collect(bad).is_err(), "{bad}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert!(collect(&deep).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(uint(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(uint(b"18446744073709551616"), None);
        assert_eq!(int(b"-5"), Some(-5));
        assert_eq!(date_ms(b"1700000000.2505"), Some(1_700_000_000_250));
        assert_eq!(date_ms(b"-1"), None);
        assert_eq!(date_ms(b"1e3"), Some(1_000_000));
    }
}
