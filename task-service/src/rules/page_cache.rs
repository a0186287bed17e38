//! ListTasks pages kept in memory and served again while they are still true.
//!
//! A page is kept with the [`Stamp`] it was read at and answered from memory only when the
//! owner's stamp is still that one, checked on every hit ([`Freshness`]):
//! - PostgreSQL: the stamp is the owner's change-log head, which the database's trigger moves
//!   in the same statement as every write, on every replica. A hit first reads the committed
//!   head (one primary-key read). A write acknowledged before the read started has committed,
//!   so its head is what the read sees: no replica answers a page from before it. Nothing else
//!   is trusted: a NOTIFY reaches other replicas after the write was acknowledged.
//! - SQLite: this process makes every write, so the stamp is in memory: a count per stripe of
//!   owners that every write bumps once it has finished (committed or not), before it is
//!   answered. A page is stamped with its stripe's count read *before* its snapshot, so a write
//!   that commits after that snapshot always changes the count the page was stamped with.
//!   Writes run in a task of their own, so a client that goes away cannot stop one after it
//!   committed and before its bump. A write of another owner of the stripe makes a page look
//!   changed too: a miss, never a wrong answer.
//!
//! The cache is bounded by bytes (LIST_CACHE_BYTES, 0 turns it off) and per user
//! (LIST_CACHE_BYTES_PER_USER, so one user's many pages cannot push everyone else's out);
//! the least recently used user's pages go first. A write does not evict anything: the next
//! read finds the page stale and replaces it. Charging the reply to the unread-replies budget is
//! the caller's business, hit or not.

use super::Tasks;
use crate::{
    domain::{CompletedFilter, Owner, Page, PageSize, Stamp},
    error::TaskError,
    metrics::{CacheMiss, TaskMetrics},
};
use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicI64, Ordering},
    },
};
use uuid::Uuid;

/// What a page answers: the same query of the same owner at the same stamp is the same page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// Which tasks.
    pub filter: CompletedFilter,
    /// The last task of the page before (from the page token), if any.
    pub after: Option<Uuid>,
    /// Tasks per page.
    pub size: PageSize,
}

/// Stripes of owners on SQLite: 32 KiB of counters, fixed whatever the number of users.
const STRIPES: usize = 4096;

/// How the current [`Stamp`] of an owner is known.
#[derive(Debug)]
pub enum Freshness {
    /// PostgreSQL: the committed head of the owner's change log, read per check.
    Log,
    /// SQLite: finished writes per stripe of owners, in this process.
    Writes(Box<[AtomicI64]>),
}

impl Freshness {
    /// Writes counted in memory (SQLite, where this process makes every write).
    pub fn counted() -> Self {
        Self::Writes((0..STRIPES).map(|_| AtomicI64::new(0)).collect())
    }

    /// `owner`'s stripe. User ids are made by the auth-service (UUIDv7: time, then random
    /// bits), so clients cannot choose to share one; both halves are folded in and spread.
    fn stripe(stripes: &[AtomicI64], owner: Uuid) -> &AtomicI64 {
        let (high, low) = owner.as_u64_pair();
        let spread = (high ^ low).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52;
        &stripes[usize::try_from(spread).unwrap_or(0) % stripes.len()]
    }

    /// In memory, `owner`'s stamp now (SQLite); `None` when it must be read (PostgreSQL).
    pub fn counted_stamp(&self, owner: Uuid) -> Option<Stamp> {
        match self {
            Self::Log => None,
            Self::Writes(stripes) => {
                Some(Stamp(Self::stripe(stripes, owner).load(Ordering::Acquire)))
            }
        }
    }

