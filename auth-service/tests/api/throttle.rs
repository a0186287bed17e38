use crate::helpers::*;
use shared::proto::todo::auth::v1::SignInRequest;
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn repeated_failures_delay_the_account_and_success_resets_it() {
    let app = TestApp::spawn().await;
    app.sign_up("ada@example.com").await;
    for _ in 0..5 {
        assert_error(
            app.sign_in("ada@example.com", "wrong password").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    let status = assert_error(
        app.sign_in("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    let retry = retry_delay(&status).unwrap();
    assert_eq!(retry, Duration::from_secs(2));

    app.advance(2);
    app.sign_in("ada@example.com", PASSWORD)
        .await
        .expect("allowed again after the delay");
    assert_error(
        app.sign_in("ada@example.com", "wrong password").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert!(
        app.sign_in("ada@example.com", PASSWORD).await.is_ok(),
        "the counter was reset"
    );
}

#[tokio::test]
async fn delays_grow_with_each_further_failure() {
    let app = TestApp::spawn().await;
    for attempt in 0..7 {
        if attempt >= 5 {
            app.advance(60);
        }
        let _ = app.sign_in("ada@example.com", "wrong password").await;
    }
    let status = assert_error(
        app.sign_in("ada@example.com", "wrong password").await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    let retry = retry_delay(&status).unwrap();
    assert_eq!(retry, Duration::from_secs(8), "2 s doubled twice");
}

#[tokio::test]
async fn one_address_failing_across_many_accounts_is_blocked() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_address_max_failures = 3).await;
    app.sign_up("ada@example.com").await;
    for i in 0..3 {
        let _ = app
            .sign_in(&format!("user{i}@example.com"), "wrong password")
            .await;
    }
    assert_error(
        app.sign_in("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    app.advance(15 * 60);
    assert!(
        app.sign_in("ada@example.com", PASSWORD).await.is_ok(),
        "a new window starts"
    );
}

#[tokio::test]
async fn throttling_can_be_turned_off() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_disabled = true).await;
    app.sign_up("ada@example.com").await;
    for _ in 0..8 {
        let _ = app.sign_in("ada@example.com", "wrong password").await;
    }
    assert!(app.sign_in("ada@example.com", PASSWORD).await.is_ok());
}

#[tokio::test]
async fn a_burst_of_concurrent_failures_is_counted_in_full() {
    // All ten hashes run at once, so the ten failures are recorded at the same moment.
    let app = TestApp::spawn_with(|c| c.passwords.max_concurrent_hashes = Some(10)).await;
    app.sign_up("ada@example.com").await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let mut client = app.client.clone();
        let request = SignInRequest {
            email: "ada@example.com".into(),
            password: "wrong password".into(),
        };
        burst.spawn(async move { client.sign_in(request).await });
    }
    while let Some(result) = burst.join_next().await {
        assert_eq!(result.unwrap().unwrap_err().code(), Code::Unauthenticated);
    }
    let status = assert_error(
        app.sign_in("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    let retry = retry_delay(&status).unwrap();
    assert_eq!(
        retry,
        Duration::from_secs(64),
        "10 failures: 2 s doubled 5 times"
    );
}
