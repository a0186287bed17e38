//! The signing keys. EdDSA mode: Ed25519 keys generated on first start and persisted in the
//! auth database (so every replica signs with and publishes the same keys), rotated when the
//! current one reaches its `retire_at`; a retired key keeps verifying until `expire_at`, when
//! the last token it signed has expired. HS256 mode: one shared secret, never published.

use crate::metrics::AuthMetrics;
use crate::{
    config::{SigningMode, TokenArgs},
    domain::PublicKey,
    error::AuthError,
    store::keys::{self as store, StoredKey},
};
use access_token::{SHARED_SECRET_KID, VerificationKeys};
use chrono::{DateTime, TimeDelta, Utc};
use clock::SharedClock;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use grpc_edge::metrics::Labels;
use jsonwebtoken::{Algorithm, EncodingKey};
use prometheus_client::metrics::{counter::Counter, family::Family};
use sea_orm::DatabaseConnection;
use std::{collections::HashMap, sync::Arc};
use tokio::sync::{Mutex, RwLock};

/// One loaded snapshot of the keys: what signs, what verifies, what is published.
pub struct SigningKeys {
    signing_kid: String,
    /// Every key that may still sign or re-sign (within the refresh grace window).
    encoding: HashMap<String, (Algorithm, EncodingKey)>,
    /// When the current signing key must be replaced.
    retire_at: Option<DateTime<Utc>>,
    /// What verifies tokens.
    pub verify: VerificationKeys,
    /// What other services may fetch.
    pub published: Vec<PublicKey>,
}

impl SigningKeys {
    /// The key new tokens are signed with.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// The algorithm and key with this `kid`, while it may still sign.
    pub fn encoding_key(&self, kid: &str) -> Option<(Algorithm, &EncodingKey)> {
        self.encoding.get(kid).map(|(alg, key)| (*alg, key))
    }
}

/// The key ring: a cached snapshot, reloaded from the database when it rotates or when asked.
pub struct KeyRing {
    db: DatabaseConnection,
    mode: SigningMode,
    rotation: TimeDelta,
    /// How long a retired key still verifies: the access-token lifetime plus leeway.
    verify_overlap: TimeDelta,
    current: RwLock<Arc<SigningKeys>>,
    /// Held by the one caller reloading or rotating at a time.
    rotating: Mutex<Reloads>,
    /// `auth_signing_keys_total` by event (`created`: the first key; `rotated`).
    events: Family<Labels, Counter>,
}

/// When the key ring last reloaded, and why.
#[derive(Debug, Default)]
struct Reloads {
    /// The last reload of any kind (rotation, a token naming an unknown key, a stale snapshot).
    any: Option<DateTime<Utc>>,
    /// The last reload caused by a token naming a key this replica does not know.
    unknown_kid: Option<DateTime<Utc>>,
}

/// Fewest seconds between reloads caused by tokens naming unknown keys: a flood of forged
/// `kid`s costs at most one database read per interval.
const UNKNOWN_KID_RELOAD_INTERVAL: TimeDelta = TimeDelta::seconds(10);

/// How old a snapshot may be when the public keys are published (GetSigningKeys, JWKS): new
/// keys of other replicas appear within this time, and publishing costs no database read.
const PUBLISHED_MAX_AGE: TimeDelta = TimeDelta::seconds(60);

impl KeyRing {
    /// Loads the keys, generating the first one if there is none (EdDSA mode).
    pub async fn load(
        db: DatabaseConnection,
        args: &TokenArgs,
        now: DateTime<Utc>,
        metrics: &AuthMetrics,
    ) -> Result<Self, AuthError> {
        let secret = args
            .jwt
            .hs256_secret()
            .map_err(|e| AuthError::internal(e.to_string()))?;
        let initial = match secret {
            Some(secret) => shared_secret_keys(secret),
            None => SigningKeys {
                signing_kid: String::new(),
                encoding: HashMap::new(),
                retire_at: Some(now),
                verify: VerificationKeys::new(),
                published: Vec::new(),
            },
        };
        let ring = Self {
            db,
            mode: args.jwt.signing_algorithm,
            rotation: args.key_rotation(),
            verify_overlap: args.access_ttl() + args.leeway(),
            current: RwLock::new(Arc::new(initial)),
            rotating: Mutex::new(Reloads::default()),
            events: metrics.signing_keys.clone(),
        };
        ring.current(now).await?;
        Ok(ring)
    }

    /// The keys to sign with at `now`, rotating first when the signing key is due.
    pub async fn current(&self, now: DateTime<Utc>) -> Result<Arc<SigningKeys>, AuthError> {
        let keys = Arc::clone(&*self.current.read().await);
        if keys.retire_at.is_none_or(|retire_at| now < retire_at) {
            return Ok(keys);
        }
        let mut reloads = self.rotating.lock().await;
        // Whoever held the lock before may have rotated already.
        let keys = Arc::clone(&*self.current.read().await);
        if keys.retire_at.is_none_or(|retire_at| now < retire_at) {
            return Ok(keys);
        }
        let keys = self.reload_locked(&mut reloads, now).await?;
        if keys.retire_at.is_none_or(|retire_at| now < retire_at) {
            return Ok(keys);
        }
        self.create_key(now).await?;
        let event = if keys.signing_kid.is_empty() {
            "created"
        } else {
            "rotated"
        };
        AuthMetrics::count_event(&self.events, event);
        self.reload_locked(&mut reloads, now).await
    }

