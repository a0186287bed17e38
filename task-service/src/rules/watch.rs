//! Live changes: a WatchTasks stream reads its owner's change log (`store::changes`) from a
//! position on, and waits between reads for a wake-up.
//!
//! Wake-ups carry no data; the log is the only truth, so a lost wake-up delays a change and
//! never loses it:
//! - a write on this replica wakes its owner's streams here as soon as it commits;
//! - on PostgreSQL, each write also queues `NOTIFY todo_task_changes, '<owner>'`, and every
//!   replica's listener wakes that owner's streams; when the listener reconnects (the
//!   notifications sent meanwhile are lost) it wakes every stream;
//! - every stream also re-reads every WATCH_POLL_SECS whatever happens, for the wake-ups no one
//!   can see were lost (PgBouncer in transaction mode delivers none).
//!
//! A stream reads only when its client takes the previous message (HTTP/2 flow control): a
//! client that reads slowly makes the server hold a message or two, not a queue; it falls behind
//! in the log, and if it falls behind what the log keeps, its next read ends the stream with
//! RESUME_TOKEN_EXPIRED (as etcd's unsynced watchers catch up from storage, rather than
//! Kubernetes' buffered ones, which are dropped when full).

use super::purges::PurgedOwners;
use crate::{
    config::WatchArgs,
    domain::{Change, LogRange, Owner, Position},
    error::TaskError,
    store::changes,
};
use chrono::{DateTime, Utc};
use clock::SharedClock;
use sea_orm::{DatabaseBackend, DatabaseConnection};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};
use tokio::{
    sync::{Semaphore, watch},
    time::Instant,
};
use uuid::Uuid;

/// Most changes read from the log at once: a message holds at most 64 KiB, so reading more
/// of the largest changes (34 KiB each) would only be thrown away.
const READ_ROWS: u64 = 32;
/// Most bytes of changes in one message (at least one change is always sent, up to ~34 KiB):
/// what a client that stops reading makes the server hold per stream (charged to its
/// unread-replies budget).
const MESSAGE_BYTES: usize = 64 * 1024;

/// Stream reads of the log at once on this replica: when every stream is woken together (the
/// listener reconnected), they queue here rather than for the database pool, where a wait past
/// DATABASE_ACQUIRE_TIMEOUT_SECS would end streams and bring their clients back all at once.
const CONCURRENT_READS: usize = 8;

/// `every`, give or take a fifth at random: streams opened together do not poll together.
fn jittered(every: Duration) -> Duration {
    every.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// Who is watching on this replica: per owner, the wake-up channel of their streams and
/// how many there are.
#[derive(Debug, Default)]
pub struct Feed {
    owners: Mutex<HashMap<Uuid, Watched>>,
}

#[derive(Debug)]
struct Watched {
    wake: watch::Sender<()>,
    streams: usize,
}

impl Feed {
    fn owners(&self) -> MutexGuard<'_, HashMap<Uuid, Watched>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes `owner`'s streams on this replica (a write committed, here or elsewhere).
    pub fn changed(&self, owner: Uuid) {
        if let Some(watched) = self.owners().get(&owner) {
            watched.wake.send_replace(());
        }
    }

    /// Wakes every stream (wake-ups may have been lost).
    pub fn changed_all(&self) {
        for watched in self.owners().values() {
            watched.wake.send_replace(());
        }
    }

    /// A new stream of `owner`'s, unless they have `per_user` open already.
    fn join(self: &Arc<Self>, owner: Uuid, per_user: usize) -> Result<Membership, TaskError> {
        let mut owners = self.owners();
        let watched = owners.entry(owner).or_insert_with(|| Watched {
            wake: watch::Sender::new(()),
            streams: 0,
        });
        if watched.streams >= per_user {
            return Err(TaskError::TooManyWatches(per_user));
        }
        watched.streams += 1;
        Ok(Membership {
            wake: watched.wake.subscribe(),
            feed: Arc::clone(self),
            owner,
        })
    }
}

/// One stream's place in the [`Feed`]; leaving it (drop) frees the owner's share.
struct Membership {
    wake: watch::Receiver<()>,
    feed: Arc<Feed>,
    owner: Uuid,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut owners = self.feed.owners();
        if let Some(watched) = owners.get_mut(&self.owner) {
            watched.streams -= 1;
            if watched.streams == 0 {
                owners.remove(&self.owner);
            }
        }
    }
}

