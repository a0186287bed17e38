//! argon2id hashing off the async runtime, with a bound on concurrent hashes so a burst of
//! sign-ins neither exhausts memory nor stalls other RPCs.
//!
//! Each hash permit owns argon2's working memory (m_cost KiB), made on its first use and then
//! reused: memory stays at permits × m_cost however many sign-ins arrive, and no hash
//! allocates and frees 19 MiB.
//! (Freeing such blocks made glibc raise its mmap threshold and keep later ones on its heaps:
//! the process grew by ~17 MiB per sign-up, to 740 MiB in a sign-in storm.)

mod queue;

pub use queue::{Claimant, Class, QueueLimits};

use crate::metrics::AuthMetrics;
use crate::{config::PasswordArgs, domain::Password, error::AuthError};
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{
        phc::{Output, ParamsString, Salt},
        try_generate_salt,
    },
};
use grpc_edge::client_address::ClientKey;
use queue::{FairPermit, FairPermits};
use std::sync::{Arc, Mutex, PoisonError};
use tracing::Instrument;

/// Outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Wrong password, or no such account.
    Wrong,
    /// Right password; `needs_rehash` when the stored hash used other parameters.
    Right { needs_rehash: bool },
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// Hash permits, shared fairly between client addresses, with a bounded wait.
    permits: FairPermits,
    workspaces: Arc<Workspaces>,
    /// Verified against when the account does not exist, so both cases cost the same.
    dummy_hash: Arc<str>,
    /// The wait histogram and the queue's refusals, once [`PasswordHasher::observed`].
    observed: Option<Observed>,
}

/// What the hasher records: how long turns waited, and who the queue refused.
#[derive(Clone)]
struct Observed {
    wait: grpc_edge::metrics::DurationHistogram,
    metrics: grpc_edge::metrics::Metrics,
}

/// The working memory of the hash permits.
struct Workspaces {
    /// Memory of permits not in use (at most one per permit; fewer until first used).
    idle: Mutex<Vec<Vec<Block>>>,
    /// How many blocks a workspace keeps between hashes: the configured m_cost. Verifying an
    /// older hash with a larger m_cost grows one for that hash only.
    blocks: usize,
}

impl PasswordHasher {
    /// A hasher with `args`' parameters; computes one hash now (the dummy).
    pub fn new(args: &PasswordArgs) -> Result<Self, AuthError> {
        let params = args
            .argon2_params()
            .map_err(|e| AuthError::internal(format!("argon2 parameters: {e}")))?;
        let permits = args.concurrent_hashes();
        let workspaces = Workspaces {
            idle: Mutex::new(Vec::with_capacity(permits)),
            blocks: params.block_count(),
        };
        // Its working memory is freed, not kept: an idle service holds none.
        let dummy_hash = hash_phc(
            &mut Vec::new(),
            &params,
            b"not a real password: equalizes the cost of unknown accounts",
        )?;
        Ok(Self {
            params,
            permits: FairPermits::new(
                permits,
                QueueLimits {
                    per_client: args.hash_queue_per_client,
                    total: args.hash_queue_max,
                    max_wait: std::time::Duration::from_millis(args.hash_queue_max_wait_ms),
                },
            ),
            workspaces: Arc::new(workspaces),
            dummy_hash: dummy_hash.into(),
            observed: None,
        })
    }

    /// This hasher, recording its waits in `metrics` (`auth_hash_queue_wait_seconds`), its
    /// permits and queue as fair-share gauges, and the queue's refusals.
    pub fn observed(mut self, metrics: &AuthMetrics) -> Self {
        let registry = metrics.registry();
        let permits = self.permits.clone();
        registry.fair_share(
            vec![("resource", "hash_permits")],
            self.permits.permits() as u64,
            move || Some(permits.in_use() as u64),
        );
        let queue = self.permits.clone();
        // HASH_QUEUE_MAX bounds each of the two lines (sign-ins from known addresses, and
        // everything else); the gauge counts both.
        registry.fair_share(
            vec![("resource", "hash_queue")],
            2 * self.permits.max_waiting() as u64,
            move || Some(queue.waiting() as u64),
        );
        self.observed = Some(Observed {
            wait: metrics.hash_wait.clone(),
            metrics: registry.clone(),
        });
        self
    }

    /// A PHC string for `password`, with a new random salt.
    pub async fn hash(&self, password: Password) -> Result<String, AuthError> {
        self.hash_as(ClientKey::unknown(), password).await
    }

    /// [`PasswordHasher::hash`] for a request of `client`, who waits its turn among the
    /// clients waiting for a permit.
    pub async fn hash_as(
        &self,
        client: ClientKey,
        password: Password,
    ) -> Result<String, AuthError> {
        self.turn(Claimant::other(client))
            .await?
            .hash(password)
            .await
    }

