#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::ReloadingCert;
use crate::tls::PemFile;
use dev_pki::DevCa;
use std::path::PathBuf;

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir()
            .join("todo-grpc-tests")
            .join(format!("reload-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn write(&self, cert: &str, key: &str) {
        std::fs::write(self.dir.join("cert.pem"), cert).unwrap();
        std::fs::write(self.dir.join("key.pem"), key).unwrap();
    }

    fn load(&self) -> Result<ReloadingCert, crate::tls::TlsError> {
        ReloadingCert::load(
            PemFile::new("TLS_CERT_FILE", self.dir.join("cert.pem")),
            PemFile::new("TLS_KEY_FILE", self.dir.join("key.pem")),
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The leaf certificate `resolver` serves now (without a handshake: the resolver ignores the
/// hello, so its current pair is read directly).
fn served(resolver: &ReloadingCert) -> Vec<u8> {
    let current = resolver.current.read().unwrap();
    current.cert[0].to_vec()
}

#[test]
fn a_changed_pair_on_disk_is_served_after_a_reload() {
    let ca = DevCa::new().unwrap();
    let (a, b) = (ca.server(&[]).unwrap(), ca.server(&[]).unwrap());
    let files = Files::new();
    files.write(&a.cert_pem, &a.key_pem);
    let resolver = files.load().unwrap();
    assert_eq!(served(&resolver), a.der.to_vec());

    files.write(&b.cert_pem, &b.key_pem);
    assert!(resolver.reload_if_changed().unwrap());
    assert_eq!(served(&resolver), b.der.to_vec());
}

#[test]
fn unchanged_files_are_not_reloaded() {
    let ca = DevCa::new().unwrap();
    let a = ca.server(&[]).unwrap();
    let files = Files::new();
    files.write(&a.cert_pem, &a.key_pem);
    let resolver = files.load().unwrap();
    assert!(!resolver.reload_if_changed().unwrap());
    assert_eq!(served(&resolver), a.der.to_vec());
}

#[test]
fn a_certificate_with_the_wrong_key_keeps_the_previous_pair_until_the_key_arrives() {
    let ca = DevCa::new().unwrap();
    let (a, b) = (ca.server(&[]).unwrap(), ca.server(&[]).unwrap());
    let files = Files::new();
    files.write(&a.cert_pem, &a.key_pem);
    let resolver = files.load().unwrap();

    // The new certificate is written before its key: not served.
    files.write(&b.cert_pem, &a.key_pem);
    let error = resolver.reload_if_changed().unwrap_err().to_string();
    assert!(
        error.contains("TLS_CERT_FILE") && error.contains("TLS_KEY_FILE"),
        "{error}"
    );
    assert_eq!(served(&resolver), a.der.to_vec());

    // Then the key: the pair is complete and served.
    files.write(&b.cert_pem, &b.key_pem);
    assert!(resolver.reload_if_changed().unwrap());
    assert_eq!(served(&resolver), b.der.to_vec());
}

#[test]
fn a_missing_or_empty_file_names_its_setting() {
    let files = Files::new();
    let error = files.load().unwrap_err().to_string();
    assert!(error.starts_with("TLS_CERT_FILE="), "{error}");

    let a = DevCa::new().unwrap().server(&[]).unwrap();
    files.write("not a certificate", &a.key_pem);
    let error = files.load().unwrap_err().to_string();
    assert!(
        error.contains("TLS_CERT_FILE") && error.contains("no PEM certificate"),
        "{error}"
    );

    files.write(&a.cert_pem, "");
    let error = files.load().unwrap_err().to_string();
    assert!(
        error.contains("TLS_KEY_FILE") && error.contains("no PEM private key"),
        "{error}"
    );
}
