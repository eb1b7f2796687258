//! The forward proxy's certificate authority: made once by `scrim ca init`,
//! loaded with the configuration, and signing a short-lived certificate for
//! each host the proxy intercepts.
//!
//! Its key never leaves this module: `Authority` has no `Debug` that shows
//! it, and no error quotes the key file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::Digest as _;

/// The files `scrim ca init` writes into its directory.
pub const CERT_FILE: &str = "scrim-ca.pem";
pub const KEY_FILE: &str = "scrim-ca-key.pem";

/// How long a CA made by `scrim ca init` is valid.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a minted certificate is valid. Apps on this machine see it, and
/// scrim mints another long before it ends (`LEAF_RENEW_AFTER`).
pub const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a minted certificate is used before a new one is minted.
pub const LEAF_RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Certificates start this long before they are made, for clocks behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A CA whose key can sign.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    /// One key for every minted certificate. It only ever protects the
    /// connections of apps on this machine to scrim; a key per host would
    /// cost a key generation per host and protect nothing more.
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("fingerprint", &fingerprint(&self.certificate))
            .finish_non_exhaustive()
    }
}

/// A CA's certificate as `scrim ca show` prints it.
pub struct Shown {
    pub pem: String,
    /// SHA-256 of the DER certificate, as colon-separated uppercase hex
    /// (what browsers and `openssl x509 -fingerprint -sha256` show).
    pub fingerprint: String,
    pub subject: String,
    pub not_after: String,
}

/// SHA-256 of a DER certificate, `AB:CD:…`.
pub fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    let digest = sha2::Sha256::digest(certificate.as_ref());
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

fn now_minus(duration: Duration) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - duration
}

fn now_plus(duration: Duration) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + duration
}

/// A random positive serial number: certificates that share a key must
/// not share a serial (browsers refuse a second certificate with the
/// first's issuer and serial).
fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Makes a new CA in `dir` (created if missing): its certificate in
/// [`CERT_FILE`] and its key in [`KEY_FILE`], readable by the owner only.
/// Files already there are never overwritten. Returns the certificate's
/// path.
pub fn init(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(format!(
                "{} exists: a CA is there already (remove both files to make a new one; apps trusting the old one must then trust the new one)",
                path.display()
            ));
        }
    }
    let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    let made = time::OffsetDateTime::now_utc().date();
    name.push(DnType::OrganizationName, "scrim");
    name.push(
        DnType::CommonName,
        format!("scrim local CA ({made}, {})", host_name()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now_minus(BACKDATE);
    params.not_after = now_plus(CA_LIFETIME);
    params.serial_number = Some(random_serial()?);
    let certificate = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the CA certificate: {e}"))?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, certificate.pem().as_bytes(), 0o644)?;
    Ok(cert_path)
}

/// The machine's name, to tell one scrim's CA from another's in a trust
/// store.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.len() <= 32)
        .unwrap_or_else(|| "this machine".to_owned())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads a CA certificate (the first in the PEM file) for `scrim ca show`.
pub fn show(cert_path: &Path) -> Result<Shown, String> {
    let certificate = read_certificate(cert_path)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|_| format!("{}: not an X.509 certificate", cert_path.display()))?;
    Ok(Shown {
        pem: pem_encode(certificate.as_ref()),
        fingerprint: fingerprint(&certificate),
        subject: parsed.subject().to_string(),
        not_after: parsed.validity().not_after.to_string(),
    })
}

fn pem_encode(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
}

fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, String> {
    let mut certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    match certificates.next() {
        Some(Ok(certificate)) => Ok(certificate),
        Some(Err(e)) => Err(format!(
            "cannot read certificates from {}: {e}",
            path.display()
        )),
        None => Err(format!("{} holds no certificate", path.display())),
    }
}

