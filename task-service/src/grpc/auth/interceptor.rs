//! The tonic interceptor: synchronous, so it only reads the key cache (never waits on the
//! network) and verifies the token locally.

use super::{Caller, FetchedKeys, VerifiedToken, VerifiedTokens};
use crate::error::TaskError;
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
        }
    }

    fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, TaskError> {
        let token = bearer_token(metadata)
            .ok_or_else(|| TaskError::Unauthenticated("no bearer token".into()))?;
        if !self.keys.is_loaded() {
            return Err(TaskError::AuthUnavailable(
                "the auth-service's signing keys have not been fetched yet".into(),
            ));
        }
        let keys = self.keys.current();
        let now = self.clock.now().timestamp();
        if let Some(VerifiedToken { caller, nbf, exp }) = self.verified.get(token, &keys) {
            self.verifier
                .check_time(nbf, exp, now)
                .map_err(|error| TaskError::Unauthenticated(error.to_string()))?;
            return Ok(caller);
        }
        let claims = self
            .verifier
            .verify(token, &keys, now)
            .map_err(|error| match error {
                // Possibly a new key the auth-service could not be asked about.
                VerifyError::UnknownKey(_) if self.keys.last_fetch_failed() => {
                    TaskError::AuthUnavailable(format!(
                        "{error}, and the auth-service is unreachable"
                    ))
                }
                error => TaskError::Unauthenticated(error.to_string()),
            })?;
        let (nbf, exp) = (claims.nbf, claims.exp);
        let caller = Caller::from_claims(claims)?;
        let verified = VerifiedToken {
            caller: caller.clone(),
            nbf,
            exp,
        };
        self.verified.insert(token, &keys, verified);
        Ok(caller)
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}
