//! Every RPC's success and error paths for one user.

use crate::helpers::{TestStack, assert_error, new_task, seconds, violated_fields};
use todo_api::todo::task::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn a_created_task_is_open_trimmed_and_can_be_read_back() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let created = alice
        .try_create(pb::CreateTaskRequest {
            title: "  Buy milk  ".into(),
            description: "two litres".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(created.title, "Buy milk");
    assert_eq!(created.description, "two litres");
    assert!(!created.completed);
    assert!(created.complete_time.is_none());
    assert!(created.create_time.is_some());
    assert_eq!(created.create_time, created.update_time);
    assert!(!created.etag.is_empty());
    uuid::Uuid::parse_str(&created.id).expect("the id is a UUID");

    assert_eq!(alice.get(&created.id).await.unwrap(), created);
}

#[tokio::test]
async fn bad_titles_descriptions_and_request_ids_are_refused_field_by_field() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let status = assert_error(
        alice
            .try_create(pb::CreateTaskRequest {
                title: " \t ".into(),
                description: "x".repeat(10_001),
                request_id: "not-a-uuid".into(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["title", "description", "request_id"]
    );
    let status = assert_error(
        alice.try_create(new_task(&"t".repeat(201))).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(
        status.message().contains("at most 200 characters"),
        "{status:?}"
    );

    // The longest allowed values are accepted, and nothing half-written was left behind.
    let longest = alice
        .try_create(pb::CreateTaskRequest {
            title: "t".repeat(200),
            description: "d".repeat(10_000),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let all = alice.list_all(0, None).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, longest.id);
}

#[tokio::test]
async fn a_retried_create_with_the_same_request_id_returns_the_first_task() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let request = pb::CreateTaskRequest {
        title: "Pay rent".into(),
        description: String::new(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let first = alice.try_create(request.clone()).await.unwrap();
    let retry = alice.try_create(request.clone()).await.unwrap();
    assert_eq!(first, retry);
    // Another request id makes another task.
    let other = alice
        .try_create(pb::CreateTaskRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            ..request
        })
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(alice.list_all(0, None).await.len(), 2);
}

#[tokio::test]
async fn get_with_a_malformed_id_is_invalid_and_an_unknown_id_is_not_found() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let status = assert_error(
        alice.get("42").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["id"]);
    let status = assert_error(
        alice.get("").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["id"]);
    assert_error(
        alice.get(&uuid::Uuid::now_v7().to_string()).await,
        Code::NotFound,
        "TASK_NOT_FOUND",
    );
}

#[tokio::test]
async fn update_changes_only_the_masked_fields_and_a_new_etag_each_time() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let task = alice
        .try_create(pb::CreateTaskRequest {
            title: "Draft".into(),
            description: "keep me".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    stack.advance(5);
    let mut change = task.clone();
    change.title = "Final".into();
    change.description = "ignored: not in the mask".into();
    let updated = alice.update(change, &["title"]).await.unwrap();
    assert_eq!(updated.title, "Final");
    assert_eq!(updated.description, "keep me");
    assert_eq!(updated.create_time, task.create_time);
    assert!(seconds(&updated.update_time) > seconds(&task.update_time));
    assert_ne!(updated.etag, task.etag);

    let mut change = updated.clone();
    change.completed = true;
    let done = alice.update(change, &["completed"]).await.unwrap();
    assert!(done.completed);
    assert_eq!(done.complete_time, done.update_time);

    // `*` replaces all three; completing an already completed task keeps its time.
    stack.advance(5);
    let mut change = done.clone();
    change.title = "Everything".into();
    change.description = String::new();
    let replaced = alice.update(change, &["*"]).await.unwrap();
    assert_eq!(
        (replaced.title.as_str(), replaced.description.as_str()),
        ("Everything", "")
    );
    assert!(replaced.completed);
    assert_eq!(replaced.complete_time, done.complete_time);

    // Without a mask, the fields set to non-default values are written (AIP-134).
    let no_mask = pb::UpdateTaskRequest {
        task: Some(pb::Task {
            id: task.id.clone(),
            description: "from an unmasked update".into(),
            ..Default::default()
        }),
        update_mask: None,
    };
    let unmasked = alice.update_raw(no_mask).await.unwrap();
    assert_eq!(unmasked.title, "Everything");
    assert_eq!(unmasked.description, "from an unmasked update");
    assert_eq!(alice.get(&task.id).await.unwrap(), unmasked);
}

#[tokio::test]
async fn update_refuses_unknown_mask_paths_bad_values_and_empty_changes_writing_nothing() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let task = alice.create("Original").await;

    let mut change = task.clone();
    change.title = "   ".into();
    let status = assert_error(
        alice.update(change, &["title", "owner_id"]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["update_mask.paths", "task.title"]
    );

    let status = assert_error(
        alice.update(task.clone(), &[]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["update_mask"]);

    let mut change = task.clone();
    change.id = "nope".into();
    change.etag = "garbage".into();
    let status = assert_error(
        alice.update(change, &["title"]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["task.id", "task.etag"]);

    let status = assert_error(
        alice
            .update_raw(pb::UpdateTaskRequest {
                task: None,
                update_mask: None,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["task"]);

    let mut change = task.clone();
    change.id = uuid::Uuid::now_v7().to_string();
    assert_error(
        alice.update(change, &["title"]).await,
        Code::NotFound,
        "TASK_NOT_FOUND",
    );
    assert_eq!(alice.get(&task.id).await.unwrap(), task);
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_the_current_one_succeeds() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let task = alice.create("v1").await;
    let mut change = task.clone();
    change.title = "v2".into();
    let v2 = alice.update(change, &["title"]).await.unwrap();

    let mut stale = task.clone();
    stale.title = "lost update".into();
    assert_error(
        alice.update(stale, &["title"]).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    assert_error(
        alice.delete(&task.id, &task.etag).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    assert_eq!(alice.get(&task.id).await.unwrap(), v2);

    let mut fresh = v2.clone();
    fresh.title = "v3".into();
    assert_eq!(alice.update(fresh, &["title"]).await.unwrap().title, "v3");
}

#[tokio::test]
async fn toggle_flips_completion_and_records_when_it_was_completed() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let task = alice.create("Water plants").await;
    stack.advance(60);
    let done = alice.toggle(&task.id).await.unwrap();
    assert!(done.completed);
    assert_eq!(done.complete_time, done.update_time);
    assert!(seconds(&done.complete_time) > seconds(&task.create_time));
    assert_ne!(done.etag, task.etag);

    stack.advance(60);
    let reopened = alice.toggle(&task.id).await.unwrap();
    assert!(!reopened.completed);
    assert!(reopened.complete_time.is_none());
    assert!(seconds(&reopened.update_time) > seconds(&done.update_time));

    assert_error(
        alice.toggle("x").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_error(
        alice.toggle(&uuid::Uuid::now_v7().to_string()).await,
        Code::NotFound,
        "TASK_NOT_FOUND",
    );
}

#[tokio::test]
async fn delete_removes_the_task_once() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let keep = alice.create("keep").await;
    let task = alice.create("remove").await;
    alice.delete(&task.id, &task.etag).await.unwrap();
    assert_error(alice.get(&task.id).await, Code::NotFound, "TASK_NOT_FOUND");
    assert_error(
        alice.delete(&task.id, "").await,
        Code::NotFound,
        "TASK_NOT_FOUND",
    );
    assert_error(
        alice.delete("", "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(alice.all_ids().await, [keep.id]);
}
