//! ListTasks pages kept in memory and served again while they are still true.
//!
//! A page is kept with the [`Stamp`] it was read at and answered from memory only when the
//! owner's stamp is still that one, checked on every hit ([`Freshness`]):
//! - PostgreSQL: the stamp is the owner's change-log head, which the database's trigger moves
//!   in the same statement as every write, on every replica. A hit first reads the committed
//!   head (one primary-key read). A write acknowledged before the read started has committed,
//!   so its head is what the read sees: no replica answers a page from before it. Nothing else
//!   is trusted: a NOTIFY reaches other replicas after the write was acknowledged. The checks
//!   of calls in flight together are read in one statement ([`HeadReads`]).
//! - SQLite: this process makes every write, so the stamp is in memory: a count per stripe of
//!   owners that every write bumps once it has finished (committed or not), before it is
//!   answered. A page is stamped with its stripe's count read *before* its snapshot, so a write
//!   that commits after that snapshot always changes the count the page was stamped with.
//!   Writes run in a task of their own, so a client that goes away cannot stop one after it
//!   committed and before its bump (at most [`WRITES_UNDER_WAY`] at once, and
//!   [`WRITES_UNDER_WAY_PER_USER`] of one user's). A write of another owner of the stripe makes
//!   a page look changed too: a miss, never a wrong answer.
//!
//! The cache is bounded by bytes (LIST_CACHE_BYTES, 0 turns it off) and per user
//! (LIST_CACHE_BYTES_PER_USER and [`PAGES_PER_USER`], so one user's many pages cannot push
//! everyone else's out); the least recently used user's pages go first, and within a user's
//! share their least recently used page. A write does not evict anything: the next
//! read finds the page stale and replaces it. Charging the reply to the unread-replies budget is
//! the caller's business, hit or not.

use super::Tasks;
use crate::{
    domain::{ListQuery, Owner, Page, Stamp},
    error::TaskError,
    metrics::{CacheMiss, Evicted, TaskMetrics},
    store::changes,
};
use sea_orm::{DatabaseConnection, DbErr};
use service_db::DatabaseError;
use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicI64, Ordering},
    },
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// Stripes of owners on SQLite: 32 KiB of counters, fixed whatever the number of users.
const STRIPES: usize = 4096;

/// Most writes under way on SQLite, all users together (each runs to its end in a task of its
/// own): more wait for a place, in turn.
pub const WRITES_UNDER_WAY: usize = 256;

/// Most writes of one user under way on SQLite; their next ones wait (and go if their client
/// does). A client that sends writes and goes away at once cannot pile up tasks, nor take
/// every place from other users.
pub const WRITES_UNDER_WAY_PER_USER: usize = 32;

/// How the current [`Stamp`] of an owner is known.
#[derive(Debug)]
pub enum Freshness {
    /// The cache is off (LIST_CACHE_BYTES=0): nothing is kept, so nothing is tracked.
    Off,
    /// PostgreSQL: the committed head of the owner's change log, read per check.
    Log(HeadReads),
    /// SQLite: finished writes per stripe of owners, counted in this process.
    Counted(Counted),
}

/// What [`Freshness::Counted`] keeps.
#[derive(Debug)]
pub struct Counted {
    stripes: Box<[AtomicI64]>,
    /// Places for writes under way.
    places: Arc<Semaphore>,
    /// Per user with writes under way or waiting: their places, and how many hold or wait for
    /// one (users with none are not kept).
    users: Mutex<HashMap<Uuid, (Arc<Semaphore>, usize)>>,
}

/// Most owners' heads read in one statement.
const HEADS_PER_READ: usize = 64;

/// Checks waiting for the next read of heads; more wait for a place. Each is a ListTasks call
/// in flight, which the connection and stream limits bound already.
const HEAD_CHECKS_WAITING: usize = 1024;

/// A check of one owner's head, and where its answer goes.
type HeadCheck = (Uuid, oneshot::Sender<Result<Stamp, TaskError>>);

