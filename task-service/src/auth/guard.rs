//! Async checks in front of the task service, as tower middleware: tonic interceptors are
//! synchronous, so anything that waits on the network (fetching keys, asking Introspect)
//! happens here.

use super::{Caller, KeyCache};
use crate::error::TaskError;
use shared::{
    proto::todo::auth::v1::{IntrospectRequest, auth_service_client::AuthServiceClient},
    status::bearer_token_in_headers,
    token::token_kid,
};
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tonic::{server::NamedService, transport::Channel};
use tower::{Service, ServiceExt};

/// How long one Introspect call may take in strict mode.
const INTROSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An async check run before a request reaches the inner service.
pub trait Guard: Clone + Send + Sync + 'static {
    /// `Ok` lets the request through; `Err` answers it with that error.
    fn check(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// `inner` behind `guard`.
#[derive(Debug, Clone)]
pub struct Guarded<S, G> {
    inner: S,
    guard: G,
}

impl<S, G> Guarded<S, G> {
    /// Runs `guard` before every request to `inner`.
    pub fn new(inner: S, guard: G) -> Self {
        Self { inner, guard }
    }
}

impl<S: NamedService, G> NamedService for Guarded<S, G> {
    const NAME: &'static str = S::NAME;
}

impl<S, G, ResBody> Service<http::Request<tonic::body::Body>> for Guarded<S, G>
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<ResBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    G: Guard,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call drives its own clone of the inner service to readiness (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let inner = self.inner.clone();
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.check(request.headers(), request.extensions()).await {
                Ok(()) => Ok(inner.oneshot(request).await?.map(tonic::body::Body::new)),
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}

/// Fetches the auth-service's keys when a token names a `kid` not in the cache (see
/// [`KeyCache::refresh_for_unknown_kid`]). Never refuses a request itself.
#[derive(Clone)]
pub struct KeyRefresh {
    keys: Arc<KeyCache>,
}

impl KeyRefresh {
    /// Refreshes `keys` on unknown `kid`s.
    pub fn new(keys: Arc<KeyCache>) -> Self {
        Self { keys }
    }
}

impl Guard for KeyRefresh {
    async fn check(
        &self,
        headers: &http::HeaderMap,
        _extensions: &http::Extensions,
    ) -> Result<(), TaskError> {
        let kid = bearer_token_in_headers(headers).and_then(token_kid);
        if let Some(kid) = kid
            && self.keys.is_loaded()
            && !self.keys.current().contains(&kid)
        {
            self.keys.refresh_for_unknown_kid(&kid).await;
        }
        Ok(())
    }
}

/// Strict mode: asks the auth-service's Introspect whether a verified token's session is
/// still live, so signed-out sessions are refused at once. Off: lets everything through.
#[derive(Clone)]
pub struct SessionCheck {
    client: Option<AuthServiceClient<Channel>>,
}

impl SessionCheck {
    /// Introspects every token when `strict`, using `channel` to the auth-service.
    pub fn new(strict: bool, channel: Channel) -> Self {
        Self {
            client: strict.then(|| AuthServiceClient::new(channel)),
        }
    }
}

impl Guard for SessionCheck {
    async fn check(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<(), TaskError> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        // The interceptor ran first: no caller means it refused the token already.
        let (Some(caller), Some(token)) =
            (extensions.get::<Caller>(), bearer_token_in_headers(headers))
        else {
            return Ok(());
        };
        let mut introspect = tonic::Request::new(IntrospectRequest {
            token: token.to_owned(),
            token_type_hint: "access_token".into(),
        });
        introspect.set_timeout(INTROSPECT_TIMEOUT);
        let answer = client
            .clone()
            .introspect(introspect)
            .await
            .map_err(|status| TaskError::AuthUnavailable(format!("Introspect: {status}")))?
            .into_inner();
        if answer.active && answer.sub == caller.user_id().to_string() {
            Ok(())
        } else {
            Err(TaskError::Unauthenticated(
                "session is no longer active".into(),
            ))
        }
    }
}
