//! TLS material and rustls configurations (TLS 1.3 only, ring provider).
//!
//! floe has one trust model: a cluster CA (made by `floe cert init`) signs every node's
//! certificate (`floe cert issue`). Clients trust the CA and verify the broker's name; peers
//! additionally present their node certificate and require one from the other side (mutual
//! TLS). ALPN separates the two protocols: [`Alpn::Client`] (`floe/1`) and [`Alpn::Peer`]
//! (`floe-peer/1`); a server fails the handshake of a client that offers neither.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use floe_net::tls::{Alpn, CaCerts, Identity};
//! # let dir = tempfile::tempdir()?;
//! # let ca_key = rcgen::KeyPair::generate()?;
//! # let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! # ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! # let ca_cert = ca_params.self_signed(&ca_key)?;
//! # let issuer = rcgen::Issuer::new(ca_params, ca_key);
//! # let node_key = rcgen::KeyPair::generate()?;
//! # let node = rcgen::CertificateParams::new(vec!["node-1".to_string()])?.signed_by(&node_key, &issuer)?;
//! # std::fs::write(dir.path().join("ca.pem"), ca_cert.pem())?;
//! # std::fs::write(dir.path().join("node-1.pem"), node.pem())?;
//! # std::fs::write(dir.path().join("node-1.key"), node_key.serialize_pem())?;
//! let ca = CaCerts::from_pem_file(dir.path().join("ca.pem"))?;
//! let me = Identity::from_pem_files(dir.path().join("node-1.pem"), dir.path().join("node-1.key"))?;
//! // The broker's listener for clients, and its mutually authenticated peer side.
//! let _clients = floe_net::tls::server_crypto(&me, Alpn::Client, None)?;
//! let _peer_server = floe_net::tls::server_crypto(&me, Alpn::Peer, Some(&ca))?;
//! let _peer_client = floe_net::tls::client_crypto(&ca, Alpn::Peer, Some(&me))?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Which of floe's two protocols a TLS configuration speaks (its single ALPN identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// The client ↔ broker protocol, `floe/1`.
    Client,
    /// The broker ↔ broker protocol, `floe-peer/1` (always with mutual TLS).
    Peer,
}

impl Alpn {
    /// The ALPN identifier on the wire.
    ///
    /// ```
    /// assert_eq!(floe_net::tls::Alpn::Client.id(), b"floe/1");
    /// assert_eq!(floe_net::tls::Alpn::Peer.id(), b"floe-peer/1");
    /// ```
    pub fn id(self) -> &'static [u8] {
        match self {
            Alpn::Client => floe_protocol::client::ALPN,
            Alpn::Peer => floe_protocol::peer::PEER_ALPN,
        }
    }
}

/// Loading TLS material or building a configuration failed. Always fatal: a configuration
/// problem that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: pem::Error,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{} holds no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key (PKCS#8, SEC1 or PKCS#1).
    #[error("{} holds no private key", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA file holds a certificate that cannot be a trust anchor.
    #[error("{} holds an unusable CA certificate: {source}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why rustls rejected it.
        source: rustls::Error,
    },
    /// rustls rejected the configuration (for example a key that does not match the
    /// certificate, or an unsupported key type).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (for example no CA certificates).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The rustls configuration lacks the cipher suite QUIC needs for its Initial packets.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_certs(path: &Path, pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A certificate chain and its private key: who this node (or client) is.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key.
    pub fn from_pem_files(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let cert_path = cert_path.as_ref();
        let key_path = key_path.as_ref();
        let chain = parse_certs(cert_path, &read_file(cert_path)?)?;
        let key_bytes = read_file(key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoPrivateKey {
                path: key_path.to_path_buf(),
            },
            source => TlsError::Pem {
                path: key_path.to_path_buf(),
                source,
            },
        })?;
        Ok(Identity { chain, key })
    }

    /// An identity from DER values already in memory.
    pub fn from_der(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Identity { chain, key }
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

/// The cluster CA certificates this side trusts.
#[derive(Clone)]
pub struct CaCerts {
    roots: Arc<RootCertStore>,
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCerts")
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl CaCerts {
    /// Loads one or more PEM CA certificates (a bundle is allowed, for CA rotation).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let certs = parse_certs(path, &read_file(path)?)?;
        Self::from_der(certs).map_err(|e| match e {
            TlsError::Rustls(source) => TlsError::BadCa {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Trust anchors from DER certificates.
    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert)?;
        }
        Ok(CaCerts {
            roots: Arc::new(roots),
        })
    }

    /// How many trust anchors.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are none (never true for a loaded file).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The QUIC server side of TLS: presents `identity` and speaks `alpn`. With `client_ca`, every
/// client must present a certificate signed by it (mutual TLS, used for [`Alpn::Peer`]).
pub fn server_crypto(
    identity: &Identity,
    alpn: Alpn,
    client_ca: Option<&CaCerts>,
) -> Result<Arc<QuicServerConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(ca.roots.clone(), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let id = identity.clone();
    let mut config = builder.with_single_cert(id.chain, id.key)?;
    config.alpn_protocols = vec![alpn.id().to_vec()];
    Ok(Arc::new(QuicServerConfig::try_from(config)?))
}

/// The QUIC client side of TLS: trusts `ca`, verifies the server's name, speaks `alpn`, and
/// with `identity` presents a client certificate (mutual TLS, used for [`Alpn::Peer`]).
pub fn client_crypto(
    ca: &CaCerts,
    alpn: Alpn,
    identity: Option<&Identity>,
) -> Result<Arc<QuicClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(ca.roots.clone());
    let mut config = match identity {
        Some(id) => {
            let id = id.clone();
            builder.with_client_auth_cert(id.chain, id.key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.id().to_vec()];
    Ok(Arc::new(QuicClientConfig::try_from(config)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = CaCerts::from_pem_file(&missing).unwrap_err();
        assert!(matches!(&err, TlsError::Read { path, .. } if path == &missing));
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }

    #[test]
    fn empty_and_garbled_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            CaCerts::from_pem_file(&empty),
            Err(TlsError::NoCertificate { .. })
        ));
        let garbled = dir.path().join("garbled.pem");
        std::fs::write(
            &garbled,
            b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            CaCerts::from_pem_file(&garbled),
            Err(TlsError::Pem { .. })
        ));
        // A certificate file is not a key file.
        let cert_only = dir.path().join("cert.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&cert_only, cert.pem()).unwrap();
        let err = Identity::from_pem_files(&cert_only, &cert_only).unwrap_err();
        assert!(matches!(&err, TlsError::NoPrivateKey { path } if path == &cert_only));
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), other.serialize_pem()).unwrap();
        let id =
            Identity::from_pem_files(dir.path().join("c.pem"), dir.path().join("k.pem")).unwrap();
        assert!(matches!(
            server_crypto(&id, Alpn::Client, None),
            Err(TlsError::Rustls(_))
        ));
    }
}
