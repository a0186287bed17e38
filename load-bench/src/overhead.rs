//! `auth-overhead`: the same trivial call with and without the task-service's authentication.
//!
//! Three servers, built like the task-service's own (`GrpcServer`: tonic-web, CORS, the rpc
//! span, limits), host [`Trivial`], a TaskService whose GetTask answers at once:
//! - without authentication;
//! - behind the task-service's real `KeyRefresh` layer and `Authenticate` interceptor, with
//!   its verified-token cache, through the same `authenticated` function the task-service
//!   uses;
//! - the same with the cache off, so every call verifies the signature.
//!
//! Every call carries the same bearer token, so the only difference between phases is the
//! authentication itself.

use crate::stack::{Stack, channels, wait_until_serving};
use clock::{SharedClock, SystemClock};
use grpc_edge::{metrics::Metrics, server::AbortOnDrop, server::GrpcServer};
use std::{net::SocketAddr, sync::Arc};
use task_service::metrics::TaskMetrics;
use task_service::{
    config::TaskConfig,
    internals::{Caller, FetchedKeys, VerifiedTokens, authenticated},
};
use todo_api::{
    todo::task::v1::task_service_server::TaskService,
    todo::task::v1::task_service_server::TaskServiceServer,
    todo::task::v1::{self as pb},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::Channel};

/// How the trivial server authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// Not at all.
    None,
    /// The task-service's interceptor, its verified-token cache holding this many tokens.
    Interceptor { cache: usize },
    /// The same, with a metrics registry recording the server's RPCs and the interceptor's
    /// outcomes, as with TASK_METRICS_LISTEN_ADDR set.
    Metered { cache: usize },
}

/// Trivial servers running until dropped (their tasks, and the key refresher's, are aborted).
#[derive(Default)]
pub struct TrivialServers {
    /// Client connections to each, in the order they were asked for.
    pub channels: Vec<Vec<Channel>>,
    _servers: Vec<AbortOnDrop<()>>,
    _refresher: Option<AbortOnDrop<()>>,
}

/// A TaskService whose GetTask answers at once (with the caller's id when there is one, so
/// the authenticated servers' answers show the interceptor ran); the rest is not served.
#[derive(Debug, Clone, Copy)]
pub struct Trivial;

#[tonic::async_trait]
impl TaskService for Trivial {
    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let owner = request.extensions().get::<Caller>().map(Caller::user_id);
        Ok(Response::new(pb::Task {
            id: request.into_inner().id,
            title: owner.map(|id| id.to_string()).unwrap_or_default(),
            ..Default::default()
        }))
    }

    async fn create_task(
        &self,
        _: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn list_tasks(
        &self,
        _: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn update_task(
        &self,
        _: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn delete_task(&self, _: Request<pb::DeleteTaskRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn toggle_task(
        &self,
        _: Request<pb::ToggleTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    type WatchTasksStream = futures_util::stream::Empty<Result<pb::WatchTasksResponse, Status>>;

    async fn watch_tasks(
        &self,
        _: Request<pb::WatchTasksRequest>,
    ) -> Result<Response<Self::WatchTasksStream>, Status> {
        Err(Status::unimplemented("trivial server"))
    }
}

/// Starts one trivial server per entry of `kinds`, verifying tokens as the task-service of
/// `stack` does (same signing mode and keys), waits until each is up and opens `connections`
/// client connections to each.
pub async fn start(
    stack: &Stack,
    kinds: &[Authentication],
    connections: usize,
) -> anyhow::Result<TrivialServers> {
    if kinds.is_empty() {
        return Ok(TrivialServers::default());
    }
    let auth_url = format!("http://{}", stack.auth_addr);
    let mut config =
        TaskConfig::for_database(([127, 0, 0, 1], 0).into(), "sqlite::memory:", &auth_url);
    config.jwt = stack.auth_config.tokens.jwt.clone();
    let keys = Arc::new(match config.jwt.hs256_secret()? {
        Some(secret) => FetchedKeys::shared_secret(secret),
        None => {
            let channel = crate::stack::endpoint(stack.auth_addr)?.connect().await?;
            FetchedKeys::remote(channel, config.key_refresh_min_interval())
        }
    });
    let refresher = keys.spawn_refresher().map(AbortOnDrop);
    for _ in 0..200 {
        if keys.is_loaded() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    anyhow::ensure!(keys.is_loaded(), "the signing keys were never fetched");

    let clock: SharedClock = Arc::new(SystemClock);
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for kind in kinds {
        // Bound here, registered with the services' runtime once there.
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        addrs.push(listener.local_addr()?);
        let server = GrpcServer::new(task_service::SERVICE_NAMES)?;
        let server = match *kind {
            Authentication::None => server.add_service(TaskServiceServer::new(Trivial)),
            Authentication::Interceptor { cache } | Authentication::Metered { cache } => {
                // Metered: a registry recording as with TASK_METRICS_LISTEN_ADDR set.
                let metrics = matches!(kind, Authentication::Metered { .. }).then(Metrics::new);
                let counting = metrics
                    .as_ref()
                    .map_or_else(TaskMetrics::off, TaskMetrics::new);
                server
                    .with_metrics(metrics.as_ref())
                    .add_service(authenticated(
                        TaskServiceServer::new(Trivial),
                        Arc::clone(&keys),
                        config.jwt.verifier(),
                        Arc::new(VerifiedTokens::new(cache)),
                        clock.clone(),
                        &counting,
                    ))
            }
        };
        let args = config.server.clone();
        // Served until aborted: no drain is needed for a benchmark fixture.
        // On the services' runtime, so its CPU is counted as theirs.
        servers.push(AbortOnDrop(stack.spawn_service(async move {
            let shutdown = std::future::pending();
            let failed = match TcpListener::from_std(listener) {
                Ok(listener) => server
                    .serve(listener, &args, shutdown)
                    .await
                    .err()
                    .map(|e| e.to_string()),
                Err(error) => Some(error.to_string()),
            };
            if let Some(error) = failed {
                eprintln!("load-bench: trivial server failed: {error}");
            }
        })));
    }
    let mut clients = Vec::new();
    for addr in addrs {
        wait_until_serving(addr, "todo.task.v1.TaskService").await?;
        clients.push(channels(addr, connections).await?);
    }
    Ok(TrivialServers {
        channels: clients,
        _servers: servers,
        _refresher: refresher,
    })
}