impl Authority {
    /// Loads a CA from its certificate and key files. Fails when either
    /// does not read, or when a certificate it signs does not verify under
    /// that certificate (the key is another's, or it is no CA). `warnings`
    /// gets a key file that group or others may read.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        warnings: &mut Vec<String>,
    ) -> Result<Authority, AuthorityError> {
        let certificate = read_certificate(cert_path).map_err(AuthorityError::Certificate)?;
        // The error names the file, never what it holds.
        let cannot_key = |reason: &str| {
            AuthorityError::Key(format!(
                "cannot read a private key from {}: {reason}",
                key_path.display()
            ))
        };
        let key_pem = std::fs::read_to_string(key_path).map_err(|e| cannot_key(&e.to_string()))?;
        #[cfg(unix)]
        if let Ok(metadata) = std::fs::metadata(key_path) {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode();
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "forward_proxy.ca.key: {} may be read by group or others (mode {:03o}); `chmod 600 {}`",
                    key_path.display(),
                    mode & 0o777,
                    key_path.display()
                ));
            }
        }
        #[cfg(not(unix))]
        let _ = warnings;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| {
            cannot_key("not a PEM private key scrim can sign with (ECDSA, Ed25519 or RSA, PKCS#8)")
        })?;
        drop(zeroize::Zeroizing::new(key_pem));
        let issuer = Issuer::from_ca_cert_der(&certificate, key).map_err(|e| {
            AuthorityError::Certificate(format!(
                "{}: not a CA certificate scrim can issue under: {e}",
                cert_path.display()
            ))
        })?;
        let leaf_key =
            KeyPair::generate().map_err(|e| AuthorityError::Key(format!("no key: {e}")))?;
        let leaf_signer = signer(&leaf_key).map_err(AuthorityError::Key)?;
        let authority = Authority {
            issuer,
            certificate,
            leaf_key,
            leaf_signer,
        };
        authority.check().map_err(|e| {
            AuthorityError::Key(format!(
                "{} and {} do not make a CA: a certificate signed with this key does not verify under this certificate ({e})",
                key_path.display(),
                cert_path.display()
            ))
        })?;
        Ok(authority)
    }

    /// The CA's certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// Mints a certificate for `host` (a DNS name or an IP address), valid
    /// from an hour ago for [`LEAF_LIFETIME`], and the key that serves it.
    pub fn mint(&self, host: &str) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
        let mut params = CertificateParams::new(vec![host.to_owned()])
            .map_err(|e| format!("`{host}` cannot be named in a certificate: {e}"))?;
        let mut name = DistinguishedName::new();
        // The subject's common name is limited to 64 characters; clients
        // read the alternative name anyway.
        if host.len() <= 64 {
            name.push(DnType::CommonName, host);
        }
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now_minus(BACKDATE);
        params.not_after = now_plus(LEAF_LIFETIME);
        params.serial_number = Some(random_serial()?);
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| format!("cannot sign a certificate for `{host}`: {e}"))?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(
            vec![leaf.der().clone(), self.certificate.clone()],
            self.leaf_signer.clone(),
        )))
    }

    /// Whether what this CA mints verifies under its certificate.
    fn check(&self) -> Result<(), String> {
        const PROBE: &str = "scrim-ca-check.invalid";
        let minted = self.mint(PROBE)?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.certificate.clone())
            .map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(PROBE).map_err(|e| e.to_string())?;
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            &*verifier,
            &minted.cert[0],
            &minted.cert[1..],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

/// The rustls signing key for a generated key pair.
fn signer(key: &KeyPair) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())
}

/// Why a CA did not load: its certificate file or its key file (the
/// configuration error points at one or the other).
#[derive(Debug)]
pub enum AuthorityError {
    Certificate(String),
    Key(String),
}

impl std::fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthorityError::Certificate(message) | AuthorityError::Key(message) => {
                f.write_str(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scrim-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_ca_loads_and_its_certificates_verify() {
        let dir = temp_dir("new");
        let cert = init(&dir).unwrap();
        assert_eq!(cert, dir.join(CERT_FILE));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut warnings = Vec::new();
        let authority = Authority::load(&cert, &dir.join(KEY_FILE), &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // `load` checked a probe; these are the real shapes.
        for host in ["graph.facebook.com", "127.0.0.1", &"a".repeat(70)] {
            let minted = authority.mint(host).unwrap();
            assert_eq!(minted.cert.len(), 2);
        }
        let shown = show(&cert).unwrap();
        assert_eq!(shown.fingerprint.len(), 32 * 3 - 1);
        assert!(
            shown.subject.contains("scrim local CA"),
            "{}",
            shown.subject
        );
        assert_eq!(shown.pem, std::fs::read_to_string(&cert).unwrap());
        // Never overwritten.
        assert!(init(&dir).unwrap_err().contains("exists"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_of_another_ca_is_refused_without_showing_it() {
        let (a, b) = (temp_dir("a"), temp_dir("b"));
        init(&a).unwrap();
        init(&b).unwrap();
        let error =
            Authority::load(&a.join(CERT_FILE), &b.join(KEY_FILE), &mut Vec::new()).unwrap_err();
        assert!(matches!(error, AuthorityError::Key(_)), "{error}");
        assert!(error.to_string().contains("do not make a CA"), "{error}");
        let key = std::fs::read_to_string(b.join(KEY_FILE)).unwrap();
        let body: String = key.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!error.to_string().contains(&body));
        // A certificate given as the key.
        let error =
            Authority::load(&a.join(CERT_FILE), &a.join(CERT_FILE), &mut Vec::new()).unwrap_err();
        assert!(
            error.to_string().contains("cannot read a private key"),
            "{error}"
        );
        for dir in [a, b] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
