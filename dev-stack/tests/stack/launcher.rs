//! One process, both services: a user signs up at one and manages tasks at the other.

use crate::{binary::launch, client::sign_up};
use auth_service::config::AuthConfig;
use clock::SystemClock;
use std::{sync::Arc, time::Duration};
use task_service::config::TaskConfig;
use test_support::{channel, fresh_database_url, shutdown_on_drop, with_bearer};
use todo_api::{
    todo::task::v1::CreateTaskRequest, todo::task::v1::ListTasksRequest,
    todo::task::v1::task_service_client::TaskServiceClient,
};
use todo_stack::Stack;

#[tokio::test]
async fn the_stack_serves_both_services_wired_together_and_stops_cleanly() {
    let any_port = "127.0.0.1:0".parse().unwrap();
    let auth = AuthConfig::for_database(any_port, &fresh_database_url("task_test").await.unwrap());
    let task = TaskConfig::for_database(
        any_port,
        &fresh_database_url("task_test").await.unwrap(),
        // Replaced by the stack with its own auth-service's address.
        "http://127.0.0.1:9",
    );
    let stack = Stack::build(auth, task, Arc::new(SystemClock))
        .await
        .unwrap();
    let (auth_addr, task_addr) = (stack.auth_addr(), stack.task_addr());
    let (stop, stopped) = shutdown_on_drop();
    let running = tokio::spawn(stack.run(stopped));

    let token = sign_up(auth_addr, "stack@example.com").await.unwrap();
    let mut tasks = TaskServiceClient::new(channel(task_addr).await);
    // The task-service may still be fetching its keys for a moment after start-up.
    let mut created = None;
    for _ in 0..100 {
        let request = CreateTaskRequest {
            title: "from the stack".into(),
            ..Default::default()
        };
        match tasks.create_task(with_bearer(request, &token)).await {
            Ok(task) => {
                created = Some(task.into_inner());
                break;
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    let created = created.expect("the task-service became ready");
    let listed = tasks
        .list_tasks(with_bearer(ListTasksRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tasks, [created]);

    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("both services stop")
        .unwrap()
        .expect("and report success");
}

#[test]
fn the_binary_prints_both_addresses_and_exits_cleanly_on_ctrl_c() {
    let launched = launch(&[]);
    let banner = &launched.banner;
    assert!(
        banner.contains("auth-service  http://127.0.0.1:"),
        "{banner}"
    );
    assert!(
        banner.contains("task-service  http://127.0.0.1:"),
        "{banner}"
    );
    assert!(banner.contains("grpcurl -plaintext"), "{banner}");
    let data = launched.dir.join("data");
    assert!(data.join("auth.db").exists() && data.join("tasks.db").exists());
    launched.interrupt_and_wait();
}
