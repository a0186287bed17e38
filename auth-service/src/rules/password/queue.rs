//! A fair, bounded pool of permits (for password hashing), shared between clients.
//!
//! A plain FIFO semaphore lets one client with hundreds of queued requests push everyone else
//! to the back of the line. Here a freed permit is handed to the waiting *clients* in turn,
//! round-robin, each client's own waiters in arrival order; so another client waits at most
//! about one permit turn per client with waiters, however many requests the busiest one has
//! queued. Waiting is bounded by count (per client and in all) and by time; a request that
//! would exceed a bound gets [`Busy`] at once (or when its time runs out) instead of hanging.
//!
//! Taking turns is not enough when many addresses flood at once (100 addresses, 15 ms a hash:
//! 1.5 s a turn), so there are two lines ([`Class`]): sign-ins of an account from an address
//! it signed in from in the last 30 days are served before anyone else, in turn among
//! themselves, and have their own bounds. A flood from addresses the account has not used can
//! neither delay nor crowd out its owner. So that the known line cannot starve the other (an
//! account signing in correctly, again and again, from its own addresses), every
//! [`KNOWN_STREAK`]th permit in a row goes to the other line when it has waiters.
//!
//! All bookkeeping is under one [`Mutex`], never held across an `await`. A permit is handed
//! over by removing the waiter from its queue under that lock; the waiter then only learns of
//! it (a `oneshot`). Whatever ends a wait (the grant, the time limit, or the future being
//! dropped when its RPC is cancelled) settles under the same lock: still queued means no
//! permit; already removed means the permit is the waiter's, to keep or to pass on. No permit
//! is lost to a race.

use grpc_edge::client_address::ClientKey;
use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};
use tokio::sync::oneshot;

/// How much waiting [`FairPermits`] accepts, in each line ([`Class`]) separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// The most waiters one client may have queued in a line; one more is refused at once.
    pub per_client: usize,
    /// The most waiters queued in a line in all; one more, from anyone, is refused at once.
    pub total: usize,
    /// How long a waiter may wait for a permit before it gives up with [`Busy`].
    pub max_wait: Duration,
}

/// No permit now: a bound was reached, or the wait ran out. Try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too busy; retry after {retry_after:?}")]
pub struct Busy {
    /// When a retry may succeed: the longest wait, the time the queue ahead may take to drain.
    pub retry_after: Duration,
    /// The setting that refused: HASH_QUEUE_PER_CLIENT, HASH_QUEUE_MAX or
    /// HASH_QUEUE_MAX_WAIT_MS.
    pub reason: &'static str,
}

/// How many permits in a row the known line gets while the other line waits.
pub const KNOWN_STREAK: u32 = 4;

/// Whose turn a waiter waits for: its client, in its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claimant {
    /// The client address (IPv6: /64).
    pub client: ClientKey,
    /// Which line it waits in.
    pub class: Class,
}

/// The two lines of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A sign-in from an address the account signed in from in the last 30 days: served first.
    Known,
    /// Anything else (sign-ups, sign-ins from new addresses, unknown accounts).
    Other,
}

impl Claimant {
    /// `client` in the [`Class::Other`] line.
    pub fn other(client: ClientKey) -> Self {
        Self {
            client,
            class: Class::Other,
        }
    }
}

/// A fixed number of permits, handed round-robin between clients, with bounded waiting.
///
/// A free permit is taken at once only when nobody waits: a newcomer never overtakes the
/// queue. Cloning gives another handle to the same pool.
#[derive(Clone)]
pub struct FairPermits {
    shared: Arc<Shared>,
}

/// One of [`FairPermits`]' permits; dropping it hands it to the next client in turn.
pub struct FairPermit {
    shared: Arc<Shared>,
}

struct Shared {
    limits: QueueLimits,
    permits: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Permits nobody holds. Non-zero only while nobody waits.
    free: usize,
    /// Waiters in all queues.
    waiting: usize,
    /// Waiters of each class (bounded separately).
    known_waiting: usize,
    /// Each claimant's waiters, oldest first; only claimants with waiters have an entry.
    queues: HashMap<Claimant, VecDeque<Waiter>>,
    /// Claimants of [`Class::Known`] with waiters, in the order they are served: the front
    /// one gets the next permit.
    known_turn: VecDeque<Claimant>,
    /// The same for [`Class::Other`], served when no known claimant waits (or after
    /// [`KNOWN_STREAK`] known ones in a row).
    turn: VecDeque<Claimant>,
    /// Permits in a row given to the known line while the other waited.
    known_streak: u32,
    next_id: u64,
}

struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

impl FairPermits {
    /// A pool of `permits` permits with `limits` on waiting for them.
    pub fn new(permits: usize, limits: QueueLimits) -> Self {
        let state = State {
            free: permits,
            ..State::default()
        };
        Self {
            shared: Arc::new(Shared {
                limits,
                permits,
                state: Mutex::new(state),
            }),
        }
    }

