//! `TestApp`: a real auth-service on an ephemeral port with its own fresh database (a new
//! SQLite file, or a uniquely named PostgreSQL database when `TEST_DATABASE_URL` is set), a manual
//! clock, and typed gRPC clients.

use auth_service::{Application, config::AuthConfig};
use chrono::{TimeDelta, Utc};
use clock::ManualClock;
use std::{net::SocketAddr, sync::Arc};
use todo_api::{
    todo::auth::v1::auth_service_client::AuthServiceClient,
    todo::auth::v1::{self as pb},
};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

pub use test_support::{
    assert_error, count_rows, jwt_json, tls::TlsFiles, violated_fields, with_bearer,
};

pub use test_support::{PASSWORD, Running};

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: AuthServiceClient<Channel>,
    pub clock: Arc<ManualClock>,
    /// The running service's use cases (for sweeps and other direct calls).
    pub rules: auth_service::internals::Rules,
    /// Its database.
    pub database_url: String,
    /// The PKI of a server started with [`TestApp::spawn_tls`].
    pub tls: Option<Arc<TlsFiles>>,
    /// Stops the server when the app is dropped.
    _running: Running,
}

/// A fresh database URL (see `test_support`).
pub async fn fresh_database_url() -> String {
    test_support::fresh_database_url("auth_test")
        .await
        .expect("create a test database")
}

/// A fresh database that outlives one server (see `test_support`).
pub async fn persistent_database_url() -> String {
    test_support::persistent_database_url("auth_test")
        .await
        .expect("create a test database")
}