/// PostgreSQL: reads of owners' committed change-log heads, batched. One statement runs at a
/// time; the checks asked for meanwhile go into the next one, one primary-key read each. A
/// check is answered by a statement that began after it was asked for, so it sees every write
/// acknowledged before: batching saves round trips, never freshness.
#[derive(Debug)]
pub struct HeadReads {
    checks: mpsc::Sender<HeadCheck>,
    /// For a check the reader cannot take (it stopped): read on its own.
    db: DatabaseConnection,
}

impl HeadReads {
    /// Reads heads from `db` in a task of its own, until the last handle is dropped.
    fn spawn(db: DatabaseConnection) -> Self {
        let (checks, mut asked) = mpsc::channel::<HeadCheck>(HEAD_CHECKS_WAITING);
        let reader = db.clone();
        tokio::spawn(async move {
            let db = reader;
            let mut batch = Vec::with_capacity(HEADS_PER_READ);
            while asked.recv_many(&mut batch, HEADS_PER_READ).await > 0 {
                let mut owners: Vec<Uuid> = batch.iter().map(|(owner, _)| *owner).collect();
                owners.sort_unstable();
                owners.dedup();
                match changes::heads(&db, &owners).await {
                    Ok(heads) => {
                        for (owner, answer) in batch.drain(..) {
                            let head = heads.iter().find(|(id, _)| *id == owner);
                            let _ = answer.send(Ok(Stamp(head.map_or(0, |(_, head)| head.0))));
                        }
                    }
                    Err(error) => {
                        // Every check of the batch gets the statement's error, as its own.
                        let unavailable = service_db::is_unavailable(&error);
                        let message = error.to_string();
                        for (_, answer) in batch.drain(..) {
                            let error = DbErr::Custom(message.clone());
                            let _ = answer.send(Err(TaskError::Database(if unavailable {
                                DatabaseError::Unavailable(error)
                            } else {
                                DatabaseError::Failed(error)
                            })));
                        }
                    }
                }
            }
        });
        Self { checks, db }
    }

    /// `owner`'s committed head, read after this call.
    async fn read(&self, owner: Uuid) -> Result<Stamp, TaskError> {
        let (answer, answered) = oneshot::channel();
        if self.checks.send((owner, answer)).await.is_ok()
            && let Ok(read) = answered.await
        {
            return read;
        }
        // The reader is gone (it cannot be, short of a panic): this check reads alone.
        tracing::error!("the change-log head reader stopped: reading heads one by one");
        let heads = changes::heads(&self.db, &[owner]).await?;
        Ok(Stamp(heads.first().map_or(0, |(_, head)| head.0)))
    }
}

impl Freshness {
    /// Heads read from the change log in `db` (PostgreSQL, shared by every replica); starts
    /// the reader, which needs a runtime.
    pub fn log(db: DatabaseConnection) -> Self {
        Self::Log(HeadReads::spawn(db))
    }

    /// `owner`'s stamp now: in memory on SQLite, read (after this call) on PostgreSQL; `None`
    /// with the cache off.
    pub async fn current(&self, owner: Uuid) -> Result<Option<Stamp>, TaskError> {
        match self {
            Self::Off => Ok(None),
            Self::Log(reads) => reads.read(owner).await.map(Some),
            Self::Counted(_) => Ok(self.counted_stamp(owner)),
        }
    }

    /// Writes counted in memory (SQLite, where this process makes every write).
    pub fn counted() -> Self {
        Self::Counted(Counted {
            stripes: (0..STRIPES).map(|_| AtomicI64::new(0)).collect(),
            places: Arc::new(Semaphore::new(WRITES_UNDER_WAY)),
            users: Mutex::new(HashMap::new()),
        })
    }

    /// In memory, `owner`'s stamp now (SQLite); `None` when it must be read (PostgreSQL) or is
    /// not tracked (cache off).
    pub fn counted_stamp(&self, owner: Uuid) -> Option<Stamp> {
        match self {
            Self::Off | Self::Log(_) => None,
            Self::Counted(counted) => Some(Stamp(counted.stripe(owner).load(Ordering::Acquire))),
        }
    }

