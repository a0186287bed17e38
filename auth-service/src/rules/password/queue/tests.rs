#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::net::IpAddr;
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

fn client(n: u8) -> Claimant {
    Claimant::other(ClientKey::from_ip(IpAddr::from([10, 0, 0, n])))
}

fn known(n: u8) -> Claimant {
    Claimant {
        client: ClientKey::from_ip(IpAddr::from([10, 0, 0, n])),
        class: Class::Known,
    }
}

/// One poll, without a task: `Ready` means the answer came at once.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

type Log = Arc<Mutex<Vec<String>>>;

/// A task that acquires a permit for `client`, logs `label`, and gives the permit back.
fn spawn_waiter(
    permits: &FairPermits,
    client: Claimant,
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
    assert!(state.queues.is_empty() && state.turn.is_empty() && state.known_turn.is_empty());
    assert_eq!(state.known_waiting, 0);
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
        Poll::Ready(Err(Busy {
            retry_after: LONG,
            ..
        }))
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
    for newcomer in [client(3), client(1), Claimant::other(ClientKey::unknown())] {
        let refused = poll_once(pin!(permits.acquire(newcomer)));
        assert!(
            matches!(refused, Poll::Ready(Err(Busy { .. }))),
            "{newcomer:?}"
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

#[tokio::test]
async fn waiting_for_and_holding_a_permit_can_move_between_threads() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let permits = FairPermits::new(1, limits(1, 1, LONG));
    let acquire = async move { permits.acquire(Claimant::other(ClientKey::unknown())).await };
    assert_send(&acquire);
    assert_send(&acquire.await.unwrap());
}

#[tokio::test]
async fn a_known_address_is_served_before_a_flood_from_many_others_and_has_room_when_they_fill_the_queue()
 {
    let permits = FairPermits::new(1, limits(4, 8, LONG));
    let log = Log::default();
    let holder = permits.acquire(client(200)).await.unwrap();
    // 100 flooding addresses: 8 get a place, the rest are refused at once.
    let mut flood = Vec::new();
    let mut refused = 0;
    for n in 0..100 {
        if n < 8 {
            flood.push(spawn_waiter(
                &permits,
                client(n),
                &format!("flood {n}"),
                &log,
            ));
            until_waiting(&permits, flood.len()).await;
        } else if poll_once(pin!(permits.acquire(client(n)))).is_ready() {
            refused += 1;
        }
    }
    assert_eq!(refused, 92);
    // The owner from a known address still finds room, and goes first.
    let owner = spawn_waiter(&permits, known(250), "owner", &log);
    until_waiting(&permits, 9).await;
    drop(holder);
    owner.await.unwrap().unwrap();
    all_served(flood).await;
    assert_eq!(log.lock().unwrap()[0], "owner");
    assert_idle(&permits, 1);
}

#[tokio::test]
async fn the_known_line_cannot_starve_the_other_one() {
    let permits = FairPermits::new(1, limits(4, 64, LONG));
    let log = Log::default();
    let holder = permits.acquire(client(200)).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..8 {
        tasks.push(spawn_waiter(&permits, known(n), "known", &log));
        until_waiting(&permits, tasks.len()).await;
    }
    tasks.push(spawn_waiter(&permits, client(100), "other", &log));
    until_waiting(&permits, tasks.len()).await;
    drop(holder);
    all_served(tasks).await;
    let order = log.lock().unwrap().clone();
    let other_at = order.iter().position(|label| label == "other").unwrap();
    assert!(
        other_at < KNOWN_STREAK as usize,
        "served after {other_at} known sign-ins: {order:?}"
    );
}
