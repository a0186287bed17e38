//! PEM files named by a setting, so every error says which setting to fix.

use super::TlsError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::PathBuf;

/// A PEM file and the setting (environment variable or flag) that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    /// The setting, e.g. `TLS_CERT_FILE`.
    pub setting: &'static str,
    /// The file.
    pub path: PathBuf,
}

impl PemFile {
    /// `path` as named by `setting`.
    pub fn new(setting: &'static str, path: impl Into<PathBuf>) -> Self {
        Self {
            setting,
            path: path.into(),
        }
    }

    /// The file's bytes (blocking: the files are small, call it at start-up or off the
    /// runtime).
    pub fn read(&self) -> Result<Vec<u8>, TlsError> {
        std::fs::read(&self.path).map_err(|source| TlsError::Read {
            setting: self.setting,
            path: self.shown(),
            source,
        })
    }

    /// Every certificate in `pem` (this file's contents): at least one.
    pub(crate) fn certificates(
        &self,
        pem: &[u8],
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.no_certificate(format!(": {e}")))?;
        if certs.is_empty() {
            return Err(self.no_certificate(String::new()));
        }
        Ok(certs)
    }

    /// The private key in `pem` (this file's contents).
    pub(crate) fn private_key(&self, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::NoKey {
            setting: self.setting,
            path: self.shown(),
            detail: match e {
                rustls::pki_types::pem::Error::NoItemsFound => String::new(),
                other => format!(": {other}"),
            },
        })
    }

    fn no_certificate(&self, detail: String) -> TlsError {
        TlsError::NoCertificate {
            setting: self.setting,
            path: self.shown(),
            detail,
        }
    }

    /// The path for messages.
    pub(crate) fn shown(&self) -> String {
        self.path.display().to_string()
    }
}

/// Both files of a pair, or neither; half a pair is an error naming the missing setting.
pub(crate) fn pair(
    cert: Option<PemFile>,
    key: Option<PemFile>,
    (cert_setting, key_setting): (&'static str, &'static str),
) -> Result<Option<(PemFile, PemFile)>, TlsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (Some(_), None) => Err(TlsError::HalfPair {
            set: cert_setting,
            unset: key_setting,
        }),
        (None, Some(_)) => Err(TlsError::HalfPair {
            set: key_setting,
            unset: cert_setting,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::PemFile;

    #[test]
    fn a_missing_file_names_the_setting_the_path_and_how_to_make_one() {
        let missing = PemFile::new("TLS_CERT_FILE", "certs/not-there.pem");
        let error = missing.read().unwrap_err().to_string();
        for part in [
            "TLS_CERT_FILE=certs/not-there.pem",
            "cannot read",
            "todo-stack -- dev-certs",
        ] {
            assert!(error.contains(part), "{error}");
        }
    }
}