    /// Re-reads the keys from the database (another replica may have rotated). Call with
    /// the reload lock held.
    async fn reload_locked(
        &self,
        reloads: &mut Reloads,
        now: DateTime<Utc>,
    ) -> Result<Arc<SigningKeys>, AuthError> {
        if self.mode == SigningMode::Hs256 {
            return Ok(Arc::clone(&*self.current.read().await));
        }
        let rows = store::unexpired(&self.db, now).await?;
        let keys = Arc::new(ed25519_keys(&rows, now));
        *self.current.write().await = Arc::clone(&keys);
        reloads.any = Some(now);
        Ok(keys)
    }

    /// The keys, reloaded first if none has this `kid` (another replica may have made it) and
    /// no unknown `kid` caused a reload in the last [`UNKNOWN_KID_RELOAD_INTERVAL`]. One
    /// caller reloads; the others wait for it and use its result.
    pub async fn for_kid(
        &self,
        kid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Arc<SigningKeys>, AuthError> {
        let keys = self.current(now).await?;
        let Some(kid) = kid.filter(|kid| !keys.verify.contains(kid)) else {
            return Ok(keys);
        };
        if self.mode == SigningMode::Hs256 {
            return Ok(keys);
        }
        let mut reloads = self.rotating.lock().await;
        let keys = Arc::clone(&*self.current.read().await);
        let recent = reloads
            .unknown_kid
            .is_some_and(|at| now - at < UNKNOWN_KID_RELOAD_INTERVAL);
        if keys.verify.contains(kid) || recent {
            return Ok(keys);
        }
        reloads.unknown_kid = Some(now);
        self.reload_locked(&mut reloads, now).await
    }

    /// The keys to publish: the cached snapshot, reloaded when older than
    /// [`PUBLISHED_MAX_AGE`] so every replica soon publishes every replica's keys.
    pub async fn published(&self, now: DateTime<Utc>) -> Result<Arc<SigningKeys>, AuthError> {
        let keys = self.current(now).await?;
        let mut reloads = self.rotating.lock().await;
        match reloads.any {
            Some(at) if now - at < PUBLISHED_MAX_AGE => Ok(keys),
            _ => self.reload_locked(&mut reloads, now).await,
        }
    }

    async fn create_key(&self, now: DateTime<Utc>) -> Result<(), AuthError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| AuthError::internal(format!("no randomness: {e}")))?;
        let retire_at = now + self.rotation;
        let kid = format!("ed25519-{}", uuid::Uuid::now_v7().simple());
        let key = ed25519_key(
            &seed,
            kid.clone(),
            now,
            retire_at,
            retire_at + self.verify_overlap,
        )?;
        store::insert(&self.db, key).await?;
        tracing::info!(target: "audit", event = "signing_key_created", %kid, %retire_at, "new signing key");
        Ok(())
    }
}

/// The keys other services verify with, as GetSigningKeys and the JWKS document publish them.
pub struct PublicKeys {
    ring: Arc<KeyRing>,
    clock: SharedClock,
}

impl PublicKeys {
    /// The public keys of `ring`.
    pub fn new(ring: Arc<KeyRing>, clock: SharedClock) -> Self {
        Self { ring, clock }
    }

    /// The public keys, from a snapshot at most a minute old, so every replica soon publishes
    /// every replica's keys and publishing costs no database read. Empty in HS256 mode: a
    /// shared secret is never published.
    pub async fn list(&self) -> Result<Vec<PublicKey>, AuthError> {
        Ok(self
            .ring
            .published(self.clock.now())
            .await?
            .published
            .clone())
    }
}

/// An Ed25519 key from its 32-byte seed: PKCS#8 private key, raw public key.
fn ed25519_key(
    seed: &[u8; 32],
    kid: String,
    created_at: DateTime<Utc>,
    retire_at: DateTime<Utc>,
    expire_at: DateTime<Utc>,
) -> Result<StoredKey, AuthError> {
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| AuthError::internal(format!("encoding the new key as PKCS#8: {e}")))?;
    Ok(StoredKey {
        kid,
        algorithm: "EdDSA".into(),
        private_key: pkcs8.as_bytes().to_vec(),
        public_key: key.verifying_key().to_bytes().to_vec(),
        created_at,
        retire_at,
        expire_at,
    })
}

fn shared_secret_keys(secret: &[u8]) -> SigningKeys {
    let mut encoding = HashMap::new();
    encoding.insert(
        SHARED_SECRET_KID.to_owned(),
        (Algorithm::HS256, EncodingKey::from_secret(secret)),
    );
    SigningKeys {
        signing_kid: SHARED_SECRET_KID.to_owned(),
        encoding,
        retire_at: None,
        verify: VerificationKeys::shared_secret(secret),
        published: Vec::new(),
    }
}

/// Builds a snapshot from unexpired rows, newest first.
fn ed25519_keys(rows: &[StoredKey], now: DateTime<Utc>) -> SigningKeys {
    let mut verify = VerificationKeys::new();
    let mut encoding = HashMap::new();
    let mut published = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.algorithm == "EdDSA" && r.created_at <= now)
    {
        verify.insert_ed25519(row.kid.clone(), &row.public_key);
        encoding.insert(
            row.kid.clone(),
            (Algorithm::EdDSA, EncodingKey::from_ed_der(&row.private_key)),
        );
        published.push(PublicKey {
            kid: row.kid.clone(),
            algorithm: "EdDSA",
            public_key: row.public_key.clone(),
            expire_at: row.expire_at,
        });
    }
    // The newest key still inside its signing period signs; none means "rotate now".
    let signing = rows
        .iter()
        .find(|r| r.algorithm == "EdDSA" && r.created_at <= now && now < r.retire_at);
    SigningKeys {
        signing_kid: signing.map(|r| r.kid.clone()).unwrap_or_default(),
        retire_at: Some(signing.map_or(now, |r| r.retire_at)),
        encoding,
        verify,
        published,
    }
}

#[cfg(test)]
mod tests;
