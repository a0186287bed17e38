//! A development PKI: a CA, a server certificate for this machine
//! (`localhost`, `127.0.0.1`, `::1` and any extra names) and a client certificate for the
//! task-service, all ECDSA P-256 (what browsers accept). For `todo-stack dev-certs` and the
//! TLS tests; never for production.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// The names every dev server certificate is valid for.
pub const DEFAULT_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Leaf {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: String,
    /// The certificate (DER), e.g. to compare with what a server presented.
    pub der: CertificateDer<'static>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf").finish_non_exhaustive()
    }
}

/// A development certificate authority that issues server and client certificates.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl DevCa {
    /// A new CA, valid for ten years.
    pub fn new() -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "todo-grpc development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for [`DEFAULT_SANS`] and `extra_sans` (DNS names or IP
    /// addresses), valid for a year.
    pub fn server(&self, extra_sans: &[String]) -> Result<Leaf, rcgen::Error> {
        let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| (*s).to_owned()).collect();
        for san in extra_sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        self.leaf("localhost", sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `name` (e.g. `task-service`), valid for a year.
    pub fn client(&self, name: &str) -> Result<Leaf, rcgen::Error> {
        self.leaf(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        common_name: &str,
        sans: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Leaf, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        })
    }
}

/// What `todo-stack dev-certs` writes: a CA, a server certificate, a client certificate.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The server certificate and key.
    pub server: Leaf,
    /// The task-service's client certificate and key (for mutual TLS).
    pub client: Leaf,
}

impl DevPki {
    /// A new CA with a server certificate for [`DEFAULT_SANS`] and `extra_sans`, and a client
    /// certificate named `task-service`.
    pub fn generate(extra_sans: &[String]) -> Result<Self, rcgen::Error> {
        let ca = DevCa::new()?;
        Ok(Self {
            ca_pem: ca.cert_pem(),
            server: ca.server(extra_sans)?,
            client: ca.client("task-service")?,
        })
    }

    /// The files [`DevPki::write`] makes, by name, with whether each is a private key.
    fn files(&self) -> [(&'static str, &str, bool); 5] {
        [
            ("ca.pem", &self.ca_pem, false),
            ("server.pem", &self.server.cert_pem, false),
            ("server-key.pem", &self.server.key_pem, true),
            ("client.pem", &self.client.cert_pem, false),
            ("client-key.pem", &self.client.key_pem, true),
        ]
    }

    /// Writes `ca.pem`, `server.pem`, `server-key.pem`, `client.pem` and `client-key.pem`
    /// into `dir` (made if missing), the keys readable by their owner only. Refuses to replace
    /// existing files unless `force`. Returns the paths written.
    pub fn write(&self, dir: &Path, force: bool) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let files = self.files();
        if !force
            && let Some(existing) = files
                .iter()
                .map(|(name, _, _)| dir.join(name))
                .find(|path| path.exists())
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists: pass --force to replace the certificates in {}",
                    existing.display(),
                    dir.display()
                ),
            ));
        }
        let mut written = Vec::with_capacity(files.len());
        for (name, contents, private) in files {
            let path = dir.join(name);
            write_file(&path, contents, private)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Writes `contents` to `path`, replacing it; a private key gets mode 0600 on Unix.
fn write_file(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    #[cfg(unix)]
    if private {
        // `mode` applies to new files only: an existing key file (with --force) is narrowed too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
