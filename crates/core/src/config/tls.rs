//! `tls`: TLS, and optionally client certificates, on each listener (issue 15).
//!
//! As a localhost sidecar tokengate is reached over loopback and plaintext is the
//! default. As a shared Service its Check and logout traffic crosses the network, so each
//! listener can have its own certificate, and a client CA that makes a client certificate
//! mandatory, narrowed further to named client identities (SAN URI such as a SPIFFE ID,
//! or SAN DNS name). The files are read again every `reload_interval_seconds`, so that a
//! certificate rotated by cert-manager is served to new connections without a restart.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// How often the certificate, key and client-CA files are read again.
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub reload_interval_seconds: u64,
    pub grpc: Option<ListenerTls>,
    pub http: Option<ListenerTls>,
    pub admin: Option<ListenerTls>,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            reload_interval_seconds: 10,
            grpc: None,
            http: None,
            admin: None,
        }
    }
}

/// One listener's TLS settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawListenerTls")]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate that chains to these PEM roots.
    pub client_ca_file: Option<PathBuf>,
    /// When not empty, the client certificate must also name one of these (needs
    /// `client_ca_file`: an identity is only worth something once its chain is checked).
    pub allowed_clients: Vec<ClientName>,
    pub min_version: TlsVersion,
}

/// A client identity, as a subject alternative name of its certificate: `{uri: ...}` or
/// `{dns: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawClientName")]
pub enum ClientName {
    /// A SAN URI, compared exactly (a SPIFFE ID: `spiffe://trust-domain/path`).
    Uri(String),
    /// A SAN DNS name, compared without regard to ASCII case; no wildcards.
    Dns(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientName {
    uri: Option<String>,
    dns: Option<String>,
}

impl TryFrom<RawClientName> for ClientName {
    type Error = &'static str;

    fn try_from(r: RawClientName) -> Result<Self, Self::Error> {
        match (r.uri, r.dns) {
            (Some(u), None) => Ok(ClientName::Uri(u)),
            (None, Some(d)) => Ok(ClientName::Dns(d)),
            _ => Err("exactly one of `uri` or `dns`"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    allowed_clients: Vec<ClientName>,
    #[serde(default)]
    min_version: TlsVersion,
}

impl TryFrom<RawListenerTls> for ListenerTls {
    type Error = String;

    fn try_from(r: RawListenerTls) -> Result<Self, String> {
        if !r.allowed_clients.is_empty() && r.client_ca_file.is_none() {
            return Err(
                "allowed_clients needs client_ca_file: a client name is only trusted once its certificate chain is checked"
                    .into(),
            );
        }
        for (i, name) in r.allowed_clients.iter().enumerate() {
            match name {
                ClientName::Uri(u) if !u.contains(':') || u.trim() != u || u.is_empty() => {
                    return Err(format!(
                        "allowed_clients[{i}].uri: must be an absolute URI such as spiffe://cluster.local/ns/NS/sa/SA"
                    ));
                }
                ClientName::Dns(d)
                    if d.is_empty()
                        || d.contains('*')
                        || !d
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
                {
                    return Err(format!(
                        "allowed_clients[{i}].dns: must be a DNS name (letters, digits, '-', '.'; no wildcard)"
                    ));
                }
                _ => {}
            }
        }
        Ok(ListenerTls {
            cert_file: r.cert_file,
            key_file: r.key_file,
            client_ca_file: r.client_ca_file,
            allowed_clients: r.allowed_clients,
            min_version: r.min_version,
        })
    }
}
