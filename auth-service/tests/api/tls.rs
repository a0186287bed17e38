//! TLS on the auth-service's port: verified clients, grpc-web over HTTP/1.1, certificate
//! rotation without a restart, per-address throttling, mutual TLS, refused settings.

use crate::helpers::*;
use auth_service::{Application, config::AuthConfig};
use clock::ManualClock;
use std::time::Duration;
use test_support::tls::peer_leaf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn health(channel: tonic::transport::Channel) -> Result<ServingStatus, tonic::Status> {
    let request = HealthCheckRequest {
        service: "todo.auth.v1.AuthService".into(),
    };
    HealthClient::new(channel)
        .check(request)
        .await
        .map(|r| r.into_inner().status())
}

/// The health status once the database watcher has reported (within moments of start-up).
async fn health_soon(channel: tonic::transport::Channel) -> ServingStatus {
    let mut status = ServingStatus::Unknown;
    for _ in 0..100 {
        status = health(channel.clone()).await.unwrap();
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    status
}

/// Sends `request` over `stream` and reads the whole answer.
async fn exchange(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    request: &str,
) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A TLS peer that closes without close_notify is an error after the data: keep the data.
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_gets_health_and_rpcs_over_tls() {
    let app = TestApp::spawn_tls(|_, _| {}).await;
    let files = app.tls.as_ref().unwrap();
    let channel = files.channel(app.addr, false).await.unwrap();
    assert_eq!(health_soon(channel).await, ServingStatus::Serving);
    app.sign_up("ada@example.com").await;
    assert!(!app.signing_keys().await.is_empty());
}

#[tokio::test]
async fn a_plaintext_client_gets_nothing_from_a_tls_port() {
    let app = TestApp::spawn_tls(|_, _| {}).await;
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .timeout(Duration::from_secs(5));
    let result = match plain.connect().await {
        Ok(channel) => health(channel).await.map_err(|s| s.to_string()),
        Err(error) => Err(error.to_string()),
    };
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_servers_ca_is_refused() {
    let app = TestApp::spawn_tls(|_, _| {}).await;
    let stranger = TlsFiles::new();
    let result = match stranger.channel(app.addr, false).await {
        Ok(channel) => health(channel).await.map_err(|s| s.to_string()),
        Err(error) => Err(grpc_edge::tls::error_chain(&error)),
    };
    let error = result.unwrap_err();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

#[tokio::test]
async fn a_grpc_web_call_over_http1_over_tls_gets_a_grpc_web_answer() {
    let app = TestApp::spawn_tls(|_, _| {}).await;
    let files = app.tls.as_ref().unwrap();
    let mut stream = files.connect_raw(app.addr, &[b"http/1.1"]).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_grpc_web_answer(&exchange(&mut stream, GRPC_WEB_KEYS).await);
}

#[tokio::test]
async fn alpn_prefers_h2_when_the_client_offers_both() {
    let app = TestApp::spawn_tls(|_, _| {}).await;
    let files = app.tls.as_ref().unwrap();
    let stream = files
        .connect_raw(app.addr, &[b"http/1.1", b"h2"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn a_rotated_certificate_reaches_new_connections_while_old_ones_keep_working() {
    let app = TestApp::spawn_tls(|c, _| c.server.tls.tls_reload_secs = 1).await;
    let files = app.tls.as_ref().unwrap();
    let before = files.connect_raw(app.addr, &[b"http/1.1"]).await.unwrap();
    assert_eq!(peer_leaf(&before), Some(files.server.der.to_vec()));
    let mut old = before;
    let old_channel = files.channel(app.addr, false).await.unwrap();

    let rotated = files.rotate_server();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let fresh = files.connect_raw(app.addr, &[b"http/1.1"]).await.unwrap();
        if peer_leaf(&fresh) == Some(rotated.der.to_vec()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Connections made before the swap still work, with the certificate they were made with.
    assert_eq!(peer_leaf(&old), Some(files.server.der.to_vec()));
    assert_grpc_web_answer(&exchange(&mut old, GRPC_WEB_KEYS).await);
    assert_eq!(health(old_channel).await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn a_broken_rotation_keeps_serving_the_previous_certificate() {
    let app = TestApp::spawn_tls(|c, _| c.server.tls.tls_reload_secs = 1).await;
    let files = app.tls.as_ref().unwrap();
    // A new certificate whose key never arrives.
    let other = files.ca.server(&[]).unwrap();
    files.write("server.pem", &other.cert_pem);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stream = files.connect_raw(app.addr, &[b"h2"]).await.unwrap();
    assert_eq!(peer_leaf(&stream), Some(files.server.der.to_vec()));
}

#[tokio::test]
async fn per_address_sign_up_budgets_hold_over_tls() {
    // The client address comes from the TCP peer under TLS too (tonic's `remote_addr`):
    // without it every client would share one budget.
    let app = TestApp::spawn_tls(|c, _| c.throttle.throttle_signup_max_per_address = 2).await;
    for i in 0..2 {
        app.sign_up(&format!("user{i}@example.com")).await;
    }
    assert_error(
        app.try_sign_up("user2@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    let mut elsewhere = client_from("127.0.0.2:0", &app).await;
    let request = todo_api::todo::auth::v1::SignUpRequest {
        email: "user2@example.com".into(),
        password: PASSWORD.into(),
        display_name: None,
    };
    elsewhere
        .sign_up(request)
        .await
        .expect("another address has its own budget");
}

#[tokio::test]
async fn with_a_client_ca_a_client_without_a_certificate_is_refused() {
    let app = TestApp::spawn_tls(|c, files| {
        c.tls_client_ca_file = Some(files.path("ca.pem"));
    })
    .await;
    let files = app.tls.as_ref().unwrap();
    // The test app's own client presents the client certificate.
    app.sign_up("ada@example.com").await;

    let anonymous = match files.channel(app.addr, false).await {
        Ok(channel) => health(channel).await.map_err(|s| s.to_string()),
        Err(error) => Err(grpc_edge::tls::error_chain(&error)),
    };
    assert!(anonymous.is_err(), "{anonymous:?}");
    let mut raw = files.connect_raw(app.addr, &[b"http/1.1"]).await;
    // TLS 1.3: the client learns of the refusal on its first read.
    if let Ok(stream) = raw.as_mut() {
        let answer = exchange(stream, GRPC_WEB_KEYS).await;
        assert!(answer.is_empty(), "{answer}");
    }
}

async fn build(configure: impl FnOnce(&mut AuthConfig)) -> Result<(), String> {
    let mut config =
        AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), &fresh_database_url().await);
    configure(&mut config);
    Application::build(config, ManualClock::new(chrono::Utc::now()))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn settings_that_cannot_work_stop_start_up_naming_the_setting() {
    let files = TlsFiles::new();
    let error = build(|c| c.server.tls.tls_cert_file = Some(files.path("server.pem")))
        .await
        .unwrap_err();
    assert!(error.contains("TLS_KEY_FILE"), "{error}");

    let error = build(|c| c.tls_client_ca_file = Some(files.path("ca.pem")))
        .await
        .unwrap_err();
    assert!(error.contains("TLS_CLIENT_CA_FILE"), "{error}");

    let error = build(|c| {
        files.serve_with(&mut c.server.tls);
        c.server.tls.tls_key_file = Some(files.path("client-key.pem"));
    })
    .await
    .unwrap_err();
    assert!(
        error.contains("TLS_CERT_FILE") && error.contains("TLS_KEY_FILE"),
        "{error}"
    );

    let error = build(|c| {
        files.serve_with(&mut c.server.tls);
        c.tls_client_ca_file = Some(files.path("missing.pem"));
    })
    .await
    .unwrap_err();
    assert!(error.contains("TLS_CLIENT_CA_FILE"), "{error}");
}

#[tokio::test]
async fn on_shutdown_a_tls_server_stops_within_the_drain_time_despite_a_stalled_handshake() {
    let files = TlsFiles::new();
    let mut config =
        AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), &fresh_database_url().await);
    config.server.shutdown_drain_secs = 1;
    files.serve_with(&mut config.server.tls);
    let app = Application::build(config, ManualClock::new(chrono::Utc::now()))
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    // A client that connects and never says hello: its handshake stays pending.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let channel = files.channel(addr, false).await.unwrap();
    assert_eq!(health_soon(channel).await, ServingStatus::Serving);
    // A slow client does not hold up the others.
    let _also_silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        health_soon(files.channel(addr, false).await.unwrap()).await,
        ServingStatus::Serving
    );

    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        stopped
            .expect("stopped within the drain time")
            .unwrap()
            .is_ok()
    );
    // The port is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
