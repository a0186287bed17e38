//! The tonic interceptor: synchronous, so it only reads the key cache (never waits on the
//! network) and verifies the token locally.

use super::{Caller, FetchedKeys, VerifiedToken, VerifiedTokens};
use crate::{error::TaskError, metrics::TaskMetrics};
use access_token::{TokenVerifier, VerifyError};
use clock::SharedClock;
use grpc_edge::bearer::bearer_token;
use std::sync::Arc;
use tonic::{Request, Status, service::Interceptor};

/// Verifies `authorization: Bearer <jwt>` (signature with the key its `kid` names, the
/// algorithm that key was made for, `exp`/`nbf` with leeway, `iss`, `aud`) and adds the
/// [`Caller`] to the request's extensions. Every refusal is UNAUTHENTICATED with one
/// generic message; the reason goes to the log.
///
/// Tokens that verified are remembered in `verified` (see [`VerifiedTokens`]): a repeated
/// token skips the signature check, never the time check.
#[derive(Clone)]
pub struct Authenticate {
    keys: Arc<FetchedKeys>,
    verifier: Arc<TokenVerifier>,
    verified: Arc<VerifiedTokens>,
    clock: SharedClock,
    metrics: TaskMetrics,
}

impl Authenticate {
    /// An interceptor verifying with `keys` and `verifier` at the time `clock` tells,
    /// remembering verified tokens in `verified`.
    pub fn new(
        keys: Arc<FetchedKeys>,
        verifier: TokenVerifier,
        verified: Arc<VerifiedTokens>,
        clock: SharedClock,
    ) -> Self {
        Self {
            keys,
            verifier: Arc::new(verifier),
            verified,
            clock,
            metrics: TaskMetrics::off(),
        }
    }

    /// This interceptor, counting its answers in `metrics` (`task_authentications_total`).
    pub fn counting(mut self, metrics: &TaskMetrics) -> Self {
        self.metrics = metrics.clone();
        self
    }

    /// The caller, and how it was found; or the refusal and its reason (a metric label).
    fn caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(Caller, Found), (TaskError, &'static str)> {
        let token = bearer_token(metadata).ok_or_else(|| {
            (
                TaskError::Unauthenticated("no bearer token".into()),
                "missing",
            )
        })?;
        if !self.keys.is_loaded() {
            return Err((
                TaskError::AuthUnavailable(
                    "the auth-service's signing keys have not been fetched yet".into(),
                ),
                "keys_not_loaded",
            ));
        }
        let keys = self.keys.current();
        let now = self.clock.now().timestamp();
        if let Some(VerifiedToken { caller, nbf, exp }) = self.verified.get(token, &keys) {
            self.verifier
                .check_time(nbf, exp, now)
                .map_err(|error| (TaskError::Unauthenticated(error.to_string()), error.kind()))?;
            return Ok((caller, Found::Cached));
        }
        let claims = self
            .verifier
            .verify(token, &keys, now)
            .map_err(|error| match error {
                // Possibly a new key the auth-service could not be asked about.
                VerifyError::UnknownKey(_) if self.keys.last_fetch_failed() => (
                    TaskError::AuthUnavailable(format!(
                        "{error}, and the auth-service is unreachable"
                    )),
                    "auth_unavailable",
                ),
                error => (TaskError::Unauthenticated(error.to_string()), error.kind()),
            })?;
        let (nbf, exp) = (claims.nbf, claims.exp);
        let caller = Caller::from_claims(claims).map_err(|error| (error, "bad_subject"))?;
        let verified = VerifiedToken {
            caller: caller.clone(),
            nbf,
            exp,
        };
        self.verified.insert(token, &keys, verified);
        Ok((caller, Found::Verified))
    }
}

/// How an accepted token was found good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Its signature checked now.
    Verified,
    /// Already verified (the verified-token cache); only its times checked.
    Cached,
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.caller(request.metadata()) {
            Ok((caller, how)) => {
                self.metrics.accepted(how == Found::Cached);
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err((error, reason)) => {
                self.metrics.refused(reason);
                Err(error.into())
            }
        }
    }
}
