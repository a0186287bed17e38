//! Opening the database (SQLite file by default, PostgreSQL by URL) and reporting its health.

use crate::config::PoolArgs;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use std::{path::Path, time::Duration};
use tonic_health::{ServingStatus, server::HealthReporter};

/// Opens a pool to `url`.
///
/// For a SQLite file the parent directory is created and the file too (`mode=rwc`), and it
/// runs in write-ahead-log mode with `synchronous = NORMAL`: readers no longer wait for a
/// writer, and a commit appends to the log without waiting for the disk (an application
/// crash loses nothing; a power cut may lose the last commits, never consistency). An
/// in-memory SQLite database gets exactly one connection, since each connection would
/// otherwise be its own empty database.
pub async fn connect(url: &str, pool: &PoolArgs) -> Result<DatabaseConnection, DbErr> {
    let mut url = url.to_owned();
    let mut max_connections = pool.database_max_connections.max(1);
    let mut sqlite_file = false;
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let in_memory = rest.contains(":memory:") || rest.contains("mode=memory");
        if in_memory {
            max_connections = 1;
        } else {
            sqlite_file = true;
            let path = rest
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or_default();
            if let Some(parent) = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    DbErr::Custom(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            if !rest.contains("mode=") {
                url.push_str(if rest.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
    }
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(pool.database_acquire_timeout_secs))
        .acquire_timeout(Duration::from_secs(pool.database_acquire_timeout_secs))
        .sqlx_logging(false);
    if sqlite_file {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        });
    }
    Database::connect(options).await
}

/// Whether `error` means the database cannot be reached or is overloaded right now (a
/// retryable UNAVAILABLE) rather than a bug or a bad statement (INTERNAL): no connection from
/// the pool, a connection that broke mid-query, a server shutting down, too many connections,
/// or SQLite busy/locked.
pub fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, SqlxError};
    let sqlx_error = match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match sqlx_error.as_ref() {
        SqlxError::Io(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        SqlxError::Database(db) => db.code().is_some_and(|code| {
            // PostgreSQL: connection exceptions, operator intervention, too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED.
            || code == "5" || code == "6"
        }),
        _ => false,
    }
}

/// The URL with any password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Whether a service is ready apart from its database (e.g. it has its verification keys).
pub type ReadyCheck = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// How often readiness is checked while the service is not serving, so it turns SERVING
/// soon after start-up or recovery.
const RECHECK_WHILE_NOT_SERVING: Duration = Duration::from_millis(250);

/// Keeps `services` (and the server as a whole) SERVING while the database answers a ping and
/// `ready` holds, NOT_SERVING otherwise, checking every `every` (more often while not
/// serving). Runs until its handle is aborted.
pub fn watch_health(
    db: DatabaseConnection,
    reporter: HealthReporter,
    services: &'static [&'static str],
    every: Duration,
    ready: Option<ReadyCheck>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = match db.ping().await {
                Ok(()) if ready.as_ref().is_none_or(|ready| ready()) => ServingStatus::Serving,
                Ok(()) => ServingStatus::NotServing,
                Err(error) => {
                    if last != Some(ServingStatus::NotServing) {
                        tracing::error!(%error, "database unreachable: reporting NOT_SERVING");
                    }
                    ServingStatus::NotServing
                }
            };
            if last != Some(status) {
                for service in services.iter().copied().chain([""]) {
                    reporter.set_service_status(service, status).await;
                }
                last = Some(status);
            }
            let pause = if status == ServingStatus::Serving {
                every
            } else {
                every.min(RECHECK_WHILE_NOT_SERVING)
            };
            tokio::time::sleep(pause).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{is_unavailable, redact_url};
    use sea_orm::{DbErr, RuntimeErr, SqlxError};
    use std::sync::Arc;

    #[test]
    fn broken_or_exhausted_connections_are_unavailable_and_other_errors_are_not() {
        let query = |e: SqlxError| DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)));
        assert!(is_unavailable(&DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout
        )));
        assert!(is_unavailable(&query(SqlxError::PoolTimedOut)));
        assert!(is_unavailable(&query(SqlxError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        )))));
        assert!(!is_unavailable(&query(SqlxError::RowNotFound)));
        assert!(!is_unavailable(&DbErr::Custom("bug".into())));
        assert!(!is_unavailable(&DbErr::RecordNotFound("x".into())));
    }

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/todo"),
            "postgres://app:***@db:5432/todo"
        );
        assert_eq!(
            redact_url("postgres://app@db/todo"),
            "postgres://app@db/todo"
        );
        assert_eq!(redact_url("sqlite://data/auth.db"), "sqlite://data/auth.db");
    }
}
