//! The signing keys this replica trusts, cached in memory and read without blocking.
//!
//! EdDSA mode: fetched from the auth-service (GetSigningKeys) at start-up, retried with
//! backoff until it answers, refreshed when the answer's cache lifetime runs out, and fetched
//! again when a token names an unknown `kid` (one fetch at a time, and at most one such
//! fetch per `min_interval`). HS256 mode: the shared secret, nothing to fetch.

use crate::metrics::TaskMetrics;
use access_token::VerificationKeys;
use grpc_edge::telemetry::{Traced, traced};
use std::{
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use todo_api::{
    todo::auth::v1::GetSigningKeysRequest, todo::auth::v1::auth_service_client::AuthServiceClient,
};
use tokio::{sync::Mutex, task::JoinHandle, time::Instant};
use tonic::transport::Channel;

/// How long one GetSigningKeys call may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay while the auth-service does not answer; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bounds on the auth-service's suggested cache lifetime.
const MIN_CACHE: Duration = Duration::from_secs(10);
const MAX_CACHE: Duration = Duration::from_secs(3600);

/// The keys tokens are verified with.
pub struct FetchedKeys {
    keys: RwLock<Arc<VerificationKeys>>,
    loaded: AtomicBool,
    remote: Option<Remote>,
    /// Where fetches are counted (`task_key_fetches_total`).
    metrics: TaskMetrics,
}

struct Remote {
    client: AuthServiceClient<Traced<Channel>>,
    /// One fetch at a time, so an older answer never replaces a newer one.
    fetching: Mutex<()>,
    /// When the last unknown-`kid` fetch started; held until it ends (single flight).
    last_unknown_kid_fetch: Arc<Mutex<Option<Instant>>>,
    min_interval: Duration,
    fetches: AtomicU64,
    /// Whether the last fetch failed (the auth-service did not answer).
    last_fetch_failed: AtomicBool,
}

impl FetchedKeys {
    /// HS256 mode: the shared secret is the only key, loaded from the start.
    pub fn shared_secret(secret: &[u8]) -> Self {
        Self::fixed(VerificationKeys::shared_secret(secret))
    }

    /// A fixed set of keys, loaded from the start and never fetched (HS256 mode, benchmarks).
    pub fn fixed(keys: VerificationKeys) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            loaded: AtomicBool::new(true),
            remote: None,
            metrics: TaskMetrics::off(),
        }
    }

    /// These keys, counting their fetches in `metrics`.
    pub fn counting(mut self, metrics: &TaskMetrics) -> Self {
        self.metrics = metrics.clone();
        self
    }

    /// EdDSA mode: keys come from the auth-service behind `channel`; none until the first
    /// fetch succeeds.
    pub fn remote(channel: Channel, min_interval: Duration) -> Self {
        Self {
            keys: RwLock::new(Arc::new(VerificationKeys::new())),
            loaded: AtomicBool::new(false),
            remote: Some(Remote {
                client: AuthServiceClient::new(traced(channel)),
                fetching: Mutex::new(()),
                last_unknown_kid_fetch: Arc::new(Mutex::new(None)),
                min_interval,
                fetches: AtomicU64::new(0),
                last_fetch_failed: AtomicBool::new(false),
            }),
            metrics: TaskMetrics::off(),
        }
    }

    /// The current keys (a cheap snapshot).
    pub fn current(&self) -> Arc<VerificationKeys> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether keys have been loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Whether the last attempt to fetch keys failed: a token naming an unknown key may then
    /// be valid, and the answer is "retry later" rather than "invalid token".
    pub fn last_fetch_failed(&self) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|r| r.last_fetch_failed.load(Ordering::Acquire))
    }

    /// How many GetSigningKeys calls were made (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.remote
            .as_ref()
            .map_or(0, |r| r.fetches.load(Ordering::Relaxed))
    }

    /// Fetches the keys from the auth-service and replaces the cache with them. Returns the
    /// suggested cache lifetime. Keys the auth-service no longer publishes stop verifying.
    async fn fetch(&self, remote: &Remote) -> Result<Duration, tonic::Status> {
        let _one_at_a_time = remote.fetching.lock().await;
        remote.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_and_store(remote).await;
        self.metrics.key_fetch(result.is_ok());
        remote
            .last_fetch_failed
            .store(result.is_err(), Ordering::Release);
        result
    }

    async fn fetch_and_store(&self, remote: &Remote) -> Result<Duration, tonic::Status> {
        let mut request = tonic::Request::new(GetSigningKeysRequest {});
        request.set_timeout(FETCH_TIMEOUT);
        let response = remote
            .client
            .clone()
            .get_signing_keys(request)
            .await?
            .into_inner();
        let mut keys = VerificationKeys::new();
        for key in &response.keys {
            if key.algorithm == "EdDSA" && key.public_key.len() == 32 {
                keys.insert_ed25519(key.kid.clone(), &key.public_key);
            } else {
                tracing::warn!(kid = %key.kid, algorithm = %key.algorithm, "ignoring a signing key of an unsupported kind");
            }
        }
        if keys.is_empty() {
            tracing::warn!(
                "the auth-service publishes no signing keys: if it signs with HS256, set \
                 SIGNING_ALGORITHM=hs256 and the same BETTER_AUTH_SECRET here"
            );
        }
        tracing::info!(
            keys = keys.len(),
            "signing keys fetched from the auth-service"
        );
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        self.loaded.store(true, Ordering::Release);
        let cache = u64::try_from(response.cache_seconds).unwrap_or(0);
        Ok(Duration::from_secs(cache).clamp(MIN_CACHE, MAX_CACHE))
    }

    /// Called when a token names `kid` and no cached key has it: fetches the keys unless
    /// another request is already doing so (then waits for it) or one such fetch started less
    /// than the minimum interval ago. The fetch runs in its own task, so a caller that gives
    /// up (cancels its RPC) cannot cut it short. Never fails: the interceptor decides after.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>, kid: &str) {
        let Some(remote) = &self.remote else { return };
        let mut last = Arc::clone(&remote.last_unknown_kid_fetch)
            .lock_owned()
            .await;
        if self.current().contains(kid) {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < remote.min_interval) {
            tracing::debug!(
                kid,
                "unknown signing key; fetched recently, not asking again yet"
            );
            return;
        }
        *last = Some(Instant::now());
        tracing::info!(kid, "token names an unknown signing key: fetching keys");
        let cache = Arc::clone(self);
        let fetch = tokio::spawn(async move {
            // Held until the fetch ends, so concurrent callers wait for its answer.
            let _last = last;
            let Some(remote) = &cache.remote else { return };
            if let Err(status) = cache.fetch(remote).await {
                tracing::warn!(code = ?status.code(), message = status.message(), "cannot fetch signing keys");
            }
        });
        let _ = fetch.await;
    }

    /// Keeps the keys fresh in the background: fetches at once, retrying with backoff until
    /// the auth-service answers (so this service may start first), then again whenever the
    /// suggested cache lifetime runs out. Nothing to do in HS256 mode.
    pub fn spawn_refresher(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        self.remote.as_ref()?;
        let cache = Arc::clone(self);
        Some(tokio::spawn(async move {
            let Some(remote) = &cache.remote else { return };
            let mut backoff = FIRST_BACKOFF;
            loop {
                match cache.fetch(remote).await {
                    Ok(lifetime) => {
                        backoff = FIRST_BACKOFF;
                        tokio::time::sleep(lifetime).await;
                    }
                    Err(status) => {
                        tracing::warn!(
                            code = ?status.code(),
                            message = status.message(),
                            retry_in_ms = backoff.as_millis(),
                            "cannot fetch signing keys from the auth-service"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }))
    }
}
