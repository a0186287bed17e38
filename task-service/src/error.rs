//! The task-service's one error type and its one mapping to `tonic::Status` (DESIGN.md's
//! table). Internal causes go to the log; clients get a stable `ErrorInfo` reason and a
//! message that leaks nothing.

use sea_orm::DbErr;
use shared::status::{FieldViolations, with_reason};
use tonic::{Code, Status};

/// `ErrorInfo.domain` of every task-service error.
pub const ERROR_DOMAIN: &str = "todo.task.v1";

/// The one message of every refused token, whatever the reason.
pub const INVALID_TOKEN_MESSAGE: &str = "missing, invalid or expired access token";

/// Everything a task RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Bad input, field by field.
    #[error("invalid argument")]
    InvalidArgument(FieldViolations),
    /// No such task for this caller (it may exist for someone else: the answer is the same).
    #[error("task not found")]
    NotFound,
    /// The task changed since the etag the client sent.
    #[error("etag mismatch")]
    EtagMismatch,
    /// Missing, malformed, expired, forged or (strict mode) signed-out access token. The
    /// reason goes to the log only.
    #[error("access token refused: {0}")]
    Unauthenticated(String),
    /// Tokens cannot be checked now: no keys yet, or (strict mode) the auth-service is down.
    #[error("auth-service unavailable: {0}")]
    AuthUnavailable(String),
    /// The database cannot be reached or the pool is exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl TaskError {
    /// INVALID_ARGUMENT for a single field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut violations = FieldViolations::new();
        violations.add(field, description);
        Self::InvalidArgument(violations)
    }
}

impl From<DbErr> for TaskError {
    fn from(error: DbErr) -> Self {
        if shared::db::is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Internal(format!("database: {error}"))
        }
    }
}

impl From<TaskError> for Status {
    fn from(error: TaskError) -> Self {
        let d = ERROR_DOMAIN;
        match error {
            TaskError::InvalidArgument(violations) => violations.into_status("INVALID_ARGUMENT", d),
            TaskError::NotFound => {
                with_reason(Code::NotFound, "task not found", "TASK_NOT_FOUND", d)
            }
            TaskError::EtagMismatch => with_reason(
                Code::Aborted,
                "the task has changed since this etag was read: get it again and retry",
                "ETAG_MISMATCH",
                d,
            ),
            TaskError::Unauthenticated(reason) => {
                tracing::info!(%reason, "access token refused");
                with_reason(
                    Code::Unauthenticated,
                    INVALID_TOKEN_MESSAGE,
                    "INVALID_TOKEN",
                    d,
                )
            }
            TaskError::AuthUnavailable(cause) => {
                tracing::warn!(%cause, "cannot check access tokens");
                with_reason(
                    Code::Unavailable,
                    "cannot verify access tokens right now, retry later",
                    "AUTH_SERVICE_UNAVAILABLE",
                    d,
                )
            }
            TaskError::Unavailable(cause) => {
                tracing::error!(%cause, "database unavailable");
                with_reason(
                    Code::Unavailable,
                    "service temporarily unavailable, retry later",
                    "DATABASE_UNAVAILABLE",
                    d,
                )
            }
            TaskError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                with_reason(Code::Internal, "internal error", "INTERNAL", d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn every_error_maps_to_its_documented_code_and_reason() {
        let cases = [
            (
                TaskError::invalid("title", "is required"),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (TaskError::NotFound, Code::NotFound, "TASK_NOT_FOUND"),
            (TaskError::EtagMismatch, Code::Aborted, "ETAG_MISMATCH"),
            (
                TaskError::Unauthenticated("expired".into()),
                Code::Unauthenticated,
                "INVALID_TOKEN",
            ),
            (
                TaskError::AuthUnavailable("connection refused".into()),
                Code::Unavailable,
                "AUTH_SERVICE_UNAVAILABLE",
            ),
            (
                TaskError::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)),
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
            ),
            (
                TaskError::Internal("boom: secret detail".into()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (error, code, reason) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, reason);
            assert_eq!(info.domain, ERROR_DOMAIN);
            assert!(!status.message().contains("secret detail"));
        }
    }

    #[test]
    fn token_errors_share_one_generic_message() {
        let a = Status::from(TaskError::Unauthenticated("expired".into()));
        let b = Status::from(TaskError::Unauthenticated("bad signature".into()));
        assert_eq!(a.message(), b.message());
        assert_eq!(a.message(), INVALID_TOKEN_MESSAGE);
    }
}
