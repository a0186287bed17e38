//! The auth-service's values: those that can only be built valid (parsed once at the edge of
//! each RPC: `Email`, `Password`, `DisplayName`, the requests made of them), and what the rules
//! answer with (a `User`, a `TokenPair`, an `ActiveToken`, a `PublicKey`).

use access_token::{ExposeSecret, SecretString};
use chrono::{DateTime, Utc};
use grpc_edge::violations::FieldViolations;

use uuid::Uuid;

/// Shortest accepted password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest accepted password, in characters: longer input is refused before hashing.
pub const PASSWORD_MAX_CHARS: usize = 256;
/// Longest accepted email, in bytes (RFC 5321 path limit).
pub const EMAIL_MAX_BYTES: usize = 254;
/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;
/// Longest user agent a session keeps, in characters (longer ones are cut).
pub const USER_AGENT_MAX_CHARS: usize = 256;

/// A trimmed, lower-cased email address of plausible shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses `raw`, recording a violation for `field` when it is not an email address.
    pub fn parse(raw: &str, field: &str, violations: &mut FieldViolations) -> Option<Self> {
        let email = raw.trim().to_lowercase();
        let problem = if email.is_empty() {
            Some("is required".to_owned())
        } else if email.len() > EMAIL_MAX_BYTES {
            Some(format!("must be at most {EMAIL_MAX_BYTES} bytes"))
        } else if !looks_like_email(&email) {
            Some("must be an email address like name@example.com".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => {
                violations.add(field, problem);
                None
            }
            None => Some(Self(email)),
        }
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A password of acceptable length. A secret: its `Debug` never shows it, and its memory is
/// zeroed when dropped.
#[derive(Clone, Debug)]
pub struct Password(SecretString);

impl Password {
    /// A password for sign-up: 8 to 256 characters.
    pub fn parse_new(raw: String, field: &str, violations: &mut FieldViolations) -> Option<Self> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            violations.add(
                field,
                format!("must be at least {PASSWORD_MIN_CHARS} characters"),
            );
            None
        } else if chars > PASSWORD_MAX_CHARS {
            violations.add(
                field,
                format!("must be at most {PASSWORD_MAX_CHARS} characters"),
            );
            None
        } else {
            Some(Self(raw.into()))
        }
    }

    /// A password for sign-in: only emptiness and the upper bound are checked (a too-short
    /// password simply fails to match), so nobody can make the server hash a megabyte.
    pub fn parse_existing(
        raw: String,
        field: &str,
        violations: &mut FieldViolations,
    ) -> Option<Self> {
        if raw.is_empty() {
            violations.add(field, "is required");
            None
        } else if raw.chars().count() > PASSWORD_MAX_CHARS {
            violations.add(
                field,
                format!("must be at most {PASSWORD_MAX_CHARS} characters"),
            );
            None
        } else {
            Some(Self(raw.into()))
        }
    }

    /// The password bytes, for hashing only.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }

    /// Whether `other` is the same password, compared in constant time (for equal lengths).
    pub fn is_same_as(&self, other: &Password) -> bool {
        use subtle::ConstantTimeEq;
        self.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

/// A trimmed display name without control characters, at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses an optional display name (absent means empty).
    pub fn parse(
        raw: Option<String>,
        field: &str,
        violations: &mut FieldViolations,
    ) -> Option<Self> {
        let name = raw.as_deref().unwrap_or_default().trim();
        if name.chars().count() > DISPLAY_NAME_MAX_CHARS {
            violations.add(
                field,
                format!("must be at most {DISPLAY_NAME_MAX_CHARS} characters"),
            );
            None
        } else if name.chars().any(char::is_control) {
            violations.add(field, "must not contain control characters");
            None
        } else {
            Some(Self(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// What the rules take and give back: requests already parsed, and what they answer with.

/// A valid sign-up request.
#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub display_name: DisplayName,
}

/// A valid sign-in request.
#[derive(Debug)]
pub struct Credentials {
    pub email: Email,
    pub password: Password,
}

/// A valid ChangePassword request.
#[derive(Debug)]
pub struct PasswordChange {
    pub current: Password,
    pub new: Password,
    /// Sign out every other session of the account.
    pub sign_out_others: bool,
}

/// A valid UpdateProfile request: the fields to change, `None` for those left alone.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub display_name: Option<DisplayName>,
}

/// Where a session is used from, as its owner sees it in ListSessions. Personal data: only
/// the owner is shown it, nothing logs it, and a signed-out session forgets it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// The client's address, as seen through the trusted proxies.
    pub address: Option<String>,
    /// Its user agent, at most [`USER_AGENT_MAX_CHARS`] characters.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").finish_non_exhaustive()
    }
}

impl Device {
    /// A device at `address` with `user_agent` (trimmed, without control characters, cut to
    /// [`USER_AGENT_MAX_CHARS`]; absent when nothing is left).
    pub fn new(address: Option<std::net::IpAddr>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(|raw| {
                raw.chars()
                    .filter(|c| !c.is_control())
                    .take(USER_AGENT_MAX_CHARS)
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|agent| !agent.is_empty());
        Self {
            address: address.map(|ip| ip.to_canonical().to_string()),
            user_agent,
        }
    }
}

/// A live session, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub device: Device,
    /// The session of the access token that asked.
    pub current: bool,
}

/// An account, as the rest of the service sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    /// Trimmed and lower-cased.
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

/// A signed access token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The JWT.
    pub token: String,
    /// Its `exp`.
    pub expires_at: DateTime<Utc>,
}

/// A new access token with the refresh token that renews it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access: AccessToken,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

/// What Introspect reports for an active token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub user_id: Uuid,
    pub email: String,
    pub session_id: Uuid,
    pub token_type: &'static str,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub jti: Option<String>,
}

