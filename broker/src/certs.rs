//! The cluster CA and node certificates (`floe cert init` / `floe cert issue`).
//!
//! floe's TLS is always on, and every certificate comes from one cluster CA:
//!
//! * [`init_ca`] writes `DIR/ca.pem` (the CA certificate every node and client trusts) and
//!   `DIR/ca.key` (its private key, mode 0600; keep it off the brokers if you can).
//! * [`issue`] writes `DIR/NAME.pem` and `DIR/NAME.key` (mode 0600): a certificate signed by
//!   the CA for NAME (always a DNS subject-alternative name) plus any extra DNS names and IP
//!   addresses. It is valid both as a TLS server certificate (a broker's client and peer
//!   listeners) and as a client certificate (mutual TLS on peer links, or a client that
//!   authenticates).
//!
//! Keys are ECDSA P-256. Existing files are never overwritten: remove them first to
//! re-issue. The CA is valid for 10 years, issued certificates for 5; both start one day in
//! the past to tolerate clock skew.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use floe_broker::certs::{init_ca, issue, IssueRequest};
//! let dir = tempfile::tempdir()?;
//! let ca = init_ca(dir.path())?;
//! let node = issue(dir.path(), &IssueRequest::new("node-1")?.ip("127.0.0.1".parse()?), dir.path())?;
//! assert!(ca.cert.ends_with("ca.pem") && node.key.ends_with("node-1.key"));
//! # Ok(())
//! # }
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// File name of the CA certificate in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

const CA_VALIDITY_DAYS: i64 = 10 * 365;
const CERT_VALIDITY_DAYS: i64 = 5 * 365;
const BACKDATE_DAYS: i64 = 1;
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// A certificate file and its key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key (mode 0600).
    pub key: PathBuf,
}

/// Making or loading certificates failed. All of these are operator errors or environment
/// problems: the command fails with the message.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The CA directory does not exist.
    #[error("CA directory {} does not exist (run `floe cert init --out {}` first)", dir.display(), dir.display())]
    NoCaDir {
        /// The directory.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file to be written already exists.
    #[error("{} already exists; remove it first to replace it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA key file holds no usable private key.
    #[error("{} is not a usable private key: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// The CA certificate file holds no usable certificate.
    #[error("{} is not a usable CA certificate: {source}", path.display())]
    BadCaCert {
        /// The file.
        path: PathBuf,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// A name is not a valid DNS name (letters, digits and hyphens in dot-separated labels
    /// of 1 to 63 characters, 253 at most in all).
    #[error("{name:?} is not a valid DNS name: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Key generation or signing failed.
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What to put in a certificate: its name (the file name and first DNS name) and any more
/// subject-alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    name: String,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl IssueRequest {
    /// A request for `name`, which must be a DNS name (it also names the files).
    pub fn new(name: &str) -> Result<Self, CertError> {
        check_dns_name(name)?;
        Ok(IssueRequest {
            name: name.to_string(),
            dns: Vec::new(),
            ips: Vec::new(),
        })
    }

    /// Adds a DNS subject-alternative name.
    pub fn dns(mut self, name: &str) -> Result<Self, CertError> {
        check_dns_name(name)?;
        if name != self.name && !self.dns.iter().any(|d| d == name) {
            self.dns.push(name.to_string());
        }
        Ok(self)
    }

    /// Adds an IP address subject-alternative name.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
        self
    }

    /// The certificate's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn subject_alt_names(&self) -> Result<Vec<SanType>, CertError> {
        let mut sans = Vec::with_capacity(1 + self.dns.len() + self.ips.len());
        for name in std::iter::once(&self.name).chain(&self.dns) {
            let ia5 = name.clone().try_into().map_err(|_| CertError::BadName {
                name: name.clone(),
                reason: "not ASCII",
            })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(self.ips.iter().copied().map(SanType::IpAddress));
        Ok(sans)
    }
}

