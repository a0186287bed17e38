//! TLS with rustls (ring provider): the settings a server shares ([`TlsArgs`]), the reloading
//! server certificate, and the client side of the service-to-service channel. (The
//! development PKI is the `dev-pki` crate.)

mod args;
mod client;
mod files;
mod reload;

pub use args::TlsArgs;
pub use client::ClientTls;
pub use files::PemFile;
pub(crate) use reload::ReloadingCert;

use std::sync::Arc;

/// Why TLS could not be set up. Every message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error(
        "{setting}={path}: cannot read: {source}; point {setting} at a PEM file (for development, \
         `cargo run -p todo-stack -- dev-certs` writes certs/), or unset it for plaintext"
    )]
    Read {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file that should hold certificates holds none (or an unparsable one).
    #[error("{setting}={path}: no PEM certificate in it{detail}")]
    NoCertificate {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What the parser said, if anything (`": …"`).
        detail: String,
    },
    /// A PEM file that should hold a private key holds none (or an unparsable one).
    #[error("{setting}={path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it{detail}")]
    NoKey {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What the parser said, if anything (`": …"`).
        detail: String,
    },
    /// Half of a certificate/key pair.
    #[error(
        "{set} is set but {unset} is not: set both (e.g. from `todo-stack dev-certs`) or neither"
    )]
    HalfPair {
        /// The setting that is set.
        set: &'static str,
        /// The one that is missing.
        unset: &'static str,
    },
    /// A setting that needs another one.
    #[error("{0}")]
    Combination(String),
    /// rustls refused the certificate, key or settings (e.g. a key that does not match its
    /// certificate).
    #[error("{context}: {source}")]
    Rustls {
        /// Which settings were being used.
        context: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// Makes ring the process's rustls provider. Call once at the start of each `main`; a second
/// call (or another provider installed first) is harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed: that one is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The process's rustls provider, or ring when none is installed (tests, libraries).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// An error and its causes on one line: tonic's transport errors say only "transport error"
/// in their `Display`, the reason is in the chain.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
