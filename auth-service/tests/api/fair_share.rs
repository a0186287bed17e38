//! What no single client, and no small group of clients, may take from everyone else at the
//! server's edge (README "Limits"): message bytes on every service and every message of a
//! stream, header bytes on every HTTP version, connections and TLS handshakes per client
//! address. Each test shows the attack and an honest client at another address still served.
//! (The edge lives in `grpc_edge::server`; the auth-service is the server that needs no token
//! to reach it.)

use crate::helpers::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// `count` TCP connections to `app` from `from` (e.g. 127.0.0.9) that never send a byte.
async fn silent_sockets(from: &str, app: &TestApp, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        sockets.push(socket.connect(app.addr).await.unwrap());
    }
    // Let the server accept (and admit or close) them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sockets
}

/// How many of `sockets` the server has closed, waiting at most `within` for each.
async fn closed(sockets: &mut [tokio::net::TcpStream], within: Duration) -> usize {
    let mut count = 0;
    for socket in sockets {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(within, async {
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        if read.await.is_ok() {
            count += 1;
        }
    }
    count
}

/// Time for the honest client at 127.0.0.2 to connect and get one answer (a new connection
/// each time, as a new visitor would), bounded at 5 s: `None` if it was not served.
async fn honest_call(app: &TestApp) -> Option<Duration> {
    let started = Instant::now();
    let tls = app.tls.as_ref().map(|files| files.client_config(false));
    let call = async {
        let mut client = todo_api::todo::auth::v1::auth_service_client::AuthServiceClient::new(
            try_channel_from("127.0.0.2:0", app.addr, tls).await?,
        );
        client
            .get_signing_keys(todo_api::todo::auth::v1::GetSigningKeysRequest {})
            .await
            .map_err(|status| status.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => Some(started.elapsed()),
        Ok(Err(error)) => {
            eprintln!("honest call failed: {error}");
            None
        }
        Err(_) => None,
    }
}

/// The honest client's median time over `n` calls, `None` if any was not served.
async fn honest_median(app: &TestApp, n: usize) -> Option<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(honest_call(app).await?);
    }
    times.sort();
    Some(times[n / 2])
}

/// Rows 3 and 8: silent sockets from one address are held to that address's share
/// (MAX_CONNECTIONS_PER_CLIENT) and closed when they send nothing within the preface timeout;
/// an honest client at another address is served meanwhile.
#[tokio::test]
async fn silent_sockets_from_one_address_cannot_keep_other_clients_out() {
    let app = TestApp::spawn_with(|c| {
        c.server.connections.max_connections = 300;
        c.server.connections.connection_preface_timeout_secs = 2;
    })
    .await;
    let alone = honest_median(&app, 5).await.expect("served alone");
    let mut attack = silent_sockets("127.0.0.1", &app, 350).await;
    let during = honest_median(&app, 5).await;
    eprintln!(
        "honest call alone: {alone:?}; beside 350 silent sockets from one address: {during:?}"
    );
    assert!(
        during.is_some(),
        "the honest client was served during the attack"
    );
    // Past the preface timeout every silent socket is closed: those over the address's
    // share at once, the others after 2 s.
    let closed = closed(&mut attack, Duration::from_secs(4)).await;
    assert_eq!(closed, 350, "every silent socket was closed");
}

/// Row 3 from a small group: 50 addresses each holding 6 connections (in HTTP/2, so the
/// preface timeout does not end them) fill MAX_CONNECTIONS=300; an honest newcomer takes the
/// place of an idle one of theirs instead of being kept out.
#[tokio::test]
async fn a_small_group_filling_every_connection_slot_makes_way_for_a_newcomer() {
    let app = TestApp::spawn_with(|c| c.server.connections.max_connections = 300).await;
    let alone = honest_median(&app, 5).await.expect("served alone");
    let mut attack = Vec::new();
    for n in 10..60 {
        let from = format!("127.0.0.{n}");
        for mut socket in silent_sockets(&from, &app, 6).await {
            // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
            socket
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await
                .unwrap();
            attack.push(socket);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = honest_median(&app, 5).await;
    eprintln!(
        "honest call alone: {alone:?}; with 300 idle HTTP/2 connections from 50 addresses holding every slot: {during:?}"
    );
    assert!(during.is_some(), "the honest client was served");
}

/// Row 2: 600 silent connections from three addresses over TLS (more than the 512 pending
/// handshakes that used to stop the accept loop) do not keep an honest HTTPS client out.
#[tokio::test]
async fn silent_tls_handshakes_do_not_stop_accepting() {
    let app = TestApp::spawn_tls(|_, _| {}).await;
    let alone = honest_median(&app, 3).await.expect("served alone");
    let mut attack = Vec::new();
    for from in ["127.0.0.1", "127.0.0.3", "127.0.0.4"] {
        attack.extend(silent_sockets(from, &app, 200).await);
    }
    let during = honest_median(&app, 3).await;
    eprintln!(
        "honest HTTPS call alone: {alone:?}; beside 600 silent TLS connections from 3 addresses: {during:?}"
    );
    assert!(
        during.is_some(),
        "the honest client was served during the attack"
    );
    drop(attack);
}

/// A reverse proxy of our own, as a balancer is: every client's calls to the health service
/// go to the server over the proxy's one HTTP/2 connection (Envoy multiplexes the same way),
/// with the client's address appended to `X-Forwarded-For`.
#[derive(Clone)]
struct HealthProxy(tonic::transport::Channel);

impl tonic::server::NamedService for HealthProxy {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl tower::Service<http::Request<tonic::body::Body>> for HealthProxy {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let client = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr());
        if let Some(client) = client {
            let value = client.ip().to_string().parse().unwrap();
            request.headers_mut().append("x-forwarded-for", value);
        }
        let channel = self.0.clone();
        Box::pin(async move {
            use tower::ServiceExt;
            Ok(match channel.oneshot(request).await {
                Ok(response) => response,
                Err(error) => tonic::Status::unavailable(error.to_string()).into_http(),
            })
        })
    }
}

/// Starts a [`HealthProxy`] in front of `upstream` on 127.0.0.1; its address.
async fn health_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{upstream}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthProxy(channel))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// Behind a trusted proxy, a client's share is the forwarded client's: 20 clients whose
/// streams all reach the server over the proxy's one connection each get their own share
/// (MAX_STREAMING_RPCS_PER_CLIENT), rather than the proxy's connection being capped as if it
/// were one client (MAX_STREAMING_RPCS_PER_CONNECTION); one client past its share is refused.
#[tokio::test]
async fn behind_a_trusted_proxy_every_forwarded_client_gets_its_own_share() {
    let app = TestApp::spawn_with(|c| {
        c.server.proxies.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.server.connections.max_streaming_rpcs_per_client = 2;
        c.server.connections.max_streaming_rpcs_per_connection = 4;
    })
    .await;
    let proxy = health_proxy(app.addr).await;
    let mut open = Vec::new();
    for n in 10..30 {
        let from: &'static str = Box::leak(format!("127.0.0.{n}:0").into_boxed_str());
        let channel = channel_from(from, proxy).await;
        for _ in 0..2 {
            let request = HealthCheckRequest {
                service: String::new(),
            };
            let stream = HealthClient::new(channel.clone())
                .watch(request)
                .await
                .unwrap_or_else(|status| panic!("client {from} within its share: {status:?}"));
            open.push(stream);
        }
        if n == 10 {
            let request = HealthCheckRequest {
                service: String::new(),
            };
            let refused = HealthClient::new(channel.clone())
                .watch(request)
                .await
                .expect_err("past this client's share");
            let info = refused.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.metadata["setting"], "MAX_STREAMING_RPCS_PER_CLIENT");
        }
    }
    assert_eq!(open.len(), 40, "40 streams over the proxy's one connection");
}

/// A trusted proxy's connections have no per-client bound (a balancer opens as many as its
/// clients need); any other address does.
#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_one_clients_connections() {
    let app = TestApp::spawn_with(|c| {
        c.server.proxies.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.server.connections.max_connections_per_client = 2;
    })
    .await;
    for (from, admitted) in [("127.0.0.1", 5), ("127.0.0.2", 2)] {
        let mut sockets = silent_sockets(from, &app, 5).await;
        for socket in &mut sockets {
            // The HTTP/2 preface and an empty SETTINGS frame: a connection that has spoken.
            socket
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await
                .ok();
        }
        let closed = closed(&mut sockets, Duration::from_millis(500)).await;
        assert_eq!(5 - closed, admitted, "from {from}");
    }
}
