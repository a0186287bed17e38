//! The server builder every service uses: native gRPC (HTTP/2) and grpc-web (HTTP/1.1,
//! tonic-web) on one port, CORS, server reflection (v1 and v1alpha), `grpc.health.v1`, a span
//! per RPC, request limits, and graceful shutdown with a bounded drain.

use crate::{
    config::ServerArgs, db::ReadyCheck, proto::FILE_DESCRIPTOR_SET, telemetry::RpcTraceLayer,
};
use axum::{body::Body as AxumBody, response::IntoResponse, routing::get};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use sea_orm::DatabaseConnection;
use std::{convert::Infallible, future::Future, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{
    server::NamedService,
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::Service;
use tower_http::cors::{AllowOrigin, CorsLayer};

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
    Reflection(#[from] tonic_reflection::server::Error),
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
    reporter: HealthReporter,
    service_names: &'static [&'static str],
    ready: Option<ReadyCheck>,
    watched_database: Option<DatabaseConnection>,
}

impl GrpcServer {
    /// A server whose health service reports on `service_names` (fully qualified gRPC
    /// service names), with reflection and health already registered. Reflection also
    /// describes `google.rpc` error details, so grpcurl can print them.
    pub fn new(service_names: &'static [&'static str]) -> Result<Self, ServeError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        let reflection_v1 = reflection(service_names).build_v1()?;
        let reflection_v1alpha = reflection(service_names).build_v1alpha()?;
        let routes = Routes::new(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        Ok(Self {
            routes,
            reporter,
            service_names,
            ready: None,
            watched_database: None,
        })
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

    /// Serves `GET path` with a JSON body made by `body` (e.g. a JWKS document).
    #[must_use]
    pub fn add_json_get<F, Fut>(mut self, path: &str, body: F) -> Self
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let handler = move || {
            let body = body.clone();
            async move {
                match body().await {
                    Ok(json) => (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        json,
                    ),
                    Err(error) => {
                        tracing::error!(%error, "JSON endpoint failed");
                        let json = r#"{"error":"internal"}"#.to_owned();
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(header::CONTENT_TYPE, "application/json")],
                            json,
                        )
                    }
                }
            }
        };
        let router = std::mem::take(self.routes.axum_router_mut());
        *self.routes.axum_router_mut() = router.route(path, get(handler));
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
    /// accepting, and gives in-flight RPCs up to the configured drain time to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        args: &ServerArgs,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let cors = cors_layer(&args.cors_allowed_origins)?;
        // Stopped when `serve` returns, however it returns.
        let health_watcher = match self.watched_database {
            Some(db) => Some(AbortOnDrop(crate::db::watch_health(
                db,
                self.reporter.clone(),
                self.service_names,
                HEALTH_CHECK_EVERY,
                self.ready.clone(),
            ))),
            None => {
                // Without a database to watch, the server is healthy as soon as it serves.
                for name in self.service_names.iter().copied().chain([""]) {
                    self.reporter
                        .set_service_status(name, ServingStatus::Serving)
                        .await;
                }
                None
            }
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .accept_http1(true)
            .timeout(args.request_timeout())
            .max_concurrent_streams(args.max_concurrent_streams)
            .layer(cors)
            .layer(GrpcWebOrHttpLayer)
            .layer(RpcTraceLayer)
            .add_routes(
                self.routes
                    .prepare()
                    .into_axum_router()
                    .fallback(unknown_path)
                    .into(),
            );
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            // A dropped sender also means "stop".
            let _ = stopped.await;
        }));

        tokio::select! {
            result = &mut server => return Ok(result??),
            () = shutdown => {}
        }
        tracing::info!("shutting down: reporting NOT_SERVING and draining in-flight RPCs");
        drop(health_watcher);
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

/// Reflection over every message this project's protos, health and `google.rpc` error details
/// define, advertising only the services this server serves (the descriptor set also holds
/// the other service's API, which it does not serve).
fn reflection(service_names: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
    let own = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    service_names
        .iter()
        .chain(own.iter())
        .fold(builder, |builder, name| builder.with_service_name(*name))
}

/// A background task that is aborted when this handle is dropped.
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends grpc-web and HTTP/2 requests through tonic-web's translation and lets plain
/// HTTP/1.1 requests (e.g. `GET /.well-known/jwks.json`) reach the router untouched:
/// tonic-web alone answers every non-grpc-web HTTP/1.1 request with 400.
#[derive(Debug, Clone, Copy, Default)]
struct GrpcWebOrHttpLayer;

impl<S: Clone> tower::Layer<S> for GrpcWebOrHttpLayer {
    type Service = GrpcWebOrHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebOrHttp {
            web: tonic_web::GrpcWebLayer::new().layer(inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Debug, Clone)]
struct GrpcWebOrHttp<S> {
    web: tonic_web::GrpcWebService<S>,
    plain: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcWebOrHttp<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError> + std::fmt::Display,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + std::fmt::Display,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Each call drives a clone to readiness itself (`oneshot`).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        use tower::ServiceExt;
        let is_grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if request.version() < http::Version::HTTP_2 && !is_grpc {
            let plain = self.plain.clone();
            Box::pin(async move {
                let response = plain.oneshot(request.map(tonic::body::Body::new)).await?;
                Ok(response.map(tonic::body::Body::new))
            })
        } else {
            Box::pin(self.web.clone().oneshot(request))
        }
    }
}

/// Unknown paths: gRPC clients get UNIMPLEMENTED, anything else a 404.
async fn unknown_path(request: http::Request<AxumBody>) -> axum::response::Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        let status =
            tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
        status.into_http::<AxumBody>().into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// CORS for browsers calling over grpc-web.
fn cors_layer(origins: &[String]) -> Result<CorsLayer, ServeError> {
    let allow_origin = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(|o| {
                HeaderValue::from_str(o).map_err(|_| ServeError::InvalidCorsOrigin(o.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers(
            [
                "authorization",
                "content-type",
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
            ]
            .map(HeaderName::from_static),
        )
        .expose_headers(
            ["grpc-status", "grpc-message", "grpc-status-details-bin"].map(HeaderName::from_static),
        )
        .max_age(Duration::from_secs(24 * 60 * 60)))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called
/// (inside the runtime), not when the future is first polled, so a signal that arrives while
/// the server is still starting is not lost to the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| {
            signal(kind)
                .inspect_err(|error| tracing::error!(%error, ?kind, "cannot listen for a signal"))
                .ok()
        });
        async move {
            let [interrupt, terminate] = streams;
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