    /// After a write of `owner`'s finished, however it ended: their pages read before it are
    /// stale (SQLite; nothing to do on PostgreSQL, where the head moved with the write).
    fn written(&self, owner: Uuid) {
        if let Self::Writes(stripes) = self {
            Self::stripe(stripes, owner).fetch_add(1, Ordering::AcqRel);
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
        match **self {
            Self::Log => write.await,
            Self::Writes(_) => {
                let moved = Moved(Arc::clone(self), owner);
                let done = grpc_edge::telemetry::spawn_detached(async move {
                    // Dropped however the write ends (a panic included).
                    let _moved = moved;
                    write.await
                });
                done.await.unwrap_or_else(|error| {
                    Err(TaskError::Internal(format!("a write failed: {error}")))
                })
            }
        }
    }
}

/// Moves its owner's stamp when dropped: at the end of a write, however it ends.
struct Moved(Arc<Freshness>, Uuid);

impl Drop for Moved {
    fn drop(&mut self) {
        self.0.written(self.1);
    }
}

/// A kept page.
struct Kept<V> {
    key: PageKey,
    stamp: Stamp,
    value: V,
    bytes: usize,
}

/// One user's kept pages, oldest first.
struct Pages<V> {
    /// When they were last used (a tick of [`Inner::clock`]).
    used: u64,
    bytes: usize,
    pages: Vec<Kept<V>>,
}

struct Inner<V> {
    users: HashMap<Uuid, Pages<V>>,
    /// Users by last use: the first is evicted first.
    by_use: BTreeMap<u64, Uuid>,
    clock: u64,
    bytes: usize,
}

impl<V> Inner<V> {
    /// Marks `owner`'s pages used now.
    fn touch(&mut self, owner: Uuid) -> Option<&mut Pages<V>> {
        let pages = self.users.get_mut(&owner)?;
        self.by_use.remove(&pages.used);
        self.clock += 1;
        pages.used = self.clock;
        self.by_use.insert(self.clock, owner);
        Some(pages)
    }
}

/// Whether a page could be answered from memory, and why not.
enum Found<V> {
    Kept(Stamp, V),
    Missing,
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

