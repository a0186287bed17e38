//! Deleted accounts: the auth-service asks for a purge once it has deleted an account; the
//! account's tasks go and a tombstone stays until every access token it could still hold has
//! expired. A sweep forgets tombstones past that.

use super::{page_cache::Freshness, watch::Feed};
use crate::{error::TaskError, store::purged};
use chrono::{DateTime, TimeDelta, Utc};
use clock::SharedClock;
use sea_orm::DatabaseConnection;
use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    time::Duration,
};
use uuid::Uuid;

/// Tombstones deleted per statement of a sweep.
const SWEEP_BATCH: u64 = 1_000;
/// How often tombstones past their time are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How often each replica reads the tombstones (purges made through other replicas).
const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// The most deleted accounts a replica keeps in memory (16 bytes each, in a set): more
/// deletions than this within TOMBSTONE_TTL_SECS leave the oldest to the database check
/// that every create makes anyway.
const REMEMBERED_MAX: u64 = 100_000;

/// The accounts deleted within TOMBSTONE_TTL_SECS, in memory, so that their access tokens
/// that have not expired yet are refused on every call, not only on creates.
#[derive(Debug, Default)]
pub struct PurgedOwners(RwLock<HashSet<Uuid>>);

impl PurgedOwners {
    /// Whether `owner` is a deleted account.
    pub fn contains(&self, owner: Uuid) -> bool {
        self.0.read().is_ok_and(|set| set.contains(&owner))
    }

    fn insert(&self, owner: Uuid) {
        if let Ok(mut set) = self.0.write() {
            set.insert(owner);
        }
    }

    fn replace(&self, owners: Vec<Uuid>) {
        if let Ok(mut set) = self.0.write() {
            *set = owners.into_iter().collect();
        }
    }
}

/// When a tombstone made at `now` may go: `ttl` later, or at `keep_until` (at most a year
/// ahead) if that is later.
fn forget_after(
    now: DateTime<Utc>,
    ttl: TimeDelta,
    keep_until: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let at_most = now + TimeDelta::days(366);
    keep_until
        .map_or(now, |until| until.min(at_most))
        .max(now + ttl)
}

/// Purging deleted accounts.
pub struct Purges {
    db: DatabaseConnection,
    clock: SharedClock,
    /// How long a purged account is remembered.
    tombstone_ttl: TimeDelta,
    owners: Arc<PurgedOwners>,
    /// Streams on this replica, woken by a purge so that the account's end at once.
    feed: Arc<Feed>,
    /// Moved by a purge, like any write of the owner's tasks.
    freshness: Arc<Freshness>,
}

impl Purges {
    /// Purges in `db`, remembering purged accounts for `tombstone_ttl`, waking `feed` and
    /// moving `freshness`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        tombstone_ttl: TimeDelta,
        feed: Arc<Feed>,
        freshness: Arc<Freshness>,
    ) -> Self {
        Self {
            db,
            clock,
            tombstone_ttl,
            owners: Arc::default(),
            feed,
            freshness,
        }
    }

    /// The deleted accounts this replica knows of.
    pub fn owners(&self) -> Arc<PurgedOwners> {
        Arc::clone(&self.owners)
    }

    /// Reads the remembered deleted accounts from the database.
    pub async fn reload(&self) -> Result<usize, TaskError> {
        let owners = purged::remembered(&self.db, self.clock.now(), REMEMBERED_MAX).await?;
        let count = owners.len();
        self.owners.replace(owners);
        Ok(count)
    }

    /// Keeps `owner`'s tombstone until TOMBSTONE_TTL_SECS from now or `keep_until` (capped at
    /// a year), whichever is later, and deletes every task of `owner`; returns how many tasks
    /// this call deleted (none when an earlier purge already had).
    pub async fn purge(
        &self,
        owner: Uuid,
        keep_until: Option<DateTime<Utc>>,
    ) -> Result<u64, TaskError> {
        let now = self.clock.now();
        let forget_after = forget_after(now, self.tombstone_ttl, keep_until);
        // The account is gone at the auth-service: refused here from now on, and its streams
        // end before the purge deletes what they would otherwise report change by change.
        self.owners.insert(owner);
        self.feed.changed(owner);
        let db = self.db.clone();
        let deleted = self
            .freshness
            .write(owner, async move {
                Ok(purged::purge(&db, owner, now, forget_after).await?)
            })
            .await?;
        // Again: a reload that read the tombstones before this purge's committed may have
        // replaced the set meanwhile.
        self.owners.insert(owner);
        tracing::info!(
            target: "audit", event = "account_purged", user_id = %owner, deleted,
            "deleted account's tasks purged"
        );
        Ok(deleted)
    }

    /// Forgets the tombstones whose time has passed; returns how many.
    pub async fn sweep(&self) -> Result<u64, TaskError> {
        let now = self.clock.now();
        let mut forgotten = 0;
        loop {
            let n = purged::forget_expired(&self.db, now, SWEEP_BATCH).await?;
            forgotten += n;
            if n < SWEEP_BATCH {
                return Ok(forgotten);
            }
        }
    }

    /// Until the returned task is aborted: reads the deleted accounts every 5 s (purges
    /// through other replicas) and forgets expired tombstones every 10 minutes.
    pub fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let purges = Arc::clone(self);
        tokio::spawn(async move {
            let mut reload = tokio::time::interval(RELOAD_EVERY);
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = reload.tick() => {
                        if let Err(error) = purges.reload().await {
                            tracing::warn!(%error, "reading deleted accounts failed");
                        }
                    }
                    _ = sweep.tick() => match purges.sweep().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(forgotten = n, "expired tombstones forgotten"),
                        Err(error) => tracing::warn!(%error, "tombstone sweep failed"),
                    },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_outlives_the_tokens_it_stops() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let day = TimeDelta::days(1);
        assert_eq!(forget_after(now, day, None), now + day);
        // Tokens living longer than TOMBSTONE_TTL_SECS keep it longer.
        let later = now + TimeDelta::days(3);
        assert_eq!(forget_after(now, day, Some(later)), later);
        assert_eq!(forget_after(now, day, Some(now)), now + day);
        // Never more than a year.
        let absurd = now + TimeDelta::days(10_000);
        assert_eq!(
            forget_after(now, day, Some(absurd)),
            now + TimeDelta::days(366)
        );
    }
}
