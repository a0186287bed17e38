//! What the rules answer, as the API's messages.

use crate::{
    domain::{ActiveToken, PublicKey, SessionView, TokenPair, User},
    rules::{SignedIn, tokens::TokenIssuer},
};
use chrono::{DateTime, Utc};
use todo_api::{timestamp, todo::auth::v1 as pb};

pub fn user_pb(user: &User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        create_time: Some(timestamp(user.created_at)),
    }
}

/// `pair` as issued at `now` (`expires_in` counts from then).
pub fn tokens_pb(pair: TokenPair, now: DateTime<Utc>) -> pb::TokenPair {
    pb::TokenPair {
        expires_in: (pair.access.expires_at - now).num_seconds().max(0),
        access_token_expire_time: Some(timestamp(pair.access.expires_at)),
        access_token: pair.access.token,
        token_type: "Bearer".into(),
        refresh_token: pair.refresh_token,
        refresh_token_expire_time: Some(timestamp(pair.refresh_expires_at)),
    }
}

/// The user and tokens of a SignUp or SignIn answer.
pub fn signed_in_pb(
    signed_in: SignedIn,
    now: DateTime<Utc>,
) -> (Option<pb::User>, Option<pb::TokenPair>) {
    (
        Some(user_pb(&signed_in.user)),
        Some(tokens_pb(signed_in.tokens, now)),
    )
}

/// RFC 7662: `active: false` and nothing else for an inactive token.
pub fn introspection_pb(
    active: Option<ActiveToken>,
    issuer: &TokenIssuer,
) -> pb::IntrospectResponse {
    match active {
        None => pb::IntrospectResponse {
            active: false,
            ..Default::default()
        },
        Some(active) => pb::IntrospectResponse {
            active: true,
            sub: active.user_id.to_string(),
            email: active.email,
            session_id: active.session_id.to_string(),
            token_type: active.token_type.into(),
            issue_time: Some(timestamp(active.issued_at)),
            expire_time: Some(timestamp(active.expires_at)),
            iss: issuer.issuer().to_owned(),
            aud: issuer.audience().to_owned(),
            jti: active.jti.unwrap_or_default(),
        },
    }
}

pub fn signing_key_pb(key: PublicKey) -> pb::SigningKey {
    pb::SigningKey {
        kid: key.kid,
        algorithm: key.algorithm.into(),
        public_key: key.public_key,
        verify_until_time: Some(timestamp(key.expire_at)),
    }
}

/// A live session as its owner sees it (empty address or user agent: unknown).
pub fn session_pb(session: SessionView) -> pb::Session {
    pb::Session {
        id: session.id.to_string(),
        create_time: Some(timestamp(session.created_at)),
        last_use_time: Some(timestamp(session.last_used_at)),
        expire_time: Some(timestamp(session.expires_at)),
        client_address: session.device.address.unwrap_or_default(),
        user_agent: session.device.user_agent.unwrap_or_default(),
        current: session.current,
    }
}
