//! Command-line options.

use clap::{Parser, ValueEnum};
use std::time::Duration;

/// Starts the auth-service and the task-service in this process (SQLite files in a temporary
/// directory, or fresh PostgreSQL databases) and drives them over gRPC with N RPCs in flight.
#[derive(Debug, Clone, Parser)]
#[command(name = "load-bench", version)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// RPCs in flight at once (one worker task each, looping call after call).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Measured time of each phase, e.g. `10`, `10s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Unmeasured load before each phase.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Run the phases of a multi-phase scenario this many times, in alternating order
    /// (A B C, C B A, ...), each time for `duration / rounds`, and merge: slow drift in the
    /// machine's load then affects every phase alike.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,

    /// `postgres://user@host:port/db`: create a fresh database for each service beside `db`
    /// (dropped afterwards). Default: SQLite files in a new temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,

    /// How access tokens are signed (`SIGNING_ALGORITHM`).
    #[arg(long, value_enum, default_value_t = Signing::Eddsa)]
    pub signing: Signing,

    /// Client HTTP/2 connections the load is spread over (worker i uses connection i mod N;
    /// default 4, list100 8).
    #[arg(long, default_value_t = 4)]
    pub channels: usize,

    /// Users (default: list 20, create 100, mixed 1000, sign-in-storm 20, watch 1000).
    #[arg(long)]
    pub users: Option<usize>,

    /// Tasks seeded per user (default: list and sign-in-storm 1000, mixed 10).
    #[arg(long)]
    pub tasks_per_user: Option<usize>,

    /// How tasks are seeded: `bulk` INSERTs into the task database, or CreateTask calls.
    #[arg(long, value_enum, default_value_t = Seed::Bulk)]
    pub seed: Seed,

    /// sign-in-storm: SignIn RPCs in flight, besides the `--concurrency` ListTasks.
    #[arg(long, default_value_t = 64)]
    pub signin_concurrency: usize,

    /// sign-in-storm: ListTasks calls per second, spread over the `--concurrency` workers
    /// (open loop, alone and during the storm; 0 = closed loop, as fast as answered).
    #[arg(long, default_value_t = 1000)]
    pub list_rate: u32,

    /// scale: idle HTTP/2 connections to open to the task-service.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,

    /// Export every span over OTLP/gRPC to a receiver in this process (as
    /// OTEL_EXPORTER_OTLP_ENDPOINT does for the services), to measure what tracing costs.
    #[arg(long)]
    pub trace: bool,

    /// Print the results as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// scale-client only: the task-service address to connect to.
    #[arg(long, hide = true)]
    pub target: Option<String>,
}

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// grpc.health.v1 Check on the task-service: the floor.
    Empty,
    /// Trivial calls with and without access-token verification.
    AuthOverhead,
    /// The same authenticated trivial call with the metrics registry off and on (add
    /// `--trace` for spans exported over OTLP).
    TelemetryOverhead,
    /// ListTasks (page_size 20) for users with 1,000 tasks each, walking the pages.
    List,
    /// ListTasks (page_size 100) for 200 users with 100 tasks each (the dashboard's call).
    List100,
    /// `list100` with one ToggleTask of the same users after every ten lists: the hit rate
    /// the ListTasks cache keeps under a real mix of reads and writes.
    List100Writes,
    /// ListTasks latency, one call at a time: page 1 for users with 100 and 100,000 tasks,
    /// and page 500 of the large one.
    ListDeep,
    /// CreateTask.
    Create,
    /// 80% list/get, 15% create/update/toggle, 5% delete across 1,000 users.
    Mixed,
    /// SignIn at high concurrency while `list` runs.
    SignInStorm,
    /// Many idle HTTP/2 connections to the task-service: RSS per connection.
    Scale,
    /// 1,000 open WatchTasks streams: memory per watcher, idle CPU, fan-out events/s and
    /// latency while writers create tasks for the watched users.
    Watch,
    /// Internal: the client side of `scale`, run as a child process.
    #[value(hide = true)]
    ScaleClient,
}

impl Scenario {
    /// `--channels` when not given.
    pub fn default_channels(self) -> usize {
        match self {
            Self::List100 | Self::List100Writes => 8,
            _ => 4,
        }
    }

    /// The name on the command line.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// How the data a scenario needs is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Seed {
    /// Multi-row INSERTs straight into the task database, in one transaction.
    Bulk,
    /// CreateTask calls, `--concurrency` in flight.
    Api,
}

/// `SIGNING_ALGORITHM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Signing {
    /// Shared HS256 secret.
    Hs256,
    /// Ed25519 keys kept by the auth-service, fetched by the task-service.
    Eddsa,
}

/// `10`, `10s`, `1.5s`, `500ms`.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, scale) = if let Some(ms) = raw.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = raw.strip_suffix('s') {
        (s, 1.0)
    } else {
        (raw, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 10s or 500ms"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{raw:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_in_seconds_or_milliseconds() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