    /// A permit for `client`: at once if one is free and nobody waits, else after `client`'s
    /// earlier waiters and its turn among the other waiting clients. [`Busy`] at once when
    /// `client` already has `per_client` waiters or `total` are waiting, and after `max_wait`
    /// without a permit. Dropping the future gives up the place (and any permit just handed
    /// to it) to the next waiter.
    pub async fn acquire(&self, client: Claimant) -> Result<FairPermit, Busy> {
        let limits = self.shared.limits;
        let busy = |reason| Busy {
            retry_after: limits.max_wait,
            reason,
        };
        let (id, granted) = {
            let mut state = self.shared.lock();
            if state.free > 0 && state.waiting == 0 {
                state.free -= 1;
                return Ok(self.permit());
            }
            let queued = state.queues.get(&client).map_or(0, VecDeque::len);
            let in_class = match client.class {
                Class::Known => state.known_waiting,
                Class::Other => state.waiting - state.known_waiting,
            };
            if queued >= limits.per_client {
                return Err(busy("HASH_QUEUE_PER_CLIENT"));
            }
            if in_class >= limits.total {
                return Err(busy("HASH_QUEUE_MAX"));
            }
            state.enqueue(client)
        };
        let mut place = Place {
            shared: &self.shared,
            client,
            id,
            settled: false,
        };
        // Whether it was granted, timed out, or (impossible while we live) lost its sender,
        // the queue under the lock has the last word.
        let _ = tokio::time::timeout(limits.max_wait, granted).await;
        if place.settle() {
            Ok(self.permit())
        } else {
            Err(busy("HASH_QUEUE_MAX_WAIT_MS"))
        }
    }

    /// How many permits are held now.
    pub fn in_use(&self) -> usize {
        let state = self.shared.lock();
        // Permits handed to waiters that have not noticed yet count as held.
        self.shared.permits.saturating_sub(state.free)
    }

    /// How many permits there are (MAX_CONCURRENT_HASHES).
    pub fn permits(&self) -> usize {
        self.shared.permits
    }

    /// How many claimants wait for a permit now.
    pub fn waiting(&self) -> usize {
        self.shared.lock().waiting
    }

    /// The most that may wait in each line (HASH_QUEUE_MAX).
    pub fn max_waiting(&self) -> usize {
        self.shared.limits.total
    }

    fn permit(&self) -> FairPermit {
        FairPermit {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for FairPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairPermit").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a permit to the next waiting client in turn, or back to the pool.
    fn release(&self) {
        let mut state = self.lock();
        if !state.grant_next() {
            state.free += 1;
        }
    }
}

impl State {
    fn turn_of(&mut self, class: Class) -> &mut VecDeque<Claimant> {
        match class {
            Class::Known => &mut self.known_turn,
            Class::Other => &mut self.turn,
        }
    }

    fn enqueue(&mut self, client: Claimant) -> (u64, oneshot::Receiver<()>) {
        let (wake, granted) = oneshot::channel();
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let queue = self.queues.entry(client).or_default();
        let first = queue.is_empty();
        queue.push_back(Waiter { id, wake });
        if first {
            self.turn_of(client.class).push_back(client);
        }
        self.count(client.class, 1);
        (id, granted)
    }

    /// Adds `n` (1 or -1) to the waiters of `class`.
    fn count(&mut self, class: Class, n: isize) {
        self.waiting = self.waiting.saturating_add_signed(n);
        if class == Class::Known {
            self.known_waiting = self.known_waiting.saturating_add_signed(n);
        }
    }

    /// Gives a permit to the oldest waiter of the claimant in turn (known ones first), whose
    /// turn then passes to the back of its line; false when nobody waits.
    fn grant_next(&mut self) -> bool {
        let order = if self.known_streak + 1 >= KNOWN_STREAK && !self.turn.is_empty() {
            [Class::Other, Class::Known]
        } else {
            [Class::Known, Class::Other]
        };
        for class in order {
            while let Some(client) = self.turn_of(class).pop_front() {
                let Some(queue) = self.queues.get_mut(&client) else {
                    continue;
                };
                let Some(waiter) = queue.pop_front() else {
                    self.queues.remove(&client);
                    continue;
                };
                if queue.is_empty() {
                    self.queues.remove(&client);
                } else {
                    self.turn_of(class).push_back(client);
                }
                self.count(class, -1);
                self.known_streak = match class {
                    Class::Known if !self.turn.is_empty() => self.known_streak + 1,
                    _ => 0,
                };
                // The permit is the waiter's now. If its receiver is gone, its `Place` has not
                // settled yet: it will find itself granted and release the permit.
                let _ = waiter.wake.send(());
                return true;
            }
        }
        false
    }

    /// Takes waiter `id` out of `client`'s queue; false when it is no longer there (granted).
    fn withdraw(&mut self, client: Claimant, id: u64) -> bool {
        let Some(queue) = self.queues.get_mut(&client) else {
            return false;
        };
        let Some(at) = queue.iter().position(|waiter| waiter.id == id) else {
            return false;
        };
        queue.remove(at);
        if queue.is_empty() {
            self.queues.remove(&client);
            self.turn_of(client.class)
                .retain(|waiting| *waiting != client);
        }
        self.count(client.class, -1);
        true
    }
}

/// A waiter's place in the queue, settled once: by [`Place::settle`] or, if the waiting future
/// is dropped, on drop (releasing a permit that was handed over meanwhile).
struct Place<'a> {
    shared: &'a Shared,
    client: Claimant,
    id: u64,
    settled: bool,
}

impl Place<'_> {
    /// True if a permit was handed to this waiter; otherwise it leaves the queue.
    fn settle(&mut self) -> bool {
        self.settled = true;
        !self.shared.lock().withdraw(self.client, self.id)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.settled && self.settle() {
            self.shared.release();
        }
    }
}

#[cfg(test)]
mod tests;
