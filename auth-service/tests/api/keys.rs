use crate::helpers::*;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use todo_api::todo::auth::v1::GetSigningKeysRequest;

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn published_kids(app: &TestApp) -> Vec<String> {
    let keys = app.signing_keys().await;
    keys.into_iter().map(|k| k.kid).collect()
}

#[tokio::test]
async fn signing_keys_are_public_ed25519_keys_matching_token_kids() {
    let app = TestApp::spawn().await;
    let token = app.access_token("ada@example.com").await;
    let response = app
        .client
        .clone()
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.keys.len(), 1);
    let key = &response.keys[0];
    assert_eq!(key.kid, kid_of(&token));
    assert_eq!(key.algorithm, "EdDSA");
    assert_eq!(
        key.public_key.len(),
        32,
        "a raw public key, never the private one"
    );
    assert!(response.cache_seconds > 0);
}

#[tokio::test]
async fn during_a_key_rotation_tokens_of_the_previous_key_still_verify() {
    let app = TestApp::spawn_with(|c| c.tokens.key_rotation_secs = 600).await;
    let old = app.access_token("ada@example.com").await;
    app.advance(601);
    let new = app
        .sign_in("ada@example.com", PASSWORD)
        .await
        .unwrap()
        .tokens
        .unwrap()
        .access_token;
    assert_ne!(
        kid_of(&new),
        kid_of(&old),
        "a new key signs after the rotation"
    );
    assert!(
        app.current_user(&old).await.is_ok(),
        "the previous key still verifies"
    );
    assert!(app.current_user(&new).await.is_ok());
    assert_eq!(published_kids(&app).await.len(), 2);

    // The old key signed its last token at 600 s; it expires 900 s + 30 s leeway later.
    app.advance(600 + 900 + 30 - 601 + 1);
    let kids = published_kids(&app).await;
    assert!(
        !kids.contains(&kid_of(&old)),
        "the first key is no longer published: {kids:?}"
    );
    assert!(
        kids.contains(&kid_of(&new)),
        "the second key still verifies its last tokens: {kids:?}"
    );
}

#[tokio::test]
async fn keys_survive_a_restart_so_tokens_stay_valid() {
    let url = persistent_database_url().await;
    let first = TestApp::spawn_on(&url, |_| {}).await;
    let token = first.access_token("ada@example.com").await;
    drop(first);
    let second = TestApp::spawn_on(&url, |_| {}).await;
    assert!(second.current_user(&token).await.is_ok());
}

#[tokio::test]
async fn the_jwks_document_lets_a_standard_jwt_library_verify_our_tokens() {
    let app = TestApp::spawn().await;
    let token = app.access_token("ada@example.com").await;
    let response = app
        .http("GET /.well-known/jwks.json HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_lowercase()
            .contains("content-type: application/json")
    );
    assert!(
        response
            .to_lowercase()
            .contains("cache-control: public, max-age=300"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    // The body may be chunked: take the JSON object.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    assert!(!json.contains("\"d\""), "no private key material");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(json).unwrap();
    let jwk = jwks
        .find(&kid_of(&token))
        .expect("the token's key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["todo-api"]);
    validation.set_issuer(&["todo-auth"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["email"], "ada@example.com");
    assert!(URL_SAFE_NO_PAD.decode(jwk_x(json)).unwrap().len() == 32);
}

fn jwk_x(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["keys"][0]["x"].as_str().unwrap().to_owned()
}
