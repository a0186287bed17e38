//! auth-service configuration: flags with environment fallbacks (see `.env.example`).
//! Invalid combinations stop start-up with a message that says how to fix them.

use access_token::{JwtArgs, WeakSharedSecret};
use chrono::TimeDelta;
use clap::{Args, Parser};
use grpc_edge::{settings::InvalidServerArgs, settings::ServerArgs};
use service_db::PoolArgs;
use std::net::SocketAddr;

pub use access_token::SigningMode;

/// Everything the auth-service reads at start-up.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "auth-service",
    version,
    about = "Accounts, sessions and JWTs over gRPC"
)]
pub struct AuthConfig {
    /// Address to listen on (gRPC and grpc-web on the same port).
    #[arg(
        long,
        env = "AUTH_LISTEN_ADDR",
        value_name = "AUTH_LISTEN_ADDR",
        default_value = "127.0.0.1:50051",
        value_parser = |v: &str| grpc_edge::settings::listen_addr(v, 50051)
    )]
    pub listen_addr: SocketAddr,

    /// Where Prometheus scrapes this service's metrics (`GET /metrics`), e.g.
    /// 127.0.0.1:9464: an admin port of its own, never the gRPC port, so neither grpc-web nor
    /// a balancer exposes it by accident. Unset: no metrics are kept per call and none served.
    #[arg(
        long,
        env = "AUTH_METRICS_LISTEN_ADDR",
        value_name = "AUTH_METRICS_LISTEN_ADDR",
        value_parser = |v: &str| grpc_edge::settings::listen_addr(v, 9464)
    )]
    pub metrics_listen_addr: Option<SocketAddr>,

    /// Database URL: `sqlite://path/file.db` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "AUTH_DATABASE_URL",
        default_value = "sqlite://data/auth.db"
    )]
    pub database_url: String,

    #[command(flatten)]
    pub pool: PoolArgs,

    #[command(flatten)]
    pub server: ServerArgs,

    /// Mutual TLS: require every client to present a certificate issued by this CA (PEM).
    /// Needs TLS_CERT_FILE and TLS_KEY_FILE. Browsers then cannot call this service directly:
    /// for deployments where only other services reach it.
    #[arg(long, env = "TLS_CLIENT_CA_FILE", value_name = "PATH")]
    pub tls_client_ca_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub tokens: TokenArgs,

    #[command(flatten)]
    pub passwords: PasswordArgs,

    #[command(flatten)]
    pub throttle: ThrottleArgs,

    #[command(flatten)]
    pub deletions: DeletionArgs,
}

/// Where deleted accounts' tasks are purged, and how.
#[derive(Debug, Clone, Args)]
pub struct DeletionArgs {
    /// The task-service's internal listener (its INTERNAL_LISTEN_ADDR), e.g.
    /// `http://127.0.0.1:50053`, or `https://…` when it serves TLS. Deleted accounts' tasks
    /// are purged there. Unset: deletions are recorded and wait until it is set.
    #[arg(long, env = "TASK_INTERNAL_URL")]
    pub task_internal_url: Option<String>,

    /// With an https:// TASK_INTERNAL_URL: the only CA (PEM) trusted to have issued the
    /// task-service's certificate. Unset: the system's CA certificates.
    #[arg(long, env = "TASK_INTERNAL_CA_FILE", value_name = "PATH")]
    pub task_internal_ca_file: Option<std::path::PathBuf>,

    /// With an https:// TASK_INTERNAL_URL: the client certificate (PEM) presented to the
    /// task-service's internal listener (its INTERNAL_CLIENT_CA_FILE must have issued it);
    /// with INTERNAL_CLIENT_KEY_FILE.
    #[arg(long, env = "INTERNAL_CLIENT_CERT_FILE", value_name = "PATH")]
    pub internal_client_cert_file: Option<std::path::PathBuf>,

    /// The private key of INTERNAL_CLIENT_CERT_FILE (PEM).
    #[arg(long, env = "INTERNAL_CLIENT_KEY_FILE", value_name = "PATH")]
    pub internal_client_key_file: Option<std::path::PathBuf>,

