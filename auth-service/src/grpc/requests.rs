//! Every request of the API becomes domain values here, in one place: each conversion parses
//! every field, collects every violation (INVALID_ARGUMENT lists them all at once), and only
//! then hands the handler values that are already valid.

use crate::{
    domain::{Credentials, DisplayName, Email, NewAccount, Password},
    error::AuthError,
};
use access_token::{ExposeSecret, SecretString};
use grpc_edge::violations::FieldViolations;
use todo_api::todo::auth::v1 as pb;

/// A token the client presents (refresh token, or any token to introspect): trimmed, present.
/// Its value is a secret: `Debug` never shows it, and nothing logs it.
#[derive(Debug)]
pub struct Presented(SecretString);

impl Presented {
    fn parse(raw: &str, field: &str, v: &mut FieldViolations) -> Option<Self> {
        let token = raw.trim();
        if token.is_empty() {
            v.add(field, "is required");
            return None;
        }
        Some(Self(token.into()))
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A valid Introspect request.
#[derive(Debug)]
pub struct Introspection {
    pub token: Presented,
    /// `access_token`, `refresh_token` or empty (RFC 7662's `token_type_hint`).
    pub hint: String,
}

impl TryFrom<pb::SignUpRequest> for NewAccount {
    type Error = AuthError;

    fn try_from(req: pb::SignUpRequest) -> Result<Self, AuthError> {
        let mut v = FieldViolations::new();
        let email = Email::parse(&req.email, "email", &mut v);
        let password = Password::parse_new(req.password, "password", &mut v);
        let display_name = DisplayName::parse(req.display_name, "display_name", &mut v);
        let account = match (email, password, display_name) {
            (Some(email), Some(password), Some(display_name)) => Some(Self {
                email,
                password,
                display_name,
            }),
            _ => None,
        };
        v.finish(account).map_err(AuthError::InvalidArgument)
    }
}

impl TryFrom<pb::SignInRequest> for Credentials {
    type Error = AuthError;

    fn try_from(req: pb::SignInRequest) -> Result<Self, AuthError> {
        let mut v = FieldViolations::new();
        let email = Email::parse(&req.email, "email", &mut v);
        let password = Password::parse_existing(req.password, "password", &mut v);
        let credentials = match (email, password) {
            (Some(email), Some(password)) => Some(Self { email, password }),
            _ => None,
        };
        v.finish(credentials).map_err(AuthError::InvalidArgument)
    }
}

impl TryFrom<pb::RefreshRequest> for Presented {
    type Error = AuthError;

    fn try_from(req: pb::RefreshRequest) -> Result<Self, AuthError> {
        let mut v = FieldViolations::new();
        let token = Presented::parse(&req.refresh_token, "refresh_token", &mut v);
        v.finish(token).map_err(AuthError::InvalidArgument)
    }
}

impl TryFrom<pb::IntrospectRequest> for Introspection {
    type Error = AuthError;

    fn try_from(req: pb::IntrospectRequest) -> Result<Self, AuthError> {
        let mut v = FieldViolations::new();
        let token = Presented::parse(&req.token, "token", &mut v);
        let introspection = token.map(|token| Self {
            token,
            hint: req.token_type_hint,
        });
        v.finish(introspection).map_err(AuthError::InvalidArgument)
    }
}

/// SignOut names its session by refresh token, or (none sent) by the bearer access token.
pub fn sign_out_refresh_token(req: pb::SignOutRequest) -> Option<Presented> {
    Presented::parse(
        &req.refresh_token,
        "refresh_token",
        &mut FieldViolations::new(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn violated(error: AuthError) -> Vec<String> {
        let AuthError::InvalidArgument(v) = error else {
            panic!("{error:?}");
        };
        v.to_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_sign_up_lists_every_invalid_field_at_once() {
        let req = pb::SignUpRequest {
            email: "not an email".into(),
            password: "short".into(),
            display_name: Some("x".repeat(101)),
        };
        assert_eq!(
            violated(NewAccount::try_from(req).unwrap_err()),
            ["email", "password", "display_name"]
        );
    }

    #[test]
    fn presented_tokens_are_trimmed_required_and_never_printed() {
        let req = pb::RefreshRequest {
            refresh_token: "  secret-token ".into(),
        };
        let token = Presented::try_from(req).unwrap();
        assert_eq!(token.expose(), "secret-token");
        assert!(!format!("{token:?}").contains("secret"));
        let blank = pb::RefreshRequest {
            refresh_token: " ".into(),
        };
        assert_eq!(
            violated(Presented::try_from(blank).unwrap_err()),
            ["refresh_token"]
        );
    }
}
