//! load-bench: starts the auth-service and the task-service in this process, on fresh
//! databases, and measures them under load over gRPC. See BENCHMARKS.md at the repository
//! root for the scenarios, the targets and the figures measured.

mod cli;
mod databases;
mod deep;
mod harness;
mod load;
mod mixed;
mod overhead;
mod plan;
mod report;
mod scale;
mod scenarios;
mod seed;
mod stack;
mod storm;
mod system;
mod watch;
mod workers;

use crate::{
    cli::{Args, Scenario},
    report::{Machine, Report},
};
use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// mimalloc, as the task-service and launcher binaries (the auth-service binary keeps glibc's:
/// see its main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    if matches.value_source("channels") == Some(ValueSource::DefaultValue) {
        args.channels = args.scenario.default_channels();
    }
    // Warnings and errors only (RUST_LOG overrides): the services' per-RPC info lines would
    // otherwise be a large part of what is measured, and would bury the results.
    // With --trace the services' telemetry (logs at RUST_LOG, spans to a receiver) is
    // installed instead, once their runtime is up (stack.rs).
    if !args.trace {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .init();
    }
    // The load generator's runtime; the services get their own (`stack.rs`), so each side's
    // CPU time can be measured.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(system::CLIENT_THREAD)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(&args)),
        Err(error) => Err(anyhow::anyhow!("cannot start a tokio runtime: {error}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if args.scenario == Scenario::ScaleClient {
        return scale::client_main(args).await;
    }
    if args.concurrency == 0 || args.channels == 0 || args.duration.is_zero() {
        anyhow::bail!("--concurrency, --channels and --duration must be greater than 0");
    }
    let mut report = Report {
        scenario: args.scenario.name(),
        signing: format!("{:?}", args.signing).to_lowercase(),
        database: String::new(),
        concurrency: args.concurrency,
        channels: args.channels,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        rounds: args.rounds.max(1),
        machine: Machine::now(),
        startup_memory: None,
        phases: Vec::new(),
        derived: Vec::new(),
        notes: Vec::new(),
    };
    scenarios::run(args, &mut report).await?;
    if args.json {
        eprint!("{}", report.table());
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
