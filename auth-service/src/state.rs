//! Everything an RPC needs, built once at start-up and shared.

use crate::{
    client::TrustedProxies, config::AuthConfig, error::AuthError, keys::KeyRing,
    password::PasswordHasher, throttle::Throttle, tokens::TokenIssuer,
};
use access_token::TokenVerifier;
use chrono::{DateTime, TimeDelta, Utc};
use clock::SharedClock;
use sea_orm::DatabaseConnection;

/// The auth-service's shared state; business operations are methods on it (see `accounts`
/// and `sessions`), testable without tonic.
pub struct AuthState {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: SharedClock,
    pub(crate) keys: KeyRing,
    pub(crate) issuer: TokenIssuer,
    pub(crate) verifier: TokenVerifier,
    pub(crate) hasher: PasswordHasher,
    pub(crate) throttle: Throttle,
    pub(crate) proxies: TrustedProxies,
    pub(crate) session_ttl: TimeDelta,
    pub(crate) refresh_grace: TimeDelta,
}

impl AuthState {
    /// Builds the state: loads (or creates) the signing keys and computes the dummy hash.
    pub async fn new(
        config: &AuthConfig,
        db: DatabaseConnection,
        clock: SharedClock,
    ) -> Result<Self, AuthError> {
        let t = &config.tokens;
        let keys = KeyRing::load(db.clone(), t, clock.now()).await?;
        Ok(Self {
            keys,
            issuer: TokenIssuer::new(&t.jwt.jwt_issuer, &t.jwt.jwt_audience, t.access_ttl()),
            verifier: t.jwt.verifier(),
            hasher: PasswordHasher::new(&config.passwords)?,
            throttle: Throttle::new(&config.throttle),
            proxies: TrustedProxies::new(
                config.throttle.trusted_proxies.clone(),
                config.throttle.trusted_proxy_header,
            ),
            session_ttl: t.session_ttl(),
            refresh_grace: t.refresh_grace(),
            db,
            clock,
        })
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The key ring (for GetSigningKeys and the JWKS document).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }
}

impl AuthState {
    /// `iss` of issued tokens.
    pub fn issuer_name(&self) -> &str {
        self.issuer.issuer()
    }

    /// `aud` of issued tokens.
    pub fn audience_name(&self) -> &str {
        self.issuer.audience()
    }

    /// The public keys other services may verify with, from a snapshot at most a minute old,
    /// so every replica soon publishes every replica's keys and publishing costs no database
    /// read. Empty in HS256 mode: a shared secret is never published.
    pub async fn published_keys(&self) -> Result<Vec<crate::keys::PublicKey>, AuthError> {
        Ok(self.keys.published(self.now()).await?.published.clone())
    }

    /// The public keys as a JWKS document (RFC 7517, OKP keys per RFC 8037).
    pub async fn jwks_json(&self) -> Result<String, AuthError> {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let keys: Vec<_> = self
            .published_keys()
            .await?
            .into_iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "use": "sig",
                    "alg": k.algorithm,
                    "kid": k.kid,
                    "x": URL_SAFE_NO_PAD.encode(&k.public_key),
                })
            })
            .collect();
        serde_json::to_string(&serde_json::json!({ "keys": keys }))
            .map_err(|e| AuthError::internal(format!("jwks: {e}")))
    }
}
