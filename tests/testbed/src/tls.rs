//! HTTPS for the testbed: a throwaway certificate authority made at run time, the server
//! certificates it issues, and the rustls server configuration built from them.
//!
//! Nothing here is meant to be secure: the keys live in memory and in the test's scratch
//! files, and every certificate is for loopback names only. The point is a server whose
//! certificate no system trust store knows, so a test can check that a client refuses it
//! until it is told to trust [`ThrowawayCa::ca_pem`] (for `mcp-remote`: the
//! `NODE_EXTRA_CA_CERTS` variable or `--extra-ca-certs`).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// An rcgen or rustls failure, as the `io::Error` the testbed's constructors return.
fn other(context: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{context}: {error}"))
}

/// A certificate authority made for one test: a fresh ECDSA P-256 key and a self-signed CA
/// certificate. It signs server certificates with [`ThrowawayCa::issue`].
pub struct ThrowawayCa {
    /// The CA certificate and its key.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for ThrowawayCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrowawayCa").finish_non_exhaustive()
    }
}

impl ThrowawayCa {
    /// Makes a CA whose subject common name is `name` (so two CAs of one test can be told
    /// apart in error messages).
    pub fn new(name: &str) -> io::Result<ThrowawayCa> {
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(|e| other("CA key", e))?;
        let issuer =
            CertifiedIssuer::self_signed(params, key).map_err(|e| other("CA certificate", e))?;
        Ok(ThrowawayCa { issuer })
    }

    /// The CA certificate, PEM-encoded: what a client must be told to trust.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes [`ThrowawayCa::ca_pem`] to `path`, for `NODE_EXTRA_CA_CERTS` or a flag.
    pub fn write_ca_pem(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.ca_pem())
    }

    /// Issues a server certificate for `names`: each one that parses as an IP address
    /// becomes an IP address subject alternative name (`127.0.0.1`, `::1`), any other a DNS
    /// name (`localhost`). The certificate is for TLS server authentication only.
    pub fn issue(&self, names: &[&str]) -> io::Result<TlsIdentity> {
        self.issue_with(names, false)
    }

    /// Like [`ThrowawayCa::issue`], for a certificate that expired years ago
    /// (valid 2020-01-01 to 2021-01-01).
    pub fn issue_expired(&self, names: &[&str]) -> io::Result<TlsIdentity> {
        self.issue_with(names, true)
    }

    fn issue_with(&self, names: &[&str], expired: bool) -> io::Result<TlsIdentity> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params =
            CertificateParams::new(names.clone()).map_err(|e| other("server names", e))?;
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| other("server key", e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| other("server certificate", e))?;
        Ok(TlsIdentity {
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What an HTTPS server presents: its certificate chain (leaf first) and private key, both
/// PEM. Made by [`ThrowawayCa::issue`] or from files (for example made with `openssl`).
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate chain, leaf first.
    cert_chain_pem: String,
    /// The leaf's private key (PKCS#8, SEC1 or PKCS#1).
    key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs, throwaway or not.
        f.debug_struct("TlsIdentity")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// An identity from PEM text: the chain (leaf first) and the private key. It is checked
    /// when a testbed starts with it.
    pub fn from_pem(cert_chain_pem: impl Into<String>, key_pem: impl Into<String>) -> TlsIdentity {
        TlsIdentity {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
        }
    }

    /// The certificate chain, PEM, leaf first.
    pub fn cert_chain_pem(&self) -> &str {
        &self.cert_chain_pem
    }

    /// The private key, PEM (a throwaway one: tests may write it to a file for a server of
    /// their own).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The rustls server configuration (ring provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
    pub(crate) fn server_config(&self) -> io::Result<Arc<ServerConfig>> {
        let chain = CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| other("certificate chain", e))?;
        if chain.is_empty() {
            return Err(other("certificate chain", "no certificate in the PEM text"));
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| other("private key", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| other("TLS versions", e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| other("certificate and key", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
