//! The gRPC face of the auth-service: each handler parses the request at the edge, calls one
//! method of [`AuthState`], and maps the result. No business logic lives here.

use crate::{
    accounts::SignedIn,
    error::AuthError,
    fair::ClientKey,
    requests::{Credentials, Introspection, NewAccount, Presented, sign_out_refresh_token},
    sessions::TokenPair,
    state::AuthState,
    store::users::User,
};
use grpc_edge::bearer::bearer_token;
use std::{sync::Arc, time::Duration};
use todo_api::{
    timestamp,
    todo::auth::v1::auth_service_server::AuthService,
    todo::auth::v1::{self as pb},
};
use tonic::{Request, Response, Status};
use tracing::instrument;

/// Suggested cache lifetime of GetSigningKeys answers and of the JWKS document.
pub(crate) const KEYS_CACHE_SECONDS: u32 = 300;

/// Implements `todo.auth.v1.AuthService`.
#[derive(Clone)]
pub struct AuthApi {
    state: Arc<AuthState>,
}

impl AuthApi {
    /// Serves RPCs from `state`.
    pub fn new(state: Arc<AuthState>) -> Self {
        Self { state }
    }

    /// Who sent `request`, for throttling and fair hashing: the TCP peer, or what a trusted
    /// proxy forwarded for.
    fn client<T>(&self, request: &Request<T>) -> ClientKey {
        self.state
            .proxies
            .client(request.remote_addr(), request.metadata())
    }
}

fn user_pb(user: &User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        create_time: Some(timestamp(user.created_at)),
    }
}

fn tokens_pb(pair: TokenPair, now: chrono::DateTime<chrono::Utc>) -> pb::TokenPair {
    pb::TokenPair {
        expires_in: (pair.access.expires_at - now).num_seconds().max(0),
        access_token_expire_time: Some(timestamp(pair.access.expires_at)),
        access_token: pair.access.token,
        token_type: "Bearer".into(),
        refresh_token: pair.refresh_token,
        refresh_token_expire_time: Some(timestamp(pair.refresh_expires_at)),
    }
}

fn signed_in_pb(
    signed_in: SignedIn,
    now: chrono::DateTime<chrono::Utc>,
) -> (Option<pb::User>, Option<pb::TokenPair>) {
    (
        Some(user_pb(&signed_in.user)),
        Some(tokens_pb(signed_in.tokens, now)),
    )
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[instrument(name = "SignUp", skip_all, fields(user_id))]
    async fn sign_up(
        &self,
        request: Request<pb::SignUpRequest>,
    ) -> Result<Response<pb::SignUpResponse>, Status> {
        let client = self.client(&request);
        let account = NewAccount::try_from(request.into_inner())?;
        let signed_in = held(self.state.sign_up(account, client).await).await?;
        tracing::Span::current().record("user_id", tracing::field::display(signed_in.user.id));
        let (user, tokens) = signed_in_pb(signed_in, self.state.now());
        Ok(Response::new(pb::SignUpResponse { user, tokens }))
    }

    #[instrument(name = "SignIn", skip_all, fields(user_id))]
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let address = self.client(&request);
        let credentials = Credentials::try_from(request.into_inner())?;
        let signed_in = held(self.state.sign_in(credentials, address).await).await?;
        tracing::Span::current().record("user_id", tracing::field::display(signed_in.user.id));
        let (user, tokens) = signed_in_pb(signed_in, self.state.now());
        Ok(Response::new(pb::SignInResponse { user, tokens }))
    }

    #[instrument(name = "Refresh", skip_all)]
    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let token = Presented::try_from(request.into_inner())?;
        let pair = self.state.refresh(token.expose()).await?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(tokens_pb(pair, self.state.now())),
        }))
    }

    #[instrument(name = "SignOut", skip_all)]
    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let bearer = bearer_token(request.metadata()).map(str::to_owned);
        let refresh_token = sign_out_refresh_token(request.into_inner());
        self.state
            .sign_out(
                refresh_token.as_ref().map(Presented::expose),
                bearer.as_deref(),
            )
            .await?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    #[instrument(name = "Introspect", skip_all)]
    async fn introspect(
        &self,
        request: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        let asked = Introspection::try_from(request.into_inner())?;
        let answer = match self
            .state
            .introspect(asked.token.expose(), &asked.hint)
            .await?
        {
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
                iss: self.state.issuer_name().to_owned(),
                aud: self.state.audience_name().to_owned(),
                jti: active.jti.unwrap_or_default(),
            },
        };
        Ok(Response::new(answer))
    }

    #[instrument(name = "GetCurrentUser", skip_all, fields(user_id))]
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let user = self
            .state
            .current_user(bearer_token(request.metadata()))
            .await?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        Ok(Response::new(pb::GetCurrentUserResponse {
            user: Some(user_pb(&user)),
        }))
    }

    #[instrument(name = "GetSigningKeys", skip_all)]
    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        let keys = self.state.published_keys().await?;
        let keys = keys
            .into_iter()
            .map(|k| pb::SigningKey {
                kid: k.kid,
                algorithm: k.algorithm.into(),
                public_key: k.public_key,
                verify_until_time: Some(timestamp(k.expire_at)),
            })
            .collect();
        Ok(Response::new(pb::GetSigningKeysResponse {
            keys,
            cache_seconds: KEYS_CACHE_SECONDS.into(),
        }))
    }
}

/// How long a SignUp or SignIn refused for a spent budget (throttled, or the hashing queue
/// full) waits before it hears so, at most its retry delay. An honest client rarely meets a
/// refusal; a flood's streams each wait this long per refusal, so they send a few requests a
/// second instead of thousands, which would otherwise take the CPU from everyone's hashes
/// (BENCHMARKS.md, "Password hashing under a flood").
const REFUSAL_HOLD: Duration = Duration::from_millis(250);

/// `result`, held [`REFUSAL_HOLD`] first when it is a refusal for a spent budget.
async fn held<T>(result: Result<T, AuthError>) -> Result<T, AuthError> {
    if let Err(
        AuthError::Throttled(delay) | AuthError::SignUpThrottled(delay) | AuthError::Busy(delay),
    ) = &result
    {
        tokio::time::sleep(REFUSAL_HOLD.min(*delay)).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::{AuthError, Duration, REFUSAL_HOLD, held};
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn refusals_for_a_spent_budget_are_held_and_nothing_else_is() {
        for refusal in [
            AuthError::Throttled(Duration::from_secs(60)),
            AuthError::SignUpThrottled(Duration::from_secs(60)),
            AuthError::Busy(Duration::from_secs(5)),
        ] {
            let started = Instant::now();
            assert!(held::<()>(Err(refusal)).await.is_err());
            assert_eq!(started.elapsed(), REFUSAL_HOLD);
        }
        // Never longer than the client is told to wait.
        let started = Instant::now();
        let _ = held::<()>(Err(AuthError::Throttled(Duration::from_millis(30)))).await;
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        for answer in [Err(AuthError::InvalidCredentials), Ok(())] {
            let started = Instant::now();
            let _ = held(answer).await;
            assert_eq!(started.elapsed(), Duration::ZERO);
        }
    }
}
