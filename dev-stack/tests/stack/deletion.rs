//! An account deletion survives a crash of the process between recording it and delivering
//! it: `todo-stack` is started with nowhere to deliver deletions to, an account is deleted
//! (recorded), the process is killed (SIGKILL), and started again on the same databases with
//! its own task-service to deliver to: the account's tasks are purged.

use crate::{
    binary::{launch, launch_in},
    client::{database_env, sign_up},
};
use std::time::Duration;
use test_support::{PASSWORD, channel, count_rows, with_bearer};
use todo_api::todo::{
    auth::v1::{DeleteAccountRequest, auth_service_client::AuthServiceClient},
    task::v1::{CreateTaskRequest, task_service_client::TaskServiceClient},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_recorded_before_a_kill_is_delivered_after_the_restart() {
    let env = database_env().await;
    // A port nothing listens on: every delivery fails until the restart.
    let mut first_env = env.clone();
    first_env.push(("TASK_INTERNAL_URL", "http://127.0.0.1:9".into()));
    let launched = tokio::task::spawn_blocking(move || launch(&first_env))
        .await
        .unwrap();
    let (auth_db, task_db) = database_urls(&env, &launched.dir);
    let token = sign_up(launched.auth_addr, "leaving@example.com")
        .await
        .unwrap();
    let mut tasks = TaskServiceClient::new(channel(launched.task_addr).await);
    let mut created = 0;
    for attempt in 0..200 {
        let request = CreateTaskRequest {
            title: format!("task {attempt}"),
            ..Default::default()
        };
        // The task-service may still be fetching its keys.
        if tasks
            .create_task(with_bearer(request, &token))
            .await
            .is_ok()
        {
            created += 1;
            if created == 3 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    assert_eq!(created, 3);
    let mut auth = AuthServiceClient::new(channel(launched.auth_addr).await);
    let request = DeleteAccountRequest {
        current_password: PASSWORD.into(),
    };
    auth.delete_account(with_bearer(request, &token))
        .await
        .unwrap();
    assert_eq!(count_rows(&auth_db, "account_deletions").await, 1);
    assert_eq!(count_rows(&task_db, "tasks").await, 3, "not delivered yet");

    let dir = tokio::task::spawn_blocking(move || launched.kill())
        .await
        .unwrap();
    let relaunched = tokio::task::spawn_blocking(move || launch_in(dir, &env))
        .await
        .unwrap();
    // The first retry waits about a second; the worker looks every 2 s.
    for _ in 0..200 {
        if count_rows(&task_db, "tasks").await == 0
            && count_rows(&auth_db, "account_deletions").await == 0
        {
            relaunched.interrupt_and_wait();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the recorded deletion was not delivered within 10 s of the restart");
}

/// The two services' database URLs: the environment's, or the SQLite files under `dir`.
fn database_urls(env: &[(&str, String)], dir: &std::path::Path) -> (String, String) {
    let from_env = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    let file = |name: &str| format!("sqlite://{}", dir.join("data").join(name).display());
    (
        from_env("AUTH_DATABASE_URL").unwrap_or_else(|| file("auth.db")),
        from_env("TASK_DATABASE_URL").unwrap_or_else(|| file("tasks.db")),
    )
}
