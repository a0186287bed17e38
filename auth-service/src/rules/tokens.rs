//! Issuing tokens: signed access JWTs, and refresh tokens that name their session and
//! generation under a MAC made with the session's secret (nothing of them is stored).

use super::keys::SigningKeys;
use crate::{domain::AccessToken, error::AuthError};
use access_token::{AccessClaims, SERVICE_AUDIENCE, ServiceClaims};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Header, encode};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What goes into an access token besides the times.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// User id.
    pub user_id: Uuid,
    /// The user's email.
    pub email: &'a str,
    /// Session id.
    pub session_id: Uuid,
}

/// Signs access tokens for one issuer and audience.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    issuer: String,
    audience: String,
    ttl: TimeDelta,
}

/// How long a service token lasts: one call, with room for clock skew.
pub const SERVICE_TOKEN_TTL: TimeDelta = TimeDelta::seconds(60);

/// `claims` signed with key `kid` of `keys`, its id in the header.
fn encode_with(
    keys: &SigningKeys,
    kid: &str,
    claims: &impl serde::Serialize,
) -> Result<String, AuthError> {
    let (algorithm, key) = keys
        .encoding_key(kid)
        .ok_or_else(|| AuthError::internal(format!("signing key {kid} not loaded")))?;
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).map_err(|e| AuthError::internal(format!("signing failed: {e}")))
}

impl TokenIssuer {
    /// An issuer of tokens lasting `ttl`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, ttl: TimeDelta) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            ttl,
        }
    }

    /// Signs an access token for `subject` issued at `iat` with key `kid`. The same inputs
    /// always give the same token (Ed25519 and HMAC signatures are deterministic).
    pub fn sign(
        &self,
        keys: &SigningKeys,
        kid: &str,
        subject: Subject<'_>,
        jti: Uuid,
        iat: DateTime<Utc>,
    ) -> Result<AccessToken, AuthError> {
        let expires_at = iat + self.ttl;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user_id.to_string(),
            email: subject.email.to_owned(),
            iat: iat.timestamp(),
            nbf: iat.timestamp(),
            exp: expires_at.timestamp(),
            jti: jti.to_string(),
            sid: subject.session_id.to_string(),
        };
        let token = encode_with(keys, kid, &claims)?;
        Ok(AccessToken { token, expires_at })
    }

    /// A service token of `service` for the task-service's internal API (audience
    /// [`SERVICE_AUDIENCE`]), valid from `now` for [`SERVICE_TOKEN_TTL`], signed with key
    /// `kid` of `keys`.
    pub fn sign_service(
        &self,
        keys: &SigningKeys,
        kid: &str,
        service: &str,
        now: DateTime<Utc>,
    ) -> Result<String, AuthError> {
        let claims = ServiceClaims {
            iss: self.issuer.clone(),
            aud: SERVICE_AUDIENCE.to_owned(),
            sub: service.to_owned(),
            svc: service.to_owned(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: (now + SERVICE_TOKEN_TTL).timestamp(),
            jti: Uuid::now_v7().to_string(),
        };
        encode_with(keys, kid, &claims)
    }

    /// `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `aud`.
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// 256 random bits, URL-safe base64.
pub fn random_secret() -> Result<[u8; 32], AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::internal(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// A new opaque random token (refresh tokens before generations; the benchmarks' stand-in).
pub fn new_refresh_token() -> Result<String, AuthError> {
    Ok(URL_SAFE_NO_PAD.encode(random_secret()?))
}

/// What a refresh token says: its session and its generation (the session's first token is
/// generation 0; each exchange gives the next). Only [`RefreshClaim::is_authentic`] with the
/// session's secret says whether the session issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshClaim {
    /// The session.
    pub session_id: Uuid,
    /// The generation.
    pub generation: u64,
    mac: [u8; 32],
}

/// Bytes of a refresh token: session id, generation, MAC.
const REFRESH_TOKEN_BYTES: usize = 16 + 8 + 32;

impl RefreshClaim {
    /// The claim of `token`, if it has the shape of one (refresh tokens issued before
    /// generations do not: 32 random bytes).
    pub fn parse(token: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let bytes: [u8; REFRESH_TOKEN_BYTES] = bytes.try_into().ok()?;
        let (id, rest) = bytes.split_at(16);
        let (generation, mac) = rest.split_at(8);
        Some(Self {
            session_id: Uuid::from_slice(id).ok()?,
            generation: u64::from_be_bytes(generation.try_into().ok()?),
            mac: mac.try_into().ok()?,
        })
    }

    /// Whether the session with `session_secret` issued this token (constant time).
    pub fn is_authentic(&self, session_secret: &[u8]) -> Result<bool, AuthError> {
        let mac = generation_mac(session_secret, self.session_id, self.generation)?;
        Ok(mac.verify_slice(&self.mac).is_ok())
    }
}

fn generation_mac(
    session_secret: &[u8],
    session_id: Uuid,
    generation: u64,
) -> Result<Hmac<Sha256>, AuthError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(session_secret)
        .map_err(|e| AuthError::internal(format!("hmac key: {e}")))?;
    mac.update(b"refresh-generation");
    mac.update(session_id.as_bytes());
    mac.update(&generation.to_be_bytes());
    Ok(mac)
}

