//! What no single client, and no small group of clients, may take from everyone else at the
//! server's edge (README "Limits"): message bytes on every service and every message of a
//! stream, header bytes on every HTTP version, connections and TLS handshakes per client
//! address. Each test shows the attack and an honest client at another address still served.
//! (The edge lives in `grpc_edge::server`; the auth-service is the server that needs no token
//! to reach it.)

use crate::helpers::*;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

/// Row 1: a small first message passes the size check; a later one of 1 MiB (the limit is
/// 64 KiB) ends the stream with REQUEST_TOO_LARGE instead of being buffered and echoed back.
#[tokio::test]
async fn every_message_of_a_reflection_stream_is_held_to_the_request_size_limit() {
    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let (send, requests) = tokio::sync::mpsc::channel(4);
    send.send(list_services()).await.unwrap();
    let mut replies = client
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let first = replies.message().await.unwrap().unwrap();
    assert!(matches!(
        first.message_response,
        Some(MessageResponse::ListServicesResponse(_))
    ));
    let large = ServerReflectionRequest {
        host: "h".repeat(1024 * 1024),
        message_request: Some(MessageRequest::FileContainingSymbol("x".into())),
    };
    send.send(large).await.unwrap();
    let refused = match replies.message().await {
        Ok(Some(reply)) => {
            let echoed = reply.original_request.map_or(0, |r| r.host.len());
            panic!("a reply came back (echoing {echoed} bytes of host)");
        }
        Ok(None) => panic!("the stream ended without an error"),
        Err(status) => status,
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "REQUEST_TOO_LARGE");
    // Health, over the same limit: its first (only) message.
    let mut health = HealthClient::new(app.channel().await);
    let request = HealthCheckRequest {
        service: "s".repeat(1024 * 1024),
    };
    let refused = health.check(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // And the server is still there for others.
    let mut honest = client_from("127.0.0.2:0", &app).await;
    honest
        .get_signing_keys(todo_api::todo::auth::v1::GetSigningKeysRequest {})
        .await
        .unwrap();
}

/// HTTP/2 header blocks are bounded at 16 KiB by h2; HTTP/1.1 headers get the same bound.
#[tokio::test]
async fn http1_request_headers_are_bounded_like_http2_ones() {
    let app = TestApp::spawn().await;
    let big = "a".repeat(200 * 1024);
    let request = format!(
        "POST /todo.auth.v1.AuthService/GetSigningKeys HTTP/1.1\r\nHost: test\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nX-Padding: {big}\r\n\
         Content-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0"
    );
    let response = app.http(&request).await;
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "{}",
        &response[..response.len().min(200)]
    );
    // A normal request on the same server is answered.
    assert_grpc_web_answer(&app.http(GRPC_WEB_KEYS).await);
}
