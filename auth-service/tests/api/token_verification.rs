use crate::helpers::*;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::Code;

const SECRET: &str = "an HS256 secret that is at least 32 bytes long";

fn part(token: &str, index: usize) -> String {
    token.split('.').nth(index).unwrap().to_owned()
}

#[tokio::test]
async fn get_current_user_without_a_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let status = app
        .client
        .clone()
        .get_current_user(todo_api::todo::auth::v1::GetCurrentUserRequest {})
        .await;
    assert_error(status, Code::Unauthenticated, "INVALID_TOKEN");
    assert_error(
        app.current_user("not-a-jwt").await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
}

#[tokio::test]
async fn a_token_with_a_tampered_signature_or_payload_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.access_token("ada@example.com").await;
    let mut signature = part(&token, 2).into_bytes();
    signature[5] = if signature[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{}.{}.{}",
        part(&token, 0),
        part(&token, 1),
        String::from_utf8(signature).unwrap()
    );
    assert_error(
        app.current_user(&tampered).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );

    let mut claims: serde_json::Value = jwt_json(&token, 1);
    claims["email"] = "mallory@example.com".into();
    let forged = format!(
        "{}.{}.{}",
        part(&token, 0),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        part(&token, 2)
    );
    app.assert_token_refused(&forged).await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.access_token("ada@example.com").await;
    let header: serde_json::Value = jwt_json(&token, 0);
    let none_header = serde_json::json!({ "alg": "none", "typ": "JWT", "kid": header["kid"] });
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(none_header.to_string()),
        part(&token, 1)
    );
    app.assert_token_refused(&unsigned).await;
}

#[tokio::test]
async fn an_hs256_token_made_with_the_public_key_as_secret_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.access_token("ada@example.com").await;
    let keys = app.signing_keys().await;
    let key = &keys[0];
    let claims: serde_json::Value = jwt_json(&token, 1);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key.public_key),
    )
    .unwrap();
    assert_error(
        app.current_user(&confused).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime_plus_leeway() {
    let app = TestApp::spawn().await;
    let token = app.access_token("ada@example.com").await;
    app.advance(900 + 30);
    assert!(
        app.current_user(&token).await.is_ok(),
        "still inside the leeway"
    );
    app.advance(1);
    app.assert_token_refused(&token).await;
}

#[tokio::test]
async fn a_token_is_not_valid_before_its_nbf() {
    let app = TestApp::spawn().await;
    let token = app.access_token("ada@example.com").await;
    let issued = clock::Clock::now(&*app.clock);
    app.clock.set(issued - chrono::TimeDelta::seconds(31));
    assert_error(
        app.current_user(&token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    app.clock.set(issued - chrono::TimeDelta::seconds(29));
    assert!(app.current_user(&token).await.is_ok(), "inside the leeway");
}

async fn hs256_app(issuer: &str, audience: &str) -> TestApp {
    let (issuer, audience) = (issuer.to_owned(), audience.to_owned());
    TestApp::spawn_with(move |c| {
        c.tokens.jwt.signing_algorithm = auth_service::config::SigningMode::Hs256;
        c.tokens.jwt.shared_secret = Some(access_token::SecretString::from(SECRET));
        c.tokens.jwt.jwt_issuer = issuer;
        c.tokens.jwt.jwt_audience = audience;
    })
    .await
}

#[tokio::test]
async fn hs256_mode_issues_tokens_it_verifies_and_publishes_no_key() {
    let app = hs256_app("todo-auth", "todo-api").await;
    let token = app.access_token("ada@example.com").await;
    assert!(app.current_user(&token).await.is_ok());
    let header: serde_json::Value = jwt_json(&token, 0);
    assert_eq!(header["alg"], "HS256");
    let keys = app.signing_keys().await;
    assert!(keys.is_empty(), "a shared secret is never published");
}

#[tokio::test]
async fn a_token_from_another_issuer_or_for_another_audience_is_refused() {
    let app = hs256_app("todo-auth", "todo-api").await;
    let other_issuer = hs256_app("someone-else", "todo-api").await;
    let other_audience = hs256_app("todo-auth", "another-api").await;
    let foreign = other_issuer.access_token("ada@example.com").await;
    assert_error(
        app.current_user(&foreign).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    let foreign = other_audience.access_token("ada@example.com").await;
    assert_error(
        app.current_user(&foreign).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
}

#[tokio::test]
async fn hs256_mode_refuses_to_start_with_a_short_secret() {
    let url = fresh_database_url().await;
    let mut config =
        auth_service::config::AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), &url);
    config.tokens.jwt.signing_algorithm = auth_service::config::SigningMode::Hs256;
    config.tokens.jwt.shared_secret = Some(access_token::SecretString::from("too short"));
    let clock = clock::ManualClock::new(chrono::Utc::now());
    let error = auth_service::Application::build(config, clock)
        .await
        .err()
        .expect("start-up refused");
    assert!(error.to_string().contains("at least 32 bytes"), "{error}");
}
