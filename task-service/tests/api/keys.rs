//! Verification keys: fetched from the auth-service, refreshed on rotation, dropped when the
//! auth-service stops publishing them, fetched at most once per interval for unknown kids,
//! and waited for (not crashed on) when the auth-service starts late.

use crate::{
    authentication::forge_ed25519,
    helpers::{
        PASSWORD, TestStack, User, assert_error, channel, fresh_database_url, jwt_json, kid_of,
        sign_up, start_auth, start_task, wait_until_serving,
    },
};
use chrono::{TimeDelta, Utc};
use clock::{Clock, ManualClock};
use serde_json::json;
use todo_api::{
    todo::auth::v1::auth_service_client::AuthServiceClient,
    todo::auth::v1::{self as auth_pb},
    todo::task::v1::task_service_client::TaskServiceClient,
    todo::task::v1::{self as pb},
};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn sign_in(auth: &mut AuthServiceClient<tonic::transport::Channel>, email: &str) -> String {
    auth.sign_in(auth_pb::SignInRequest {
        email: email.into(),
        password: PASSWORD.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .tokens
    .unwrap()
    .access_token
}

#[tokio::test]
async fn after_rotation_old_tokens_work_until_their_key_is_no_longer_published() {
    // Separate clocks, so the task-service can be asked about an unexpired old token after
    // the auth-service has moved past its key's lifetime.
    let t0 = Utc::now();
    let auth_clock = ManualClock::new(t0);
    let task_clock = ManualClock::new(t0);
    let database_url = fresh_database_url().await;
    let auth = start_auth(
        &database_url,
        "127.0.0.1:0".parse().unwrap(),
        auth_clock.clone(),
        |c| {
            c.tokens.key_rotation_secs = 60;
        },
    )
    .await;
    let (task, _keys) = start_task(&database_url, auth.addr, task_clock.clone(), |c| {
        c.key_refresh_min_interval_secs = 0;
    })
    .await;
    wait_until_serving(task.addr, "todo.task.v1.TaskService").await;
    let mut auth_client = AuthServiceClient::new(channel(auth.addr).await);
    let tasks = TaskServiceClient::new(channel(task.addr).await);
    let at = |seconds| t0 + TimeDelta::seconds(seconds);

    let email = "alice@example.com";
    sign_up(&auth_client, email).await;
    let old = User {
        token: sign_in(&mut auth_client, email).await,
        refresh_token: String::new(),
        tasks,
    };
    let task_id = old.create("signed by the first key").await.id;

    // The auth-service rotates; the new kid makes the task-service fetch the keys again.
    auth_clock.set(at(61));
    task_clock.set(at(61));
    let new = User {
        token: sign_in(&mut auth_client, email).await,
        ..old.clone()
    };
    assert_ne!(kid_of(&new.token), kid_of(&old.token));
    assert!(
        new.get(&task_id).await.is_ok(),
        "the new key is fetched on first sight"
    );
    assert!(
        old.get(&task_id).await.is_ok(),
        "the previous key still verifies"
    );

    // Long after: the first key is no longer published. A token naming yet another new key
    // makes the task-service refresh, and the first key drops out of its cache.
    auth_clock.set(at(1000));
    task_clock.set(at(1000));
    let newest = User {
        token: sign_in(&mut auth_client, email).await,
        ..old.clone()
    };
    assert!(newest.get(&task_id).await.is_ok());
    // Back at a time when the old token has not expired: it is refused for its key alone.
    task_clock.set(at(100));
    assert!(task_clock.now() < at(900));
    let status = assert_error(
        old.get(&task_id).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    assert_eq!(status.message(), "missing, invalid or expired access token");
}

#[tokio::test]
async fn unknown_kids_make_at_most_one_key_fetch_per_interval() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let before = stack.keys.fetch_count();
    assert!(before >= 1, "keys were fetched at start-up");
    let claims = jwt_json(&alice.token, 1);
    let forged: Vec<_> = (0..20)
        .map(|i| {
            forge_ed25519(
                &json!({"alg": "EdDSA", "kid": format!("forged-{i}")}),
                &claims,
            )
        })
        .collect();
    let calls = forged.into_iter().map(|token| {
        let caller = User {
            token,
            ..alice.clone()
        };
        tokio::spawn(async move { caller.list(pb::ListTasksRequest::default()).await })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_error(call.await.unwrap(), Code::Unauthenticated, "INVALID_TOKEN");
    }
    let extra = stack.keys.fetch_count() - before;
    assert!(extra <= 1, "{extra} key fetches for 20 forged kids");
    assert!(alice.list(pb::ListTasksRequest::default()).await.is_ok());
}

#[tokio::test]
async fn the_task_service_waits_for_an_auth_service_that_starts_later() {
    let clock = ManualClock::new(Utc::now());
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let auth_addr = reserved.local_addr().unwrap();
    drop(reserved);

    let database_url = fresh_database_url().await;
    let (task, keys) = start_task(&database_url, auth_addr, clock.clone(), |_| {}).await;
    let mut health = HealthClient::new(channel(task.addr).await);
    let status = health
        .check(HealthCheckRequest {
            service: "todo.task.v1.TaskService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::NotServing, "not ready without keys");
    let early = User {
        token: "header.claims.signature".into(),
        refresh_token: String::new(),
        tasks: TaskServiceClient::new(channel(task.addr).await),
    };
    assert_error(
        early.list(pb::ListTasksRequest::default()).await,
        Code::Unavailable,
        "AUTH_SERVICE_UNAVAILABLE",
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!keys.is_loaded());

    let auth = start_auth(&database_url, auth_addr, clock.clone(), |_| {}).await;
    wait_until_serving(task.addr, "todo.task.v1.TaskService").await;
    assert!(keys.is_loaded());
    let auth_client = AuthServiceClient::new(channel(auth.addr).await);
    let token = sign_up(&auth_client, "late@example.com").await.access_token;
    let user = User { token, ..early };
    assert_eq!(user.create("finally").await.title, "finally");
}

#[tokio::test]
async fn tokens_verify_locally_while_the_auth_service_is_down_and_unknown_keys_answer_unavailable()
{
    let clock = ManualClock::new(Utc::now());
    let database_url = fresh_database_url().await;
    let auth = start_auth(
        &database_url,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        |_| {},
    )
    .await;
    let (task, _keys) = start_task(&database_url, auth.addr, clock.clone(), |_| {}).await;
    wait_until_serving(task.addr, "todo.task.v1.TaskService").await;
    let auth_client = AuthServiceClient::new(channel(auth.addr).await);
    let alice = User {
        token: sign_up(&auth_client, "alice@example.com")
            .await
            .access_token,
        refresh_token: String::new(),
        tasks: TaskServiceClient::new(channel(task.addr).await),
    };
    alice.create("before the outage").await;

    drop(auth_client);
    drop(auth);
    // The auth-service drains and closes its listener.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(alice.list_all(0, None).await.len(), 1, "verified locally");

    // A key this service has never seen might be a new one: "retry later", not "invalid".
    let unknown = forge_ed25519(
        &json!({"alg": "EdDSA", "kid": "ed25519-rotated-while-down"}),
        &jwt_json(&alice.token, 1),
    );
    let caller = User {
        token: unknown,
        ..alice.clone()
    };
    assert_error(
        caller.list(pb::ListTasksRequest::default()).await,
        Code::Unavailable,
        "AUTH_SERVICE_UNAVAILABLE",
    );
}