    /// Runs `write`, a write of `owner`'s tasks, and moves their stamp once it has finished,
    /// before its answer is returned. With stamps in memory (SQLite) it runs in a task of its
    /// own: it ends, and moves the stamp, even if the client stops waiting after its statement
    /// committed.
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        owner: Uuid,
        write: impl Future<Output = Result<T, TaskError>> + Send + 'static,
    ) -> Result<T, TaskError> {
        let Self::Counted(counted) = &**self else {
            return write.await;
        };
        // A place in the user's share, then one of all: waited for in turn, and given up with
        // the call until the write starts.
        let (underway, theirs) = Underway::join(self, counted, owner);
        let closed = |_| TaskError::Internal("the write places are closed".into());
        let theirs = theirs.acquire_owned().await.map_err(closed)?;
        let place = Arc::clone(&counted.places)
            .acquire_owned()
            .await
            .map_err(closed)?;
        let done = grpc_edge::telemetry::spawn_detached(async move {
            // Dropped however the write ends (a panic included): the stamp moves, the places
            // are given back.
            let _underway = (underway, theirs, place);
            write.await
        });
        done.await
            .unwrap_or_else(|error| Err(TaskError::Internal(format!("a write failed: {error}"))))
    }
}

impl Counted {
    /// `owner`'s stripe. User ids are made by the auth-service (UUIDv7: time, then random
    /// bits), so clients cannot choose to share one; both halves are folded in and spread.
    fn stripe(&self, owner: Uuid) -> &AtomicI64 {
        let (high, low) = owner.as_u64_pair();
        let spread = (high ^ low).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52;
        &self.stripes[usize::try_from(spread).unwrap_or(0) % self.stripes.len()]
    }

    fn users(&self) -> MutexGuard<'_, HashMap<Uuid, (Arc<Semaphore>, usize)>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One write of an owner's under way or waiting for a place (SQLite): keeps their places in
/// the map until dropped, and then moves their stamp.
struct Underway {
    freshness: Arc<Freshness>,
    owner: Uuid,
}

impl Underway {
    /// Joins `owner`'s writes; returns their places to take one of.
    fn join(freshness: &Arc<Freshness>, counted: &Counted, owner: Uuid) -> (Self, Arc<Semaphore>) {
        let mut users = counted.users();
        let (places, joined) = users
            .entry(owner)
            .or_insert_with(|| (Arc::new(Semaphore::new(WRITES_UNDER_WAY_PER_USER)), 0));
        *joined += 1;
        let underway = Self {
            freshness: Arc::clone(freshness),
            owner,
        };
        (underway, Arc::clone(places))
    }
}

impl Drop for Underway {
    fn drop(&mut self) {
        let Freshness::Counted(counted) = &*self.freshness else {
            return;
        };
        counted.stripe(self.owner).fetch_add(1, Ordering::AcqRel);
        let mut users = counted.users();
        if let Some((_, joined)) = users.get_mut(&self.owner) {
            *joined -= 1;
            if *joined == 0 {
                users.remove(&self.owner);
            }
        }
    }
}

/// Most pages one user may have kept (each a different query), whatever their size: what one
/// lookup scans and one keep moves.
pub const PAGES_PER_USER: usize = 64;

/// A kept page.
struct Kept<V> {
    key: ListQuery,
    stamp: Stamp,
    value: V,
    /// What the value holds, as its maker counted it.
    bytes: usize,
}

/// One user's kept pages, least recently used first.
struct Pages<V> {
    /// When they were last used (a tick of [`Inner::clock`]).
    used: u64,
    /// The values' bytes.
    bytes: usize,
    pages: Vec<Kept<V>>,
}

impl<V> Pages<V> {
    /// What the user's pages take in memory: the values, the list, and the user's places in
    /// the cache's maps.
    fn footprint(&self) -> usize {
        const MAP_ENTRIES: usize = 2 * (std::mem::size_of::<(u64, Uuid)>() + 16);
        self.bytes
            + self.pages.capacity() * std::mem::size_of::<Kept<V>>()
            + std::mem::size_of::<(Uuid, Self)>()
            + MAP_ENTRIES
    }
}

struct Inner<V> {
    users: HashMap<Uuid, Pages<V>>,
    /// Users by last use: the first is evicted first.
    by_use: BTreeMap<u64, Uuid>,
    clock: u64,
    /// The users' footprints, together.
    bytes: usize,
}

impl<V> Inner<V> {
    /// `owner`'s pages, made the most recently used (an empty set for a new user).
    fn used(&mut self, owner: Uuid) -> &mut Pages<V> {
        self.clock += 1;
        let now = self.clock;
        self.by_use.insert(now, owner);
        match self.users.entry(owner) {
            Entry::Occupied(used) => {
                let pages = used.into_mut();
                self.by_use.remove(&pages.used);
                pages.used = now;
                pages
            }
            Entry::Vacant(new) => {
                let pages = new.insert(Pages {
                    used: now,
                    bytes: 0,
                    pages: Vec::new(),
                });
                self.bytes += pages.footprint();
                pages
            }
        }
    }
}

/// ListTasks pages, per user, with the stamp each was read at.
pub struct PageCache<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
    per_user: usize,
    metrics: TaskMetrics,
}

