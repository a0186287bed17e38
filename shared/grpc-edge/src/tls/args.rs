//! The server TLS settings every service shares.

use super::{PemFile, TlsError, files::pair};
use clap::Args;
use std::{path::PathBuf, time::Duration};

/// Serving TLS: a certificate and its key, reloaded when the files change. Neither set: the
/// server speaks plaintext (the default).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Serve TLS with this certificate chain (PEM, the server's certificate first), together
    /// with TLS_KEY_FILE. Unset: plaintext.
    #[arg(long, env = "TLS_CERT_FILE", value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,

    /// The private key of TLS_CERT_FILE (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY_FILE", value_name = "PATH")]
    pub tls_key_file: Option<PathBuf>,

    /// How often the certificate and key files are checked for changes, in seconds; a changed,
    /// valid pair is served to new connections without a restart. 0: never; at most a day.
    #[arg(
        long,
        env = "TLS_RELOAD_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=86_400)
    )]
    pub tls_reload_secs: u64,
}

impl TlsArgs {
    /// The certificate and key files, if TLS is on; an error if only one is set.
    pub fn files(&self) -> Result<Option<(PemFile, PemFile)>, TlsError> {
        pair(
            self.tls_cert_file
                .clone()
                .map(|p| PemFile::new("TLS_CERT_FILE", p)),
            self.tls_key_file
                .clone()
                .map(|p| PemFile::new("TLS_KEY_FILE", p)),
            ("TLS_CERT_FILE", "TLS_KEY_FILE"),
        )
    }

    /// Whether TLS is configured (a half-configured pair counts as on, and fails to load).
    pub fn enabled(&self) -> bool {
        self.tls_cert_file.is_some() || self.tls_key_file.is_some()
    }

    /// The reload interval; `None` when reloading is off.
    pub fn reload_every(&self) -> Option<Duration> {
        (self.tls_reload_secs > 0).then(|| Duration::from_secs(self.tls_reload_secs))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::TlsArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tls: TlsArgs,
    }

    fn parse(args: &[&str]) -> TlsArgs {
        let command = <Cli as clap::CommandFactory>::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap();
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
            .unwrap()
            .tls
    }

    #[test]
    fn plaintext_is_the_default_and_reloading_is_on() {
        let args = parse(&[]);
        assert!(!args.enabled());
        assert!(args.files().unwrap().is_none());
        assert_eq!(
            args.reload_every(),
            Some(std::time::Duration::from_secs(10))
        );
    }

    #[test]
    fn both_files_turn_tls_on_and_zero_turns_reloading_off() {
        let args = parse(&[
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
            "--tls-reload-secs",
            "0",
        ]);
        let (cert, key) = args.files().unwrap().unwrap();
        assert_eq!(
            (cert.setting, key.setting),
            ("TLS_CERT_FILE", "TLS_KEY_FILE")
        );
        assert_eq!(args.reload_every(), None);
    }

    #[test]
    fn a_reload_interval_over_a_day_is_refused() {
        let command = <Cli as clap::CommandFactory>::command().mut_args(|arg| arg.env(None));
        let refused = command.try_get_matches_from(["test", "--tls-reload-secs", "86401"]);
        assert!(refused.is_err());
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let args = parse(&["--tls-cert-file", "c.pem"]);
        assert!(args.enabled());
        let error = args.files().unwrap_err().to_string();
        assert!(error.contains("TLS_KEY_FILE"), "{error}");
    }
}
