//! The users a scenario acts as, and their tasks. Users' tokens are minted by the
//! auth-service's own issuer. Tasks are seeded in bulk, straight into the task database
//! (multi-row INSERTs of the columns the repository writes, in one transaction), or through
//! the public API (CreateTask calls in parallel, as users would make them; on SQLite only
//! ~350/s, as each commit waits for the disk).

use crate::{
    cli::{Args, Seed},
    harness::progress,
    stack::{BenchUser, Stack},
    workers::{UserTasks, authed, task_client},
};
use anyhow::Context;
use chrono::{TimeDelta, Utc};
use sea_orm::{
    ConnectionTrait, TransactionTrait,
    sea_query::{Alias, Expr, Query},
};
use service_db::PoolArgs;
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};
use todo_api::todo::task::v1 as pb;
use tonic::transport::Channel;
use uuid::Uuid;

/// The users a scenario's workers act as.
#[derive(Debug, Clone, Copy)]
pub enum Users {
    /// None.
    None,
    /// One per worker (`--concurrency`), without tasks.
    PerWorker,
    /// `--users` (by default this many), without tasks.
    Minted(usize),
    /// `--users` (default `users`), each with `--tasks-per-user` (default `tasks`) tasks.
    Seeded { users: usize, tasks: usize },
}

/// The users `list` and the sign-in storm read: `--users` (default 20), each with
/// `--tasks-per-user` (default 1,000) tasks.
pub const LIST_USERS: Users = Users::Seeded {
    users: 20,
    tasks: 1000,
};

/// Makes the users `wanted` asks for and seeds their tasks (`--seed`); the service then
/// reads them back as a check.
pub async fn users(
    args: &Args,
    stack: &Stack,
    channels: &[Channel],
    wanted: Users,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<UserTasks>> {
    let (users, per_user) = match wanted {
        Users::None => return Ok(Vec::new()),
        Users::PerWorker => (args.concurrency, None),
        Users::Minted(users) => (args.users.unwrap_or(users), None),
        Users::Seeded { users, tasks } => (
            args.users.unwrap_or(users),
            Some(args.tasks_per_user.unwrap_or(tasks)),
        ),
    };
    let users = stack.mint_users(users).await?;
    let Some(per_user) = per_user else {
        let no_tasks = |user| UserTasks { user, ids: vec![] };
        return Ok(users.into_iter().map(no_tasks).collect());
    };
    progress(&format!(
        "seeding {} tasks ({} users x {per_user}), {:?}",
        users.len() * per_user,
        users.len(),
        args.seed
    ));
    // Bulk INSERTs go around the service: on SQLite its ListTasks cache counts only its own
    // writes, which is safe here because nothing lists these users before they are seeded.
    let (ids, rate) = match args.seed {
        Seed::Bulk => bulk(&stack.task_database_url, &users, per_user).await?,
        Seed::Api => through_api(channels, &users, per_user, args.concurrency).await?,
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
        let request = pb::ListTasksRequest {
            page_size: 20,
            ..Default::default()
        };
        let page = task_client(channels, 0)
            .list_tasks(authed(request, user))
            .await?
            .into_inner();
        anyhow::ensure!(
            page.tasks.len() == per_user.min(20),
            "seeded {per_user} tasks but ListTasks returned {}",
            page.tasks.len()
        );
    }
    let with_ids = |(user, ids)| UserTasks { user, ids };
    Ok(users.into_iter().zip(ids).map(with_ids).collect())
}

/// Rows per INSERT statement (10 columns each: well below SQLite's bound-variable limit).
const ROWS_PER_INSERT: usize = 500;

/// Inserts `per_user` tasks for each of `users` into the task database at `url`; returns each
/// user's task ids (oldest first) and the rate achieved (tasks/s). Every third task is
/// completed.
pub async fn bulk(
    url: &str,
    users: &[BenchUser],
    per_user: usize,
) -> anyhow::Result<(Vec<Vec<String>>, f64)> {
    let started = Instant::now();
    let pool = PoolArgs {
        database_max_connections: Some(1),
        database_acquire_timeout_secs: 30,
        // Seeding writes rows into the migrated schema; it never migrates.
        migrate_on_start: false,
    };
    let db = service_db::connect("--database-url", url, &pool).await?;
    let columns = [
        "id",
        "owner_id",
        "title",
        "description",
        "completed",
        "completed_at",
        "created_at",
        "updated_at",
        "version",
        "request_id",
    ]
    .map(Alias::new);
    let mut ids = vec![Vec::with_capacity(per_user); users.len()];
    let mut rows = Vec::with_capacity(users.len() * per_user);
    let now = Utc::now();
    for (owner, user) in users.iter().enumerate() {
        for n in 0..per_user {
            let id = Uuid::now_v7();
            ids[owner].push(id.to_string());
            let at = now - TimeDelta::milliseconds(i64::try_from(per_user - n).unwrap_or(0));
            let completed = n % 3 == 2;
            rows.push(vec![
                Expr::value(id),
                Expr::value(user.id),
                Expr::value(format!("seeded task {n}")),
                Expr::value("seeded by load-bench"),
                Expr::value(completed),
                Expr::value(completed.then_some(at)),
                Expr::value(at),
                Expr::value(at),
                Expr::value(1i64),
                Expr::value(Option::<Uuid>::None),
            ]);
        }
    }
    let txn = db.begin().await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new("tasks"))
            .columns(columns.clone());
        for row in chunk {
            insert.values(row.iter().cloned())?;
        }
        txn.execute(&insert).await?;
    }
    txn.commit().await?;
    db.close().await?;
    let rate = rows.len() as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON);
    Ok((ids, rate))
}

/// Creates `per_user` tasks for each of `users` with `parallel` CreateTask calls in flight;
/// returns each user's task ids and the rate achieved (tasks/s).
async fn through_api(
    channels: &[Channel],
    users: &[BenchUser],
    per_user: usize,
    parallel: usize,
) -> anyhow::Result<(Vec<Vec<String>>, f64)> {
    let total = users.len() * per_user;
    let users: Arc<[BenchUser]> = users.into();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for worker in 0..parallel.max(1) {
        let mut client = task_client(channels, worker);
        let users = Arc::clone(&users);
        let next = Arc::clone(&next);
        handles.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= total {
                    return Ok::<_, tonic::Status>(made);
                }
                let owner = job / per_user;
                let request = authed(
                    pb::CreateTaskRequest {
                        title: format!("seeded task {}", job % per_user),
                        description: "seeded by load-bench".into(),
                        request_id: String::new(),
                    },
                    &users[owner],
                );
                let task = client.create_task(request).await?.into_inner();
                made.push((owner, task.id));
            }
        }));
    }
    let mut ids = vec![Vec::with_capacity(per_user); users.len()];
    for handle in handles {
        for (owner, id) in handle.await?.context("seeding: CreateTask failed")? {
            ids[owner].push(id);
        }
    }
    let rate = total as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON);
    Ok((ids, rate))
}
