use crate::helpers::*;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_auth_service() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", "todo.auth.v1.AuthService"] {
        // The database watcher reports within moments of start-up.
        let mut status = ServingStatus::Unknown;
        for _ in 0..50 {
            let request = HealthCheckRequest {
                service: service.into(),
            };
            if let Ok(response) = health.check(request).await {
                status = response.into_inner().status();
                if status == ServingStatus::Serving {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }
}

#[tokio::test]
async fn reflection_v1_lists_the_auth_service() {
    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"todo.auth.v1.AuthService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"todo.task.v1.TaskService".to_owned()),
        "only the services this server serves are listed: {names:?}"
    );
}

#[tokio::test]
async fn browsers_get_cors_headers_for_grpc_web_from_allowed_origins_only() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /todo.auth.v1.AuthService/SignIn HTTP/1.1\r\nHost: test\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type,x-grpc-web,authorization\r\nConnection: close\r\n\r\n"
        )
    };
    let allowed = app
        .http(&preflight("http://localhost:5173"))
        .await
        .to_lowercase();
    assert!(
        allowed.contains("access-control-allow-origin: http://localhost:5173"),
        "{allowed}"
    );
    assert!(allowed.contains("authorization"), "{allowed}");
    let other = app
        .http(&preflight("https://evil.example"))
        .await
        .to_lowercase();
    assert!(!other.contains("access-control-allow-origin"), "{other}");
}

#[tokio::test]
async fn a_grpc_web_call_over_http1_gets_a_grpc_web_answer() {
    let app = TestApp::spawn().await;
    // An empty GetSigningKeysRequest: one uncompressed frame of length 0.
    let response = app.http(GRPC_WEB_KEYS).await;
    assert_grpc_web_answer(&response);
    assert!(
        response
            .to_lowercase()
            .contains("access-control-expose-headers"),
        "{response}"
    );
}

#[tokio::test]
async fn on_shutdown_health_turns_not_serving_and_the_server_stops_within_the_drain_time() {
    let url = fresh_database_url().await;
    let mut config =
        auth_service::config::AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), &url);
    config.server.shutdown_drain_secs = 1;
    let app = auth_service::Application::build(config, clock::ManualClock::new(chrono::Utc::now()))
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = HealthCheckRequest {
        service: "todo.auth.v1.AuthService".into(),
    };
    let mut watch = HealthClient::new(channel)
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    while watch.message().await.unwrap().unwrap().status() != ServingStatus::Serving {}

    stop.send(()).unwrap();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    // The open watch stream keeps a connection busy: the drain time bounds the wait.
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    assert!(
        stopped
            .expect("stopped within the drain time")
            .unwrap()
            .is_ok()
    );
}

/// A SignIn request as a web page could make a visitor's browser send it without a CORS
/// preflight: a "simple" POST with another content type, from a foreign origin.
fn cross_site_sign_in(content_type: &str, password: &str) -> Vec<u8> {
    use prost::Message;
    let message = todo_api::todo::auth::v1::SignInRequest {
        email: "ada@example.com".into(),
        password: password.into(),
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    let mut request = format!(
        "POST /todo.auth.v1.AuthService/SignIn HTTP/1.1\r\nHost: test\r\n\
         Origin: https://evil.example\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

#[tokio::test]
async fn simple_cross_site_requests_never_reach_a_method_and_charge_nothing() {
    // One free attempt: a single counted failure would block the account.
    let app = TestApp::spawn_with(|c| c.throttle.throttle_free_attempts = 1).await;
    app.sign_up("ada@example.com").await;
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for _ in 0..3 {
            let response = app
                .http_bytes(&cross_site_sign_in(content_type, "wrong password"))
                .await;
            assert!(
                response.starts_with("HTTP/1.1 415"),
                "{content_type}: {response}"
            );
            // No gRPC answer at all: nothing ran.
            assert!(
                !response.to_lowercase().contains("\r\ngrpc-status:"),
                "{response}"
            );
        }
    }
    // Nothing was counted: the right password still signs in at once.
    app.sign_in("ada@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn only_gets_of_the_plain_documents_are_served_over_plain_http() {
    let app = TestApp::spawn().await;
    let request = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let jwks = "/.well-known/jwks.json";
    let sign_in = "/todo.auth.v1.AuthService/SignIn";
    for (method, path, status) in [
        ("GET", jwks, "200"),
        ("HEAD", jwks, "200"),
        ("POST", jwks, "405"),
        ("GET", sign_in, "404"),
        ("PUT", sign_in, "405"),
        ("GET", "/", "404"),
    ] {
        let response = app.http(&request(method, path)).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {path}: {response}"
        );
    }
}
