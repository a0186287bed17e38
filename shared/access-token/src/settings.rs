//! What both services must agree on about access tokens, as flags with environment fallbacks
//! (flattened into each service's clap parser).

use crate::{MIN_SHARED_SECRET_BYTES, TokenVerifier};
use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// How access tokens are signed (and so how they are verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SigningMode {
    /// Ed25519 keys kept by the auth-service, rotated on a schedule; public keys published.
    #[default]
    #[value(name = "eddsa")]
    EdDsa,
    /// One shared secret (HS256), the original design's `BETTER_AUTH_SECRET`.
    #[value(name = "hs256")]
    Hs256,
}

/// What both services must agree on about access tokens: who issues them, for whom, how
/// they are signed. Set the same values for both services.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// `iss` of every access token.
    #[arg(long, env = "JWT_ISSUER", default_value = "todo-auth")]
    pub jwt_issuer: String,

    /// `aud` of every access token.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "todo-api")]
    pub jwt_audience: String,

    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u32,

    /// `eddsa` (default) or `hs256`.
    #[arg(long, env = "SIGNING_ALGORITHM", value_enum, default_value_t = SigningMode::EdDsa)]
    pub signing_algorithm: SigningMode,

    /// Shared HS256 secret (at least 32 bytes); required when SIGNING_ALGORITHM=hs256.
    #[arg(long, env = "BETTER_AUTH_SECRET", hide_env_values = true)]
    pub shared_secret: Option<SecretString>,
}

/// HS256 without a usable secret.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "SIGNING_ALGORITHM=hs256 needs BETTER_AUTH_SECRET of at least {MIN_SHARED_SECRET_BYTES} bytes \
     (e.g. `openssl rand -base64 48`); or leave SIGNING_ALGORITHM unset for Ed25519 keys"
)]
pub struct WeakSharedSecret;

impl JwtArgs {
    /// A verifier for tokens with this issuer and audience.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(&self.jwt_issuer, &self.jwt_audience, self.jwt_leeway_secs)
    }

    /// The shared secret of HS256 mode, checked for length; `None` in EdDSA mode.
    pub fn hs256_secret(&self) -> Result<Option<&[u8]>, WeakSharedSecret> {
        match self.signing_algorithm {
            SigningMode::EdDsa => Ok(None),
            SigningMode::Hs256 => match &self.shared_secret {
                Some(secret) if secret.expose_secret().len() >= MIN_SHARED_SECRET_BYTES => {
                    Ok(Some(secret.expose_secret().as_bytes()))
                }
                _ => Err(WeakSharedSecret),
            },
        }
    }
}