/// A public key as published to other services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Key id, as in token headers.
    pub kid: String,
    /// Always `EdDSA` today.
    pub algorithm: &'static str,
    /// 32 raw bytes.
    pub public_key: Vec<u8>,
    /// After this, no token it signed is still valid.
    pub expire_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let mut v = FieldViolations::new();
        let email = Email::parse("  Ada@Example.COM ", "email", &mut v).unwrap();
        assert_eq!(email.as_str(), "ada@example.com");
        assert!(v.is_empty());
    }

    #[test]
    fn malformed_emails_are_refused() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            let mut v = FieldViolations::new();
            assert!(
                Email::parse(raw, "email", &mut v).is_none(),
                "{raw:?} accepted"
            );
            assert!(!v.is_empty());
        }
    }

    #[test]
    fn passwords_must_be_between_8_and_256_characters() {
        let mut v = FieldViolations::new();
        assert!(Password::parse_new("short".into(), "password", &mut v).is_none());
        assert!(Password::parse_new("x".repeat(257), "password", &mut v).is_none());
        assert!(Password::parse_new("é".repeat(256), "password", &mut v).is_some());
        assert!(Password::parse_existing("x".repeat(10_000), "password", &mut v).is_none());
    }

    #[test]
    fn user_agents_are_cleaned_and_bounded() {
        let long = "x".repeat(USER_AGENT_MAX_CHARS + 50);
        let device = Device::new(None, Some(&long));
        assert_eq!(
            device.user_agent.map(|a| a.chars().count()),
            Some(USER_AGENT_MAX_CHARS)
        );
        let device = Device::new(None, Some(" grpcurl/1.9\u{7}\n "));
        assert_eq!(device.user_agent.as_deref(), Some("grpcurl/1.9"));
        assert_eq!(Device::new(None, Some("  ")).user_agent, None);
        let mapped = "::ffff:127.0.0.2".parse().ok();
        assert_eq!(
            Device::new(mapped, None).address.as_deref(),
            Some("127.0.0.2")
        );
    }

    #[test]
    fn passwords_compare_by_value() {
        let mut v = FieldViolations::new();
        let a = Password::parse_new("correct horse".into(), "a", &mut v).unwrap();
        let b = Password::parse_new("correct horse".into(), "b", &mut v).unwrap();
        let c = Password::parse_new("correct horsf".into(), "c", &mut v).unwrap();
        assert!(a.is_same_as(&b));
        assert!(!a.is_same_as(&c));
    }

    #[test]
    fn password_debug_never_shows_the_password() {
        let mut v = FieldViolations::new();
        let p = Password::parse_new("correct horse".into(), "password", &mut v).unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