    /// The longest wait between two deliveries of one deletion to the task-service (waits
    /// double from 1 s up to this).
    #[arg(long, env = "DELETION_RETRY_MAX_SECS", default_value_t = 60)]
    pub deletion_retry_max_secs: u32,
}

impl DeletionArgs {
    /// How the channel to the task-service's internal listener verifies it and proves who
    /// this service is.
    pub fn client_tls(&self) -> Result<grpc_edge::tls::ClientTls, grpc_edge::tls::TlsError> {
        grpc_edge::tls::ClientTls::new(
            [
                "TASK_INTERNAL_CA_FILE",
                "INTERNAL_CLIENT_CERT_FILE",
                "INTERNAL_CLIENT_KEY_FILE",
            ],
            self.task_internal_ca_file.clone(),
            self.internal_client_cert_file.clone(),
            self.internal_client_key_file.clone(),
        )
    }
}

/// Token lifetimes and signing.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Issuer, audience, leeway and signing mode, shared with the task-service.
    #[command(flatten)]
    pub jwt: JwtArgs,

    /// Access-token lifetime, in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECS", default_value_t = 15 * 60)]
    pub access_token_ttl_secs: u32,

    /// Session lifetime (a refresh token works until its session ends), in seconds.
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 30 * 24 * 60 * 60)]
    pub session_ttl_secs: u32,

    /// Concurrent refreshes of one token within this many seconds get the same new pair.
    #[arg(long, env = "REFRESH_GRACE_SECS", default_value_t = 10)]
    pub refresh_grace_secs: u32,

    /// The least time between two exchanges of one session's refresh token, in milliseconds;
    /// a sooner one answers RESOURCE_EXHAUSTED (`TOO_MANY_REQUESTS`) with RetryInfo.
    /// Concurrent refreshes of the same token are replays, not exchanges, and are not limited.
    #[arg(long, env = "REFRESH_MIN_INTERVAL_MS", default_value_t = 1000)]
    pub refresh_min_interval_ms: u32,

    /// The most sessions one user keeps (sign-ins, each with its refresh token); a sign-in
    /// past it ends the user's oldest sessions, so no account can fill the sessions table.
    #[arg(long, env = "MAX_SESSIONS_PER_USER", default_value_t = 100)]
    pub max_sessions_per_user: u32,

    /// How long one Ed25519 key signs before a new one takes over, in seconds. The old key
    /// keeps verifying until the last token it signed has expired.
    #[arg(long, env = "KEY_ROTATION_SECS", default_value_t = 7 * 24 * 60 * 60)]
    pub key_rotation_secs: u32,
}

impl TokenArgs {
    /// Access-token lifetime.
    pub fn access_ttl(&self) -> TimeDelta {
        TimeDelta::seconds(self.access_token_ttl_secs.into())
    }

    /// Session lifetime.
    pub fn session_ttl(&self) -> TimeDelta {
        TimeDelta::seconds(self.session_ttl_secs.into())
    }

    /// Refresh grace window.
    pub fn refresh_grace(&self) -> TimeDelta {
        TimeDelta::seconds(self.refresh_grace_secs.into())
    }

    /// Least time between two exchanges of one session's refresh token.
    pub fn refresh_min_interval(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.refresh_min_interval_ms.into())
    }

    /// Key rotation interval.
    pub fn key_rotation(&self) -> TimeDelta {
        TimeDelta::seconds(self.key_rotation_secs.into())
    }

    /// Leeway as a duration.
    pub fn leeway(&self) -> TimeDelta {
        TimeDelta::seconds(self.jwt.jwt_leeway_secs.into())
    }
}

