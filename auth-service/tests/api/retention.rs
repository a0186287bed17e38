//! The auth tables stay bounded: a churn of sign-ins and refreshes leaves nothing behind once
//! the sessions have ended and the throttle windows have passed.

use crate::helpers::*;
use todo_api::todo::auth::v1::SignInRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churn_of_sign_ins_leaves_nothing_once_sessions_end_and_windows_pass() {
    const SIGN_INS: usize = 10_000;
    let app = TestApp::spawn_with(|c| {
        // Cheap hashes: this is about rows, not argon2.
        c.passwords.argon2_memory_kib = 8;
        c.passwords.argon2_iterations = 1;
        c.passwords.max_concurrent_hashes = Some(4);
        c.passwords.hash_queue_per_client = 64;
        c.throttle.throttle_address_max_failures = 1_000_000;
        // Failures still make their counter rows, but never block: with 32 sign-ins in flight,
        // five failures can land before any success resets the pair, and on the manual clock
        // that block would never end (seen once in a full-suite run: 119 sessions).
        c.throttle.throttle_free_attempts = 1_000_000;
        // One account's sessions pile up here for the sweep to clear (past the cap, sign-ins
        // would end the oldest themselves).
        c.tokens.max_sessions_per_user = 1_000_000;
    })
    .await;
    app.sign_up("ada@example.com").await;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let mut client = app.client.clone();
        workers.spawn(async move {
            let mut refused = std::collections::BTreeMap::<String, usize>::new();
            for i in (worker..SIGN_INS).step_by(32) {
                // Every tenth a failure, so failure counters are made too.
                let password = if i % 10 == 0 {
                    "wrong password"
                } else {
                    PASSWORD
                };
                let request = SignInRequest {
                    email: "ada@example.com".into(),
                    password: password.into(),
                };
                if let Err(status) = client.sign_in(request).await {
                    *refused.entry(format!("{:?}", status.code())).or_default() += 1;
                }
            }
            refused
        });
    }
    let mut refused = std::collections::BTreeMap::<String, usize>::new();
    while let Some(done) = workers.join_next().await {
        for (code, n) in done.unwrap() {
            *refused.entry(code).or_default() += n;
        }
    }
    let url = &app.database_url;
    let sessions = count_rows(url, "sessions").await;
    assert!(
        sessions > 1_000,
        "{sessions} sessions made; refused: {refused:?}"
    );
    // Refresh tokens are generations of their session: none is stored.
    assert_eq!(count_rows(url, "refresh_tokens").await, 0);

    // Nothing has ended yet: a sweep now keeps every live session.
    let kept = app.rules.retention.sweep(app.state_now()).await.unwrap();
    assert_eq!(kept.sessions, 0);

    // 31 days on (past SESSION_TTL_SECS and every throttle window), one sweep empties them.
    app.advance(31 * 24 * 60 * 60);
    let swept = app.rules.retention.sweep(app.state_now()).await.unwrap();
    assert_eq!(i64::try_from(swept.sessions).unwrap(), sessions);
    for table in ["sessions", "refresh_tokens", "sign_in_throttle"] {
        assert_eq!(count_rows(url, table).await, 0, "{table}");
    }
}
