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
    app.advance(1);
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

/// Row 7 of the fair-share review: a session refreshed again and again keeps one row, not one
/// per token (3,000 refreshes used to leave 3,001 rows for 30 days), and every generation it
/// has left behind is still recognised: presenting an old one revokes the session.
#[tokio::test]
async fn a_session_refreshed_many_times_keeps_one_row_and_still_recognises_every_old_token() {
    let app = TestApp::spawn().await;
    let mut pair = tokens(&app.sign_up("ada@example.com").await).clone();
    let mut spent = Vec::new();
    for _ in 0..200 {
        app.advance(1);
        let next = app.refresh(&pair.refresh_token).await.unwrap();
        spent.push(std::mem::replace(&mut pair, next).refresh_token);
    }
    let url = &app.database_url;
    assert_eq!(count_rows(url, "sessions").await, 1);
    assert_eq!(
        count_rows(url, "refresh_tokens").await,
        0,
        "no token is stored"
    );
    // A token 150 generations old, long after its grace window: reuse.
    app.advance(60);
    let status = app.refresh(&spent[50]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app.refresh(&pair.refresh_token).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "the session was revoked, its current token with it"
    );
}

/// Refresh is limited per session (REFRESH_MIN_INTERVAL_MS, 1 s): a loop of exchanges is told
/// when to come back; concurrent refreshes of one token are replays and are not limited.
#[tokio::test]
async fn a_session_cannot_exchange_its_refresh_token_in_a_loop() {
    let app = TestApp::spawn().await;
    let first = tokens(&app.sign_up("ada@example.com").await).clone();
    let second = app.refresh(&first.refresh_token).await.unwrap();
    let again = app.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(
        again.refresh_token, second.refresh_token,
        "a replay, not limited"
    );
    let status = app.refresh(&second.refresh_token).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(details.error_info().unwrap().reason, "TOO_MANY_REQUESTS");
    assert!(retry_delay(&status).is_some());
    app.advance(1);
    app.refresh(&second.refresh_token)
        .await
        .expect("after the interval");
}

/// A refresh token issued before generations (32 random bytes, stored by hash) still works
/// after the upgrade: exchanged once for generation 1, replayed within the grace window, and
/// recognised as reuse after it.
#[tokio::test]
async fn a_refresh_token_from_before_generations_is_exchanged_once_and_its_reuse_recognised() {
    use auth_service::internals::{hash_refresh_token, new_refresh_token};
    use sea_orm::{
        ConnectionTrait,
        sea_query::{Alias, Query},
    };
    let app = TestApp::spawn().await;
    let pair = tokens(&app.sign_up("ada@example.com").await).clone();
    let session_id: uuid::Uuid = app
        .introspect(&pair.access_token)
        .await
        .session_id
        .parse()
        .unwrap();
    // What the previous version stored for the session's token.
    let legacy = new_refresh_token().unwrap();
    let db = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let insert = Query::insert()
        .into_table(Alias::new("refresh_tokens"))
        .columns(["token_hash", "session_id", "created_at"].map(Alias::new))
        .values_panic([
            hash_refresh_token(&legacy).into(),
            session_id.into(),
            app.state_now().into(),
        ])
        .to_owned();
    db.execute(&insert).await.unwrap();

    app.advance(1);
    let upgraded = app.refresh(&legacy).await.unwrap();
    assert!(app.current_user(&upgraded.access_token).await.is_ok());
    let replay = app.refresh(&legacy).await.unwrap();
    assert_eq!(
        replay.refresh_token, upgraded.refresh_token,
        "within the grace window"
    );
    app.advance(11);
    let next = app.refresh(&upgraded.refresh_token).await.unwrap();
    assert_eq!(
        app.refresh(&legacy).await.unwrap_err().code(),
        Code::Unauthenticated,
        "spent long ago: reuse"
    );
    assert_eq!(
        app.refresh(&next.refresh_token).await.unwrap_err().code(),
        Code::Unauthenticated,
        "the reuse revoked the session"
    );
}

/// Sessions are bounded per user (MAX_SESSIONS_PER_USER): signing in again and again ends the
/// oldest sessions instead of adding rows without end; the newest keep working.
#[tokio::test]
async fn a_user_keeps_at_most_max_sessions_and_the_oldest_end() {
    let app = TestApp::spawn_with(|c| c.tokens.max_sessions_per_user = 3).await;
    let first = tokens(&app.sign_up("ada@example.com").await).clone();
    let mut latest = Vec::new();
    for _ in 0..5 {
        app.advance(1);
        let signed_in = app.sign_in("ada@example.com", PASSWORD).await.unwrap();
        latest.push(signed_in.tokens.unwrap());
    }
    assert_eq!(count_rows(&app.database_url, "sessions").await, 3);
    assert_eq!(
        app.refresh(&first.refresh_token).await.unwrap_err().code(),
        Code::Unauthenticated,
        "the oldest session ended"
    );
    for pair in &latest[2..] {
        app.refresh(&pair.refresh_token)
            .await
            .expect("the newest sessions work");
    }
}

/// A thief who stole a refresh token and keeps the session moving (an exchange every few
/// seconds) cannot make the owner's older token look like a harmless late copy: any
/// generation older than the previous one revokes the session, however recent the last
/// exchange.
#[tokio::test]
async fn an_old_generation_revokes_the_session_even_right_after_an_exchange() {
    let app = TestApp::spawn().await;
    let owners = tokens(&app.sign_up("ada@example.com").await).clone();
    app.advance(1);
    let thiefs = app.refresh(&owners.refresh_token).await.unwrap();
    app.advance(2);
    let thiefs = app.refresh(&thiefs.refresh_token).await.unwrap();
    app.advance(2);
    // The owner's token is two generations old; the last exchange was 2 s ago.
    assert_eq!(
        app.refresh(&owners.refresh_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        app.refresh(&thiefs.refresh_token).await.unwrap_err().code(),
        Code::Unauthenticated,
        "the session was revoked: the thief's token stopped working"
    );
}
