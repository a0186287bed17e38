//! Clients that ask for large pages and never read them (HTTP/2 stream windows of 0): what the
//! server holds for them is bounded.

use crate::helpers::*;
use std::time::Duration;
use todo_api::todo::task::v1 as pb;

/// This process's resident set, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A gRPC frame of ListTasks `page_size: 1000`.
fn list_1000() -> bytes::Bytes {
    // Field 1 (page_size), varint 1000.
    let message = [0x08, 0xE8, 0x07];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame.into()
}

/// Opens a connection whose streams let the server send `window` bytes (0: nothing) and
/// never read, and asks for `streams` pages on it; returns once the server has answered every request's headers, with the
/// responses (held, unread) and how many of them were refused outright (a trailers-only
/// answer carrying `grpc-status`).
async fn never_reading(
    addr: std::net::SocketAddr,
    token: &str,
    streams: usize,
    window: u32,
) -> (Vec<h2::RecvStream>, Vec<String>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut pending = Vec::new();
    for _ in 0..streams {
        let mut client = client.clone().ready().await.unwrap();
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/todo.task.v1.TaskService/ListTasks"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        send.send_data(list_1000(), true).unwrap();
        pending.push(response);
    }
    let (mut held, mut refused) = (Vec::new(), Vec::new());
    for response in pending {
        let response = response.await.unwrap();
        match response.headers().get("grpc-status") {
            Some(status) => refused.push(status.to_str().unwrap().to_owned()),
            None => held.push(response.into_body()),
        }
    }
    (held, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_pages_hold_a_bounded_amount_of_memory() {
    never_read_pages(0).await;
}

/// With a window of one byte, hyper hands h2 a frame and the body goes on: unless frames are
/// cut small, a whole page is handed over, the body ends and the charge is given back while
/// h2 still holds the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_let_one_byte_through_hold_no_more() {
    never_read_pages(1).await;
}

async fn never_read_pages(window: u32) {
    let stack = TestStack::spawn().await;
    let reader = stack.user("reader@example.com").await;
    let other = stack.user("other@example.com").await;
    // 120 tasks of 9 KB: a page of them reaches the 1 MiB page cap.
    let description = "x".repeat(9_000);
    for i in 0..120 {
        let mut request = new_task(&format!("big {i}"));
        request.description = description.clone();
        reader.try_create(request).await.unwrap();
    }
    other.create("small").await;

    // 800 pages of ~1 MiB asked for over 8 connections, none read. Before the budget the
    // server held every one (RSS +827 MiB).
    let before = rss_mib();
    let mut connections = Vec::new();
    for _ in 0..8 {
        connections.push(never_reading(stack.task_addr, &reader.token, 100, window).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss_mib() - before;
    let held: usize = connections.iter().map(|(held, _)| held.len()).sum();
    let refused: Vec<&String> = connections.iter().flat_map(|(_, r)| r).collect();
    println!(
        "window {window}: 800 pages asked for and never read: {held} held, {} refused; \
         RSS grew {grown:.0} MiB",
        refused.len()
    );
    // MAX_UNREAD_BYTES_PER_USER (8 MiB) holds 8 pages of up to 1 MiB; the rest is refused
    // RESOURCE_EXHAUSTED (8) at once.
    assert!(held <= 8, "{held} pages held for one user");
    assert!(refused.iter().all(|code| *code == "8"), "{refused:?}");
    assert!(grown < 200.0, "RSS grew {grown:.0} MiB");

    // Another user is not affected; the reader is refused, with the reason.
    let small = pb::ListTasksRequest {
        page_size: 10,
        ..Default::default()
    };
    let page = other.list(small.clone()).await.expect("another user lists");
    assert_eq!(page.tasks.len(), 1);
    let refusal = assert_error(
        reader.list(small.clone()).await,
        tonic::Code::ResourceExhausted,
        "TOO_MANY_UNREAD_REPLIES",
    );
    assert!(refusal.message().contains("MAX_UNREAD_BYTES_PER_USER"));
    // A write is refused before it is done, never after: no task is made by a refused create.
    assert_error(
        reader.try_create(new_task("refused")).await,
        tonic::Code::ResourceExhausted,
        "TOO_MANY_UNREAD_REPLIES",
    );

    // Once those connections are gone, so is the charge.
    drop(connections);
    let mut listed = None;
    for _ in 0..100 {
        if let Ok(page) = reader.list(small.clone()).await {
            listed = Some(page);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed.expect("the reader lists again").tasks.len(), 10);
    let titles: Vec<String> = reader
        .list_all(1000, None)
        .await
        .into_iter()
        .map(|task| task.title)
        .collect();
    assert_eq!(titles.len(), 120);
    assert!(!titles.contains(&"refused".to_owned()));
}

/// Row 4 of the fair-share review: accounts that hold their whole share of unread pages (8
/// MiB each) until the service's budget is spent cannot keep everyone else out. A caller
/// holding less gets room: the connections of the user holding the most are closed (their
/// unread replies with them), and the caller is served a moment later. Before, every other
/// user's calls were refused for as long as the pages stayed unread (up to 31 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_holding_the_whole_budget_unread_cannot_keep_other_users_out() {
    let stack = TestStack::spawn_with(
        |_| {},
        |task| {
            // Two users' shares fill it, as 16 did at the defaults (128 MiB / 8 MiB).
            task.max_unread_bytes = 16 * 1024 * 1024;
            task.max_unread_bytes_per_user = 8 * 1024 * 1024;
        },
    )
    .await;
    // Every user has 120 tasks of 9 KB: a page of them is ~1 MiB.
    let description = "x".repeat(9_000);
    let mut users = Vec::new();
    for email in [
        "honest@example.com",
        "holder0@example.com",
        "holder1@example.com",
    ] {
        let user = stack.user(email).await;
        for i in 0..120 {
            let mut request = new_task(&format!("big {i}"));
            request.description = description.clone();
            user.try_create(request).await.unwrap();
        }
        users.push(user);
    }
    let page = pb::ListTasksRequest {
        page_size: 1000,
        ..Default::default()
    };
    let timed = || {
        let (user, request) = (users[0].clone(), page.clone());
        async move {
            let started = std::time::Instant::now();
            let page = user.list(request).await;
            (started.elapsed(), page)
        }
    };
    let mut alone = Vec::new();
    let mut expected = 0;
    for _ in 0..5 {
        let (took, listed) = timed().await;
        expected = listed.expect("served alone").tasks.len();
        alone.push(took);
    }
    alone.sort();
    let alone = alone[2];

    let mut held = Vec::new();
    for holder in &users[1..] {
        // Each holds 8 pages of ~1 MiB, unread: its whole share, together the whole budget.
        held.push(never_reading(stack.task_addr, &holder.token, 8, 0).await);
    }
    let holding: usize = held.iter().map(|(pages, _)| pages.len()).sum();
    assert_eq!(holding, 16, "the budget is spent");

    let (during, listed) = timed().await;
    println!(
        "honest ListTasks of a ~1 MiB page alone: median {alone:?}; with 2 accounts holding the \
         whole 16 MiB unread: {during:?} ({:?})",
        listed.as_ref().map(|p| p.tasks.len()).map_err(|s| s.code())
    );
    assert_eq!(
        listed.expect("the honest user is served").tasks.len(),
        expected
    );
}
