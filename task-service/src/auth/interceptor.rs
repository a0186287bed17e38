//! The tonic interceptor: synchronous, so it only reads the key cache (never waits on the
//! network) and verifies the token locally.

use super::{Caller, KeyCache};
use crate::error::TaskError;
use shared::{
    clock::SharedClock,
    status::bearer_token,
    token::{TokenVerifier, VerifyError},
};
use std::sync::Arc;
use tonic::{Request, Status, service::Interceptor};

/// Verifies `authorization: Bearer <jwt>` (signature with the key its `kid` names, the
/// algorithm that key was made for, `exp`/`nbf` with leeway, `iss`, `aud`) and adds the
/// [`Caller`] to the request's extensions. Every refusal is UNAUTHENTICATED with one
/// generic message; the reason goes to the log.
#[derive(Clone)]
pub struct Authenticate {
    keys: Arc<KeyCache>,
    verifier: Arc<TokenVerifier>,
    clock: SharedClock,
}

impl Authenticate {
    /// An interceptor verifying with `keys` and `verifier` at the time `clock` tells.
    pub fn new(keys: Arc<KeyCache>, verifier: TokenVerifier, clock: SharedClock) -> Self {
        Self {
            keys,
            verifier: Arc::new(verifier),
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
        let claims = self
            .verifier
            .verify(token, &keys, self.clock.now().timestamp())
            .map_err(|error| match error {
                // Possibly a new key the auth-service could not be asked about.
                VerifyError::UnknownKey(_) if self.keys.last_fetch_failed() => {
                    TaskError::AuthUnavailable(format!(
                        "{error}, and the auth-service is unreachable"
                    ))
                }
                error => TaskError::Unauthenticated(error.to_string()),
            })?;
        Caller::from_claims(claims)
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}
