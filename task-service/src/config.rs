//! task-service configuration: flags with environment fallbacks (see `.env.example`).
//! Invalid values stop start-up with a message that says how to fix them.

use access_token::{JwtArgs, SecretString, WeakSharedSecret};
use clap::Parser;
use grpc_edge::{settings::InvalidServerArgs, settings::ServerArgs};
use service_db::PoolArgs;
use std::{net::SocketAddr, time::Duration};

/// Everything the task-service reads at start-up.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "task-service",
    version,
    about = "Each user's own tasks over gRPC, behind access-token verification"
)]
pub struct TaskConfig {
    /// Address to listen on (gRPC and grpc-web on the same port).
    #[arg(
        long,
        env = "TASK_LISTEN_ADDR",
        value_name = "TASK_LISTEN_ADDR",
        default_value = "127.0.0.1:50052",
        value_parser = |v: &str| grpc_edge::settings::listen_addr(v, 50052)
    )]
    pub listen_addr: SocketAddr,

    /// Where Prometheus scrapes this service's metrics (`GET /metrics`), e.g.
    /// 127.0.0.1:9465: an admin port of its own, never the gRPC port, so neither grpc-web nor
    /// a balancer exposes it by accident. Unset: no metrics are kept per call and none served.
    #[arg(
        long,
        env = "TASK_METRICS_LISTEN_ADDR",
        value_name = "TASK_METRICS_LISTEN_ADDR",
        value_parser = |v: &str| grpc_edge::settings::listen_addr(v, 9465)
    )]
    pub metrics_listen_addr: Option<SocketAddr>,

    /// Database URL: `sqlite://path/file.db` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "TASK_DATABASE_URL",
        default_value = "sqlite://data/tasks.db"
    )]
    pub database_url: String,

    /// The auth-service's gRPC address, for its public signing keys (and Introspect in
    /// strict mode).
    #[arg(
        long,
        env = "AUTH_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_service_url: String,

    /// With an https:// AUTH_SERVICE_URL: the only CA (PEM) trusted to have issued the
    /// auth-service's certificate. Unset: the system's CA certificates.
    #[arg(long, env = "AUTH_SERVICE_CA_FILE", value_name = "PATH")]
    pub auth_service_ca_file: Option<std::path::PathBuf>,

    /// With an https:// AUTH_SERVICE_URL: the client certificate (PEM) this service presents
    /// to the auth-service, for mutual TLS; with TLS_CLIENT_KEY_FILE. Read at start-up.
    #[arg(long, env = "TLS_CLIENT_CERT_FILE", value_name = "PATH")]
    pub tls_client_cert_file: Option<std::path::PathBuf>,

    /// The private key of TLS_CLIENT_CERT_FILE (PEM).
    #[arg(long, env = "TLS_CLIENT_KEY_FILE", value_name = "PATH")]
    pub tls_client_key_file: Option<std::path::PathBuf>,

    /// Also ask the auth-service (Introspect) about every request's token, so a signed-out
    /// session is refused at once rather than when its access token expires. Costs one
    /// auth-service RPC (and its database read) per task RPC.
    #[arg(long, env = "STRICT_SESSIONS", default_value_t = false)]
    pub strict_sessions: bool,

    /// Fewest seconds between two key fetches triggered by tokens naming an unknown key, so
    /// forged `kid`s cannot make this service hammer the auth-service.
    #[arg(long, env = "KEY_REFRESH_MIN_INTERVAL_SECS", default_value_t = 10)]
    pub key_refresh_min_interval_secs: u64,

    /// How many verified access tokens to remember, so a client's repeated calls with the
    /// same token skip the signature check (Ed25519: ~50 µs; a hit: ~1 µs). Expiry is still
    /// checked on every call and new signing keys empty it. 0 verifies every call.
    #[arg(long, env = "VERIFIED_TOKEN_CACHE_SIZE", default_value_t = 10_000)]
    pub verified_token_cache_size: usize,

    /// The most tasks one user may have; CreateTask past it answers RESOURCE_EXHAUSTED
    /// (`TASK_QUOTA_EXCEEDED`). 0: no limit.
    #[arg(long, env = "TASK_QUOTA", default_value_t = 10_000)]
    pub task_quota: u64,

    /// Most bytes of replies waiting for their clients to read them, all users together. A
    /// reply is charged its size until it has been sent; past this, calls answer
    /// RESOURCE_EXHAUSTED (`TOO_MANY_UNREAD_REPLIES`). Bounds what clients that ask and
    /// never read can make the service hold.
    #[arg(long, env = "MAX_UNREAD_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub max_unread_bytes: u64,

    /// The same, per user (at least the largest reply, 2 MiB).
    #[arg(long, env = "MAX_UNREAD_BYTES_PER_USER", default_value_t = 8 * 1024 * 1024)]
    pub max_unread_bytes_per_user: u64,

    /// Most bytes of ListTasks replies kept in memory, all users together, to answer a list
    /// again while none of its owner's tasks changed (checked on every call: a write of the
    /// user's tasks, through any replica, makes their next list read the database). The least
    /// recently used users' pages go first. 0 turns the cache off.
    #[arg(long, env = "LIST_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub list_cache_bytes: u64,

    /// The most of LIST_CACHE_BYTES one user's pages may take (at most 64 pages; their least
    /// recently used go first); a page larger than this is not kept.
    #[arg(long, env = "LIST_CACHE_BYTES_PER_USER", default_value_t = 2 * 1024 * 1024)]
    pub list_cache_bytes_per_user: u64,

    /// Key that signs ListTasks page tokens (any length; 32+ random bytes recommended).
    /// Replicas behind one load balancer need the same value; when unset, a random key is
    /// made at start-up and page tokens do not survive a restart.
    #[arg(long, env = "PAGE_TOKEN_SECRET", hide_env_values = true)]
    pub page_token_secret: Option<SecretString>,

    /// Address of the internal listener, where the auth-service asks for a deleted account's
    /// tasks to be purged (`todo.task.internal.v1.TaskAdmin`): native gRPC only (no grpc-web,
    /// no CORS), authenticated with the auth-service's service tokens. Keep it off the
    /// public network: do not publish it. Unset: no internal listener, and deleted accounts'
    /// tasks are not purged until it is set.
    #[arg(long, env = "INTERNAL_LISTEN_ADDR", value_name = "ADDR")]
    pub internal_listen_addr: Option<SocketAddr>,

    /// With TLS (TLS_CERT_FILE): the CA (PEM) that must have issued the client certificate
    /// of every caller of the internal listener (mutual TLS). Required with
    /// SIGNING_ALGORITHM=hs256, where this service holds the secret that signs service
    /// tokens and so could not tell the auth-service's from a forgery.
    #[arg(long, env = "INTERNAL_CLIENT_CA_FILE", value_name = "PATH")]
    pub internal_client_ca_file: Option<std::path::PathBuf>,

    /// How long a purged account is remembered, so that its access tokens that have not
    /// expired yet cannot create tasks again. At least the auth-service's
    /// ACCESS_TOKEN_TTL_SECS plus JWT_LEEWAY_SECS.
    #[arg(long, env = "TOMBSTONE_TTL_SECS", default_value_t = 86_400)]
    pub tombstone_ttl_secs: u32,

    /// Live changes (WatchTasks).
    #[command(flatten)]
    pub watch: WatchArgs,

    #[command(flatten)]
    pub jwt: JwtArgs,

    #[command(flatten)]
    pub pool: PoolArgs,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// WatchTasks: its streams and the change log they read.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Most WatchTasks streams one user may have open on one replica. The web app keeps one
    /// per browser whatever the number of tabs; each other device or browser takes one.
    #[arg(long, env = "WATCH_STREAMS_PER_USER", default_value_t = 16)]
    pub watch_streams_per_user: usize,

    /// Seconds between heartbeats (a message with no changes and the latest resume token) on
    /// a stream with nothing to send: keeps proxies from closing idle streams.
    #[arg(long, env = "WATCH_HEARTBEAT_SECS", default_value_t = 20)]
    pub watch_heartbeat_secs: u64,

    /// Seconds between re-reads of the change log by each stream, whatever the wake-ups
    /// say: the bound on how late a change can arrive when a wake-up was lost (PostgreSQL
    /// notifications are lost while the listener reconnects, and never arrive through
    /// PgBouncer in transaction mode).
    #[arg(long, env = "WATCH_POLL_SECS", default_value_t = 10)]
    pub watch_poll_secs: u64,

    /// Seconds a change stays in the log; a client resuming from an older token is told to
    /// list again (FAILED_PRECONDITION, RESUME_TOKEN_EXPIRED).
    #[arg(long, env = "WATCH_RETENTION_SECS", default_value_t = 3600)]
    pub watch_retention_secs: u64,

    /// Most changes kept per user, whatever their age (older ones are swept first).
    #[arg(long, env = "WATCH_RETAINED_CHANGES", default_value_t = 1000)]
    pub watch_retained_changes: u32,
}

