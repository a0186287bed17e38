//! What one client can make the server hold, over real connections: streaming RPCs per
//! connection and in total, idle connections, clients that never answer keepalive pings, and
//! the connection cap (its fair share among clients: fair_share.rs). (The limits live in `grpc_edge::server`; the auth-service is the server
//! that needs no token to reach them.)

use crate::helpers::*;
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::{Code, Streaming};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};
use tonic_types::StatusExt;

async fn watch(
    channel: tonic::transport::Channel,
) -> Result<Streaming<HealthCheckResponse>, tonic::Status> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    Ok(HealthClient::new(channel)
        .watch(request)
        .await?
        .into_inner())
}

/// Reads what the server sends until it closes the connection; `true` if it did within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn streaming_calls_are_bounded_per_connection_and_other_connections_still_get_theirs() {
    let app =
        TestApp::spawn_with(|c| c.server.connections.max_streaming_rpcs_per_connection = 4).await;
    let channel = app.channel().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(watch(channel.clone()).await.expect("within the limit"));
    }
    let refused = watch(channel.clone()).await.expect_err("one too many");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "TOO_MANY_STREAMS");
    assert_eq!(
        info.metadata["setting"],
        "MAX_STREAMING_RPCS_PER_CONNECTION"
    );
    // Unary calls on the same connection are not affected.
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("a unary call still works");
    // Another connection gets its own share; closing a stream gives one back.
    watch(app.channel().await)
        .await
        .expect("another connection");
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(stream) = watch(channel.clone()).await {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed stream's slot is given back");
}

#[tokio::test]
async fn streaming_calls_are_bounded_in_total() {
    let app = TestApp::spawn_with(|c| c.server.connections.max_streaming_rpcs = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(watch(app.channel().await).await.expect("within the limit"));
    }
    let refused = watch(app.channel().await)
        .await
        .expect_err("over the total");
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["setting"], "MAX_STREAMING_RPCS");
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_one_with_a_stream_open_is_not() {
    let app = TestApp::spawn_with(|c| c.server.connections.connection_idle_timeout_secs = 1).await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    let mut stream = watch(app.channel().await).await.unwrap();
    while stream.message().await.unwrap().unwrap().status() != ServingStatus::Serving {}
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(10)).await,
        "the idle connection was closed"
    );
    // The watched connection outlived the idle timeout: its stream is still open, waiting.
    let next = tokio::time::timeout(Duration::from_millis(1500), stream.message()).await;
    assert!(next.is_err(), "the stream is still open: {next:?}");
}

#[tokio::test]
async fn a_client_that_never_answers_keepalive_pings_is_disconnected() {
    let app = TestApp::spawn_with(|c| {
        let limits = &mut c.server.connections;
        limits.http2_keepalive_secs = 1;
        limits.http2_keepalive_timeout_secs = 1;
        limits.connection_idle_timeout_secs = 0;
    })
    .await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame; then nothing, not even PING acks.
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(10)).await,
        "the silent client was disconnected"
    );
}

#[tokio::test]
async fn over_tls_streaming_calls_are_still_counted_per_connection() {
    let app =
        TestApp::spawn_tls(|c, _| c.server.connections.max_streaming_rpcs_per_connection = 2).await;
    let files = app.tls.as_ref().unwrap();
    let channel = files.channel(app.addr, false).await.unwrap();
    let _open = [
        watch(channel.clone()).await.expect("within the limit"),
        watch(channel.clone()).await.expect("within the limit"),
    ];
    let refused = watch(channel)
        .await
        .expect_err("one too many on this TLS connection");
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(
        info.metadata["setting"],
        "MAX_STREAMING_RPCS_PER_CONNECTION"
    );
}

/// Behind a trusted proxy, the streams of one connection are charged to the clients it
/// forwards for: one client reaches its share, another on the same connection still gets its.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_stream_share() {
    let app = TestApp::spawn_with(|c| {
        c.server.proxies.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.server.connections.max_streaming_rpcs_per_client = 2;
        c.server.connections.max_streaming_rpcs_per_connection = 16;
    })
    .await;
    let channel = app.channel().await;
    let watch_for = |client: &'static str| {
        let channel = channel.clone();
        async move {
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request
                .metadata_mut()
                .insert("x-forwarded-for", client.parse().unwrap());
            HealthClient::new(channel).watch(request).await
        }
    };
    let _a = [
        watch_for("198.51.100.1").await.expect("within A's share"),
        watch_for("198.51.100.1").await.expect("within A's share"),
    ];
    let refused = watch_for("198.51.100.1").await.expect_err("past A's share");
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["setting"], "MAX_STREAMING_RPCS_PER_CLIENT");
    let _b = [
        watch_for("198.51.100.2")
            .await
            .expect("B has its own share"),
        watch_for("198.51.100.2")
            .await
            .expect("B has its own share"),
    ];
}
