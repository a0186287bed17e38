//! The task-service's one error type. Its mapping to `tonic::Status` (code, stable reason,
//! public message, log level per variant) is the README's error table; the boundary itself is
//! `grpc_edge::status`, shared with the auth-service.

use grpc_edge::{
    status::DatabaseStatus, status::ErrorReason, status::Extra, status::INTERNAL_MESSAGE,
    status::LogLevel, status::ServiceError, status::to_status, violations::FieldViolations,
};
use sea_orm::DbErr;
use service_db::DatabaseError;
use std::borrow::Cow;
use tonic::{Code, Status};

/// Which budget a refused reply ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The caller's own (`MAX_UNREAD_BYTES_PER_USER`).
    User(u64),
    /// The service's (`MAX_UNREAD_BYTES`).
    Service(u64),
}

/// When a call refused for unread replies is told to retry.
const UNREAD_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// `ErrorInfo.domain` of every task-service error.
pub const ERROR_DOMAIN: &str = "todo.task.v1";

/// The one message of every refused token, whatever the reason.
pub const INVALID_TOKEN_MESSAGE: &str = "missing, invalid or expired access token";

/// Everything a task RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Bad input, field by field.
    #[error("invalid argument: {}", .0.summary())]
    InvalidArgument(FieldViolations),
    /// No such task for this caller (it may exist for someone else: the answer is the same).
    #[error("task not found")]
    NotFound,
    /// The task changed since the etag the client sent.
    #[error("etag mismatch")]
    EtagMismatch,
    /// The caller already has as many tasks as TASK_QUOTA allows.
    #[error("task quota of {0} reached")]
    QuotaExceeded(u64),
    /// Replies not yet read by their clients have used up a budget.
    #[error("unread replies: {0:?}")]
    Unread(Exhausted),
    /// Missing, malformed, expired, forged or (strict mode) signed-out access token. The
    /// reason goes to the log only.
    #[error("access token refused: {0}")]
    Unauthenticated(String),
    /// Tokens cannot be checked now: no keys yet, or (strict mode) the auth-service is down.
    #[error("auth-service unavailable: {0}")]
    AuthUnavailable(String),
    /// The caller already has WATCH_STREAMS_PER_USER streams open on this replica.
    #[error("{0} watch streams open")]
    TooManyWatches(usize),
    /// A watch asked to resume from before the retained change history, or from a position
    /// this database never had.
    #[error("resume token outside the change log: {0}")]
    ResumeExpired(&'static str),
    /// The server is stopping and ended a long-lived stream.
    #[error("shutting down")]
    ShuttingDown,
    /// The database failed (unavailable, or a bug).
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbErr> for TaskError {
    fn from(error: DbErr) -> Self {
        Self::Database(error.into())
    }
}

impl ServiceError for TaskError {
    const DOMAIN: &'static str = ERROR_DOMAIN;

    fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound => Code::NotFound,
            Self::EtagMismatch => Code::Aborted,
            Self::QuotaExceeded(_) | Self::Unread(_) | Self::TooManyWatches(_) => {
                Code::ResourceExhausted
            }
            Self::ResumeExpired(_) => Code::FailedPrecondition,
            Self::ShuttingDown => Code::Unavailable,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::AuthUnavailable(_) => Code::Unavailable,
            Self::Database(error) => error.code(),
            Self::Internal(_) => Code::Internal,
        }
    }

    fn reason(&self) -> ErrorReason {
        match self {
            Self::InvalidArgument(_) => ErrorReason::InvalidArgument,
            Self::NotFound => ErrorReason::TaskNotFound,
            Self::EtagMismatch => ErrorReason::EtagMismatch,
            Self::QuotaExceeded(_) => ErrorReason::TaskQuotaExceeded,
            Self::Unread(_) => ErrorReason::TooManyUnreadReplies,
            Self::TooManyWatches(_) => ErrorReason::TooManyStreams,
            Self::ResumeExpired(_) => ErrorReason::ResumeTokenExpired,
            Self::ShuttingDown => ErrorReason::ShuttingDown,
            Self::Unauthenticated(_) => ErrorReason::InvalidToken,
            Self::AuthUnavailable(_) => ErrorReason::AuthServiceUnavailable,
            Self::Database(error) => error.reason(),
            Self::Internal(_) => ErrorReason::Internal,
        }
    }

    fn public_message(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidArgument(violations) => violations.summary().into(),
            Self::NotFound => "task not found".into(),
            Self::EtagMismatch => {
                "the task has changed since this etag was read: get it again and retry".into()
            }
            Self::QuotaExceeded(limit) => format!(
                "you have {limit} tasks, the most one account may have: delete some to create more"
            )
            .into(),
            Self::Unread(Exhausted::User(bytes)) => format!(
                "this reply would take your replies not yet read past {bytes} bytes \
                 (MAX_UNREAD_BYTES_PER_USER): read or cancel them, then retry"
            )
            .into(),
            Self::Unread(Exhausted::Service(bytes)) => format!(
                "this reply would take the replies not yet read on this server past {bytes} \
                 bytes (MAX_UNREAD_BYTES): retry shortly"
            )
            .into(),
            Self::TooManyWatches(limit) => format!(
                "you have {limit} WatchTasks streams open on this server \
                 (WATCH_STREAMS_PER_USER={limit}): close one and retry"
            )
            .into(),
            Self::ResumeExpired(_) => "the resume token is older than the change history \
                 this server keeps, or not from this database: call ListTasks again and watch \
                 from its resume_token"
                .into(),
            Self::ShuttingDown => {
                "the server is shutting down: resume from the last resume_token received".into()
            }
            Self::Unauthenticated(_) => INVALID_TOKEN_MESSAGE.into(),
            Self::AuthUnavailable(_) => "cannot verify access tokens right now, retry later".into(),
            Self::Database(error) => error.public_message(),
            Self::Internal(_) => INTERNAL_MESSAGE.into(),
        }
    }

    fn log_level(&self) -> LogLevel {
        match self {
            Self::InvalidArgument(_)
            | Self::NotFound
            | Self::EtagMismatch
            | Self::QuotaExceeded(_)
            | Self::Unread(Exhausted::User(_))
            | Self::TooManyWatches(_)
            | Self::ResumeExpired(_)
            | Self::ShuttingDown => LogLevel::None,
            Self::Unread(Exhausted::Service(_)) => LogLevel::Warn,
            Self::Unauthenticated(_) => LogLevel::Info,
            Self::AuthUnavailable(_) => LogLevel::Warn,
            Self::Database(_) | Self::Internal(_) => LogLevel::Error,
        }
    }

    fn extra(&self) -> Extra<'_> {
        match self {
            Self::InvalidArgument(violations) => Extra::BadRequest(violations),
            Self::Unread(_) | Self::TooManyWatches(_) => Extra::RetryAfter(UNREAD_RETRY),
            _ => Extra::None,
        }
    }
}

