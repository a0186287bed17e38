//! WatchTasks over real gRPC: what watchers see (their own changes, in commit order, on every
//! connection), resuming (nothing lost, nothing repeated), the races that could skip a change,
//! the ends of a stream (history swept, token expired, shutdown, account deleted), and its
//! limits. On PostgreSQL also across two task-service instances on one database, through the
//! NOTIFY wake-ups, with the listener's connection killed mid-run.

use super::helpers::*;
use std::{collections::HashSet, time::Duration};
use task_service::config::TaskConfig;
use todo_api::todo::task::v1::{
    self as pb, task_change::Kind, task_service_client::TaskServiceClient,
};
use tokio::time::timeout;
use tonic::{Code, Streaming, transport::Channel};

/// An open WatchTasks stream and the token of the last message it delivered.
struct Watcher {
    stream: Streaming<pb::WatchTasksResponse>,
    token: String,
    /// Changes of the first message, not yet taken.
    pending: Vec<Seen>,
}

/// One change as a watcher saw it: kind, task id, and the task's etag (empty for a delete).
type Seen = (Kind, String, String);

fn seen(change: &pb::TaskChange) -> Seen {
    (
        change.kind(),
        change.task_id.clone(),
        change
            .task
            .as_ref()
            .map(|t| t.etag.clone())
            .unwrap_or_default(),
    )
}

async fn watch(
    client: &TaskServiceClient<Channel>,
    token: &str,
    resume: &str,
) -> Result<Watcher, tonic::Status> {
    let request = with_bearer(
        pb::WatchTasksRequest {
            resume_token: resume.into(),
        },
        token,
    );
    let mut stream = client.clone().watch_tasks(request).await?.into_inner();
    // The first message comes at once, changes or not.
    let first = timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the first message comes at once")?
        .expect("a first message");
    Ok(Watcher {
        stream,
        token: first.resume_token.clone(),
        pending: first.changes.iter().map(seen).collect(),
    })
}

impl Watcher {
    /// The next `n` changes (heartbeats skipped), within `within`.
    async fn changes(&mut self, n: usize, within: Duration) -> Vec<Seen> {
        let mut out: Vec<Seen> = std::mem::take(&mut self.pending);
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < n {
            let message = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .unwrap_or_else(|_| panic!("{} of {n} changes arrived in time", out.len()))
                .expect("the stream stays open")
                .expect("the stream does not end");
            self.token = message.resume_token.clone();
            out.extend(message.changes.iter().map(seen));
        }
        assert_eq!(out.len(), n, "no more changes than were made: {out:?}");
        out
    }

