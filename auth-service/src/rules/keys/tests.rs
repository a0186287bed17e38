#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::config::AuthConfig;

/// A key ring on a fresh in-memory database, and the database (to play another replica).
async fn ring(now: DateTime<Utc>) -> (KeyRing, DatabaseConnection) {
    let config = AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), "sqlite::memory:");
    let db = crate::store::test_database().await;
    let ring = KeyRing::load(db.clone(), &config.tokens, now, &Default::default())
        .await
        .unwrap();
    (ring, db)
}

/// A key another replica made at `now`.
async fn other_replicas_key(db: &DatabaseConnection, now: DateTime<Utc>) -> String {
    let kid = format!("ed25519-other-{}", uuid::Uuid::now_v7().simple());
    let (retire_at, expire_at) = (now + TimeDelta::days(7), now + TimeDelta::days(8));
    let key = ed25519_key(&[7u8; 32], kid.clone(), now, retire_at, expire_at).unwrap();
    store::insert(db, key).await.unwrap();
    kid
}

#[tokio::test]
async fn unknown_kids_reload_the_keys_at_most_once_per_interval() {
    let now = Utc::now();
    let (ring, db) = ring(now).await;
    let second = other_replicas_key(&db, now).await;
    let keys = ring.for_kid(Some(&second), now).await.unwrap();
    assert!(
        keys.verify.contains(&second),
        "the first unknown kid reloads"
    );

    let third = other_replicas_key(&db, now).await;
    for forged in ["forged-1", "forged-2", third.as_str()] {
        let keys = ring
            .for_kid(Some(forged), now + TimeDelta::seconds(1))
            .await
            .unwrap();
        assert!(
            !keys.verify.contains(&third),
            "no reload within the interval"
        );
    }
    let later = now + UNKNOWN_KID_RELOAD_INTERVAL + TimeDelta::seconds(1);
    let keys = ring.for_kid(Some(&third), later).await.unwrap();
    assert!(
        keys.verify.contains(&third),
        "a reload once the interval is over"
    );
}

#[tokio::test]
async fn published_keys_come_from_a_snapshot_at_most_a_minute_old() {
    let now = Utc::now();
    let (ring, db) = ring(now).await;
    let other = other_replicas_key(&db, now).await;
    let kids = |keys: Arc<SigningKeys>| {
        keys.published
            .iter()
            .map(|k| k.kid.clone())
            .collect::<Vec<_>>()
    };
    let soon = ring.published(now + TimeDelta::seconds(30)).await.unwrap();
    assert!(
        !kids(soon).contains(&other),
        "no database read within a minute"
    );
    let later = ring.published(now + PUBLISHED_MAX_AGE).await.unwrap();
    assert!(
        kids(later).contains(&other),
        "a fresh snapshot after a minute"
    );
}

#[test]
fn keys_stored_by_earlier_versions_read_as_the_same_key() {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    // What earlier versions stored: PKCS#8 v1, the fixed 16-byte prefix and the seed.
    let seed = [9u8; 32];
    let mut legacy = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    legacy.extend_from_slice(&seed);
    let now = Utc::now();
    let new = ed25519_key(&seed, "k".into(), now, now, now).unwrap();
    let from_legacy = ed25519_dalek::SigningKey::from_pkcs8_der(&legacy).unwrap();
    let from_new = ed25519_dalek::SigningKey::from_pkcs8_der(&new.private_key).unwrap();
    assert_eq!(from_legacy.to_bytes(), from_new.to_bytes());
    assert_eq!(from_new.verifying_key().to_bytes().to_vec(), new.public_key);
}
