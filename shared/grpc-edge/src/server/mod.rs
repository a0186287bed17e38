//! The server builder every service uses: native gRPC (HTTP/2) and grpc-web (HTTP/1.1,
//! tonic-web) on one port, CORS, server reflection (v1 and v1alpha), `grpc.health.v1`, a span
//! per RPC, request limits, and graceful shutdown with a bounded drain.

mod connections;
mod cors;
mod health;
mod held;
mod http1;
mod limits;
mod listener;
mod reflection;
mod signal;
mod tasks;
mod tls;

pub use connections::ConnectionHandle;
pub use health::ReadyCheck;
pub use held::HeldUntilSent;
pub use listener::{BindError, bind};
pub use signal::shutdown_signal;
pub use tasks::AbortOnDrop;
pub use tls::ServerTls;

use crate::{metrics::Metrics, settings::ServerArgs, telemetry::RpcLayer};
use axum::{response::IntoResponse, routing::get};
use connections::{ConnectionLayer, Connections};
use cors::cors_layer;
use http::{StatusCode, header};
use http1::{GrpcWebOrHttpLayer, unknown_path};
use limits::RequestSizeLayer;
use reflection::{Catalog, Reflection};
use sea_orm::DatabaseConnection;
use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};
use todo_api::FILE_DESCRIPTOR_SET;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{server::NamedService, service::Routes, transport::Server};
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};
use tower::Service;

/// Streams a client may make the server reset on one connection before it gets a GOAWAY
/// (hyper's own default, which tonic turns off unless set).
const MAX_LOCAL_RESETS: usize = 1024;

/// Streams a client may open and reset before the server accepts them (h2's default).
const MAX_PENDING_RESETS: usize = 20;

/// Largest header block a request may send (hyper's default, set here so it is stated): a
/// bearer token is under 1 KiB.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Largest response message a service sends (tonic's default is unlimited): a ListTasks page
/// stops at 1 MiB of tasks, every other reply is far smaller.
pub const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

/// How often the database is pinged for the health service.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A CORS origin that is not a valid header value.
    #[error("invalid CORS origin {0:?}: expected e.g. http://localhost:5173 or *")]
    InvalidCorsOrigin(String),
    /// Reflection could not be built from the descriptor sets.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] prost::DecodeError),
    /// The transport failed.
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked.
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A gRPC server under construction: add services, then [`GrpcServer::serve`].
pub struct GrpcServer {
    routes: Routes,
    /// Health and reflection, added with the message size limits once the settings are known.
    health: HealthServer<HealthService>,
    reflection: Reflection,
    reporter: HealthReporter,
    service_names: &'static [&'static str],
    ready: Option<ReadyCheck>,
    watched_database: Option<DatabaseConnection>,
    /// The plain HTTP documents (`add_json_get`): the only non-gRPC requests served.
    plain_paths: Vec<String>,
    /// TLS on the port, or plaintext.
    tls: Option<ServerTls>,
    /// A public port (gRPC, grpc-web over HTTP/1.1, CORS) or an internal one (native gRPC
    /// over HTTP/2 only).
    public: bool,
    /// The served services' methods (service, method), named in spans and metrics.
    methods: Vec<(String, String)>,
    /// The service instance's metrics registry, if it keeps one.
    metrics: Option<Metrics>,
}

