//! Async checks in front of the task service, as tower middleware: tonic interceptors are
//! synchronous, so anything that waits on the network (fetching keys, asking Introspect)
//! happens here.

use super::{Caller, FetchedKeys, VerifiedTokens};
use crate::error::TaskError;
use access_token::token_kid;
use futures_util::{
    TryFutureExt,
    future::{Either, MapOk},
};
use grpc_edge::bearer::bearer_token_in_headers;
use grpc_edge::telemetry::{Traced, traced};
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use todo_api::{
    todo::auth::v1::IntrospectRequest, todo::auth::v1::auth_service_client::AuthServiceClient,
};
use tonic::{server::NamedService, transport::Channel};
use tower::{Service, ServiceExt};

/// How long one Introspect call may take in strict mode.
const INTROSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A check run before a request reaches the inner service, asynchronously when it must wait.
pub trait Guard: Clone + Send + Sync + 'static {
    /// The answer, when it needs no waiting; `None` means [`Guard::check`] must run. Most
    /// requests are decided here, and then no future is boxed for them.
    fn check_now(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<Result<(), TaskError>>;

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

/// What the inner service's response becomes.
type ToBody<B> = fn(http::Response<B>) -> http::Response<tonic::body::Body>;

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
    type Future = Either<
        MapOk<S::Future, ToBody<ResBody>>,
        Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let to_body: ToBody<ResBody> = |response| response.map(tonic::body::Body::new);
        match self
            .guard
            .check_now(request.headers(), request.extensions())
        {
            Some(Ok(())) => Either::Left(self.inner.call(request).map_ok(to_body)),
            Some(Err(error)) => {
                let refused = Ok(tonic::Status::from(error).into_http());
                Either::Right(Box::pin(std::future::ready(refused)))
            }
            None => {
                // The service made ready goes with this request; a clone stays for the next.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let guard = self.guard.clone();
                Either::Right(Box::pin(async move {
                    match guard.check(request.headers(), request.extensions()).await {
                        Ok(()) => Ok(inner.oneshot(request).await?.map(tonic::body::Body::new)),
                        Err(error) => Ok(tonic::Status::from(error).into_http()),
                    }
                }))
            }
        }
    }
}

/// Fetches the auth-service's keys when a token names a `kid` not in the cache (see
/// [`FetchedKeys::refresh_for_unknown_kid`]). Never refuses a request itself.
#[derive(Clone)]
pub struct KeyRefresh {
    keys: Arc<FetchedKeys>,
    verified: Arc<VerifiedTokens>,
}

impl KeyRefresh {
    /// Refreshes `keys` on unknown `kid`s; a token in `verified` (the interceptor's cache)
    /// was verified with the current keys, so its header is not even parsed.
    pub fn new(keys: Arc<FetchedKeys>, verified: Arc<VerifiedTokens>) -> Self {
        Self { keys, verified }
    }
}

impl Guard for KeyRefresh {
    fn check_now(
        &self,
        headers: &http::HeaderMap,
        _extensions: &http::Extensions,
    ) -> Option<Result<(), TaskError>> {
        let Some(token) = bearer_token_in_headers(headers) else {
            return Some(Ok(()));
        };
        if !self.keys.is_loaded() {
            return Some(Ok(()));
        }
        let keys = self.keys.current();
        if self.verified.contains(token, &keys) {
            return Some(Ok(()));
        }
        match token_kid(token) {
            Some(kid) if !keys.contains(&kid) => None,
            _ => Some(Ok(())),
        }
    }

    async fn check(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<(), TaskError> {
        if let Some(answer) = self.check_now(headers, extensions) {
            return answer;
        }
        if let Some(kid) = bearer_token_in_headers(headers).and_then(token_kid) {
            self.keys.refresh_for_unknown_kid(&kid).await;
        }
        Ok(())
    }
}

/// Strict mode: asks the auth-service's Introspect whether a verified token's session is
/// still live, so signed-out sessions are refused at once. (Without strict mode the layer is
/// not there at all.)
#[derive(Clone)]
pub struct SessionCheck {
    client: AuthServiceClient<Traced<Channel>>,
}

impl SessionCheck {
    /// Introspects every token, using `channel` to the auth-service.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: AuthServiceClient::new(traced(channel)),
        }
    }
}

impl Guard for SessionCheck {
    fn check_now(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<Result<(), TaskError>> {
        // The interceptor ran first: no caller means it refused the token already.
        let verified = extensions.get::<Caller>().is_some();
        (!verified || bearer_token_in_headers(headers).is_none()).then_some(Ok(()))
    }

    async fn check(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<(), TaskError> {
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
        let answer = self
            .client
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
