//! `sign-in-storm`: SignIn at high concurrency (argon2id on the blocking pool, at most
//! `MAX_CONCURRENT_HASHES` at once) while ListTasks runs, against each alone.

use crate::{
    cli::Args,
    harness::{Outcome, phases, progress},
    load::{Phase, mib},
    report::Derived,
    seed::{self, LIST_USERS},
    stack::{BenchUser, Stack},
    system,
    workers::{Rng, SignIn, channel, list_walkers},
};
use std::time::{Duration, Instant};
use todo_api::{
    todo::auth::v1::SignUpRequest, todo::auth::v1::auth_service_client::AuthServiceClient,
};
use tonic::transport::Channel;

const STORM_PASSWORD: &str = "correct horse battery staple";
const STORM_ACCOUNTS: usize = 32;

pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<Outcome> {
    let channels = stack.task_channels(args.channels).await?;
    let auth_channels = stack.auth_channels(args.channels).await?;
    let mut notes = Vec::new();
    let users: Vec<BenchUser> = seed::users(args, stack, &channels, LIST_USERS, &mut notes)
        .await?
        .into_iter()
        .map(|u| u.user)
        .collect();
    let before_sign_ups = system::rss_kib();
    let emails = sign_up_accounts(&auth_channels, STORM_ACCOUNTS).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_sign_ups = system::rss_kib();

    // The sign-in ceiling: permits / one hash's time, measured here on a quiet process.
    let passwords = &stack.auth_config.passwords;
    let permits = passwords.concurrent_hashes();
    let hash_s = one_hash_seconds(passwords).await?;
    let ceiling = permits as f64 / hash_s;

    let n = args.concurrency;
    let s = args.signin_concurrency;
    let sign_ins = |phase: &mut Phase| {
        phase.spawn((0..s).map(|w| SignIn {
            client: AuthServiceClient::new(channel(&auth_channels, w)),
            emails: emails.clone(),
            password: STORM_PASSWORD.into(),
            rng: Rng::with_seed(0x516e + w as u64),
        }));
    };
    let names = [
        "ListTasks alone",
        "SignIn alone",
        "storm: ListTasks + SignIn",
    ];
    let lists = |phase: &mut Phase| {
        let walkers = list_walkers(&channels, &users, n, 20);
        match args.list_rate {
            0 => phase.spawn(walkers),
            rate => phase.spawn_paced(walkers, Duration::from_secs(n as u64) / rate),
        }
    };
    let phases = phases(args, &names, |i, phase| match i {
        0 => lists(phase),
        1 => sign_ins(phase),
        _ => {
            lists(phase);
            sign_ins(phase);
        }
    })
    .await;
    let alone = phases[0].op("list");
    let storm_list = phases[2].op("list");
    let storm_sign_in = phases[2].op("sign_in");
    let derived = vec![
        Derived::info(
            format!("process RSS before the {STORM_ACCOUNTS} sign-ups"),
            mib(before_sign_ups),
            "MiB",
        ),
        Derived::info(
            format!("process RSS 1 s after the {STORM_ACCOUNTS} sign-ups"),
            mib(after_sign_ups),
            "MiB",
        ),
        Derived::info(
            "one password hash as the service makes it (median of 9, quiet)",
            hash_s * 1000.0,
            "ms",
        ),
        Derived::info("concurrent hashes allowed", permits as f64, ""),
        Derived::info("ceiling = permits / hash time", ceiling, "/s"),
        Derived::info(
            "SignIn alone / ceiling",
            phases[1].op("sign_in").rps / ceiling,
            "ratio",
        ),
        Derived::at_least(
            "SignIn during storm / ceiling",
            storm_sign_in.rps / ceiling,
            "ratio",
            0.9,
        ),
        Derived::at_most(
            "ListTasks p99 during storm / alone",
            storm_list.p99_ms / alone.p99_ms.max(f64::EPSILON),
            "ratio",
            2.0,
        ),
        Derived::info(
            "ListTasks throughput during storm / alone",
            storm_list.rps / alone.rps.max(f64::EPSILON),
            "ratio",
        ),
    ];
    let list_load = match args.list_rate {
        0 => format!("{n} ListTasks calls in flight (closed loop)"),
        rate => format!("ListTasks at {rate}/s (open loop, {n} workers)"),
    };
    notes.push(format!(
        "throttling disabled (THROTTLE_DISABLED); {s} SignIn calls in flight over {STORM_ACCOUNTS} \
         accounts, besides {list_load}"
    ));
    Ok(Outcome {
        phases,
        derived,
        notes,
    })
}

/// Signs up `n` accounts with [`STORM_PASSWORD`]; returns their emails.
async fn sign_up_accounts(channels: &[Channel], n: usize) -> anyhow::Result<Vec<String>> {
    progress(&format!("signing up {n} accounts"));
    let emails: Vec<String> = (0..n)
        .map(|i| format!("storm{i}@load-bench.invalid"))
        .collect();
    let mut handles = Vec::new();
    for (i, email) in emails.iter().enumerate() {
        let mut client = AuthServiceClient::new(channel(channels, i));
        let request = SignUpRequest {
            email: email.clone(),
            password: STORM_PASSWORD.into(),
            display_name: None,
        };
        handles.push(tokio::spawn(async move { client.sign_up(request).await }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(emails)
}

/// The median time of nine password hashes made one after another the way the auth-service
/// makes them (its `PasswordHasher`, with these parameters, its working memory warm), seconds.
async fn one_hash_seconds(passwords: &auth_service::config::PasswordArgs) -> anyhow::Result<f64> {
    use auth_service::internals::{Password, PasswordHasher};
    let hasher = PasswordHasher::new(passwords)?;
    let mut violations = grpc_edge::violations::FieldViolations::new();
    let password = Password::parse_new(STORM_PASSWORD.into(), "password", &mut violations)
        .ok_or_else(|| anyhow::anyhow!("the storm password is not a valid password"))?;
    for _ in 0..2 {
        hasher.hash(password.clone()).await?;
    }
    let mut times = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        hasher.hash(password.clone()).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times
        .get(4)
        .copied()
        .unwrap_or(Duration::ZERO)
        .as_secs_f64())
}
