//! What the auth-service decides, with no gRPC and no SQL in sight: each use case is a small
//! type holding only what it needs (a connection, the clock, the key ring, ...), built once at
//! start-up by [`Rules::build`]. The handlers in `grpc/` call them; they call `store/`.
//!
//! - [`Accounts`]: sign-up, sign-in (throttled, hashed fairly), the current user;
//! - [`Sessions`]: a session's tokens: issue, rotate with a grace window and reuse detection,
//!   sign out, authenticate a bearer token, introspect;
//! - [`PublicKeys`]: the keys other services verify with (GetSigningKeys, JWKS);
//! - [`Retention`]: the periodic sweep that keeps the tables bounded;
//! - [`Deliveries`]: account deletions carried to the task-service, at least once.
//!
//! Beneath them: [`keys`] (the signing-key ring), [`tokens`] (issuing JWTs and refresh
//! tokens), [`password`] (argon2id behind a fair queue) and [`throttle`] (sign-in budgets).

mod accounts;
pub mod deletions;
pub mod keys;
pub mod password;
mod retention;
mod sessions;
pub mod throttle;
pub mod tokens;

pub use accounts::{Accounts, SignedIn};
pub use deletions::Deliveries;
pub use keys::{KeyRing, PublicKeys};
pub use retention::{Retention, spawn_sweeper};
pub use sessions::{SessionTimes, Sessions};

use crate::{config::AuthConfig, error::AuthError, metrics::AuthMetrics};
use chrono::TimeDelta;
use clock::SharedClock;
use password::PasswordHasher;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use throttle::Throttle;
use tokens::TokenIssuer;

/// Every use case, wired from the configuration.
#[derive(Clone)]
pub struct Rules {
    /// Sign-up, sign-in, the current user.
    pub accounts: Arc<Accounts>,
    /// Sessions and their tokens.
    pub sessions: Arc<Sessions>,
    /// The published verification keys.
    pub public_keys: Arc<PublicKeys>,
    /// The retention sweep.
    pub retention: Arc<Retention>,
    /// Account deletions on their way to the task-service.
    pub deliveries: Arc<Deliveries>,
    /// The signing keys (for benchmarks that sign tokens directly).
    pub keys: Arc<KeyRing>,
}

impl Rules {
    /// Loads (or creates) the signing keys, computes the dummy password hash and wires every
    /// use case to `db` and `clock`, counting into `metrics`.
    pub async fn build(
        config: &AuthConfig,
        db: DatabaseConnection,
        clock: SharedClock,
        metrics: &AuthMetrics,
    ) -> Result<Self, AuthError> {
        let t = &config.tokens;
        let keys = Arc::new(KeyRing::load(db.clone(), t, clock.now(), metrics).await?);
        let sessions = Arc::new(Sessions::new(
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&keys),
            TokenIssuer::new(&t.jwt.jwt_issuer, &t.jwt.jwt_audience, t.access_ttl()),
            t.jwt.verifier(),
            SessionTimes {
                ttl: t.session_ttl(),
                refresh_grace: t.refresh_grace(),
                min_interval: t.refresh_min_interval(),
                max_per_user: t.max_sessions_per_user.max(1).into(),
            },
            metrics.refresh_reuse.clone(),
        ));
        let task_admin = match &config.deletions.task_internal_url {
            None => None,
            Some(url) => Some(
                config
                    .deletions
                    .client_tls()
                    .and_then(|tls| tls.endpoint("TASK_INTERNAL_URL", url))
                    .map_err(|e| AuthError::internal(e.to_string()))?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    // A task-service host that vanishes without closing the connection is
                    // noticed in seconds, not when the kernel gives up on it.
                    .http2_keep_alive_interval(std::time::Duration::from_secs(20))
                    .keep_alive_timeout(std::time::Duration::from_secs(10))
                    .connect_lazy(),
            ),
        };
        let deliveries = Arc::new(Deliveries::new(
            db.clone(),
            Arc::clone(&clock),
            Arc::clone(&keys),
            TokenIssuer::new(&t.jwt.jwt_issuer, &t.jwt.jwt_audience, t.access_ttl()),
            task_admin,
            t.access_ttl() + TimeDelta::seconds(t.jwt.jwt_leeway_secs.into()),
            TimeDelta::seconds(config.deletions.deletion_retry_max_secs.into()),
        ));
        let throttle = Throttle::new(&config.throttle);
        let accounts = Arc::new(Accounts::new(
            db.clone(),
            Arc::clone(&clock),
            PasswordHasher::new(&config.passwords)?.observed(metrics),
            throttle.clone(),
            Arc::clone(&sessions),
            Arc::clone(&deliveries),
        ));
        Ok(Self {
            accounts,
            sessions,
            public_keys: Arc::new(PublicKeys::new(Arc::clone(&keys), Arc::clone(&clock))),
            retention: Arc::new(Retention::new(db, clock, throttle.longest_window())),
            deliveries,
            keys,
        })
    }
}
