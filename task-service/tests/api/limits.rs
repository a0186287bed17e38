//! What one user can make the task-service store and send: the per-user task quota, byte
//! limits on descriptions, and ListTasks pages bounded in bytes as well as in count.

use crate::helpers::{TestStack, assert_error, new_task, violated_fields};
use std::collections::HashSet;
use todo_api::todo::task::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn a_user_at_the_quota_cannot_create_more_but_retries_and_other_users_are_unaffected() {
    let stack = TestStack::spawn_with(|_| {}, |task| task.task_quota = 3).await;
    let alice = stack.user("alice@example.com").await;
    let request_id = uuid::Uuid::now_v7().to_string();
    let first = alice
        .try_create(pb::CreateTaskRequest {
            request_id: request_id.clone(),
            ..new_task("first")
        })
        .await
        .unwrap();
    alice.create("second").await;
    let third = alice.create("third").await;

    let refused = assert_error(
        alice.try_create(new_task("fourth")).await,
        Code::ResourceExhausted,
        "TASK_QUOTA_EXCEEDED",
    );
    assert!(refused.message().contains('3'), "{}", refused.message());
    // A retry of a create that made its task still gets it.
    let retried = alice
        .try_create(pb::CreateTaskRequest {
            request_id,
            ..new_task("first")
        })
        .await
        .expect("the retry gets its task");
    assert_eq!(retried.id, first.id);
    // The quota is per user.
    stack.user("bob@example.com").await.create("bob's").await;
    // Deleting one makes room.
    alice.delete(&third.id, "").await.unwrap();
    alice.create("fourth").await;
}

#[tokio::test]
async fn a_description_is_limited_in_bytes_as_well_as_in_characters() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    // 10,000 characters of three bytes each (30,000 bytes) are accepted...
    let cjk = "字".repeat(10_000);
    alice
        .try_create(pb::CreateTaskRequest {
            description: cjk,
            ..new_task("long")
        })
        .await
        .expect("10,000 three-byte characters fit");
    // ...9,000 four-byte ones (36,000 bytes) are not.
    let emoji = "🦀".repeat(9_000);
    let refused = assert_error(
        alice
            .try_create(pb::CreateTaskRequest {
                description: emoji,
                ..new_task("too long")
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&refused), ["description"]);
}

#[tokio::test]
async fn a_page_of_large_tasks_stops_at_the_byte_limit_and_the_next_page_goes_on() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    // 40 tasks of ~30 KB: 1.2 MB together, over the 1 MiB page limit.
    let description = "字".repeat(10_000);
    let mut created = HashSet::new();
    for i in 0..40 {
        let task = alice
            .try_create(pb::CreateTaskRequest {
                description: description.clone(),
                ..new_task(&format!("task {i}"))
            })
            .await
            .unwrap();
        created.insert(task.id);
    }
    let first = alice
        .list(pb::ListTasksRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        (30..40).contains(&first.tasks.len()),
        "stopped early: {} tasks",
        first.tasks.len()
    );
    assert!(
        !first.next_page_token.is_empty(),
        "with a token for the rest"
    );
    let second = alice
        .list(pb::ListTasksRequest {
            page_size: 100,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(second.next_page_token.is_empty());
    let listed: Vec<String> = first
        .tasks
        .iter()
        .chain(&second.tasks)
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(listed.len(), 40, "every task once");
    assert_eq!(listed.into_iter().collect::<HashSet<_>>(), created);
}