/// The `RetryInfo` delay of a status.
pub fn retry_delay(status: &Status) -> Option<std::time::Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut AuthConfig)) -> Self {
        let url = fresh_database_url().await;
        Self::spawn_on(&url, configure).await
    }

    pub async fn spawn_on(database_url: &str, configure: impl FnOnce(&mut AuthConfig)) -> Self {
        Self::start(database_url, configure, None).await
    }

    /// A server on TLS with a fresh development PKI (`app.tls`); the client trusts its CA.
    pub async fn spawn_tls(configure: impl FnOnce(&mut AuthConfig, &TlsFiles)) -> Self {
        let files = Arc::new(TlsFiles::new());
        let url = fresh_database_url().await;
        let with_files = Arc::clone(&files);
        Self::start(
            &url,
            move |config| {
                with_files.serve_with(&mut config.server.tls);
                configure(config, &with_files);
            },
            Some(files),
        )
        .await
    }

    async fn start(
        database_url: &str,
        configure: impl FnOnce(&mut AuthConfig),
        tls: Option<Arc<TlsFiles>>,
    ) -> Self {
        let mut config = AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), database_url);
        config.server.shutdown_drain_secs = 1;
        configure(&mut config);
        let client_cert = config.tls_client_ca_file.is_some();
        let clock = ManualClock::new(Utc::now());
        let app = Application::build(config, clock.clone())
            .await
            .expect("auth-service starts");
        let addr = app.local_addr().unwrap();
        let rules = app.rules();
        let running = Running::spawn(addr, |stop| app.run(stop));
        let client = match &tls {
            None => AuthServiceClient::connect(format!("http://{addr}"))
                .await
                .expect("connect"),
            Some(files) => AuthServiceClient::new(
                files
                    .channel(addr, client_cert)
                    .await
                    .expect("connect over TLS"),
            ),
        };
        Self {
            addr,
            client,
            clock,
            rules,
            database_url: database_url.to_owned(),
            tls,
            _running: running,
        }
    }

    pub async fn channel(&self) -> Channel {
        test_support::channel(self.addr).await
    }

    /// The service's clock, now.
    pub fn state_now(&self) -> chrono::DateTime<Utc> {
        use clock::Clock;
        self.clock.now()
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
    }

    pub async fn sign_up(&self, email: &str) -> pb::SignUpResponse {
        self.try_sign_up(email, PASSWORD)
            .await
            .expect("sign-up succeeds")
    }

    /// Signs up `email` and returns just the access token.
    pub async fn access_token(&self, email: &str) -> String {
        tokens(&self.sign_up(email).await).access_token.clone()
    }

    pub async fn signing_keys(&self) -> Vec<pb::SigningKey> {
        let request = pb::GetSigningKeysRequest {};
        self.client
            .clone()
            .get_signing_keys(request)
            .await
            .expect("keys")
            .into_inner()
            .keys
    }

    /// Asserts `token` is refused by GetCurrentUser and reported inactive by Introspect.
    pub async fn assert_token_refused(&self, token: &str) {
        assert_error(
            self.current_user(token).await,
            Code::Unauthenticated,
            "INVALID_TOKEN",
        );
        assert!(!self.introspect(token).await.active);
    }

    pub async fn try_sign_up(
        &self,
        email: &str,
        password: &str,
    ) -> Result<pb::SignUpResponse, Status> {
        let request = pb::SignUpRequest {
            email: email.into(),
            password: password.into(),
            display_name: None,
        };
        self.client
            .clone()
            .sign_up(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Result<pb::SignInResponse, Status> {
        let request = pb::SignInRequest {
            email: email.into(),
            password: password.into(),
        };
        self.client
            .clone()
            .sign_in(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<pb::TokenPair, Status> {
        let request = pb::RefreshRequest {
            refresh_token: refresh_token.into(),
        };
        self.client
            .clone()
            .refresh(request)
            .await
            .map(|r| r.into_inner().tokens.expect("tokens"))
    }

    pub async fn current_user(&self, access_token: &str) -> Result<pb::User, Status> {
        let request = with_bearer(pb::GetCurrentUserRequest {}, access_token);
        self.client
            .clone()
            .get_current_user(request)
            .await
            .map(|r| r.into_inner().user.expect("user"))
    }

    pub async fn introspect(&self, token: &str) -> pb::IntrospectResponse {
        let request = pb::IntrospectRequest {
            token: token.into(),
            token_type_hint: String::new(),
        };
        self.client
            .clone()
            .introspect(request)
            .await
            .expect("introspect")
            .into_inner()
    }

    pub async fn sign_out_bearer(&self, access_token: &str) -> Result<(), Status> {
        let request = with_bearer(pb::SignOutRequest::default(), access_token);
        self.client.clone().sign_out(request).await.map(|_| ())
    }

    /// A raw HTTP/1.1 request to the server's port; returns the whole response text.
    pub async fn http(&self, request: &str) -> String {
        self.http_bytes(request.as_bytes()).await
    }

    /// [`TestApp::http`] for a request with a binary body.
    pub async fn http_bytes(&self, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }
}

pub fn tokens(response: &pb::SignUpResponse) -> &pb::TokenPair {
    response.tokens.as_ref().expect("tokens")
}

/// A channel to `addr` whose connections come from `from` (e.g. 127.0.0.2).
pub async fn channel_from(from: &'static str, addr: std::net::SocketAddr) -> Channel {
    channel_from_over(from, addr, None).await
}

/// [`channel_from`], over TLS with `tls` when given.
pub async fn channel_from_over(
    from: &'static str,
    addr: std::net::SocketAddr,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Channel {
    try_channel_from(from, addr, tls).await.unwrap()
}

/// [`channel_from_over`], with the failure to connect as an error.
pub async fn try_channel_from(
    from: &'static str,
    addr: std::net::SocketAddr,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Channel, String> {
    connect_from(from, addr, tls, None).await
}

/// A client of `app` whose connections come from `from`, saying it is `user_agent` (tonic
/// adds its own name after it).
pub async fn device_client(
    from: &'static str,
    user_agent: &'static str,
    app: &TestApp,
) -> AuthServiceClient<Channel> {
    let channel = connect_from(from, app.addr, None, Some(user_agent))
        .await
        .unwrap();
    AuthServiceClient::new(channel)
}

async fn connect_from(
    from: &'static str,
    addr: std::net::SocketAddr,
    tls: Option<tonic::transport::ClientTlsConfig>,
    user_agent: Option<&'static str>,
) -> Result<Channel, String> {
    let connector = tower::service_fn(move |_: http::Uri| async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(from.parse().map_err(std::io::Error::other)?)?;
        let stream = socket.connect(addr).await?;
        // As tonic's own connector does: without it, Nagle and delayed ACKs add ~40 ms.
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
    });
    let endpoint = match tls {
        None => tonic::transport::Endpoint::from_shared(format!("http://{addr}")),
        Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|endpoint| endpoint.tls_config(tls)),
    }
    .map_err(|e| e.to_string())?;
    let endpoint = match user_agent {
        Some(agent) => endpoint.user_agent(agent).map_err(|e| e.to_string())?,
        None => endpoint,
    };
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| e.to_string())
}

/// A client of `app` whose connections come from `from` (e.g. `127.0.0.2:0`).
pub async fn client_from(from: &'static str, app: &TestApp) -> AuthServiceClient<Channel> {
    let tls = app.tls.as_ref().map(|files| files.client_config(false));
    AuthServiceClient::new(channel_from_over(from, app.addr, tls).await)
}

/// An empty GetSigningKeysRequest over grpc-web (one uncompressed frame of length 0).
pub const GRPC_WEB_KEYS: &str = "POST /todo.auth.v1.AuthService/GetSigningKeys HTTP/1.1\r\nHost: test\r\n\
    Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nOrigin: http://localhost:5173\r\n\
    Content-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0";

/// A successful grpc-web answer over HTTP/1.1: 200, the grpc-web content type, grpc-status 0.
pub fn assert_grpc_web_answer(response: &str) {
    let lower = response.to_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{response}");
    assert!(
        lower.contains("content-type: application/grpc-web+proto"),
        "{response}"
    );
    assert!(
        response.contains("grpc-status:0") || lower.contains("grpc-status: 0"),
        "{response}"
    );
}
