//! One user can never see or touch another's tasks: every RPC on someone else's task id
//! answers exactly like a missing task, and nothing changes.

use crate::helpers::{TestStack, assert_error, violated_fields};
use todo_api::todo::task::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn another_users_task_is_not_found_for_every_rpc_and_stays_unchanged() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let bob = stack.user("bob@example.com").await;
    let task = alice.create("Alice's secret plan").await;
    let missing = uuid::Uuid::now_v7().to_string();

    for id in [&task.id, &missing] {
        let not_found = |result: Result<_, tonic::Status>| {
            let status = assert_error(result, Code::NotFound, "TASK_NOT_FOUND");
            status.message().to_owned()
        };
        let messages = [
            not_found(bob.get(id).await.map(|_| ())),
            not_found(bob.toggle(id).await.map(|_| ())),
            not_found(bob.delete(id, "").await),
            // Even with the right etag, someone else's task is not found, never ABORTED.
            not_found(bob.delete(id, &task.etag).await),
            not_found({
                let mut change = task.clone();
                change.id = id.clone();
                change.title = "Bob was here".into();
                bob.update(change, &["title", "completed"])
                    .await
                    .map(|_| ())
            }),
            not_found({
                let mut change = task.clone();
                change.id = id.clone();
                change.etag = String::new();
                change.completed = true;
                bob.update(change, &["*"]).await.map(|_| ())
            }),
        ];
        assert!(
            messages.iter().all(|m| m == "task not found"),
            "{messages:?}"
        );
    }

    assert_eq!(alice.get(&task.id).await.unwrap(), task);
    assert!(bob.list_all(0, None).await.is_empty());
    assert!(bob.list_all(0, Some(false)).await.is_empty());
    assert_eq!(alice.all_ids().await, [task.id]);
}

#[tokio::test]
async fn request_ids_and_page_tokens_belong_to_the_user_who_made_them() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let bob = stack.user("bob@example.com").await;
    let request = pb::CreateTaskRequest {
        title: "Same key".into(),
        description: String::new(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let alices = alice.try_create(request.clone()).await.unwrap();
    let bobs = bob.try_create(request).await.unwrap();
    assert_ne!(alices.id, bobs.id, "a request id is scoped to its user");

    alice.create("second").await;
    let page = alice
        .list(pb::ListTasksRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!page.next_page_token.is_empty());
    let status = assert_error(
        bob.list(pb::ListTasksRequest {
            page_size: 1,
            page_token: page.next_page_token,
            completed: None,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["page_token"]);
}
