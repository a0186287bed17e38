//! Building `tonic::Status` values with the rich error model (AIP-193): every error carries a
//! `google.rpc.ErrorInfo` with a stable UPPER_SNAKE `reason`; INVALID_ARGUMENT also carries
//! `google.rpc.BadRequest` field violations.

use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// A status with an `ErrorInfo` of `reason` in `domain`.
pub fn with_reason(code: Code, message: impl Into<String>, reason: &str, domain: &str) -> Status {
    let details = ErrorDetails::with_error_info(reason, domain, std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

/// RESOURCE_EXHAUSTED with a `RetryInfo` telling the client when to try again.
pub fn retry_after(
    message: impl Into<String>,
    reason: &str,
    domain: &str,
    delay: Duration,
) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(delay));
    details.set_error_info(reason, domain, std::collections::HashMap::new());
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// Field violations collected while parsing a request.
#[derive(Debug, Default, Clone)]
pub struct FieldViolations(Vec<FieldViolation>);

impl FieldViolations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid, with a message a person can act on.
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// INVALID_ARGUMENT listing every violation, with `ErrorInfo` `reason` in `domain`.
    pub fn into_status(self, reason: &str, domain: &str) -> Status {
        let message = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::with_bad_request(self.0);
        details.set_error_info(reason, domain, std::collections::HashMap::new());
        Status::with_error_details(Code::InvalidArgument, message, details)
    }

    /// `Ok(value)` when nothing was recorded, else the INVALID_ARGUMENT status.
    pub fn finish<T>(self, value: T, reason: &str, domain: &str) -> Result<T, Status> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self.into_status(reason, domain))
        }
    }
}

/// The bearer token of the `authorization` metadata entry, if there is a well-formed one.
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    parse_bearer(metadata.get("authorization")?.to_str().ok()?)
}

/// [`bearer_token`] for plain HTTP headers (tower layers in front of a gRPC service).
pub fn bearer_token_in_headers(headers: &http::HeaderMap) -> Option<&str> {
    parse_bearer(headers.get(http::header::AUTHORIZATION)?.to_str().ok()?)
}

fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_violation_and_a_reason() {
        let mut violations = FieldViolations::new();
        violations.add("email", "must be an email address");
        violations.add("password", "must be at least 8 characters");
        let status = violations.into_status("INVALID_SIGN_UP", "auth.todo");
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().map(|b| b.field_violations.len()),
            Some(2)
        );
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("INVALID_SIGN_UP")
        );
        assert!(status.message().contains("email: must be an email address"));
    }

    #[test]
    fn bearer_token_accepts_any_scheme_case_and_rejects_other_schemes() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(bearer_token(&md), None);
        md.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&md), Some("abc"));
        md.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&md), None);
        md.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&md), None);
    }
}
