//! Access-token claims and their verification, shared by the auth-service (Introspect,
//! GetCurrentUser) and the task-service interceptor.
//!
//! Verification checks, in order: the header parses and names a known `kid`; the header's
//! algorithm is the one that key was made for (never `none`, no HS/EdDSA confusion); the
//! signature; `iss`; `aud`; and `nbf`/`exp` against an injected `now` with a small leeway.
//!
//! [`JwtArgs`] are the settings both services must agree on (issuer, audience, algorithm).

mod settings;

pub use secrecy::{ExposeSecret, SecretString};
pub use settings::{JwtArgs, SigningMode, WeakSharedSecret};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, fmt};

/// The `kid` of the single key used in shared-secret (HS256) mode.
pub const SHARED_SECRET_KID: &str = "shared-secret";

/// Shared secrets shorter than this are refused at start-up.
pub const MIN_SHARED_SECRET_BYTES: usize = 32;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id (UUID).
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Session id.
    pub sid: String,
}

/// The audience of service tokens: calls to the task-service's internal API.
pub const SERVICE_AUDIENCE: &str = "todo-task-internal";

/// The claims of a service token: one service of the pair calling another's internal API
/// (the auth-service asking the task-service to purge a deleted account). No user, no
/// session: `svc` marks it as a service's, and a user's access token, which has none, never
/// passes for one (nor does a service token pass for a user's: it has no `email` or `sid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    /// Issuer (the auth-service's `JWT_ISSUER`).
    pub iss: String,
    /// Always [`SERVICE_AUDIENCE`].
    pub aud: String,
    /// The calling service, e.g. `auth-service`.
    pub sub: String,
    /// The calling service again: the claim that makes this a service token.
    pub svc: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
}

/// Claims with a validity window, which [`TokenVerifier::verify_claims`] checks.
pub trait Timed {
    /// Not before, Unix seconds.
    fn nbf(&self) -> i64;
    /// Expires at, Unix seconds.
    fn exp(&self) -> i64;
}

impl Timed for AccessClaims {
    fn nbf(&self) -> i64 {
        self.nbf
    }
    fn exp(&self) -> i64 {
        self.exp
    }
}

impl Timed for ServiceClaims {
    fn nbf(&self) -> i64 {
        self.nbf
    }
    fn exp(&self) -> i64 {
        self.exp
    }
}

/// Why a token was refused. Goes to the log only: clients get one generic message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a JWT, or a header/claims set that does not parse (this includes `alg: none`).
    #[error("malformed token")]
    Malformed,
    /// No `kid`, or one no known key has.
    #[error("unknown signing key {0:?}")]
    UnknownKey(Option<String>),
    /// The header's algorithm is not the one the key was made for.
    #[error("algorithm {0:?} not allowed for this key")]
    AlgorithmNotAllowed(Algorithm),
    /// Bad signature, issuer or audience.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past `exp` (plus leeway).
    #[error("token expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("token not yet valid")]
    NotYetValid,
}

impl VerifyError {
    /// The kind of failure, as a metric label (a fixed set).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey(_) => "unknown_key",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::Invalid(_) => "invalid",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
        }
    }
}

/// A public (or, in HS256 mode, shared) key that verifies tokens carrying its `kid`.
#[derive(Clone)]
pub struct VerificationKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The keys a verifier trusts, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct VerificationKeys {
    keys: HashMap<String, VerificationKey>,
}

impl VerificationKeys {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key set of shared-secret (HS256) mode.
    pub fn shared_secret(secret: &[u8]) -> Self {
        let mut set = Self::new();
        set.keys.insert(
            SHARED_SECRET_KID.to_owned(),
            VerificationKey {
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            },
        );
        set
    }

    /// Adds an Ed25519 public key (32 raw bytes).
    pub fn insert_ed25519(&mut self, kid: impl Into<String>, public_key: &[u8]) {
        self.keys.insert(
            kid.into(),
            VerificationKey {
                algorithm: Algorithm::EdDSA,
                key: DecodingKey::from_ed_der(public_key),
            },
        );
    }

    /// Whether a key with this `kid` is known.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The `kid` a token's header names, if the header parses. Does not verify anything.
pub fn token_kid(token: &str) -> Option<String> {
    decode_header(token).ok()?.kid
}

/// Verifies access tokens for one issuer and audience.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    leeway_secs: i64,
    /// Built once per algorithm: building a `Validation` allocates, and verification is on
    /// every request's path.
    hs256: Validation,
    eddsa: Validation,
}

impl TokenVerifier {
    /// A verifier accepting tokens of `issuer` for `audience`, with `leeway_secs` of clock skew.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, leeway_secs: u32) -> Self {
        let (issuer, audience) = (issuer.into(), audience.into());
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.algorithms = vec![algorithm];
            validation.set_issuer(&[&issuer]);
            validation.set_audience(&[&audience]);
            validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
            // Time is checked by `check_time` against the injected `now`, not the system clock.
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation
        };
        Self {
            leeway_secs: i64::from(leeway_secs),
            hs256: validation(Algorithm::HS256),
            eddsa: validation(Algorithm::EdDSA),
        }
    }

    /// Verifies the access token `token` against `keys` at time `now` (Unix seconds).
    pub fn verify(
        &self,
        token: &str,
        keys: &VerificationKeys,
        now: i64,
    ) -> Result<AccessClaims, VerifyError> {
        self.verify_claims(token, keys, now)
    }

    /// Verifies `token`, whose claims are a `C` (every field present), against `keys` at
    /// time `now` (Unix seconds).
    pub fn verify_claims<C: serde::de::DeserializeOwned + Timed>(
        &self,
        token: &str,
        keys: &VerificationKeys,
        now: i64,
    ) -> Result<C, VerifyError> {
        let header = decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let kid = header.kid.ok_or(VerifyError::UnknownKey(None))?;
        let key = keys
            .keys
            .get(&kid)
            .ok_or(VerifyError::UnknownKey(Some(kid)))?;
        if header.alg != key.algorithm {
            return Err(VerifyError::AlgorithmNotAllowed(header.alg));
        }
        let validation = match key.algorithm {
            Algorithm::HS256 => &self.hs256,
            Algorithm::EdDSA => &self.eddsa,
            // Key sets only ever hold the two kinds of key above.
            other => return Err(VerifyError::AlgorithmNotAllowed(other)),
        };

        let claims = decode::<C>(token, &key.key, validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::Base64(_)
                | jsonwebtoken::errors::ErrorKind::Utf8(_)
                | jsonwebtoken::errors::ErrorKind::InvalidToken => VerifyError::Malformed,
                other => VerifyError::Invalid(format!("{other:?}")),
            })?
            .claims;
        self.check_time(claims.nbf(), claims.exp(), now)?;
        Ok(claims)
    }

    /// Whether a token valid from `nbf` until `exp` may be used at `now` (all Unix seconds),
    /// allowing this verifier's leeway. [`TokenVerifier::verify`] calls it; a cache of
    /// verified tokens must call it again on every use.
    pub fn check_time(&self, nbf: i64, exp: i64, now: i64) -> Result<(), VerifyError> {
        if now > exp.saturating_add(self.leeway_secs) {
            return Err(VerifyError::Expired);
        }
        if now < nbf.saturating_sub(self.leeway_secs) {
            return Err(VerifyError::NotYetValid);
        }
        Ok(())
    }
}
