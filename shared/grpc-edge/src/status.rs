//! The one boundary from a service's errors to `tonic::Status` (the README's error table,
//! "Errors carry a stable `google.rpc.ErrorInfo.reason`").
//!
//! Each service has one error enum and implements [`ServiceError`] on it with exhaustive
//! matches: per variant its gRPC code, stable reason, public message and how loudly the
//! internal cause is logged. [`to_status`] does the rest the same way for both services: the
//! cause (the error's `Display`, with whatever it wraps) goes to the log, the client gets the
//! code, the message and an `ErrorInfo`, plus `BadRequest` or `RetryInfo` where they apply.
//!
//! Reasons are [`ErrorReason`] values, declared once in `proto/todo/errors/v1/errors.proto`,
//! so the services and the web app cannot disagree on their names.
//!
//! Database failures, classified once by `service_db` ([`DatabaseError`]), answer
//! UNAVAILABLE when the database cannot be reached or is overloaded (retry later), INTERNAL
//! otherwise (a bug): [`DatabaseStatus`].

use crate::violations::FieldViolations;
use service_db::DatabaseError;
use std::{borrow::Cow, collections::HashMap, time::Duration};
pub use todo_api::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// How the internal cause of an error is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// An ordinary refusal (bad input, a wrong password, a stale etag): nothing to log beyond
    /// the RPC's own span.
    None,
    /// A refusal whose reason an operator may want (why a token was refused).
    Info,
    /// Degraded: a dependency is down, the service copes.
    Warn,
    /// An outage or a bug.
    Error,
}

/// Details beyond the `ErrorInfo`.
#[derive(Debug, Clone, Copy)]
pub enum Extra<'a> {
    /// Nothing more.
    None,
    /// `google.rpc.BadRequest`: the invalid fields.
    BadRequest(&'a FieldViolations),
    /// `google.rpc.RetryInfo`: when to try again.
    RetryAfter(Duration),
}

/// A service's error as the client sees it. Implement with exhaustive matches.
pub trait ServiceError: std::fmt::Display {
    /// `ErrorInfo.domain`: the API's package, e.g. `todo.task.v1`.
    const DOMAIN: &'static str;

    /// The gRPC status code.
    fn code(&self) -> Code;

    /// The stable `ErrorInfo.reason` clients branch on (its proto name, UPPER_SNAKE).
    fn reason(&self) -> ErrorReason;

    /// What the client reads: never a cause, a token, an email or a secret.
    fn public_message(&self) -> Cow<'static, str>;

    /// How loudly the internal cause (`Display`) is logged.
    fn log_level(&self) -> LogLevel;

    /// Details beyond the `ErrorInfo`.
    fn extra(&self) -> Extra<'_> {
        Extra::None
    }
}

/// The status a client gets for `error`; its cause goes to the log.
pub fn to_status<E: ServiceError>(error: &E) -> Status {
    let reason = error.reason().as_str_name();
    match error.log_level() {
        LogLevel::None => {}
        LogLevel::Info => tracing::info!(%error, reason, "request refused"),
        LogLevel::Warn => tracing::warn!(%error, reason, "request failed"),
        LogLevel::Error => tracing::error!(%error, reason, "request failed"),
    }
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, E::DOMAIN, HashMap::new());
    match error.extra() {
        Extra::None => {}
        Extra::BadRequest(violations) => {
            details.set_bad_request(violations.to_vec());
        }
        Extra::RetryAfter(delay) => {
            details.set_retry_info(Some(delay));
        }
    }
    Status::with_error_details(error.code(), error.public_message(), details)
}

/// How a database failure looks to a client: UNAVAILABLE with `DATABASE_UNAVAILABLE` (retry
/// later), or INTERNAL for a bug. Nothing of the cause is in the message.
pub trait DatabaseStatus {
    /// UNAVAILABLE or INTERNAL.
    fn code(&self) -> Code;
    /// `DATABASE_UNAVAILABLE` or `INTERNAL`.
    fn reason(&self) -> ErrorReason;
    /// The client's message: nothing of the cause.
    fn public_message(&self) -> Cow<'static, str>;
}

impl DatabaseStatus for DatabaseError {
    fn code(&self) -> Code {
        match self {
            Self::Unavailable(_) => Code::Unavailable,
            Self::Failed(_) => Code::Internal,
        }
    }

    fn reason(&self) -> ErrorReason {
        match self {
            Self::Unavailable(_) => ErrorReason::DatabaseUnavailable,
            Self::Failed(_) => ErrorReason::Internal,
        }
    }

    fn public_message(&self) -> Cow<'static, str> {
        match self {
            Self::Unavailable(_) => UNAVAILABLE_MESSAGE.into(),
            Self::Failed(_) => INTERNAL_MESSAGE.into(),
        }
    }
}

/// The message of every bug.
pub const INTERNAL_MESSAGE: &str = "internal error";
/// The message of every outage of a dependency the client can do nothing about.
pub const UNAVAILABLE_MESSAGE: &str = "service temporarily unavailable, retry later";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use sea_orm::DbErr;

    #[test]
    fn a_lost_connection_is_unavailable_and_a_bad_statement_is_internal() {
        let lost = DatabaseError::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        assert_eq!(
            (lost.code(), lost.reason()),
            (Code::Unavailable, ErrorReason::DatabaseUnavailable)
        );
        let bug = DatabaseError::from(DbErr::Custom("no such column: secret".into()));
        assert_eq!(
            (bug.code(), bug.reason()),
            (Code::Internal, ErrorReason::Internal)
        );
        assert!(!bug.public_message().contains("secret"));
    }
}
