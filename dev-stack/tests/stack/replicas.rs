//! Two replicas of each service on one PostgreSQL database behind nginx, configured by the
//! repository's own balancer (`deploy/nginx/render.sh` and its template, as
//! docker-compose.replicas.yml runs it), over native gRPC and grpc-web: tokens, the refresh
//! grace window, page tokens and sign-in throttling behave as with one replica, and a watcher
//! behind the balancer sees every change made on either replica within a second, across every
//! database connection being killed mid-run.
//!
//! PostgreSQL and nginx only (Debian `nginx-light`; `.ci/run` installs it): reported as
//! ignored on SQLite, and failing, never passing, when included without nginx.

use auth_service::config::AuthConfig;
use clock::SystemClock;
use prost::Message;
use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use task_service::config::TaskConfig;
use test_support::{Running, channel, with_bearer};
use todo_api::todo::{
    auth::v1::{self as auth_pb, auth_service_client::AuthServiceClient},
    task::v1::{self as pb, task_service_client::TaskServiceClient},
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tonic::{Code, transport::Channel};

/// The address nginx connects to the replicas from: the one proxy they trust.
const BALANCER_SOURCE: &str = "127.0.0.2";

/// The nginx binary, or a failure that says how to get it.
fn nginx() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("this test needs nginx: apt-get install nginx-light")
}

/// A free port on 127.0.0.1 (nginx cannot be given port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// nginx running the repository's balancer configuration; stopped when dropped.
struct Balancer {
    child: Child,
    _dir: TempDir,
    auth_grpc: SocketAddr,
    task_grpc: SocketAddr,
    task_web: SocketAddr,
}

