//! The server certificate, reloaded from its files: rustls asks [`ReloadingCert`] for the
//! certificate at each handshake, so a new pair reaches new connections without a restart,
//! while established connections keep the one they were made with.

use super::{PemFile, TlsError, crypto_provider};
use rustls::{
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// A certificate/key pair read from files, replaced by [`ReloadingCert::reload_if_changed`]
/// when the files hold a different, valid pair.
pub(crate) struct ReloadingCert {
    cert: PemFile,
    key: PemFile,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents of the pair in use, to tell a change (contents, not modification
    /// times: a Kubernetes secret's symlink swap or `cp -p` keeps or hides mtimes).
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert.path)
            .field("key", &self.key.path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

impl ReloadingCert {
    /// Reads and checks the pair (blocking: call it at start-up).
    pub(crate) fn load(cert: PemFile, key: PemFile) -> Result<Self, TlsError> {
        let provider = crypto_provider();
        let (cert_pem, key_pem) = (cert.read()?, key.read()?);
        let certified = certified_key(&cert, &cert_pem, &key, &key_pem, &provider)?;
        Ok(Self {
            cert,
            key,
            provider,
            current: RwLock::new(Arc::new(certified)),
            loaded: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// The certificate file (for log lines).
    pub(crate) fn cert_file(&self) -> &PemFile {
        &self.cert
    }

    /// Re-reads the files (blocking: a few KB); `Ok(true)` if they changed and the new pair is
    /// now served. A pair that does not load (e.g. the certificate written before its key)
    /// is an error and the previous pair stays in use.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (self.cert.read()?, self.key.read()?);
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let fresh = certified_key(&self.cert, &cert_pem, &self.key, &key_pem, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        *loaded = (cert_pem, key_pem);
        Ok(true)
    }
}

/// The chain and key, checked to belong together.
fn certified_key(
    cert: &PemFile,
    cert_pem: &[u8],
    key: &PemFile,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = cert.certificates(cert_pem)?;
    let private_key = key.private_key(key_pem)?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|source| TlsError::Rustls {
        context: format!(
            "{}={} with {}={}",
            cert.setting,
            cert.shown(),
            key.setting,
            key.shown()
        ),
        source,
    })
}

#[cfg(test)]
mod tests;