impl WatchArgs {
    /// Settings that cannot work, each naming its variable.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.watch_streams_per_user == 0 {
            problems.push("WATCH_STREAMS_PER_USER must be at least 1".to_owned());
        }
        if !(1..=300).contains(&self.watch_heartbeat_secs) {
            problems.push(
                "WATCH_HEARTBEAT_SECS must be 1 to 300 (proxies close streams idle for \
                 60 s by default)"
                    .to_owned(),
            );
        }
        if !(1..=3600).contains(&self.watch_poll_secs) {
            problems.push("WATCH_POLL_SECS must be 1 to 3600".to_owned());
        }
        if !(60..=30 * 86_400).contains(&self.watch_retention_secs) {
            problems.push("WATCH_RETENTION_SECS must be 60 to 2592000 (30 days)".to_owned());
        }
        if self.watch_retained_changes == 0 {
            problems.push("WATCH_RETAINED_CHANGES must be at least 1".to_owned());
        }
        problems
    }

    /// Between heartbeats.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.watch_heartbeat_secs)
    }

    /// Between re-reads.
    pub fn poll(&self) -> Duration {
        Duration::from_secs(self.watch_poll_secs)
    }

    /// How long changes are kept.
    pub fn retention(&self) -> chrono::TimeDelta {
        let secs = i64::try_from(self.watch_retention_secs).unwrap_or(i64::MAX);
        chrono::TimeDelta::try_seconds(secs).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Watch settings that cannot work.
    #[error("{}", .0.join("; "))]
    Watch(Vec<String>),
    /// HS256 without a usable secret.
    #[error(transparent)]
    WeakSharedSecret(#[from] WeakSharedSecret),
    /// Server settings that cannot work.
    #[error(transparent)]
    Server(#[from] InvalidServerArgs),
    /// The auth-service address does not parse.
    #[error("AUTH_SERVICE_URL {0:?} is not a URL like http://127.0.0.1:50051")]
    AuthServiceUrl(String),
    /// TLS settings that cannot work.
    #[error(transparent)]
    Tls(#[from] grpc_edge::tls::TlsError),
    /// An internal listener that could be called by anyone holding the shared secret.
    #[error(
        "SIGNING_ALGORITHM=hs256 with INTERNAL_LISTEN_ADDR: this service holds the secret that \
         signs service tokens, so a token alone cannot prove the auth-service sent it; set \
         INTERNAL_CLIENT_CA_FILE (with TLS_CERT_FILE and TLS_KEY_FILE) so that only a client \
         certificate from that CA may call the internal listener, or unset INTERNAL_LISTEN_ADDR"
    )]
    SharedSecretInternalListener,
    /// Internal-listener settings without the listener.
    #[error(
        "INTERNAL_CLIENT_CA_FILE needs INTERNAL_LISTEN_ADDR: set it, or unset INTERNAL_CLIENT_CA_FILE"
    )]
    InternalCaWithoutListener,
    /// A tombstone that would be forgotten before the tokens it stops.
    #[error(
        "TOMBSTONE_TTL_SECS={0} is too short: at least 60, and at least the auth-service's ACCESS_TOKEN_TTL_SECS plus JWT_LEEWAY_SECS"
    )]
    TombstoneTtl(u32),
    /// An unread-replies budget that cannot work.
    #[error(
        "MAX_UNREAD_BYTES_PER_USER={per_user} must be at least {largest} (the largest reply) \
         and at most MAX_UNREAD_BYTES={total}"
    )]
    UnreadBudget {
        per_user: u64,
        total: u64,
        largest: usize,
    },
    /// A ListTasks cache share that cannot work.
    #[error(
        "LIST_CACHE_BYTES_PER_USER={per_user} must be at least 1 and at most \
         LIST_CACHE_BYTES={total} (LIST_CACHE_BYTES=0 turns the cache off)"
    )]
    ListCache { per_user: u64, total: u64 },
}