impl Drop for Balancer {
    /// SIGTERM: the master stops its workers (SIGKILL would leave them running).
    fn drop(&mut self) {
        use nix::{sys::signal, unistd::Pid};
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Balancer {
    async fn start(auth: &[SocketAddr], task: &[SocketAddr]) -> Self {
        let dir = std::env::temp_dir().join(format!("todo-lb-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // nginx's workers (nobody, when the test runs as root) must enter the prefix.
        let _ = Command::new("chmod").arg("755").arg(&dir).status();
        let dir = TempDir(dir);
        let join = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let config = dir.0.join("nginx.conf");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let rendered = Command::new("sh")
            .arg(repo.join("deploy/nginx/render.sh"))
            .arg(&config)
            .env("AUTH_UPSTREAMS", join(auth))
            .env("TASK_UPSTREAMS", join(task))
            .env("AUTH_GRPC_PORT", ports[0].to_string())
            .env("TASK_GRPC_PORT", ports[1].to_string())
            .env("AUTH_WEB_PORT", ports[2].to_string())
            .env("TASK_WEB_PORT", ports[3].to_string())
            .env("UPSTREAM_BIND", BALANCER_SOURCE)
            .env("ACCESS_LOG", "off")
            .env("WORKER_PROCESSES", "1")
            .env("NGINX_BIN", nginx())
            .status()
            .expect("render.sh runs");
        assert!(rendered.success(), "deploy/nginx/render.sh failed");
        let prefix = format!("{}/", dir.0.display());
        let child = Command::new(nginx())
            .args(["-p", &prefix, "-c"])
            .arg(&config)
            .args(["-e", "stderr", "-g"])
            .arg(format!("pid {}/nginx.pid; daemon off;", dir.0.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("error.log")).unwrap())
            .spawn()
            .expect("nginx starts");
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let balancer = Self {
            child,
            _dir: dir,
            auth_grpc: at(ports[0]),
            task_grpc: at(ports[1]),
            task_web: at(ports[3]),
        };
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(at(*port)).await.is_err() {
                assert!(Instant::now() < deadline, "nginx listens on {port}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        balancer
    }
}

/// Two replicas of each service on one database, trusting the balancer's source address.
struct Replicas {
    database_url: String,
    auth: Vec<Running>,
    task: Vec<Running>,
}

async fn replicas() -> Replicas {
    let database_url = test_support::fresh_database_url("task_test_replicas")
        .await
        .unwrap();
    let trusted = vec![format!("{BALANCER_SOURCE}/32").parse().unwrap()];
    let clock = Arc::new(SystemClock);
    let any = "127.0.0.1:0".parse().unwrap();
    let mut auth = Vec::new();
    // One after the other: the second finds the first one's signing key in the database.
    for _ in 0..2 {
        let mut config = AuthConfig::for_database(any, &database_url);
        config.server.shutdown_drain_secs = 1;
        config.server.proxies.trusted_proxies = trusted.clone();
        let app = auth_service::Application::build(config, clock.clone())
            .await
            .unwrap();
        let running = Running::spawn(app.local_addr().unwrap(), |stop| app.run(stop));
        todo_stack::wait_until_serving(
            running.addr,
            "todo.auth.v1.AuthService",
            Duration::from_secs(15),
        )
        .await
        .unwrap();
        auth.push(running);
    }
    let mut task = Vec::new();
    // Each task-service asks its own auth-service for keys.
    for auth_replica in &auth {
        let auth_url = format!("http://{}", auth_replica.addr);
        let mut config = TaskConfig::for_database(any, &database_url, &auth_url);
        config.server.shutdown_drain_secs = 1;
        config.server.proxies.trusted_proxies = trusted.clone();
        config.page_token_secret = Some("one secret every replica shares".into());
        // Only wake-ups can deliver within the test's second.
        config.watch.watch_poll_secs = 3600;
        let app = task_service::Application::build(config, clock.clone())
            .await
            .unwrap();
        let running = Running::spawn(app.local_addr().unwrap(), |stop| app.run(stop));
        todo_stack::wait_until_serving(
            running.addr,
            "todo.task.v1.TaskService",
            Duration::from_secs(15),
        )
        .await
        .unwrap();
        task.push(running);
    }
    Replicas {
        database_url,
        auth,
        task,
    }
}

async fn auth_client(addr: SocketAddr) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(channel(addr).await)
}

async fn task_client(addr: SocketAddr) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(channel(addr).await)
}

async fn sign_in(
    addr: SocketAddr,
    email: &str,
    password: &str,
) -> Result<auth_pb::TokenPair, tonic::Status> {
    let request = auth_pb::SignInRequest {
        email: email.into(),
        password: password.into(),
    };
    let response = auth_client(addr).await.sign_in(request).await?;
    Ok(response.into_inner().tokens.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and nginx: TEST_DATABASE_URL=postgres://… cargo test --workspace -- --include-ignored"]
async fn behind_nginx_two_replicas_of_each_service_behave_as_one() {
    test_support::require_postgres();
    let stack = replicas().await;
    let addrs = |r: &[Running]| r.iter().map(|r| r.addr).collect::<Vec<_>>();
    let lb = Balancer::start(&addrs(&stack.auth), &addrs(&stack.task)).await;
    let (auth_a, auth_b) = (stack.auth[0].addr, stack.auth[1].addr);

    // Tokens: signed up through the balancer, the access token works on both task replicas.
    let signed_up = test_support::sign_up(auth_client(lb.auth_grpc).await, "ada@example.com")
        .await
        .unwrap();
    let tokens = signed_up.tokens.unwrap();
    for replica in &stack.task {
        let request = with_bearer(pb::ListTasksRequest::default(), &tokens.access_token);
        task_client(replica.addr)
            .await
            .list_tasks(request)
            .await
            .unwrap();
    }

    // The refresh grace window: the same refresh token exchanged on one replica, then retried
    // on the other within the window, gives the same new pair.
    let refresh = |addr, token: &str| {
        let request = auth_pb::RefreshRequest {
            refresh_token: token.into(),
        };
        async move { auth_client(addr).await.refresh(request).await }
    };
    let first = refresh(auth_a, &tokens.refresh_token)
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let retried = refresh(auth_b, &tokens.refresh_token)
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(first.refresh_token, retried.refresh_token);

    // Page tokens: a page listed on one replica continues on the other.
    let access = first.access_token.clone();
    let mut created = Vec::new();
    for i in 0..5 {
        let request = with_bearer(
            pb::CreateTaskRequest {
                title: format!("paged {i}"),
                ..Default::default()
            },
            &access,
        );
        let task = task_client(lb.task_grpc)
            .await
            .create_task(request)
            .await
            .unwrap();
        created.push(task.into_inner().id);
    }
    let page = |addr, token: String| {
        let request = with_bearer(
            pb::ListTasksRequest {
                page_size: 3,
                page_token: token,
                ..Default::default()
            },
            &access,
        );
        async move {
            task_client(addr)
                .await
                .list_tasks(request)
                .await
                .unwrap()
                .into_inner()
        }
    };
    let one = page(stack.task[0].addr, String::new()).await;
    let two = page(stack.task[1].addr, one.next_page_token.clone()).await;
    let listed: Vec<String> = one
        .tasks
        .iter()
        .chain(&two.tasks)
        .map(|t| t.id.clone())
        .collect();
    created.reverse();
    assert_eq!(
        listed, created,
        "every task once, newest first, across replicas"
    );

    // Throttling: failed sign-ins on both replicas and through the balancer count together
    // (the balancer forwards the client's address, which the replicas trust it to name).
    let free = AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), "sqlite::memory:")
        .throttle
        .throttle_free_attempts;
    for attempt in 0..free {
        let addr = [auth_a, auth_b, lb.auth_grpc][attempt as usize % 3];
        let status = sign_in(addr, "ada@example.com", "wrong password")
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "attempt {attempt}: {status:?}"
        );
    }
    let throttled = sign_in(lb.auth_grpc, "ada@example.com", "wrong password")
        .await
        .unwrap_err();
    assert_eq!(
        throttled.code(),
        Code::ResourceExhausted,
        "the attempt after the free ones is throttled, whichever replica saw them: {throttled:?}"
    );

    live_changes_through_the_balancer(&stack, &lb, &access).await;
    grpc_web_streams_through_the_balancer(&lb, &access).await;
}

/// A watcher behind the balancer, resuming whenever its stream ends, as a client does: every
/// change, in order, with the instant it arrived.
fn spawn_watcher(
    addr: SocketAddr,
    token: String,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Instant)> {
    let (seen, changes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut resume = String::new();
        loop {
            let request = with_bearer(
                pb::WatchTasksRequest {
                    resume_token: resume.clone(),
                },
                &token,
            );
            let Ok(response) = task_client(addr).await.watch_tasks(request).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let mut stream = response.into_inner();
            while let Ok(Some(message)) = stream.message().await {
                for change in message.changes {
                    if seen.send((change.task_id, Instant::now())).is_err() {
                        return;
                    }
                }
                resume = message.resume_token;
            }
        }
    });
    changes
}

async fn live_changes_through_the_balancer(stack: &Replicas, lb: &Balancer, access: &str) {
    let mut changes = spawn_watcher(lb.task_grpc, access.to_owned());
    // Let the watcher's stream open (its first message carries no change).
    tokio::time::sleep(Duration::from_millis(300)).await;
    const CHANGES: usize = 200;
    let mut latencies = Vec::with_capacity(CHANGES);
    let mut order = Vec::with_capacity(CHANGES);
    for n in 0..CHANGES {
        if n == CHANGES / 2 {
            // Every database connection of every replica, the listeners' too.
            assert!(test_support::drop_every_connection(&stack.database_url).await > 0);
        }
        // Made directly on each replica in turn, so half are made on the one the watcher is not
        // on; retried (idempotently) while the replicas reconnect.
        let writer = stack.task[n % 2].addr;
        let request_id = uuid::Uuid::now_v7().to_string();
        let started = Instant::now();
        let id = loop {
            let request = with_bearer(
                pb::CreateTaskRequest {
                    title: format!("live {n}"),
                    request_id: request_id.clone(),
                    ..Default::default()
                },
                access,
            );
            match task_client(writer).await.create_task(request).await {
                Ok(task) => break task.into_inner().id,
                Err(status) if status.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => panic!("create {n}: {status:?}"),
            }
        };
        let (seen, at) = tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .unwrap_or_else(|_| panic!("change {n} reached the watcher"))
            .unwrap();
        assert_eq!(seen, id, "change {n}: in order, none missed or repeated");
        latencies.push(at.saturating_duration_since(started));
        order.push(id);
    }
    latencies.sort();
    let p99 = latencies[CHANGES * 99 / 100];
    println!(
        "watcher behind nginx: p50 {:?}, p99 {:?}, max {:?} over {CHANGES} changes",
        latencies[CHANGES / 2],
        p99,
        latencies[CHANGES - 1]
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    let unique: HashSet<&String> = order.iter().collect();
    assert_eq!(unique.len(), CHANGES);
    // Nothing more than was made.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.recv())
            .await
            .is_err()
    );
}

/// Reads one grpc-web message (or the trailers frame) from a chunked HTTP/1.1 body.
struct GrpcWebReader<R> {
    reader: BufReader<R>,
    body: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> GrpcWebReader<R> {
    /// The next frame: its flag byte and payload.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.body.len() >= 5 {
                let len = u32::from_be_bytes(self.body[1..5].try_into().unwrap()) as usize;
                if self.body.len() >= 5 + len {
                    let frame: Vec<u8> = self.body.drain(..5 + len).collect();
                    return (frame[0], frame[5..].to_vec());
                }
            }
            // One chunk: its size line, the data, CRLF.
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            let size = usize::from_str_radix(line.trim(), 16).expect("a chunk size");
            assert!(size > 0, "the body ended");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.unwrap();
            self.body.extend_from_slice(&chunk[..size]);
        }
    }
}

