use crate::helpers::*;
use todo_api::{todo::auth::v1::IntrospectRequest, todo::auth::v1::SignOutRequest};
use tonic::Code;

#[tokio::test]
async fn refresh_rotates_both_tokens() {
    let app = TestApp::spawn().await;
    let first = tokens(&app.sign_up("ada@example.com").await).clone();
    app.advance(5);
    let second = app.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert!(app.current_user(&second.access_token).await.is_ok());
    let third = app.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
}

#[tokio::test]
async fn two_concurrent_refreshes_of_one_token_both_get_the_same_pair() {
    let app = TestApp::spawn().await;
    let first = tokens(&app.sign_up("ada@example.com").await).clone();
    let (a, b) = tokio::join!(
        app.refresh(&first.refresh_token),
        app.refresh(&first.refresh_token)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.refresh_token, b.refresh_token);
    assert_eq!(a.access_token, b.access_token);

    app.advance(9);
    let late = app.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(
        late.access_token, a.access_token,
        "inside the grace window: the same pair again"
    );
    assert!(
        app.refresh(&a.refresh_token).await.is_ok(),
        "the new refresh token works"
    );
}

#[tokio::test]
async fn a_spent_refresh_token_after_the_grace_window_revokes_the_session() {
    let app = TestApp::spawn().await;
    let first = tokens(&app.sign_up("ada@example.com").await).clone();
    let second = app.refresh(&first.refresh_token).await.unwrap();
    app.advance(11);
    assert_error(
        app.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );

    assert_error(
        app.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert!(
        !app.introspect(&second.access_token).await.active,
        "the whole session is gone"
    );
    assert_error(
        app.current_user(&second.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
}

#[tokio::test]
async fn unknown_or_empty_refresh_tokens_are_refused() {
    let app = TestApp::spawn().await;
    assert_error(
        app.refresh("made-up").await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert_error(
        app.refresh("").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn refresh_tokens_stop_working_when_the_session_expires() {
    let app = TestApp::spawn_with(|c| c.tokens.session_ttl_secs = 3600).await;
    let first = tokens(&app.sign_up("ada@example.com").await).clone();
    app.advance(3600);
    assert_error(
        app.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
}

#[tokio::test]
async fn sign_out_with_the_bearer_token_makes_its_tokens_inactive() {
    let app = TestApp::spawn().await;
    let pair = tokens(&app.sign_up("ada@example.com").await).clone();
    let other_session = app
        .sign_in("ada@example.com", PASSWORD)
        .await
        .unwrap()
        .tokens
        .unwrap();
    assert!(app.introspect(&pair.access_token).await.active);

    app.sign_out_bearer(&pair.access_token).await.unwrap();
    assert!(!app.introspect(&pair.access_token).await.active);
    assert!(!app.introspect(&pair.refresh_token).await.active);
    assert_error(
        app.refresh(&pair.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert_error(
        app.sign_out_bearer(&pair.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    assert!(
        app.introspect(&other_session.access_token).await.active,
        "other sessions live on"
    );
}

#[tokio::test]
async fn sign_out_with_a_refresh_token_ends_that_session() {
    let app = TestApp::spawn().await;
    let pair = tokens(&app.sign_up("ada@example.com").await).clone();
    let request = SignOutRequest {
        refresh_token: pair.refresh_token.clone(),
    };
    app.client.clone().sign_out(request).await.unwrap();
    assert!(!app.introspect(&pair.access_token).await.active);
}

#[tokio::test]
async fn sign_out_without_any_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    assert_error(
        app.client.clone().sign_out(SignOutRequest::default()).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
}

#[tokio::test]
async fn introspect_describes_active_access_and_refresh_tokens() {
    let app = TestApp::spawn().await;
    let signed_up = app.sign_up("ada@example.com").await;
    let user_id = signed_up.user.clone().unwrap().id;
    let pair = tokens(&signed_up);

    let access = app.introspect(&pair.access_token).await;
    assert!(access.active);
    assert_eq!(access.sub, user_id);
    assert_eq!(access.email, "ada@example.com");
    assert_eq!(access.token_type, "access_token");
    assert_eq!(
        (access.iss.as_str(), access.aud.as_str()),
        ("todo-auth", "todo-api")
    );
    let lifetime = access.expire_time.unwrap().seconds - access.issue_time.unwrap().seconds;
    assert_eq!(lifetime, 900);

    let refresh = app.introspect(&pair.refresh_token).await;
    assert!(refresh.active);
    assert_eq!(refresh.token_type, "refresh_token");
    assert_eq!(refresh.session_id, access.session_id);
}

#[tokio::test]
async fn introspect_says_inactive_for_garbage_and_refuses_an_empty_token() {
    let app = TestApp::spawn().await;
    assert!(!app.introspect("garbage").await.active);
    assert!(!app.introspect("a.b.c").await.active);
    let empty = IntrospectRequest {
        token: "  ".into(),
        token_type_hint: String::new(),
    };
    assert_error(
        app.client.clone().introspect(empty).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn a_refresh_racing_a_sign_out_never_leaves_a_usable_refresh_token() {
    let app = TestApp::spawn().await;
    app.sign_up("ada@example.com").await;
    let mut refreshed_first = 0;
    for round in 0..100 {
        let signed_in = app.sign_in("ada@example.com", PASSWORD).await.unwrap();
        let pair = signed_in.tokens.unwrap();
        let sign_out = {
            let mut client = app.client.clone();
            let request = SignOutRequest {
                refresh_token: pair.refresh_token.clone(),
            };
            tokio::spawn(async move { client.sign_out(request).await })
        };
        let refreshed = app.refresh(&pair.refresh_token).await;
        sign_out.await.unwrap().unwrap();
        let Ok(new_pair) = refreshed else { continue };
        refreshed_first += 1;
        // The refresh won the race, and the sign-out then ended the whole session.
        let status = app.refresh(&new_pair.refresh_token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "round {round}");
        assert!(
            !app.introspect(&new_pair.access_token).await.active,
            "round {round}"
        );
        assert!(
            !app.introspect(&new_pair.refresh_token).await.active,
            "round {round}"
        );
    }
    println!("{refreshed_first} of 100 refreshes finished before their sign-out");
}
