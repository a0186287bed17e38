//! What several tests do as a client of the pair.

use std::net::SocketAddr;
use test_support::{channel, fresh_database_url};
use todo_api::todo::auth::v1::auth_service_client::AuthServiceClient;

/// Signs `email` up at the auth-service at `auth_addr`; the access token.
pub async fn sign_up(auth_addr: SocketAddr, email: &str) -> Result<String, tonic::Status> {
    let response =
        test_support::sign_up(AuthServiceClient::new(channel(auth_addr).await), email).await?;
    Ok(response.tokens.unwrap_or_default().access_token)
}

/// The user id (`sub`) an access token names, read from its claims without verifying them.
pub fn user_id_of(token: &str) -> String {
    use base64::Engine as _;
    let claims = token.split('.').nth(1).unwrap_or_default();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
    claims["sub"].as_str().unwrap_or_default().to_owned()
}

/// The environment for the `todo-stack` binary: none (its SQLite files under `./data`), or,
/// when `TEST_DATABASE_URL` is a PostgreSQL URL, a fresh database for each service.
pub async fn database_env() -> Vec<(&'static str, String)> {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|url| url.starts_with("postgres")) {
        return Vec::new();
    }
    vec![
        (
            "AUTH_DATABASE_URL",
            fresh_database_url("auth_test").await.unwrap(),
        ),
        (
            "TASK_DATABASE_URL",
            fresh_database_url("task_test").await.unwrap(),
        ),
    ]
}
