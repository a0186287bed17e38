//! TLS between the services and on the task-service's port: the task-service trusts keys
//! only from an auth-service whose certificate verifies, presents a client certificate for
//! mutual TLS, and refuses settings that cannot work at start-up.

use crate::helpers::{
    Running, User, fresh_database_url, new_task, sign_up, start_auth, start_task,
};
use auth_service::config::AuthConfig;
use chrono::Utc;
use clock::ManualClock;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use task_service::config::TaskConfig;
use test_support::tls::TlsFiles;
use todo_api::{
    todo::auth::v1::auth_service_client::AuthServiceClient,
    todo::task::v1::task_service_client::TaskServiceClient,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const TASK_SERVICE: &str = "todo.task.v1.TaskService";

/// The task-service's health over TLS.
async fn health(files: &TlsFiles, addr: SocketAddr) -> ServingStatus {
    let channel = files.channel(addr, false).await.expect("connect over TLS");
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: TASK_SERVICE.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

/// Waits (at most ~15 s) for SERVING; false if it never comes.
async fn becomes_serving(files: &TlsFiles, addr: SocketAddr, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if health(files, addr).await == ServingStatus::Serving {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A fresh database and clock, and an auth-service on them serving TLS with `auth_files`'
/// certificate (plus `configure`).
async fn auth_on_tls(
    auth_files: &TlsFiles,
    configure: impl FnOnce(&mut AuthConfig),
) -> (String, Arc<ManualClock>, Running) {
    let clock = ManualClock::new(Utc::now());
    let database_url = fresh_database_url().await;
    let any = "127.0.0.1:0".parse().unwrap();
    let auth = start_auth(&database_url, any, clock.clone(), |c| {
        auth_files.serve_with(&mut c.server.tls);
        configure(c);
    })
    .await;
    (database_url, clock, auth)
}

/// A user signed up at the auth-service (trusting `auth_files`' CA), calling the task-service
/// over TLS (trusting `files`' CA).
async fn user_over_tls(
    files: &TlsFiles,
    auth_files: &TlsFiles,
    auth_addr: SocketAddr,
    task_addr: SocketAddr,
) -> User {
    let auth_client = AuthServiceClient::new(auth_files.channel(auth_addr, false).await.unwrap());
    User {
        token: sign_up(&auth_client, "ada@example.com").await.access_token,
        refresh_token: String::new(),
        tasks: TaskServiceClient::new(files.channel(task_addr, false).await.unwrap()),
    }
}

/// The task-service on TLS, fetching keys from `https://auth_addr` trusting `ca`.
fn over_tls(
    files: &TlsFiles,
    auth_addr: SocketAddr,
    ca: &TlsFiles,
) -> impl FnOnce(&mut TaskConfig) {
    let serve = (files.path("server.pem"), files.path("server-key.pem"));
    let ca_file = ca.path("ca.pem");
    move |c: &mut TaskConfig| {
        c.server.tls.tls_cert_file = Some(serve.0);
        c.server.tls.tls_key_file = Some(serve.1);
        c.auth_service_url = format!("https://{auth_addr}");
        c.auth_service_ca_file = Some(ca_file);
    }
}

#[tokio::test]
async fn over_https_with_the_ca_file_the_task_service_gets_its_keys_and_serves_over_tls() {
    let files = TlsFiles::new();
    let (database_url, clock, auth) = auth_on_tls(&files, |_| {}).await;
    let (task, keys) = start_task(
        &database_url,
        auth.addr,
        clock,
        over_tls(&files, auth.addr, &files),
    )
    .await;
    assert!(becomes_serving(&files, task.addr, Duration::from_secs(15)).await);
    assert!(keys.is_loaded());

    let user = user_over_tls(&files, &files, auth.addr, task.addr).await;
    assert_eq!(user.create("over TLS").await.title, "over TLS");
}

#[tokio::test]
async fn an_auth_service_whose_certificate_does_not_verify_is_never_trusted_for_keys() {
    let (files, impostor) = (TlsFiles::new(), TlsFiles::new());
    // The auth-service's certificate comes from a CA the task-service does not trust.
    let (database_url, clock, auth) = auth_on_tls(&impostor, |_| {}).await;
    let (task, keys) = start_task(
        &database_url,
        auth.addr,
        clock,
        over_tls(&files, auth.addr, &files),
    )
    .await;
    assert!(!becomes_serving(&files, task.addr, Duration::from_secs(2)).await);
    assert!(!keys.is_loaded());

    let user = user_over_tls(&files, &impostor, auth.addr, task.addr).await;
    let refused = user.try_create(new_task("never")).await.unwrap_err();
    assert_ne!(refused.code(), tonic::Code::Ok);
}

#[tokio::test]
async fn with_mutual_tls_only_a_task_service_with_the_client_certificate_gets_keys() {
    let files = TlsFiles::new();
    let ca = files.path("ca.pem");
    let (database_url, clock, auth) =
        auth_on_tls(&files, |c| c.tls_client_ca_file = Some(ca)).await;

    let (anonymous, anonymous_keys) = start_task(
        &database_url,
        auth.addr,
        clock.clone(),
        over_tls(&files, auth.addr, &files),
    )
    .await;
    let with_cert = over_tls(&files, auth.addr, &files);
    let (client_cert, client_key) = (files.path("client.pem"), files.path("client-key.pem"));
    let (task, keys) = start_task(&database_url, auth.addr, clock, move |c| {
        with_cert(c);
        c.tls_client_cert_file = Some(client_cert);
        c.tls_client_key_file = Some(client_key);
    })
    .await;

    assert!(becomes_serving(&files, task.addr, Duration::from_secs(15)).await);
    assert!(keys.is_loaded());
    assert!(!becomes_serving(&files, anonymous.addr, Duration::from_secs(1)).await);
    assert!(!anonymous_keys.is_loaded());
}

async fn build(configure: impl FnOnce(&mut TaskConfig)) -> String {
    let mut config = TaskConfig::for_database(
        "127.0.0.1:0".parse().unwrap(),
        &fresh_database_url().await,
        "https://127.0.0.1:1",
    );
    configure(&mut config);
    match task_service::Application::build(config, ManualClock::new(Utc::now())).await {
        Ok(_) => panic!("the task-service started"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn settings_that_cannot_work_stop_start_up_naming_the_setting() {
    let files = TlsFiles::new();
    let ca = Some(files.path("ca.pem"));

    // https:// with a CA file that holds no certificate (a key file by mistake).
    let error = build(|c| c.auth_service_ca_file = Some(files.path("client-key.pem"))).await;
    assert!(
        error.contains("AUTH_SERVICE_CA_FILE") && error.contains("no PEM certificate"),
        "{error}"
    );
    let error = build(|c| c.auth_service_ca_file = Some(files.path("missing.pem"))).await;
    assert!(error.contains("AUTH_SERVICE_CA_FILE"), "{error}");

    // Plain http:// with TLS settings tonic would silently ignore.
    let error = build(|c| {
        c.auth_service_url = "http://127.0.0.1:1".into();
        c.auth_service_ca_file = ca.clone();
    })
    .await;
    assert!(
        error.contains("AUTH_SERVICE_URL") && error.contains("AUTH_SERVICE_CA_FILE"),
        "{error}"
    );

    // Half a client identity.
    let error = build(|c| {
        c.auth_service_ca_file = ca.clone();
        c.tls_client_cert_file = Some(files.path("client.pem"));
    })
    .await;
    assert!(error.contains("TLS_CLIENT_KEY_FILE"), "{error}");

    // A client key that is not the certificate's.
    let error = build(|c| {
        c.auth_service_ca_file = ca.clone();
        c.tls_client_cert_file = Some(files.path("client.pem"));
        c.tls_client_key_file = Some(files.path("server-key.pem"));
    })
    .await;
    assert!(
        error.contains("TLS_CLIENT_CERT_FILE") && error.contains("TLS_CLIENT_KEY_FILE"),
        "{error}"
    );

    // Serving TLS with a certificate and no key.
    let error = build(|c| {
        c.auth_service_ca_file = ca.clone();
        c.server.tls.tls_cert_file = Some(files.path("server.pem"));
    })
    .await;
    assert!(error.contains("TLS_KEY_FILE"), "{error}");

    // An unknown scheme.
    let error = build(|c| c.auth_service_url = "ftp://127.0.0.1:1".into()).await;
    assert!(error.contains("AUTH_SERVICE_URL"), "{error}");
}

/// Account deletion over mutual TLS, as docker-compose.yml runs it: the task-service's internal
/// listener serves TLS and requires a client certificate of the CA; the auth-service presents
/// one and delivers; a caller without one does not get past the handshake.
#[tokio::test]
async fn deletions_reach_an_internal_listener_that_requires_a_client_certificate() {
    let files = TlsFiles::new();
    let internal: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let (ca, cert, key) = (
        files.path("ca.pem"),
        files.path("client.pem"),
        files.path("client-key.pem"),
    );
    let (database_url, clock, auth) = auth_on_tls(&files, |c| {
        c.deletions.task_internal_url = Some(format!("https://{internal}"));
        c.deletions.task_internal_ca_file = Some(ca.clone());
        c.deletions.internal_client_cert_file = Some(cert);
        c.deletions.internal_client_key_file = Some(key);
    })
    .await;
    let serve = over_tls(&files, auth.addr, &files);
    let (task, _) = start_task(&database_url, auth.addr, clock, |c| {
        serve(c);
        c.internal_listen_addr = Some(internal);
        c.internal_client_ca_file = Some(ca);
    })
    .await;
    assert!(becomes_serving(&files, task.addr, Duration::from_secs(15)).await);
    let user = user_over_tls(&files, &files, auth.addr, task.addr).await;
    user.create("soon gone").await;
    let owner = crate::helpers::user_id_of(&user.token);

    // Without a client certificate: no call gets through, whatever it carries.
    let refused = match files.channel(internal, false).await {
        Err(_) => true,
        Ok(channel) => {
            let mut admin =
                todo_api::todo::task::internal::v1::task_admin_client::TaskAdminClient::new(
                    channel,
                );
            let request = todo_api::todo::task::internal::v1::PurgeUserRequest {
                user_id: owner.clone(),
                keep_until: None,
            };
            admin
                .purge_user(crate::helpers::with_bearer(request, &user.token))
                .await
                .is_err_and(|status| status.code() != tonic::Code::Unauthenticated)
        }
    };
    assert!(
        refused,
        "a caller without a client certificate got an answer"
    );
    assert_eq!(crate::helpers::tasks_of(&database_url, &owner).await, 1);

    // The auth-service delivers with its certificate.
    let mut auth_client = AuthServiceClient::new(files.channel(auth.addr, false).await.unwrap());
    let request = todo_api::todo::auth::v1::DeleteAccountRequest {
        current_password: test_support::PASSWORD.into(),
    };
    auth_client
        .delete_account(crate::helpers::with_bearer(request, &user.token))
        .await
        .unwrap();
    for _ in 0..200 {
        if crate::helpers::tasks_of(&database_url, &owner).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the deletion was not delivered over mutual TLS within 10 s");
}
