//! The auth-service's one error type and its one mapping to `tonic::Status` (DESIGN.md's
//! table). Internal causes go to the log with their whole chain; clients get a stable
//! `ErrorInfo` reason and a message that leaks nothing.

use sea_orm::DbErr;
use shared::status::{FieldViolations, retry_after, with_reason};
use std::time::Duration;
use tonic::{Code, Status};

/// `ErrorInfo.domain` of every auth-service error.
pub const ERROR_DOMAIN: &str = "todo.auth.v1";

/// Everything an auth RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad input, field by field.
    #[error("invalid argument")]
    InvalidArgument(FieldViolations),
    /// Sign-up with an email that already has an account.
    #[error("email already registered")]
    EmailTaken,
    /// Wrong email or password (never says which).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Missing, malformed, expired, forged or revoked access token.
    #[error("invalid access token: {0}")]
    InvalidToken(String),
    /// Unknown, expired, revoked or reused refresh token.
    #[error("invalid refresh token: {0}")]
    InvalidRefreshToken(&'static str),
    /// Too many failed sign-ins.
    #[error("sign-in throttled for {0:?}")]
    Throttled(Duration),
    /// The database cannot be reached or the pool is exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// An internal error with a cause for the log.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self::Internal(cause.into())
    }
}

impl From<DbErr> for AuthError {
    fn from(error: DbErr) -> Self {
        if shared::db::is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Internal(format!("database: {error}"))
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let d = ERROR_DOMAIN;
        match error {
            AuthError::InvalidArgument(violations) => violations.into_status("INVALID_ARGUMENT", d),
            AuthError::EmailTaken => with_reason(
                Code::AlreadyExists,
                "an account with this email already exists",
                "EMAIL_ALREADY_REGISTERED",
                d,
            ),
            AuthError::InvalidCredentials => with_reason(
                Code::Unauthenticated,
                "invalid email or password",
                "INVALID_CREDENTIALS",
                d,
            ),
            AuthError::InvalidToken(reason) => {
                tracing::info!(%reason, "access token refused");
                with_reason(
                    Code::Unauthenticated,
                    "missing, invalid or expired access token",
                    "INVALID_TOKEN",
                    d,
                )
            }
            AuthError::InvalidRefreshToken(reason) => {
                tracing::info!(%reason, "refresh token refused");
                with_reason(
                    Code::Unauthenticated,
                    "invalid or expired refresh token: sign in again",
                    "INVALID_REFRESH_TOKEN",
                    d,
                )
            }
            AuthError::Throttled(delay) => retry_after(
                format!(
                    "too many failed sign-in attempts: try again in {} s",
                    delay.as_secs().max(1)
                ),
                "TOO_MANY_ATTEMPTS",
                d,
                delay,
            ),
            AuthError::Unavailable(cause) => {
                tracing::error!(%cause, "database unavailable");
                with_reason(
                    Code::Unavailable,
                    "service temporarily unavailable, retry later",
                    "DATABASE_UNAVAILABLE",
                    d,
                )
            }
            AuthError::Internal(cause) => {
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

    fn reason(status: &Status) -> String {
        status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone())
            .unwrap_or_default()
    }

    #[test]
    fn every_error_maps_to_its_documented_code_and_reason() {
        let mut violations = FieldViolations::new();
        violations.add("email", "is required");
        let cases = [
            (
                AuthError::InvalidArgument(violations),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                AuthError::EmailTaken,
                Code::AlreadyExists,
                "EMAIL_ALREADY_REGISTERED",
            ),
            (
                AuthError::InvalidCredentials,
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
            ),
            (
                AuthError::InvalidToken("expired".into()),
                Code::Unauthenticated,
                "INVALID_TOKEN",
            ),
            (
                AuthError::InvalidRefreshToken("reused"),
                Code::Unauthenticated,
                "INVALID_REFRESH_TOKEN",
            ),
            (
                AuthError::Throttled(Duration::from_secs(4)),
                Code::ResourceExhausted,
                "TOO_MANY_ATTEMPTS",
            ),
            (
                AuthError::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)),
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
            ),
            (
                AuthError::internal("boom: secret detail"),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (error, code, expected_reason) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(reason(&status), expected_reason);
            assert!(!status.message().contains("secret detail"));
        }
    }

    #[test]
    fn throttling_tells_the_client_when_to_retry() {
        let status = Status::from(AuthError::Throttled(Duration::from_secs(8)));
        let retry = status
            .get_error_details()
            .retry_info()
            .and_then(|r| r.retry_delay);
        assert_eq!(retry, Some(Duration::from_secs(8)));
    }

    #[test]
    fn token_errors_share_one_generic_message() {
        let a = Status::from(AuthError::InvalidToken("expired".into()));
        let b = Status::from(AuthError::InvalidToken("bad signature".into()));
        assert_eq!(a.message(), b.message());
    }
}