impl From<TaskError> for Status {
    fn from(error: TaskError) -> Self {
        to_status(&error)
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
                TaskError::InvalidArgument({
                    let mut violations = FieldViolations::new();
                    violations.add("title", "is required");
                    violations
                }),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (TaskError::NotFound, Code::NotFound, "TASK_NOT_FOUND"),
            (TaskError::EtagMismatch, Code::Aborted, "ETAG_MISMATCH"),
            (
                TaskError::QuotaExceeded(3),
                Code::ResourceExhausted,
                "TASK_QUOTA_EXCEEDED",
            ),
            (
                TaskError::Unread(Exhausted::User(8 << 20)),
                Code::ResourceExhausted,
                "TOO_MANY_UNREAD_REPLIES",
            ),
            (
                TaskError::Unread(Exhausted::Service(128 << 20)),
                Code::ResourceExhausted,
                "TOO_MANY_UNREAD_REPLIES",
            ),
            (
                TaskError::TooManyWatches(16),
                Code::ResourceExhausted,
                "TOO_MANY_STREAMS",
            ),
            (
                TaskError::ResumeExpired("before the floor"),
                Code::FailedPrecondition,
                "RESUME_TOKEN_EXPIRED",
            ),
            (TaskError::ShuttingDown, Code::Unavailable, "SHUTTING_DOWN"),
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
