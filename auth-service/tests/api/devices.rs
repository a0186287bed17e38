//! Accounts and devices: a user sees where they are signed in, signs other devices out,
//! changes their password and their profile.

use crate::helpers::*;
use todo_api::todo::auth::v1::{self as pb, auth_service_client::AuthServiceClient};
use tonic::{Code, Status, transport::Channel};

const NEW_PASSWORD: &str = "a brand new passphrase";

/// Signs `email` in on `client`; its token pair.
async fn sign_in_on(client: &AuthServiceClient<Channel>, email: &str) -> pb::TokenPair {
    let request = pb::SignInRequest {
        email: email.into(),
        password: PASSWORD.into(),
    };
    let response = client.clone().sign_in(request).await.unwrap().into_inner();
    response.tokens.unwrap()
}

async fn list(app: &TestApp, access_token: &str) -> Result<Vec<pb::Session>, Status> {
    let request = with_bearer(pb::ListSessionsRequest {}, access_token);
    let response = app.client.clone().list_sessions(request).await?;
    Ok(response.into_inner().sessions)
}

async fn revoke(app: &TestApp, access_token: &str, session_id: &str) -> Result<(), Status> {
    let request = pb::RevokeSessionRequest {
        session_id: session_id.into(),
    };
    let request = with_bearer(request, access_token);
    app.client.clone().revoke_session(request).await.map(|_| ())
}

async fn revoke_others(app: &TestApp, access_token: &str) -> Result<i64, Status> {
    let request = with_bearer(pb::RevokeOtherSessionsRequest {}, access_token);
    let response = app.client.clone().revoke_other_sessions(request).await?;
    Ok(response.into_inner().revoked_count)
}

async fn change_password(
    app: &TestApp,
    access_token: &str,
    current: &str,
    new: &str,
    sign_out_others: Option<bool>,
) -> Result<i64, Status> {
    let request = pb::ChangePasswordRequest {
        current_password: current.into(),
        new_password: new.into(),
        sign_out_other_sessions: sign_out_others,
    };
    let response = app
        .client
        .clone()
        .change_password(with_bearer(request, access_token))
        .await?;
    Ok(response.into_inner().signed_out_sessions)
}

/// The session id of `token` (an access token), as Introspect reports it.
async fn session_of(app: &TestApp, access_token: &str) -> String {
    app.introspect(access_token).await.session_id
}