    /// Checks `password` against `stored` (a PHC string), or against the dummy hash when there
    /// is no account, doing the same work either way.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<PasswordCheck, AuthError> {
        self.verify_as(ClientKey::unknown(), password, stored).await
    }

    /// [`PasswordHasher::verify`] for a request of `client`, who waits its turn among the
    /// clients waiting for a permit.
    pub async fn verify_as(
        &self,
        client: ClientKey,
        password: Password,
        stored: Option<String>,
    ) -> Result<PasswordCheck, AuthError> {
        self.turn(Claimant::other(client))
            .await?
            .verify(password, stored)
            .await
    }

    /// How many hashes are running (or about to: their permit is taken).
    pub fn running(&self) -> usize {
        self.permits.in_use()
    }

    /// `claimant`'s turn for a hash permit, once it comes (known addresses first, then in turn
    /// among clients); `Busy` when its line is full or the wait too long. Nothing is computed
    /// until the turn is used.
    pub async fn turn(&self, claimant: Claimant) -> Result<Turn, AuthError> {
        let started = std::time::Instant::now();
        let permit = self
            .permits
            .acquire(claimant)
            .instrument(tracing::info_span!("hash_queue"))
            .await;
        if let Some(observed) = &self.observed {
            match &permit {
                Ok(_) => observed.wait.observe(started.elapsed()),
                Err(busy) => observed
                    .metrics
                    .refused(&vec![("resource", "hash_queue"), ("reason", busy.reason)]),
            }
        }
        let permit = permit.map_err(|busy| AuthError::Busy(busy.retry_after))?;
        Ok(Turn {
            hasher: self.clone(),
            permit,
        })
    }
}

/// A hash permit held: the next hash or check runs at once.
pub struct Turn {
    hasher: PasswordHasher,
    permit: FairPermit,
}

impl Turn {
    /// A PHC string for `password`, with a new random salt.
    pub async fn hash(self, password: Password) -> Result<String, AuthError> {
        let params = self.hasher.params.clone();
        self.run(move |memory| hash_phc(memory, &params, password.as_bytes()))
            .await
    }

    /// Checks `password` against `stored` (a PHC string), or against the dummy hash when there
    /// is no account, doing the same work either way.
    pub async fn verify(
        self,
        password: Password,
        stored: Option<String>,
    ) -> Result<PasswordCheck, AuthError> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.hasher.dummy_hash.to_string());
        let params = self.hasher.params.clone();
        self.run(move |memory| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                tracing::error!("stored password hash is not a valid PHC string");
                return Ok(PasswordCheck::Wrong);
            };
            let matches = matches(memory, password.as_bytes(), &parsed).unwrap_or_else(|error| {
                tracing::error!(%error, "stored password hash cannot be checked");
                false
            });
            Ok(if matches && exists {
                PasswordCheck::Right {
                    needs_rehash: needs_rehash(&parsed, &params),
                }
            } else {
                PasswordCheck::Wrong
            })
        })
        .await
    }

    /// Runs `work` with the permit's memory on the blocking pool, inside the caller's span.
    /// Once started it runs to the end even if the caller stops waiting.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let workspaces = Arc::clone(&self.hasher.workspaces);
        let permit = self.permit;
        // The hashing work, a span of its own (a child of the RPC's) in logs and traces.
        let span = tracing::info_span!("argon2id");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut memory = workspaces.take();
            let result = span.in_scope(|| work(&mut memory));
            workspaces.give_back(memory);
            result
        })
        .instrument(tracing::Span::current())
        .await
        .map_err(|e| AuthError::internal(format!("password hashing task failed: {e}")))?
    }
}

