//! task-service: each user's own tasks over gRPC. A tonic interceptor verifies the bearer
//! JWT (keys fetched from the auth-service, or a shared HS256 secret); every query is scoped
//! to the caller in its WHERE clause.
//!
//! A library first: [`Application::build`] binds the listener and connects and migrates the
//! database; [`Application::run`] serves until shutdown. `main.rs`, the tests, the dev
//! launcher and the benchmarks all start the server this way.

// The layers, top to bottom; each module imports only from those below it (enforced by
// tests/api/layers.rs): `grpc` (the tonic service: authentication, the unread-replies budget,
// parsing, replies) → `rules` (the use cases) → `store` (all SQL) → `domain`, `error`,
// `config`.
pub mod config;
mod domain;
mod error;
mod grpc;
pub mod metrics;
mod rules;
mod store;

/// What this crate's benchmarks and integration tests and `load-bench` drive directly (the
/// authentication layer on its own), not a stable API. Always compiled (no feature), so tests
/// and binaries share one build.
#[doc(hidden)]
pub mod internals {
    pub use crate::grpc::auth::{Authenticate, Caller, FetchedKeys, VerifiedTokens, authenticated};
}

use crate::{
    config::{ConfigError, TaskConfig},
    domain::TaskQuota,
    grpc::{
        TaskApi,
        auth::{FetchedKeys, Guarded, SessionCheck, VerifiedTokens, authenticated},
        encoded::SendEncoded,
        internal::InternalApi,
        unread::UnreadBudget,
    },
    metrics::TaskMetrics,
    rules::{Feed, Freshness, PageCache, PageTokens, Purges, Tasks, Watches},
};
use access_token::ExposeSecret;
use clock::SharedClock;
use grpc_edge::metrics::Admin;
use grpc_edge::server::{AbortOnDrop, BindError, GrpcServer, ServeError, ServerTls};
use grpc_edge::tls::PemFile;
use migrations::TaskMigrator;
use sea_orm::{DatabaseBackend, DatabaseConnection};
use service_db::OpenError;
use std::{future::Future, net::SocketAddr, sync::Arc};
use todo_api::todo::task::{
    internal::v1::task_admin_server::TaskAdminServer, v1::task_service_server::TaskServiceServer,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// The gRPC services this server reports health for.
pub const SERVICE_NAMES: &[&str] = &["todo.task.v1.TaskService"];

/// The gRPC services of the internal listener.
pub const INTERNAL_SERVICE_NAMES: &[&str] = &["todo.task.internal.v1.TaskAdmin"];

/// Why the task-service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] OpenError),
    /// Something else needed at start-up failed.
    #[error("start-up: {0}")]
    Setup(String),
    /// The address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The task-service's listeners, bound: the public port and, with INTERNAL_LISTEN_ADDR, the
/// internal one. Binding them before building lets a launcher tell other services where they
/// are (port 0 picks a free port).
pub struct Listeners {
    pub public: TcpListener,
    pub internal: Option<TcpListener>,
}

impl Listeners {
    /// Binds TASK_LISTEN_ADDR and, if set, INTERNAL_LISTEN_ADDR.
    pub async fn bind(config: &TaskConfig) -> Result<Self, StartError> {
        let public = grpc_edge::server::bind("TASK_LISTEN_ADDR", config.listen_addr).await?;
        let internal = match config.internal_listen_addr {
            Some(addr) => Some(grpc_edge::server::bind("INTERNAL_LISTEN_ADDR", addr).await?),
            None => None,
        };
        Ok(Self { public, internal })
    }
}

/// A built, not yet serving, task-service.
pub struct Application {
    config: TaskConfig,
    listener: TcpListener,
    db: DatabaseConnection,
    clock: SharedClock,
    keys: Arc<FetchedKeys>,
    auth_channel: Channel,
    page_tokens: PageTokens,
    tls: Option<ServerTls>,
    /// The internal listener (INTERNAL_LISTEN_ADDR) and its TLS, when there is one.
    internal: Option<(TcpListener, Option<ServerTls>)>,
    /// The metrics registry and its admin listener (TASK_METRICS_LISTEN_ADDR).
    admin: Admin,
    metrics: TaskMetrics,
}

impl Application {
    /// Validates `config`, opens and migrates the database, and binds the listener (port 0
    /// picks a free port: see [`Application::local_addr`]). Does not wait for the
    /// auth-service: keys are fetched in the background once [`Application::run`] starts,
    /// and health reports NOT_SERVING until they are.
    pub async fn build(config: TaskConfig, clock: SharedClock) -> Result<Self, StartError> {
        let listeners = Listeners::bind(&config).await?;
        Self::build_on(config, clock, listeners).await
    }

    /// [`Application::build`] on listeners already bound (their addresses win over the
    /// configured ones).
    #[tracing::instrument(name = "task-service", skip_all)]
    pub async fn build_on(
        config: TaskConfig,
        clock: SharedClock,
        listeners: Listeners,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let tls = ServerTls::load(&config.server.tls, None).map_err(ConfigError::from)?;
        // An https:// URL is verified with AUTH_SERVICE_CA_FILE (or the system's roots):
        // no key is trusted from an auth-service whose certificate does not verify.
        let auth_channel = config
            .auth_tls()
            .and_then(|tls| tls.endpoint("AUTH_SERVICE_URL", &config.auth_service_url))
            .map_err(ConfigError::from)?
            .connect_timeout(std::time::Duration::from_secs(2))
            .connect_lazy();
        let admin = Admin::bind("TASK_METRICS_LISTEN_ADDR", config.metrics_listen_addr).await?;
        let metrics = admin
            .enabled()
            .map_or_else(TaskMetrics::off, TaskMetrics::new);
        let keys = match config.jwt.hs256_secret().map_err(ConfigError::from)? {
            Some(secret) => FetchedKeys::shared_secret(secret),
            None => FetchedKeys::remote(auth_channel.clone(), config.key_refresh_min_interval()),
        }
        .counting(&metrics);
        let page_tokens = match &config.page_token_secret {
            Some(secret) => {
                PageTokens::new(secret.expose_secret().as_bytes()).map_err(|e| e.to_string())
            }
            None => PageTokens::random(),
        }
        .map_err(|e| StartError::Setup(format!("page-token key: {e}")))?;

        let mut db = service_db::open(
            "TASK_DATABASE_URL",
            &config.database_url,
            &config.pool,
            |db| migrations::prepare::<TaskMigrator>(db, config.pool.migrate_on_start, "task"),
        )
        .await?;
        admin.watch_database(&mut db);
        let listener = listeners.public;
        let internal = match listeners.internal {
            None => None,
            Some(listener) => {
                let client_ca = config
                    .internal_client_ca_file
                    .clone()
                    .map(|path| PemFile::new("INTERNAL_CLIENT_CA_FILE", path));
                let tls =
                    ServerTls::load(&config.server.tls, client_ca).map_err(ConfigError::from)?;
                Some((listener, tls))
            }
        };
        Ok(Self {
            config,
            listener,
            db,
            clock,
            keys: Arc::new(keys),
            auth_channel,
            page_tokens,
            tls,
            internal,
            admin,
            metrics,
        })
    }

    /// Where metrics are served (TASK_METRICS_LISTEN_ADDR), if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr()
    }

    /// The address of the internal listener, if there is one.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether the server speaks TLS (`TLS_CERT_FILE`) rather than plaintext.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The verification-key cache (for tests and benchmarks).
    pub fn keys(&self) -> Arc<FetchedKeys> {
        Arc::clone(&self.keys)
    }

    /// Serves until `shutdown` completes, then drains and closes the database pool.
    #[tracing::instrument(name = "task-service", skip_all)]
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StartError> {
        let Self {
            config,
            listener,
            db,
            clock,
            keys,
            auth_channel,
            page_tokens,
            tls,
            internal,
            admin,
            metrics,
        } = self;
        let addr = listener.local_addr().unwrap_or(config.listen_addr);
        let transport = ServerTls::mode(tls.as_ref());
        tracing::info!(%addr, transport, auth_service = %config.auth_service_url, strict_sessions = config.strict_sessions, "task-service listening (gRPC + grpc-web)");

        // One shutdown for both listeners and the watch streams.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        // Stopped when `run` returns or is dropped.
        let _refresher = keys.spawn_refresher().map(AbortOnDrop);
        let feed = Arc::new(Feed::default());
        // The ListTasks cache's check: the change log's head on PostgreSQL (shared by every
        // replica), counted in memory on SQLite (this process makes every write); nothing to
        // track with the cache off.
        let freshness = Arc::new(match db.get_database_backend() {
            _ if config.list_cache_bytes == 0 => Freshness::Off,
            DatabaseBackend::Postgres => Freshness::log(db.clone()),
            _ => Freshness::counted(),
        });
        let purges = Arc::new(Purges::new(
            db.clone(),
            clock.clone(),
            config.tombstone_ttl(),
            Arc::clone(&feed),
            Arc::clone(&freshness),
        ));
        // Deleted accounts' tokens are refused from the first call on.
        if let Err(error) = purges.reload().await {
            tracing::warn!(%error, "reading deleted accounts failed: retried every 5 s");
        }
        let _sweeper = AbortOnDrop(purges.spawn_sweeper());
        let tasks = Tasks::new(
            db.clone(),
            clock.clone(),
            TaskQuota::new(config.task_quota),
            purges.owners(),
            Arc::clone(&feed),
            Arc::clone(&freshness),
        );
        let pages = PageCache::new(
            usize::try_from(config.list_cache_bytes).unwrap_or(usize::MAX),
            usize::try_from(config.list_cache_bytes_per_user).unwrap_or(usize::MAX),
            metrics.clone(),
        );
        let watches = Watches::new(
            db.clone(),
            feed,
            purges.owners(),
            clock.clone(),
            config.watch.clone(),
            stopping.clone(),
        );
        if let Err(error) = watches.keep_retained().await {
            tracing::warn!(%error, "setting WATCH_RETAINED_CHANGES in the database failed: the last value set stays");
        }
        let _change_sweeper = AbortOnDrop(watches.spawn_sweeper());
        let _change_listener = watches.spawn_listener().map(AbortOnDrop);
        let unread = UnreadBudget::new(config.max_unread_bytes, config.max_unread_bytes_per_user)
            .counting(&metrics);
        let server_metrics = admin.enabled().cloned();
        // The admin listener stops when `run` returns.
        let _admin = admin.spawn(std::future::pending());
        let api = SendEncoded::new(
            TaskServiceServer::new(TaskApi::new(
                tasks,
                watches,
                page_tokens,
                unread,
                pages,
                metrics.clone(),
            ))
            .max_decoding_message_size(config.server.max_request_bytes)
            .max_encoding_message_size(grpc_edge::server::MAX_RESPONSE_BYTES),
        );
        let verified = Arc::new(VerifiedTokens::new(config.verified_token_cache_size));
        let verifier = config.jwt.verifier();
        let server = GrpcServer::new(SERVICE_NAMES)?.with_metrics(server_metrics.as_ref());
        // Strict mode adds the Introspect layer; otherwise there is none to pass through.
        let server = if config.strict_sessions {
            let strict = Guarded::new(api, SessionCheck::new(auth_channel));
            server.add_service(authenticated(
                strict,
                Arc::clone(&keys),
                verifier,
                verified,
                clock.clone(),
                &metrics,
            ))
        } else {
            server.add_service(authenticated(
                api,
                Arc::clone(&keys),
                verifier,
                verified,
                clock.clone(),
                &metrics,
            ))
        };

        let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let internal = match internal {
            None => None,
            Some((listener, internal_tls)) => {
                let api = InternalApi::new(
                    purges,
                    Arc::clone(&keys),
                    &config.jwt.jwt_issuer,
                    config.jwt.jwt_leeway_secs,
                    clock.clone(),
                );
                let internal_addr = listener.local_addr().ok();
                tracing::info!(addr = ?internal_addr, transport = ServerTls::mode(internal_tls.as_ref()), "internal listener (TaskAdmin, native gRPC only)");
                let server = GrpcServer::new(INTERNAL_SERVICE_NAMES)?
                    .internal()
                    .with_metrics(server_metrics.as_ref())
                    .add_service(
                        TaskAdminServer::new(api)
                            .max_decoding_message_size(config.server.max_request_bytes),
                    )
                    .with_tls(internal_tls);
                let server_args = config.server.clone();
                let stopping = stopping.clone();
                Some(tokio::spawn(async move {
                    server
                        .serve(listener, &server_args, stopped(stopping))
                        .await
                }))
            }
        };
        let ready_keys = Arc::clone(&keys);
        let public = server
            .with_tls(tls)
            .ready_when(move || ready_keys.is_loaded())
            .watch_database(db)
            .await
            .serve(listener, &config.server, stopped(stopping));
        tokio::pin!(public);
        let served = tokio::select! {
            served = &mut public => served,
            () = shutdown => {
                let _ = stop.send(true);
                public.await
            }
        };
        // However the public listener ended, the internal one ends with it.
        let _ = stop.send(true);
        served?;
        if let Some(internal) = internal {
            internal.await.map_err(ServeError::from)??;
        }
        Ok(())
    }
}
