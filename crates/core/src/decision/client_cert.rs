//! The client certificate of the original connection, as RFC 8705 §3 binds a token to
//! it: `cnf.x5t#S256` is base64url(SHA-256(the certificate's DER)). Where it comes
//! from depends on the transport: Envoy's gRPC CheckRequest carries it in
//! `attributes.source.certificate` (URL-encoded PEM, `include_peer_certificate`); in
//! HTTP mode only the trusted proxy's header (`http_check.client_cert`) is read, in the
//! one format that proxy writes. Anything ambiguous (a header twice, two XFCC elements,
//! an XFCC `Hash` that disagrees with its `Cert`) yields no certificate, so a bound
//! token fails rather than being judged against a guess.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::extract::{percent_decode, Headers};
use crate::config::ClientCertHeader;

/// Where this request's client certificate is to be found.
#[derive(Debug, Clone, Copy)]
pub enum ClientCert<'a> {
    /// URL-encoded PEM (Envoy's `source.certificate`); empty: no certificate.
    UrlPem(&'a str),
    /// The trusted proxy's header, in its format.
    Header(ClientCertHeader),
}

impl ClientCert<'_> {
    /// `x5t#S256` of the certificate, or `None` when there is none or it is ambiguous.
    pub fn thumbprint<H: Headers>(&self, headers: &H) -> Option<String> {
        let der_hash = match *self {
            ClientCert::UrlPem(pem) => pem_hash(&percent_decode(pem))?,
            ClientCert::Header(format) => {
                let mut values = headers.values(format.header());
                let value = values.next()?;
                if values.next().is_some() {
                    return None;
                }
                let value = std::str::from_utf8(value).ok()?.trim();
                match format {
                    ClientCertHeader::Xfcc => xfcc_hash(value)?,
                    ClientCertHeader::ClientCert => {
                        let b64 = value.strip_prefix(':')?.strip_suffix(':')?;
                        Sha256::digest(STANDARD.decode(b64).ok()?).into()
                    }
                    ClientCertHeader::NginxEscaped => pem_hash(&percent_decode(value))?,
                }
            }
        };
        Some(URL_SAFE_NO_PAD.encode(der_hash))
    }
}

/// SHA-256 of the DER of the first certificate in a PEM text.
fn pem_hash(pem: &str) -> Option<[u8; 32]> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let len = pem[start..].find(END)?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(body).ok()?;
    if der.is_empty() {
        return None;
    }
    Some(Sha256::digest(der).into())
}

/// The certificate hash of an XFCC value with exactly one element: its `Hash` (hex),
/// its `Cert` (URL-encoded PEM), or both when they agree.
fn xfcc_hash(value: &str) -> Option<[u8; 32]> {
    let elements = split_unquoted(value, ',');
    let [element] = elements.as_slice() else {
        return None;
    };
    let mut hash = None;
    let mut cert = None;
    for pair in split_unquoted(element, ';') {
        let (k, v) = pair.split_once('=')?;
        let v = v.trim().trim_matches('"');
        let slot = match k.trim().to_ascii_lowercase().as_str() {
            "hash" => &mut hash,
            "cert" => &mut cert,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let from_hash = match hash {
        Some(h) => Some(hex32(h)?),
        None => None,
    };
    let from_cert = match cert {
        Some(c) => Some(pem_hash(&percent_decode(c))?),
        None => None,
    };
    match (from_hash, from_cert) {
        (Some(a), Some(b)) if a != b => None,
        (a, b) => a.or(b),
    }
}

fn hex32(h: &str) -> Option<[u8; 32]> {
    let b = h.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    const DER: &[u8] = b"\x30\x03\x02\x01\x05";

    fn pem() -> String {
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(DER)
        )
    }

    fn url(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn want() -> Option<String> {
        Some(URL_SAFE_NO_PAD.encode(Sha256::digest(DER)))
    }

    fn from(format: ClientCertHeader, values: &[&str]) -> Option<String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(format.header(), HeaderValue::from_str(v).unwrap());
        }
        ClientCert::Header(format).thumbprint(&h)
    }

    #[test]
    fn each_format_names_the_same_certificate() {
        let hex: String = Sha256::digest(DER)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let none = HeaderMap::new();
        assert_eq!(ClientCert::UrlPem(&url(&pem())).thumbprint(&none), want());
        assert_eq!(
            from(ClientCertHeader::NginxEscaped, &[&url(&pem())]),
            want()
        );
        let rfc9440 = format!(":{}:", STANDARD.encode(DER));
        assert_eq!(from(ClientCertHeader::ClientCert, &[&rfc9440]), want());
        for xfcc in [
            format!("By=spiffe://a;Hash={hex};Subject=\"CN=x,O=y\""),
            format!("Hash={};Cert=\"{}\"", hex.to_uppercase(), url(&pem())),
            format!("Cert=\"{}\"", url(&pem())),
        ] {
            assert_eq!(from(ClientCertHeader::Xfcc, &[&xfcc]), want(), "{xfcc}");
        }
    }

    #[test]
    fn an_ambiguous_or_missing_certificate_is_none() {
        let hex: String = Sha256::digest(DER)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let other = "00".repeat(32);
        for xfcc in [
            format!("Hash={hex},Hash={other}"),
            format!("Hash={other};Cert=\"{}\"", url(&pem())),
            format!("Hash={hex};Hash={hex}"),
            "Hash=zz".to_string(),
            "By=spiffe://a".to_string(),
            String::new(),
        ] {
            assert_eq!(from(ClientCertHeader::Xfcc, &[&xfcc]), None, "{xfcc}");
        }
        let h = format!("Hash={hex}");
        assert_eq!(from(ClientCertHeader::Xfcc, &[&h, &h]), None, "twice");
        assert_eq!(from(ClientCertHeader::Xfcc, &[]), None);
        assert_eq!(from(ClientCertHeader::ClientCert, &["AAAA"]), None);
        assert_eq!(ClientCert::UrlPem("").thumbprint(&HeaderMap::new()), None);
    }
}
