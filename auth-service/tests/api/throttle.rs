use crate::helpers::*;
use std::time::Duration;
use todo_api::{
    todo::auth::v1::SignInRequest, todo::auth::v1::auth_service_client::AuthServiceClient,
};
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

/// Sends `count` concurrent sign-ins with a wrong password, for `email(i)`; returns how many
/// were checked (UNAUTHENTICATED) and how many refused before any hashing (RESOURCE_EXHAUSTED).
async fn burst(app: &TestApp, count: usize, email: impl Fn(usize) -> String) -> (usize, usize) {
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut client = app.client.clone();
        let request = SignInRequest {
            email: email(i),
            password: "wrong password".into(),
        };
        burst.spawn(async move { client.sign_in(request).await });
    }
    let (mut checked, mut refused) = (0, 0);
    while let Some(result) = burst.join_next().await {
        match result.unwrap().unwrap_err().code() {
            Code::Unauthenticated => checked += 1,
            Code::ResourceExhausted => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    (checked, refused)
}

#[tokio::test]
async fn a_burst_of_300_concurrent_guesses_gets_only_the_free_attempts_checked() {
    // Ten hashes at once, so many guesses are in flight together.
    let app = TestApp::spawn_with(|c| c.passwords.max_concurrent_hashes = Some(10)).await;
    app.sign_up("ada@example.com").await;
    let (checked, refused) = burst(&app, 300, |_| "ada@example.com".into()).await;
    assert_eq!((checked, refused), (5, 295), "5 free attempts");
    let status = assert_error(
        app.sign_in("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(2)));
    app.advance(2);
    app.sign_in("ada@example.com", PASSWORD)
        .await
        .expect("the owner signs in once the delay is over");
}

#[tokio::test]
async fn a_burst_across_accounts_gets_only_the_address_budget_checked() {
    let app = TestApp::spawn_with(|c| {
        c.passwords.max_concurrent_hashes = Some(10);
        // Room for every admitted attempt in the hashing queue: this is about the throttle.
        c.passwords.hash_queue_per_client = 100;
        c.throttle.throttle_address_max_failures = 20;
    })
    .await;
    let (checked, refused) = burst(&app, 100, |i| format!("user{i}@example.com")).await;
    assert_eq!((checked, refused), (20, 80));
}

#[tokio::test]
async fn successful_sign_ins_do_not_use_up_the_address_budget() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_address_max_failures = 3).await;
    app.sign_up("ada@example.com").await;
    for _ in 0..10 {
        app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    }
    let _ = app.sign_in("ada@example.com", "wrong password").await;
    app.sign_in("ada@example.com", PASSWORD).await.unwrap();
}

async fn sign_in_from(
    client: &mut AuthServiceClient<tonic::transport::Channel>,
    password: &str,
) -> Code {
    let request = SignInRequest {
        email: "ada@example.com".into(),
        password: password.into(),
    };
    match client.sign_in(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn guesses_from_elsewhere_do_not_lock_the_owner_out_of_their_own_address() {
    let app = TestApp::spawn().await;
    app.sign_up("ada@example.com").await;
    let mut attacker = client_from("127.0.0.2:0", &app).await;
    for _ in 0..10 {
        sign_in_from(&mut attacker, "wrong password").await;
    }
    assert_eq!(
        sign_in_from(&mut attacker, PASSWORD).await,
        Code::ResourceExhausted,
        "the guessing address is delayed"
    );
    let mut owner = client_from("127.0.0.1:0", &app).await;
    assert_eq!(sign_in_from(&mut owner, PASSWORD).await, Code::Ok);
}

#[tokio::test]
async fn the_account_ceiling_stops_distributed_guessing_but_not_a_known_address() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_account_max_failures = 3).await;
    app.sign_up("ada@example.com").await;
    let mut owner = client_from("127.0.0.1:0", &app).await;
    assert_eq!(sign_in_from(&mut owner, PASSWORD).await, Code::Ok);
    // Three guesses from two other addresses reach the account's ceiling...
    let first = client_from("127.0.0.2:0", &app).await;
    let second = client_from("127.0.0.3:0", &app).await;
    for client in [first.clone(), second.clone(), first.clone()] {
        let mut client = client;
        assert_eq!(
            sign_in_from(&mut client, "wrong password").await,
            Code::Unauthenticated
        );
    }
    // ...so any other address is refused, even with the right password...
    let mut third = client_from("127.0.0.4:0", &app).await;
    assert_eq!(
        sign_in_from(&mut third, PASSWORD).await,
        Code::ResourceExhausted
    );
    // ...but the owner's usual address still signs in.
    assert_eq!(sign_in_from(&mut owner, PASSWORD).await, Code::Ok);
}

/// A wrong-password sign-in for `email` claiming to be forwarded for `forwarded_for`.
async fn forwarded_sign_in(app: &TestApp, email: &str, forwarded_for: &str) -> Code {
    let mut request = tonic::Request::new(SignInRequest {
        email: email.into(),
        password: "wrong password".into(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    match app.client.clone().sign_in(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_address_max_failures = 2).await;
    assert_eq!(
        forwarded_sign_in(&app, "a@example.com", "198.51.100.1").await,
        Code::Unauthenticated
    );
    assert_eq!(
        forwarded_sign_in(&app, "b@example.com", "198.51.100.2").await,
        Code::Unauthenticated
    );
    // A new claimed address buys no new budget: the peer's is used up.
    assert_eq!(
        forwarded_sign_in(&app, "c@example.com", "198.51.100.3").await,
        Code::ResourceExhausted
    );
}

/// An auth-service behind a trusted proxy at 127.0.0.1, with a budget of two failures per
/// client address.
async fn behind_a_trusted_proxy() -> TestApp {
    TestApp::spawn_with(|c| {
        c.throttle.throttle_address_max_failures = 2;
        c.server.proxies.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

#[tokio::test]
async fn a_trusted_proxy_is_believed_about_whom_it_forwards_for() {
    let app = behind_a_trusted_proxy().await;
    for email in ["a@example.com", "b@example.com"] {
        assert_eq!(
            forwarded_sign_in(&app, email, "198.51.100.1").await,
            Code::Unauthenticated
        );
    }
    assert_eq!(
        forwarded_sign_in(&app, "c@example.com", "198.51.100.1").await,
        Code::ResourceExhausted,
        "that client's budget is used up"
    );
    assert_eq!(
        forwarded_sign_in(&app, "c@example.com", "198.51.100.2").await,
        Code::Unauthenticated,
        "another client behind the same proxy has its own"
    );
}

#[tokio::test]
async fn ipv6_clients_share_one_budget_per_64_and_another_64_has_its_own() {
    let app = behind_a_trusted_proxy().await;
    // Two addresses of one /64 (what one IPv6 host can switch between at will)...
    for (email, client) in [
        ("a@example.com", "2001:db8:1:1::1"),
        ("b@example.com", "2001:db8:1:1::2"),
    ] {
        assert_eq!(
            forwarded_sign_in(&app, email, client).await,
            Code::Unauthenticated
        );
    }
    // ...spend one budget: a third address of it gets nothing new.
    assert_eq!(
        forwarded_sign_in(&app, "c@example.com", "2001:db8:1:1:ffff::3").await,
        Code::ResourceExhausted,
        "the /64's budget is used up"
    );
    assert_eq!(
        forwarded_sign_in(&app, "c@example.com", "2001:db8:1:2::1").await,
        Code::Unauthenticated,
        "the next /64 is another client"
    );
}

#[tokio::test]
async fn a_success_that_used_up_the_address_budget_gives_it_back() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_address_max_failures = 2).await;
    app.sign_up("ada@example.com").await;
    let _ = app.sign_in("ada@example.com", "wrong password").await;
    // This attempt's charge reaches the budget (and blocks the address until it is settled)...
    app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    // ...and its success lifts that block again.
    app.sign_in("ada@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn one_address_may_make_only_so_many_sign_ups_per_window() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_signup_max_per_address = 3).await;
    for i in 0..3 {
        app.sign_up(&format!("user{i}@example.com")).await;
    }
    let status = assert_error(
        app.try_sign_up("user3@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(3600)));
    // Another address has its own budget; this one gets a new one after the window.
    let mut elsewhere = client_from("127.0.0.2:0", &app).await;
    let request = todo_api::todo::auth::v1::SignUpRequest {
        email: "user3@example.com".into(),
        password: PASSWORD.into(),
        display_name: None,
    };
    elsewhere.sign_up(request).await.unwrap();
    app.advance(3600);
    app.sign_up("user4@example.com").await;
}

#[tokio::test]
async fn a_guess_refused_while_another_is_being_checked_is_told_to_come_back_soon() {
    let app = TestApp::spawn_with(|c| c.throttle.throttle_free_attempts = 1).await;
    app.sign_up("ada@example.com").await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut client = app.client.clone();
        let request = SignInRequest {
            email: "ada@example.com".into(),
            password: "wrong password".into(),
        };
        burst.spawn(async move { client.sign_in(request).await });
    }
    let mut refused = 0;
    while let Some(result) = burst.join_next().await {
        let status = result.unwrap().unwrap_err();
        if status.code() == Code::ResourceExhausted {
            refused += 1;
            let delay = retry_delay(&status).unwrap();
            assert!(delay <= Duration::from_secs(30), "told to wait {delay:?}");
        }
    }
    assert_eq!(refused, 19);
    // Once settled, the block is the real first delay.
    let status = assert_error(
        app.sign_in("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(2)));
}

/// Row 6 of the fair-share review: sign-ins cancelled once their password hash has started
/// cost the server a hash each, so each counts as a guess: after the free attempts the pair is
/// blocked even for the right password. (Before, every cancelled attempt got its charges back
/// and guessing with cancelled calls was never throttled.)
#[tokio::test]
async fn a_sign_in_cancelled_after_its_hash_started_still_counts() {
    let app = TestApp::spawn_with(|c| {
        c.passwords.max_concurrent_hashes = Some(1);
        // A hash long enough to see it running and cancel the call in the middle of it.
        c.passwords.argon2_iterations = 24;
    })
    .await;
    app.sign_up("victim@example.com").await;
    let guesser = client_from("127.0.0.3:0", &app).await;
    let guess = || SignInRequest {
        email: "victim@example.com".into(),
        password: "a wrong guess".into(),
    };
    // The free attempts (5), each cancelled as soon as its hash is running.
    for _ in 0..5 {
        let mut client = guesser.clone();
        let call = tokio::spawn(async move { client.sign_in(guess()).await });
        let mut running = false;
        for _ in 0..2000 {
            if app.rules.accounts.hashes_running() == 1 {
                running = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(running, "the guess's hash started");
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        // The server finishes the hash it started (the permit comes back after it).
        while app.rules.accounts.hashes_running() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let right = SignInRequest {
        email: "victim@example.com".into(),
        password: PASSWORD.into(),
    };
    let refused =
        guesser.clone().sign_in(right).await.expect_err(
            "cancelled guesses count: the pair is blocked, even for the right password",
        );
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let info = tonic_types::StatusExt::get_error_details(&refused)
        .error_info()
        .cloned()
        .unwrap();
    assert_eq!(info.reason, "TOO_MANY_ATTEMPTS");
}