impl TaskConfig {
    /// Checks what clap's types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let hs256 = self.jwt.hs256_secret()?.is_some();
        match (&self.internal_listen_addr, &self.internal_client_ca_file) {
            (Some(_), None) if hs256 => return Err(ConfigError::SharedSecretInternalListener),
            (None, Some(_)) => return Err(ConfigError::InternalCaWithoutListener),
            _ => {}
        }
        if self.tombstone_ttl_secs < 60 {
            return Err(ConfigError::TombstoneTtl(self.tombstone_ttl_secs));
        }
        let problems = self.watch.problems();
        if !problems.is_empty() {
            return Err(ConfigError::Watch(problems));
        }
        self.server.validate()?;
        let uri: http::Uri = self
            .auth_service_url
            .parse()
            .map_err(|_| ConfigError::AuthServiceUrl(self.auth_service_url.clone()))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(ConfigError::AuthServiceUrl(self.auth_service_url.clone()));
        }
        self.auth_tls()?
            .check_url("AUTH_SERVICE_URL", &self.auth_service_url)?;
        let largest = grpc_edge::server::MAX_RESPONSE_BYTES;
        if self.max_unread_bytes_per_user < largest as u64
            || self.max_unread_bytes_per_user > self.max_unread_bytes
        {
            return Err(ConfigError::UnreadBudget {
                per_user: self.max_unread_bytes_per_user,
                total: self.max_unread_bytes,
                largest,
            });
        }
        if self.list_cache_bytes > 0
            && !(1..=self.list_cache_bytes).contains(&self.list_cache_bytes_per_user)
        {
            return Err(ConfigError::ListCache {
                per_user: self.list_cache_bytes_per_user,
                total: self.list_cache_bytes,
            });
        }
        Ok(())
    }

    /// How long a purged account is remembered.
    pub fn tombstone_ttl(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.tombstone_ttl_secs.into())
    }

    /// How the channel to the auth-service verifies it and, for mutual TLS, proves who this
    /// service is.
    pub fn auth_tls(&self) -> Result<grpc_edge::tls::ClientTls, grpc_edge::tls::TlsError> {
        grpc_edge::tls::ClientTls::new(
            [
                "AUTH_SERVICE_CA_FILE",
                "TLS_CLIENT_CERT_FILE",
                "TLS_CLIENT_KEY_FILE",
            ],
            self.auth_service_ca_file.clone(),
            self.tls_client_cert_file.clone(),
            self.tls_client_key_file.clone(),
        )
    }

    /// The configuration with every default (none read from the environment), listening on
    /// `listen_addr`, using `database_url`, and fetching keys from the auth-service at
    /// `auth_service_url`; for tests and benchmarks.
    pub fn for_database(
        listen_addr: SocketAddr,
        database_url: &str,
        auth_service_url: &str,
    ) -> Self {
        let mut config = grpc_edge::settings::defaults(env!("CARGO_PKG_NAME"))
            .unwrap_or_else(|| Self::parse_from(["task-service"]));
        config.listen_addr = listen_addr;
        config.database_url = database_url.to_owned();
        config.auth_service_url = auth_service_url.to_owned();
        config
    }

    /// Minimum time between key fetches triggered by unknown `kid`s.
    pub fn key_refresh_min_interval(&self) -> Duration {
        Duration::from_secs(self.key_refresh_min_interval_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskConfig;

    #[test]
    fn every_default_parses_without_reading_the_environment() {
        let config: Option<TaskConfig> = grpc_edge::settings::defaults("task-service");
        assert!(config.is_some_and(|c| c.validate().is_ok()));
    }

    #[test]
    fn an_unread_budget_below_the_largest_reply_or_above_the_total_is_refused_by_name() {
        let mut config = TaskConfig::for_database(
            "127.0.0.1:0".parse().unwrap(),
            "sqlite::memory:",
            "http://127.0.0.1:1",
        );
        config.max_unread_bytes_per_user = 1024;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("MAX_UNREAD_BYTES_PER_USER=1024"), "{error}");
        config.max_unread_bytes_per_user = config.max_unread_bytes + 1;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("at most MAX_UNREAD_BYTES="), "{error}");
    }

    #[test]
    fn in_hs256_mode_the_internal_listener_needs_a_client_ca() {
        use access_token::SigningMode;
        let mut config = TaskConfig::for_database(
            "127.0.0.1:0".parse().unwrap(),
            "sqlite::memory:",
            "http://127.0.0.1:1",
        );
        config.jwt.signing_algorithm = SigningMode::Hs256;
        config.jwt.shared_secret = Some("a shared secret that is long enough for HS256".into());
        config.internal_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("INTERNAL_CLIENT_CA_FILE"), "{error}");
        assert!(error.contains("INTERNAL_LISTEN_ADDR"), "{error}");
        // With a client CA it may start (TLS is then required, as for any client CA).
        config.internal_client_ca_file = Some("certs/ca.pem".into());
        assert!(config.validate().is_ok());
        // Without the listener, the CA means nothing: refused by name.
        config.internal_listen_addr = None;
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("INTERNAL_CLIENT_CA_FILE needs INTERNAL_LISTEN_ADDR"),
            "{error}"
        );
        // EdDSA: the service token alone is enough.
        config.jwt.signing_algorithm = SigningMode::EdDsa;
        config.internal_client_ca_file = None;
        config.internal_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_list_cache_share_above_the_cache_is_refused_by_name_unless_the_cache_is_off() {
        let mut config = TaskConfig::for_database(
            "127.0.0.1:0".parse().unwrap(),
            "sqlite::memory:",
            "http://127.0.0.1:1",
        );
        config.list_cache_bytes = 1024;
        config.list_cache_bytes_per_user = 2048;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("LIST_CACHE_BYTES_PER_USER=2048"), "{error}");
        assert!(error.contains("LIST_CACHE_BYTES=1024"), "{error}");
        config.list_cache_bytes = 0;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_tombstone_shorter_than_a_minute_is_refused_by_name() {
        let mut config = TaskConfig::for_database(
            "127.0.0.1:0".parse().unwrap(),
            "sqlite::memory:",
            "http://127.0.0.1:1",
        );
        config.tombstone_ttl_secs = 10;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("TOMBSTONE_TTL_SECS=10"), "{error}");
    }

    #[test]
    fn a_bad_listen_address_is_refused_naming_the_setting_and_this_services_port() {
        use clap::Parser;
        let error = TaskConfig::try_parse_from(["task-service", "--listen-addr", "not-an-addr"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("TASK_LISTEN_ADDR"), "{error}");
        assert!(error.contains("127.0.0.1:50052"), "{error}");
        assert!(!error.contains("50051"), "{error}");
    }
}
