//! Opening a service's database: the schema is migrated on a connection of its own, and only
//! then is the pool that serves requests opened.
//!
//! Why the order matters: on SQLite, sea-orm-migration runs each statement of a migration on
//! its own (no transaction), and SQLite caches the schema per connection. A pool connection that
//! read the schema half-way through the migrations (after `CREATE TABLE`, before its
//! `CREATE UNIQUE INDEX`) keeps that snapshot, and SQLite resolves an upsert's conflict target
//! against it when the statement is prepared, failing with "ON CONFLICT clause does not match
//! any PRIMARY KEY or UNIQUE constraint" without re-reading the schema. A serving pool opened
//! after the migrations can only ever have read the finished schema.

use crate::classify::redact_url;
use crate::settings::PoolArgs;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use std::{future::Future, path::PathBuf, str::FromStr, time::Duration};

/// Example URLs for error messages.
const URL_EXAMPLES: &str = "e.g. sqlite://data/tasks.db (a file, created if missing), \
     sqlite::memory:, or postgres://user:password@localhost:5432/todo";

/// Rows a SQLite connection's worker thread may hand over before the query's reader takes
/// them (sqlx's default is 50): more than the largest page (1,000 tasks and one to see if more
/// follow), so a page is read without the worker blocking half-way and waking again.
const SQLITE_ROW_BUFFER: usize = 1024;

/// A pooled PostgreSQL connection idle at least this long is pinged before it is handed out
/// (a proxy, a firewall or a server restart may have dropped it meanwhile). sqlx's default
/// pings on *every* checkout, a round trip on each query's path (it also pings when a
/// connection is given back, after the query, which is not configurable).
const PG_PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// How long the reachability probe of a database server that refused a pool may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Session-level PostgreSQL advisory lock held while migrating, so replicas starting together
/// migrate one after the other instead of racing on `CREATE TABLE`.
const MIGRATION_LOCK_KEY: i64 = 0x746f_646f_6d69_6772; // "todomigr"

/// Why a database could not be opened. Every message names the setting the URL came from.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not one of the supported forms.
    #[error("{setting}={url} is not a usable database URL: {reason}; {URL_EXAMPLES}")]
    InvalidUrl {
        setting: &'static str,
        url: String,
        reason: String,
    },
    /// The directory of a SQLite file could not be created.
    #[error("{setting}={url}: cannot create the directory {dir}: {source}")]
    CreateDir {
        setting: &'static str,
        url: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The database server could not be reached at all.
    #[error(
        "{setting}={url}: cannot reach the database server at {addr}: {source} \
         (is it running there? check the host and port in {setting})"
    )]
    Unreachable {
        setting: &'static str,
        url: String,
        addr: String,
        source: std::io::Error,
    },
    /// The server was reached but the connection failed (credentials, database name, …).
    #[error("{setting}={url}: cannot connect: {source}")]
    Connect {
        setting: &'static str,
        url: String,
        source: DbErr,
    },
    /// The schema could not be migrated.
    #[error("{setting}={url}: migrating the schema failed: {source}")]
    Migrate {
        setting: &'static str,
        url: String,
        source: DbErr,
    },
}

/// Opens the database at `url` (read from the setting named `setting`, for error messages),
/// runs `migrate` on a connection of its own, and then opens the pool that serves requests.
///
/// A SQLite file (and its directory) is created if missing and runs in write-ahead-log mode
/// with `synchronous = NORMAL`: readers never wait for a writer, and a commit does not wait for
/// the disk (a crash of the process loses nothing; a power cut may lose the last commits, never
/// consistency). In-memory SQLite is one connection (each connection would be its own empty
/// database), migrated and then served. On PostgreSQL the migration holds an advisory lock.
pub async fn open<F, Fut>(
    setting: &'static str,
    url: &str,
    pool: &PoolArgs,
    migrate: F,
) -> Result<DatabaseConnection, OpenError>
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = Result<(), DbErr>>,
{
    let target = Target::parse(setting, url)?;
    if target.kind == Kind::SqliteMemory {
        let db = target.pool(1, pool.database_acquire_timeout_secs).await?;
        migrate(db.clone())
            .await
            .map_err(|e| target.migrate_error(e))?;
        return Ok(db);
    }
    let migrator = target.pool(1, pool.database_acquire_timeout_secs).await?;
    let migrated = async {
        if target.is_postgres() {
            migrator
                .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .await?;
        }
        migrate(migrator.clone()).await
    }
    .await;
    // Closing the connection also releases the advisory lock.
    if let Err(error) = migrator.close().await {
        tracing::warn!(%error, "closing the migration connection failed");
    }
    migrated.map_err(|e| target.migrate_error(e))?;
    let db = target
        .pool(
            target.max_connections(pool),
            pool.database_acquire_timeout_secs,
        )
        .await?;
    let database = redact_url(url);
    if target.is_postgres() {
        tracing::info!(%database, "using the configured database");
    } else {
        tracing::info!(%database, "using the embedded SQLite database (set {setting} for PostgreSQL)");
    }
    Ok(db)
}

