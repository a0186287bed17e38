#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::config::AuthConfig;

async fn throttle(configure: impl FnOnce(&mut ThrottleArgs)) -> (Throttle, DatabaseConnection) {
    let mut config = AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), "sqlite::memory:");
    configure(&mut config.throttle);
    let db = crate::store::test_database().await;
    (Throttle::new(&config.throttle), db)
}

fn keys() -> AttemptKeys {
    AttemptKeys::new(
        "ada@example.com",
        ClientKey::from_ip("192.0.2.1".parse().unwrap()),
    )
}

#[tokio::test]
async fn an_attempt_dropped_before_its_password_was_checked_gives_its_charges_back() {
    let (throttle, db) = throttle(|t| t.throttle_free_attempts = 1).await;
    let now = Utc::now();
    // This charge uses up the free attempt and blocks the pair until it is settled...
    let first = throttle.admit(&db, keys(), now).await.unwrap();
    assert!(matches!(
        throttle.admit(&db, keys(), now).await,
        Err(AuthError::Throttled(_))
    ));
    // ...but it is dropped unsettled (a full hashing queue, a cancelled call).
    drop(first);
    let mut admitted = None;
    for _ in 0..100 {
        if let Ok(attempt) = throttle.admit(&db, keys(), now).await {
            admitted = Some(attempt);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let attempt = admitted.expect("the charges were given back");
    attempt.succeeded(now).await.unwrap();
}

#[tokio::test]
async fn a_failure_blocks_from_when_it_failed() {
    let (throttle, db) = throttle(|t| t.throttle_free_attempts = 1).await;
    let admitted_at = Utc::now();
    let attempt = throttle.admit(&db, keys(), admitted_at).await.unwrap();
    // The hash took 5 s in a busy queue; the 2 s delay counts from the failure.
    let failed_at = admitted_at + TimeDelta::seconds(5);
    attempt.failed(failed_at).await.unwrap();
    let refused = throttle
        .admit(&db, keys(), failed_at + TimeDelta::seconds(1))
        .await;
    assert!(matches!(refused, Err(AuthError::Throttled(_))));
}
