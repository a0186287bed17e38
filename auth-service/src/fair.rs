//! A fair, bounded pool of permits (for password hashing), shared between clients.
//!
//! A plain FIFO semaphore lets one client with hundreds of queued requests push everyone else
//! to the back of the line. Here a freed permit is handed to the waiting *clients* in turn,
//! round-robin, each client's own waiters in arrival order; so another client waits at most
//! about one permit turn per client with waiters, however many requests the busiest one has
//! queued. Waiting is bounded by count (per client and in all) and by time; a request that
//! would exceed a bound gets [`Busy`] at once (or when its time runs out) instead of hanging.
//!
//! All bookkeeping is under one [`Mutex`], never held across an `await`. A permit is handed
//! over by removing the waiter from its queue under that lock; the waiter then only learns of
//! it (a `oneshot`). Whatever ends a wait (the grant, the time limit, or the future being
//! dropped when its RPC is cancelled) settles under the same lock: still queued means no
//! permit; already removed means the permit is the waiter's, to keep or to pass on. No permit
//! is lost to a race.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};
use tokio::sync::oneshot;

/// Whom a request is charged to: one IPv4 address, one IPv6 /64, or the shared "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(Option<IpAddr>);

impl ClientKey {
    /// The client `ip` belongs to. An IPv4 address is one client (also when it arrives
    /// IPv4-mapped, `::ffff:a.b.c.d`, on a dual-stack listener); an IPv6 address stands for its
    /// /64, the smallest block one subscriber is usually given, so rotating through it gains
    /// nothing.
    pub fn from_ip(ip: IpAddr) -> Self {
        let key = match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
            },
        };
        Self(Some(key))
    }

    /// Requests whose address is not known. They all count as one client.
    pub fn unknown() -> Self {
        Self(None)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(IpAddr::V6(prefix)) => write!(f, "{prefix}/64"),
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

/// How much waiting [`FairPermits`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// The most waiters one client may have queued; one more is refused at once.
    pub per_client: usize,
    /// The most waiters queued in all; one more, from anyone, is refused at once.
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
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Permits nobody holds. Non-zero only while nobody waits.
    free: usize,
    /// Waiters in all queues.
    waiting: usize,
    /// Each client's waiters, oldest first; only clients with waiters have an entry.
    queues: HashMap<ClientKey, VecDeque<Waiter>>,
    /// Clients with waiters, in the order they are served: the front one gets the next permit.
    turn: VecDeque<ClientKey>,
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
                state: Mutex::new(state),
            }),
        }
    }

    /// A permit for `client`: at once if one is free and nobody waits, else after `client`'s
    /// earlier waiters and its turn among the other waiting clients. [`Busy`] at once when
    /// `client` already has `per_client` waiters or `total` are waiting, and after `max_wait`
    /// without a permit. Dropping the future gives up the place (and any permit just handed
    /// to it) to the next waiter.
    pub async fn acquire(&self, client: ClientKey) -> Result<FairPermit, Busy> {
        let limits = self.shared.limits;
        let busy = Busy {
            retry_after: limits.max_wait,
        };
        let (id, granted) = {
            let mut state = self.shared.lock();
            if state.free > 0 && state.waiting == 0 {
                state.free -= 1;
                return Ok(self.permit());
            }
            let queued = state.queues.get(&client).map_or(0, VecDeque::len);
            if state.waiting >= limits.total || queued >= limits.per_client {
                return Err(busy);
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
            Err(busy)
        }
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
    fn enqueue(&mut self, client: ClientKey) -> (u64, oneshot::Receiver<()>) {
        let (wake, granted) = oneshot::channel();
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let queue = self.queues.entry(client).or_default();
        if queue.is_empty() {
            self.turn.push_back(client);
        }
        queue.push_back(Waiter { id, wake });
        self.waiting += 1;
        (id, granted)
    }

    /// Gives a permit to the oldest waiter of the client in turn, whose turn then passes to
    /// the back of the line; false when nobody waits.
    fn grant_next(&mut self) -> bool {
        while let Some(client) = self.turn.pop_front() {
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
                self.turn.push_back(client);
            }
            self.waiting -= 1;
            // The permit is the waiter's now. If its receiver is gone, its `Place` has not
            // settled yet: it will find itself granted and release the permit.
            let _ = waiter.wake.send(());
            return true;
        }
        false
    }

    /// Takes waiter `id` out of `client`'s queue; false when it is no longer there (granted).
    fn withdraw(&mut self, client: ClientKey, id: u64) -> bool {
        let Some(queue) = self.queues.get_mut(&client) else {
            return false;
        };
        let Some(at) = queue.iter().position(|waiter| waiter.id == id) else {
            return false;
        };
        queue.remove(at);
        self.waiting -= 1;
        if queue.is_empty() {
            self.queues.remove(&client);
            self.turn.retain(|waiting| *waiting != client);
        }
        true
    }
}

