//! Both services started in this process through their own `Application::build`/`run`, on
//! fresh databases, with connected clients and a way to mint users' access tokens.

use crate::{
    cli::{Args, Signing},
    databases::Databases,
    system,
};
use anyhow::Context;
use auth_service::{
    config::{AuthConfig, SigningMode},
    internals::{Rules, SigningKeys, Subject, TokenIssuer},
};
use chrono::Utc;
use clap::Parser;
use clock::{SharedClock, SystemClock};
use serde::Serialize;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use task_service::config::TaskConfig;
use todo_stack::StackError;
use tokio::{
    runtime::{Handle, Runtime},
    sync::watch,
    task::JoinHandle,
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::{Channel, Endpoint},
};
use uuid::Uuid;

/// A user of the task-service: an id and a bearer token signed by the auth-service's key.
#[derive(Clone)]
pub struct BenchUser {
    pub id: Uuid,
    pub bearer: MetadataValue<Ascii>,
}

/// Process memory while the services start, MiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StartupMemory {
    /// Before either service (the load generator's runtime only).
    pub baseline_mib: f64,
    /// After the auth-service was built (database migrated, keys loaded, listener bound).
    pub with_auth_mib: f64,
    /// After the task-service was built too and both reported SERVING.
    pub with_both_mib: f64,
}

impl StartupMemory {
    /// The auth-service's share: RSS growth while it started.
    pub fn auth_mib(&self) -> f64 {
        self.with_auth_mib - self.baseline_mib
    }

    /// The task-service's share.
    pub fn task_mib(&self) -> f64 {
        self.with_both_mib - self.with_auth_mib
    }
}

/// What to change in the services' default configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `THROTTLE_DISABLED`.
    pub throttle_disabled: bool,
}

/// The running pair.
pub struct Stack {
    pub task_addr: SocketAddr,
    pub auth_addr: SocketAddr,
    pub auth_config: AuthConfig,
    pub memory: StartupMemory,
    /// A description of the databases, for the report.
    pub database: String,
    /// The task-service's database (for bulk seeding).
    pub task_database_url: String,
    auth_rules: Rules,
    issuer: TokenIssuer,
    stop: watch::Sender<bool>,
    running: JoinHandle<Result<(), StackError>>,
    databases: Databases,
    /// With `--trace`: the services' span export, and the receiver it exports to.
    tracing: Option<(
        grpc_edge::telemetry::Telemetry,
        test_support::otlp::Received,
    )>,
    runtime: ServiceRuntime,
}

/// The services' own tokio runtime, apart from the load generator's, as they would be in
/// their own processes; its threads are not named [`system::CLIENT_THREAD`], so the
/// services' CPU time is told apart from the load generator's.
struct ServiceRuntime {
    handle: Handle,
    /// Taken only by `drop`.
    runtime: Option<Runtime>,
}

impl ServiceRuntime {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("services")
            .enable_all()
            .build()
            .context("cannot start the services' runtime")?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for ServiceRuntime {
    /// Without waiting: a runtime must not block while dropped inside another one.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Stack {
    /// Creates the databases, starts the auth-service, then the task-service pointed at it,
    /// and waits until both report SERVING (the task-service once it has the keys).
    pub async fn start(args: &Args, options: Options) -> anyhow::Result<Self> {
        let databases = Databases::create(args.database_url.as_deref()).await?;
        let (stop, stopped) = watch::channel(false);
        let runtime = ServiceRuntime::new()?;
        // Installed on the services' runtime, where the exporter then runs (its CPU is
        // theirs); the receiver runs on the load generator's.
        let tracing = if args.trace {
            let (addr, received) = test_support::otlp::receiver().await?;
            let url = format!("http://{addr}");
            let telemetry = runtime
                .handle
                .spawn(async move {
                    grpc_edge::telemetry::init_exporting_to(
                        "load-bench",
                        grpc_edge::settings::LogFormat::Text,
                        &url,
                    )
                })
                .await?;
            anyhow::ensure!(
                grpc_edge::telemetry::tracing_enabled(),
                "--trace: the span exporter could not be installed"
            );
            Some((telemetry, received))
        } else {
            None
        };
        let starting = start_services(args.signing, options, settings(&databases), stopped);
        let started = runtime
            .handle
            .spawn(starting)
            .await
            .unwrap_or_else(|panicked| Err(anyhow::anyhow!("{panicked}")));
        match started {
            Ok(started) => Ok(Self {
                task_addr: started.task_addr,
                auth_addr: started.auth_addr,
                memory: started.memory,
                database: databases.description.clone(),
                task_database_url: databases.task_url.clone(),
                auth_config: started.auth_config,
                auth_rules: started.auth_rules,
                issuer: started.issuer,
                stop,
                running: started.running,
                databases,
                tracing,
                runtime,
            }),
            Err(error) => {
                let _ = stop.send(true);
                if let Err(cleanup) = databases.drop_all().await {
                    eprintln!("load-bench: cleaning up the databases failed: {cleanup:#}");
                }
                Err(error)
            }
        }
    }

    /// `n` users with access tokens signed by the auth-service's current key, through its
    /// own [`TokenIssuer`] (what SignIn would return, without an argon2 hash per user).
    pub async fn mint_users(&self, n: usize) -> anyhow::Result<Vec<BenchUser>> {
        let now = Utc::now();
        let keys: Arc<SigningKeys> = self.auth_rules.keys.current(now).await?;
        let kid = keys.signing_kid().to_owned();
        (0..n)
            .map(|i| {
                let id = Uuid::now_v7();
                let email = format!("user{i}@load-bench.invalid");
                let subject = Subject {
                    user_id: id,
                    email: &email,
                    session_id: Uuid::now_v7(),
                };
                let token = self
                    .issuer
                    .sign(&keys, &kid, subject, Uuid::now_v7(), now)?;
                let bearer = format!("Bearer {}", token.token).parse()?;
                Ok(BenchUser { id, bearer })
            })
            .collect()
    }

    /// `n` client connections to the task-service.
    pub async fn task_channels(&self, n: usize) -> anyhow::Result<Vec<Channel>> {
        channels(self.task_addr, n).await
    }

    /// `n` client connections to the auth-service.
    pub async fn auth_channels(&self, n: usize) -> anyhow::Result<Vec<Channel>> {
        channels(self.auth_addr, n).await
    }

    /// Runs `future` on the services' runtime (for servers a scenario adds).
    pub fn spawn_service<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.handle.spawn(future)
    }

