use crate::helpers::*;
use tonic::Code;

#[tokio::test]
async fn sign_up_returns_the_user_and_tokens_that_identify_them() {
    let app = TestApp::spawn().await;
    let response = app.sign_up("  Ada@Example.COM ").await;
    let user = response.user.clone().unwrap();
    assert_eq!(user.email, "ada@example.com");
    assert!(uuid::Uuid::parse_str(&user.id).is_ok());
    let tokens = tokens(&response);
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    assert!(!tokens.refresh_token.is_empty());

    let me = app.current_user(&tokens.access_token).await.unwrap();
    assert_eq!(me.id, user.id);
    assert_eq!(me.email, "ada@example.com");
}

#[tokio::test]
async fn sign_up_keeps_a_trimmed_display_name() {
    let app = TestApp::spawn().await;
    let request = todo_api::todo::auth::v1::SignUpRequest {
        email: "grace@example.com".into(),
        password: PASSWORD.into(),
        display_name: Some("  Grace Hopper ".into()),
    };
    let response = app
        .client
        .clone()
        .sign_up(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.user.unwrap().display_name, "Grace Hopper");
}

#[tokio::test]
async fn sign_up_refuses_bad_input_field_by_field() {
    let app = TestApp::spawn().await;
    let status = assert_error(
        app.try_sign_up("not-an-email", "short").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["email", "password"]);
    assert!(status.message().contains("at least 8 characters"));

    let status = assert_error(
        app.try_sign_up("ada@example.com", &"x".repeat(257)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["password"]);
    assert!(status.message().contains("at most 256"));
}

#[tokio::test]
async fn a_megabyte_password_is_refused_before_any_hashing() {
    let app = TestApp::spawn_with(|c| c.server.max_request_bytes = 2 * 1024 * 1024).await;
    let status = assert_error(
        app.sign_in("ada@example.com", &"x".repeat(1024 * 1024))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["password"]);
}

#[tokio::test]
async fn oversized_requests_are_refused_by_the_size_limit() {
    let app = TestApp::spawn().await;
    let status = assert_error(
        app.try_sign_up("ada@example.com", &"x".repeat(100 * 1024))
            .await,
        Code::ResourceExhausted,
        "REQUEST_TOO_LARGE",
    );
    assert!(status.message().contains("65536"), "{status:?}");
}

#[tokio::test]
async fn the_same_email_in_another_case_cannot_sign_up_twice() {
    let app = TestApp::spawn().await;
    app.sign_up("ada@example.com").await;
    assert_error(
        app.try_sign_up("ADA@example.com", PASSWORD).await,
        Code::AlreadyExists,
        "EMAIL_ALREADY_REGISTERED",
    );
}

#[tokio::test]
async fn sign_in_with_the_right_password_returns_fresh_tokens() {
    let app = TestApp::spawn().await;
    let signed_up = app.sign_up("ada@example.com").await;
    let signed_in = app.sign_in("ADA@example.com ", PASSWORD).await.unwrap();
    assert_eq!(
        signed_in.user.unwrap().id,
        signed_up.user.clone().unwrap().id
    );
    let access = signed_in.tokens.unwrap().access_token;
    assert_ne!(access, tokens(&signed_up).access_token);
    assert!(app.current_user(&access).await.is_ok());
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.sign_up("ada@example.com").await;
    let wrong = assert_error(
        app.sign_in("ada@example.com", "wrong password").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let unknown = assert_error(
        app.sign_in("nobody@example.com", PASSWORD).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert_eq!(wrong.message(), unknown.message());
}

#[tokio::test]
async fn sign_in_with_missing_fields_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let status = assert_error(
        app.sign_in("", "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["email", "password"]);
}

#[tokio::test]
async fn a_hash_made_with_old_parameters_is_upgraded_at_the_next_sign_in() {
    let url = persistent_database_url().await;
    let old = TestApp::spawn_on(&url, |c| c.passwords.argon2_memory_kib = 8 * 1024).await;
    old.sign_up("ada@example.com").await;
    drop(old);

    let app = TestApp::spawn_on(&url, |_| {}).await;
    app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let hash: String = sea_orm::ConnectionTrait::query_one_raw(
        &db,
        sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT password_hash FROM users",
        ),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get("", "password_hash")
    .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    app.sign_in("ada@example.com", PASSWORD).await.unwrap();
}
