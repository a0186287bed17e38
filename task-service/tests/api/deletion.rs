//! Account deletion across the pair: DeleteAccount at the auth-service, the purge at the
//! task-service's internal listener (only for the auth-service), the tombstone that keeps the
//! deleted account's unexpired tokens from writing again, and delivery that survives either
//! service being down.

use crate::{
    authentication::forge_ed25519,
    helpers::{
        PASSWORD, TestStack, User, assert_error, channel, fresh_database_url, jwt_json, new_task,
        start_auth, start_task, tasks_of, user_id_of, with_bearer,
    },
};
use auth_service::internals::TokenIssuer;
use chrono::TimeDelta;
use clock::{Clock, ManualClock};
use serde_json::json;
use std::{net::SocketAddr, time::Duration};
use todo_api::todo::{
    auth::v1::{self as auth_pb, auth_service_client::AuthServiceClient},
    task::internal::v1::{PurgeUserRequest, task_admin_client::TaskAdminClient},
};
use tonic::{Code, Status};

/// Deletes the account of `user`'s token with `password`.
async fn delete_account(
    auth: &AuthServiceClient<tonic::transport::Channel>,
    token: &str,
    password: &str,
) -> Result<(), Status> {
    let request = auth_pb::DeleteAccountRequest {
        current_password: password.into(),
    };
    auth.clone()
        .delete_account(with_bearer(request, token))
        .await
        .map(|_| ())
}

/// A service token for `service`, signed with the auth-service's current key, as the
/// auth-service signs them.
async fn service_token(stack: &TestStack, service: &str) -> String {
    let now = stack.clock.now();
    let keys = stack.auth_rules.keys.current(now).await.unwrap();
    let issuer = TokenIssuer::new("todo-auth", "todo-api", TimeDelta::minutes(15));
    issuer
        .sign_service(&keys, keys.signing_kid(), service, now)
        .unwrap()
}

async fn purge(addr: SocketAddr, token: Option<&str>, user_id: &str) -> Result<i64, Status> {
    let mut admin = TaskAdminClient::new(channel(addr).await);
    let request = PurgeUserRequest {
        user_id: user_id.into(),
        keep_until: None,
    };
    let request = match token {
        Some(token) => with_bearer(request, token),
        None => tonic::Request::new(request),
    };
    admin
        .purge_user(request)
        .await
        .map(|r| r.into_inner().deleted_tasks)
}