/// The refresh token of generation `generation` of session `session_id`: the same string
/// every time, so concurrent refreshes of one token get the same successor.
pub fn refresh_token(
    session_secret: &[u8],
    session_id: Uuid,
    generation: u64,
) -> Result<String, AuthError> {
    let mac = generation_mac(session_secret, session_id, generation)?.finalize();
    let mut bytes = Vec::with_capacity(REFRESH_TOKEN_BYTES);
    bytes.extend_from_slice(session_id.as_bytes());
    bytes.extend_from_slice(&generation.to_be_bytes());
    bytes.extend_from_slice(&mac.into_bytes());
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 of a refresh token, hex: what the database keeps. A refresh token has 256
/// bits of entropy, so a fast hash is enough (no dictionary to attack).
pub fn hash_refresh_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mac(secret: &[u8], label: &[u8], token: &str) -> Result<[u8; 32], AuthError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| AuthError::internal(format!("hmac key: {e}")))?;
    mac.update(label);
    mac.update(token.as_bytes());
    Ok(mac.finalize().into_bytes().into())
}

/// The `jti` of the access token issued when `current` is exchanged.
pub fn rotation_jti(session_secret: &[u8], current: &str) -> Result<Uuid, AuthError> {
    let bytes = mac(session_secret, b"jti", current)?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[..16]);
    Ok(uuid::Builder::from_random_bytes(id).into_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_name_their_generation_and_only_their_session_secret_makes_them() {
        let (one, two) = (
            b"secret-one-secret-one-secret-one",
            b"secret-two-secret-two-secret-two",
        );
        let session = Uuid::now_v7();
        let token = refresh_token(one, session, 7).unwrap();
        assert_eq!(
            token,
            refresh_token(one, session, 7).unwrap(),
            "deterministic"
        );
        let claim = RefreshClaim::parse(&token).unwrap();
        assert_eq!((claim.session_id, claim.generation), (session, 7));
        assert!(claim.is_authentic(one).unwrap());
        assert!(!claim.is_authentic(two).unwrap());
        // Another generation or session under the same MAC is not authentic.
        let forged = RefreshClaim {
            generation: 8,
            ..claim
        };
        assert!(!forged.is_authentic(one).unwrap());
        // Tokens from before generations (32 random bytes) and garbage do not parse.
        assert!(RefreshClaim::parse(&new_refresh_token().unwrap()).is_none());
        assert!(RefreshClaim::parse("made-up").is_none());
        assert!(RefreshClaim::parse("").is_none());
    }

    #[test]
    fn refresh_token_hashes_are_hex_sha256() {
        assert_eq!(hash_refresh_token("abc").len(), 64);
        assert_ne!(hash_refresh_token("abc"), hash_refresh_token("abd"));
    }
}
