//! `scale`: many idle HTTP/2 connections to the task-service, and what they cost in memory.
//!
//! The connections are opened by a child process (this binary, `scale-client`), so this
//! process holds only the server side of each connection: its RSS growth is the services'
//! cost, not the clients'. Each connection makes one health check (so the server has served
//! it) and then stays open, idle.

use crate::{
    cli::Args,
    harness::{Outcome, progress},
    load::mib,
    report::Derived,
    stack::{Stack, endpoint},
    system,
};
use anyhow::{Context, bail};
use std::{net::SocketAddr, process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    task::JoinSet,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Descriptors kept free for everything else (database files, pools, listeners, stdio).
const SPARE_FDS: u64 = 256;
/// Connection attempts in flight at once (below the listener's backlog).
const CONNECTING_AT_ONCE: usize = 256;
/// The services' memory targets.
const IDLE_SERVICE_MAX_MIB: f64 = 30.0;
const WITH_CONNECTIONS_MAX_MIB: f64 = 200.0;
const TARGET_CONNECTIONS: usize = 10_000;

/// Opens the connections from a child process and measures this process's RSS.
pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    let mut notes = Vec::new();
    // Let start-up allocations settle, then measure the idle pair.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = system::rss_kib();
    let idle_fds = system::open_fds();

    // Both ends of every connection need a descriptor, one in each process.
    let wanted = args.connections as u64 + SPARE_FDS;
    let limit = system::raise_open_files(wanted);
    let connections = args
        .connections
        .min(usize::try_from(limit.saturating_sub(SPARE_FDS)).unwrap_or(usize::MAX));
    if connections < args.connections {
        notes.push(format!(
            "the open-files limit is {limit}: opening {connections} connections instead of {} \
             (raise `ulimit -n` for more)",
            args.connections
        ));
    } else {
        notes.push(format!(
            "open-files limit {limit} (raised as needed) allows all {connections} connections"
        ));
    }

    progress(&format!(
        "opening {connections} idle connections from a child process"
    ));
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("scale-client")
        .arg("--target")
        .arg(stack.task_addr.to_string())
        .arg("--connections")
        .arg(connections.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the scale-client process")?;
    let stdout = child.stdout.take().context("no stdout from scale-client")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
        .await
        .context("scale-client did not get its connections up within 5 minutes")??
        .context("scale-client exited early")?;
    let fields: Vec<u64> = ready
        .strip_prefix("ready ")
        .context("unexpected scale-client output")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [opened, failed, client_rss_kib] = fields[..] else {
        bail!("unexpected scale-client output {ready:?}");
    };

    // Idle: give the server a moment, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_kib = system::rss_kib();
    let with_fds = system::open_fds();
    let peak_kib = system::peak_rss_kib();

    // Still serving? One health check on a fresh connection.
    let mut health = HealthClient::new(endpoint(stack.task_addr)?.connect().await?);
    let started = std::time::Instant::now();
    health
        .check(HealthCheckRequest {
            service: "todo.task.v1.TaskService".into(),
        })
        .await?;
    let check_ms = started.elapsed().as_secs_f64() * 1000.0;

    if let Some(mut stdin) = child.stdin.take() {
        stdin.shutdown().await.ok();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kib = system::rss_kib();

    let opened_usize = usize::try_from(opened).unwrap_or(usize::MAX);
    let per_connection_kib = if opened > 0 {
        with_kib.saturating_sub(idle_kib) as f64 / opened as f64
    } else {
        0.0
    };
    let memory = stack.memory;
    let mut derived = vec![
        Derived::at_most(
            "auth-service idle (RSS growth while it started)",
            memory.auth_mib(),
            "MiB",
            IDLE_SERVICE_MAX_MIB,
        ),
        Derived::at_most(
            "task-service idle (RSS growth while it started)",
            memory.task_mib(),
            "MiB",
            IDLE_SERVICE_MAX_MIB,
        ),
        Derived::info(
            "process idle, both services + runtime",
            mib(idle_kib),
            "MiB",
        ),
        Derived::info("connections opened", opened as f64, ""),
        Derived::info("connections failed", failed as f64, ""),
        Derived::info(
            "server-side descriptors added",
            with_fds.saturating_sub(idle_fds) as f64,
            "",
        ),
        Derived::info(
            "RSS per idle connection (server side)",
            per_connection_kib,
            "KiB",
        ),
    ];
    let label = format!("process RSS with {opened} idle connections (both services)");
    if opened_usize >= TARGET_CONNECTIONS {
        derived.push(Derived::at_most(
            label,
            mib(with_kib),
            "MiB",
            WITH_CONNECTIONS_MAX_MIB,
        ));
    } else {
        derived.push(Derived::info(label, mib(with_kib), "MiB"));
        let extrapolated = mib(idle_kib) + per_connection_kib * TARGET_CONNECTIONS as f64 / 1024.0;
        derived.push(Derived::at_most(
            "process RSS at 10,000 connections (extrapolated)",
            extrapolated,
            "MiB",
            WITH_CONNECTIONS_MAX_MIB,
        ));
    }
    derived.extend([
        Derived::info("process peak RSS (VmHWM)", mib(peak_kib), "MiB"),
        Derived::info(
            "health check latency with the connections open",
            check_ms,
            "ms",
        ),
        Derived::info(
            "process RSS after the connections closed",
            mib(after_kib),
            "MiB",
        ),
        Derived::info(
            "client process RSS (scale-client, not counted above)",
            mib(client_rss_kib),
            "MiB",
        ),
    ]);
    notes.push(
        "both services run in this one process; the per-service idle figures are the RSS growth \
         while each started (build, migrate, serve, first health check), the rest is the \
         process total, which the clients (a separate process) are not part of"
            .into(),
    );
    Ok(Outcome {
        phases: vec![],
        derived,
        notes,
    })
}

/// The child: opens the connections, makes one health check on each, reports
/// `ready <opened> <failed> <rss KiB>` and holds them until its stdin closes.
pub async fn client_main(args: &Args) -> anyhow::Result<()> {
    let target: SocketAddr = args
        .target
        .as_deref()
        .context("scale-client needs --target")?
        .parse()?;
    let total = args.connections;
    let mut set = JoinSet::new();
    let mut channels = Vec::with_capacity(total);
    let mut failed = 0u64;
    let mut launched = 0;
    while launched < total || !set.is_empty() {
        while launched < total && set.len() < CONNECTING_AT_ONCE {
            launched += 1;
            let endpoint = endpoint(target)?;
            set.spawn(async move {
                let channel = endpoint.connect().await?;
                HealthClient::new(channel.clone())
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
                Ok::<_, anyhow::Error>(channel)
            });
        }
        match set.join_next().await {
            Some(Ok(Ok(channel))) => channels.push(channel),
            Some(Ok(Err(_)) | Err(_)) => failed += 1,
            None => {}
        }
        if (channels.len() + failed as usize).is_multiple_of(2000) {
            eprintln!(
                "load-bench scale-client: {} connected, {failed} failed",
                channels.len()
            );
        }
    }
    println!("ready {} {failed} {}", channels.len(), system::rss_kib());
    // Hold the connections until the parent closes our stdin.
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await.ok();
    drop(channels);
    Ok(())
}