impl GrpcServer {
    /// A server whose health service reports on `service_names` (fully qualified gRPC
    /// service names), with reflection and health already registered. Reflection also
    /// describes `google.rpc` error details, so grpcurl can print them.
    pub fn new(service_names: &'static [&'static str]) -> Result<Self, ServeError> {
        let reporter = HealthReporter::new();
        let health = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        let catalog = catalog(service_names)?;
        let methods = catalog.listed_methods();
        let reflection = Reflection::new(catalog);
        Ok(Self {
            routes: Routes::default(),
            health,
            reflection,
            reporter,
            service_names,
            ready: None,
            watched_database: None,
            plain_paths: Vec::new(),
            tls: None,
            public: true,
            methods,
            metrics: None,
        })
    }

    /// Records this server's RPCs, limits and health in `metrics` (the service instance's
    /// registry, shared by its listeners; the listener is a label).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<&Metrics>) -> Self {
        self.metrics = metrics.cloned();
        self
    }

    /// The listener's name in metric labels.
    fn listener_name(&self) -> &'static str {
        if self.public { "public" } else { "internal" }
    }

    /// Makes this an internal port, for the other services of the pair and never a browser:
    /// native gRPC over HTTP/2 only; HTTP/1.1 connections, grpc-web requests and CORS
    /// preflights are all refused, whatever `CORS_ALLOWED_ORIGINS` says.
    #[must_use]
    pub fn internal(mut self) -> Self {
        self.public = false;
        self
    }

    /// Adds a gRPC service.
    #[must_use]
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes = self.routes.add_service(service);
        self
    }

    /// Serves `GET path` (and HEAD) with a JSON body made by `body` (e.g. a JWKS document),
    /// cacheable by clients and proxies for `cache_seconds`.
    #[must_use]
    pub fn add_json_get<F, Fut>(mut self, path: &str, cache_seconds: u32, body: F) -> Self
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let cache_control = format!("public, max-age={cache_seconds}");
        let handler = move || {
            let body = body.clone();
            let cache_control = cache_control.clone();
            async move {
                match body().await {
                    Ok(json) => (
                        StatusCode::OK,
                        [
                            (header::CONTENT_TYPE, "application/json".to_owned()),
                            (header::CACHE_CONTROL, cache_control),
                        ],
                        json,
                    ),
                    Err(error) => {
                        tracing::error!(%error, "JSON endpoint failed");
                        let json = r#"{"error":"internal"}"#.to_owned();
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [
                                (header::CONTENT_TYPE, "application/json".to_owned()),
                                (header::CACHE_CONTROL, "no-store".to_owned()),
                            ],
                            json,
                        )
                    }
                }
            }
        };
        self.plain_paths.push(path.to_owned());
        let router = std::mem::take(self.routes.axum_router_mut());
        *self.routes.axum_router_mut() = router.route(path, get(handler));
        self
    }

    /// Serves TLS with `tls` (from [`ServerTls::load`]); `None` keeps plaintext.
    #[must_use]
    pub fn with_tls(mut self, tls: Option<ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Reports NOT_SERVING until `ready` returns true (checked together with the database,
    /// see [`GrpcServer::watch_database`]).
    #[must_use]
    pub fn ready_when(mut self, ready: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.ready = Some(std::sync::Arc::new(ready));
        self
    }

    /// While serving, reports NOT_SERVING while `db` does not answer a ping (or a
    /// [`GrpcServer::ready_when`] check fails), SERVING otherwise. The services are registered
    /// as NOT_SERVING at once, so a probe made before the first ping gets an answer rather
    /// than NOT_FOUND.
    pub async fn watch_database(mut self, db: DatabaseConnection) -> Self {
        for name in self.service_names.iter().copied().chain([""]) {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        self.watched_database = Some(db);
        self
    }

    /// Serves on `listener` until `shutdown` completes, then reports NOT_SERVING, stops
    /// accepting, gives in-flight RPCs up to the configured drain time to finish, and closes
    /// the pool of the database it watched ([`GrpcServer::watch_database`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        args: &ServerArgs,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let pool = self.watched_database.clone();
        let result = self.serve_until(listener, args, shutdown).await;
        // The watched database's pool is closed once the server has stopped, however it
        // stopped: in-flight RPCs are done with it.
        if let Some(db) = pool
            && let Err(error) = db.close().await
        {
            tracing::warn!(%error, "closing the database pool failed");
        }
        result
    }

    async fn serve_until(
        self,
        listener: TcpListener,
        args: &ServerArgs,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let listener_name = self.listener_name();
        let metered = self.metrics.as_ref().map(|m| (m, listener_name));
        let serving = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(metrics) = &self.metrics {
            let serving = Arc::downgrade(&serving);
            metrics.gauge_fn(
                "health_serving",
                "1 while the listener reports SERVING on grpc.health.v1 (database answers, keys loaded), else 0",
                vec![("listener", listener_name)],
                move || {
                    serving
                        .upgrade()
                        .map(|s| i64::from(s.load(std::sync::atomic::Ordering::Relaxed)))
                },
            );
        }
        let cors = cors_layer(if self.public {
            &args.cors_allowed_origins
        } else {
            &[]
        })?;
        // Stopped when `serve` returns, however it returns.
        let health_watcher = match self.watched_database {
            Some(db) => Some(AbortOnDrop(health::watch_health(
                db,
                self.reporter.clone(),
                self.service_names,
                HEALTH_CHECK_EVERY,
                self.ready.clone(),
                Arc::clone(&serving),
            ))),
            None => {
                serving.store(true, std::sync::atomic::Ordering::Relaxed);
                // Without a database to watch, the server is healthy as soon as it serves.
                for name in self.service_names.iter().copied().chain([""]) {
                    self.reporter
                        .set_service_status(name, ServingStatus::Serving)
                        .await;
                }
                None
            }
        };
        let domain = error_domain(self.service_names);
        let connections =
            Connections::new(&args.connections, args.proxies.trusted(), domain, metered);
        let incoming = connections::incoming(listener, Arc::clone(&connections));
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = &args.connections;
        let mut builder = Server::builder()
            .accept_http1(self.public)
            .timeout(args.request_timeout())
            .max_concurrent_streams(args.max_concurrent_streams)
            .http2_keepalive_interval(limits.http2_keepalive())
            .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout()))
            // tonic passes "no limit" to hyper unless told (RUSTSEC-2024-0003): a client that
            // makes the server reset streams gets a GOAWAY after this many.
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES);
        if let Some(age) = limits.max_connection_age() {
            builder = builder
                .max_connection_age(age)
                .max_connection_age_grace(limits.max_connection_age_grace());
        }
        let router = builder
            .layer(ConnectionLayer::new(connections))
            .layer(cors)
            .layer(GrpcWebOrHttpLayer::new(self.plain_paths, self.public))
            .layer(RpcLayer::new(
                &self.methods,
                self.metrics.as_ref(),
                listener_name,
            ))
            .layer(RequestSizeLayer::new(
                args.max_request_bytes,
                domain,
                metered,
            ))
            .add_routes(
                self.routes
                    // The same message limits as the APIs': health and reflection need no
                    // token, and reflection echoes its request back.
                    .add_service(
                        self.health
                            .max_decoding_message_size(args.max_request_bytes)
                            .max_encoding_message_size(MAX_RESPONSE_BYTES),
                    )
                    .add_service(
                        self.reflection
                            .v1()
                            .max_decoding_message_size(args.max_request_bytes)
                            .max_encoding_message_size(MAX_RESPONSE_BYTES),
                    )
                    .add_service(
                        self.reflection
                            .v1alpha()
                            .max_decoding_message_size(args.max_request_bytes)
                            .max_encoding_message_size(MAX_RESPONSE_BYTES),
                    )
                    .prepare()
                    .into_axum_router()
                    .fallback(unknown_path)
                    .into(),
            );
        // A dropped sender also means "stop".
        let stop_signal = async {
            let _ = stopped.await;
        };
        let mut server = match self.tls {
            None => tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop_signal)),
            Some(tls) => tokio::spawn(
                router.serve_with_incoming_shutdown(tls.incoming(incoming, metered), stop_signal),
            ),
        };

        tokio::select! {
            result = &mut server => return Ok(result??),
            () = shutdown => {}
        }
        tracing::info!("shutting down: reporting NOT_SERVING and draining in-flight RPCs");
        drop(health_watcher);
        serving.store(false, std::sync::atomic::Ordering::Relaxed);
        for name in self.service_names.iter().copied().chain([""]) {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let _ = stop.send(());
        match tokio::time::timeout(args.shutdown_drain(), &mut server).await {
            Ok(result) => result??,
            Err(_) => {
                tracing::warn!(
                    drain_secs = args.shutdown_drain_secs,
                    "drain time exceeded: closing remaining connections"
                );
                server.abort();
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Reflection over every message this project's protos, health, reflection and `google.rpc`
/// error details define, listing only the services this server serves (the descriptor set also
/// holds the other service's API, which it does not serve).
fn catalog(service_names: &[&str]) -> Result<Catalog, prost::DecodeError> {
    let own = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    Catalog::new(
        &[
            FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ],
        service_names
            .iter()
            .chain(&own)
            .map(|name| (*name).to_owned()),
    )
}

/// The `ErrorInfo` domain of errors the server itself answers: the package of its (first) API,
/// e.g. `todo.task.v1` for `todo.task.v1.TaskService`.
fn error_domain(service_names: &'static [&'static str]) -> &'static str {
    service_names
        .first()
        .and_then(|name| name.rsplit_once('.'))
        .map_or("grpc", |(package, _)| package)
}
