//! What the rules answer, as the API's messages.

use crate::{
    domain::{ChangeKind, Etag, Page, Task},
    rules::{resume_token, watch::Batch},
};
use prost::Message;
use todo_api::{timestamp, todo::task::v1 as pb};
use uuid::Uuid;

/// The page's tasks as messages, stopping before they would pass `max_bytes` encoded (at
/// least one is always sent), and the id to continue after when tasks remain.
pub fn within_bytes(page: Page, max_bytes: usize) -> (Vec<pb::Task>, Option<Uuid>) {
    let mut tasks = Vec::with_capacity(page.tasks.len());
    let mut bytes = 0;
    let mut last = None;
    for task in page.tasks {
        let id = task.id;
        let message = task_pb(task);
        // The field's tag and length prefix: at most 4 bytes for a task under 2 MiB.
        let size = message.encoded_len() + 4;
        if !tasks.is_empty() && bytes + size > max_bytes {
            return (tasks, last);
        }
        bytes += size;
        last = Some(id);
        tasks.push(message);
    }
    (tasks, if page.more { last } else { None })
}

pub fn task_pb(task: Task) -> pb::Task {
    pb::Task {
        id: task.id.to_string(),
        title: task.title,
        description: task.description,
        completed: task.completed,
        complete_time: task.completed_at.map(timestamp),
        create_time: Some(timestamp(task.created_at)),
        update_time: Some(timestamp(task.updated_at)),
        etag: Etag::of_version(task.version),
    }
}

/// A stream's message: its changes and where to resume after them.
pub fn watch_pb(batch: Batch) -> pb::WatchTasksResponse {
    let changes = batch
        .changes
        .into_iter()
        .map(|change| pb::TaskChange {
            kind: match change.kind {
                ChangeKind::Created => pb::task_change::Kind::Created,
                ChangeKind::Updated => pb::task_change::Kind::Updated,
                ChangeKind::Deleted => pb::task_change::Kind::Deleted,
            }
            .into(),
            task: change.task.map(task_pb),
            task_id: change.task_id.to_string(),
            change_time: Some(timestamp(change.changed_at)),
        })
        .collect();
    pb::WatchTasksResponse {
        changes,
        resume_token: resume_token::encode(batch.position),
    }
}
