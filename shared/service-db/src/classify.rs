//! What a database error means for a client (retry later, or a bug), and URLs fit for logs.

use sea_orm::DbErr;

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
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    // A password may also come as a query parameter (`?password=…`, libpq style).
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
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
        assert_eq!(
            redact_url("postgres://db/todo?user=app&password=s3cret&sslmode=require"),
            "postgres://db/todo?user=app&password=***&sslmode=require"
        );
    }
}