/// Password hashing.
#[derive(Debug, Clone, Args)]
pub struct PasswordArgs {
    /// argon2id memory cost, KiB (OWASP: 19456).
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = argon2::Params::DEFAULT_M_COST)]
    pub argon2_memory_kib: u32,

    /// argon2id iterations (OWASP: 2).
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = argon2::Params::DEFAULT_T_COST)]
    pub argon2_iterations: u32,

    /// argon2id parallelism (OWASP: 1).
    #[arg(long, env = "ARGON2_PARALLELISM", default_value_t = argon2::Params::DEFAULT_P_COST)]
    pub argon2_parallelism: u32,

    /// Most password hashes computed at once (default: one less than the number of CPUs, at
    /// least one, so hashing never takes every core from the other RPCs). Each keeps
    /// ARGON2_MEMORY_KIB of working memory once used; further sign-ins wait their turn.
    #[arg(long, env = "MAX_CONCURRENT_HASHES")]
    pub max_concurrent_hashes: Option<usize>,

    /// Most sign-ups/sign-ins one client address (IPv6: its /64) may have waiting for a hash,
    /// in each of the two lines (sign-ins from an account's known addresses, served first;
    /// everything else); more are refused at once (RESOURCE_EXHAUSTED with RetryInfo).
    /// Waiting clients are served in turn, so one client's flood cannot starve the others.
    #[arg(long, env = "HASH_QUEUE_PER_CLIENT", default_value_t = 4)]
    pub hash_queue_per_client: usize,

    /// Most sign-ups/sign-ins waiting for a hash in all, in each line; more are refused at once.
    #[arg(long, env = "HASH_QUEUE_MAX", default_value_t = 256)]
    pub hash_queue_max: usize,

    /// Longest a sign-up/sign-in waits for a hash before it is refused, in milliseconds.
    #[arg(long, env = "HASH_QUEUE_MAX_WAIT_MS", default_value_t = 5000)]
    pub hash_queue_max_wait_ms: u64,
}

impl PasswordArgs {
    /// The argon2id parameters these settings describe.
    pub fn argon2_params(&self) -> Result<argon2::Params, argon2::Error> {
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
    }

    /// How many password hashes may run at once: `MAX_CONCURRENT_HASHES`, or one less than
    /// the number of CPUs (at least one).
    pub fn concurrent_hashes(&self) -> usize {
        self.max_concurrent_hashes.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(2, usize::from);
            cpus.saturating_sub(1).max(1)
        })
    }
}

/// Sign-in throttling.
#[derive(Debug, Clone, Args)]
pub struct ThrottleArgs {
    /// Turn sign-in throttling off (it is on by default).
    #[arg(long, env = "THROTTLE_DISABLED", default_value_t = false)]
    pub throttle_disabled: bool,

    /// Failed sign-ins an account may have before delays start.
    #[arg(long, env = "THROTTLE_FREE_ATTEMPTS", default_value_t = 5)]
    pub throttle_free_attempts: u32,

    /// First delay after the free attempts, in seconds; doubles with each further failure.
    #[arg(long, env = "THROTTLE_BASE_DELAY_SECS", default_value_t = 2)]
    pub throttle_base_delay_secs: u32,

    /// Longest delay per account, in seconds.
    #[arg(long, env = "THROTTLE_MAX_DELAY_SECS", default_value_t = 15 * 60)]
    pub throttle_max_delay_secs: u32,

    /// Failed sign-ins one client address may make per window before it is blocked.
    #[arg(long, env = "THROTTLE_ADDRESS_MAX_FAILURES", default_value_t = 100)]
    pub throttle_address_max_failures: u32,

    /// The per-address window, in seconds.
    #[arg(long, env = "THROTTLE_ADDRESS_WINDOW_SECS", default_value_t = 15 * 60)]
    pub throttle_address_window_secs: u32,

    /// Failed sign-ins per account per day, from all addresses together, after which the
    /// account is closed for THROTTLE_MAX_DELAY_SECS to every address except those it signed
    /// in from in the last 30 days (so guessing from elsewhere cannot lock the owner out).
    #[arg(long, env = "THROTTLE_ACCOUNT_MAX_FAILURES", default_value_t = 50)]
    pub throttle_account_max_failures: u32,

    /// Sign-ups one client address may make per THROTTLE_SIGNUP_WINDOW_SECS, successful or
    /// not (each costs a password hash); then it waits for the window to pass.
    #[arg(long, env = "THROTTLE_SIGNUP_MAX_PER_ADDRESS", default_value_t = 20)]
    pub throttle_signup_max_per_address: u32,

