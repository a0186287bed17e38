//! A failed database operation, classified once: the gRPC edge turns [`DatabaseError`] into
//! UNAVAILABLE (retry later) or INTERNAL (a bug) without looking at the cause again.

use sea_orm::DbErr;

/// A failed database operation.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The database cannot be reached or is overloaded right now (see
    /// [`crate::is_unavailable`]): retry later.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    /// Anything else: a bug or a bad statement.
    #[error("database error: {0}")]
    Failed(DbErr),
}

impl From<DbErr> for DatabaseError {
    fn from(error: DbErr) -> Self {
        if crate::is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Failed(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_unavailable_and_a_bad_statement_is_a_failure() {
        let lost = DatabaseError::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        assert!(matches!(lost, DatabaseError::Unavailable(_)));
        let bug = DatabaseError::from(DbErr::Custom("no such column: secret".into()));
        assert!(matches!(bug, DatabaseError::Failed(_)));
    }
}
