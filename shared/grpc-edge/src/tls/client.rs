//! The client side: an [`Endpoint`] for `http://` or `https://` URLs, verifying the server
//! with one CA file or the system's roots, optionally presenting a client certificate.

use super::{PemFile, TlsError, error_chain, files::pair};
use std::path::PathBuf;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How a client verifies its TLS server and, for mutual TLS, proves who it is.
#[derive(Debug, Clone)]
pub struct ClientTls {
    ca_setting: &'static str,
    ca: Option<PemFile>,
    identity: Option<(PemFile, PemFile)>,
}

impl ClientTls {
    /// From three settings, named `[ca, cert, key]` (e.g. `AUTH_SERVICE_CA_FILE`,
    /// `TLS_CLIENT_CERT_FILE`, `TLS_CLIENT_KEY_FILE`): the only CA to trust (unset: the
    /// system's roots), and a client certificate with its key (both or neither).
    pub fn new(
        [ca_setting, cert_setting, key_setting]: [&'static str; 3],
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Self, TlsError> {
        let identity = pair(
            cert.map(|p| PemFile::new(cert_setting, p)),
            key.map(|p| PemFile::new(key_setting, p)),
            (cert_setting, key_setting),
        )?;
        Ok(Self {
            ca_setting,
            ca: ca.map(|p| PemFile::new(ca_setting, p)),
            identity,
        })
    }

    /// The first TLS setting that is set, if any.
    fn first_set(&self) -> Option<&'static str> {
        self.ca
            .as_ref()
            .map(|ca| ca.setting)
            .or_else(|| self.identity.as_ref().map(|(cert, _)| cert.setting))
    }

    /// Checks that `url` (named by `url_setting`) is `http://` without TLS settings (tonic
    /// would silently ignore them) or `https://`; `Ok(true)` for `https://`. Reads no file.
    pub fn check_url(&self, url_setting: &str, url: &str) -> Result<bool, TlsError> {
        let uri: http::Uri = url.parse().map_err(|_| bad_url(url_setting, url))?;
        if uri.authority().is_none() {
            return Err(bad_url(url_setting, url));
        }
        match uri.scheme_str() {
            Some("https") => Ok(true),
            Some("http") => match self.first_set() {
                None => Ok(false),
                Some(setting) => Err(TlsError::Combination(format!(
                    "{url_setting}={url} is plaintext http:// but {setting} is set: use https:// \
                     to talk TLS, or unset {setting}"
                ))),
            },
            _ => Err(bad_url(url_setting, url)),
        }
    }

    /// An endpoint for `url` (named by `url_setting`): plain for `http://`; for `https://`,
    /// verifying the server with the CA file or the system's roots, with the client
    /// certificate if one is set. Reads the files now (blocking: they are small), so a
    /// missing or unusable one stops start-up rather than every later call.
    pub fn endpoint(&self, url_setting: &str, url: &str) -> Result<Endpoint, TlsError> {
        let https = self.check_url(url_setting, url)?;
        let endpoint =
            Endpoint::from_shared(url.to_owned()).map_err(|_| bad_url(url_setting, url))?;
        if !https {
            return Ok(endpoint);
        }
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => {
                let pem = ca.read()?;
                // tonic accepts a file without certificates (and then trusts nothing).
                ca.certificates(&pem)?;
                config.ca_certificate(Certificate::from_pem(pem))
            }
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            let (cert_pem, key_pem) = (cert.read()?, key.read()?);
            cert.certificates(&cert_pem)?;
            key.private_key(&key_pem)?;
            config = config.identity(Identity::from_pem(cert_pem, key_pem));
        }
        endpoint.tls_config(config).map_err(|error| {
            let hint = match (&self.ca, &self.identity) {
                (None, _) => format!(
                    "; set {} (e.g. certs/ca.pem from `todo-stack dev-certs`) or install the \
                     system's CA certificates",
                    self.ca_setting
                ),
                (Some(_), Some((cert, key))) => format!(
                    "; check that {} and {} belong together",
                    cert.setting, key.setting
                ),
                (Some(_), None) => String::new(),
            };
            TlsError::Combination(format!(
                "{url_setting}={url} is https:// but TLS cannot be set up: {}{hint}",
                error_chain(&error)
            ))
        })
    }
}

fn bad_url(setting: &str, url: &str) -> TlsError {
    TlsError::Combination(format!(
        "{setting}={url:?} is not a URL like http://127.0.0.1:50051 or https://auth.example:50051"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::ClientTls;

    const NAMES: [&str; 3] = ["CA_FILE", "CERT_FILE", "KEY_FILE"];

    fn tls(ca: bool, cert: bool, key: bool) -> Result<ClientTls, String> {
        let path = |on: bool, name: &str| on.then(|| name.into());
        ClientTls::new(
            NAMES,
            path(ca, "ca.pem"),
            path(cert, "client.pem"),
            path(key, "client-key.pem"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn http_without_tls_settings_and_https_with_any_are_accepted() {
        assert!(
            !tls(false, false, false)
                .unwrap()
                .check_url("URL", "http://a:1")
                .unwrap()
        );
        assert!(
            tls(false, false, false)
                .unwrap()
                .check_url("URL", "https://a:1")
                .unwrap()
        );
        assert!(
            tls(true, true, true)
                .unwrap()
                .check_url("URL", "https://a:1")
                .unwrap()
        );
    }

    #[test]
    fn http_with_a_tls_setting_is_refused_naming_both() {
        for (ca, cert, key, named) in [
            (true, false, false, "CA_FILE"),
            (false, true, true, "CERT_FILE"),
        ] {
            let error = tls(ca, cert, key)
                .unwrap()
                .check_url("URL", "http://a:1")
                .unwrap_err()
                .to_string();
            assert!(error.contains("URL") && error.contains(named), "{error}");
        }
    }

    #[test]
    fn half_a_client_identity_names_the_missing_setting() {
        assert!(
            tls(true, true, false)
                .unwrap_err()
                .contains("KEY_FILE is not")
        );
        assert!(
            tls(true, false, true)
                .unwrap_err()
                .contains("CERT_FILE is not")
        );
    }

    #[test]
    fn other_schemes_and_non_urls_are_refused() {
        for url in ["ftp://a:1", "a:1", "not a url", "https://"] {
            let error = tls(false, false, false).unwrap().check_url("URL", url);
            assert!(error.is_err(), "{url}");
        }
    }
}
