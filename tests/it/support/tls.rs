//! TLS clients for the tests: a rustls client trusting a test CA, optionally presenting
//! a client certificate, used raw (to read the server's certificate), under a tonic
//! channel (gRPC Check), and under reqwest (HTTPS).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use super::certs::Pair;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting `ca_pem`, presenting `identity` when given, offering `alpn`.
pub fn client_config(ca_pem: &str, identity: Option<&Pair>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    client_config_versions(ca_pem, identity, alpn, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] restricted to `versions`.
pub fn client_config_versions(
    ca_pem: &str,
    identity: Option<&Pair>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA certificate");
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(p) => builder
            .with_client_auth_cert(
                vec![p.der.clone()],
                PrivateKeyDer::from_pem_slice(p.key.as_bytes()).expect("client key"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` as `localhost`.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate the server at `addr` presents to a new connection.
pub async fn served_certificate(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<CertificateDer<'static>> {
    let tls = connect(addr, config).await?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| std::io::Error::other("no peer certificate"))
}

/// A Check client over TLS; `connections` counts the TLS connections it opened (a
/// rotation must not make it open a second).
pub async fn grpc(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    connections: Arc<AtomicUsize>,
) -> Result<AuthorizationClient<Channel>, tonic::transport::Error> {
    let connector = tower::service_fn(move |_: Uri| {
        let (config, connections) = (config.clone(), connections.clone());
        async move {
            connections.fetch_add(1, Ordering::SeqCst);
            let tls = connect(addr, config).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await?;
    Ok(AuthorizationClient::new(channel))
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` when given.
pub fn https(ca_pem: &str, identity: Option<&Pair>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"));
    if let Some(p) = identity {
        let pem = format!("{}{}", p.cert, p.key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("HTTPS client")
}
