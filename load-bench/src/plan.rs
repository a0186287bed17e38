//! A scenario as data: the users it needs, the trivial servers it starts, its phases as
//! (name, call) pairs, the figures it derives and its notes; and the one function that runs
//! such a plan.

use crate::{
    cli::Args,
    harness::{Outcome, phases},
    load::{Phase, PhaseResult},
    mixed::Mixed,
    overhead::{self, Authentication},
    report::Derived,
    seed::{self, Users},
    stack::{BenchUser, Stack},
    workers::{
        Create, GetAuthenticated, GetTrivial, ListAndToggle, Rng, UserTasks, deal, health_checkers,
        list_walkers, task_client,
    },
};
use tonic::transport::Channel;

/// A scenario of closed-loop phases.
pub struct Plan {
    pub users: Users,
    /// Trivial servers to start, for [`Call::Trivial`].
    pub servers: &'static [Authentication],
    /// Each phase's name and what its `--concurrency` workers call.
    pub phases: &'static [(&'static str, Call)],
    /// The figures derived from the phases, in the same order.
    pub figures: fn(&Args, &[PhaseResult]) -> Vec<Derived>,
    /// A note, after those the preparation wrote.
    pub note: Option<&'static str>,
}

/// What a phase's workers call.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// grpc.health.v1 Check of the task-service: no token, no database.
    Health,
    /// GetTask of trivial server `i`, carrying a token (worker `w` acts as user `w`).
    Trivial(usize),
    /// The task-service's GetTask with a valid token and a malformed id (worker `w` acts as
    /// user `w`).
    MalformedGet,
    /// ListTasks with this page size, walking the pages of the worker's users.
    List(i32),
    /// ListTasks with this page size (first pages), and a ToggleTask after every ten.
    ListAndToggle(i32),
    /// CreateTask for the worker's users.
    Create,
    /// The `mixed` workload over the worker's users and their tasks.
    Mixed,
}

/// Where the workers of a plan send their calls, and as whom.
struct Targets {
    n: usize,
    channels: Vec<Channel>,
    trivial: Vec<Vec<Channel>>,
    servers: &'static [Authentication],
    users: Vec<BenchUser>,
    tasks: Vec<UserTasks>,
}

/// Prepares what `plan` needs, runs its phases and derives its figures.
pub async fn run(args: &Args, stack: &Stack, plan: &Plan) -> anyhow::Result<Outcome> {
    let trivial = overhead::start(stack, plan.servers, args.channels).await?;
    let channels = stack.task_channels(args.channels).await?;
    let mut notes = Vec::new();
    let tasks = seed::users(args, stack, &channels, plan.users, &mut notes).await?;
    let targets = Targets {
        n: args.concurrency,
        trivial: trivial.channels.clone(),
        servers: plan.servers,
        users: tasks.iter().map(|t| t.user.clone()).collect(),
        tasks,
        channels,
    };
    let names: Vec<&str> = plan.phases.iter().map(|&(name, _)| name).collect();
    let phases = phases(args, &names, |i, phase| {
        spawn(plan.phases[i].1, &targets, phase);
    })
    .await;
    drop(trivial);
    notes.extend(plan.note.map(str::to_owned));
    Ok(Outcome {
        derived: (plan.figures)(args, &phases),
        phases,
        notes,
    })
}

/// Adds `call`'s workers to `phase`.
fn spawn(call: Call, on: &Targets, phase: &mut Phase) {
    let n = on.n;
    match call {
        Call::Health => phase.spawn(health_checkers(&on.channels, n)),
        Call::Trivial(i) => phase.spawn((0..n).map(|w| GetTrivial {
            client: task_client(&on.trivial[i], w),
            user: on.users[w].clone(),
            authenticated: on.servers[i] != Authentication::None,
        })),
        Call::MalformedGet => phase.spawn((0..n).map(|w| GetAuthenticated {
            client: task_client(&on.channels, w),
            user: on.users[w].clone(),
        })),
        Call::List(page_size) => phase.spawn(list_walkers(&on.channels, &on.users, n, page_size)),
        Call::ListAndToggle(page_size) => phase.spawn((0..n).map(|w| ListAndToggle {
            client: task_client(&on.channels, w),
            users: deal(&on.tasks, n, w),
            page_size,
            rng: Rng::with_seed(0x1157 + w as u64),
            calls: 0,
        })),
        Call::Create => phase.spawn((0..n).map(|w| Create {
            client: task_client(&on.channels, w),
            users: deal(&on.users, n, w),
            rng: Rng::with_seed(0xc0ffee + w as u64),
            made: 0,
        })),
        Call::Mixed => phase.spawn((0..n).map(|w| Mixed {
            client: task_client(&on.channels, w),
            users: deal(&on.tasks, n, w),
            rng: Rng::with_seed(0xabc + w as u64),
            made: 0,
        })),
    }
}
