//! TLS on the listeners (issue 15): the certificate each serves, the client certificates
//! each accepts, and the reload that lets cert-manager rotate them under a running
//! process.
//!
//! Each TLS listener holds its current rustls configuration behind an [`ArcSwap`]: a
//! connection takes the configuration of the moment it is accepted and keeps it, so a
//! rotation changes what new connections see and drops none. Every
//! `tls.reload_interval_seconds` the files are read again and, when their bytes changed,
//! a new configuration is built and swapped in; one that does not build (a half-written
//! secret, a key that does not match) is refused and logged, and the previous one keeps
//! serving — a rotation gone wrong must not take the listener down.
//!
//! Client identities are checked inside the handshake, after the chain: a client whose
//! certificate names none of `allowed_clients` gets a TLS alert, not a connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{ClientName, Tls, TlsVersion};
use crate::metrics::Metrics;

/// ALPN of the gRPC listener: HTTP/2 only.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the HTTP listeners: both versions they serve.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Why a listener's TLS files could not be used; names the field and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field}: {path}: cannot read: {source}")]
    Read {
        field: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: {path}: {message}")]
    Content {
        field: String,
        path: String,
        message: String,
    },
    #[error("tls.{listener}: {source}")]
    Rustls {
        listener: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("tls.{listener}.client_ca_file: {message}")]
    ClientCa {
        listener: &'static str,
        message: String,
    },
}

/// The bytes of one listener's files, as last read.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl Files {
    fn read(listener: &'static str, s: &crate::config::ListenerTls) -> Result<Self, TlsError> {
        let read = |name: &str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                field: format!("tls.{listener}.{name}"),
                path: path.display().to_string(),
                source,
            })
        };
        Ok(Files {
            cert: read("cert_file", &s.cert_file)?,
            key: read("key_file", &s.key_file)?,
            ca: match &s.client_ca_file {
                Some(p) => Some(read("client_ca_file", p)?),
                None => None,
            },
        })
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            &self.cert[..],
            &self.key[..],
            self.ca.as_deref().unwrap_or(b""),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

/// One TLS listener: its settings and the configuration new connections get.
pub struct ListenerTls {
    name: &'static str,
    settings: crate::config::ListenerTls,
    alpn: &'static [&'static [u8]],
    current: ArcSwap<ServerConfig>,
    /// Digest of the files last read, accepted or not: a bad file is reported once, not
    /// at every look.
    seen: Mutex<[u8; 32]>,
    metrics: Arc<Metrics>,
}

impl ListenerTls {
    /// Reads the files and builds the configuration; start-up stops on an error.
    pub fn load(
        name: &'static str,
        settings: &crate::config::ListenerTls,
        alpn: &'static [&'static [u8]],
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, TlsError> {
        let files = Files::read(name, settings)?;
        let (config, not_after) = build(name, settings, &files, alpn)?;
        warn_if_expired(name, not_after);
        metrics.tls_listener(name, not_after);
        Ok(Arc::new(ListenerTls {
            name,
            settings: settings.clone(),
            alpn,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(files.digest()),
            metrics,
        }))
    }

    /// Checks the files of every configured listener without serving (`check-config`).
    pub fn check(tls: &Tls) -> Result<(), TlsError> {
        for (name, settings, alpn) in configured(tls) {
            let files = Files::read(name, settings)?;
            build(name, settings, &files, alpn)?;
        }
        Ok(())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What a connection accepted now is served with.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    pub fn handshake_failed(&self, error: &std::io::Error) {
        self.metrics.tls_handshake_failed(self.name);
        tracing::debug!(listener = self.name, error = %error, "TLS handshake failed");
    }

    /// Reads the files again and swaps in a new configuration when they changed.
    fn reload(&self) {
        let files = match Files::read(self.name, &self.settings) {
            Ok(f) => f,
            Err(e) => {
                // A secret volume being swapped can be briefly unreadable: report it once
                // per distinct state, like a bad file.
                let mut seen = self.seen.lock();
                if *seen != [0; 32] {
                    *seen = [0; 32];
                    self.metrics.tls_reload(self.name, None);
                    tracing::error!(listener = self.name, error = %e, "TLS files unreadable; the previous certificate stays in use");
                }
                return;
            }
        };
        let digest = files.digest();
        {
            let mut seen = self.seen.lock();
            if *seen == digest {
                return;
            }
            *seen = digest;
        }
        match build(self.name, &self.settings, &files, self.alpn) {
            Ok((config, not_after)) => {
                warn_if_expired(self.name, not_after);
                self.current.store(Arc::new(config));
                self.metrics.tls_reload(self.name, Some(not_after));
                tracing::info!(
                    listener = self.name,
                    not_after,
                    "TLS certificate files changed: new connections get the new certificate"
                );
            }
            Err(e) => {
                self.metrics.tls_reload(self.name, None);
                tracing::error!(listener = self.name, error = %e, "TLS files changed but cannot be used; the previous certificate stays in use");
            }
        }
    }
}

/// Clients will refuse an expired certificate; it is served anyway (refusing to start
/// would not help them) but said loudly, until the renewed files arrive.
fn warn_if_expired(listener: &'static str, not_after: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    if not_after <= now {
        tracing::warn!(
            listener,
            not_after,
            "the TLS certificate has expired: clients will refuse it until it is renewed"
        );
    }
}

