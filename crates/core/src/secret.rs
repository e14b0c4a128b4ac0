//! Secrets (HMAC keys, Redis passwords, introspection client secrets): one type for
//! "from the environment or from a file" and one reader, so that a file written on
//! Windows (CRLF) or by `echo` (LF) means the same secret wherever it is used.

use std::path::{Path, PathBuf};

/// Where a secret is read from. The configuration names one with a pair of fields,
/// `{prefix}_env` or `{prefix}_file` (`secret_env`, `password_file`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable, taken as it is.
    Env(String),
    /// A file, without one trailing line ending.
    File(PathBuf),
}

/// A secret that could not be read. Names the variable or the file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not UTF-8 text")]
    NotText(String),
}

impl Secret {
    /// The secret of a `{prefix}_env` / `{prefix}_file` pair (the environment first);
    /// `None` when neither is set.
    pub fn from_pair(env: Option<String>, file: Option<PathBuf>) -> Option<Self> {
        env.map(Secret::Env).or(file.map(Secret::File))
    }

    /// The configuration field of this secret in a pair named `prefix`.
    pub fn field(&self, prefix: &str) -> String {
        match self {
            Secret::Env(_) => format!("{prefix}_env"),
            Secret::File(_) => format!("{prefix}_file"),
        }
    }

    /// The secret's bytes.
    pub fn read(&self) -> Result<Vec<u8>, SecretError> {
        match self {
            Secret::Env(name) => std::env::var_os(name)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| SecretError::Unset(name.clone())),
            Secret::File(path) => read_file(path).map_err(|source| SecretError::File {
                path: path.clone(),
                source,
            }),
        }
    }

    /// The secret as text.
    pub fn read_string(&self) -> Result<String, SecretError> {
        let bytes = self.read()?;
        String::from_utf8(bytes).map_err(|_| {
            SecretError::NotText(match self {
                Secret::Env(name) => name.clone(),
                Secret::File(path) => path.display().to_string(),
            })
        })
    }
}

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
