//! Retention: ended sessions (with their refresh tokens) and throttle rows past their windows
//! are deleted by a periodic sweep, in bounded batches, so the auth tables stay bounded under
//! any churn of sign-ins and refreshes.

use crate::{error::AuthError, store};
use chrono::{DateTime, TimeDelta, Utc};
use clock::SharedClock;
use sea_orm::DatabaseConnection;
use std::{sync::Arc, time::Duration};

/// How often the sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// Rows deleted by one statement: a sweep never holds a long lock or a huge transaction.
const BATCH: u64 = 1000;

/// How long a revoked session is kept (for the audit trail of a sign-out or a detected reuse);
/// a token of a revoked session is refused either way.
const KEEP_REVOKED: TimeDelta = TimeDelta::hours(1);

/// How long an address an account signed in from is remembered (see `throttle`).
const KNOWN_KEPT: TimeDelta = TimeDelta::days(30);

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u64,
    pub throttle_rows: u64,
}

/// The retention sweep of the auth tables.
pub struct Retention {
    db: DatabaseConnection,
    clock: SharedClock,
    /// How long throttle counters are kept: the throttle's longest window.
    counters_kept: TimeDelta,
}

impl Retention {
    /// Sweeps `db`, keeping throttle counters for `counters_kept`.
    pub fn new(db: DatabaseConnection, clock: SharedClock, counters_kept: TimeDelta) -> Self {
        Self {
            db,
            clock,
            counters_kept,
        }
    }

    /// Deletes ended sessions and stale throttle rows as of `now`, batch by batch.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<Swept, AuthError> {
        let mut swept = Swept::default();
        loop {
            let n = store::sessions::delete_ended(&self.db, now, now - KEEP_REVOKED, BATCH).await?;
            swept.sessions += n;
            if n < BATCH {
                break;
            }
        }
        // Counters are kept for their longest window; remembered addresses for 30 days.
        let counters_kept = self.counters_kept;
        for (prefix, exclude, kept) in [
            ("known:", false, KNOWN_KEPT),
            ("known:", true, counters_kept),
        ] {
            loop {
                let n = store::throttle::delete_stale(
                    &self.db,
                    prefix,
                    exclude,
                    now - kept,
                    now,
                    BATCH,
                )
                .await?;
                swept.throttle_rows += n;
                if n < BATCH {
                    break;
                }
            }
        }
        Ok(swept)
    }
}

/// Runs [`Retention::sweep`] every [`SWEEP_EVERY`] until the handle is dropped or aborted.
pub fn spawn_sweeper(retention: Arc<Retention>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match retention.sweep(retention.clock.now()).await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(
                        sessions = swept.sessions,
                        throttle_rows = swept.throttle_rows,
                        "retention sweep"
                    );
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "retention sweep failed; retrying at the next")
                }
            }
        }
    })
}