/// Opens a pool to `url` without migrating (the `migrate` CLI, benchmarks' seeding). Same
/// URL handling and errors as [`open`].
pub async fn connect(
    setting: &'static str,
    url: &str,
    pool: &PoolArgs,
) -> Result<DatabaseConnection, OpenError> {
    let target = Target::parse(setting, url)?;
    let connections = target.max_connections(pool);
    target
        .pool(connections, pool.database_acquire_timeout_secs)
        .await
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    SqliteFile,
    SqliteMemory,
    Postgres { host: String, port: u16 },
}

/// A parsed, validated database URL.
#[derive(Debug)]
struct Target {
    setting: &'static str,
    /// The URL to connect with (a SQLite file gets `mode=rwc`: create if missing).
    url: String,
    /// The URL for messages, password redacted.
    shown: String,
    kind: Kind,
}

impl Target {
    /// DATABASE_MAX_CONNECTIONS, or its default for this kind of database.
    fn max_connections(&self, pool: &PoolArgs) -> u32 {
        match (&self.kind, pool.database_max_connections) {
            // Each connection would be a database of its own.
            (Kind::SqliteMemory, _) => 1,
            (_, Some(n)) => n.max(1),
            (Kind::Postgres { .. }, None) => 16,
            (Kind::SqliteFile, None) => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                // Measured on 2 cores (BENCHMARKS.md, list100 / mixed / create): 8 beat
                // 2, 3, 4 and 6; 12 and 16 gained little more and lengthened the p99.
                u32::try_from(cpus * 4).unwrap_or(16).clamp(2, 16)
            }
        }
    }

    fn parse(setting: &'static str, url: &str) -> Result<Self, OpenError> {
        use sea_orm::sqlx::{postgres::PgConnectOptions, sqlite::SqliteConnectOptions};
        let shown = redact_url(url);
        let invalid = |reason: String| OpenError::InvalidUrl {
            setting,
            url: shown.clone(),
            reason,
        };
        let mut url = url.trim().to_owned();
        let kind = if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest.contains(":memory:") || rest.contains("mode=memory") {
                Kind::SqliteMemory
            } else {
                if !rest.contains("mode=") {
                    let separator = if rest.contains('?') { '&' } else { '?' };
                    url = format!("{url}{separator}mode=rwc");
                }
                Kind::SqliteFile
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(&url).map_err(|e| invalid(e.to_string()))?;
            Kind::Postgres {
                host: options.get_host().to_owned(),
                port: options.get_port(),
            }
        } else {
            return Err(invalid(
                "it must start with sqlite: or postgres://".to_owned(),
            ));
        };
        if kind == Kind::SqliteFile {
            let options =
                SqliteConnectOptions::from_str(&url).map_err(|e| invalid(e.to_string()))?;
            let dir = options.get_filename().parent().map(PathBuf::from);
            if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(&dir).map_err(|source| OpenError::CreateDir {
                    setting,
                    url: shown.clone(),
                    dir,
                    source,
                })?;
            }
        }
        Ok(Self {
            setting,
            url,
            shown,
            kind,
        })
    }

    fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }

    /// A pool of at most `connections`, one of them opened now.
    async fn pool(
        &self,
        connections: u32,
        acquire_timeout_secs: u64,
    ) -> Result<DatabaseConnection, OpenError> {
        let timeout = Duration::from_secs(acquire_timeout_secs);
        let mut options = ConnectOptions::new(self.url.clone());
        options
            .max_connections(connections)
            .min_connections(1)
            .connect_timeout(timeout)
            .acquire_timeout(timeout)
            .sqlx_logging(false);
        match self.kind {
            Kind::SqliteFile => {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                options.map_sqlx_sqlite_opts(|sqlite| {
                    sqlite
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .row_buffer_size(SQLITE_ROW_BUFFER)
                });
            }
            Kind::SqliteMemory => {
                options.map_sqlx_sqlite_opts(|sqlite| sqlite.row_buffer_size(SQLITE_ROW_BUFFER));
            }
            Kind::Postgres { .. } => {
                options.test_before_acquire_if_idle_for(PG_PING_IF_IDLE_FOR);
            }
        }
        if !self.is_postgres() {
            // A SQLite connection is a file handle in this process: nothing can drop it, and
            // a ping is one more hand-off to its worker thread and back on each query's path.
            options.test_before_acquire(false);
        }
        match Database::connect(options).await {
            Ok(db) => Ok(db),
            Err(source) => Err(self.connect_error(source).await),
        }
    }

    /// Says "cannot reach HOST:PORT: connection refused" when the server is not there at all
    /// (the pool itself only reports that it timed out).
    async fn connect_error(&self, source: DbErr) -> OpenError {
        if let Kind::Postgres { host, port } = &self.kind
            && !host.starts_with('/')
        {
            let addr = format!("{host}:{port}");
            let probe = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr));
            let unreachable = match probe.await {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some(std::io::Error::from(std::io::ErrorKind::TimedOut)),
            };
            if let Some(source) = unreachable {
                return OpenError::Unreachable {
                    setting: self.setting,
                    url: self.shown.clone(),
                    addr,
                    source,
                };
            }
        }
        OpenError::Connect {
            setting: self.setting,
            url: self.shown.clone(),
            source,
        }
    }

    fn migrate_error(&self, source: DbErr) -> OpenError {
        OpenError::Migrate {
            setting: self.setting,
            url: self.shown.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