    /// How the stream ends (skipping any changes and heartbeats before), within `within`.
    async fn end(&mut self, within: Duration) -> tonic::Status {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .expect("the stream ends in time")
            {
                Ok(Some(message)) => self.token = message.resume_token,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    }

    /// Nothing arrives within `quiet` but heartbeats.
    async fn quiet(&mut self, quiet: Duration) {
        assert!(self.pending.is_empty(), "{:?}", self.pending);
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(message) = tokio::time::timeout_at(deadline, self.stream.message()).await {
            let message = message.expect("open").expect("not ended");
            assert!(message.changes.is_empty(), "{:?}", message.changes);
        }
    }
}

/// Asserts `status`'s code and reason.
#[track_caller]
fn assert_refused(status: &tonic::Status, code: Code, reason: &str) {
    assert_error::<()>(Err(status.clone()), code, reason);
}

/// The first page's resume token.
async fn list_token(user: &User) -> String {
    user.list(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .resume_token
}

#[tokio::test]
async fn two_watchers_of_a_user_see_the_same_changes_in_order_and_no_one_else_sees_them() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    let bob = stack.user("bob@example.com").await;
    // Three connections: two watchers and the writer.
    let other = TaskServiceClient::new(channel(stack.task_addr).await);
    let mut first = watch(&stack.tasks, &ada.token, "").await.unwrap();
    let mut second = watch(&other, &ada.token, "").await.unwrap();
    let mut bobs = watch(&stack.tasks, &bob.token, "").await.unwrap();
    let writer = User {
        tasks: TaskServiceClient::new(channel(stack.task_addr).await),
        ..ada.clone()
    };

    let task = writer.create("watched").await;
    let mut renamed = task.clone();
    renamed.title = "renamed".into();
    let renamed = writer.update(renamed, &["title"]).await.unwrap();
    let toggled = writer.toggle(&task.id).await.unwrap();
    writer.delete(&task.id, "").await.unwrap();

    let expected = vec![
        (Kind::Created, task.id.clone(), task.etag.clone()),
        (Kind::Updated, task.id.clone(), renamed.etag.clone()),
        (Kind::Updated, task.id.clone(), toggled.etag.clone()),
        (Kind::Deleted, task.id.clone(), String::new()),
    ];
    let within = Duration::from_secs(2);
    assert_eq!(first.changes(4, within).await, expected);
    assert_eq!(second.changes(4, within).await, expected);
    assert_eq!(
        first.token, second.token,
        "the same position after the same changes"
    );
    bobs.quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_change_carries_the_task_as_it_was_left() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    let mut watcher = watch(&stack.tasks, &ada.token, "").await.unwrap();
    let task = ada.create("with everything").await;
    let done = ada.toggle(&task.id).await.unwrap();
    let message = loop {
        let message = watcher.stream.message().await.unwrap().unwrap();
        if !message.changes.is_empty() {
            break message;
        }
    };
    let mut changes = message.changes;
    if changes.len() < 2 {
        let more = watcher.stream.message().await.unwrap().unwrap();
        changes.extend(more.changes);
    }
    assert_eq!(changes[0].task.as_ref(), Some(&task));
    assert_eq!(changes[1].task.as_ref(), Some(&done));
    assert!(changes[1].change_time.is_some());
}

#[tokio::test]
async fn resuming_from_the_last_token_loses_nothing_and_repeats_nothing() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    // List, then watch from the list's token: the changes made in between are delivered.
    let listed = list_token(&ada).await;
    let early = ada.create("between the list and the watch").await;
    let mut watcher = watch(&stack.tasks, &ada.token, &listed).await.unwrap();
    let got = watcher.changes(1, Duration::from_secs(2)).await;
    assert_eq!(got[0].1, early.id);

