//! Who is calling: access-token verification in front of the task API.
//!
//! Three pieces, in the order a request meets them:
//! 1. [`KeyRefresh`] (async tower layer): a token naming a signing key this replica has not
//!    seen makes it fetch the auth-service's keys (single-flight, rate-limited).
//! 2. [`Authenticate`] (tonic interceptor, synchronous): verifies the bearer JWT against the
//!    cached keys and puts the [`Caller`] in the request extensions; tokens it verified are
//!    remembered ([`VerifiedTokens`]) so repeated calls skip the signature check.
//! 3. [`SessionCheck`] (async tower layer, only there in strict mode): asks the auth-service's
//!    Introspect whether the token's session is still live.
//!
//! Health and reflection are not wrapped: they stay open.

mod caller;
mod guard;
mod interceptor;
mod keys;
mod verified;

pub use caller::Caller;
pub use guard::{Guarded, KeyRefresh, SessionCheck};
pub use interceptor::Authenticate;
pub use keys::FetchedKeys;
pub use verified::{VerifiedToken, VerifiedTokens};

use crate::metrics::TaskMetrics;
use access_token::TokenVerifier;
use clock::SharedClock;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;

/// A service behind the task-service's authentication: [`KeyRefresh`], then the
/// [`Authenticate`] interceptor.
pub type Authenticated<S> = Guarded<InterceptedService<S, Authenticate>, KeyRefresh>;

/// `inner` behind [`KeyRefresh`] and [`Authenticate`], which share `verified`; this is how
/// the task-service serves its API.
pub fn authenticated<S>(
    inner: S,
    keys: Arc<FetchedKeys>,
    verifier: TokenVerifier,
    verified: Arc<VerifiedTokens>,
    clock: SharedClock,
    metrics: &TaskMetrics,
) -> Authenticated<S> {
    let refresh = KeyRefresh::new(Arc::clone(&keys), Arc::clone(&verified));
    let interceptor = Authenticate::new(keys, verifier, verified, clock).counting(metrics);
    Guarded::new(InterceptedService::new(inner, interceptor), refresh)
}
