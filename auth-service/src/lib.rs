//! auth-service: sign-up and sign-in with argon2id, short-lived JWT access tokens, rotating
//! refresh tokens, introspection, sign-out, and the public keys other services verify with.
//!
//! A library first: [`Application::build`] binds the listener, connects and migrates the
//! database and loads the keys; [`Application::run`] serves until shutdown. `main.rs`, the
//! tests, the dev launcher and the benchmarks all start the server this way.

// The layers, top to bottom; each module imports only from those below it (enforced by
// tests/api/layers.rs): `grpc` (the tonic service: extraction, parsing, replies) → `rules`
// (the use cases) → `store` (all SQL) → `domain`, `error`, `config`.
pub mod config;
mod domain;
mod error;
mod grpc;
pub mod metrics;
mod rules;
mod store;

/// What this crate's integration tests and benchmarks and `load-bench` drive directly, not a
/// stable API. Always compiled (no feature), so tests and binaries share one build.
#[doc(hidden)]
pub mod internals {
    pub use crate::{
        domain::Password,
        rules::{
            KeyRing, Rules,
            keys::SigningKeys,
            password::{PasswordCheck, PasswordHasher},
            tokens::{Subject, TokenIssuer, hash_refresh_token, new_refresh_token},
        },
    };
}

use crate::{
    config::{AuthConfig, ConfigError, SigningMode},
    error::AuthError,
    grpc::AuthApi,
    metrics::AuthMetrics,
    rules::Rules,
};
use clock::SharedClock;
use grpc_edge::{
    metrics::Admin,
    server::{AbortOnDrop, BindError, GrpcServer, ServeError, ServerTls},
    tls::PemFile,
};
use migrations::AuthMigrator;
use sea_orm::DatabaseConnection;
use service_db::OpenError;
use std::{future::Future, net::SocketAddr, sync::Arc};
use todo_api::todo::auth::v1::auth_service_server::AuthServiceServer;
use tokio::net::TcpListener;

/// The gRPC services this server reports health for.
pub const SERVICE_NAMES: &[&str] = &["todo.auth.v1.AuthService"];

/// Why the auth-service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] OpenError),
    /// Keys or the password hasher could not be set up.
    #[error("start-up: {0}")]
    State(#[from] AuthError),
    /// The address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// A built, not yet serving, auth-service.
pub struct Application {
    config: AuthConfig,
    listener: TcpListener,
    db: DatabaseConnection,
    clock: SharedClock,
    rules: Rules,
    tls: Option<ServerTls>,
    /// The metrics registry and its admin listener (AUTH_METRICS_LISTEN_ADDR).
    admin: Admin,
    metrics: AuthMetrics,
}

impl Application {
    /// Validates `config`, opens and migrates the database, loads the signing keys, and binds
    /// the listener (port 0 picks a free port: see [`Application::local_addr`]).
    pub async fn build(config: AuthConfig, clock: SharedClock) -> Result<Self, StartError> {
        let listener = grpc_edge::server::bind("AUTH_LISTEN_ADDR", config.listen_addr).await?;
        Self::build_on(config, clock, listener).await
    }

    /// [`Application::build`] on a listener already bound (its address wins over
    /// AUTH_LISTEN_ADDR).
    #[tracing::instrument(name = "auth-service", skip_all)]
    pub async fn build_on(
        config: AuthConfig,
        clock: SharedClock,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let client_ca = config
            .tls_client_ca_file
            .clone()
            .map(|path| PemFile::new("TLS_CLIENT_CA_FILE", path));
        let tls = ServerTls::load(&config.server.tls, client_ca).map_err(ConfigError::from)?;
        let admin = Admin::bind("AUTH_METRICS_LISTEN_ADDR", config.metrics_listen_addr).await?;
        let mut db = service_db::open(
            "AUTH_DATABASE_URL",
            &config.database_url,
            &config.pool,
            |db| migrations::prepare::<AuthMigrator>(db, config.pool.migrate_on_start, "auth"),
        )
        .await?;
        admin.watch_database(&mut db);
        let metrics = AuthMetrics::new(admin.metrics());
        let rules = Rules::build(&config, db.clone(), Arc::clone(&clock), &metrics).await?;
        match config.tokens.jwt.signing_algorithm {
            SigningMode::EdDsa => tracing::info!(
                "signing access tokens with Ed25519 keys kept in the auth database (generated on first start)"
            ),
            SigningMode::Hs256 => {
                tracing::info!("signing access tokens with the shared HS256 secret")
            }
        }
        Ok(Self {
            config,
            listener,
            db,
            clock,
            rules,
            tls,
            admin,
            metrics,
        })
    }

    /// Where metrics are served (AUTH_METRICS_LISTEN_ADDR), if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether the server speaks TLS (`TLS_CERT_FILE`) rather than plaintext.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The use cases (for benchmarks and tests that call them directly).
    pub fn rules(&self) -> Rules {
        self.rules.clone()
    }

    /// Serves until `shutdown` completes, then drains and closes the database pool.
    #[tracing::instrument(name = "auth-service", skip_all)]
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StartError> {
        let Self {
            config,
            listener,
            db,
            clock,
            rules,
            tls,
            admin,
            metrics,
        } = self;
        let addr = listener.local_addr().unwrap_or(config.listen_addr);
        let transport = ServerTls::mode(tls.as_ref());
        tracing::info!(%addr, transport, "auth-service listening (gRPC + grpc-web)");
        let proxies = config.server.proxies.trusted();
        let public_keys = Arc::clone(&rules.public_keys);
        // The retention sweep, stopped when `run` returns.
        let _sweeper = AbortOnDrop(rules::spawn_sweeper(Arc::clone(&rules.retention)));
        // Account deletions to the task-service, stopped when `run` returns.
        let _deliveries = AbortOnDrop(rules.deliveries.spawn_worker());
        let server_metrics = admin.enabled().cloned();
        // The admin listener stops when `run` returns.
        let _admin = admin.spawn(std::future::pending());
        let api = AuthServiceServer::new(AuthApi::new(rules, proxies, clock, metrics))
            .max_decoding_message_size(config.server.max_request_bytes)
            .max_encoding_message_size(grpc_edge::server::MAX_RESPONSE_BYTES);
        GrpcServer::new(SERVICE_NAMES)?
            .with_metrics(server_metrics.as_ref())
            .add_service(api)
            .add_json_get(
                "/.well-known/jwks.json",
                grpc::KEYS_CACHE_SECONDS,
                move || {
                    let public_keys = Arc::clone(&public_keys);
                    async move {
                        grpc::jwks_json(&public_keys)
                            .await
                            .map_err(|e| e.to_string())
                    }
                },
            )
            .with_tls(tls)
            .watch_database(db)
            .await
            .serve(listener, &config.server, shutdown)
            .await?;
        Ok(())
    }
}
