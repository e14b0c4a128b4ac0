//! One crypto backend. jsonwebtoken verifies signatures with aws-lc-rs; rustls (HTTPS
//! to JWKS and discovery endpoints, TLS to Redis) is built without ring and given
//! aws-lc-rs as its provider here, so the binary carries one audited implementation.

/// Makes aws-lc-rs rustls's process-wide provider. Idempotent; called before any TLS
/// client is built (the JWKS client, the Redis connection, the tools' HTTP clients).
pub fn install_provider() {
    // An error means a provider is already installed: the same one, from an earlier call.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