/// A waiter's place in the queue, settled once: by [`Place::settle`] or, if the waiting future
/// is dropped, on drop (releasing a permit that was handed over meanwhile).
struct Place<'a> {
    shared: &'a Shared,
    client: ClientKey,
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::{
        future::Future,
        pin::{Pin, pin},
        sync::atomic::{AtomicUsize, Ordering},
        task::{Context, Poll, Waker},
        time::Instant,
    };
    use tokio::task::JoinHandle;

    const LONG: Duration = Duration::from_secs(30);

    fn limits(per_client: usize, total: usize, max_wait: Duration) -> QueueLimits {
        QueueLimits {
            per_client,
            total,
            max_wait,
        }
    }

    fn client(n: u8) -> ClientKey {
        ClientKey::from_ip(IpAddr::from([10, 0, 0, n]))
    }

    fn ip(text: &str) -> ClientKey {
        ClientKey::from_ip(text.parse().unwrap())
    }

    /// One poll, without a task: `Ready` means the answer came at once.
    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    type Log = Arc<Mutex<Vec<String>>>;

    /// A task that acquires a permit for `client`, logs `label`, and gives the permit back.
    fn spawn_waiter(
        permits: &FairPermits,
        client: ClientKey,
        label: &str,
        log: &Log,
    ) -> JoinHandle<Result<(), Busy>> {
        let (permits, label, log) = (permits.clone(), label.to_owned(), Arc::clone(log));
        tokio::spawn(async move {
            let permit = permits.acquire(client).await?;
            log.lock().unwrap().push(label);
            drop(permit);
            Ok(())
        })
    }

    /// Lets spawned tasks run until `n` waiters are queued.
    async fn until_waiting(permits: &FairPermits, n: usize) {
        for _ in 0..10_000 {
            if permits.shared.lock().waiting == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never {n} waiters");
    }

    /// Nobody waits, nothing is left in the queues, and `free` permits are in the pool.
    fn assert_idle(permits: &FairPermits, free: usize) {
        let state = permits.shared.lock();
        assert_eq!(state.free, free, "free permits");
        assert_eq!(state.waiting, 0, "waiters");
        assert!(state.queues.is_empty() && state.turn.is_empty());
    }

    async fn all_served(tasks: Vec<JoinHandle<Result<(), Busy>>>) {
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn permits_are_handed_round_robin_between_clients() {
        let permits = FairPermits::new(1, limits(16, 64, LONG));
        let log = Log::default();
        let holder = permits.acquire(client(9)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..10 {
            tasks.push(spawn_waiter(&permits, client(1), &format!("A{i}"), &log));
            until_waiting(&permits, i + 1).await;
        }
        tasks.push(spawn_waiter(&permits, client(2), "B0", &log));
        until_waiting(&permits, 11).await;
        drop(holder);
        all_served(tasks).await;
        let expected = [
            "A0", "B0", "A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9",
        ];
        assert_eq!(*log.lock().unwrap(), expected);
        assert_idle(&permits, 1);
    }

    #[tokio::test]
    async fn a_client_over_its_per_client_bound_is_refused_at_once_while_others_still_queue() {
        let permits = FairPermits::new(1, limits(2, 10, LONG));
        let log = Log::default();
        let holder = permits.acquire(client(9)).await.unwrap();
        let mut tasks = vec![
            spawn_waiter(&permits, client(1), "A0", &log),
            spawn_waiter(&permits, client(1), "A1", &log),
        ];
        until_waiting(&permits, 2).await;
        let refused = poll_once(pin!(permits.acquire(client(1))));
        assert!(matches!(
            refused,
            Poll::Ready(Err(Busy { retry_after: LONG }))
        ));
        tasks.push(spawn_waiter(&permits, client(2), "B0", &log));
        until_waiting(&permits, 3).await;
        drop(holder);
        all_served(tasks).await;
        assert_idle(&permits, 1);
    }

    #[tokio::test]
    async fn when_the_total_bound_is_reached_everyone_is_refused_at_once() {
        let permits = FairPermits::new(1, limits(10, 3, LONG));
        let log = Log::default();
        let holder = permits.acquire(client(9)).await.unwrap();
        let tasks = vec![
            spawn_waiter(&permits, client(1), "A0", &log),
            spawn_waiter(&permits, client(1), "A1", &log),
            spawn_waiter(&permits, client(2), "B0", &log),
        ];
        until_waiting(&permits, 3).await;
        for newcomer in [client(3), client(1), ClientKey::unknown()] {
            let refused = poll_once(pin!(permits.acquire(newcomer)));
            assert!(
                matches!(refused, Poll::Ready(Err(Busy { .. }))),
                "{newcomer}"
            );
        }
        drop(holder);
        all_served(tasks).await;
        assert_idle(&permits, 1);
    }

    #[tokio::test]
    async fn a_waiter_not_served_within_max_wait_gets_busy_and_leaves_no_trace() {
        let max_wait = Duration::from_millis(20);
        let permits = FairPermits::new(2, limits(4, 8, max_wait));
        let holders = [
            permits.acquire(client(9)).await.unwrap(),
            permits.acquire(client(9)).await.unwrap(),
        ];
        let started = Instant::now();
        let busy = permits.acquire(client(1)).await.unwrap_err();
        assert!(started.elapsed() >= max_wait);
        assert_eq!(busy.retry_after, max_wait);
        assert_idle(&permits, 0);
        drop(holders);
        assert_idle(&permits, 2);
        let again = [
            poll_once(pin!(permits.acquire(client(1)))),
            poll_once(pin!(permits.acquire(client(2)))),
        ];
        assert!(
            again
                .iter()
                .all(|permit| matches!(permit, Poll::Ready(Ok(_))))
        );
    }

    #[tokio::test]
    async fn a_dropped_waiter_does_not_leak_a_permit() {
        let permits = FairPermits::new(1, limits(4, 8, LONG));
        let holder = permits.acquire(client(9)).await.unwrap();
        let waiter = spawn_waiter(&permits, client(1), "A0", &Log::default());
        until_waiting(&permits, 1).await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_idle(&permits, 0);
        drop(holder);
        assert_idle(&permits, 1);
        assert!(matches!(
            poll_once(pin!(permits.acquire(client(1)))),
            Poll::Ready(Ok(_))
        ));
    }

    #[tokio::test]
    async fn a_permit_handed_to_a_dropped_waiter_goes_to_the_next_waiter() {
        let permits = FairPermits::new(1, limits(4, 8, LONG));
        let log = Log::default();
        let holder = permits.acquire(client(9)).await.unwrap();
        let a = spawn_waiter(&permits, client(1), "A0", &log);
        until_waiting(&permits, 1).await;
        let b = spawn_waiter(&permits, client(2), "B0", &log);
        until_waiting(&permits, 2).await;
        // Handed to A, whose task has not run since: cancel it before it takes the permit.
        drop(holder);
        assert_eq!(permits.shared.lock().waiting, 1);
        a.abort();
        assert!(a.await.unwrap_err().is_cancelled());
        b.await.unwrap().unwrap();
        assert_eq!(*log.lock().unwrap(), ["B0"]);
        assert_idle(&permits, 1);
    }

    #[tokio::test]
    async fn a_free_permit_is_not_taken_past_the_waiters() {
        let permits = FairPermits::new(1, limits(4, 8, LONG));
        let log = Log::default();
        let holder = permits.acquire(client(9)).await.unwrap();
        let a = spawn_waiter(&permits, client(1), "A0", &log);
        until_waiting(&permits, 1).await;
        // Handed to A, whose task has not run yet: a newcomer must not take it meanwhile.
        drop(holder);
        let mut newcomer = pin!(permits.acquire(client(2)));
        assert!(poll_once(newcomer.as_mut()).is_pending());
        a.await.unwrap().unwrap();
        assert_eq!(*log.lock().unwrap(), ["A0"]);
        drop(newcomer.await.unwrap());
        assert_idle(&permits, 1);
    }

    #[tokio::test]
    async fn a_permit_handed_over_as_the_wait_runs_out_is_kept() {
        let max_wait = Duration::from_millis(20);
        let permits = FairPermits::new(1, limits(4, 8, max_wait));
        let holder = permits.acquire(client(9)).await.unwrap();
        let mut waiter = pin!(permits.acquire(client(1)));
        assert!(poll_once(waiter.as_mut()).is_pending());
        tokio::time::sleep(max_wait * 2).await;
        // The time limit has passed and the permit is handed over before the waiter looks.
        drop(holder);
        let Poll::Ready(Ok(permit)) = poll_once(waiter.as_mut()) else {
            panic!("the handed-over permit was not kept");
        };
        assert_idle(&permits, 0);
        drop(permit);
        assert_idle(&permits, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn under_concurrent_churn_no_permit_is_lost_or_handed_out_twice() {
        let permits = FairPermits::new(2, limits(4, 16, Duration::from_millis(2)));
        let in_use = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64u8)
            .map(|n| {
                let (permits, in_use) = (permits.clone(), Arc::clone(&in_use));
                tokio::spawn(async move {
                    for round in 0..50 {
                        let acquire = permits.acquire(client(n % 8));
                        // Every third request is cancelled if it is not served quickly.
                        let result = if round % 3 == 0 {
                            let patience = Duration::from_micros(300);
                            match tokio::time::timeout(patience, acquire).await {
                                Ok(result) => result,
                                Err(_) => continue,
                            }
                        } else {
                            acquire.await
                        };
                        if let Ok(permit) = result {
                            assert!(in_use.fetch_add(1, Ordering::SeqCst) < 2);
                            tokio::task::yield_now().await;
                            in_use.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_idle(&permits, 2);
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64_prefix_and_ipv4_by_the_whole_address() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff:ab:cd:ef"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_ne!(ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
        assert_ne!(ip("::ffff:10.0.0.1"), ip("::ffff:10.0.0.2"));
        assert_eq!(ClientKey::unknown(), ClientKey::unknown());
        assert_ne!(ClientKey::unknown(), ip("0.0.0.0"));
        assert_ne!(ClientKey::unknown(), ip("::"));
    }

    #[tokio::test]
    async fn waiting_for_and_holding_a_permit_can_move_between_threads() {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let permits = FairPermits::new(1, limits(1, 1, LONG));
        let acquire = async move { permits.acquire(ClientKey::unknown()).await };
        assert_send(&acquire);
        assert_send(&acquire.await.unwrap());
    }
}
