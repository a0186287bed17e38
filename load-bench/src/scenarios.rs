//! The scenarios. Those that only run closed-loop phases and derive figures from them are
//! [`Plan`]s, below; `sign-in-storm` and `scale` measure more and have their own modules.

use crate::{
    cli::{Args, Scenario, Signing},
    deep,
    harness::progress,
    load::{OpStats, PhaseResult},
    overhead::Authentication,
    plan::{self, Call, Plan},
    report::{Derived, Report},
    scale,
    seed::{LIST_USERS, Users},
    stack::{Options, Stack},
    storm, watch,
};

/// Runs `args.scenario` on a freshly started pair of services.
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
        Scenario::Empty => plan::run(args, &stack, &EMPTY).await,
        Scenario::AuthOverhead => plan::run(args, &stack, &AUTH_OVERHEAD).await,
        Scenario::TelemetryOverhead => plan::run(args, &stack, &TELEMETRY_OVERHEAD).await,
        Scenario::List => plan::run(args, &stack, &LIST).await,
        Scenario::List100 => plan::run(args, &stack, &LIST100).await,
        Scenario::List100Writes => plan::run(args, &stack, &LIST100_WRITES).await,
        Scenario::ListDeep => deep::run(&stack).await,
        Scenario::Create => plan::run(args, &stack, &CREATE).await,
        Scenario::Mixed => plan::run(args, &stack, &MIXED).await,
        Scenario::SignInStorm => storm::run(args, &stack).await,
        Scenario::Scale => scale::run(args, &stack).await,
        Scenario::Watch => watch::run(args, &stack).await,
        Scenario::ScaleClient => Err(anyhow::anyhow!(
            "scale-client is run by the scale scenario itself"
        )),
    };
    let stopped = stack.stop().await;
    let outcome = result?;
    stopped?;
    report.phases = outcome.phases;
    report.derived = outcome.derived;
    report.notes.extend(outcome.notes);
    Ok(())
}

/// CPU time per call of phase `phase`, as two figures: the whole process's (services +
/// client), and the services' alone (the load generator's threads apart).
fn cpu(name: &str, phase: &PhaseResult) -> [Derived; 2] {
    [
        Derived::info(
            format!("{name}: CPU per call (services + client)"),
            phase.cpu_us_per_call(),
            "µs",
        ),
        Derived::info(
            format!("{name}: the services' CPU per call"),
            phase.services_cpu_us_per_call(),
            "µs",
        ),
    ]
}

/// `empty`: the floor.
const EMPTY: Plan = Plan {
    users: Users::None,
    servers: &[],
    phases: &[("health", Call::Health)],
    figures: |_, p| cpu("health", &p[0]).into(),
    note: None,
};

/// `auth-overhead`: the same trivial call with and without the task-service's authentication.
const AUTH_OVERHEAD: Plan = Plan {
    users: Users::PerWorker,
    servers: &[
        Authentication::None,
        Authentication::Interceptor { cache: 10_000 },
        Authentication::Interceptor { cache: 0 },
    ],
    phases: &[
        ("trivial GetTask, no authentication", Call::Trivial(0)),
        (
            "trivial GetTask, interceptor (verified-token cache)",
            Call::Trivial(1),
        ),
        ("trivial GetTask, interceptor, cache off", Call::Trivial(2)),
        (
            "task-service GetTask, token, malformed id",
            Call::MalformedGet,
        ),
    ],
    figures: auth_overhead_figures,
    note: Some(
        "The trivial server is a TaskService whose GetTask answers at once, served by the \
         services' own GrpcServer; the authenticated ones put the task-service's KeyRefresh \
         layer and Authenticate interceptor in front of it, exactly as the task-service does. \
         Every call carries the same user's token. The last phase is the real task-service \
         (the handler refuses the malformed id before any database work).",
    ),
};

