//! `list-deep`: ListTasks one call at a time (latency, not throughput) for a user with 100
//! tasks and a user with 100,000: page 1 of each, and page 500 of the large one. Pages are
//! keyset pages (the token names the last id seen and the query is `owner_id = ? AND id < ?
//! ORDER BY id DESC`), so a deep page should cost what the first page of a small user does.

use crate::{
    harness::{Outcome, progress},
    report::Derived,
    seed,
    stack::{BenchUser, Stack},
    workers::{authed, task_client},
};
use std::time::Instant;
use todo_api::todo::task::v1 as pb;
use tonic::transport::Channel;

/// Tasks of the small and the large user.
const SMALL: usize = 100;
const LARGE: usize = 100_000;
/// The deep page measured (with 100 tasks a page).
const DEEP_PAGE: usize = 500;
/// Calls measured per case, after as many unmeasured ones.
const CALLS: usize = 300;

/// Seeds the two users, then times each case in turn.
pub async fn run(stack: &Stack) -> anyhow::Result<Outcome> {
    let channels = stack.task_channels(1).await?;
    let users = stack.mint_users(2).await?;
    let (small, large) = (&users[0], &users[1]);
    progress(&format!("seeding {SMALL} and {LARGE} tasks"));
    seed::bulk(&stack.task_database_url, std::slice::from_ref(small), SMALL).await?;
    seed::bulk(&stack.task_database_url, std::slice::from_ref(large), LARGE).await?;

    // The token of page DEEP_PAGE, found by walking the pages before it.
    let mut deep_token = String::new();
    for _ in 1..DEEP_PAGE {
        deep_token = list(&channels, large, deep_token).await?.next_page_token;
        anyhow::ensure!(!deep_token.is_empty(), "the large user ran out of pages");
    }
    let cases = [
        ("page 1, user with 100 tasks", small, String::new()),
        ("page 1, user with 100,000 tasks", large, String::new()),
        ("page 500, user with 100,000 tasks", large, deep_token),
    ];
    let mut p50 = Vec::new();
    let mut derived = Vec::new();
    for (name, user, token) in &cases {
        let mut micros = Vec::with_capacity(CALLS);
        for i in 0..2 * CALLS {
            let started = Instant::now();
            let page = list(&channels, user, token.clone()).await?;
            anyhow::ensure!(
                page.tasks.len() == 100,
                "{name}: a page of {}",
                page.tasks.len()
            );
            if i >= CALLS {
                micros.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
        p50.push(at(0.5));
        derived.push(Derived::info(format!("{name}: p50"), at(0.5) / 1e3, "ms"));
        derived.push(Derived::info(format!("{name}: p99"), at(0.99) / 1e3, "ms"));
    }
    derived.push(Derived::at_most(
        "page 1 of 100,000 / page 1 of 100 (p50)",
        p50[1] / p50[0],
        "ratio",
        1.5,
    ));
    derived.push(Derived::at_most(
        "page 500 of 100,000 / page 1 of 100 (p50)",
        p50[2] / p50[0],
        "ratio",
        1.5,
    ));
    Ok(Outcome {
        phases: Vec::new(),
        derived,
        notes: vec![format!(
            "one call at a time on one connection, page_size 100; {CALLS} measured calls per \
             case after {CALLS} unmeasured"
        )],
    })
}

async fn list(
    channels: &[Channel],
    user: &BenchUser,
    page_token: String,
) -> anyhow::Result<pb::ListTasksResponse> {
    let request = pb::ListTasksRequest {
        page_size: 100,
        page_token,
        completed: None,
    };
    Ok(task_client(channels, 0)
        .list_tasks(authed(request, user))
        .await?
        .into_inner())
}
