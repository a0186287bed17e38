//! Every request of the API becomes domain values here, in one place: each conversion parses
//! every field, collects every violation (INVALID_ARGUMENT lists them all at once), and only
//! then hands the handler values that are already valid.

use crate::{
    domain::{
        Credentials, Device, DisplayName, Email, NewAccount, Password, PasswordChange,
        ProfileChange,
    },
    error::AuthError,
};
use access_token::{ExposeSecret, SecretString};
use grpc_edge::violations::FieldViolations;
use std::net::IpAddr;
use todo_api::todo::auth::v1 as pb;
use tonic::metadata::MetadataMap;
use uuid::Uuid;

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

impl TryFrom<pb::ChangePasswordRequest> for PasswordChange {
    type Error = AuthError;

    fn try_from(req: pb::ChangePasswordRequest) -> Result<Self, AuthError> {
        let mut v = FieldViolations::new();
        let current = Password::parse_existing(req.current_password, "current_password", &mut v);
        let new = Password::parse_new(req.new_password, "new_password", &mut v);
        let change = match (current, new) {
            (Some(current), Some(new)) => Some(Self {
                current,
                new,
                sign_out_others: req.sign_out_other_sessions.unwrap_or(true),
            }),
            _ => None,
        };
        v.finish(change).map_err(AuthError::InvalidArgument)
    }
}

/// The password a DeleteAccount confirms with.
pub fn deletion_password(req: pb::DeleteAccountRequest) -> Result<Password, AuthError> {
    let mut v = FieldViolations::new();
    let password = Password::parse_existing(req.current_password, "current_password", &mut v);
    v.finish(password).map_err(AuthError::InvalidArgument)
}

/// The session a RevokeSession names.
pub fn session_to_revoke(req: &pb::RevokeSessionRequest) -> Result<Uuid, AuthError> {
    let mut v = FieldViolations::new();
    let raw = req.session_id.trim();
    let id = if raw.is_empty() {
        v.add("session_id", "is required");
        None
    } else {
        let parsed = Uuid::parse_str(raw).ok();
        if parsed.is_none() {
            v.add(
                "session_id",
                "must be a session id from ListSessions (a UUID)",
            );
        }
        parsed
    };
    v.finish(id).map_err(AuthError::InvalidArgument)
}

/// Fields of UpdateProfileRequest that `update_mask` may name.
const PROFILE_FIELDS: [&str; 1] = ["display_name"];

impl TryFrom<pb::UpdateProfileRequest> for ProfileChange {
    type Error = AuthError;

    fn try_from(req: pb::UpdateProfileRequest) -> Result<Self, AuthError> {
        let mut v = FieldViolations::new();
        let paths = req.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let unknown: Vec<&str> = paths
            .iter()
            .map(String::as_str)
            .filter(|path| !PROFILE_FIELDS.contains(path))
            .collect();
        if !unknown.is_empty() {
            v.add(
                "update_mask",
                format!(
                    "unknown field {}: only {} can be updated",
                    unknown.join(", "),
                    PROFILE_FIELDS.join(", ")
                ),
            );
        }
        // Without a mask, the fields set to something other than their default (AIP-134).
        let named = |field: &str, set: bool| {
            if paths.is_empty() {
                set
            } else {
                paths.iter().any(|p| p == field)
            }
        };
        let display_name = if named("display_name", !req.display_name.is_empty()) {
            DisplayName::parse(Some(req.display_name), "display_name", &mut v).map(Some)
        } else {
            Some(None)
        };
        let change = display_name.map(|display_name| Self { display_name });
        v.finish(change).map_err(AuthError::InvalidArgument)
    }
}

/// Where a request comes from, for the session it signs in or refreshes: the client's address
/// (`address`, through trusted proxies) and its `user-agent` header, or grpc-web's
/// `x-user-agent` when there is no `user-agent` (browsers send their own `user-agent`; a
/// grpc-web client that cannot set it says who it is in `x-user-agent`).
pub fn device(address: Option<IpAddr>, metadata: &MetadataMap) -> Device {
    let header = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
    Device::new(
        address,
        header("user-agent").or_else(|| header("x-user-agent")),
    )
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
    fn a_password_change_checks_both_passwords_and_signs_out_others_by_default() {
        let req = pb::ChangePasswordRequest {
            current_password: String::new(),
            new_password: "short".into(),
            sign_out_other_sessions: None,
        };
        assert_eq!(
            violated(PasswordChange::try_from(req).unwrap_err()),
            ["current_password", "new_password"]
        );
        let req = pb::ChangePasswordRequest {
            current_password: "old password".into(),
            new_password: "new password".into(),
            sign_out_other_sessions: None,
        };
        assert!(PasswordChange::try_from(req).unwrap().sign_out_others);
        let req = pb::ChangePasswordRequest {
            current_password: "old password".into(),
            new_password: "new password".into(),
            sign_out_other_sessions: Some(false),
        };
        assert!(!PasswordChange::try_from(req).unwrap().sign_out_others);
    }

    #[test]
    fn a_session_to_revoke_is_a_uuid() {
        for bad in ["", "  ", "not-a-uuid"] {
            let req = pb::RevokeSessionRequest {
                session_id: bad.into(),
            };
            assert_eq!(
                violated(session_to_revoke(&req).unwrap_err()),
                ["session_id"]
            );
        }
        let id = Uuid::now_v7();
        let req = pb::RevokeSessionRequest {
            session_id: id.to_string(),
        };
        assert_eq!(session_to_revoke(&req).unwrap(), id);
    }

    #[test]
    fn a_profile_change_follows_its_field_mask() {
        let mask = |paths: &[&str]| {
            Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            })
        };
        let change = |display_name: &str, update_mask| {
            ProfileChange::try_from(pb::UpdateProfileRequest {
                display_name: display_name.into(),
                update_mask,
            })
        };
        let set = change(" Ada ", mask(&["display_name"])).unwrap();
        assert_eq!(set.display_name.unwrap().as_str(), "Ada");
        let unmasked = change("Ada", None).unwrap();
        assert_eq!(unmasked.display_name.unwrap().as_str(), "Ada");
        let cleared = change("", mask(&["display_name"])).unwrap();
        assert_eq!(cleared.display_name.unwrap().as_str(), "");
        assert!(
            change("", None).unwrap().display_name.is_none(),
            "left alone"
        );
        assert_eq!(
            violated(change("Ada", mask(&["email"])).unwrap_err()),
            ["update_mask"]
        );
        assert_eq!(
            violated(change(&"x".repeat(101), None).unwrap_err()),
            ["display_name"]
        );
    }

    #[test]
    fn the_device_prefers_user_agent_over_x_user_agent() {
        let mut metadata = MetadataMap::new();
        metadata.insert("x-user-agent", "connect-es/2.2.0".parse().unwrap());
        assert_eq!(
            device(None, &metadata).user_agent.as_deref(),
            Some("connect-es/2.2.0")
        );
        metadata.insert("user-agent", "Mozilla/5.0 (X11; Linux)".parse().unwrap());
        assert_eq!(
            device(None, &metadata).user_agent.as_deref(),
            Some("Mozilla/5.0 (X11; Linux)")
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
