//! The auth-service's one error type. Its mapping to `tonic::Status` (code, stable reason,
//! public message, log level per variant) is the README's error table; the boundary itself is
//! `grpc_edge::status`, shared with the task-service.

use grpc_edge::{
    status::DatabaseStatus, status::ErrorReason, status::Extra, status::INTERNAL_MESSAGE,
    status::LogLevel, status::ServiceError, status::to_status, violations::FieldViolations,
};
use sea_orm::DbErr;
use service_db::DatabaseError;
use std::{borrow::Cow, time::Duration};
use tonic::{Code, Status};

/// `ErrorInfo.domain` of every auth-service error.
pub const ERROR_DOMAIN: &str = "todo.auth.v1";

/// Everything an auth RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad input, field by field.
    #[error("invalid argument: {}", .0.summary())]
    InvalidArgument(FieldViolations),
    /// Sign-up with an email that already has an account.
    #[error("email already registered")]
    EmailTaken,
    /// Wrong email or password (never says which).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// ChangePassword's current password is wrong.
    #[error("wrong current password")]
    WrongPassword,
    /// No live session of the caller's with this id (or another user's: the same answer).
    #[error("no such session")]
    SessionNotFound,
    /// Missing, malformed, expired, forged or revoked access token.
    #[error("invalid access token: {0}")]
    InvalidToken(String),
    /// Unknown, expired, revoked or reused refresh token.
    #[error("invalid refresh token: {0}")]
    InvalidRefreshToken(&'static str),
    /// Too many failed sign-ins.
    #[error("sign-in throttled for {0:?}")]
    Throttled(Duration),
    /// Too many sign-ups from one address in the window.
    #[error("sign-up throttled for {0:?}")]
    SignUpThrottled(Duration),
    /// The client has too many sign-ups/sign-ins waiting for a password hash, or waited too
    /// long for one.
    #[error("password hashing busy: retry after {0:?}")]
    Busy(Duration),
    /// The session's refresh token was exchanged less than REFRESH_MIN_INTERVAL_MS ago.
    #[error("refreshed too soon: retry after {0:?}")]
    RefreshTooSoon(Duration),
    /// The database failed (unavailable, or a bug).
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The error's name as a metric outcome (a fixed set: never anything from the request).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::EmailTaken => "email_taken",
            Self::InvalidCredentials | Self::WrongPassword => "invalid_credentials",
            Self::SessionNotFound => "not_found",
            Self::InvalidToken(_) => "invalid_token",
            Self::InvalidRefreshToken(_) => "invalid_refresh_token",
            Self::Throttled(_) | Self::SignUpThrottled(_) => "throttled",
            Self::Busy(_) => "busy",
            Self::RefreshTooSoon(_) => "too_soon",
            Self::Database(_) | Self::Internal(_) => "error",
        }
    }

    /// Whether the throttle (THROTTLE_*) refused this call.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::SignUpThrottled(_))
    }

    /// An internal error with a cause for the log.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self::Internal(cause.into())
    }
}

impl From<DbErr> for AuthError {
    fn from(error: DbErr) -> Self {
        Self::Database(error.into())
    }
}

impl ServiceError for AuthError {
    const DOMAIN: &'static str = ERROR_DOMAIN;

    fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::EmailTaken => Code::AlreadyExists,
            Self::InvalidCredentials
            | Self::WrongPassword
            | Self::InvalidToken(_)
            | Self::InvalidRefreshToken(_) => Code::Unauthenticated,
            Self::SessionNotFound => Code::NotFound,
            Self::Throttled(_)
            | Self::SignUpThrottled(_)
            | Self::Busy(_)
            | Self::RefreshTooSoon(_) => Code::ResourceExhausted,
            Self::Database(error) => error.code(),
            Self::Internal(_) => Code::Internal,
        }
    }

    fn reason(&self) -> ErrorReason {
        match self {
            Self::InvalidArgument(_) => ErrorReason::InvalidArgument,
            Self::EmailTaken => ErrorReason::EmailAlreadyRegistered,
            Self::InvalidCredentials | Self::WrongPassword => ErrorReason::InvalidCredentials,
            Self::SessionNotFound => ErrorReason::SessionNotFound,
            Self::InvalidToken(_) => ErrorReason::InvalidToken,
            Self::InvalidRefreshToken(_) => ErrorReason::InvalidRefreshToken,
            Self::Throttled(_) | Self::SignUpThrottled(_) => ErrorReason::TooManyAttempts,
            Self::Busy(_) | Self::RefreshTooSoon(_) => ErrorReason::TooManyRequests,
            Self::Database(error) => error.reason(),
            Self::Internal(_) => ErrorReason::Internal,
        }
    }

    fn public_message(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidArgument(violations) => violations.summary().into(),
            Self::EmailTaken => "an account with this email already exists".into(),
            Self::InvalidCredentials => "invalid email or password".into(),
            Self::WrongPassword => "the current password is not right".into(),
            Self::SessionNotFound => "no such session: it may have ended already".into(),
            Self::InvalidToken(_) => "missing, invalid or expired access token".into(),
            Self::InvalidRefreshToken(_) => {
                "invalid or expired refresh token: sign in again".into()
            }
            Self::Throttled(delay) => format!(
                "too many failed sign-in attempts: try again in {} s",
                delay.as_secs().max(1)
            )
            .into(),
            Self::SignUpThrottled(delay) => format!(
                "too many sign-ups from this address: try again in {} s",
                delay.as_secs().max(1)
            )
            .into(),
            Self::Busy(delay) => format!(
                "too many sign-ins in progress: try again in {} s",
                delay.as_secs().max(1)
            )
            .into(),
            Self::RefreshTooSoon(delay) => format!(
                "this session refreshed its tokens moments ago (REFRESH_MIN_INTERVAL_MS): try \
                 again in {} ms",
                delay.as_millis().max(1)
            )
            .into(),
            Self::Database(error) => error.public_message(),
            Self::Internal(_) => INTERNAL_MESSAGE.into(),
        }
    }

    fn log_level(&self) -> LogLevel {
        match self {
            Self::InvalidArgument(_)
            | Self::EmailTaken
            | Self::InvalidCredentials
            | Self::WrongPassword
            | Self::SessionNotFound
            | Self::Throttled(_)
            | Self::SignUpThrottled(_)
            | Self::Busy(_)
            | Self::RefreshTooSoon(_) => LogLevel::None,
            Self::InvalidToken(_) | Self::InvalidRefreshToken(_) => LogLevel::Info,
            Self::Database(_) | Self::Internal(_) => LogLevel::Error,
        }
    }

    fn extra(&self) -> Extra<'_> {
        match self {
            Self::InvalidArgument(violations) => Extra::BadRequest(violations),
            Self::Throttled(delay)
            | Self::SignUpThrottled(delay)
            | Self::Busy(delay)
            | Self::RefreshTooSoon(delay) => Extra::RetryAfter(*delay),
            _ => Extra::None,
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        to_status(&error)
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
                AuthError::WrongPassword,
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
            ),
            (
                AuthError::SessionNotFound,
                Code::NotFound,
                "SESSION_NOT_FOUND",
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
                AuthError::Busy(Duration::from_secs(5)),
                Code::ResourceExhausted,
                "TOO_MANY_REQUESTS",
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
