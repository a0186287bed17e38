//! argon2id hashing off the async runtime, with a bound on concurrent hashes so a burst of
//! sign-ins neither exhausts memory nor stalls other RPCs.

use crate::{config::PasswordArgs, domain::Password, error::AuthError};
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// The argon2id parameters `args` describe.
pub fn params(args: &PasswordArgs) -> Result<Params, argon2::Error> {
    Params::new(
        args.argon2_memory_kib,
        args.argon2_iterations,
        args.argon2_parallelism,
        None,
    )
}

/// Outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password, or no such account.
    No,
    /// Right password; `needs_rehash` when the stored hash used other parameters.
    Yes { needs_rehash: bool },
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Verified against when the account does not exist, so both cases cost the same.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher with `args`' parameters; computes one hash now (the dummy).
    pub fn new(args: &PasswordArgs) -> Result<Self, AuthError> {
        let params =
            params(args).map_err(|e| AuthError::internal(format!("argon2 parameters: {e}")))?;
        let permits = args
            .max_concurrent_hashes
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
        let dummy_hash = hasher(&params)
            .hash_password(b"not a real password: equalizes the cost of unknown accounts")
            .map_err(|e| AuthError::internal(format!("argon2: {e}")))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(permits)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// How many hashes may run at once.
    pub fn max_concurrent(&self) -> usize {
        self.permits.available_permits()
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: Password) -> Result<String, AuthError> {
        let params = self.params.clone();
        self.run(move || {
            hasher(&params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| AuthError::internal(format!("argon2: {e}")))
        })
        .await
    }

    /// Checks `password` against `stored` (a PHC string), or against the dummy hash when there
    /// is no account, doing the same work either way.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<Verified, AuthError> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let params = self.params.clone();
        self.run(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                tracing::error!("stored password hash is not a valid PHC string");
                return Ok(Verified::No);
            };
            let matches = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(if matches && exists {
                Verified::Yes {
                    needs_rehash: needs_rehash(&parsed, &params),
                }
            } else {
                Verified::No
            })
        })
        .await
    }

    /// Runs `work` on the blocking pool, inside the caller's span, once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| AuthError::internal("password hasher closed"))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .instrument(tracing::Span::current())
        .await
        .map_err(|e| AuthError::internal(format!("password hashing task failed: {e}")))?
    }
}

fn hasher(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn needs_rehash(hash: &PasswordHash, wanted: &Params) -> bool {
    let same_algorithm = hash.algorithm.as_str() == argon2::ARGON2ID_IDENT.as_str();
    let same_params = Params::try_from(hash).is_ok_and(|p| {
        p.m_cost() == wanted.m_cost()
            && p.t_cost() == wanted.t_cost()
            && p.p_cost() == wanted.p_cost()
    });
    !(same_algorithm && same_params)
}
