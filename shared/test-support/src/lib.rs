//! Helpers for the services' integration tests (a dev-dependency only: never in a build of a
//! service). Test support may panic: a failed assertion is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod layers;
pub mod otlp;
pub mod tls;

use sea_orm::{ConnectionTrait, Database, DbErr};
use todo_api::todo::auth::v1::auth_service_client::AuthServiceClient;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// A fresh, empty database URL for one test, chosen by `TEST_DATABASE_URL`:
/// - unset: a new SQLite file in the temporary directory, as users run it (write-ahead log,
///   several connections);
/// - `sqlite::memory:`: in-memory SQLite (one connection);
/// - a PostgreSQL URL (e.g. `postgres://postgres@127.0.0.1:5432/postgres`): a new database
///   named `<prefix>_<uuid>` beside it. CI drops those databases afterwards.
pub async fn fresh_database_url(prefix: &str) -> Result<String, DbErr> {
    let base = std::env::var("TEST_DATABASE_URL").unwrap_or_default();
    if base.starts_with("sqlite::memory:") {
        return Ok(base);
    }
    if !base.starts_with("postgres") {
        return Ok(sqlite_file_url(prefix));
    }
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let admin = Database::connect(&base).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    let (server, _) = base
        .rsplit_once('/')
        .ok_or_else(|| DbErr::Custom("TEST_DATABASE_URL needs a database path".into()))?;
    Ok(format!("{server}/{name}"))
}

/// The PostgreSQL URL of `TEST_DATABASE_URL`, for a test that only means something on
/// PostgreSQL (such tests are `#[ignore]`d, and the PostgreSQL run includes them). Panics when
/// it names no PostgreSQL server: an included test that cannot run fails, never passes.
pub fn require_postgres() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => panic!(
            "this test needs PostgreSQL: set TEST_DATABASE_URL=postgres://… (README, Quick start)"
        ),
    }
}

/// A fresh database that outlives one server, for restart tests: a SQLite file even when the
/// tests run in memory (`TEST_DATABASE_URL=sqlite::memory:`), or a new PostgreSQL database as
/// in [`fresh_database_url`].
pub async fn persistent_database_url(prefix: &str) -> Result<String, DbErr> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => fresh_database_url(prefix).await,
        _ => Ok(sqlite_file_url(prefix)),
    }
}

/// A new SQLite file under `<temp>/todo-grpc-tests/` (the directory is made on connect).
fn sqlite_file_url(prefix: &str) -> String {
    let path = std::env::temp_dir()
        .join("todo-grpc-tests")
        .join(format!("{prefix}-{}.db", uuid::Uuid::now_v7().simple()));
    format!("sqlite://{}", path.display())
}

/// `message` with `authorization: Bearer <token>` metadata.
pub fn with_bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a header-safe token"),
    );
    request
}

/// Asserts the status code and `ErrorInfo` reason; returns the status for more checks.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    let status = result.expect_err("the call fails");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("an ErrorInfo detail");
    assert_eq!(info.reason, reason, "unexpected reason: {status:?}");
    status
}

/// The field names of the `BadRequest` violations of a status.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// A shutdown future for a server under test, and the handle that triggers it when dropped
/// (so a test's servers stop when the test ends).
pub fn shutdown_on_drop() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (handle, dropped) = tokio::sync::oneshot::channel::<()>();
    (handle, async {
        let _ = dropped.await;
    })
}

/// A server running in the background, stopped when this is dropped.
pub struct Running {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Where it serves metrics, when the test turned them on (set by whoever built it).
    pub metrics_addr: Option<std::net::SocketAddr>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Spawns `run` (a built server's `run(shutdown)`), listening on `addr`, with a shutdown
    /// future that completes when the returned value is dropped.
    pub fn spawn<F, Fut, E>(addr: std::net::SocketAddr, run: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (stop, stopped) = shutdown_on_drop();
        let running = run(Box::pin(stopped));
        tokio::spawn(async move {
            if let Err(error) = running.await {
                eprintln!("server at {addr} stopped with an error: {error}");
            }
        });
        Self {
            addr,
            metrics_addr: None,
            _stop: stop,
        }
    }
}

/// The password every test account signs up with.
pub const PASSWORD: &str = "correct horse battery staple";

/// Signs `email` up with [`PASSWORD`] through `auth`.
pub async fn sign_up(
    mut auth: AuthServiceClient<tonic::transport::Channel>,
    email: &str,
) -> Result<todo_api::todo::auth::v1::SignUpResponse, Status> {
    let request = todo_api::todo::auth::v1::SignUpRequest {
        email: email.into(),
        password: PASSWORD.into(),
        display_name: None,
    };
    Ok(auth.sign_up(request).await?.into_inner())
}

/// Signs `email` in with [`PASSWORD`] through `auth`.
pub async fn sign_in(
    mut auth: AuthServiceClient<tonic::transport::Channel>,
    email: &str,
) -> Result<todo_api::todo::auth::v1::SignInResponse, Status> {
    let request = todo_api::todo::auth::v1::SignInRequest {
        email: email.into(),
        password: PASSWORD.into(),
    };
    Ok(auth.sign_in(request).await?.into_inner())
}

/// How many rows `table` (a table name, optionally followed by a `WHERE` clause) of the
/// database at `url` has.
pub async fn count_rows(url: &str, table: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(url)
        .await
        .expect("the test database opens");
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("the count runs")
        .expect("a count");
    let n: i64 = row.try_get("", "n").expect("a number");
    let _ = db.close().await;
    n
}

/// Closes every other connection to the PostgreSQL database at `url`, as a server restart or
/// a failover does; how many it closed.
pub async fn drop_every_connection(url: &str) -> usize {
    use sea_orm::{ConnectionTrait, Statement};
    let admin = sea_orm::Database::connect(url)
        .await
        .expect("connect as the admin");
    let closed = admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .expect("terminate the other connections")
        .len();
    let _ = admin.close().await;
    closed
}

/// `GET path` over plain HTTP/1.1 at `addr`: the status line and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // A server that is not an HTTP/1.1 server may just close or reset: whatever was read.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut response),
    )
    .await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of the sample `series` (name and labels exactly as exposed), 0 if absent.
pub fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A connected channel to a server under test.
pub async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("the server accepts connections")
}

/// Segment `index` of a JWT (0 header, 1 claims), decoded as JSON.
pub fn jwt_json(token: &str, index: usize) -> serde_json::Value {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let segment = token.split('.').nth(index).expect("a JWT segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}