/// Changes for one message of a stream: none in a heartbeat.
#[derive(Debug)]
pub struct Batch {
    /// In commit order.
    pub changes: Vec<Change>,
    /// Where the stream stands after them: the resume point.
    pub position: Position,
}

/// Opens WatchTasks streams and sweeps the log they read.
#[derive(Clone)]
pub struct Watches {
    db: DatabaseConnection,
    feed: Arc<Feed>,
    purged: Arc<PurgedOwners>,
    clock: SharedClock,
    settings: WatchArgs,
    stopping: watch::Receiver<bool>,
    reads: Arc<Semaphore>,
}

impl Watches {
    /// Streams over `db`'s change log, woken through `feed`, ended for accounts in `purged`
    /// and when `stopping` turns true.
    pub fn new(
        db: DatabaseConnection,
        feed: Arc<Feed>,
        purged: Arc<PurgedOwners>,
        clock: SharedClock,
        settings: WatchArgs,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            db,
            feed,
            purged,
            clock,
            settings,
            stopping,
            reads: Arc::new(Semaphore::new(CONCURRENT_READS)),
        }
    }

    /// A stream of `owner`'s changes after `from` (or from now), until the access token
    /// expires at `expires_at` (Unix seconds): its first batch comes at once.
    pub async fn open(
        &self,
        owner: Owner,
        from: Option<Position>,
        expires_at: i64,
    ) -> Result<Stream, TaskError> {
        let owner = owner.user_id();
        if self.purged.contains(owner) {
            return Err(TaskError::Unauthenticated("the account was deleted".into()));
        }
        // A token accepted within JWT_LEEWAY_SECS after its expiry would only open a stream
        // that ends at once: refused before the stream starts, as any call with it would be.
        let expires_at = DateTime::<Utc>::from_timestamp(expires_at, 0).unwrap_or_default();
        if self.clock.now() >= expires_at {
            return Err(TaskError::Unauthenticated(
                "the access token expired".into(),
            ));
        }
        let membership = self
            .feed
            .join(owner, self.settings.watch_streams_per_user)?;
        let range = changes::range(&self.db, owner).await?;
        let position = match from {
            None => range.head,
            Some(from) if from > range.head => {
                return Err(TaskError::ResumeExpired("ahead of the log's head"));
            }
            Some(from) if from < range.floor => {
                return Err(TaskError::ResumeExpired("behind the log's floor"));
            }
            Some(from) => from,
        };
        let now = Instant::now();
        Ok(Stream {
            watches: self.clone(),
            owner,
            membership,
            position,
            expires_at,
            next_heartbeat: now + self.settings.heartbeat(),
            next_poll: now + jittered(self.settings.poll()),
            state: State::First,
        })
    }

    /// Tells the database's change-log trigger how many changes per owner to keep
    /// (WATCH_RETAINED_CHANGES).
    pub async fn keep_retained(&self) -> Result<(), TaskError> {
        changes::keep(&self.db, self.settings.watch_retained_changes).await?;
        Ok(())
    }

    /// Sweeps changes older than WATCH_RETENTION_SECS every minute, until dropped.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let watches = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let before = watches.clock.now() - watches.settings.retention();
                // A batch of owners at a time, until none is left.
                loop {
                    match changes::sweep_older(&watches.db, before, 500).await {
                        Ok(500) => continue,
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(%error, "sweeping the change log failed: retried in a minute");
                            break;
                        }
                    }
                }
            }
        })
    }

    /// On PostgreSQL, listens for other replicas' wake-ups until dropped; nothing to do on
    /// SQLite, where this process is the only writer.
    pub fn spawn_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            return None;
        }
        let db = self.db.clone();
        let feed = Arc::clone(&self.feed);
        Some(tokio::spawn(async move {
            changes::listen(&db, |owner| match owner {
                Some(owner) => feed.changed(owner),
                None => feed.changed_all(),
            })
            .await;
        }))
    }
}

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its first message (changes or not) is still to be sent.
    First,
    /// Sending changes as they come, and heartbeats.
    Live,
    /// Ended.
    Done,
}

