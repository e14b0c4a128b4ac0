//! How a client reaches Redis once the URL is parsed: the TLS trust and client identity
//! of `revocation.redis.tls` applied the same way to a standalone server, Cluster nodes
//! and a Sentinel deployment (Sentinels and data nodes alike), and TLS failures turned
//! into a message naming the setting to fix rather than a bare handshake error.

use std::path::Path;

use redis::{ClientTlsConfig, ConnectionInfo, RedisResult, TlsCertificates};

use super::conn::Target;
use crate::config;

/// A parsed target and the certificates its TLS connections use.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub target: Target,
    /// `None`: the system's web roots and no client certificate.
    pub certs: Option<TlsCertificates>,
}

/// A TLS file tokengate cannot use. Names the field; never holds a key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("redis.tls.{field}: cannot read {path}: {source}")]
    Read {
        field: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redis.tls.{field}: {path} holds no PEM {what}")]
    NotPem {
        field: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("redis.tls: {0}")]
    Rejected(String),
}

fn read(field: &'static str, path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        field,
        path: path.display().to_string(),
        source,
    })?;
    // The label check catches a wrong file (a key given as the CA, a DER file) at start;
    // the parser below catches a broken one.
    let label = match what {
        "private key" => "PRIVATE KEY-----",
        _ => "-----BEGIN CERTIFICATE-----",
    };
    if !String::from_utf8_lossy(&bytes).contains(label) {
        return Err(TlsError::NotPem {
            field,
            path: path.display().to_string(),
            what,
        });
    }
    Ok(bytes)
}

/// Reads the files of `revocation.redis.tls` (at start: a bad file stops the start).
pub fn certificates(tls: Option<&config::RedisTls>) -> Result<Option<TlsCertificates>, TlsError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    let root_cert = match &tls.ca_file {
        Some(p) => Some(read("ca_file", p, "certificate")?),
        None => None,
    };
    let client_tls = match &tls.client {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("cert_file", cert, "certificate")?,
            client_key: read("key_file", key, "private key")?,
        }),
        None => None,
    };
    let certs = TlsCertificates {
        client_tls,
        root_cert,
    };
    // Builds (and drops) a client so that the client's own parser sees the files now,
    // not at the first connection.
    redis::Client::build_with_tls("rediss://127.0.0.1:1/", certs.clone())
        .map_err(|e| TlsError::Rejected(e.to_string()))?;
    Ok(Some(certs))
}

impl Endpoint {
    /// A client for one node.
    pub fn client(&self, info: ConnectionInfo) -> RedisResult<redis::Client> {
        match (&self.certs, is_tls(&info)) {
            (Some(certs), true) => redis::Client::build_with_tls(info, certs.clone()),
            _ => redis::Client::open(info),
        }
    }

    /// A Cluster client builder for `nodes`, with the certificates.
    pub fn cluster(&self, nodes: Vec<ConnectionInfo>) -> redis::cluster::ClusterClientBuilder {
        let builder = redis::cluster::ClusterClientBuilder::new(nodes);
        match &self.certs {
            Some(certs) => builder.certs(certs.clone()),
            None => builder,
        }
    }

    /// Asks the Sentinels for the current master and returns a client for it (the
    /// client library confirms with `ROLE` that the node named is a master).
    pub async fn sentinel_master(&self) -> RedisResult<redis::Client> {
        let Target::Sentinel {
            sentinels,
            service,
            node,
            tls,
        } = &self.target
        else {
            return Err((redis::ErrorKind::Client, "not a sentinel target").into());
        };
        let addrs = sentinels.iter().map(|s| s.addr().clone());
        let mut b = redis::sentinel::SentinelClientBuilder::new(
            addrs,
            service.clone(),
            redis::sentinel::SentinelServerType::Master,
        )?
        .set_client_to_redis_db(node.db());
        if let Some(user) = node.username() {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(pw) = node.password() {
            b = b.set_client_to_redis_password(pw);
        }
        if *tls {
            b = b
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
            if let Some(certs) = &self.certs {
                b = b
                    .set_client_to_redis_certificates(certs.clone())
                    .set_client_to_sentinel_certificates(certs.clone());
            }
        }
        b.build()?.async_get_client().await
    }
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })
}

/// The error as readiness and the log show it: a certificate the configured trust does
/// not accept says which setting decides, since retrying will not fix it.
pub fn explain(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("invalid peer certificate") || lower.contains("unknownissuer") {
        format!(
            "TLS: Redis's certificate is not trusted by revocation.redis.tls.ca_file \
             (or, without it, the system roots): {text}"
        )
    } else if lower.contains("certificate") && lower.contains("required") {
        format!(
            "TLS: Redis requires a client certificate (revocation.redis.tls.cert_file, \
             key_file): {text}"
        )
    } else {
        text
    }
}
