//! The scenarios: each starts the services, prepares data, runs its phases and derives the
//! figures its targets are about.

use crate::{
    cli::{Args, Scenario, Seed, Signing},
    load::{Phase, PhaseResult, RawPhase},
    mixed::{Mixed, UserTasks},
    report::{Derived, Report},
    seed,
    stack::{BenchUser, Options, Stack},
    workers::{Create, GetAuthenticated, GetTrivial, Health, ListPages, Rng, authed},
};
use shared::proto::todo::task::v1::{self as pb, task_service_client::TaskServiceClient};
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// What a scenario hands back: its phases, derived figures and notes.
#[derive(Default)]
pub struct Outcome {
    pub phases: Vec<PhaseResult>,
    pub derived: Vec<Derived>,
    pub notes: Vec<String>,
}

/// Runs `scenario` on a freshly started pair of services.
pub async fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let options = Options {
        throttle_disabled: args.scenario == Scenario::SignInStorm,
    };
    let stack = Stack::start(args, options).await?;
    report.database = stack.database.clone();
    report.startup_memory = Some(stack.memory);
    progress(&format!(
        "services up: auth-service {} task-service {} ({})",
        stack.auth_addr, stack.task_addr, stack.database
    ));
    let result = match args.scenario {
        Scenario::Empty => empty(args, &stack).await,
        Scenario::AuthOverhead => auth_overhead(args, &stack).await,
        Scenario::List => list(args, &stack).await,
        Scenario::Create => create(args, &stack).await,
        Scenario::Mixed => mixed(args, &stack).await,
        Scenario::SignInStorm => crate::storm::run(args, &stack).await,
        Scenario::Scale => crate::scale::run(args, &stack).await,
        Scenario::ScaleClient => unreachable_client(),
    };
    let stopped = stack.stop().await;
    let outcome = result?;
    stopped?;
    report.phases = outcome.phases;
    report.derived = outcome.derived;
    report.notes.extend(outcome.notes);
    Ok(())
}

fn unreachable_client() -> anyhow::Result<Outcome> {
    anyhow::bail!("scale-client is run by the scale scenario itself")
}

/// A line on stderr about what is happening.
pub fn progress(message: &str) {
    eprintln!("load-bench: {message}");
}

/// Runs the phases `names` (each `args.duration` in total), in `args.rounds` rounds of
/// alternating order; `spawn(i, phase)` adds phase `i`'s workers.
pub(crate) async fn phases(
    args: &Args,
    names: &[&str],
    mut spawn: impl FnMut(usize, &mut Phase),
) -> Vec<PhaseResult> {
    let rounds = args.rounds.max(1);
    let per_round = args.duration / rounds;
    let mut raw: Vec<RawPhase> = names.iter().map(|_| RawPhase::default()).collect();
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..names.len()).collect()
        } else {
            (0..names.len()).rev().collect()
        };
        for i in order {
            progress(&format!(
                "phase {:?} (round {}/{rounds}): {:.1}s warm-up + {:.1}s",
                names[i],
                round + 1,
                args.warmup.as_secs_f64(),
                per_round.as_secs_f64()
            ));
            let mut phase = Phase::start(args.warmup, per_round);
            spawn(i, &mut phase);
            raw[i].merge(phase.finish().await);
        }
    }
    names
        .iter()
        .zip(raw)
        .map(|(name, raw)| raw.summarise(name))
        .collect()
}

pub(crate) fn task_client(channels: &[Channel], worker: usize) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(channels[worker % channels.len()].clone())
}

fn health_workers(channels: &[Channel], n: usize) -> impl Iterator<Item = Health> + '_ {
    (0..n).map(|w| Health {
        client: HealthClient::new(channels[w % channels.len()].clone()),
    })
}

/// `users` dealt out to `workers` workers: worker `w` gets users `w`, `w + workers`, ...
pub(crate) fn deal<T: Clone>(users: &[T], workers: usize, w: usize) -> Vec<T> {
    let mine: Vec<T> = users.iter().skip(w).step_by(workers).cloned().collect();
    if mine.is_empty() {
        // More workers than users: share.
        users
            .get(w % users.len().max(1))
            .cloned()
            .into_iter()
            .collect()
    } else {
        mine
    }
}

/// CPU time one call cost the whole process (services + client), µs.
pub(crate) fn cpu_us_per_call(phase: &PhaseResult) -> f64 {
    if phase.total.rps > 0.0 {
        phase.cpu.process_pct / 100.0 * 1e6 / phase.total.rps
    } else {
        0.0
    }
}

