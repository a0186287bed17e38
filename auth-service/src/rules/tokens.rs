//! Issuing tokens: signed access JWTs and opaque refresh tokens (stored only as hashes).

use super::keys::SigningKeys;
use crate::{domain::AccessToken, error::AuthError};
use access_token::AccessClaims;
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
        let (algorithm, key) = keys
            .encoding_key(kid)
            .ok_or_else(|| AuthError::internal(format!("signing key {kid} not loaded")))?;
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
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.to_owned());
        let token = encode(&header, &claims, key)
            .map_err(|e| AuthError::internal(format!("signing failed: {e}")))?;
        Ok(AccessToken { token, expires_at })
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

/// A new opaque refresh token.
pub fn new_refresh_token() -> Result<String, AuthError> {
    Ok(URL_SAFE_NO_PAD.encode(random_secret()?))
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

/// The refresh token that replaces `current`: derived with the session's secret, so
/// concurrent refreshes of one token get the same successor without the server storing any
/// token, and a leaked spent token alone does not reveal its successor.
pub fn next_refresh_token(session_secret: &[u8], current: &str) -> Result<String, AuthError> {
    Ok(URL_SAFE_NO_PAD.encode(mac(session_secret, b"refresh", current)?))
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
    fn successor_tokens_are_deterministic_per_session_secret() {
        let a = next_refresh_token(b"secret-one-secret-one-secret-one", "token").unwrap();
        let b = next_refresh_token(b"secret-one-secret-one-secret-one", "token").unwrap();
        let c = next_refresh_token(b"secret-two-secret-two-secret-two", "token").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, "token");
    }

    #[test]
    fn refresh_token_hashes_are_hex_sha256() {
        assert_eq!(hash_refresh_token("abc").len(), 64);
        assert_ne!(hash_refresh_token("abc"), hash_refresh_token("abd"));
    }
}
