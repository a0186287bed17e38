//! `signing_keys`: the Ed25519 keys, kept here so every replica signs with and publishes the
//! same ones.

use super::entity::signing_key;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

/// A stored signing key. Signs from `created_at` to `retire_at`, verifies until `expire_at`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    /// `EdDSA` for every key made today.
    pub algorithm: String,
    /// PKCS#8 DER. Never logged, never returned.
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub retire_at: DateTime<Utc>,
    pub expire_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("retire_at", &self.retire_at)
            .field("expire_at", &self.expire_at)
            .finish_non_exhaustive()
    }
}

impl From<signing_key::Model> for StoredKey {
    fn from(row: signing_key::Model) -> Self {
        Self {
            kid: row.kid,
            algorithm: row.algorithm,
            private_key: row.private_key,
            public_key: row.public_key,
            created_at: row.created_at,
            retire_at: row.retire_at,
            expire_at: row.expire_at,
        }
    }
}

/// Every key that still verifies at `now`, newest first.
pub(crate) async fn unexpired(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Vec<StoredKey>, DbErr> {
    let rows = signing_key::Entity::find()
        .filter(signing_key::Column::ExpireAt.gt(now))
        .order_by_desc(signing_key::Column::CreatedAt)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(StoredKey::from).collect())
}

/// Stores a new key.
pub(crate) async fn insert(db: &impl ConnectionTrait, key: StoredKey) -> Result<(), DbErr> {
    signing_key::Entity::insert(signing_key::ActiveModel {
        kid: Set(key.kid),
        algorithm: Set(key.algorithm),
        private_key: Set(key.private_key),
        public_key: Set(key.public_key),
        created_at: Set(key.created_at),
        retire_at: Set(key.retire_at),
        expire_at: Set(key.expire_at),
    })
    .exec(db)
    .await?;
    Ok(())
}
