//! Certificates made by the tests (rcgen): a CA, and server and client certificates it
//! signs with whatever name, usage and validity a case needs. Nothing is committed: each
//! test makes fresh keys.

use std::net::IpAddr;
use std::path::PathBuf;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;

use super::envoy::Scratch;

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// What a leaf certificate says.
#[derive(Clone)]
pub struct Leaf {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub usages: Vec<ExtendedKeyUsagePurpose>,
    /// (not_before, not_after) as calendar years; default 2000..4000.
    pub years: (i32, i32),
}

impl Leaf {
    /// A server certificate for `localhost` and 127.0.0.1 (and `extra` DNS names).
    pub fn server(extra: &[&str]) -> Leaf {
        let mut dns = vec!["localhost".to_string()];
        dns.extend(extra.iter().map(|s| s.to_string()));
        Leaf {
            dns,
            ips: vec![IpAddr::from([127, 0, 0, 1])],
            uris: vec![],
            usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
            years: (2000, 4000),
        }
    }

    /// A client certificate naming `uri` (a SPIFFE ID).
    pub fn client_uri(uri: &str) -> Leaf {
        Leaf {
            dns: vec![],
            ips: vec![],
            uris: vec![uri.to_string()],
            usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
            years: (2000, 4000),
        }
    }

    /// A client certificate naming `dns` as a DNS SAN.
    pub fn client_dns(dns: &str) -> Leaf {
        Leaf {
            dns: vec![dns.to_string()],
            ..Leaf::client_uri("spiffe://unused/x")
        }
        .without_uris()
    }

    pub fn without_uris(mut self) -> Leaf {
        self.uris.clear();
        self
    }

    pub fn valid(mut self, from: i32, until: i32) -> Leaf {
        self.years = (from, until);
        self
    }

    pub fn usages(mut self, usages: Vec<ExtendedKeyUsagePurpose>) -> Leaf {
        self.usages = usages;
        self
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
    pub der: CertificateDer<'static>,
}

impl Pair {
    /// Writes `NAME.crt` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Scratch, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.write(&format!("{name}.crt"), &self.cert),
            dir.write(&format!("{name}.key"), &self.key),
        )
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate as `NAME.crt` into `dir`.
    pub fn write(&self, dir: &Scratch, name: &str) -> PathBuf {
        dir.write(&format!("{name}.crt"), &self.pem)
    }

    pub fn sign(&self, leaf: &Leaf) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tokengate test");
        for d in &leaf.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.clone().try_into().expect("DNS SAN")));
        }
        for ip in &leaf.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for u in &leaf.uris {
            params
                .subject_alt_names
                .push(SanType::URI(u.clone().try_into().expect("URI SAN")));
        }
        params.extended_key_usages = leaf.usages.clone();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = date_time_ymd(leaf.years.0, 1, 1);
        params.not_after = date_time_ymd(leaf.years.1, 1, 1);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}
