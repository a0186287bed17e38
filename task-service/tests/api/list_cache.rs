//! The ListTasks cache (LIST_CACHE_BYTES) over real gRPC.
//!
//! Correctness: writers and readers of the same users, at random, on several connections;
//! every page read is checked against the history of acknowledged writes: it must be exactly
//! the page of a state no older than the last write acknowledged before the read started. On
//! SQLite with clients that give up in the middle of writes; on PostgreSQL across two
//! instances, also while one instance's database connections are killed and restored.
//!
//! Bounds: what the cache holds stays within LIST_CACHE_BYTES, and one user's pages within
//! LIST_CACHE_BYTES_PER_USER, so one user reading many pages does not push out another's.

use super::helpers::*;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use task_service::config::TaskConfig;
use todo_api::todo::task::v1::{self as pb, task_service_client::TaskServiceClient};
use tonic::{Code, Status, transport::Channel};

/// A task as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    id: String,
    title: String,
    completed: bool,
    etag: String,
}

impl From<&pb::Task> for Shown {
    fn from(task: &pb::Task) -> Self {
        Self {
            id: task.id.clone(),
            title: task.title.clone(),
            completed: task.completed,
            etag: task.etag.clone(),
        }
    }
}

/// A user's tasks after some number of acknowledged writes, by id.
type State = BTreeMap<String, Shown>;

/// One list query: the filter, the page size, and the page to continue after.
#[derive(Debug, Clone)]
struct Query {
    completed: Option<bool>,
    size: usize,
    after: Option<String>,
}

/// The page `query` must answer in `state`: its tasks, and whether more follow.
fn page_of(state: &State, query: &Query) -> (Vec<Shown>, bool) {
    let mut tasks: Vec<Shown> = state
        .values()
        .rev()
        .filter(|t| query.completed.is_none_or(|c| t.completed == c))
        .filter(|t| query.after.as_ref().is_none_or(|after| t.id < *after))
        .cloned()
        .collect();
    let more = tasks.len() > query.size;
    tasks.truncate(query.size);
    (tasks, more)
}

/// A page a reader got, and the last state acknowledged before it asked.
#[derive(Debug)]
struct Read {
    user: usize,
    instance: usize,
    acknowledged: usize,
    query: Query,
    tasks: Vec<Shown>,
    more: bool,
}

/// Every user's states, one per acknowledged write (the first: before any).
#[derive(Default)]
struct Histories(Vec<Mutex<Vec<State>>>);

impl Histories {
    fn acknowledged(&self, user: usize) -> usize {
        self.0[user].lock().unwrap().len() - 1
    }

    fn latest(&self, user: usize) -> State {
        self.0[user].lock().unwrap().last().cloned().unwrap()
    }

    fn push(&self, user: usize, state: State) {
        self.0[user].lock().unwrap().push(state);
    }

    /// The reads that match no state from their last acknowledged one on: stale or wrong.
    fn stale<'a>(&self, reads: &'a [Read]) -> Vec<&'a Read> {
        reads
            .iter()
            .filter(|read| {
                let states = self.0[read.user].lock().unwrap();
                !states[read.acknowledged..]
                    .iter()
                    .any(|state| page_of(state, &read.query) == (read.tasks.clone(), read.more))
            })
            .collect()
    }
}

/// How writes are disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disturb {
    /// Nothing beyond what the run does (killed connections answer errors).
    Nothing,
    /// A third of creates, updates and deletes are given up by the client after 0-400 µs.
    GiveUp,
}

/// One call, given up after a random 0-400 µs when `give_up` (as a client with a deadline
/// does: the server sees the stream reset).
async fn call<T>(
    give_up: bool,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    if give_up {
        let after = Duration::from_micros(fastrand::u64(0..400));
        match tokio::time::timeout(after, call).await {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => Err(Status::cancelled("given up")),
        }
    } else {
        call.await.map(tonic::Response::into_inner)
    }
}