    /// The sign-up window, in seconds.
    #[arg(long, env = "THROTTLE_SIGNUP_WINDOW_SECS", default_value_t = 60 * 60)]
    pub throttle_signup_window_secs: u32,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// HS256 without a usable secret.
    #[error(transparent)]
    WeakSharedSecret(#[from] WeakSharedSecret),
    /// Server settings that cannot work.
    #[error(transparent)]
    Server(#[from] InvalidServerArgs),
    /// A value out of range.
    #[error("{0}")]
    OutOfRange(String),
    /// TLS settings that cannot work.
    #[error(transparent)]
    Tls(#[from] grpc_edge::tls::TlsError),
}

impl AuthConfig {
    /// Checks what clap's types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.tokens;
        t.jwt.hs256_secret()?;
        self.server.validate()?;
        let positive = [
            ("ACCESS_TOKEN_TTL_SECS", t.access_token_ttl_secs),
            ("SESSION_TTL_SECS", t.session_ttl_secs),
            ("KEY_ROTATION_SECS", t.key_rotation_secs),
            (
                "THROTTLE_FREE_ATTEMPTS",
                self.throttle.throttle_free_attempts,
            ),
            (
                "THROTTLE_ADDRESS_MAX_FAILURES",
                self.throttle.throttle_address_max_failures,
            ),
            (
                "THROTTLE_ADDRESS_WINDOW_SECS",
                self.throttle.throttle_address_window_secs,
            ),
            (
                "THROTTLE_ACCOUNT_MAX_FAILURES",
                self.throttle.throttle_account_max_failures,
            ),
            (
                "THROTTLE_SIGNUP_MAX_PER_ADDRESS",
                self.throttle.throttle_signup_max_per_address,
            ),
            (
                "THROTTLE_SIGNUP_WINDOW_SECS",
                self.throttle.throttle_signup_window_secs,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::OutOfRange(format!(
                "{name} must be greater than 0"
            )));
        }
        if t.session_ttl_secs < t.access_token_ttl_secs {
            return Err(ConfigError::OutOfRange(
                "SESSION_TTL_SECS must be at least ACCESS_TOKEN_TTL_SECS".into(),
            ));
        }
        if self.passwords.max_concurrent_hashes == Some(0) {
            return Err(ConfigError::OutOfRange(
                "MAX_CONCURRENT_HASHES must be greater than 0".into(),
            ));
        }
        if self.tls_client_ca_file.is_some() && !self.server.tls.enabled() {
            return Err(ConfigError::OutOfRange(
                "TLS_CLIENT_CA_FILE needs TLS: set TLS_CERT_FILE and TLS_KEY_FILE too, or unset \
                 TLS_CLIENT_CA_FILE"
                    .into(),
            ));
        }
        self.passwords
            .argon2_params()
            .map_err(|e| ConfigError::OutOfRange(format!("invalid argon2 parameters: {e}")))?;
        if self.deletions.deletion_retry_max_secs == 0 {
            return Err(ConfigError::OutOfRange(
                "DELETION_RETRY_MAX_SECS must be greater than 0".into(),
            ));
        }
        if let Some(url) = &self.deletions.task_internal_url {
            self.deletions
                .client_tls()?
                .check_url("TASK_INTERNAL_URL", url)?;
        }
        Ok(())
    }

    /// The configuration with every default (none read from the environment), listening on
    /// `listen_addr`, using `database_url`; for tests and benchmarks.
    pub fn for_database(listen_addr: SocketAddr, database_url: &str) -> Self {
        let mut config = grpc_edge::settings::defaults(env!("CARGO_PKG_NAME"))
            .unwrap_or_else(|| Self::parse_from(["auth-service"]));
        config.listen_addr = listen_addr;
        config.database_url = database_url.to_owned();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::AuthConfig;

    #[test]
    fn every_default_parses_without_reading_the_environment() {
        let config: Option<AuthConfig> = grpc_edge::settings::defaults("auth-service");
        assert!(config.is_some_and(|c| c.validate().is_ok()));
    }

    #[test]
    fn a_bad_listen_address_is_refused_naming_the_setting_and_this_services_port() {
        use clap::Parser;
        let error = AuthConfig::try_parse_from(["auth-service", "--listen-addr", "not-an-addr"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("AUTH_LISTEN_ADDR"), "{error}");
        assert!(error.contains("127.0.0.1:50051"), "{error}");
        assert!(!error.contains("50052"), "{error}");
    }
}
