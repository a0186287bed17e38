//! What an operator sees: metrics scraped from each service's admin listener after real gRPC
//! traffic (exact counts, the Prometheus text format as `promtool` reads it, no personal data
//! in any label), and one request followed by its trace id from the task-service into the
//! auth-service, exported over real OTLP.

use auth_service::config::AuthConfig;
use clock::SystemClock;
use std::{io::Write, net::SocketAddr, sync::Arc, time::Duration};
use task_service::config::TaskConfig;
use test_support::{
    PASSWORD, channel, fresh_database_url, http_get, sample, shutdown_on_drop, with_bearer,
};
use todo_api::todo::{
    auth::v1::{SignInRequest, auth_service_client::AuthServiceClient},
    task::v1::{CreateTaskRequest, ListTasksRequest, task_service_client::TaskServiceClient},
};
use todo_stack::Stack;

/// Stops a stack started with [`shutdown_on_drop`] and checks both services stopped cleanly.
async fn stopped_cleanly<T>(
    stop: T,
    running: tokio::task::JoinHandle<Result<(), todo_stack::StackError>>,
) {
    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A stack of both services with their metrics on, signing in throttled after
/// `throttle_after` failures.
async fn stack_with_metrics(throttle_after: u32) -> Stack {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut auth =
        AuthConfig::for_database(any_port, &fresh_database_url("auth_test").await.unwrap());
    auth.metrics_listen_addr = Some(any_port);
    auth.throttle.throttle_free_attempts = throttle_after;
    let mut task = TaskConfig::for_database(
        any_port,
        &fresh_database_url("task_test").await.unwrap(),
        "http://127.0.0.1:9",
    );
    task.metrics_listen_addr = Some(any_port);
    Stack::build(auth, task, Arc::new(SystemClock))
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_count_exactly_the_calls_made_and_name_no_user() {
    let stack = stack_with_metrics(3).await;
    let (auth_addr, task_addr) = (stack.auth_addr(), stack.task_addr());
    let auth_metrics = stack.auth_metrics_addr().expect("auth metrics on");
    let task_metrics = stack.task_metrics_addr().expect("task metrics on");
    let (stop, stopped) = shutdown_on_drop();
    let running = tokio::spawn(stack.run(stopped));

    let email = "operator-view@example.com";
    let signed_up = test_support::sign_up(AuthServiceClient::new(channel(auth_addr).await), email)
        .await
        .unwrap();
    let user_id = signed_up.user.unwrap().id;
    let token = signed_up.tokens.unwrap().access_token;
    // Three wrong passwords are failures; the fourth try is throttled (free attempts: 3).
    let mut auth = AuthServiceClient::new(channel(auth_addr).await);
    let wrong = || SignInRequest {
        email: email.into(),
        password: format!("{PASSWORD} but wrong"),
    };
    for _ in 0..3 {
        let refused = auth.sign_in(wrong()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    }
    let throttled = auth.sign_in(wrong()).await.unwrap_err();
    assert_eq!(
        throttled.code(),
        tonic::Code::ResourceExhausted,
        "{throttled:?}"
    );

    let mut tasks = TaskServiceClient::new(channel(task_addr).await);
    let mut created = 0;
    while created < 2 {
        let request = CreateTaskRequest {
            title: format!("task {created}"),
            ..Default::default()
        };
        match tasks.create_task(with_bearer(request, &token)).await {
            Ok(_) => created += 1,
            // Until the task-service has fetched the keys.
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    tasks
        .list_tasks(with_bearer(ListTasksRequest::default(), &token))
        .await
        .unwrap();
    let anonymous = tasks
        .list_tasks(ListTasksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    // One message over MAX_REQUEST_BYTES: refused before any handler, counted by its setting.
    let too_large = CreateTaskRequest {
        title: "x".repeat(80 * 1024),
        ..Default::default()
    };
    let refused = tasks
        .create_task(with_bearer(too_large, &token))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    // A method nobody serves, with a path chosen to be found in a label if it leaked.
    let mut grpc = tonic::client::Grpc::new(channel(task_addr).await);
    grpc.ready().await.unwrap();
    let unknown: Result<tonic::Response<()>, _> = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/attacker.Chosen/LabelValue"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::Unimplemented);

    let (status, auth_scrape) = http_get(auth_metrics, "/metrics").await.unwrap();
    assert!(status.contains("200"), "{status}");
    let (status, task_scrape) = http_get(task_metrics, "/metrics").await.unwrap();
    assert!(status.contains("200"), "{status}");

    let counts = [
        (&auth_scrape, r#"auth_sign_ups_total{outcome="ok"}"#, 1.0),
        (
            &auth_scrape,
            r#"auth_sign_ins_total{outcome="invalid_credentials"}"#,
            3.0,
        ),
        (
            &auth_scrape,
            r#"auth_sign_ins_total{outcome="throttled"}"#,
            1.0,
        ),
        (
            &auth_scrape,
            r#"auth_throttled_total{operation="sign_in"}"#,
            1.0,
        ),
        (
            &auth_scrape,
            r#"rpc_server_call_duration_seconds_count{rpc_service="todo.auth.v1.AuthService",rpc_method="SignIn",rpc_response_status_code="UNAUTHENTICATED",listener="public"}"#,
            3.0,
        ),
        (
            &task_scrape,
            r#"task_tasks_written_total{operation="created"}"#,
            2.0,
        ),
        (
            &task_scrape,
            r#"task_authentications_total{outcome="refused",reason="missing"}"#,
            1.0,
        ),
        (
            &task_scrape,
            r#"rpc_server_call_duration_seconds_count{rpc_service="todo.task.v1.TaskService",rpc_method="CreateTask",rpc_response_status_code="OK",listener="public"}"#,
            2.0,
        ),
        (
            &task_scrape,
            r#"rpc_server_call_duration_seconds_count{rpc_service="todo.task.v1.TaskService",rpc_method="ListTasks",rpc_response_status_code="OK",listener="public"}"#,
            1.0,
        ),
        (
            &task_scrape,
            r#"rpc_server_call_duration_seconds_count{rpc_service="other",rpc_method="other",rpc_response_status_code="UNIMPLEMENTED",listener="public"}"#,
            1.0,
        ),
        (&task_scrape, r#"task_list_page_size_count"#, 1.0),
        (
            &task_scrape,
            r#"fair_share_refusals_total{resource="request_bytes",listener="public",reason="MAX_REQUEST_BYTES"}"#,
            1.0,
        ),
    ];
    for (scrape, series, expected) in counts {
        assert_eq!(sample(scrape, series), expected, "{series} in\n{scrape}");
    }
    // Every call has ended: nothing in flight, and the gauge is there to say so.
    let in_flight = r#"rpc_server_active_calls{listener="public"} 0"#;
    assert!(task_scrape.lines().any(|l| l == in_flight), "{task_scrape}");
    // Verified once, then from the verified-token cache (each counted once per call).
    let verified = sample(
        &task_scrape,
        r#"task_authentications_total{outcome="verified"}"#,
    );
    let cached = sample(
        &task_scrape,
        r#"task_authentications_total{outcome="cached"}"#,
    );
    assert!(verified >= 1.0, "{task_scrape}");
    assert_eq!(
        verified + cached,
        3.0,
        "two creates and a list: {task_scrape}"
    );
    for gauge in [
        r#"fair_share_limit{resource="connections",listener="public"}"#,
        r#"fair_share_limit{resource="hash_queue"}"#,
        r#"health_serving{listener="public"}"#,
    ] {
        assert!(
            sample(&auth_scrape, gauge) >= 1.0,
            "{gauge} in\n{auth_scrape}"
        );
    }
    assert!(sample(&task_scrape, r#"fair_share_limit{resource="unread_bytes"}"#) > 0.0);
    assert!(
        task_scrape
            .contains("db_client_operation_duration_seconds_bucket{db_operation_name=\"INSERT\"")
    );
    // No label value names the user, their email, their token, or a path a client chose.
    for scrape in [&auth_scrape, &task_scrape] {
        for secret in [
            email,
            user_id.as_str(),
            // The signature: the header part is the same for every token.
            &token[token.len() - 24..],
            "attacker",
            "LabelValue",
        ] {
            assert!(!scrape.contains(secret), "{secret:?} in a scrape");
        }
    }
    // The metrics are only on the admin port: not over HTTP/1.1 on the public ports (grpc-web
    // is served there), and the admin port speaks no gRPC.
    for public in [auth_addr, task_addr] {
        let (status, body) = http_get(public, "/metrics").await.unwrap();
        assert!(status.contains("404"), "{status}");
        assert!(!body.contains("rpc_server_call_duration_seconds"), "{body}");
    }
    let mut on_admin = TaskServiceClient::new(channel(task_metrics).await);
    let refused = on_admin
        .list_tasks(ListTasksRequest::default())
        .await
        .unwrap_err();
    assert_ne!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let (status, _) = http_get(task_metrics, "/anything-else").await.unwrap();
    assert!(status.contains("404"), "{status}");

    stopped_cleanly(stop, running).await;
}

#[tokio::test]
#[ignore = "needs promtool (Debian package `prometheus`); runs with --include-ignored, as CI does"]
async fn the_scrapes_pass_promtool_check_metrics() {
    let stack = stack_with_metrics(5).await;
    let (auth_addr, task_addr) = (stack.auth_addr(), stack.task_addr());
    let addrs = [
        stack.auth_metrics_addr().unwrap(),
        stack.task_metrics_addr().unwrap(),
    ];
    let (stop, stopped) = shutdown_on_drop();
    let running = tokio::spawn(stack.run(stopped));
    // Some traffic, so histograms and families have samples.
    let token = crate::client::sign_up(auth_addr, "promtool@example.com")
        .await
        .unwrap();
    let mut tasks = TaskServiceClient::new(channel(task_addr).await);
    for _ in 0..100 {
        let request = CreateTaskRequest {
            title: "scraped".into(),
            ..Default::default()
        };
        if tasks
            .create_task(with_bearer(request, &token))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for addr in addrs {
        let (status, scrape) = http_get(addr, "/metrics").await.unwrap();
        // An empty scrape would pass promtool: this one must hold the RPC and pool metrics.
        assert!(status.contains("200"), "{status}");
        for family in [
            "rpc_server_call_duration_seconds_bucket",
            "db_client_connections",
        ] {
            assert!(scrape.contains(family), "{family} in\n{scrape}");
        }
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is installed (Debian: apt-get install prometheus)");
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
        let checked = promtool.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "promtool check metrics failed:\n{}{}\n--- scrape:\n{scrape}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    stopped_cleanly(stop, running).await;
}

/// A child process, killed if the test ends before it stopped (a failed assertion).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `todo-stack` binary exporting spans to `otlp`, its log lines in `log`; its addresses.
fn launch_traced(
    dir: &std::path::Path,
    otlp: SocketAddr,
    env: &[(&'static str, String)],
) -> (
    std::process::Child,
    std::path::PathBuf,
    SocketAddr,
    SocketAddr,
) {
    let log = dir.join("stdout.log");
    let mut command = crate::binary::command_in(dir);
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        // Every task-service call asks the auth-service's Introspect: a call between services.
        .env("STRICT_SESSIONS", "true")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let banner = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Ctrl-C stops both") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no banner:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let addr = |service: &str| -> SocketAddr {
        banner
            .lines()
            .find_map(|line| line.trim().strip_prefix(service))
            .and_then(|rest| rest.trim().strip_prefix("http://"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no {service} address in:\n{banner}"))
    };
    (child, log, addr("auth-service"), addr("task-service"))
}

#[tokio::test]
async fn one_request_is_followed_by_its_trace_id_from_the_task_service_into_the_auth_service() {
    let (otlp, received) = test_support::otlp::receiver().await.unwrap();
    let dir = std::env::temp_dir()
        .join("todo-grpc-tests")
        .join(format!("traced-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = crate::client::database_env().await;
    let (child, log, auth_addr, task_addr) = launch_traced(&dir, otlp, &env);
    let mut child = KillOnDrop(Some(child));

    let token = crate::client::sign_up(auth_addr, "traced@example.com")
        .await
        .unwrap();
    // The browser's (or any caller's) trace: W3C traceparent, as grpc-web sends it too.
    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let mut tasks = TaskServiceClient::new(channel(task_addr).await);
    let mut listed = false;
    for _ in 0..200 {
        let mut request = with_bearer(ListTasksRequest::default(), &token);
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        match tasks.list_tasks(request).await {
            Ok(_) => {
                listed = true;
                break;
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    assert!(listed, "the task-service became ready");

    // Both services' server spans of this request, in the caller's trace, over real OTLP.
    let wanted = ["todo.task.v1.TaskService", "todo.auth.v1.AuthService"];
    let mut spans = Vec::new();
    for _ in 0..150 {
        spans = received
            .spans()
            .into_iter()
            .filter(|span| span.trace_id == trace_id)
            .collect();
        let found = |service: &str| {
            spans
                .iter()
                .any(|s| s.attribute("rpc.service") == Some(service))
        };
        if wanted.iter().all(|service| found(service)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"todo.task.v1.TaskService/ListTasks"),
        "spans of the trace: {names:?}"
    );
    assert!(
        names.contains(&"todo.auth.v1.AuthService/Introspect"),
        "the task-service's Introspect call continues the trace: {names:?}"
    );
    assert!(spans.iter().all(|s| s.service == "todo-stack"), "{spans:?}");
    // The call into the auth-service hangs under the task-service's server span, and the
    // task-service's statements too (kind and system, never the statement).
    let list = spans
        .iter()
        .find(|s| s.name == "todo.task.v1.TaskService/ListTasks")
        .unwrap();
    let introspect = spans
        .iter()
        .find(|s| s.name == "todo.auth.v1.AuthService/Introspect")
        .unwrap();
    assert_eq!(
        list.parent_span_id, "00f067aa0ba902b7",
        "the caller's span is the parent"
    );
    assert_ne!(introspect.parent_span_id, "0000000000000000");
    assert!(
        spans.iter().any(|s| s.name == "SELECT"
            && s.parent_span_id == list.span_id
            && s.attribute("db.system.name").is_some()),
        "the task-service's statements under ListTasks: {spans:?}"
    );
    // No span or event of any trace names the user, their email, or their address.
    let user = crate::client::user_id_of(&token);
    assert_eq!(user.len(), 36, "a user id from the token: {user:?}");
    for span in received.spans() {
        let text = format!("{} {:?} {:?}", span.name, span.attributes, span.events);
        for personal in ["traced@example.com", user.as_str(), "127.0.0.1"] {
            assert!(
                !text.contains(personal),
                "{personal} in an exported span: {span:?}"
            );
        }
    }
    // The sign-up's hashing, in its own trace.
    assert!(
        received.spans().iter().any(|s| s.name == "argon2id"),
        "the sign-up's argon2id span"
    );
    // Log lines carry the trace id, so logs and traces join.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.lines()
            .any(|line| line.contains(&trace_id) && line.contains("ListTasks")),
        "no log line with trace id {trace_id}:\n{logs}"
    );

    // Ctrl-C, with this test's connections closed and its runtime free to close them.
    drop(tasks);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.as_ref().unwrap().id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut stopping = child.0.take().unwrap();
    let exited = tokio::task::spawn_blocking(move || stopping.wait()).await;
    assert!(exited.unwrap().unwrap().success());
    std::fs::remove_dir_all(&dir).ok();
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.2, ...).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test]
async fn an_operator_sees_a_connection_flood_as_it_happens() {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let auth = AuthConfig::for_database(any_port, &fresh_database_url("auth_test").await.unwrap());
    let mut task = TaskConfig::for_database(
        any_port,
        &fresh_database_url("task_test").await.unwrap(),
        "http://127.0.0.1:9",
    );
    task.metrics_listen_addr = Some(any_port);
    task.server.connections.max_connections_per_client = 3;
    let stack = Stack::build(auth, task, Arc::new(SystemClock))
        .await
        .unwrap();
    let (task_addr, metrics) = (stack.task_addr(), stack.task_metrics_addr().unwrap());
    let (stop, stopped) = shutdown_on_drop();
    let running = tokio::spawn(stack.run(stopped));

    // Two flooding addresses open five connections each: three are held, two refused.
    let mut held = Vec::new();
    for flooder in [[127, 0, 0, 2], [127, 0, 0, 3]] {
        for _ in 0..5 {
            held.push(connect_from(flooder, task_addr).await);
        }
    }
    // An honest client beside them is still served.
    let mut honest = tonic_health::pb::health_client::HealthClient::new(channel(task_addr).await);
    honest
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    let refused = r#"fair_share_refusals_total{resource="connections",listener="public",reason="MAX_CONNECTIONS_PER_CLIENT"}"#;
    let in_use = r#"fair_share_in_use{resource="connections",listener="public"}"#;
    let mut scrape = String::new();
    for _ in 0..50 {
        scrape = http_get(metrics, "/metrics").await.unwrap().1;
        if sample(&scrape, refused) >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sample(&scrape, refused), 4.0, "{scrape}");
    // Three per flooder, and the honest client's.
    assert!(sample(&scrape, in_use) >= 7.0, "{scrape}");
    assert_eq!(
        sample(
            &scrape,
            r#"fair_share_limit{resource="connections",listener="public"}"#
        ),
        10_000.0
    );

    drop(held);
    drop(honest);
    stopped_cleanly(stop, running).await;
}
