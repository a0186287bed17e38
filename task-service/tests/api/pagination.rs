//! ListTasks: newest first, keyset pages with opaque tamper-evident tokens (AIP-158).

use crate::helpers::{TestStack, User, assert_error, violated_fields};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use todo_api::todo::task::v1 as pb;
use tonic::Code;

async fn create_many(user: &User, n: usize) -> Vec<pb::Task> {
    let mut created = Vec::new();
    for i in 0..n {
        created.push(user.create(&format!("task {i}")).await);
    }
    created
}

fn ids(tasks: &[pb::Task]) -> Vec<String> {
    tasks.iter().map(|t| t.id.clone()).collect()
}

#[tokio::test]
async fn pages_list_every_task_once_newest_first() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let mut created = create_many(&alice, 7).await;
    created.reverse();
    let listed = alice.list_all(3, None).await;
    assert_eq!(ids(&listed), ids(&created));

    // Exactly one full page has no next token.
    let page = alice
        .list(pb::ListTasksRequest {
            page_size: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.tasks.len(), 7);
    assert!(page.next_page_token.is_empty());
}

#[tokio::test]
async fn tasks_created_between_pages_are_neither_skipped_nor_repeated() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let before = create_many(&alice, 6).await;

    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut created_during = Vec::new();
    loop {
        let page = alice
            .list(pb::ListTasksRequest {
                page_size: 2,
                page_token,
                completed: None,
            })
            .await
            .unwrap();
        seen.extend(page.tasks);
        created_during.push(alice.create("created while paging").await);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut expected = ids(&before);
    expected.reverse();
    assert_eq!(
        ids(&seen),
        expected,
        "every task that existed, once, in order"
    );
    // A new listing shows the new tasks first.
    let fresh = alice.list_all(50, None).await;
    assert_eq!(fresh.len(), before.len() + created_during.len());
    assert_eq!(fresh[0].id, created_during.last().unwrap().id);
}

#[tokio::test]
async fn page_size_defaults_to_50_is_capped_at_1000_and_may_not_be_negative() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    create_many(&alice, 51).await;
    let default = alice.list(pb::ListTasksRequest::default()).await.unwrap();
    assert_eq!(default.tasks.len(), 50);
    assert!(!default.next_page_token.is_empty());
    let huge = alice
        .list(pb::ListTasksRequest {
            page_size: i32::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(huge.tasks.len(), 51);
    assert!(huge.next_page_token.is_empty());
    let status = assert_error(
        alice
            .list(pb::ListTasksRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn the_completed_filter_shows_open_or_done_tasks_across_pages() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let created = create_many(&alice, 5).await;
    for task in created.iter().step_by(2) {
        alice.toggle(&task.id).await.unwrap();
    }
    let done = alice.list_all(1, Some(true)).await;
    let open = alice.list_all(1, Some(false)).await;
    assert_eq!(done.len(), 3);
    assert_eq!(open.len(), 2);
    assert!(done.iter().all(|t| t.completed) && open.iter().all(|t| !t.completed));
    assert_eq!(alice.list_all(2, None).await.len(), 5);
}

#[tokio::test]
async fn altered_or_refiltered_page_tokens_are_refused() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    create_many(&alice, 3).await;
    let page = alice
        .list(pb::ListTasksRequest {
            page_size: 1,
            completed: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let token = page.next_page_token;

    let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
    bytes[5] ^= 0x01;
    let altered = URL_SAFE_NO_PAD.encode(&bytes);
    for (bad, completed, hint) in [
        (altered.as_str(), Some(false), "issued"),
        ("garbage!", Some(false), "issued"),
        (token.as_str(), None, "different filter"),
        (token.as_str(), Some(true), "different filter"),
    ] {
        let status = assert_error(
            alice
                .list(pb::ListTasksRequest {
                    page_size: 1,
                    page_token: bad.into(),
                    completed,
                })
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["page_token"]);
        assert!(status.message().contains(hint), "{status:?}");
    }
    // The untouched token still works with its own filter.
    let next = alice
        .list(pb::ListTasksRequest {
            page_size: 1,
            page_token: token,
            completed: Some(false),
        })
        .await
        .unwrap();
    assert_eq!(next.tasks.len(), 1);
}