    /// `owner`'s page for `key`: from memory when the owner's stamp is still the one it was
    /// read at, otherwise read by `tasks`, made into `V` (and its size in bytes) by `make`,
    /// and kept.
    pub async fn page(
        &self,
        tasks: &Tasks,
        owner: Owner,
        key: PageKey,
        make: impl FnOnce(Page) -> (V, usize),
    ) -> Result<V, TaskError> {
        if self.capacity == 0 {
            let page = tasks.list(owner, key.filter, key.after, key.size).await?;
            return Ok(make(page).0);
        }
        let user = owner.user_id();
        let found = match self.inner().touch(user) {
            Some(pages) => pages
                .pages
                .iter()
                .find(|kept| kept.key == key)
                .map_or(Found::Missing, |kept| {
                    Found::Kept(kept.stamp, kept.value.clone())
                }),
            None => Found::Missing,
        };
        let miss = match found {
            Found::Kept(stamp, value) => {
                if tasks.stamp(owner).await? == stamp {
                    self.metrics.list_cache_hit();
                    return Ok(value);
                }
                CacheMiss::Stale
            }
            Found::Missing => CacheMiss::Absent,
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

    /// Keeps `value` as `owner`'s page for `key` at `stamp`, in place of any older one,
    /// evicting the owner's oldest pages past their share and then the least recently used
    /// users' past the capacity.
    fn keep(&self, owner: Uuid, key: PageKey, stamp: Stamp, value: V, bytes: usize) {
        // What a kept page costs beyond the reply: its key, stamp and place in the lists.
        let bytes = bytes + std::mem::size_of::<Kept<V>>() + 64;
        if bytes > self.per_user {
            return;
        }
        let mut guard = self.inner();
        let inner = &mut *guard;
        inner.clock += 1;
        let now = inner.clock;
        let pages = match inner.users.entry(owner) {
            Entry::Occupied(used) => {
                let pages = used.into_mut();
                inner.by_use.remove(&pages.used);
                pages.used = now;
                pages
            }
            Entry::Vacant(new) => new.insert(Pages {
                used: now,
                bytes: 0,
                pages: Vec::new(),
            }),
        };
        inner.by_use.insert(now, owner);
        let mut freed = 0;
        if let Some(at) = pages.pages.iter().position(|kept| kept.key == key) {
            // Stamps only grow: a page read at the kept one's stamp or before (reads racing)
            // is not kept.
            if stamp.0 <= pages.pages[at].stamp.0 {
                return;
            }
            freed += pages.pages.remove(at).bytes;
        }
        let mut evicted = 0;
        while pages.bytes - freed + bytes > self.per_user && !pages.pages.is_empty() {
            freed += pages.pages.remove(0).bytes;
            evicted += 1;
        }
        pages.bytes = pages.bytes - freed + bytes;
        pages.pages.push(Kept {
            key,
            stamp,
            value,
            bytes,
        });
        inner.bytes = inner.bytes - freed + bytes;
        self.metrics.list_cache_evicted(false, evicted);
        // The least recently used users go first (never the one just kept: it is the most
        // recent, and fits its share, which fits the capacity).
        let mut evicted = 0;
        while inner.bytes > self.capacity {
            let Some((_, user)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = inner.users.remove(&user) {
                inner.bytes -= gone.bytes;
                evicted += gone.pages.len();
            }
        }
        self.metrics.list_cache_evicted(true, evicted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(size: u64) -> PageKey {
        PageKey {
            filter: CompletedFilter::Any,
            after: None,
            size: PageSize(size),
        }
    }

    fn cache(capacity: usize, per_user: usize) -> Arc<PageCache<u32>> {
        PageCache::new(capacity, per_user, TaskMetrics::off())
    }

    fn kept(cache: &PageCache<u32>, owner: Uuid, key: PageKey) -> Option<u32> {
        let inner = cache.inner();
        let pages = inner.users.get(&owner)?;
        pages.pages.iter().find(|k| k.key == key).map(|k| k.value)
    }

    const OVERHEAD: usize = std::mem::size_of::<Kept<u32>>() + 64;

    #[test]
    fn the_least_recently_used_user_goes_first_and_the_bytes_stay_within_the_capacity() {
        let cache = cache(3 * (1000 + OVERHEAD), 2 * (1000 + OVERHEAD));
        let [a, b, c, d] = [0, 1, 2, 3].map(|_| Uuid::now_v7());
        for (i, user) in [a, b, c].into_iter().enumerate() {
            cache.keep(user, key(10), Stamp(1), i as u32, 1000);
        }
        // a is used again: b is now the least recently used.
        cache.inner().touch(a);
        cache.keep(d, key(10), Stamp(1), 3, 1000);
        assert_eq!(kept(&cache, b, key(10)), None);
        assert_eq!(kept(&cache, a, key(10)), Some(0));
        assert_eq!(kept(&cache, d, key(10)), Some(3));
        let (bytes, users) = cache.held();
        assert_eq!((bytes, users), (3 * (1000 + OVERHEAD), 3));
    }

    #[test]
    fn one_user_holds_at_most_their_share_and_a_newer_page_replaces_the_older() {
        let cache = cache(100 * (1000 + OVERHEAD), 2 * (1000 + OVERHEAD));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        cache.keep(b, key(1), Stamp(1), 9, 1000);
        for size in 1..=5 {
            cache.keep(a, key(size), Stamp(1), size as u32, 1000);
        }
        // Only a's two newest pages stay; b's is untouched.
        assert_eq!(kept(&cache, a, key(3)), None);
        assert_eq!(kept(&cache, a, key(4)), Some(4));
        assert_eq!(kept(&cache, a, key(5)), Some(5));
        assert_eq!(kept(&cache, b, key(1)), Some(9));
        cache.keep(a, key(5), Stamp(2), 50, 1000);
        assert_eq!(kept(&cache, a, key(5)), Some(50));
        assert_eq!(cache.held(), (3 * (1000 + OVERHEAD), 2));
        // A page larger than a user's share is never kept.
        cache.keep(b, key(2), Stamp(1), 7, 3000);
        assert_eq!(kept(&cache, b, key(2)), None);
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

    #[test]
    fn a_finished_write_moves_its_owners_counted_stamp_and_only_its_stripes() {
        let freshness = Freshness::counted();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let before = (freshness.counted_stamp(a), freshness.counted_stamp(b));
        freshness.written(a);
        assert_ne!(freshness.counted_stamp(a), before.0);
        let Freshness::Writes(stripes) = &freshness else {
            unreachable!()
        };
        let same = std::ptr::eq(Freshness::stripe(stripes, a), Freshness::stripe(stripes, b));
        assert_eq!(freshness.counted_stamp(b) == before.1, !same);
        assert_eq!(Freshness::Log.counted_stamp(a), None);
    }
}