    /// Stops both services (task-service first) and drops the databases.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some((telemetry, received)) = self.tracing {
            telemetry.shutdown().await;
            crate::harness::progress(&format!(
                "--trace: {} spans received over OTLP",
                received.spans().len()
            ));
        }
        let _ = self.stop.send(true);
        let running = self.running.await;
        let cleanup = self.databases.drop_all().await;
        running??;
        cleanup
    }
}

/// What [`start_services`] started.
struct Started {
    task_addr: SocketAddr,
    auth_addr: SocketAddr,
    auth_config: AuthConfig,
    memory: StartupMemory,
    auth_rules: Rules,
    issuer: TokenIssuer,
    running: JoinHandle<Result<(), StackError>>,
}

/// What the services are started with from the databases made for them.
struct DatabaseSettings {
    auth_url: String,
    task_url: String,
    shared_secret: access_token::SecretString,
}

fn settings(databases: &Databases) -> DatabaseSettings {
    DatabaseSettings {
        auth_url: databases.auth_url.clone(),
        task_url: databases.task_url.clone(),
        shared_secret: databases.shared_secret.clone(),
    }
}

async fn start_services(
    signing: Signing,
    options: Options,
    databases: DatabaseSettings,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<Started> {
    let clock: SharedClock = Arc::new(SystemClock);
    let baseline = system::rss_kib();

    // The services' own settings from the environment (e.g. MAX_CONCURRENT_HASHES=2), as
    // BENCHMARKS.md's commands set them; the addresses and databases are the benchmark's.
    let mut auth_config = AuthConfig::parse_from(["auth-service"]);
    auth_config.listen_addr = loopback();
    auth_config.database_url = databases.auth_url.clone();
    let mut task_config = TaskConfig::parse_from(["task-service"]);
    task_config.listen_addr = loopback();
    task_config.database_url = databases.task_url.clone();
    // Every simulated user calls from this one address: give it the whole hashing queue, or
    // the fair per-address bound (HASH_QUEUE_PER_CLIENT) would refuse the storm's burst.
    auth_config.passwords.hash_queue_per_client = auth_config.passwords.hash_queue_max;
    auth_config.throttle.throttle_signup_max_per_address = u32::MAX;
    // And every connection (`scale` opens 10,000 from 127.0.0.1): one client's share of the
    // connections (MAX_CONNECTIONS_PER_CLIENT) is all of them here.
    // So are the watch streams (`watch` opens 1,000 over a few connections).
    for server in [&mut auth_config.server, &mut task_config.server] {
        let limits = &mut server.connections;
        limits.max_connections_per_client = limits.max_connections;
        limits.max_watch_streams_per_client = limits.max_watch_streams;
        limits.max_watch_streams_per_connection = limits.max_watch_streams;
    }
    for jwt in [&mut auth_config.tokens.jwt, &mut task_config.jwt] {
        jwt.signing_algorithm = match signing {
            Signing::Hs256 => SigningMode::Hs256,
            Signing::Eddsa => SigningMode::EdDsa,
        };
        jwt.shared_secret = Some(databases.shared_secret.clone());
    }
    auth_config.throttle.throttle_disabled = options.throttle_disabled;
    auth_config.server.shutdown_drain_secs = 1;
    task_config.server.shutdown_drain_secs = 1;

    let half = todo_stack::Stack::build_auth(auth_config.clone(), clock.clone())
        .await
        .context("auth-service did not start")?;
    let with_auth = system::rss_kib();
    let stack = half
        .with_task(task_config, clock)
        .await
        .context("task-service did not start")?;
    let (auth_addr, task_addr) = (stack.auth_addr(), stack.task_addr());
    let auth_rules = stack.auth_rules();
    let running = tokio::spawn(stack.run(when_told(stopped)));
    wait_until_serving(auth_addr, "todo.auth.v1.AuthService").await?;
    wait_until_serving(task_addr, "todo.task.v1.TaskService").await?;
    let with_both = system::rss_kib();

    let issuer = auth_rules.sessions.issuer().clone();
    Ok(Started {
        task_addr,
        auth_addr,
        memory: StartupMemory {
            baseline_mib: crate::load::mib(baseline),
            with_auth_mib: crate::load::mib(with_auth),
            with_both_mib: crate::load::mib(with_both),
        },
        auth_config,
        auth_rules,
        issuer,
        running,
    })
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn when_told(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// `n` eagerly connected HTTP/2 connections to `addr`.
pub async fn channels(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        out.push(endpoint(addr)?.connect().await?);
    }
    Ok(out)
}

/// The client settings every connection uses.
pub fn endpoint(addr: SocketAddr) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10)))
}

/// Waits until `addr` reports `service` SERVING (at most 30 s).
pub async fn wait_until_serving(addr: SocketAddr, service: &str) -> anyhow::Result<()> {
    todo_stack::wait_until_serving(addr, service, Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)
}
