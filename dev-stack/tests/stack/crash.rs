//! Nothing acknowledged is lost when the process dies mid-load: `todo-stack` is killed
//! (SIGKILL) while eight clients create tasks, then started again on the same databases.
//! Every task it answered is there, and every create it never answered, retried with its
//! `request_id`, is made exactly once.

use crate::{
    binary::{launch, launch_in},
    client::{database_env, sign_up},
};
use std::{collections::HashSet, time::Duration};
use test_support::{channel, with_bearer};
use todo_api::{
    todo::task::v1::CreateTaskRequest, todo::task::v1::ListTasksRequest,
    todo::task::v1::task_service_client::TaskServiceClient,
};
use tonic::{Code, transport::Channel};

/// What one client saw: the ids of the tasks it was answered, and the request ids of the
/// creates it never got an answer to.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<String>,
    unanswered: Vec<String>,
}

/// Creates tasks until the service goes away (then tries one more, which fails too).
async fn create_until_gone(mut tasks: TaskServiceClient<Channel>, token: String) -> Seen {
    let mut seen = Seen::default();
    loop {
        let request_id = uuid::Uuid::now_v7().to_string();
        let request = CreateTaskRequest {
            title: format!("task {request_id}"),
            request_id: request_id.clone(),
            ..Default::default()
        };
        match tasks.create_task(with_bearer(request, &token)).await {
            Ok(task) => seen.acknowledged.push(task.into_inner().id),
            Err(status) => {
                assert_ne!(status.code(), Code::Internal, "{status:?}");
                seen.unanswered.push(request_id);
                return seen;
            }
        }
    }
}

/// Every task of the caller, through every page.
async fn all_tasks(tasks: &mut TaskServiceClient<Channel>, token: &str) -> Vec<String> {
    let (mut ids, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = ListTasksRequest {
            page_size: 1000,
            page_token,
            completed: None,
        };
        let page = tasks
            .list_tasks(with_bearer(request, token))
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.tasks.into_iter().map(|task| task.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_acknowledged_task_and_retries_are_made_once() {
    let mut env = database_env().await;
    // Eight writers may pass the default quota in a fast build; it is not what is tested.
    env.push(("TASK_QUOTA", "0".into()));
    let first_env = env.clone();
    let launched = tokio::task::spawn_blocking(move || launch(&first_env))
        .await
        .unwrap();
    let token = sign_up(launched.auth_addr, "crash@example.com")
        .await
        .unwrap();
    let tasks = TaskServiceClient::new(channel(launched.task_addr).await);
    // The task-service may still be fetching its keys: wait until a call goes through.
    for _ in 0..200 {
        let mut probe = tasks.clone();
        if probe
            .list_tasks(with_bearer(ListTasksRequest::default(), &token))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let writers: Vec<_> = (0..8)
        .map(|_| tokio::spawn(create_until_gone(tasks.clone(), token.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = tokio::task::spawn_blocking(move || launched.kill())
        .await
        .unwrap();
    let mut seen = Seen::default();
    for writer in writers {
        let one = writer.await.unwrap();
        seen.acknowledged.extend(one.acknowledged);
        seen.unanswered.extend(one.unanswered);
    }
    assert!(
        !seen.acknowledged.is_empty(),
        "the load ran before the kill"
    );

    // Started again on the same databases; the same token still verifies (keys are stored).
    let relaunched = tokio::task::spawn_blocking(move || launch_in(dir, &env))
        .await
        .unwrap();
    let mut tasks = TaskServiceClient::new(channel(relaunched.task_addr).await);
    let mut stored = None;
    for _ in 0..200 {
        let request = with_bearer(ListTasksRequest::default(), &token);
        if tasks.list_tasks(request).await.is_ok() {
            stored = Some(all_tasks(&mut tasks, &token).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stored: HashSet<String> = stored
        .expect("the restarted task-service answers within 5 s")
        .into_iter()
        .collect();
    let lost: Vec<_> = seen
        .acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged, then lost in the crash: {lost:?}"
    );

    // Each unanswered create, retried as a client would: made (or found) exactly once.
    for request_id in &seen.unanswered {
        let request = CreateTaskRequest {
            title: format!("task {request_id}"),
            request_id: request_id.clone(),
            ..Default::default()
        };
        tasks
            .create_task(with_bearer(request, &token))
            .await
            .unwrap_or_else(|status| panic!("retry of {request_id}: {status:?}"));
    }
    let after_retries = all_tasks(&mut tasks, &token).await;
    println!(
        "killed mid-load: {} creates acknowledged (all stored), {} unanswered and retried; \
         {} tasks after the retries",
        seen.acknowledged.len(),
        seen.unanswered.len(),
        after_retries.len()
    );
    assert_eq!(
        after_retries.len(),
        seen.acknowledged.len() + seen.unanswered.len(),
        "every create is stored once: none lost, none doubled by its retry"
    );
    tokio::task::spawn_blocking(move || relaunched.interrupt_and_wait())
        .await
        .unwrap();
}