/// Checks `name` is a DNS host name: what webpki accepts as a server name and what is safe
/// as a file name.
fn check_dns_name(name: &str) -> Result<(), CertError> {
    let bad = |reason| {
        Err(CertError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    if name.parse::<IpAddr>().is_ok() {
        return bad("an IP address (use --ip)");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label may not start or end with a hyphen");
        }
    }
    Ok(())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(BACKDATE_DAYS);
    params.not_after = now + Duration::days(days);
}

/// Refuses to touch existing files, then writes the key (0600) and the certificate.
fn write_pair(paths: &CertPaths, cert_pem: &str, key_pem: &str) -> Result<(), CertError> {
    for path in [&paths.cert, &paths.key] {
        if path.exists() {
            return Err(CertError::Exists { path: path.clone() });
        }
    }
    write_new(&paths.key, key_pem.as_bytes(), KEY_MODE)?;
    if let Err(e) = write_new(&paths.cert, cert_pem.as_bytes(), CERT_MODE) {
        // Leave no key without its certificate behind.
        let _ = std::fs::remove_file(&paths.key);
        return Err(e);
    }
    Ok(())
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes` and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => CertError::Exists {
                path: path.to_path_buf(),
            },
            _ => err(source),
        })?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn read_to_string(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates a cluster CA in `out` (created if missing): `ca.pem` and `ca.key`.
pub fn init_ca(out: &Path) -> Result<CertPaths, CertError> {
    let paths = CertPaths {
        cert: out.join(CA_CERT_FILE),
        key: out.join(CA_KEY_FILE),
    };
    create_dir(out)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "floe");
    dn.push(DnType::CommonName, "floe cluster CA");
    params.distinguished_name = dn;
    // Node certificates are signed directly by this CA: no intermediates below it.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key)?;
    write_pair(&paths, &cert.pem(), &key.serialize_pem())?;
    Ok(paths)
}

/// Issues a certificate for `request` signed by the CA in `ca_dir`, written to `out`
/// (created if missing) as `NAME.pem` and `NAME.key`.
pub fn issue(ca_dir: &Path, request: &IssueRequest, out: &Path) -> Result<CertPaths, CertError> {
    if !ca_dir.is_dir() {
        return Err(CertError::NoCaDir {
            dir: ca_dir.to_path_buf(),
        });
    }
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_cert_pem = read_to_string(&ca_cert_path)?;
    let ca_key =
        KeyPair::from_pem(&read_to_string(&ca_key_path)?).map_err(|source| CertError::BadKey {
            path: ca_key_path.clone(),
            source,
        })?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(|source| CertError::BadCaCert {
            path: ca_cert_path.clone(),
            source,
        })?;

    let paths = CertPaths {
        cert: out.join(format!("{}.pem", request.name)),
        key: out.join(format!("{}.key", request.name)),
    };
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "floe");
    dn.push(DnType::CommonName, request.name.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = request.subject_alt_names()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, CERT_VALIDITY_DAYS);
    let cert = params.signed_by(&key, &issuer)?;
    create_dir(out)?;
    write_pair(&paths, &cert.pem(), &key.serialize_pem())?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_ca_files_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ca");
        let paths = init_ca(&out).unwrap();
        assert_eq!(paths.cert, out.join("ca.pem"));
        assert_eq!(mode(&paths.key), 0o600);
        let pem = std::fs::read_to_string(&paths.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(
            std::fs::read_to_string(&paths.key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
        // Never overwritten.
        assert!(matches!(init_ca(&out), Err(CertError::Exists { .. })));
    }

    #[test]
    fn issue_signs_with_the_ca_and_keeps_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path()).unwrap();
        let request = IssueRequest::new("node-1")
            .unwrap()
            .dns("node-1.floe.internal")
            .unwrap()
            .dns("node-1")
            .unwrap()
            .ip("127.0.0.1".parse().unwrap())
            .ip("::1".parse().unwrap());
        assert_eq!(request.subject_alt_names().unwrap().len(), 4);
        let out = dir.path().join("nodes");
        let paths = issue(dir.path(), &request, &out).unwrap();
        assert_eq!(paths.cert, out.join("node-1.pem"));
        assert_eq!(paths.key, out.join("node-1.key"));
        assert_eq!(mode(&paths.key), 0o600);
        // The leaf is signed by the CA, names the CA as issuer, and carries every name.
        let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let leaf_pem = std::fs::read(&paths.cert).unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
        let (_, leaf_pem) = x509_parser::pem::parse_x509_pem(&leaf_pem).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        let leaf = leaf_pem.parse_x509().unwrap();
        assert!(ca.is_ca() && !leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        ca.verify_signature(None).unwrap();
        let sans = &leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        use x509_parser::extensions::GeneralName;
        assert_eq!(
            sans,
            &vec![
                GeneralName::DNSName("node-1"),
                GeneralName::DNSName("node-1.floe.internal"),
                GeneralName::IPAddress(&[127, 0, 0, 1]),
                GeneralName::IPAddress(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            ]
        );
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let validity = leaf.validity();
        assert!(validity.is_valid());
        assert!(
            validity.not_after.timestamp() - validity.not_before.timestamp()
                >= (CERT_VALIDITY_DAYS * 86_400)
        );
        assert!(matches!(
            issue(dir.path(), &request, &out),
            Err(CertError::Exists { .. })
        ));
    }

    #[test]
    fn bad_names_and_missing_ca_are_typed_errors() {
        for name in [
            "", "a/b", "../x", "-a", "a-", "a..b", "a_b", "10.0.0.1", "ünï",
        ] {
            assert!(
                matches!(IssueRequest::new(name), Err(CertError::BadName { .. })),
                "{name:?} accepted"
            );
        }
        assert!(IssueRequest::new(&"a".repeat(64)).is_err());
        assert!(IssueRequest::new("node-1.example.com").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let request = IssueRequest::new("n").unwrap();
        let missing = dir.path().join("nope");
        let err = issue(&missing, &request, dir.path()).unwrap_err();
        assert!(matches!(err, CertError::NoCaDir { .. }), "{err:?}");
        assert!(err.to_string().contains("floe cert init"), "{err}");
        // A directory without the CA files names the missing file.
        let err = issue(dir.path(), &request, dir.path()).unwrap_err();
        assert!(
            matches!(&err, CertError::Read { path, .. } if path.ends_with("ca.pem")),
            "{err:?}"
        );
        // A garbled key is named too.
        init_ca(dir.path()).unwrap();
        std::fs::write(dir.path().join("ca.key"), "not a key").unwrap();
        let err = issue(dir.path(), &request, dir.path()).unwrap_err();
        assert!(matches!(err, CertError::BadKey { .. }), "{err:?}");
        assert!(!dir.path().join("n.key").exists());
    }
}
