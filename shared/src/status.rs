//! Request-side helpers of the rich error model: the field violations a parse collects (sent
//! as `google.rpc.BadRequest` by `crate::error`), and the bearer token of a request.

use tonic_types::FieldViolation;

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

    /// The parsed `value` when nothing was recorded, else these violations (for the
    /// service's INVALID_ARGUMENT error).
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Self> {
        match value {
            Some(value) if self.is_empty() => Ok(value),
            _ => Err(self),
        }
    }

    /// The violations, for a `google.rpc.BadRequest`.
    pub fn to_vec(&self) -> Vec<FieldViolation> {
        self.0.clone()
    }

    /// One line naming every violation, for the status message.
    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ")
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
    fn violations_are_kept_in_order_and_summed_up_in_one_line() {
        let mut violations = FieldViolations::new();
        assert!(violations.is_empty());
        violations.add("email", "must be an email address");
        violations.add("password", "must be at least 8 characters");
        assert_eq!(violations.to_vec().len(), 2);
        assert_eq!(
            violations.summary(),
            "email: must be an email address; password: must be at least 8 characters"
        );
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