async fn empty(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    let channels = stack.task_channels(args.channels).await?;
    let phases = phases(args, &["health"], |_, phase| {
        phase.spawn(health_workers(&channels, args.concurrency));
    })
    .await;
    let derived = vec![Derived::info(
        "health: CPU per call (services + client)",
        cpu_us_per_call(&phases[0]),
        "µs",
    )];
    Ok(Outcome {
        phases,
        derived,
        notes: vec![],
    })
}

async fn auth_overhead(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    use crate::overhead::Authentication;
    let kinds = [
        Authentication::None,
        Authentication::Interceptor { cache: 10_000 },
        Authentication::Interceptor { cache: 0 },
    ];
    let trivial = crate::overhead::start(stack, &kinds).await?;
    let mut trivial_channels = Vec::new();
    for addr in &trivial.addrs {
        trivial_channels.push(crate::stack::channels(*addr, args.channels).await?);
    }
    let channels = stack.task_channels(args.channels).await?;
    let users = stack.mint_users(args.concurrency).await?;
    let names = [
        "trivial GetTask, no authentication",
        "trivial GetTask, interceptor (verified-token cache)",
        "trivial GetTask, interceptor, cache off",
        "task-service GetTask, token, malformed id",
    ];
    let phases = phases(args, &names, |i, phase| {
        let n = args.concurrency;
        match i {
            0..=2 => phase.spawn((0..n).map(|w| GetTrivial {
                client: task_client(&trivial_channels[i], w),
                user: users[w].clone(),
                authenticated: i > 0,
            })),
            _ => phase.spawn((0..n).map(|w| GetAuthenticated {
                client: task_client(&channels, w),
                user: users[w].clone(),
            })),
        }
    })
    .await;
    drop(trivial);
    let rps = |i: usize| phases[i].total.rps;
    let min = match args.signing {
        Signing::Hs256 => 0.95,
        Signing::Eddsa => 0.85,
    };
    let mut derived = vec![
        Derived::at_least(
            "with / without the interceptor (same trivial call, same token)",
            rps(1) / rps(0),
            "ratio",
            min,
        ),
        Derived::info(
            "with the interceptor, cache off / without",
            rps(2) / rps(0),
            "ratio",
        ),
    ];
    for (i, name) in names.iter().enumerate() {
        derived.push(Derived::info(
            format!("{name}: CPU per call"),
            cpu_us_per_call(&phases[i]),
            "µs",
        ));
    }
    let notes = vec![
        "The trivial server is a TaskService whose GetTask answers at once, served by the \
         services' own GrpcServer; the authenticated ones put the task-service's KeyRefresh \
         layer and Authenticate interceptor in front of it, exactly as the task-service does. \
         Every call carries the same user's token. The last phase is the real task-service \
         (the handler refuses the malformed id before any database work)."
            .into(),
    ];
    Ok(Outcome {
        phases,
        derived,
        notes,
    })
}

/// Mints `users` users and seeds `per_user` tasks each.
pub(crate) async fn seeded_users(
    args: &Args,
    stack: &Stack,
    channels: &[Channel],
    users: usize,
    per_user: usize,
    notes: &mut Vec<String>,
) -> anyhow::Result<(Vec<BenchUser>, Vec<Vec<String>>)> {
    let users = stack.mint_users(users).await?;
    progress(&format!(
        "seeding {} tasks ({} users x {per_user}), {:?}",
        users.len() * per_user,
        users.len(),
        args.seed
    ));
    let (ids, rate) = match args.seed {
        Seed::Bulk => seed::bulk(&stack.task_database_url, &users, per_user).await?,
        Seed::Api => seed::through_api(channels, &users, per_user, args.concurrency).await?,
    };
    notes.push(format!(
        "seeded {} users x {per_user} tasks {} at {rate:.0} tasks/s",
        users.len(),
        match args.seed {
            Seed::Bulk => "with bulk INSERTs into the task database",
            Seed::Api => "through CreateTask",
        }
    ));
    // The service reads what was seeded.
    if let Some(user) = users.first() {
        let page = task_client(channels, 0)
            .list_tasks(authed(
                pb::ListTasksRequest {
                    page_size: 20,
                    ..Default::default()
                },
                user,
            ))
            .await?
            .into_inner();
        anyhow::ensure!(
            page.tasks.len() == per_user.min(20),
            "seeded {per_user} tasks but ListTasks returned {}",
            page.tasks.len()
        );
    }
    Ok((users, ids))
}

