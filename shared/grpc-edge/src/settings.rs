//! Settings of the gRPC edge every service shares: TLS, network limits, CORS, shutdown, logging.
//! Flattened into each service's own clap parser; each flag falls back to an environment
//! variable of the same name (see `.env.example`).
//!
//! # What a client may make a service hold or spend
//!
//! The README's "Limits" table, with where each bound is set and enforced. A client is an
//! IPv4 address or an IPv6 /64 ([`crate::client_address::ClientKey`]); behind a trusted proxy
//! ([`ProxyArgs`]), the forwarded client.
//!
//! | resource | in all / per client | set in | enforced in |
//! |---|---|---|---|
//! | connections | `MAX_CONNECTIONS` / `MAX_CONNECTIONS_PER_CLIENT`, fair eviction when full | [`ConnectionArgs`] | `server::connections` (admission) |
//! | silent connections, TLS handshakes | `CONNECTION_PREFACE_TIMEOUT_SECS`; 5 s handshakes | [`ConnectionArgs`] | `server::connections` (`Tracked`), `server::tls` |
//! | idle connections | `CONNECTION_IDLE_TIMEOUT_SECS`, keepalive, `MAX_CONNECTION_AGE_SECS` | [`ConnectionArgs`] | `server::connections`, hyper |
//! | HTTP/2 streams, resets | `MAX_CONCURRENT_STREAMS`; 1,024 resets, 20 pending | [`ServerArgs`], `server` | hyper / h2 |
//! | streaming RPCs anyone may open | `MAX_STREAMING_RPCS` / `_PER_CLIENT` / `_PER_CONNECTION` | [`ConnectionArgs`] | `server::connections::layer` |
//! | WatchTasks streams | `MAX_WATCH_STREAMS` / `_PER_CLIENT` / `_PER_CONNECTION`; `WATCH_STREAMS_PER_USER` | [`ConnectionArgs`]; task-service config | `server::connections::layer`; task-service `rules::watch` |
//! | what a stream holds for a client that does not read | one message being made (≤ 64 KiB, charged as unread replies) and one handed to HTTP/2 (within `MAX_UNWRITTEN_BYTES`) | — | task-service `grpc` (`Producer`) |
//! | change log rows | `WATCH_RETENTION_SECS`, `WATCH_RETAINED_CHANGES` | task-service config | task-service `store::changes` |
//! | header bytes | 16 KiB, HTTP/2 and HTTP/1.1 | `server` | h2; `server::http1` (431) |
//! | message bytes | `MAX_REQUEST_BYTES`, every message of every service; replies 2 MiB | [`ServerArgs`] | `server::limits`, tonic |
//! | unread reply bytes | `MAX_UNREAD_BYTES` / `_PER_USER`, max-min fair | task-service config | task-service `grpc::unread` |
//! | ListTasks replies kept in memory | `LIST_CACHE_BYTES` / `_PER_USER` and 64 pages per user, least recently used users first | task-service config | task-service `rules::page_cache` |
//! | writes under way (SQLite, cache on) | 256 / 32 per user; more wait | task-service `rules::page_cache` | task-service `rules::page_cache` (`Freshness::write`) |
//! | hashing queue, CPU | `HASH_QUEUE_MAX` / `HASH_QUEUE_PER_CLIENT`, `MAX_CONCURRENT_HASHES` | auth-service config | auth-service `rules::password` |
//! | sign-in guesses (also ChangePassword's), sign-ups | `THROTTLE_*` | auth-service config | auth-service `rules::throttle` |
//! | sessions (and ListSessions), refresh tokens | `MAX_SESSIONS_PER_USER`, `REFRESH_MIN_INTERVAL_MS`; user agents 256 characters | auth-service config, `domain` | auth-service `rules::sessions`, `domain::Device` |
//! | tasks | `TASK_QUOTA` | task-service config | task-service `rules::tasks` |
//! | log lines | one per RPC, method names only | — | `telemetry` |
//! | metric series, scrapes | fixed label sets (unknown methods are `other`); 8 scrapes at once, 10 s each | `*_METRICS_LISTEN_ADDR` (services' config) | `metrics` |
//! | exported spans | the OpenTelemetry SDK's batch queue (2,048; dropped past it) | `OTEL_*` | `telemetry` |

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

/// Parses a listen address, with an error that shows what a valid one looks like, using the
/// service's own default `port` in the examples.
pub fn listen_addr(value: &str, port: u16) -> Result<std::net::SocketAddr, String> {
    value.trim().parse().map_err(|_| {
        format!(
            "expected HOST:PORT with an IP address, e.g. 127.0.0.1:{port} (this machine only), \
             0.0.0.0:{port} (every interface) or [::1]:{port}; port 0 picks any free port"
        )
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

    /// Which peers are reverse proxies, and the header they say the client in.
    #[command(flatten)]
    pub proxies: ProxyArgs,
}

/// The reverse proxies in front of the service.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Reverse proxies (comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8) whose `Forwarded` /
    /// `X-Forwarded-For` headers say who the client is. Their connections carry many clients:
    /// they have no per-client connection bound, and what is charged per client (streams,
    /// sign-in throttling, hashing turns) goes to the forwarded client. Empty: the TCP peer is
    /// the client, and forwarding headers are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::client_address::ProxyNetwork>,

    /// The one header the trusted proxies append the client to: `x-forwarded-for` or
    /// `forwarded` (RFC 7239). The other is ignored (a client may have written it).
    #[arg(
        long,
        env = "TRUSTED_PROXY_HEADER",
        value_enum,
        default_value_t = crate::client_address::ForwardingHeader::XForwardedFor
    )]
    pub trusted_proxy_header: crate::client_address::ForwardingHeader,
}

impl ProxyArgs {
    /// The trusted proxies these settings describe.
    pub fn trusted(&self) -> crate::client_address::TrustedProxies {
        crate::client_address::TrustedProxies::new(
            self.trusted_proxies.clone(),
            self.trusted_proxy_header,
        )
    }
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