/// The listeners that have a `tls` block, with their ALPN.
fn configured(
    tls: &Tls,
) -> impl Iterator<
    Item = (
        &'static str,
        &crate::config::ListenerTls,
        &'static [&'static [u8]],
    ),
> {
    [
        ("grpc", tls.grpc.as_ref(), ALPN_GRPC),
        ("http", tls.http.as_ref(), ALPN_HTTP),
        ("admin", tls.admin.as_ref(), ALPN_HTTP),
    ]
    .into_iter()
    .filter_map(|(n, s, a)| s.map(|s| (n, s, a)))
}

/// The three listeners' TLS, `None` where plaintext.
#[derive(Default, Clone)]
pub struct Listeners {
    pub grpc: Option<Arc<ListenerTls>>,
    pub http: Option<Arc<ListenerTls>>,
    pub admin: Option<Arc<ListenerTls>>,
}

impl Listeners {
    pub fn load(tls: &Tls, metrics: &Arc<Metrics>) -> Result<Self, TlsError> {
        let mut out = Listeners::default();
        for (name, settings, alpn) in configured(tls) {
            let l = Some(ListenerTls::load(name, settings, alpn, metrics.clone())?);
            match name {
                "grpc" => out.grpc = l,
                "http" => out.http = l,
                _ => out.admin = l,
            }
        }
        Ok(out)
    }

    /// Looks at the files every `every` until shutdown.
    pub fn watch(&self, every: Duration, shutdown: CancellationToken) {
        let all: Vec<Arc<ListenerTls>> = [&self.grpc, &self.http, &self.admin]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if all.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for l in &all {
                    l.reload();
                }
            }
        });
    }
}

/// Builds a listener's configuration from its files; returns it with the leaf
/// certificate's expiry (Unix time).
fn build(
    listener: &'static str,
    s: &crate::config::ListenerTls,
    files: &Files,
    alpn: &[&[u8]],
) -> Result<(ServerConfig, i64), TlsError> {
    let content = |name: &str, path: &Path, message: String| TlsError::Content {
        field: format!("tls.{listener}.{name}"),
        path: path.display().to_string(),
        message,
    };
    let chain = certificates(&files.cert).map_err(|m| content("cert_file", &s.cert_file, m))?;
    let not_after = match chain.first() {
        Some(leaf) => not_after(leaf).map_err(|m| content("cert_file", &s.cert_file, m))?,
        None => {
            return Err(content(
                "cert_file",
                &s.cert_file,
                "no PEM CERTIFICATE in the file".into(),
            ))
        }
    };
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|e| {
        content(
            "key_file",
            &s.key_file,
            format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match s.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let rustls_err = |source| TlsError::Rustls { listener, source };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(rustls_err)?;
    let builder = match (&s.client_ca_file, &files.ca) {
        (Some(path), Some(ca)) => {
            let verifier = client_verifier(listener, path, ca, &s.allowed_clients, provider)?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        content(
            "key_file",
            &s.key_file,
            format!("does not go with cert_file: {e}"),
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((config, not_after))
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable PEM: {e}"))
}

fn not_after(cert: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(parsed.validity().not_after.timestamp())
}

fn client_verifier(
    listener: &'static str,
    path: &Path,
    ca: &[u8],
    allowed: &[ClientName],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let bad = |message: String| TlsError::ClientCa { listener, message };
    let mut roots = RootCertStore::empty();
    let certs = certificates(ca).map_err(|m| bad(format!("{}: {m}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "{}: no PEM CERTIFICATE in the file",
            path.display()
        )));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    }
    let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    if allowed.is_empty() {
        return Ok(chain);
    }
    Ok(Arc::new(AllowList {
        chain,
        allowed: allowed.to_vec(),
    }))
}

/// The chain check, then the client's name against `allowed_clients`.
#[derive(Debug)]
struct AllowList {
    chain: Arc<dyn ClientCertVerifier>,
    allowed: Vec<ClientName>,
}

impl AllowList {
    fn names_allowed(&self, leaf: &CertificateDer<'_>) -> bool {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return false;
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return false;
        };
        san.value.general_names.iter().any(|name| {
            use x509_parser::extensions::GeneralName;
            self.allowed.iter().any(|allowed| match (name, allowed) {
                (GeneralName::URI(u), ClientName::Uri(a)) => u == a,
                (GeneralName::DNSName(d), ClientName::Dns(a)) => d.eq_ignore_ascii_case(a),
                _ => false,
            })
        })
    }
}

impl ClientCertVerifier for AllowList {
    fn offer_client_auth(&self) -> bool {
        self.chain.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.chain.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.names_allowed(end_entity) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
