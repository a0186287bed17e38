//! TLS as a developer tries it: `todo-stack dev-certs`, then the launcher on TLS (mutual TLS
//! between the services), checked with `health-probe`; and the launcher's refusal to start a
//! task-service that could not verify its auth-service.

use crate::binary::launch;
use auth_service::config::AuthConfig;
use clock::SystemClock;
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
    time::{Duration, Instant},
};
use task_service::config::TaskConfig;
use test_support::fresh_database_url;
use todo_stack::{Stack, StackError};

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("todo-grpc-tests")
        .join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dev_certs(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_todo-stack"))
        .arg("dev-certs")
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn probe(url: &str, service: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_health-probe"))
        .args(["--addr", url, "--service", service])
        .args(extra)
        .output()
        .unwrap()
}

/// Probes until SERVING (at most ~15 s).
fn probe_until_serving(url: &str, service: &str, extra: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let output = probe(url, service, extra);
        if output.status.success() || Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dev_certs_writes_a_ca_and_certificates_and_replaces_them_only_when_forced() {
    let dir = temp_dir("dev-certs");
    let out = dir.join("certs");
    let made = dev_certs(&out, &["--san", "auth-service", "--san", "task-service"]);
    assert!(made.status.success(), "{made:?}");
    for name in [
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "client.pem",
        "client-key.pem",
    ] {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(text.starts_with("-----BEGIN "), "{name}: {text}");
    }
    #[cfg(unix)]
    for key in ["server-key.pem", "client-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let again = dev_certs(&out, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let before = std::fs::read(out.join("ca.pem")).unwrap();
    let forced = dev_certs(&out, &["--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(std::fs::read(out.join("ca.pem")).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_launcher_serves_tls_with_the_dev_certs_and_mutual_tls_between_the_services() {
    let dir = temp_dir("stack-tls");
    let certs = dir.join("certs");
    assert!(dev_certs(&certs, &[]).status.success());
    let path = |name: &str| certs.join(name).display().to_string();
    let launched = launch(&[
        ("TLS_CERT_FILE", path("server.pem")),
        ("TLS_KEY_FILE", path("server-key.pem")),
        ("AUTH_SERVICE_CA_FILE", path("ca.pem")),
        ("TLS_CLIENT_CA_FILE", path("ca.pem")),
        ("TLS_CLIENT_CERT_FILE", path("client.pem")),
        ("TLS_CLIENT_KEY_FILE", path("client-key.pem")),
    ]);
    let banner = &launched.banner;
    assert!(
        banner.contains("auth-service  https://127.0.0.1:"),
        "{banner}"
    );
    assert!(
        banner.contains("task-service  https://127.0.0.1:"),
        "{banner}"
    );
    assert!(banner.contains("grpcurl -cacert "), "{banner}");
    let (auth, task) = (
        format!("https://{}", launched.auth_addr),
        format!("https://{}", launched.task_addr),
    );
    let ca = path("ca.pem");
    let identity = [
        "--ca-file",
        &ca,
        "--cert-file",
        &path("client.pem"),
        "--key-file",
        &path("client-key.pem"),
    ];

    // The task-service reports SERVING once it has fetched the keys over mutual TLS.
    let task_health = probe_until_serving(&task, "todo.task.v1.TaskService", &["--ca-file", &ca]);
    assert!(task_health.status.success(), "{task_health:?}");
    let with_cert = probe(&auth, "todo.auth.v1.AuthService", &identity);
    assert!(with_cert.status.success(), "{with_cert:?}");
    // Without a client certificate, or without the CA, the auth-service is out of reach.
    let without_cert = probe(&auth, "todo.auth.v1.AuthService", &["--ca-file", &ca]);
    assert!(!without_cert.status.success(), "{without_cert:?}");
    let without_ca = probe(&task, "todo.task.v1.TaskService", &[]);
    assert!(!without_ca.status.success(), "{without_ca:?}");
    let plaintext = probe(
        &format!("http://{}", launched.task_addr),
        "todo.task.v1.TaskService",
        &[],
    );
    assert!(!plaintext.status.success(), "{plaintext:?}");

    launched.interrupt_and_wait();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_launcher_refuses_an_auth_service_on_tls_without_a_ca_for_the_task_service() {
    let files = test_support::tls::TlsFiles::new();
    let any_port = "127.0.0.1:0".parse().unwrap();
    let mut auth =
        AuthConfig::for_database(any_port, &fresh_database_url("task_test").await.unwrap());
    files.serve_with(&mut auth.server.tls);
    let task = TaskConfig::for_database(
        any_port,
        &fresh_database_url("task_test").await.unwrap(),
        "http://127.0.0.1:9",
    );
    let error = match Stack::build(auth, task, Arc::new(SystemClock)).await {
        Ok(_) => panic!("the stack started"),
        Err(error) => error,
    };
    assert!(matches!(error, StackError::AuthCaMissing), "{error}");
    assert!(
        error.to_string().contains("AUTH_SERVICE_CA_FILE"),
        "{error}"
    );
}