fn auth_overhead_figures(args: &Args, p: &[PhaseResult]) -> Vec<Derived> {
    let rps = |i: usize| p[i].total.rps;
    let min = match args.signing {
        Signing::Hs256 => 0.95,
        Signing::Eddsa => 0.85,
    };
    let ratios = [
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
    let cpus = p.iter().flat_map(|p| cpu(&p.name, p));
    ratios.into_iter().chain(cpus).collect()
}

/// `telemetry-overhead`: what the metrics cost an authenticated trivial call (issue 25: at
/// most 3% of its CPU), and with `--trace` what exporting its spans costs.
const TELEMETRY_OVERHEAD: Plan = Plan {
    users: Users::PerWorker,
    servers: &[
        Authentication::Interceptor { cache: 10_000 },
        Authentication::Metered { cache: 10_000 },
    ],
    phases: &[
        (
            "trivial GetTask, interceptor, metrics off",
            Call::Trivial(0),
        ),
        ("trivial GetTask, interceptor, metrics on", Call::Trivial(1)),
    ],
    figures: |_, p| {
        let ratios = [
            Derived::at_most(
                "the services' CPU per call, metrics on / off",
                p[1].services_cpu_us_per_call() / p[0].services_cpu_us_per_call(),
                "ratio",
                1.03,
            ),
            Derived::info(
                "throughput, metrics on / off",
                p[1].total.rps / p[0].total.rps,
                "ratio",
            ),
        ];
        let cpus = p.iter().flat_map(|p| cpu(&p.name, p));
        ratios.into_iter().chain(cpus).collect()
    },
    note: Some(
        "Two trivial servers built like the task-service (GrpcServer, KeyRefresh and the \
         Authenticate interceptor with its verified-token cache); the second records into a \
         metrics registry as with TASK_METRICS_LISTEN_ADDR set: the RPC layer's histogram and \
         in-flight gauge, and the interceptor's outcome counter. With --trace, every span of \
         both is exported over OTLP/gRPC to a receiver on the load generator's runtime.",
    ),
};

/// ListTasks against the same run's health floor, with the ListTasks cache's targets (issue
/// 26): throughput ≥ 0.35 of the floor's on SQLite, ≥ 0.20 on PostgreSQL, p99 at most 3× the
/// floor's. Ratios, not rates: absolute rates move 2x between machines.
fn against_the_floor(args: &Args, list: &OpStats, floor: &PhaseResult) -> [Derived; 2] {
    let least = if args.database_url.is_some() {
        0.20
    } else {
        0.35
    };
    [
        Derived::at_least(
            "ListTasks / health throughput",
            list.rps / floor.total.rps,
            "ratio",
            least,
        ),
        Derived::at_most(
            "ListTasks p99 / health p99",
            list.p99_ms / floor.total.p99_ms,
            "ratio",
            3.0,
        ),
    ]
}

/// `list100`: the dashboard's call, a full page of 100 tasks, against the floor
/// (issue 14's targets: SQLite ≥ 7,800/s, PostgreSQL ≥ 8,000/s, p99 ≤ 15 ms).
const LIST100: Plan = Plan {
    users: Users::Seeded {
        users: 200,
        tasks: 100,
    },
    servers: &[],
    phases: &[
        ("health (floor)", Call::Health),
        ("ListTasks page 100", Call::List(100)),
    ],
    figures: |args, p| {
        let list = p[1].op("list");
        let figures = [
            Derived::at_least("ListTasks page 100", list.rps, "calls/s", 7_800.0),
            Derived::at_most("ListTasks page 100 p99", list.p99_ms, "ms", 15.0),
        ];
        figures
            .into_iter()
            .chain(against_the_floor(args, list, &p[0]))
            .chain(cpu("ListTasks page 100", &p[1]))
            .collect()
    },
    note: Some(
        "Each of 200 users has exactly 100 tasks, so every call returns a full page (~11 KB) \
         and no next page token. The health phase is the same run's floor.",
    ),
};

/// `list100-writes`: `list100` with one write per ten reads of the same users (issue 26's
/// targets for the ListTasks cache: list / health ≥ 0.35 on SQLite, ≥ 0.20 on PostgreSQL, the
/// list's p99 at most 3× the floor's).
const LIST100_WRITES: Plan = Plan {
    users: Users::Seeded {
        users: 200,
        tasks: 100,
    },
    servers: &[],
    phases: &[
        ("health (floor)", Call::Health),
        ("ListTasks page 100 + ToggleTask", Call::ListAndToggle(100)),
    ],
    figures: |args, p| {
        let (list, toggle) = (p[1].op("list"), p[1].op("toggle"));
        let figures = [
            Derived::info("ListTasks page 100", list.rps, "calls/s"),
            Derived::info("ToggleTask", toggle.rps, "calls/s"),
        ];
        figures
            .into_iter()
            .chain(against_the_floor(args, list, &p[0]))
            .chain(cpu("ListTasks page 100 + ToggleTask", &p[1]))
            .collect()
    },
    note: Some(
        "the users of list100; each worker lists the first page (100 tasks) of a random one of \
         its users and after every ten lists toggles a random task of a random one of them",
    ),
};

/// `list`: ListTasks against the floor.
const LIST: Plan = Plan {
    users: LIST_USERS,
    servers: &[],
    phases: &[
        ("health (floor)", Call::Health),
        ("ListTasks page 20", Call::List(20)),
    ],
    figures: |_, p| {
        let list = p[1].op("list");
        let figures = [
            Derived::at_least(
                "ListTasks / health throughput",
                list.rps / p[0].total.rps,
                "ratio",
                0.4,
            ),
            Derived::at_most("ListTasks p99", list.p99_ms, "ms", 5.0),
        ];
        figures.into_iter().chain(cpu("ListTasks", &p[1])).collect()
    },
    note: Some(
        "each ListTasks call asks for the next page (page tokens) of a random one of the \
         worker's users, wrapping after the last page",
    ),
};

/// `create`: CreateTask.
const CREATE: Plan = Plan {
    users: Users::Minted(100),
    servers: &[],
    phases: &[("CreateTask", Call::Create)],
    figures: |_, p| {
        let created = p[0].op("create");
        let figures = [
            Derived::at_least("CreateTask throughput", created.rps, "/s", 2000.0),
            Derived::at_most(
                "CreateTask errors",
                created.error_count() as f64,
                "calls",
                0.0,
            ),
        ];
        figures
            .into_iter()
            .chain(cpu("CreateTask", &p[0]))
            .collect()
    },
    note: Some("the 2,000/s target is stated for PostgreSQL"),
};

/// `mixed`: reads and writes over many users.
const MIXED: Plan = Plan {
    users: Users::Seeded {
        users: 1000,
        tasks: 10,
    },
    servers: &[],
    phases: &[("mixed", Call::Mixed)],
    figures: |_, p| {
        let figures = [Derived::info("mixed throughput", p[0].total.rps, "/s")];
        figures.into_iter().chain(cpu("mixed", &p[0])).collect()
    },
    note: Some(
        "40% ListTasks (first page of 20), 40% GetTask, 5% each CreateTask, UpdateTask \
         (title, unconditional), ToggleTask, DeleteTask; each worker owns its users, so no \
         two calls race on one task",
    ),
};