impl Workspaces {
    /// An idle permit's memory (empty the first time: [`hash_into`] sizes it).
    fn take(&self) -> Vec<Block> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    fn give_back(&self, mut memory: Vec<Block>) {
        if memory.len() > self.blocks {
            memory.truncate(self.blocks);
            memory.shrink_to_fit();
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
    }
}

/// The argon2id PHC string of `password` with `params` and a new random salt.
fn hash_phc(
    memory: &mut Vec<Block>,
    params: &Params,
    password: &[u8],
) -> Result<String, AuthError> {
    let salt = try_generate_salt().map_err(|e| argon2_error("salt", e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    let argon2 = Argon2::new(algorithm, version, params.clone());
    hash_into(memory, argon2, password, &salt, &mut out).map_err(|e| argon2_error("hash", e))?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params).map_err(|e| argon2_error("params", e))?,
        salt: Some(Salt::new(&salt).map_err(|e| argon2_error("salt", e))?),
        hash: Some(Output::new(&out).map_err(|e| argon2_error("output", e))?),
    };
    Ok(phc.to_string())
}

/// argon2 of `password` and `salt` into `out`, in `memory` (grown to what `argon2` needs).
fn hash_into(
    memory: &mut Vec<Block>,
    argon2: Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let blocks = argon2.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
}

/// Whether `password` hashes to `stored` with `stored`'s own algorithm, version and
/// parameters; the outputs are compared in constant time.
fn matches(
    memory: &mut Vec<Block>,
    password: &[u8],
    stored: &PasswordHash,
) -> Result<bool, String> {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Err("no salt or no hash".into());
    };
    let algorithm = Algorithm::try_from(stored.algorithm.as_str()).map_err(|e| e.to_string())?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let params = Params::try_from(stored).map_err(|e| e.to_string())?;
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = out
        .get_mut(..expected.len())
        .ok_or("hash output too long")?;
    hash_into(
        memory,
        Argon2::new(algorithm, version, params),
        password,
        salt,
        out,
    )
    .map_err(|e| e.to_string())?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(out).is_ok_and(|computed| computed == *expected))
}

fn argon2_error(what: &str, error: impl std::fmt::Display) -> AuthError {
    AuthError::internal(format!("argon2 {what}: {error}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher as _, PasswordVerifier as _};
    use grpc_edge::violations::FieldViolations;

    /// Small parameters: these tests are about correctness, not cost.
    fn args(memory_kib: u32, permits: usize) -> PasswordArgs {
        PasswordArgs {
            argon2_memory_kib: memory_kib,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            max_concurrent_hashes: Some(permits),
            hash_queue_per_client: 64,
            hash_queue_max: 256,
            hash_queue_max_wait_ms: 30_000,
        }
    }

    fn password(raw: &str) -> Password {
        let mut violations = FieldViolations::new();
        Password::parse_existing(raw.into(), "password", &mut violations).expect("valid password")
    }

    #[tokio::test]
    async fn hashes_verify_and_interoperate_with_the_argon2_crate() {
        let hasher = PasswordHasher::new(&args(64, 2)).unwrap();
        let ours = hasher.hash(password("correct horse")).await.unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{ours}");
        assert_eq!(
            hasher
                .verify(password("correct horse"), Some(ours.clone()))
                .await
                .unwrap(),
            PasswordCheck::Right {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher
                .verify(password("correct horsE"), Some(ours.clone()))
                .await
                .unwrap(),
            PasswordCheck::Wrong
        );
        // The reference implementation accepts our hashes, and we accept its.
        let reference = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            args(64, 2).argon2_params().unwrap(),
        );
        assert!(
            reference
                .verify_password(b"correct horse", ours.as_str())
                .is_ok()
        );
        let theirs = reference
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert_eq!(
            hasher
                .verify(password("correct horse"), Some(theirs))
                .await
                .unwrap(),
            PasswordCheck::Right {
                needs_rehash: false
            }
        );
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_verify_and_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(&args(64, 1)).unwrap();
        let older = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            args(256, 1).argon2_params().unwrap(),
        )
        .hash_password(b"correct horse")
        .unwrap()
        .to_string();
        assert_eq!(
            hasher
                .verify(password("correct horse"), Some(older.clone()))
                .await
                .unwrap(),
            PasswordCheck::Right { needs_rehash: true }
        );
        // The larger working memory that hash needed is not kept.
        let idle = hasher.workspaces.idle.lock().unwrap();
        assert!(
            idle.iter().all(|memory| memory.len() == 64),
            "{:?}",
            idle.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn unknown_accounts_and_garbage_hashes_never_match() {
        let hasher = PasswordHasher::new(&args(64, 1)).unwrap();
        for stored in [
            None,
            Some("not a PHC string".to_owned()),
            Some("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ".to_owned()),
        ] {
            assert_eq!(
                hasher.verify(password("anything"), stored).await.unwrap(),
                PasswordCheck::Wrong
            );
        }
    }

    #[tokio::test]
    async fn working_memory_is_reused_one_per_permit() {
        let hasher = PasswordHasher::new(&args(64, 2)).unwrap();
        let hashes = (0..8).map(|i| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(password(&format!("password {i}"))).await })
        });
        for hash in hashes {
            hash.await.unwrap().unwrap();
        }
        let idle = hasher.workspaces.idle.lock().unwrap();
        assert!((1..=2).contains(&idle.len()), "{} workspaces", idle.len());
        assert!(idle.iter().all(|memory| memory.len() == 64));
    }
}
