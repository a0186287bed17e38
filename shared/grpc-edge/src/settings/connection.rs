//! Limits on what one client connection may hold: HTTP/2 keepalive, connection age, idle
//! time, and streaming RPCs (those anyone may open, and WatchTasks).

use clap::Args;
use std::time::Duration;

/// How long connections live and what they may hold open.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Seconds between HTTP/2 keepalive pings the server sends on a connection (0: none).
    #[arg(long, env = "HTTP2_KEEPALIVE_SECS", default_value_t = 30)]
    pub http2_keepalive_secs: u64,

    /// Seconds a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT_SECS", default_value_t = 10)]
    pub http2_keepalive_timeout_secs: u64,

    /// Seconds a connection with no RPC in flight stays open (0: until its maximum age).
    #[arg(long, env = "CONNECTION_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub connection_idle_timeout_secs: u64,

    /// Seconds after which a connection is asked to close (HTTP/2 GOAWAY; clients reconnect),
    /// so long-lived clients spread over new replicas (0: no limit).
    #[arg(long, env = "MAX_CONNECTION_AGE_SECS", default_value_t = 1800)]
    pub max_connection_age_secs: u64,

    /// Seconds RPCs still running at the maximum age may take before the connection is closed.
    #[arg(long, env = "MAX_CONNECTION_AGE_GRACE_SECS", default_value_t = 60)]
    pub max_connection_age_grace_secs: u64,

    /// Most open connections. When they are all open, a client holding fewer takes the place
    /// of an idle connection of the client holding the most; if every client holds about as
    /// many, the new connection is closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most open connections from one client address (IPv6: one /64); more are closed at
    /// once. Trusted proxies (TRUSTED_PROXIES) have no such bound.
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,

    /// Seconds a new connection may take to send its first bytes (the HTTP/2 preface, an
    /// HTTP/1.1 request or a TLS ClientHello) before it is closed.
    #[arg(long, env = "CONNECTION_PREFACE_TIMEOUT_SECS", default_value_t = 5)]
    pub connection_preface_timeout_secs: u64,

    /// Most streaming RPCs (health Watch, reflection) open at once on the server.
    #[arg(long, env = "MAX_STREAMING_RPCS", default_value_t = 1024)]
    pub max_streaming_rpcs: usize,

    /// Most streaming RPCs one client (address or IPv6 /64; behind a trusted proxy, the
    /// forwarded client) may have open at once, over all its connections.
    #[arg(long, env = "MAX_STREAMING_RPCS_PER_CLIENT", default_value_t = 32)]
    pub max_streaming_rpcs_per_client: usize,

    /// Most streaming RPCs open at once on one connection.
    #[arg(long, env = "MAX_STREAMING_RPCS_PER_CONNECTION", default_value_t = 16)]
    pub max_streaming_rpcs_per_connection: usize,

    /// Most WatchTasks streams (the task-service's live changes) open at once on the server:
    /// slots of their own, which health Watch and reflection streams cannot take.
    #[arg(long, env = "MAX_WATCH_STREAMS", default_value_t = 16_384)]
    pub max_watch_streams: usize,

    /// Most WatchTasks streams one client (address or IPv6 /64; behind a trusted proxy, the
    /// forwarded client) may have open at once, over all its connections and accounts.
    #[arg(long, env = "MAX_WATCH_STREAMS_PER_CLIENT", default_value_t = 32)]
    pub max_watch_streams_per_client: usize,

    /// Most WatchTasks streams open at once on one connection (a browser shares one HTTP/2
    /// connection per origin among its tabs; the web app keeps one stream per browser).
    #[arg(long, env = "MAX_WATCH_STREAMS_PER_CONNECTION", default_value_t = 16)]
    pub max_watch_streams_per_connection: usize,
}

impl ConnectionArgs {
    /// The keepalive ping interval, `None` when off.
    pub fn http2_keepalive(&self) -> Option<Duration> {
        positive_secs(self.http2_keepalive_secs)
    }

    /// How long a keepalive ping may go unanswered.
    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_timeout_secs)
    }

    /// How long a new connection may stay silent.
    pub fn preface_timeout(&self) -> Duration {
        Duration::from_secs(self.connection_preface_timeout_secs)
    }

    /// How long an idle connection stays open, `None` when unlimited.
    pub fn idle_timeout(&self) -> Option<Duration> {
        positive_secs(self.connection_idle_timeout_secs)
    }

    /// The maximum connection age, `None` when unlimited.
    pub fn max_connection_age(&self) -> Option<Duration> {
        positive_secs(self.max_connection_age_secs)
    }

    /// The grace after the maximum age.
    pub fn max_connection_age_grace(&self) -> Duration {
        Duration::from_secs(self.max_connection_age_grace_secs)
    }

    /// Settings that cannot work, each naming its variable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            problems.push(
                "MAX_CONNECTIONS and MAX_CONNECTIONS_PER_CLIENT must be at least 1".to_owned(),
            );
        }
        if self.connection_preface_timeout_secs == 0 {
            problems.push("CONNECTION_PREFACE_TIMEOUT_SECS must be at least 1".to_owned());
        }
        if self.max_streaming_rpcs == 0
            || self.max_streaming_rpcs_per_connection == 0
            || self.max_streaming_rpcs_per_client == 0
        {
            problems.push(
                "MAX_STREAMING_RPCS, MAX_STREAMING_RPCS_PER_CLIENT and \
                 MAX_STREAMING_RPCS_PER_CONNECTION must be at least 1 (health Watch and \
                 reflection are streaming RPCs)"
                    .to_owned(),
            );
        }
        if self.max_watch_streams == 0
            || self.max_watch_streams_per_client == 0
            || self.max_watch_streams_per_connection == 0
        {
            problems.push(
                "MAX_WATCH_STREAMS, MAX_WATCH_STREAMS_PER_CLIENT and \
                 MAX_WATCH_STREAMS_PER_CONNECTION must be at least 1"
                    .to_owned(),
            );
        }
        if self.http2_keepalive_secs > 0 && self.http2_keepalive_timeout_secs == 0 {
            problems.push(
                "HTTP2_KEEPALIVE_TIMEOUT_SECS must be at least 1 while HTTP2_KEEPALIVE_SECS is set"
                    .to_owned(),
            );
        }
        problems
    }
}

fn positive_secs(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}