pub(crate) fn list_walkers<'a>(
    channels: &'a [Channel],
    users: &'a [BenchUser],
    n: usize,
) -> impl Iterator<Item = ListPages> + 'a {
    (0..n).map(move |w| {
        ListPages::new(
            task_client(channels, w),
            deal(users, n, w),
            0x5eed + w as u64,
        )
    })
}

/// The users `list` and the sign-in storm read: `--users` (default 20), each with
/// `--tasks-per-user` (default 1,000) tasks.
pub(crate) async fn list_users(
    args: &Args,
    stack: &Stack,
    channels: &[Channel],
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<BenchUser>> {
    let per_user = args.tasks_per_user.unwrap_or(1000);
    let (users, _) = seeded_users(
        args,
        stack,
        channels,
        args.users.unwrap_or(20),
        per_user,
        notes,
    )
    .await?;
    Ok(users)
}

async fn list(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    let channels = stack.task_channels(args.channels).await?;
    let mut notes = Vec::new();
    let users = list_users(args, stack, &channels, &mut notes).await?;
    let phases = phases(
        args,
        &["health (floor)", "ListTasks page 20"],
        |i, phase| {
            if i == 0 {
                phase.spawn(health_workers(&channels, args.concurrency));
            } else {
                phase.spawn(list_walkers(&channels, &users, args.concurrency));
            }
        },
    )
    .await;
    let list = phases[1].op("list");
    let derived = vec![
        Derived::at_least(
            "ListTasks / health throughput",
            list.rps / phases[0].total.rps,
            "ratio",
            0.4,
        ),
        Derived::at_most("ListTasks p99", list.p99_ms, "ms", 5.0),
        Derived::info("ListTasks: CPU per call", cpu_us_per_call(&phases[1]), "µs"),
    ];
    notes.push(
        "each ListTasks call asks for the next page (page tokens) of a random one of the \
         worker's users, wrapping after the last page"
            .into(),
    );
    Ok(Outcome {
        phases,
        derived,
        notes,
    })
}

async fn create(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    let channels = stack.task_channels(args.channels).await?;
    let users = stack.mint_users(args.users.unwrap_or(100)).await?;
    let n = args.concurrency;
    let phases = phases(args, &["CreateTask"], |_, phase| {
        phase.spawn((0..n).map(|w| Create {
            client: task_client(&channels, w),
            users: deal(&users, n, w),
            rng: Rng::new(0xc0ffee + w as u64),
            made: 0,
        }));
    })
    .await;
    let created = phases[0].op("create");
    let derived = vec![
        Derived::at_least("CreateTask throughput", created.rps, "/s", 2000.0),
        Derived::at_most(
            "CreateTask errors",
            created.error_count() as f64,
            "calls",
            0.0,
        ),
        Derived::info(
            "CreateTask: CPU per call",
            cpu_us_per_call(&phases[0]),
            "µs",
        ),
    ];
    Ok(Outcome {
        phases,
        derived,
        notes: vec!["the 2,000/s target is stated for PostgreSQL".into()],
    })
}

async fn mixed(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    let channels = stack.task_channels(args.channels).await?;
    let mut notes = Vec::new();
    let (users, ids) = seeded_users(
        args,
        stack,
        &channels,
        args.users.unwrap_or(1000),
        args.tasks_per_user.unwrap_or(10),
        &mut notes,
    )
    .await?;
    let all: Vec<(BenchUser, Vec<String>)> = users.into_iter().zip(ids).collect();
    let n = args.concurrency;
    let phases = phases(args, &["mixed"], |_, phase| {
        phase.spawn((0..n).map(|w| {
            Mixed {
                client: task_client(&channels, w),
                users: deal(&all, n, w)
                    .into_iter()
                    .map(|(user, ids)| UserTasks { user, ids })
                    .collect(),
                rng: Rng::new(0xabc + w as u64),
                made: 0,
            }
        }));
    })
    .await;
    let derived = vec![
        Derived::info("mixed throughput", phases[0].total.rps, "/s"),
        Derived::info("mixed: CPU per call", cpu_us_per_call(&phases[0]), "µs"),
    ];
    notes.push(
        "40% ListTasks (first page of 20), 40% GetTask, 5% each CreateTask, UpdateTask \
         (title, unconditional), ToggleTask, DeleteTask; each worker owns its users, so no \
         two calls race on one task"
            .into(),
    );
    Ok(Outcome {
        phases,
        derived,
        notes,
    })
}
