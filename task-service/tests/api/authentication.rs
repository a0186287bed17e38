//! The interceptor: every RPC needs a valid access token; every refusal is UNAUTHENTICATED
//! with one generic message. Health and reflection stay open.

use crate::helpers::{
    TestStack, User, assert_error, channel, jwt_json, kid_of, new_task, with_bearer,
};
use access_token::{SHARED_SECRET_KID, SecretString, SigningMode};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use todo_api::{todo::auth::v1 as auth_pb, todo::task::v1 as pb};
use tonic::{Code, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const GENERIC: &str = "missing, invalid or expired access token";
const SECRET: &str = "a shared secret that is long enough for HS256 mode";

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>) {
    let status = assert_error(result, Code::Unauthenticated, "INVALID_TOKEN");
    assert_eq!(status.message(), GENERIC);
}

/// `user` with another token.
fn holding(user: &User, token: &str) -> User {
    User {
        token: token.to_owned(),
        ..user.clone()
    }
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn claims_of(token: &str) -> Value {
    jwt_json(token, 1)
}

/// A JWT with `header` and `claims`, signed by an Ed25519 key that is not the auth-service's.
pub fn forge_ed25519(header: &Value, claims: &Value) -> String {
    let key = SigningKey::from_bytes(&[7; 32]);
    let input = format!("{}.{}", segment(header), segment(claims));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn sign_hs256(claims: &Value, secret: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(SHARED_SECRET_KID.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn every_rpc_refuses_a_missing_or_malformed_token_with_one_message() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let task = alice.create("mine").await;
    for token in ["", "not-a-jwt", "a.b.c", &format!("{}x", alice.token)] {
        let caller = holding(&alice, token);
        assert_refused(caller.try_create(new_task("x")).await);
        assert_refused(caller.get(&task.id).await);
        assert_refused(caller.list(pb::ListTasksRequest::default()).await);
        assert_refused(caller.update(task.clone(), &["title"]).await);
        assert_refused(caller.delete(&task.id, "").await);
        assert_refused(caller.toggle(&task.id).await);
    }
    // No metadata at all, and another scheme.
    let mut tasks = stack.tasks.clone();
    assert_refused(tasks.list_tasks(pb::ListTasksRequest::default()).await);
    let mut basic = tonic::Request::new(pb::ListTasksRequest::default());
    basic.metadata_mut().insert(
        "authorization",
        format!("Basic {}", alice.token).parse().unwrap(),
    );
    assert_refused(tasks.list_tasks(basic).await);
    assert_eq!(alice.get(&task.id).await.unwrap(), task);
}

#[tokio::test]
async fn an_expired_token_is_refused_and_a_refreshed_one_works() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    alice.create("before expiry").await;
    // 15 min lifetime + 30 s leeway.
    stack.advance(15 * 60 + 31);
    assert_refused(alice.list(pb::ListTasksRequest::default()).await);

    let refreshed = stack
        .auth_client
        .clone()
        .refresh(auth_pb::RefreshRequest {
            refresh_token: alice.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let alice = holding(&alice, &refreshed.access_token);
    assert_eq!(alice.list_all(0, None).await.len(), 1);
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let claims = claims_of(&alice.token);
    let kid = kid_of(&alice.token);

    // The right kid and claims, signed by another Ed25519 key.
    let foreign = forge_ed25519(&json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}), &claims);
    // `alg: none` with no signature.
    let unsigned = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        segment(&claims)
    );
    // Algorithm confusion: HS256 keyed with the public key, under the EdDSA key's kid.
    let public_key = stack
        .auth_client
        .clone()
        .get_signing_keys(auth_pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .find(|k| k.kid == kid)
        .unwrap()
        .public_key;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_key),
    )
    .unwrap();
    // Another user's id in a token signed by someone else.
    let mut stolen = claims.clone();
    stolen["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let impersonation = forge_ed25519(&json!({"alg": "EdDSA", "kid": kid}), &stolen);

    for token in [foreign, unsigned, confused, impersonation] {
        assert_refused(
            holding(&alice, &token)
                .list(pb::ListTasksRequest::default())
                .await,
        );
    }
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let stack = TestStack::spawn().await;
    let mut health = HealthClient::new(channel(stack.task_addr).await);
    let status = health
        .check(HealthCheckRequest {
            service: "todo.task.v1.TaskService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    let mut reflection = ServerReflectionClient::new(channel(stack.task_addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"todo.task.v1.TaskService".to_owned()),
        "{names:?}"
    );
    // Only what this server serves: grpcurl's `list` must not offer the auth-service here.
    assert!(
        !names.contains(&"todo.auth.v1.AuthService".to_owned()),
        "{names:?}"
    );
}

async fn hs256_stack() -> TestStack {
    TestStack::spawn_with(
        |auth| {
            auth.tokens.jwt.signing_algorithm = SigningMode::Hs256;
            auth.tokens.jwt.shared_secret = Some(SecretString::from(SECRET));
        },
        |task| {
            task.jwt.signing_algorithm = SigningMode::Hs256;
            task.jwt.shared_secret = Some(SecretString::from(SECRET));
        },
    )
    .await
}

#[tokio::test]
async fn in_hs256_mode_tokens_of_the_shared_secret_work_and_wrong_claims_are_refused() {
    let stack = hs256_stack().await;
    let alice = stack.user("alice@example.com").await;
    assert_eq!(kid_of(&alice.token), SHARED_SECRET_KID);
    let task = alice.create("shared secret").await;
    assert_eq!(alice.get(&task.id).await.unwrap(), task);
    assert_eq!(stack.keys.fetch_count(), 0, "HS256 mode fetches no keys");

    // Correctly signed, but each with one claim wrong.
    let claims = claims_of(&alice.token);
    let now = stack.clock_now();
    let mut cases = Vec::new();
    for (claim, value) in [
        ("iss", json!("someone-else")),
        ("aud", json!("another-api")),
        ("exp", json!(now - 120)),
        ("nbf", json!(now + 120)),
        ("sub", json!("not-a-uuid")),
    ] {
        let mut wrong = claims.clone();
        wrong[claim] = value;
        cases.push((claim, sign_hs256(&wrong, SECRET)));
    }
    cases.push((
        "secret",
        sign_hs256(&claims, "another secret of the same kind"),
    ));
    cases.push(("control", sign_hs256(&claims, SECRET)));
    for (case, token) in cases {
        let result = holding(&alice, &token).get(&task.id).await;
        if case == "control" {
            assert_eq!(result.unwrap(), task, "a correctly re-signed token works");
        } else {
            assert_refused(result);
        }
    }
}

#[tokio::test]
async fn strict_mode_refuses_a_signed_out_session_at_once_and_default_mode_at_expiry() {
    let strict = TestStack::spawn_with(|_| {}, |task| task.strict_sessions = true).await;
    let lenient = TestStack::spawn().await;
    for (stack, refused_at_once) in [(strict, true), (lenient, false)] {
        let alice = stack.user("alice@example.com").await;
        alice.create("before sign-out").await;
        stack
            .auth_client
            .clone()
            .sign_out(with_bearer(
                auth_pb::SignOutRequest::default(),
                &alice.token,
            ))
            .await
            .unwrap();
        let result = alice.list(pb::ListTasksRequest::default()).await;
        if refused_at_once {
            assert_refused(result);
        } else {
            assert_eq!(result.unwrap().tasks.len(), 1, "valid until it expires");
            stack.advance(15 * 60 + 31);
            assert_refused(alice.list(pb::ListTasksRequest::default()).await);
        }
    }
}
