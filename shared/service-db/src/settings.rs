//! Settings of the database connection pool, as flags with environment fallbacks (flattened
//! into each service's clap parser).

use clap::Args;

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