/// One WatchTasks stream: [`Stream::next`] returns its next message, or how it ended.
pub struct Stream {
    watches: Watches,
    owner: Uuid,
    membership: Membership,
    position: Position,
    expires_at: DateTime<Utc>,
    next_heartbeat: Instant,
    next_poll: Instant,
    state: State,
}

impl Stream {
    /// The next message; `None` once the stream has ended (after its final error).
    pub async fn next(&mut self) -> Option<Result<Batch, TaskError>> {
        if self.state == State::Done {
            return None;
        }
        let next = self.step().await;
        if next.is_err() {
            self.state = State::Done;
        }
        Some(next)
    }

    async fn step(&mut self) -> Result<Batch, TaskError> {
        loop {
            if *self.watches.stopping.borrow() {
                return Err(TaskError::ShuttingDown);
            }
            if self.watches.purged.contains(self.owner) {
                return Err(TaskError::Unauthenticated("the account was deleted".into()));
            }
            if self.watches.clock.now() >= self.expires_at {
                return Err(TaskError::Unauthenticated(
                    "the access token expired".into(),
                ));
            }
            // Seen before reading: a write that commits after this read wakes the wait below.
            self.membership.wake.mark_unchanged();
            let changes = self.read().await?;
            let now = Instant::now();
            if !changes.is_empty() || self.state == State::First {
                self.state = State::Live;
                if let Some(last) = changes.last() {
                    self.position = last.position;
                }
                self.next_heartbeat = now + self.watches.settings.heartbeat();
                return Ok(Batch {
                    changes,
                    position: self.position,
                });
            }
            self.next_poll = now + jittered(self.watches.settings.poll());
            let until_expiry = (self.expires_at - self.watches.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            let mut stopping = self.watches.stopping.clone();
            tokio::select! {
                changed = self.membership.wake.changed() => {
                    // The sender lives in the feed as long as this membership does.
                    if changed.is_err() {
                        return Err(TaskError::Internal("the change feed closed".into()));
                    }
                }
                () = tokio::time::sleep_until(self.next_poll) => {}
                () = tokio::time::sleep_until(self.next_heartbeat) => {
                    self.next_heartbeat = Instant::now() + self.watches.settings.heartbeat();
                    return Ok(Batch { changes: Vec::new(), position: self.position });
                }
                () = tokio::time::sleep(until_expiry) => {
                    return Err(TaskError::Unauthenticated("the access token expired".into()));
                }
                _ = stopping.wait_for(|stop| *stop) => return Err(TaskError::ShuttingDown),
            }
        }
    }

    /// The changes after the stream's position, at most one message's worth (the rest are
    /// read for the next); refuses a position the log no longer reaches.
    async fn read(&self) -> Result<Vec<Change>, TaskError> {
        let _turn = self
            .watches
            .reads
            .acquire()
            .await
            .map_err(|_| TaskError::Internal("the stream reads' semaphore closed".into()))?;
        let db = &self.watches.db;
        let mut read = changes::after(db, self.owner, self.position, READ_ROWS).await?;
        if read.is_empty() {
            // Nothing after the position, or everything after it swept away: the head tells
            // (read after the changes, so a change committed in between is read again).
            let LogRange { head, .. } = changes::range(db, self.owner).await?;
            if head <= self.position {
                return Ok(Vec::new());
            }
            read = changes::after(db, self.owner, self.position, READ_ROWS).await?;
        }
        if read
            .first()
            .is_some_and(|first| first.position.0 != self.position.0 + 1)
            || read.is_empty()
        {
            return Err(TaskError::ResumeExpired(
                "swept while the stream was behind",
            ));
        }
        let mut bytes = 0;
        let mut kept = 0;
        for change in &read {
            bytes += change
                .task
                .as_ref()
                .map_or(0, |t| t.title.len() + t.description.len())
                + 128;
            if kept > 0 && bytes > MESSAGE_BYTES {
                break;
            }
            kept += 1;
        }
        read.truncate(kept);
        Ok(read)
    }
}
