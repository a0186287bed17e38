//! `TestStack`: a real auth-service and a real task-service on ephemeral ports, each with its
//! own fresh database (a new SQLite file, or new PostgreSQL databases when `TEST_DATABASE_URL`
//! is set), sharing a manual clock, plus typed gRPC clients.

use auth_service::config::AuthConfig;
use chrono::{TimeDelta, Utc};
use clock::ManualClock;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use task_service::{config::TaskConfig, internals::FetchedKeys};
use todo_api::{
    todo::auth::v1::auth_service_client::AuthServiceClient,
    todo::auth::v1::{self as auth_pb},
    todo::task::v1::task_service_client::TaskServiceClient,
    todo::task::v1::{self as pb},
};
use tonic::{Status, transport::Channel};

pub use test_support::{assert_error, count_rows, jwt_json, violated_fields, with_bearer};

pub use test_support::{PASSWORD, Running};

pub async fn fresh_database_url() -> String {
    test_support::fresh_database_url("task_test")
        .await
        .expect("create a test database")
}

/// Starts an auth-service on `addr` (port 0 for any) with `clock`, on `database_url` (the
/// two services may share one database, as in docker-compose.yml: their tables differ).
pub async fn start_auth(
    database_url: &str,
    addr: SocketAddr,
    clock: Arc<ManualClock>,
    configure: impl FnOnce(&mut AuthConfig),
) -> Running {
    let mut config = AuthConfig::for_database(addr, database_url);
    config.server.shutdown_drain_secs = 1;
    configure(&mut config);
    let app = auth_service::Application::build(config, clock)
        .await
        .expect("auth-service starts");
    Running::spawn(app.local_addr().unwrap(), |stop| app.run(stop))
}

/// Builds and starts a task-service on `database_url`, fetching keys from `auth_addr`.
pub async fn start_task(
    database_url: &str,
    auth_addr: SocketAddr,
    clock: Arc<ManualClock>,
    configure: impl FnOnce(&mut TaskConfig),
) -> (Running, Arc<FetchedKeys>) {
    let mut config = TaskConfig::for_database(
        "127.0.0.1:0".parse().unwrap(),
        database_url,
        &format!("http://{auth_addr}"),
    );
    config.server.shutdown_drain_secs = 1;
    configure(&mut config);
    let app = task_service::Application::build(config, clock)
        .await
        .expect("task-service starts");
    let (keys, metrics_addr) = (app.keys(), app.metrics_addr());
    let mut running = Running::spawn(app.local_addr().unwrap(), |stop| app.run(stop));
    running.metrics_addr = metrics_addr;
    (running, keys)
}

pub use test_support::channel;

/// Waits until `addr`'s health service reports `service` as SERVING (at most 15 s).
pub async fn wait_until_serving(addr: SocketAddr, service: &str) {
    if let Err(why) = todo_stack::wait_until_serving(addr, service, Duration::from_secs(15)).await {
        panic!("{why}");
    }
}

/// Task-service instances on one database (two replicas, on PostgreSQL), with one
/// auth-service.
pub struct Instances {
    pub database_url: String,
    pub auth: Running,
    pub clock: Arc<ManualClock>,
    pub tasks: Vec<Running>,
    pub auth_client: todo_api::todo::auth::v1::auth_service_client::AuthServiceClient<Channel>,
}

pub async fn instances(count: usize, configure: impl Fn(&mut TaskConfig) + Copy) -> Instances {
    let database_url = fresh_database_url().await;
    let clock = ManualClock::new(Utc::now());
    let any_port = "127.0.0.1:0".parse().unwrap();
    let auth = start_auth(&database_url, any_port, clock.clone(), |_| {}).await;
    let mut tasks = Vec::new();
    for _ in 0..count {
        let (task, _) = start_task(&database_url, auth.addr, Arc::clone(&clock), configure).await;
        wait_until_serving(task.addr, "todo.task.v1.TaskService").await;
        tasks.push(task);
    }
    let auth_client = todo_api::todo::auth::v1::auth_service_client::AuthServiceClient::new(
        channel(auth.addr).await,
    );
    Instances {
        database_url,
        auth,
        clock,
        tasks,
        auth_client,
    }
}