/// The task `id` as the database has it now (retried through errors); `None` once deleted.
async fn current(client: &TaskServiceClient<Channel>, token: &str, id: &str) -> Option<Shown> {
    loop {
        let request = with_bearer(pb::GetTaskRequest { id: id.into() }, token);
        match client.clone().get_task(request).await {
            Ok(task) => return Some(Shown::from(task.get_ref())),
            Err(status) if status.code() == Code::NotFound => return None,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Makes `writes` random writes of `user`'s through random `clients`, each settled
/// (retried until its outcome is known) and recorded in `histories` once acknowledged.
async fn write(
    user: usize,
    token: String,
    clients: Vec<TaskServiceClient<Channel>>,
    histories: Arc<Histories>,
    writes: usize,
    disturb: Disturb,
) {
    let mut made = 0;
    while made < writes {
        let client = &clients[fastrand::usize(..clients.len())];
        let mut state = histories.latest(user);
        let give_up = disturb == Disturb::GiveUp && fastrand::u8(0..3) == 0;
        let pick = (!state.is_empty())
            .then(|| state.keys().nth(fastrand::usize(..state.len())).cloned())
            .flatten();
        let roll = fastrand::u8(0..10);
        match (roll, pick) {
            // Create, with a request id: retried until it answers, it made the task once.
            (0..4, _) | (_, None) => {
                let request = pb::CreateTaskRequest {
                    title: format!("task {user}.{made}"),
                    request_id: uuid::Uuid::now_v7().to_string(),
                    ..Default::default()
                };
                let mut first = true;
                let task = loop {
                    let attempt = with_bearer(request.clone(), &token);
                    match call(give_up && first, client.clone().create_task(attempt)).await {
                        Ok(task) => break task,
                        Err(_) => first = false,
                    }
                };
                state.insert(task.id.clone(), Shown::from(&task));
            }
            // Update with the etag: a retry either applies it or finds it applied.
            (4..7, Some(id)) => {
                let before = state[&id].clone();
                let task = pb::Task {
                    id: id.clone(),
                    title: format!("renamed {user}.{made}"),
                    completed: fastrand::bool(),
                    etag: before.etag.clone(),
                    ..Default::default()
                };
                let mask = prost_types::FieldMask {
                    paths: vec!["title".into(), "completed".into()],
                };
                let mut first = true;
                let after = loop {
                    let attempt = with_bearer(
                        pb::UpdateTaskRequest {
                            task: Some(task.clone()),
                            update_mask: Some(mask.clone()),
                        },
                        &token,
                    );
                    match call(give_up && first, client.clone().update_task(attempt)).await {
                        Ok(task) => break Shown::from(&task),
                        // The earlier attempt was applied (this writer is the user's only one).
                        Err(status) if status.code() == Code::Aborted => {
                            break current(client, &token, &id).await.unwrap();
                        }
                        Err(_) => first = false,
                    }
                };
                state.insert(id, after);
            }
            // Toggle (never given up: it has no etag to settle it by): on an error, the task as
            // it is now says whether it was applied.
            (7..9, Some(id)) => {
                let before = state[&id].clone();
                let request = with_bearer(pb::ToggleTaskRequest { id: id.clone() }, &token);
                let after = match client.clone().toggle_task(request).await {
                    Ok(task) => Shown::from(task.get_ref()),
                    Err(_) => match current(client, &token, &id).await {
                        Some(now) if now != before => now,
                        // Not applied: nothing was acknowledged.
                        _ => continue,
                    },
                };
                state.insert(id, after);
            }
            // Delete with the etag: retried until it answers OK or NOT_FOUND, it is gone.
            (_, Some(id)) => {
                let etag = state[&id].etag.clone();
                let mut first = true;
                loop {
                    let attempt = with_bearer(
                        pb::DeleteTaskRequest {
                            id: id.clone(),
                            etag: etag.clone(),
                        },
                        &token,
                    );
                    match call(give_up && first, client.clone().delete_task(attempt)).await {
                        Ok(()) => break,
                        Err(status) if status.code() == Code::NotFound => break,
                        Err(_) => first = false,
                    }
                }
                state.remove(&id);
            }
        }
        histories.push(user, state);
        made += 1;
        // Readers get to read each state a few times (from the cache, mostly).
        tokio::time::sleep(Duration::from_millis(fastrand::u64(10..40))).await;
    }
}

/// Lists pages of random users with random queries (following a page token now and then)
/// until `done`, on its own connection to `instance`; every page answered is recorded.
async fn read(
    instance: usize,
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    histories: Arc<Histories>,
    done: Arc<AtomicBool>,
) -> Vec<Read> {
    let client = TaskServiceClient::new(channel(addr).await);
    let mut reads = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let user = fastrand::usize(..tokens.len());
        let acknowledged = histories.acknowledged(user);
        let mut query = Query {
            completed: [None, Some(false)][fastrand::usize(..2)],
            size: [3, 100][fastrand::usize(..2)],
            after: None,
        };
        let mut page_token = String::new();
        // The first page, then now and then the next one.
        for _ in 0..=usize::from(fastrand::bool()) {
            let request = with_bearer(
                pb::ListTasksRequest {
                    page_size: i32::try_from(query.size).unwrap(),
                    page_token: std::mem::take(&mut page_token),
                    completed: query.completed,
                },
                &tokens[user],
            );
            let Ok(page) = client.clone().list_tasks(request).await else {
                break;
            };
            let page = page.into_inner();
            let tasks: Vec<Shown> = page.tasks.iter().map(Shown::from).collect();
            let last = tasks.last().map(|t| t.id.clone());
            reads.push(Read {
                user,
                instance,
                acknowledged,
                query: query.clone(),
                tasks,
                more: !page.next_page_token.is_empty(),
            });
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
            query.after = last;
        }
    }
    reads
}

/// The scrape's value of `series` at `addr` (0 without metrics).
async fn metric(addr: Option<SocketAddr>, series: &str) -> f64 {
    let Some(addr) = addr else { return 0.0 };
    let (_, scrape) = test_support::http_get(addr, "/metrics").await.unwrap();
    test_support::sample(&scrape, series)
}

const HITS: &str = "task_list_cache_hits_total";

/// Writers (one per user) and readers (`readers` per instance, each on its own connection)
/// at once; while `meanwhile` runs. Panics listing every page that was stale; returns how many
/// pages were read.
async fn no_stale_page(
    instances: &[SocketAddr],
    tokens: Vec<String>,
    writes: usize,
    readers: usize,
    disturb: Disturb,
) -> usize {
    let histories = Arc::new(Histories(
        tokens
            .iter()
            .map(|_| Mutex::new(vec![State::new()]))
            .collect(),
    ));
    let tokens = Arc::new(tokens);
    let done = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for addr in instances {
        clients.push(TaskServiceClient::new(channel(*addr).await));
    }
    let mut writers = tokio::task::JoinSet::new();
    for (user, token) in tokens.iter().enumerate() {
        writers.spawn(write(
            user,
            token.clone(),
            clients.clone(),
            Arc::clone(&histories),
            writes,
            disturb,
        ));
    }
    let mut reading = tokio::task::JoinSet::new();
    for (instance, addr) in instances.iter().enumerate() {
        for _ in 0..readers {
            reading.spawn(read(
                instance,
                *addr,
                Arc::clone(&tokens),
                Arc::clone(&histories),
                Arc::clone(&done),
            ));
        }
    }
    while let Some(written) = writers.join_next().await {
        written.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    while let Some(read) = reading.join_next().await {
        reads.extend(read.unwrap());
    }
    // After the last write, a read of every user's every first page on every instance.
    for (instance, addr) in instances.iter().enumerate() {
        let client = TaskServiceClient::new(channel(*addr).await);
        for (user, token) in tokens.iter().enumerate() {
            let acknowledged = histories.acknowledged(user);
            for completed in [None, Some(true), Some(false)] {
                let query = pb::ListTasksRequest {
                    page_size: 100,
                    completed,
                    ..Default::default()
                };
                // Connections may still be being killed: an error is no answer, asked again.
                let mut attempts = 0;
                let page = loop {
                    let request = with_bearer(query.clone(), token);
                    match client.clone().list_tasks(request).await {
                        Ok(page) => break page.into_inner(),
                        Err(status) if attempts < 100 => {
                            attempts += 1;
                            eprintln!("list failed ({status}), asked again");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => panic!("no list answered in 100 attempts: {status}"),
                    }
                };
                reads.push(Read {
                    user,
                    instance,
                    acknowledged,
                    query: Query {
                        completed,
                        size: 100,
                        after: None,
                    },
                    tasks: page.tasks.iter().map(Shown::from).collect(),
                    more: !page.next_page_token.is_empty(),
                });
            }
        }
    }
    let stale = histories.stale(&reads);
    assert!(
        stale.is_empty(),
        "{} of {} pages were older than a write acknowledged before they were asked for; \
         the first, on instance {:?}: {:#?}",
        stale.len(),
        reads.len(),
        stale.first().map(|read| read.instance),
        stale.first()
    );
    reads.len()
}

async fn users(
    auth: &todo_api::todo::auth::v1::auth_service_client::AuthServiceClient<Channel>,
    n: usize,
) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(
            sign_up(auth, &format!("reader{i}@example.com"))
                .await
                .access_token,
        );
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_every_acknowledged_write_no_list_is_stale_even_when_clients_give_up_mid_write() {
    let any_port = "127.0.0.1:0".parse().unwrap();
    let stack =
        TestStack::spawn_with(|_| {}, |task| task.metrics_listen_addr = Some(any_port)).await;
    let tokens = users(&stack.auth_client, 2).await;
    let reads = no_stale_page(&[stack.task_addr], tokens, 60, 4, Disturb::GiveUp).await;
    let hits = metric(stack.task_metrics_addr, HITS).await;
    eprintln!("{reads} pages read, {hits} from the cache");
    assert!(
        hits > reads as f64 / 4.0,
        "the cache answered {hits} of {reads} pages: the test must exercise it"
    );
}

// PostgreSQL only: SQLite is one process's file, so there is no second instance to reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL=postgres://… cargo test --workspace -- --include-ignored"]
async fn across_two_instances_no_list_is_stale_while_one_loses_its_database_connections() {
    test_support::require_postgres();
    let any_port = "127.0.0.1:0".parse().unwrap();
    let metrics_on = move |c: &mut TaskConfig| c.metrics_listen_addr = Some(any_port);
    let stack = instances(1, metrics_on).await;
    // The second instance names itself to PostgreSQL, so that only its connections are killed.
    let (second, _) = start_task(
        &format!("{}?application_name={SECOND}", stack.database_url),
        stack.auth.addr,
        Arc::clone(&stack.clock),
        metrics_on,
    )
    .await;
    wait_until_serving(second.addr, "todo.task.v1.TaskService").await;
    let addrs = [stack.tasks[0].addr, second.addr];
    let tokens = users(&stack.auth_client, 4).await;

    // Once undisturbed, then (other users) while the second instance's connections are killed
    // every 200 ms.
    no_stale_page(&addrs, tokens[..2].to_vec(), 40, 3, Disturb::Nothing).await;
    let killing = Arc::new(AtomicBool::new(true));
    let killer = tokio::spawn({
        let (url, killing) = (stack.database_url.clone(), Arc::clone(&killing));
        async move {
            let mut killed = 0;
            while killing.load(Ordering::Relaxed) {
                killed += kill_connections(&url, "application_name = $1", SECOND).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            killed
        }
    });
    let reads = no_stale_page(&addrs, tokens[2..].to_vec(), 40, 3, Disturb::Nothing).await;
    killing.store(false, Ordering::Relaxed);
    let killed = killer.await.unwrap();
    eprintln!("{reads} pages read while {killed} connections of the second instance were killed");
    assert!(killed > 0, "the second instance's connections were killed");
    for running in [&stack.tasks[0], &second] {
        let hits = metric(running.metrics_addr, HITS).await;
        eprintln!("{}: {hits} pages from the cache in both runs", running.addr);
        assert!(
            hits > 20.0,
            "{} answered {hits} pages from its cache (of {reads} in the second run): the test \
             must exercise it",
            running.addr
        );
    }
}

/// What the second instance calls itself in `pg_stat_activity`.
const SECOND: &str = "list-cache-b";

/// Creates `count` tasks of `user`'s, each with a description of `bytes` bytes.
async fn tasks_of(user: &User, count: usize, bytes: usize) {
    for i in 0..count {
        user.try_create(pb::CreateTaskRequest {
            title: format!("task {i}"),
            description: "d".repeat(bytes),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

/// `user`'s first page of `size`.
async fn list(user: &User, size: i32) -> pb::ListTasksResponse {
    let request = with_bearer(
        pb::ListTasksRequest {
            page_size: size,
            ..Default::default()
        },
        &user.token,
    );
    user.tasks
        .clone()
        .list_tasks(request)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_holds_at_most_its_bytes_and_one_user_cannot_push_out_another() {
    const CAPACITY: u64 = 256 * 1024;
    const SHARE: u64 = 64 * 1024;
    let any_port = "127.0.0.1:0".parse().unwrap();
    let stack = TestStack::spawn_with(
        |_| {},
        |task| {
            task.metrics_listen_addr = Some(any_port);
            task.list_cache_bytes = CAPACITY;
            task.list_cache_bytes_per_user = SHARE;
        },
    )
    .await;
    let metrics = stack.task_metrics_addr;
    let held = || metric(metrics, "task_list_cache_bytes");
    let hits = || metric(metrics, HITS);

    // An honest user's page is kept and answered again.
    let honest = stack.user("honest@example.com").await;
    tasks_of(&honest, 5, 10).await;
    let first = list(&honest, 10).await;
    assert_eq!(list(&honest, 10).await, first);
    assert_eq!(hits().await, 1.0);

    // One user reading 40 different pages of large tasks holds at most their share, and the
    // honest user's page stays.
    let greedy = stack.user("greedy@example.com").await;
    tasks_of(&greedy, 30, 1000).await;
    for size in 1..=40 {
        list(&greedy, size).await;
        assert!(held().await <= CAPACITY as f64);
    }
    let share_evictions = r#"task_list_cache_evictions_total{reason="user_share"}"#;
    assert!(metric(metrics, share_evictions).await > 0.0);
    assert!(
        held().await <= (SHARE + 8 * 1024) as f64,
        "the greedy user's pages and the honest user's"
    );
    assert_eq!(list(&honest, 10).await, first);
    assert_eq!(hits().await, 2.0, "the honest user's page was still kept");

    // Many users with large pages: the least recently used go, the bytes stay within the
    // capacity, the last user's page is answered again.
    let mut many = Vec::new();
    for i in 0..12 {
        let user = stack.user(&format!("many{i}@example.com")).await;
        tasks_of(&user, 10, 3000).await;
        list(&user, 10).await;
        assert!(held().await <= CAPACITY as f64);
        many.push(user);
    }
    let capacity_evictions = r#"task_list_cache_evictions_total{reason="capacity"}"#;
    assert!(metric(metrics, capacity_evictions).await > 0.0);
    assert!(
        held().await > (CAPACITY / 2) as f64,
        "the cache is used up to its bound"
    );
    let before = hits().await;
    list(many.last().unwrap(), 10).await;
    assert_eq!(hits().await, before + 1.0);
    // The first of them was pushed out: read again, a miss.
    list(&many[0], 10).await;
    assert_eq!(hits().await, before + 1.0);
}

/// ListTasks over grpc-web (HTTP/1.1, binary), as a browser calls it: the reply's message and
/// its trailers.
async fn list_over_grpc_web(addr: SocketAddr, token: &str) -> (pb::ListTasksResponse, String) {
    use prost::Message;
    let message = pb::ListTasksRequest {
        page_size: 100,
        ..Default::default()
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    let method = "todo.task.v1.TaskService/ListTasks";
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let response = grpc_web_over_http1(addr, method, &bearer, &body).await;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&response[..split]).to_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    let mut rest = &response[split + 4..];
    // The body, unchunked.
    let mut body = Vec::new();
    if headers.contains("transfer-encoding: chunked") {
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap(), 16).unwrap();
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    } else {
        body.extend_from_slice(rest);
    }
    // grpc-web frames: a flag (0x80: trailers), a big-endian length, the payload.
    let (mut page, mut trailers) = (None, String::new());
    let mut frames = &body[..];
    while frames.len() >= 5 {
        let len = u32::from_be_bytes([frames[1], frames[2], frames[3], frames[4]]) as usize;
        let payload = &frames[5..5 + len];
        if frames[0] & 0x80 == 0 {
            page = Some(pb::ListTasksResponse::decode(payload).unwrap());
        } else {
            trailers = String::from_utf8_lossy(payload).to_lowercase();
        }
        frames = &frames[5 + len..];
    }
    (page.expect("a message"), trailers)
}

#[tokio::test]
async fn a_page_from_the_cache_is_the_same_over_grpc_and_grpc_web() {
    let any_port = "127.0.0.1:0".parse().unwrap();
    let stack =
        TestStack::spawn_with(|_| {}, |task| task.metrics_listen_addr = Some(any_port)).await;
    let ada = stack.user("ada@example.com").await;
    tasks_of(&ada, 3, 100).await;
    let native = list(&ada, 100).await;
    assert_eq!(native.tasks.len(), 3);
    for _ in 0..2 {
        let (web, trailers) = list_over_grpc_web(stack.task_addr, &ada.token).await;
        assert_eq!(web, native);
        assert!(trailers.contains("grpc-status:0"), "{trailers}");
    }
    assert_eq!(list(&ada, 100).await, native);
    assert_eq!(metric(stack.task_metrics_addr, HITS).await, 3.0);
}
