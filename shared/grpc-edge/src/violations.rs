//! The field violations a request parse collects, sent as `google.rpc.BadRequest` by
//! [`crate::status`].

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
}