impl<V: Clone + Send + Sync + 'static> PageCache<V> {
    /// At most `capacity` bytes of pages (0: nothing is kept), `per_user` of them for one user,
    /// counted in `metrics`. (The stamps are checked by [`Tasks::stamp`].)
    pub fn new(capacity: usize, per_user: usize, metrics: TaskMetrics) -> Arc<Self> {
        let cache = Arc::new(Self {
            inner: Mutex::new(Inner {
                users: HashMap::new(),
                by_use: BTreeMap::new(),
                clock: 0,
                bytes: 0,
            }),
            capacity,
            per_user: per_user.min(capacity),
            metrics,
        });
        let weak = Arc::downgrade(&cache);
        cache
            .metrics
            .list_cache_size(capacity, move || weak.upgrade().map(|c| c.held()));
        cache
    }

    fn inner(&self) -> MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes and users held now.
    pub fn held(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.bytes, inner.users.len())
    }

    /// `owner`'s kept page for `key` and its stamp, made their most recently used.
    fn find(&self, owner: Uuid, key: &ListQuery) -> Option<(Stamp, V)> {
        let mut inner = self.inner();
        if !inner.users.contains_key(&owner) {
            return None;
        }
        let pages = &mut inner.used(owner).pages;
        let at = pages.iter().position(|kept| kept.key == *key)?;
        let kept = pages.remove(at);
        let found = (kept.stamp, kept.value.clone());
        pages.push(kept);
        Some(found)
    }

    /// `owner`'s page for `key`: from memory when the owner's stamp is still the one it was
    /// read at, otherwise read by `tasks`, made into `V` (and its size in bytes) by `make`,
    /// and kept.
    pub async fn page(
        &self,
        tasks: &Tasks,
        owner: Owner,
        key: ListQuery,
        make: impl FnOnce(Page) -> (V, usize),
    ) -> Result<V, TaskError> {
        if self.capacity == 0 {
            let page = tasks.list(owner, key.filter, key.after, key.size).await?;
            return Ok(make(page).0);
        }
        let user = owner.user_id();
        let miss = match self.find(user, &key) {
            Some((stamp, value)) => {
                if tasks.stamp(owner).await? == Some(stamp) {
                    self.metrics.list_cache_hit();
                    return Ok(value);
                }
                CacheMiss::Stale
            }
            None => CacheMiss::Absent,
        };
        self.metrics.list_cache_miss(miss);
        let page = tasks.list(owner, key.filter, key.after, key.size).await?;
        let stamp = page.stamp;
        let (value, bytes) = make(page);
        if let Some(stamp) = stamp {
            self.keep(user, key, stamp, value.clone(), bytes);
        }
        Ok(value)
    }

    /// Keeps `value` as `owner`'s page for `key` at `stamp`, in place of an older one,
    /// evicting the owner's least recently used pages past their share and then the least
    /// recently used users' past the capacity.
    fn keep(&self, owner: Uuid, key: ListQuery, stamp: Stamp, value: V, bytes: usize) {
        let kept = Kept {
            key,
            stamp,
            value,
            bytes,
        };
        // What one page alone would take: larger than a share, it is not kept.
        let alone = Pages::<V> {
            used: 0,
            bytes,
            pages: vec![],
        }
        .footprint()
            + std::mem::size_of::<Kept<V>>();
        if alone > self.per_user {
            return;
        }
        let mut guard = self.inner();
        let inner = &mut *guard;
        let pages = inner.used(owner);
        let before = pages.footprint();
        if let Some(at) = pages.pages.iter().position(|kept| kept.key == key) {
            // Stamps only grow: a page read at the kept one's stamp or before (reads racing)
            // is not kept.
            if stamp.0 <= pages.pages[at].stamp.0 {
                return;
            }
            pages.bytes -= pages.pages.remove(at).bytes;
        }
        let mut evicted = 0;
        pages.bytes += kept.bytes;
        // At most PAGES_PER_USER: grown one at a time, the list takes what it holds.
        pages.pages.reserve_exact(1);
        pages.pages.push(kept);
        while pages.pages.len() > PAGES_PER_USER || pages.footprint() > self.per_user {
            pages.bytes -= pages.pages.remove(0).bytes;
            pages.pages.shrink_to_fit();
            evicted += 1;
        }
        let after = pages.footprint();
        inner.bytes = inner.bytes - before + after;
        self.metrics.list_cache_evicted(Evicted::UserShare, evicted);
        // The least recently used users go first (never the one just kept: it is the most
        // recent, and fits its share, which fits the capacity).
        let mut evicted = 0;
        while inner.bytes > self.capacity {
            let Some((_, user)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = inner.users.remove(&user) {
                inner.bytes -= gone.footprint();
                evicted += gone.pages.len();
            }
        }
        self.metrics.list_cache_evicted(Evicted::Capacity, evicted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CompletedFilter, PageSize};

    fn key(size: u64) -> ListQuery {
        ListQuery {
            filter: CompletedFilter::Any,
            after: None,
            size: PageSize(size),
        }
    }

    fn cache(capacity: usize, per_user: usize) -> Arc<PageCache<u32>> {
        PageCache::new(capacity, per_user, TaskMetrics::off())
    }

    fn kept(cache: &PageCache<u32>, owner: Uuid, key: ListQuery) -> Option<u32> {
        let inner = cache.inner();
        let pages = inner.users.get(&owner)?;
        pages.pages.iter().find(|k| k.key == key).map(|k| k.value)
    }

    /// What a user with `pages` pages of 1,000 bytes takes (their list's capacity exact).
    fn user_with(pages: usize) -> usize {
        let mut user = Pages::<u32> {
            used: 0,
            bytes: pages * 1000,
            pages: Vec::new(),
        };
        user.pages.reserve_exact(pages);
        user.footprint()
    }

    /// The sum of the users' footprints, as the cache counts it.
    fn recount(cache: &PageCache<u32>) -> usize {
        cache.inner().users.values().map(Pages::footprint).sum()
    }

    #[test]
    fn the_least_recently_used_user_goes_first_and_the_bytes_stay_within_the_capacity() {
        let cache = cache(3 * user_with(1) + 100, 2 * user_with(2));
        let [a, b, c, d] = [0, 1, 2, 3].map(|_| Uuid::now_v7());
        for (i, user) in [a, b, c].into_iter().enumerate() {
            cache.keep(user, key(10), Stamp(1), i as u32, 1000);
        }
        // a is used again: b is now the least recently used.
        assert_eq!(cache.find(a, &key(10)), Some((Stamp(1), 0)));
        cache.keep(d, key(10), Stamp(1), 3, 1000);
        assert_eq!(kept(&cache, b, key(10)), None);
        assert_eq!(kept(&cache, a, key(10)), Some(0));
        assert_eq!(kept(&cache, d, key(10)), Some(3));
        let (bytes, users) = cache.held();
        assert_eq!(users, 3);
        assert_eq!(bytes, recount(&cache));
        assert!(bytes <= 3 * user_with(1) + 100);
    }

    #[test]
    fn one_user_holds_at_most_their_share_and_their_least_recently_used_page_goes_first() {
        let share = user_with(2) + 200;
        let cache = cache(100 * share, share);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        cache.keep(b, key(1), Stamp(1), 9, 1000);
        for size in 1..=3 {
            cache.keep(a, key(size), Stamp(1), size as u32, 1000);
        }
        // Two of a's pages fit: the first went. Reading page 2 makes page 3 the older.
        assert_eq!(kept(&cache, a, key(1)), None);
        assert_eq!(cache.find(a, &key(2)), Some((Stamp(1), 2)));
        cache.keep(a, key(4), Stamp(1), 4, 1000);
        assert_eq!(kept(&cache, a, key(3)), None);
        assert_eq!(kept(&cache, a, key(2)), Some(2));
        assert_eq!(kept(&cache, b, key(1)), Some(9));
        // A newer page replaces the older; an older one does not replace a newer.
        cache.keep(a, key(4), Stamp(2), 40, 1000);
        cache.keep(a, key(4), Stamp(1), 41, 1000);
        assert_eq!(kept(&cache, a, key(4)), Some(40));
        assert_eq!(cache.held().0, recount(&cache));
        // A page larger than a user's share is never kept.
        cache.keep(b, key(2), Stamp(1), 7, share);
        assert_eq!(kept(&cache, b, key(2)), None);
    }

    #[test]
    fn one_user_keeps_at_most_so_many_pages_however_small() {
        let cache = cache(1 << 30, 1 << 30);
        let a = Uuid::now_v7();
        for size in 0..(PAGES_PER_USER as u64 + 10) {
            cache.keep(a, key(size), Stamp(1), 0, 1);
        }
        assert_eq!(cache.inner().users[&a].pages.len(), PAGES_PER_USER);
        assert_eq!(kept(&cache, a, key(9)), None);
        assert_eq!(kept(&cache, a, key(10)), Some(0));
    }

    #[tokio::test]
    async fn a_write_its_caller_gave_up_on_moves_the_stamp_when_it_ends_not_before() {
        let freshness = Arc::new(Freshness::counted());
        let owner = Uuid::now_v7();
        let before = freshness.counted_stamp(owner);
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let write = freshness.write(owner, async move {
            let _ = finished.await;
            Ok(())
        });
        // The caller gives up while the write is under way (a client went away).
        let given_up = tokio::time::timeout(std::time::Duration::from_millis(20), write).await;
        assert!(given_up.is_err());
        tokio::task::yield_now().await;
        assert_eq!(freshness.counted_stamp(owner), before, "still under way");
        finish.send(()).unwrap();
        for _ in 0..500 {
            if freshness.counted_stamp(owner) != before {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("the write ended without moving its owner's stamp");
    }

    #[tokio::test]
    async fn one_user_may_have_so_many_writes_under_way_and_another_user_is_unaffected() {
        let freshness = Arc::new(Freshness::counted());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (finish, finished) = tokio::sync::watch::channel(false);
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut underway = Vec::new();
        // One more than a user's share: the last waits for a place.
        for _ in 0..=WRITES_UNDER_WAY_PER_USER {
            let (freshness, mut finished) = (Arc::clone(&freshness), finished.clone());
            let started = Arc::clone(&started);
            underway.push(tokio::spawn(async move {
                freshness
                    .write(a, async move {
                        started.fetch_add(1, Ordering::AcqRel);
                        let _ = finished.wait_for(|done| *done).await;
                        Ok(())
                    })
                    .await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::Acquire), WRITES_UNDER_WAY_PER_USER);
        // Another user is not kept waiting.
        assert!(freshness.write(b, async { Ok(()) }).await.is_ok());
        // A write given up while it waits gives its place in line back.
        let given_up = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            freshness.write(a, async { Ok(()) }),
        )
        .await;
        assert!(given_up.is_err());
        finish.send_replace(true);
        for write in underway {
            write.await.unwrap().unwrap();
        }
        assert_eq!(
            started.load(Ordering::Acquire),
            WRITES_UNDER_WAY_PER_USER + 1
        );
        let Freshness::Counted(counted) = &*freshness else {
            unreachable!()
        };
        assert!(
            counted.users().is_empty(),
            "no user is kept once their writes end"
        );
    }

    #[test]
    fn a_stripe_moves_only_with_its_owners_writes() {
        let Freshness::Counted(counted) = Freshness::counted() else {
            unreachable!()
        };
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let same = std::ptr::eq(counted.stripe(a), counted.stripe(b));
        let before = counted.stripe(b).load(Ordering::Acquire);
        counted.stripe(a).fetch_add(1, Ordering::AcqRel);
        assert_eq!(counted.stripe(b).load(Ordering::Acquire) == before, !same);
        assert_eq!(Freshness::Off.counted_stamp(a), None);
    }
}
