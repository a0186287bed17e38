//! Concurrent writers: conditional updates and idempotent creates decided by the database.

use crate::helpers::TestStack;
use todo_api::todo::task::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn of_concurrent_updates_with_the_same_etag_exactly_one_wins() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let task = alice.create("contended").await;

    let writers = (0..10).map(|i| {
        let alice = alice.clone();
        let mut change = task.clone();
        change.title = format!("writer {i}");
        tokio::spawn(async move { alice.update(change, &["title"]).await })
    });
    let mut winners = Vec::new();
    let mut aborted = 0;
    for writer in writers.collect::<Vec<_>>() {
        match writer.await.unwrap() {
            Ok(updated) => winners.push(updated),
            Err(status) if status.code() == Code::Aborted => aborted += 1,
            Err(status) => panic!("unexpected error: {status:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one conditional update wins");
    assert_eq!(aborted, 9);
    assert_eq!(alice.get(&task.id).await.unwrap(), winners[0]);
}

#[tokio::test]
async fn concurrent_retries_of_one_create_make_one_task() {
    let stack = TestStack::spawn().await;
    let alice = stack.user("alice@example.com").await;
    let request = pb::CreateTaskRequest {
        title: "only once".into(),
        description: String::new(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let retries: Vec<_> = (0..8)
        .map(|_| {
            let alice = alice.clone();
            let request = request.clone();
            tokio::spawn(async move { alice.try_create(request).await })
        })
        .collect();
    let mut ids = Vec::new();
    for retry in retries {
        ids.push(retry.await.unwrap().expect("every retry succeeds").id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(alice.list_all(0, None).await.len(), 1);
}
