//! The gRPC face of the auth-service: each handler extracts what the request carries (the
//! client's address, the bearer token), parses the message at the edge (`requests`), calls one
//! use case of [`Rules`], and maps the answer (`replies`). No business logic lives here.

mod jwks;
mod replies;
mod requests;

pub use jwks::jwks_json;

use crate::metrics::AuthMetrics;
use crate::{
    domain::{Credentials, Device, NewAccount, PasswordChange, ProfileChange},
    error::AuthError,
    rules::Rules,
};
use clock::SharedClock;
use grpc_edge::metrics::Labels;
use grpc_edge::{
    bearer::bearer_token,
    client_address::{ClientKey, TrustedProxies},
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use replies::{introspection_pb, session_pb, signed_in_pb, signing_key_pb, tokens_pb, user_pb};
use requests::{
    Introspection, Presented, deletion_password, session_to_revoke, sign_out_refresh_token,
};
use std::time::Duration;
use todo_api::todo::auth::v1::{self as pb, auth_service_server::AuthService};
use tonic::{Request, Response, Status};
use tracing::instrument;

/// Suggested cache lifetime of GetSigningKeys answers and of the JWKS document.
pub(crate) const KEYS_CACHE_SECONDS: u32 = 300;

/// Implements `todo.auth.v1.AuthService`.
#[derive(Clone)]
pub struct AuthApi {
    rules: Rules,
    proxies: TrustedProxies,
    /// For `expires_in` of issued tokens: seconds from now.
    clock: SharedClock,
    metrics: AuthMetrics,
}

impl AuthApi {
    /// Serves RPCs with `rules`, believing forwarding headers from `proxies` only.
    pub fn new(
        rules: Rules,
        proxies: TrustedProxies,
        clock: SharedClock,
        metrics: AuthMetrics,
    ) -> Self {
        Self {
            rules,
            proxies,
            clock,
            metrics,
        }
    }

    /// Counts `result` in `family` by outcome, and in `auth_throttled_total` as `operation`
    /// when the throttle refused it.
    fn counted<T>(
        &self,
        family: &Family<Labels, Counter>,
        operation: &'static str,
        result: Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => {
                if error.is_throttled() {
                    self.metrics.throttled_in(operation);
                }
                error.outcome()
            }
        };
        AuthMetrics::count(family, outcome);
        result
    }

    /// Who sent `request`, for throttling and fair hashing: the TCP peer, or what a trusted
    /// proxy forwarded for.
    fn client<T>(&self, request: &Request<T>) -> ClientKey {
        self.proxies
            .client(request.remote_addr(), request.metadata())
    }

    /// Where `request` comes from, for the session it signs in or refreshes: its client's
    /// address and user agent.
    fn device<T>(&self, request: &Request<T>) -> Device {
        let address = self
            .proxies
            .client_ip(request.remote_addr(), request.metadata());
        requests::device(address, request.metadata())
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[instrument(name = "SignUp", skip_all, fields(user_id))]
    async fn sign_up(
        &self,
        request: Request<pb::SignUpRequest>,
    ) -> Result<Response<pb::SignUpResponse>, Status> {
        let (client, device) = (self.client(&request), self.device(&request));
        let signed_up = match NewAccount::try_from(request.into_inner()) {
            Ok(account) => self.rules.accounts.sign_up(account, client, device).await,
            Err(error) => Err(error),
        };
        let signed_in = held(self.counted(&self.metrics.sign_ups, "sign_up", signed_up)).await?;
        tracing::Span::current().record("user_id", tracing::field::display(signed_in.user.id));
        let (user, tokens) = signed_in_pb(signed_in, self.clock.now());
        Ok(Response::new(pb::SignUpResponse { user, tokens }))
    }

    #[instrument(name = "SignIn", skip_all, fields(user_id))]
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let (client, device) = (self.client(&request), self.device(&request));
        let signed_in = match Credentials::try_from(request.into_inner()) {
            Ok(credentials) => {
                self.rules
                    .accounts
                    .sign_in(credentials, client, device)
                    .await
            }
            Err(error) => Err(error),
        };
        let signed_in = held(self.counted(&self.metrics.sign_ins, "sign_in", signed_in)).await?;
        tracing::Span::current().record("user_id", tracing::field::display(signed_in.user.id));
        let (user, tokens) = signed_in_pb(signed_in, self.clock.now());
        Ok(Response::new(pb::SignInResponse { user, tokens }))
    }

    #[instrument(name = "Refresh", skip_all)]
    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let device = self.device(&request);
        let pair = match Presented::try_from(request.into_inner()) {
            Ok(token) => self.rules.sessions.refresh(token.expose(), &device).await,
            Err(error) => Err(error),
        };
        let pair = self.counted(&self.metrics.refreshes, "refresh", pair)?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(tokens_pb(pair, self.clock.now())),
        }))
    }

    #[instrument(name = "SignOut", skip_all)]
    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let bearer = bearer_token(request.metadata()).map(str::to_owned);
        let refresh_token = sign_out_refresh_token(request.into_inner());
        let signed_out = self
            .rules
            .sessions
            .sign_out(
                refresh_token.as_ref().map(Presented::expose),
                bearer.as_deref(),
            )
            .await;
        self.counted(&self.metrics.sign_outs, "sign_out", signed_out)?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    #[instrument(name = "Introspect", skip_all)]
    async fn introspect(
        &self,
        request: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        let asked = Introspection::try_from(request.into_inner())?;
        let active = self
            .rules
            .sessions
            .introspect(asked.token.expose(), &asked.hint)
            .await?;
        let answer = introspection_pb(active, self.rules.sessions.issuer());
        Ok(Response::new(answer))
    }

    #[instrument(name = "GetCurrentUser", skip_all, fields(user_id))]
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let user = self
            .rules
            .accounts
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
        let keys = self.rules.public_keys.list().await?;
        let keys = keys.into_iter().map(signing_key_pb).collect();
        Ok(Response::new(pb::GetSigningKeysResponse {
            keys,
            cache_seconds: KEYS_CACHE_SECONDS.into(),
        }))
    }

    #[instrument(name = "ChangePassword", skip_all, fields(user_id, signed_out))]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let client = self.client(&request);
        let bearer = bearer_token(request.metadata()).map(str::to_owned);
        let change = PasswordChange::try_from(request.into_inner())?;
        let changed = self
            .rules
            .accounts
            .change_password(bearer.as_deref(), change, client)
            .await;
        if let Err(error) = &changed
            && error.is_throttled()
        {
            self.metrics.throttled_in("change_password");
        }
        let signed_out = held(changed).await?;
        tracing::Span::current().record("signed_out", signed_out);
        Ok(Response::new(pb::ChangePasswordResponse {
            signed_out_sessions: i64::try_from(signed_out).unwrap_or(i64::MAX),
        }))
    }

    #[instrument(name = "ListSessions", skip_all, fields(user_id, sessions))]
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let sessions = self
            .rules
            .sessions
            .list(bearer_token(request.metadata()))
            .await?;
        tracing::Span::current().record("sessions", sessions.len());
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(session_pb).collect(),
        }))
    }

    #[instrument(name = "RevokeSession", skip_all, fields(user_id))]
    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let session_id = session_to_revoke(request.get_ref())?;
        self.rules
            .sessions
            .revoke_one(bearer_token(request.metadata()), session_id)
            .await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    #[instrument(name = "RevokeOtherSessions", skip_all, fields(user_id, revoked))]
    async fn revoke_other_sessions(
        &self,
        request: Request<pb::RevokeOtherSessionsRequest>,
    ) -> Result<Response<pb::RevokeOtherSessionsResponse>, Status> {
        let revoked = self
            .rules
            .sessions
            .revoke_others(bearer_token(request.metadata()))
            .await?;
        tracing::Span::current().record("revoked", revoked);
        Ok(Response::new(pb::RevokeOtherSessionsResponse {
            revoked_count: i64::try_from(revoked).unwrap_or(i64::MAX),
        }))
    }

    #[instrument(name = "DeleteAccount", skip_all, fields(user_id))]
    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let client = self.client(&request);
        let bearer = bearer_token(request.metadata()).map(str::to_owned);
        let password = deletion_password(request.into_inner())?;
        held(
            self.rules
                .accounts
                .delete_account(bearer.as_deref(), password, client)
                .await,
        )
        .await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    #[instrument(name = "UpdateProfile", skip_all, fields(user_id))]
    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let bearer = bearer_token(request.metadata()).map(str::to_owned);
        let change = ProfileChange::try_from(request.into_inner())?;
        let user = self
            .rules
            .accounts
            .update_profile(bearer.as_deref(), change)
            .await?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        Ok(Response::new(pb::UpdateProfileResponse {
            user: Some(user_pb(&user)),
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