#[tokio::test]
async fn each_device_is_listed_with_its_address_and_user_agent_newest_first() {
    let app = TestApp::spawn().await;
    let laptop = device_client("127.0.0.2:0", "laptop-browser/1.0", &app).await;
    let phone = device_client("127.0.0.3:0", "phone-app/2.0", &app).await;
    app.sign_up("ada@example.com").await;
    app.sign_up("bob@example.com").await;
    let on_laptop = sign_in_on(&laptop, "ada@example.com").await;
    let on_phone = sign_in_on(&phone, "ada@example.com").await;
    // The sign-up's session is a third; the laptop's list is everyone's but Bob's.
    let sessions = list(&app, &on_laptop.access_token).await.unwrap();
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    let (phone_row, laptop_row) = (&sessions[0], &sessions[1]);
    assert_eq!(phone_row.id, session_of(&app, &on_phone.access_token).await);
    assert_eq!(phone_row.client_address, "127.0.0.3");
    assert!(
        phone_row.user_agent.starts_with("phone-app/2.0"),
        "{phone_row:?}"
    );
    assert!(!phone_row.current);
    assert_eq!(laptop_row.client_address, "127.0.0.2");
    assert!(laptop_row.user_agent.starts_with("laptop-browser/1.0"));
    assert!(laptop_row.current, "the asking session is marked");
    assert!(sessions.iter().filter(|s| s.current).count() == 1);
    for row in &sessions {
        assert!(row.create_time.is_some() && row.last_use_time.is_some());
        assert!(row.expire_time.is_some());
    }

    // Refreshing from elsewhere moves "last used" and where from.
    app.advance(60);
    let elsewhere = device_client("127.0.0.4:0", "phone-app/2.1", &app).await;
    let request = pb::RefreshRequest {
        refresh_token: on_phone.refresh_token.clone(),
    };
    elsewhere.clone().refresh(request).await.unwrap();
    let sessions = list(&app, &on_laptop.access_token).await.unwrap();
    assert_eq!(sessions[0].client_address, "127.0.0.4");
    assert!(sessions[0].user_agent.starts_with("phone-app/2.1"));
    let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds);
    assert!(seconds(&sessions[0].last_use_time) > seconds(&sessions[0].create_time));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_listed_address_is_the_forwarded_client() {
    let app = TestApp::spawn_with(|c| {
        c.server.proxies.trusted_proxies = vec!["127.0.0.5/32".parse().unwrap()];
    })
    .await;
    app.sign_up("ada@example.com").await;
    let proxy = device_client("127.0.0.5:0", "via-proxy/1.0", &app).await;
    let mut request = tonic::Request::new(pb::SignInRequest {
        email: "ada@example.com".into(),
        password: PASSWORD.into(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let tokens = proxy
        .clone()
        .sign_in(request)
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let sessions = list(&app, &tokens.access_token).await.unwrap();
    assert_eq!(sessions[0].client_address, "203.0.113.9");
}

#[tokio::test]
async fn revoking_a_session_ends_its_tokens_and_forgets_where_it_was() {
    let app = TestApp::spawn().await;
    let laptop = tokens(&app.sign_up("ada@example.com").await).clone();
    let phone = app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    let phone = phone.tokens.unwrap();
    let phone_session = session_of(&app, &phone.access_token).await;

    revoke(&app, &laptop.access_token, &phone_session)
        .await
        .unwrap();
    assert_error(
        app.refresh(&phone.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    app.assert_token_refused(&phone.access_token).await;
    let sessions = list(&app, &laptop.access_token).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].current);
    let remembered = count_rows(
        &app.database_url,
        "sessions WHERE revoked_at IS NOT NULL AND (client_address IS NOT NULL OR user_agent IS NOT NULL)",
    )
    .await;
    assert_eq!(remembered, 0, "a signed-out session keeps no address");

    // Gone is gone: the same answer as for a session that never was.
    let again = assert_error(
        revoke(&app, &laptop.access_token, &phone_session).await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    let unknown = assert_error(
        revoke(
            &app,
            &laptop.access_token,
            &uuid::Uuid::now_v7().to_string(),
        )
        .await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    assert_eq!(again.message(), unknown.message());
    // A revoked session's own token cannot list or revoke anything.
    assert_error(
        list(&app, &phone.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
}

#[tokio::test]
async fn another_users_session_answers_not_found_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ada = tokens(&app.sign_up("ada@example.com").await).clone();
    let bob = tokens(&app.sign_up("bob@example.com").await).clone();
    let bobs_session = session_of(&app, &bob.access_token).await;
    let status = assert_error(
        revoke(&app, &ada.access_token, &bobs_session).await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    let unknown = revoke(&app, &ada.access_token, &uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(status.message(), unknown.message(), "one answer for both");
    assert!(app.current_user(&bob.access_token).await.is_ok());
    assert!(app.refresh(&bob.refresh_token).await.is_ok());
    assert_eq!(list(&app, &ada.access_token).await.unwrap().len(), 1);

    // Bad input and no token.
    for bad in ["", "not-a-session"] {
        let status = assert_error(
            revoke(&app, &ada.access_token, bad).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["session_id"]);
    }
    let anonymous = app
        .client
        .clone()
        .revoke_session(pb::RevokeSessionRequest {
            session_id: bobs_session,
        })
        .await;
    assert_error(anonymous, Code::Unauthenticated, "INVALID_TOKEN");
    let anonymous = app
        .client
        .clone()
        .list_sessions(pb::ListSessionsRequest {})
        .await;
    assert_error(anonymous, Code::Unauthenticated, "INVALID_TOKEN");
}

#[tokio::test]
async fn revoke_other_sessions_leaves_only_the_caller() {
    let app = TestApp::spawn().await;
    let first = tokens(&app.sign_up("ada@example.com").await).clone();
    let second = app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    let second = second.tokens.unwrap();
    let third = app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    let third = third.tokens.unwrap();
    let bob = tokens(&app.sign_up("bob@example.com").await).clone();

    assert_eq!(revoke_others(&app, &second.access_token).await.unwrap(), 2);
    let sessions = list(&app, &second.access_token).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, session_of(&app, &second.access_token).await);
    for gone in [&first, &third] {
        assert_error(
            app.refresh(&gone.refresh_token).await,
            Code::Unauthenticated,
            "INVALID_REFRESH_TOKEN",
        );
    }
    assert!(app.refresh(&second.refresh_token).await.is_ok());
    assert!(
        app.current_user(&bob.access_token).await.is_ok(),
        "Bob's untouched"
    );
    assert_eq!(revoke_others(&app, &second.access_token).await.unwrap(), 0);
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let app = TestApp::spawn().await;
    let here = tokens(&app.sign_up("ada@example.com").await).clone();
    let other = app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    let other = other.tokens.unwrap();

    let signed_out = change_password(&app, &here.access_token, PASSWORD, NEW_PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(signed_out, 1, "other sessions are signed out by default");
    assert_error(
        app.sign_in("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert!(app.sign_in("ada@example.com", NEW_PASSWORD).await.is_ok());
    assert_error(
        app.refresh(&other.refresh_token).await,
        Code::Unauthenticated,
        "INVALID_REFRESH_TOKEN",
    );
    assert!(app.current_user(&here.access_token).await.is_ok());
    assert!(app.refresh(&here.refresh_token).await.is_ok(), "kept");
}

#[tokio::test]
async fn a_password_change_can_leave_other_sessions_signed_in() {
    let app = TestApp::spawn().await;
    let here = tokens(&app.sign_up("ada@example.com").await).clone();
    let other = app.sign_in("ada@example.com", PASSWORD).await.unwrap();
    let other = other.tokens.unwrap();
    let signed_out = change_password(
        &app,
        &here.access_token,
        PASSWORD,
        NEW_PASSWORD,
        Some(false),
    )
    .await
    .unwrap();
    assert_eq!(signed_out, 0);
    assert!(app.refresh(&other.refresh_token).await.is_ok());
}

#[tokio::test]
async fn a_password_change_refuses_wrong_weak_and_unchanged_passwords() {
    let app = TestApp::spawn().await;
    let here = tokens(&app.sign_up("ada@example.com").await).clone();
    let wrong = assert_error(
        change_password(
            &app,
            &here.access_token,
            "not my password",
            NEW_PASSWORD,
            None,
        )
        .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert!(wrong.message().contains("current password"), "{wrong:?}");
    let unchanged = assert_error(
        change_password(&app, &here.access_token, PASSWORD, PASSWORD, None).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&unchanged), ["new_password"]);
    let weak = assert_error(
        change_password(&app, &here.access_token, "", "short", None).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&weak), ["current_password", "new_password"]);
    let anonymous = app
        .client
        .clone()
        .change_password(pb::ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: NEW_PASSWORD.into(),
            sign_out_other_sessions: None,
        })
        .await;
    assert_error(anonymous, Code::Unauthenticated, "INVALID_TOKEN");
    // Nothing changed.
    assert!(app.sign_in("ada@example.com", PASSWORD).await.is_ok());
    assert!(app.current_user(&here.access_token).await.is_ok());
}

#[tokio::test]
async fn guesses_at_the_current_password_are_throttled_like_sign_in() {
    let app = TestApp::spawn().await;
    let here = tokens(&app.sign_up("ada@example.com").await).clone();
    for _ in 0..5 {
        assert_error(
            change_password(
                &app,
                &here.access_token,
                "a wrong guess",
                NEW_PASSWORD,
                None,
            )
            .await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    let status = assert_error(
        change_password(&app, &here.access_token, PASSWORD, NEW_PASSWORD, None).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    assert!(retry_delay(&status).is_some());
    // The same budget as sign-in: the account is throttled there too, from this address.
    assert_error(
        app.sign_in("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
        "TOO_MANY_ATTEMPTS",
    );
    app.advance(2);
    change_password(&app, &here.access_token, PASSWORD, NEW_PASSWORD, None)
        .await
        .expect("allowed again after the delay");
}

#[tokio::test]
async fn the_profile_changes_what_its_mask_names() {
    let app = TestApp::spawn().await;
    let here = tokens(&app.sign_up("ada@example.com").await).clone();
    let update = |display_name: &str, paths: &[&str]| {
        let request = pb::UpdateProfileRequest {
            display_name: display_name.into(),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        };
        let request = with_bearer(request, &here.access_token);
        let mut client = app.client.clone();
        async move { client.update_profile(request).await.map(|r| r.into_inner()) }
    };
    let user = update("  Ada Lovelace ", &["display_name"]).await.unwrap();
    assert_eq!(user.user.unwrap().display_name, "Ada Lovelace");
    let current = app.current_user(&here.access_token).await.unwrap();
    assert_eq!(current.display_name, "Ada Lovelace");

    let status = assert_error(
        update("Ada", &["email"]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["update_mask"]);
    let status = assert_error(
        update(&"x".repeat(101), &["display_name"]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["display_name"]);
    let anonymous = app
        .client
        .clone()
        .update_profile(pb::UpdateProfileRequest::default())
        .await;
    assert_error(anonymous, Code::Unauthenticated, "INVALID_TOKEN");
    let current = app.current_user(&here.access_token).await.unwrap();
    assert_eq!(
        current.display_name, "Ada Lovelace",
        "refusals changed nothing"
    );
}

/// A sign-in with the old password racing a password change never leaves a session signed in
/// with it: it either opened its session before the change signed the others out, or it sees
/// the change and is refused. Rounds start the sign-in later and later, so that some of them
/// check the old password while the change is under way and open their session after it
/// (about when the new password's hash is done).
#[tokio::test]
async fn a_sign_in_racing_a_password_change_does_not_outlive_it() {
    let app = TestApp::spawn().await;
    let here = tokens(&app.sign_up("ada@example.com").await).clone();
    let mut current = PASSWORD.to_owned();
    let mut outcomes = std::collections::BTreeMap::<&str, u32>::new();
    for round in 0..16u64 {
        let next = format!("passphrase number {round}");
        let sign_in = async {
            tokio::time::sleep(std::time::Duration::from_millis(round * 20)).await;
            app.sign_in("ada@example.com", &current).await
        };
        let change = change_password(&app, &here.access_token, &current, &next, None);
        let (signed_in, changed) = tokio::join!(sign_in, change);
        changed.expect("the change succeeds");
        match signed_in {
            Ok(response) => {
                let refresh = response.tokens.unwrap().refresh_token;
                let status = assert_error(
                    app.refresh(&refresh).await,
                    Code::Unauthenticated,
                    "INVALID_REFRESH_TOKEN",
                );
                drop(status);
                *outcomes.entry("signed in, then signed out").or_default() += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                *outcomes.entry("refused").or_default() += 1;
            }
        }
        current = next;
    }
    // Only the changing session is left.
    assert_eq!(list(&app, &here.access_token).await.unwrap().len(), 1);
    println!("outcomes: {outcomes:?}");
}
