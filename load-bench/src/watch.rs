//! `watch`: open WatchTasks streams (1,000 by default: one per user, over `--channels`
//! connections) and what they cost: memory per open watcher, CPU while nothing changes, and
//! fan-out: `--concurrency` writers create tasks for random watched users at full speed, and
//! every change's latency is measured from the start of its CreateTask to its arrival at its
//! user's watcher.
//!
//! Both ends run in this process, so "memory per open watcher" is the server's and the
//! client's together: an upper bound of the server's share.

use crate::{
    cli::Args,
    harness::{Outcome, progress},
    report::Derived,
    stack::{BenchUser, Stack},
    system::{self, CpuSample},
};
use hdrhistogram::Histogram;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use todo_api::todo::task::v1::{
    CreateTaskRequest, WatchTasksRequest, task_service_client::TaskServiceClient,
};
use tokio::task::JoinSet;
use tonic::{Request, transport::Channel};

/// Watchers (and users) when `--users` is not given.
const DEFAULT_WATCHERS: usize = 1000;

/// When each change's CreateTask started, by the task's title.
type Started = Arc<Mutex<HashMap<String, Instant>>>;

fn with_bearer<T>(message: T, user: &BenchUser) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", user.bearer.clone());
    request
}

pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    let watchers = args.users.unwrap_or(DEFAULT_WATCHERS);
    let users = stack.mint_users(watchers).await?;
    let channels: Vec<Channel> = stack.task_channels(args.channels).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kib = system::rss_kib();

    progress(&format!(
        "opening {watchers} watchers over {} connections",
        channels.len()
    ));
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut streams = JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        let client = TaskServiceClient::new(channels[i % channels.len()].clone());
        let mut stream = client
            .clone()
            .watch_tasks(with_bearer(WatchTasksRequest::default(), user))
            .await?
            .into_inner();
        // The first message: the stream is open.
        stream.message().await?;
        let arrived = arrived.clone();
        streams.spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                let at = Instant::now();
                for change in message.changes {
                    let title = change.task.map(|t| t.title).unwrap_or_default();
                    if arrived.send((title, at)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with_kib = system::rss_kib();
    let per_watcher_kib = with_kib.saturating_sub(before_kib) as f64 / watchers as f64;

    progress(&format!(
        "{watchers} watchers open; idle for {:?}",
        args.duration
    ));
    let idle_from = CpuSample::now();
    tokio::time::sleep(args.duration).await;
    let idle = idle_from.until(&CpuSample::now());

    progress(&format!(
        "fan-out: {} writers creating tasks for random watched users for {:?}",
        args.concurrency, args.duration
    ));
    let started: Started = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let mut writers = JoinSet::new();
    for w in 0..args.concurrency {
        let (users, started, stop, created) = (
            users.clone(),
            Arc::clone(&started),
            Arc::clone(&stop),
            Arc::clone(&created),
        );
        let client = TaskServiceClient::new(channels[w % channels.len()].clone());
        writers.spawn(async move {
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let user = &users[fastrand::usize(..users.len())];
                let title = format!("w{w}-{n}");
                started
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(title.clone(), Instant::now());
                let request = CreateTaskRequest {
                    title,
                    ..Default::default()
                };
                if client
                    .clone()
                    .create_task(with_bearer(request, user))
                    .await
                    .is_ok()
                {
                    created.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let fan_out_from = CpuSample::now();
    let began = Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    let mut delivered = 0_u64;
    while let Ok(Some((title, at))) = tokio::time::timeout_at(deadline, arrivals.recv()).await {
        let start = started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&title);
        if let Some(start) = start {
            let micros =
                u64::try_from(at.saturating_duration_since(start).as_micros()).unwrap_or(u64::MAX);
            latency.saturating_record(micros.max(1));
            delivered += 1;
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    let fan_out = fan_out_from.until(&CpuSample::now());
    stop.store(true, Ordering::Relaxed);
    while writers.join_next().await.is_some() {}
    streams.abort_all();
    let made = created.load(Ordering::Relaxed);
    let undelivered = started.lock().unwrap_or_else(PoisonError::into_inner).len();

    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let derived = vec![
        Derived::info("open watchers", watchers as f64, ""),
        Derived::info(
            "memory per open watcher (both ends)",
            per_watcher_kib,
            "KiB",
        ),
        Derived::info(
            "idle: services' CPU, nothing changing",
            idle.services_pct,
            "% of a core",
        ),
        Derived::info(
            "fan-out: changes delivered",
            delivered as f64 / elapsed,
            "/s",
        ),
        Derived::info("fan-out: creates acknowledged", made as f64 / elapsed, "/s"),
        Derived::info(
            "fan-out: latency p50 (create start to watcher)",
            ms(0.5),
            "ms",
        ),
        Derived::info("fan-out: latency p99", ms(0.99), "ms"),
        Derived::info("fan-out: latency max", ms(1.0), "ms"),
        Derived::info(
            "fan-out: services' CPU",
            fan_out.services_pct,
            "% of a core",
        ),
    ];
    let notes = vec![
        format!(
            "{watchers} users each watching on one stream, {} per connection; every simulated \
             user calls from 127.0.0.1, so the per-client and per-connection watch-stream \
             shares are raised to the whole server's here",
            watchers.div_ceil(channels.len())
        ),
        format!(
            "{undelivered} changes made in the last moments of the phase were still on their way \
             when it ended (not counted)"
        ),
    ];
    Ok(Outcome {
        phases: Vec::new(),
        derived,
        notes,
    })
}