/// Terminates the other connections to `url`'s PostgreSQL database that match `condition`
/// (SQL on `pg_stat_activity`, with `value` as `$1`); how many.
pub async fn kill_connections(url: &str, condition: &str, value: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let admin = sea_orm::Database::connect(url).await.unwrap();
    let sql = format!(
        "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND {condition}"
    );
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            sql,
            [value.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    let _ = admin.close().await;
    n
}

/// POSTs one grpc-web call (binary) over HTTP/1.1 to `addr`, `method` like
/// `todo.task.v1.TaskService/ListTasks`, with `headers` (each ending in `\r\n`) and `body`
/// (its frames), as a browser does; the raw response, read until the server closes.
pub async fn grpc_web_over_http1(
    addr: SocketAddr,
    method: &str,
    headers: &str,
    body: &[u8],
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST /{method} HTTP/1.1\r\nHost: test\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    response
}

/// Both services, ready: started together the way `todo-stack` starts them.
pub struct TestStack {
    /// The database both services use.
    pub database_url: String,
    pub auth_addr: SocketAddr,
    pub task_addr: SocketAddr,
    /// The task-service's metrics listener, when the test turned it on.
    pub task_metrics_addr: Option<SocketAddr>,
    pub clock: Arc<ManualClock>,
    pub keys: Arc<FetchedKeys>,
    /// The task-service's internal listener.
    pub internal_addr: Option<SocketAddr>,
    /// The auth-service's use cases (its keys, to sign service tokens in tests).
    pub auth_rules: auth_service::internals::Rules,
    pub auth_client: AuthServiceClient<Channel>,
    pub tasks: TaskServiceClient<Channel>,
    /// Stops both services when the stack is dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestStack {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}, |_| {}).await
    }

    pub async fn spawn_with(
        configure_auth: impl FnOnce(&mut AuthConfig),
        configure_task: impl FnOnce(&mut TaskConfig),
    ) -> Self {
        let clock = ManualClock::new(Utc::now());
        let database_url = fresh_database_url().await;
        let any_port = "127.0.0.1:0".parse().unwrap();
        let mut auth = AuthConfig::for_database(any_port, &database_url);
        auth.server.shutdown_drain_secs = 1;
        configure_auth(&mut auth);
        // The stack points the task-service at its own auth-service.
        let mut task = TaskConfig::for_database(any_port, &database_url, "http://unused");
        task.server.shutdown_drain_secs = 1;
        configure_task(&mut task);
        let stack = todo_stack::Stack::build(auth, task, clock.clone())
            .await
            .expect("both services start");
        let (auth_addr, task_addr, keys) =
            (stack.auth_addr(), stack.task_addr(), stack.task_keys());
        let (internal_addr, auth_rules) = (stack.task_internal_addr(), stack.auth_rules());
        let task_metrics_addr = stack.task_metrics_addr();
        let (stop, stopped) = test_support::shutdown_on_drop();
        tokio::spawn(stack.run(stopped));
        wait_until_serving(task_addr, "todo.task.v1.TaskService").await;
        Self {
            database_url,
            auth_addr,
            task_addr,
            task_metrics_addr,
            clock,
            keys,
            internal_addr,
            auth_rules,
            auth_client: AuthServiceClient::new(channel(auth_addr).await),
            tasks: TaskServiceClient::new(channel(task_addr).await),
            _stop: stop,
        }
    }

    /// The shared clock, Unix seconds.
    pub fn clock_now(&self) -> i64 {
        use clock::Clock;
        self.clock.now().timestamp()
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
    }

    /// Signs up `email` and returns a client acting as that user.
    pub async fn user(&self, email: &str) -> User {
        let tokens = sign_up(&self.auth_client, email).await;
        User {
            token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            tasks: self.tasks.clone(),
        }
    }
}

/// A signed-up user calling the task-service with their access token.
#[derive(Clone)]
pub struct User {
    pub token: String,
    pub refresh_token: String,
    pub tasks: TaskServiceClient<Channel>,
}

