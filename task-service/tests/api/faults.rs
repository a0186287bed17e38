//! Faults under load: every acknowledged write survives, the calls that met the fault are
//! told to retry, and the service recovers by itself.

use crate::helpers::*;
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tonic::Code;

// PostgreSQL only: a SQLite database is a file in this process, with no server to drop its
// connections. Reported as ignored on SQLite; the PostgreSQL run includes it (README).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL=postgres://… cargo test --workspace -- --include-ignored"]
async fn acknowledged_creates_survive_the_database_dropping_every_connection_mid_load() {
    test_support::require_postgres();
    let stack = TestStack::spawn().await;
    let user = Arc::new(stack.user("writer@example.com").await);

    // 8 writers create tasks in a loop; each keeps the ids it was answered and the codes of
    // the calls that failed.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let (user, stop) = (user.clone(), stop.clone());
        writers.spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match user.try_create(new_task(&format!("w{writer}-{n}"))).await {
                    Ok(task) => acknowledged.push(task.id),
                    Err(status) => failed.push(status.code()),
                }
            }
            (acknowledged, failed)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut closed = 0;
    for _ in 0..3 {
        closed += test_support::drop_every_connection(&stack.database_url).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    while let Some(result) = writers.join_next().await {
        let (a, f) = result.unwrap();
        acknowledged.extend(a);
        failed.extend(f);
    }
    println!(
        "{closed} connections closed; {} creates acknowledged, {} refused: {failed:?}",
        acknowledged.len(),
        failed.len()
    );
    assert!(closed > 0, "the fault reached the service's connections");
    assert!(
        failed.iter().all(|code| *code == Code::Unavailable),
        "a call that met the fault is told to retry (UNAVAILABLE), never INTERNAL: {failed:?}"
    );

    // The service recovered by itself, and every acknowledged task is there. A create whose
    // answer was lost with its connection may be stored too, but never more than those.
    user.create("after the fault").await;
    let stored: HashSet<String> = user.all_ids().await.into_iter().collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(stored.len() <= acknowledged.len() + failed.len() + 1);
}