/// Waits (at most 10 s) until `owner` has no task left in `url`.
async fn until_purged(url: &str, owner: &str) {
    for _ in 0..200 {
        if tasks_of(url, owner).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{owner}'s tasks are still there after 10 s");
}

#[tokio::test]
async fn deleting_an_account_purges_its_tasks_and_its_tokens_stop_working_everywhere() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    let bob = stack.user("bob@example.com").await;
    for title in ["one", "two", "three"] {
        ada.create(title).await;
    }
    let kept = bob.create("bob's").await;
    let ada_id = user_id_of(&ada.token);
    // Her list, read twice: the second from the ListTasks cache, which must not outlive her.
    for _ in 0..2 {
        assert_eq!(ada.list(Default::default()).await.unwrap().tasks.len(), 3);
    }

    delete_account(&stack.auth_client, &ada.token, PASSWORD)
        .await
        .unwrap();
    until_purged(&stack.database_url, &ada_id).await;

    // Nothing the deleted user holds works any more: not the access token (at the
    // task-service, reads and writes alike, nor at the auth-service), not the refresh token,
    // not the password.
    assert_error(
        ada.try_create(new_task("after")).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    assert_error(
        ada.list(Default::default()).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    let current = stack
        .auth_client
        .clone()
        .get_current_user(with_bearer(auth_pb::GetCurrentUserRequest {}, &ada.token))
        .await;
    assert_error(current, Code::Unauthenticated, "INVALID_TOKEN");
    let refresh = stack
        .auth_client
        .clone()
        .refresh(auth_pb::RefreshRequest {
            refresh_token: ada.refresh_token.clone(),
        })
        .await;
    assert_error(refresh, Code::Unauthenticated, "INVALID_REFRESH_TOKEN");
    let sign_in = test_support::sign_in(stack.auth_client.clone(), "ada@example.com").await;
    assert_error(sign_in, Code::Unauthenticated, "INVALID_CREDENTIALS");

    // Others are untouched; the email is free again, for a new, empty account.
    assert_eq!(bob.get(&kept.id).await.unwrap().title, "bob's");
    let again = stack.user("ada@example.com").await;
    assert!(again.all_ids().await.is_empty());
}

#[tokio::test]
async fn deleting_an_account_needs_its_password_and_a_live_session() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    ada.create("kept").await;
    let wrong = assert_error(
        delete_account(&stack.auth_client, &ada.token, "not my password").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert!(wrong.message().contains("password"), "{wrong:?}");
    let empty = assert_error(
        delete_account(&stack.auth_client, &ada.token, "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(test_support::violated_fields(&empty), ["current_password"]);
    let anonymous = stack
        .auth_client
        .clone()
        .delete_account(auth_pb::DeleteAccountRequest {
            current_password: PASSWORD.into(),
        })
        .await;
    assert_error(anonymous, Code::Unauthenticated, "INVALID_TOKEN");
    // Nothing happened.
    assert_eq!(ada.all_ids().await.len(), 1);
}

#[tokio::test]
async fn only_the_auth_services_service_token_may_purge_and_only_on_the_internal_listener() {
    let stack = TestStack::spawn().await;
    let internal = stack
        .internal_addr
        .expect("the stack has an internal listener");
    let ada = stack.user("ada@example.com").await;
    ada.create("kept").await;
    let ada_id = user_id_of(&ada.token);
    let now = stack.clock_now();
    let real_kid = jwt_json(&ada.token, 0)["kid"].as_str().unwrap().to_owned();
    let service_claims = |aud: &str, svc: &str| {
        json!({"iss": "todo-auth", "aud": aud, "sub": svc, "svc": svc, "iat": now,
               "nbf": now, "exp": now + 60, "jti": "x"})
    };
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": real_kid});
    let refused = [
        ("no token", None),
        ("a user's access token", Some(ada.token.clone())),
        (
            "a forged service token",
            Some(forge_ed25519(
                &header,
                &service_claims("todo-task-internal", "auth-service"),
            )),
        ),
        (
            "a service token of the wrong audience",
            Some(wrong_audience(&stack, &service_claims("todo-api", "auth-service")).await),
        ),
        (
            "another service's token",
            Some(service_token(&stack, "someone-else").await),
        ),
    ];
    for (what, token) in refused {
        let status = purge(internal, token.as_deref(), &ada_id).await;
        assert!(
            matches!(&status, Err(s) if s.code() == Code::Unauthenticated),
            "{what}: {status:?}"
        );
        assert_eq!(tasks_of(&stack.database_url, &ada_id).await, 1, "{what}");
    }

    // The public port does not serve the internal API, whatever the token.
    let token = service_token(&stack, "auth-service").await;
    let status = purge(stack.task_addr, Some(&token), &ada_id).await;
    assert!(
        matches!(&status, Err(s) if s.code() == Code::Unimplemented),
        "{status:?}"
    );
    // Nor does the internal port speak grpc-web or HTTP/1.1.
    let answer = raw_http1(internal, "/todo.task.internal.v1.TaskAdmin/PurgeUser").await;
    assert!(!answer.contains("grpc-status: 0"), "{answer}");
    assert_eq!(tasks_of(&stack.database_url, &ada_id).await, 1);

    // The auth-service's own token purges; a bad user id is refused first.
    let bad = purge(internal, Some(&token), "not-a-uuid").await;
    assert_error(bad, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(purge(internal, Some(&token), &ada_id).await.unwrap(), 1);
    assert_eq!(
        purge(internal, Some(&token), &ada_id).await.unwrap(),
        0,
        "idempotent"
    );
}

/// `claims` signed with the auth-service's real current key.
async fn wrong_audience(stack: &TestStack, claims: &serde_json::Value) -> String {
    let keys = stack
        .auth_rules
        .keys
        .current(stack.clock.now())
        .await
        .unwrap();
    let kid = keys.signing_kid().to_owned();
    let (algorithm, key) = keys.encoding_key(&kid).unwrap();
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A grpc-web style POST over HTTP/1.1 to `addr`; whatever comes back (nothing, if the
/// connection is refused or closed).
async fn raw_http1(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0"
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Creates with the deleted user's still valid token, racing the purge, never leave a task
/// behind: each round a new user fires creates while the purge runs.
#[tokio::test]
async fn creates_racing_the_purge_leave_no_task_behind() {
    let stack = TestStack::spawn().await;
    let internal = stack.internal_addr.unwrap();
    let token = service_token(&stack, "auth-service").await;
    let (mut created, mut refused) = (0, 0);
    for round in 0..20 {
        let user = stack.user(&format!("racer{round}@example.com")).await;
        let owner = user_id_of(&user.token);
        let creates = (0..8).map(|i| {
            let user: User = user.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(i)).await;
                user.try_create(new_task("racing")).await
            }
        });
        let (results, purged) = tokio::join!(futures_util::future::join_all(creates), async {
            tokio::time::sleep(Duration::from_millis(3)).await;
            purge(internal, Some(&token), &owner).await
        });
        purged.unwrap();
        for result in results {
            match result {
                Ok(_) => created += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                    refused += 1;
                }
            }
        }
        assert_eq!(
            tasks_of(&stack.database_url, &owner).await,
            0,
            "round {round}: a task outlived the purge"
        );
    }
    println!("creates answered OK before the purge: {created}, refused after it: {refused}");
}

/// The task-service is down when the account is deleted: the deletion waits in the auth
/// database, retried with backoff, and is delivered once it is back.
#[tokio::test]
async fn a_deletion_made_while_the_task_service_is_down_is_delivered_when_it_is_back() {
    let clock = ManualClock::new(chrono::Utc::now());
    let url = fresh_database_url().await;
    // The internal listener's port, kept across the task-service's restart.
    let internal: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let auth = start_auth(&url, "127.0.0.1:0".parse().unwrap(), clock.clone(), |c| {
        c.deletions.task_internal_url = Some(format!("http://{internal}"));
    })
    .await;
    let with_internal = |c: &mut task_service::config::TaskConfig| {
        c.internal_listen_addr = Some(internal);
    };
    let (task, _) = start_task(&url, auth.addr, clock.clone(), with_internal).await;
    crate::helpers::wait_until_serving(task.addr, "todo.task.v1.TaskService").await;
    let auth_client = AuthServiceClient::new(channel(auth.addr).await);
    let tokens = crate::helpers::sign_up(&auth_client, "ada@example.com").await;
    let ada = User {
        token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token,
        tasks: todo_api::todo::task::v1::task_service_client::TaskServiceClient::new(
            channel(task.addr).await,
        ),
    };
    ada.create("one").await;
    ada.create("two").await;
    let owner = user_id_of(&ada.token);
    drop(task); // the task-service stops

    delete_account(&auth_client, &ada.token, PASSWORD)
        .await
        .expect("recorded even though the task-service is down");
    // It tried, failed, and will try again.
    let mut waited = 0;
    while crate::helpers::count_rows(&url, "account_deletions WHERE attempts > 0").await == 0 {
        assert!(waited < 200, "no delivery attempt within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(tasks_of(&url, &owner).await, 2);

    let (_task, _) = start_task(&url, auth.addr, clock.clone(), with_internal).await;
    clock.advance(TimeDelta::seconds(61)); // past any backoff
    until_purged(&url, &owner).await;
    let mut waited = 0;
    while crate::helpers::count_rows(&url, "account_deletions").await > 0 {
        assert!(
            waited < 200,
            "the delivered deletion is still in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
}

/// The auth-service stops after recording a deletion and before delivering it (here: with
/// nowhere to deliver to); started again, with the task-service reachable, it delivers.
#[tokio::test]
async fn a_deletion_recorded_before_a_restart_is_delivered_after_it() {
    let clock = ManualClock::new(chrono::Utc::now());
    let url = fresh_database_url().await;
    let first = start_auth(&url, "127.0.0.1:0".parse().unwrap(), clock.clone(), |_| {}).await;
    let internal: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let (task, _) = start_task(&url, first.addr, clock.clone(), |c| {
        c.internal_listen_addr = Some(internal);
    })
    .await;
    crate::helpers::wait_until_serving(task.addr, "todo.task.v1.TaskService").await;
    let auth_client = AuthServiceClient::new(channel(first.addr).await);
    let tokens = crate::helpers::sign_up(&auth_client, "ada@example.com").await;
    let owner = user_id_of(&tokens.access_token);
    let mut tasks = todo_api::todo::task::v1::task_service_client::TaskServiceClient::new(
        channel(task.addr).await,
    );
    tasks
        .create_task(with_bearer(new_task("one"), &tokens.access_token))
        .await
        .unwrap();
    // This auth-service has no TASK_INTERNAL_URL: the deletion is recorded, not delivered.
    delete_account(&auth_client, &tokens.access_token, PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        crate::helpers::count_rows(&url, "account_deletions").await,
        1
    );
    drop(first);

    let _second = start_auth(&url, "127.0.0.1:0".parse().unwrap(), clock.clone(), |c| {
        c.deletions.task_internal_url = Some(format!("http://{internal}"));
    })
    .await;
    until_purged(&url, &owner).await;
}
