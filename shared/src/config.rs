//! Settings every service shares: network limits, CORS, shutdown, logging, database pool.
//! Flattened into each service's own clap parser; each flag falls back to an environment
//! variable of the same name (see `.env.example`).

use crate::token::{MIN_SHARED_SECRET_BYTES, TokenVerifier};
use clap::{Args, ValueEnum};
use std::time::Duration;

mod connection;

pub use connection::ConnectionArgs;

/// A configuration with every default and nothing from the process environment (tests and
/// the launcher set what they need on the value), so a variable exported in a developer's
/// shell cannot change a test. `None` when a default does not parse, a bug that the
/// services' own tests catch.
pub fn defaults<C: clap::Parser>(bin: &str) -> Option<C> {
    let command = C::command().mut_args(|arg| arg.env(None));
    let matches = command.try_get_matches_from([bin]).ok()?;
    C::from_arg_matches(&matches).ok()
}

/// Parses a listen address, with an error that shows what a valid one looks like.
pub fn listen_addr(value: &str) -> Result<std::net::SocketAddr, String> {
    value.trim().parse().map_err(|_| {
        "expected HOST:PORT with an IP address, e.g. 127.0.0.1:50051 (this machine only), \
         0.0.0.0:50051 (every interface) or [::1]:50051; port 0 picks any free port"
            .to_owned()
    })
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the gRPC server itself.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TLS on the port (off by default).
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,

    /// Browser origins allowed to call over grpc-web (comma-separated; `*` allows any).
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:5173,http://127.0.0.1:5173"
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Largest accepted request message, in bytes.
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,

    /// Most RPCs served at once on one connection (HTTP/2 concurrent streams).
    #[arg(long, env = "MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,

    /// Longest an RPC may run before it is cancelled, in seconds.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// On SIGINT/SIGTERM, how long in-flight RPCs may finish before connections are closed.
    #[arg(long, env = "SHUTDOWN_DRAIN_SECS", default_value_t = 10)]
    pub shutdown_drain_secs: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Connection lifetime and streaming limits.
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Server settings that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InvalidServerArgs(pub Vec<String>);

impl ServerArgs {
    /// Refuses settings that cannot work, naming each variable.
    pub fn validate(&self) -> Result<(), InvalidServerArgs> {
        let mut problems = self.connections.problems();
        if self.max_concurrent_streams == 0 {
            problems.push("MAX_CONCURRENT_STREAMS must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidServerArgs(problems))
        }
    }

    /// Per-RPC timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Bounded drain time on shutdown.
    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_secs)
    }
}

/// How access tokens are signed (and so how they are verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SigningMode {
    /// Ed25519 keys kept by the auth-service, rotated on a schedule; public keys published.
    #[default]
    #[value(name = "eddsa")]
    EdDsa,
    /// One shared secret (HS256), the original design's `BETTER_AUTH_SECRET`.
    #[value(name = "hs256")]
    Hs256,
}

/// What both services must agree on about access tokens: who issues them, for whom, how
/// they are signed. Set the same values for both services.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// `iss` of every access token.
    #[arg(long, env = "JWT_ISSUER", default_value = "todo-auth")]
    pub jwt_issuer: String,

    /// `aud` of every access token.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "todo-api")]
    pub jwt_audience: String,

    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u32,

    /// `eddsa` (default) or `hs256`.
    #[arg(long, env = "SIGNING_ALGORITHM", value_enum, default_value_t = SigningMode::EdDsa)]
    pub signing_algorithm: SigningMode,

    /// Shared HS256 secret (at least 32 bytes); required when SIGNING_ALGORITHM=hs256.
    #[arg(long, env = "BETTER_AUTH_SECRET", hide_env_values = true)]
    pub shared_secret: Option<Secret>,
}

/// HS256 without a usable secret.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "SIGNING_ALGORITHM=hs256 needs BETTER_AUTH_SECRET of at least {MIN_SHARED_SECRET_BYTES} bytes \
     (e.g. `openssl rand -base64 48`); or leave SIGNING_ALGORITHM unset for Ed25519 keys"
)]
pub struct WeakSharedSecret;

impl JwtArgs {
    /// A verifier for tokens with this issuer and audience.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(&self.jwt_issuer, &self.jwt_audience, self.jwt_leeway_secs)
    }

    /// The shared secret of HS256 mode, checked for length; `None` in EdDSA mode.
    pub fn hs256_secret(&self) -> Result<Option<&[u8]>, WeakSharedSecret> {
        match self.signing_algorithm {
            SigningMode::EdDsa => Ok(None),
            SigningMode::Hs256 => match &self.shared_secret {
                Some(secret) if secret.expose().len() >= MIN_SHARED_SECRET_BYTES => {
                    Ok(Some(secret.expose().as_bytes()))
                }
                _ => Err(WeakSharedSecret),
            },
        }
    }
}

/// Settings of the database connection pool.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Most open database connections (default: 16 on PostgreSQL; on SQLite four per CPU,
    /// 2 to 16: each SQLite connection is a thread of its own; four per core measured best,
    /// BENCHMARKS.md).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,

    /// How long an RPC waits for a free connection before failing with UNAVAILABLE, in seconds.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_SECS", default_value_t = 5)]
    pub database_acquire_timeout_secs: u64,

    /// Migrate the schema at start-up (`true`), or only check that `migrate` has (`false`:
    /// for a database role that may read and write rows but not change the schema).
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
}

/// A secret setting (e.g. a shared signing secret): never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: use it, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}