/// Signs up `email` with [`PASSWORD`]; returns the new tokens.
pub async fn sign_up(auth: &AuthServiceClient<Channel>, email: &str) -> auth_pb::TokenPair {
    test_support::sign_up(auth.clone(), email)
        .await
        .expect("sign-up succeeds")
        .tokens
        .expect("tokens")
}

/// The `kid` a JWT's header names.
pub fn kid_of(token: &str) -> String {
    jwt_json(token, 0)["kid"]
        .as_str()
        .expect("a kid")
        .to_owned()
}

/// A timestamp's seconds (0 when unset).
pub fn seconds(time: &Option<prost_types::Timestamp>) -> i64 {
    time.as_ref().map_or(0, |t| t.seconds)
}

pub fn new_task(title: &str) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        title: title.into(),
        ..Default::default()
    }
}

impl User {
    pub async fn try_create(&self, request: pb::CreateTaskRequest) -> Result<pb::Task, Status> {
        let request = with_bearer(request, &self.token);
        self.tasks
            .clone()
            .create_task(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn create(&self, title: &str) -> pb::Task {
        self.try_create(new_task(title))
            .await
            .expect("task created")
    }

    pub async fn get(&self, id: &str) -> Result<pb::Task, Status> {
        let request = with_bearer(pb::GetTaskRequest { id: id.into() }, &self.token);
        self.tasks
            .clone()
            .get_task(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list(
        &self,
        request: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, Status> {
        let request = with_bearer(request, &self.token);
        self.tasks
            .clone()
            .list_tasks(request)
            .await
            .map(|r| r.into_inner())
    }

    /// The ids of all the user's tasks, newest first.
    pub async fn all_ids(&self) -> Vec<String> {
        self.list_all(0, None)
            .await
            .into_iter()
            .map(|task| task.id)
            .collect()
    }

    /// Every task, following page tokens with pages of `page_size`.
    pub async fn list_all(&self, page_size: i32, completed: Option<bool>) -> Vec<pb::Task> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list(pb::ListTasksRequest {
                    page_size,
                    page_token,
                    completed,
                })
                .await
                .expect("list");
            all.extend(page.tasks);
            if page.next_page_token.is_empty() {
                return all;
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn update(&self, task: pb::Task, paths: &[&str]) -> Result<pb::Task, Status> {
        let request = pb::UpdateTaskRequest {
            task: Some(task),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        };
        self.update_raw(request).await
    }

    pub async fn update_raw(&self, request: pb::UpdateTaskRequest) -> Result<pb::Task, Status> {
        let request = with_bearer(request, &self.token);
        self.tasks
            .clone()
            .update_task(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn delete(&self, id: &str, etag: &str) -> Result<(), Status> {
        let request = with_bearer(
            pb::DeleteTaskRequest {
                id: id.into(),
                etag: etag.into(),
            },
            &self.token,
        );
        self.tasks.clone().delete_task(request).await.map(|_| ())
    }

    pub async fn toggle(&self, id: &str) -> Result<pb::Task, Status> {
        let request = with_bearer(pb::ToggleTaskRequest { id: id.into() }, &self.token);
        self.tasks
            .clone()
            .toggle_task(request)
            .await
            .map(|r| r.into_inner())
    }
}

/// How many tasks `owner` has in the database at `url`, whoever asks.
pub async fn tasks_of(url: &str, owner: &str) -> i64 {
    use sea_orm::{
        ConnectionTrait,
        sea_query::{Alias, Asterisk, Expr, ExprTrait, Query},
    };
    let owner = uuid::Uuid::parse_str(owner).unwrap();
    let db = sea_orm::Database::connect(url).await.unwrap();
    let query = Query::select()
        .expr_as(Expr::col(Asterisk).count(), Alias::new("n"))
        .from(Alias::new("tasks"))
        .and_where(Expr::col(Alias::new("owner_id")).eq(owner))
        .to_owned();
    let row = db.query_one(&query).await.unwrap().unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    db.close().await.unwrap();
    n
}

/// The user id (`sub`) of an access token.
pub fn user_id_of(access_token: &str) -> String {
    jwt_json(access_token, 1)["sub"]
        .as_str()
        .expect("a sub")
        .to_owned()
}