    let a = ada.create("a").await;
    assert_eq!(watcher.changes(1, Duration::from_secs(2)).await[0].1, a.id);
    let resume = watcher.token.clone();
    drop(watcher);
    // Made while no one watched.
    let mut missed = Vec::new();
    for title in ["b", "c", "d"] {
        missed.push(ada.create(title).await.id);
    }
    let mut resumed = watch(&stack.tasks, &ada.token, &resume).await.unwrap();
    let got: Vec<String> = resumed
        .changes(3, Duration::from_secs(2))
        .await
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(got, missed);
    resumed.quiet(Duration::from_millis(300)).await;
    // The same token twice gives the same changes again (a client that did not apply them).
    let mut again = watch(&stack.tasks, &ada.token, &resume).await.unwrap();
    assert_eq!(again.changes(3, Duration::from_secs(2)).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_user_never_make_a_watcher_skip_a_change() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    let mut watcher = watch(&stack.tasks, &ada.token, "").await.unwrap();
    // Two writers on their own connections, each creating then toggling, many rounds: their
    // commits interleave, and on PostgreSQL their positions are taken concurrently.
    const ROUNDS: usize = 60;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..2 {
        let writer = User {
            tasks: TaskServiceClient::new(channel(stack.task_addr).await),
            ..ada.clone()
        };
        writers.spawn(async move {
            let mut ids = Vec::new();
            for round in 0..ROUNDS {
                let task = writer.create(&format!("w{w}-{round}")).await;
                writer.toggle(&task.id).await.unwrap();
                ids.push(task.id);
            }
            ids
        });
    }
    let mut made = HashSet::new();
    while let Some(ids) = writers.join_next().await {
        made.extend(ids.unwrap());
    }
    let seen = watcher.changes(4 * ROUNDS, Duration::from_secs(20)).await;
    let created: HashSet<String> = seen
        .iter()
        .filter(|(kind, ..)| *kind == Kind::Created)
        .map(|(_, id, _)| id.clone())
        .collect();
    assert_eq!(created, made, "every create was seen");
    // Each task: created before it was toggled, each once.
    for id in &made {
        let of_task: Vec<Kind> = seen
            .iter()
            .filter(|(_, task, _)| task == id)
            .map(|(kind, ..)| *kind)
            .collect();
        assert_eq!(of_task, [Kind::Created, Kind::Updated], "{id}");
    }
    // And a resume from the start gives the same sequence.
    let mut replay = watch(&stack.tasks, &ada.token, &encode_position(0))
        .await
        .unwrap();
    assert_eq!(
        replay.changes(4 * ROUNDS, Duration::from_secs(20)).await,
        seen
    );
}

/// The token of a position (resume tokens are a version byte and a big-endian position).
fn encode_position(position: i64) -> String {
    use base64::Engine;
    let mut bytes = vec![1_u8];
    bytes.extend(position.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn a_token_older_than_the_history_or_unknown_is_told_to_relist_and_garbage_is_invalid() {
    let stack = TestStack::spawn_with(|_| {}, |task| task.watch.watch_retained_changes = 5).await;
    let ada = stack.user("ada@example.com").await;
    let start = list_token(&ada).await;
    let task = ada.create("churn").await;
    // Enough changes to sweep the oldest: 5 kept, trimmed in batches of 64.
    for _ in 0..80 {
        ada.toggle(&task.id).await.unwrap();
    }
    let expired = watch(&stack.tasks, &ada.token, &start).await.err().unwrap();
    assert_refused(&expired, Code::FailedPrecondition, "RESUME_TOKEN_EXPIRED");
    assert!(
        expired.message().contains("ListTasks"),
        "{}",
        expired.message()
    );
    // A token from the future (another database): the same answer.
    let ahead = watch(&stack.tasks, &ada.token, &encode_position(10_000))
        .await
        .err()
        .unwrap();
    assert_refused(&ahead, Code::FailedPrecondition, "RESUME_TOKEN_EXPIRED");
    // Re-listing gives a token that works.
    let fresh = list_token(&ada).await;
    let mut watcher = watch(&stack.tasks, &ada.token, &fresh).await.unwrap();
    ada.toggle(&task.id).await.unwrap();
    assert_eq!(watcher.changes(1, Duration::from_secs(2)).await.len(), 1);
    for garbage in ["not a token", "AQ", &encode_position(-1)] {
        let refused = watch(&stack.tasks, &ada.token, garbage)
            .await
            .err()
            .unwrap();
        assert_refused(&refused, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&refused), ["resume_token"]);
    }
}

#[tokio::test]
async fn a_watcher_that_stops_reading_is_not_buffered_for_and_is_told_to_relist_once_behind_the_history()
 {
    let stack = TestStack::spawn_with(|_| {}, |task| task.watch.watch_retained_changes = 10).await;
    let ada = stack.user("ada@example.com").await;
    // A client with small HTTP/2 windows that stops reading after the first message.
    let small = Channel::from_shared(format!("http://{}", stack.task_addr))
        .unwrap()
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(64 * 1024))
        .connect()
        .await
        .unwrap();
    let mut slow = watch(&TaskServiceClient::new(small), &ada.token, "")
        .await
        .unwrap();
    // 200 changes of 9 KB each: 1.8 MB, far past the 64 KiB windows and the 10 (+64) kept.
    let big = "x".repeat(9_000);
    for i in 0..200 {
        ada.try_create(pb::CreateTaskRequest {
            title: format!("big {i}"),
            description: big.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // Reading again: what was already on its way arrives in order, then the stream ends with
    // the status that says to list again (nothing silently skipped).
    let mut delivered = 0;
    let status = loop {
        match timeout(Duration::from_secs(10), slow.stream.message())
            .await
            .expect("the stream moves")
        {
            Ok(Some(message)) => delivered += message.changes.len(),
            Ok(None) => panic!("ended without a status"),
            Err(status) => break status,
        }
    };
    assert_refused(&status, Code::FailedPrecondition, "RESUME_TOKEN_EXPIRED");
    assert!(
        delivered < 200,
        "{delivered} changes were sent before it fell behind"
    );
    // It lists again and watches on.
    let fresh = list_token(&ada).await;
    let mut watcher = watch(&stack.tasks, &ada.token, &fresh).await.unwrap();
    ada.create("after").await;
    assert_eq!(watcher.changes(1, Duration::from_secs(2)).await.len(), 1);
}

#[tokio::test]
async fn a_stream_ends_unauthenticated_when_its_token_expires_and_resumes_with_a_new_one() {
    let stack = TestStack::spawn_with(|_| {}, |task| task.watch.watch_poll_secs = 1).await;
    let ada = stack.user("ada@example.com").await;
    let mut watcher = watch(&stack.tasks, &ada.token, "").await.unwrap();
    ada.create("before expiry").await;
    watcher.changes(1, Duration::from_secs(2)).await;
    // The access token's lifetime (15 minutes) passes, by less than JWT_LEEWAY_SECS (30 s).
    stack.advance(15 * 60 + 5);
    let status = watcher.end(Duration::from_secs(5)).await;
    assert_refused(&status, Code::Unauthenticated, "INVALID_TOKEN");
    // Within the leeway other calls still take the token, but a new stream, which would end
    // at once, is refused before it starts.
    ada.list(pb::ListTasksRequest::default()).await.unwrap();
    let refused = watch(&stack.tasks, &ada.token, &watcher.token)
        .await
        .err()
        .unwrap();
    assert_refused(&refused, Code::Unauthenticated, "INVALID_TOKEN");
    // Refresh, then resume: the change made meanwhile is there.
    let refreshed = test_support::sign_in(stack.auth_client.clone(), "ada@example.com")
        .await
        .unwrap();
    let fresh = User {
        token: refreshed.tokens.unwrap().access_token,
        ..ada.clone()
    };
    let meanwhile = fresh.create("while refreshing").await;
    let mut resumed = watch(&stack.tasks, &fresh.token, &watcher.token)
        .await
        .unwrap();
    assert_eq!(
        resumed.changes(1, Duration::from_secs(2)).await[0].1,
        meanwhile.id
    );
}

#[tokio::test]
async fn streams_end_with_shutting_down_when_the_server_stops_and_are_not_cut_by_the_request_timeout()
 {
    let mut stack = instances(1, |c: &mut TaskConfig| {
        c.server.request_timeout_secs = 1;
        c.server.shutdown_drain_secs = 30;
    })
    .await;
    let tokens = sign_up(&stack.auth_client, "ada@example.com").await;
    let task = stack.tasks.remove(0);
    let ada = User {
        token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        tasks: TaskServiceClient::new(channel(task.addr).await),
    };
    let mut watcher = watch(&ada.tasks, &ada.token, "").await.unwrap();
    // Past REQUEST_TIMEOUT_SECS the stream is still open and delivers.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ada.create("after the request timeout").await;
    watcher.changes(1, Duration::from_secs(2)).await;
    // Shutdown ends it at once with a status to resume on, not after the 30 s drain.
    let started = std::time::Instant::now();
    drop(task);
    let status = watcher.end(Duration::from_secs(5)).await;
    assert_refused(&status, Code::Unavailable, "SHUTTING_DOWN");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_user_may_hold_so_many_streams_and_another_user_is_unaffected() {
    let stack = TestStack::spawn_with(|_| {}, |task| task.watch.watch_streams_per_user = 2).await;
    let ada = stack.user("ada@example.com").await;
    let bob = stack.user("bob@example.com").await;
    let one = watch(&stack.tasks, &ada.token, "").await.unwrap();
    let _two = watch(&stack.tasks, &ada.token, "").await.unwrap();
    let refused = watch(&stack.tasks, &ada.token, "").await.err().unwrap();
    assert_refused(&refused, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    assert!(
        refused.message().contains("WATCH_STREAMS_PER_USER=2"),
        "{}",
        refused.message()
    );
    let _bobs = watch(&stack.tasks, &bob.token, "").await.unwrap();
    // Closing one frees its place.
    drop(one);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match watch(&stack.tasks, &ada.token, "").await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the freed place is not given back: {status:?}"),
        }
    }
}

#[tokio::test]
async fn deleting_the_account_ends_its_streams_and_erases_its_change_log() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    let mut watcher = watch(&stack.tasks, &ada.token, "").await.unwrap();
    ada.create("private").await;
    watcher.changes(1, Duration::from_secs(2)).await;
    let owner = user_id_of(&ada.token);
    assert_eq!(task_changes_of(&stack.database_url, &owner).await, 1);
    let request = todo_api::todo::auth::v1::DeleteAccountRequest {
        current_password: PASSWORD.into(),
    };
    stack
        .auth_client
        .clone()
        .delete_account(with_bearer(request, &ada.token))
        .await
        .unwrap();
    let status = watcher.end(Duration::from_secs(15)).await;
    assert_refused(&status, Code::Unauthenticated, "INVALID_TOKEN");
    // The streams end first; the purge then deletes the tasks and the change log, which holds
    // the tasks' contents too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = (
            tasks_of(&stack.database_url, &owner).await,
            task_changes_of(&stack.database_url, &owner).await,
        );
        if left == (0, 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks and changes left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many change-log rows `owner` has (any database: the id is bound, not spelled).
async fn task_changes_of(url: &str, owner: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Sqlite => {
            "SELECT COUNT(*) AS n FROM task_changes WHERE owner_id = ?"
        }
        _ => "SELECT COUNT(*) AS n FROM task_changes WHERE owner_id = $1",
    };
    let owner = uuid::Uuid::parse_str(owner).unwrap();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [owner.into()]))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    let _ = db.close().await;
    n
}

// PostgreSQL only: SQLite is one process's file, so there is no second instance to reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL=postgres://… cargo test --workspace -- --include-ignored"]
async fn a_change_made_through_one_instance_reaches_a_watcher_on_the_other_even_after_its_listener_is_killed()
 {
    test_support::require_postgres();
    // A re-read timer far longer than the test: only the NOTIFY wake-ups can deliver in time.
    let stack = instances(2, |c| c.watch.watch_poll_secs = 3600).await;
    let tokens = sign_up(&stack.auth_client, "ada@example.com").await;
    let on = |addr| async move { TaskServiceClient::new(channel(addr).await) };
    let writer = User {
        token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        tasks: on(stack.tasks[1].addr).await,
    };
    let mut watcher = watch(&on(stack.tasks[0].addr).await, &tokens.access_token, "")
        .await
        .unwrap();
    let mut latencies = Vec::new();
    let mut made = Vec::new();
    for round in 0..60 {
        if round == 30 {
            // Mid-run: every listener's connection is killed; the change made right after
            // must still arrive (the reconnect wakes every stream).
            assert!(kill_connections(&stack.database_url, "query ILIKE $1", "LISTEN%").await >= 1);
        }
        let started = std::time::Instant::now();
        let task = writer.create(&format!("round {round}")).await;
        let got = watcher.changes(1, Duration::from_secs(5)).await;
        latencies.push(started.elapsed());
        assert_eq!(got[0].1, task.id, "round {round}");
        made.push(task.id);
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    // Nothing missed across the kill: a replay from the start on the other instance.
    let mut replay = watch(
        &on(stack.tasks[1].addr).await,
        &tokens.access_token,
        &encode_position(0),
    )
    .await
    .unwrap();
    let replayed: Vec<String> = replay
        .changes(60, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(replayed, made);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL=postgres://… cargo test --workspace -- --include-ignored"]
async fn writers_on_two_instances_interleave_and_watchers_on_both_see_one_order() {
    test_support::require_postgres();
    let stack = instances(2, |_| {}).await;
    let tokens = sign_up(&stack.auth_client, "ada@example.com").await;
    let mut watchers = Vec::new();
    for addr in [stack.tasks[0].addr, stack.tasks[1].addr] {
        let client = TaskServiceClient::new(channel(addr).await);
        watchers.push(watch(&client, &tokens.access_token, "").await.unwrap());
    }
    const ROUNDS: usize = 50;
    let mut writers = tokio::task::JoinSet::new();
    for addr in [stack.tasks[0].addr, stack.tasks[1].addr] {
        let writer = User {
            token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            tasks: TaskServiceClient::new(channel(addr).await),
        };
        writers.spawn(async move {
            for round in 0..ROUNDS {
                writer.create(&format!("{addr} {round}")).await;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let on_a = watchers[0]
        .changes(2 * ROUNDS, Duration::from_secs(10))
        .await;
    let on_b = watchers[1]
        .changes(2 * ROUNDS, Duration::from_secs(10))
        .await;
    assert_eq!(on_a, on_b, "one order, the commit order, on both instances");
    let unique: HashSet<&String> = on_a.iter().map(|(_, id, _)| id).collect();
    assert_eq!(unique.len(), 2 * ROUNDS);
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeats_with_the_latest_token() {
    let stack = TestStack::spawn_with(|_| {}, |task| task.watch.watch_heartbeat_secs = 1).await;
    let ada = stack.user("ada@example.com").await;
    let mut watcher = watch(&stack.tasks, &ada.token, "").await.unwrap();
    ada.create("one").await;
    watcher.changes(1, Duration::from_secs(2)).await;
    let latest = watcher.token.clone();
    for _ in 0..2 {
        let beat = timeout(Duration::from_secs(3), watcher.stream.message())
            .await
            .expect("a heartbeat within the interval")
            .unwrap()
            .unwrap();
        assert!(beat.changes.is_empty());
        assert_eq!(beat.resume_token, latest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_stuck_watchers_hold_is_charged_to_their_unread_budget_and_never_crowds_out_others() {
    let stack = TestStack::spawn_with(
        |_| {},
        |task| {
            task.max_unread_bytes = 2 * 1024 * 1024;
            task.max_unread_bytes_per_user = 2 * 1024 * 1024;
            task.watch.watch_streams_per_user = 128;
            task.server.connections.max_watch_streams_per_client = 128;
        },
    )
    .await;
    let ada = stack.user("ada@example.com").await;
    let bob = stack.user("bob@example.com").await;
    // 96 watchers, each on a connection with small windows, none reading after its first
    // message: each is made to hold one message of a 30 KB change, 2.8 MB in all, past the
    // 2 MiB Ada may have unread.
    let mut stuck = Vec::new();
    for _ in 0..96 {
        let small = Channel::from_shared(format!("http://{}", stack.task_addr))
            .unwrap()
            .initial_stream_window_size(Some(1024))
            .initial_connection_window_size(Some(1024))
            .connect()
            .await
            .unwrap();
        stuck.push(
            watch(&TaskServiceClient::new(small), &ada.token, "")
                .await
                .unwrap(),
        );
    }
    // Three bytes a character, 10,000 characters: the largest description. Once her stuck
    // streams hold her budget, her own calls are refused too (the same budget).
    let big = "€".repeat(10_000);
    let mut refused = 0;
    let mut made = 0;
    for i in 0..3 {
        let create = ada
            .try_create(pb::CreateTaskRequest {
                title: format!("big {i}"),
                description: big.clone(),
                ..Default::default()
            })
            .await;
        match create {
            Ok(_) => made += 1,
            Err(status) => {
                assert_refused(&status, Code::ResourceExhausted, "TOO_MANY_UNREAD_REPLIES");
                refused += 1;
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Another user is still served: the service's budget makes room from the biggest holder.
    bob.list(pb::ListTasksRequest::default()).await.unwrap();
    // Reading now: some of Ada's streams were refused a message past her budget (and end with
    // a status that says so, resumable from their last token); none lost a change unsaid.
    for watcher in &mut stuck {
        let mut delivered = 0;
        loop {
            match timeout(Duration::from_secs(5), watcher.stream.message()).await {
                Err(_) => break,
                Ok(Ok(Some(message))) => delivered += message.changes.len(),
                Ok(Ok(None)) => panic!("ended without a status"),
                Ok(Err(status)) => {
                    if status.code() == Code::ResourceExhausted {
                        assert_refused(&status, Code::ResourceExhausted, "TOO_MANY_UNREAD_REPLIES");
                        refused += 1;
                    }
                    break;
                }
            }
            if delivered == made {
                break;
            }
        }
    }
    assert!(refused > 0, "2.8 MB held for Ada past her 2 MiB");
}