async fn grpc_web_streams_through_the_balancer(lb: &Balancer, access: &str) {
    let socket = tokio::net::TcpStream::connect(lb.task_web).await.unwrap();
    let (read, mut write) = socket.into_split();
    let message = pb::WatchTasksRequest::default().encode_to_vec();
    let mut body = vec![0_u8];
    body.extend(u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend(message);
    let head = format!(
        "POST /todo.task.v1.TaskService/WatchTasks HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
         Authorization: Bearer {access}\r\nContent-Length: {}\r\n\r\n",
        lb.task_web,
        body.len()
    );
    write.write_all(head.as_bytes()).await.unwrap();
    write.write_all(&body).await.unwrap();
    let mut reader = BufReader::new(read);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut chunked = false;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await.unwrap();
        if header == "\r\n" {
            break;
        }
        chunked |= header
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
    }
    assert!(chunked, "a streamed (chunked) grpc-web body");
    let mut web = GrpcWebReader {
        reader,
        body: Vec::new(),
    };
    let within = Duration::from_secs(2);
    let (flag, first) = tokio::time::timeout(within, web.frame())
        .await
        .expect("the first message at once");
    assert_eq!(flag, 0);
    assert!(
        pb::WatchTasksResponse::decode(first.as_slice())
            .unwrap()
            .changes
            .is_empty()
    );
    // A change made over native gRPC reaches the grpc-web watcher through nginx, unbuffered.
    let request = with_bearer(
        pb::CreateTaskRequest {
            title: "seen over grpc-web".into(),
            ..Default::default()
        },
        access,
    );
    let task = task_client(lb.task_grpc)
        .await
        .create_task(request)
        .await
        .unwrap()
        .into_inner();
    let (flag, next) = tokio::time::timeout(within, web.frame())
        .await
        .expect("the change within a second or two");
    assert_eq!(flag, 0);
    let changes = pb::WatchTasksResponse::decode(next.as_slice())
        .unwrap()
        .changes;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].task_id, task.id);
}
