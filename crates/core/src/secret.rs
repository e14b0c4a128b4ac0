//! Secrets read from files (HMAC keys, Redis passwords, introspection client secrets):
//! one reader, so that a file written on Windows (CRLF) or by `echo` (LF) means the same
//! secret wherever it is used.

use std::path::Path;

/// The file's bytes without one trailing line ending (`\r\n` or `\n`). Only one: a
/// secret may itself end in whitespace, and editors add exactly one line ending.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    strip_line_ending(&mut bytes);
    Ok(bytes)
}

/// [`read_file`] for secrets that must be text.
pub fn read_file_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn strip_line_ending(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_ending_of_either_kind_is_dropped() {
        for (raw, want) in [
            (&b"s3cret\n"[..], &b"s3cret"[..]),
            (b"s3cret\r\n", b"s3cret"),
            (b"s3cret", b"s3cret"),
            (b"s3cret\n\n", b"s3cret\n"),
            (b"s3cret \r\n", b"s3cret "),
            (b"\r", b"\r"),
        ] {
            let mut v = raw.to_vec();
            super::strip_line_ending(&mut v);
            assert_eq!(v, want, "{raw:?}");
        }
    }
}
