//! The gRPC face of the task-service: each handler takes the verified [`Caller`], parses the
//! request at the edge, calls one method of the caller's [`Tasks`] repository, and maps the
//! result. No business logic lives here.

use crate::{
    auth::Caller,
    domain::{Etag, MAX_PAGE_BYTES, MAX_TASK_REPLY_BYTES, NewTask, TaskId, TaskQuota},
    error::TaskError,
    page_token::PageTokens,
    repo::{Page, Task, Tasks},
    requests::{Deletion, ListQuery, Update},
    unread::{Reserved, UnreadBudget},
};
use clock::SharedClock;
use prost::Message;
use sea_orm::DatabaseConnection;
use todo_api::{
    timestamp,
    todo::task::v1::task_service_server::TaskService,
    todo::task::v1::{self as pb},
};
use tonic::{Request, Response, Status};
use tracing::{Span, field::display, instrument};
use uuid::Uuid;

/// Implements `todo.task.v1.TaskService`.
#[derive(Clone)]
pub struct TaskApi {
    db: DatabaseConnection,
    clock: SharedClock,
    page_tokens: PageTokens,
    quota: TaskQuota,
    unread: std::sync::Arc<UnreadBudget>,
}

impl TaskApi {
    /// Serves RPCs from `db`, stamping times from `clock`, with at most `quota` tasks per user
    /// and replies held for slow readers within `unread`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        page_tokens: PageTokens,
        quota: TaskQuota,
        unread: UnreadBudget,
    ) -> Self {
        Self {
            db,
            clock,
            page_tokens,
            quota,
            unread: std::sync::Arc::new(unread),
        }
    }

    /// The verified caller, their tasks, and a reply of one task charged to them before any
    /// work (a write is then never refused after it was done).
    fn caller_with_reply<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Tasks<'_>, Reserved), TaskError> {
        let (caller, tasks) = self.caller(request)?;
        let reserved = self.unread.reserve(&caller, MAX_TASK_REPLY_BYTES)?;
        Ok((tasks, reserved))
    }

    /// The verified caller of `request` (recorded on the RPC's span) and their tasks.
    fn caller<T>(&self, request: &Request<T>) -> Result<(Caller, Tasks<'_>), TaskError> {
        let caller = Caller::of(request)?;
        Span::current().record("user_id", display(caller.user_id()));
        let tasks = Tasks::of(&self.db, &caller);
        Ok((caller, tasks))
    }
}

/// The page's tasks as messages, stopping before they would pass `max_bytes` encoded (at
/// least one is always sent), and the id to continue after when tasks remain.
fn within_bytes(page: Page, max_bytes: usize) -> (Vec<pb::Task>, Option<Uuid>) {
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

fn task_pb(task: Task) -> pb::Task {
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

/// Records the task's id on the RPC's span.
fn record<Id: std::fmt::Display>(id: Id) -> Id {
    Span::current().record("task_id", display(&id));
    id
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    #[instrument(name = "CreateTask", skip_all, fields(user_id, task_id))]
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (tasks, reply) = self.caller_with_reply(&request)?;
        let new = NewTask::try_from(request.into_inner())?;
        let task = tasks.create(new, self.clock.now(), self.quota).await?;
        record(&task.id);
        Ok(reply.reply(task_pb(task)))
    }

    #[instrument(name = "GetTask", skip_all, fields(user_id, task_id))]
    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (tasks, reply) = self.caller_with_reply(&request)?;
        let id = record(TaskId::try_from(request.get_ref())?);
        Ok(reply.reply(task_pb(tasks.get(id).await?)))
    }

    #[instrument(name = "ListTasks", skip_all, fields(user_id, page_size, count))]
    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let (caller, tasks) = self.caller(&request)?;
        self.unread.has_room(&caller)?;
        let query = ListQuery::parse(request.get_ref(), caller.user_id(), &self.page_tokens)?;
        Span::current().record("page_size", query.size.0);
        let page = tasks.list(query.filter, query.after, query.size).await?;
        let (tasks, continue_after) = within_bytes(page, MAX_PAGE_BYTES);
        Span::current().record("count", tasks.len());
        let next_page_token = continue_after
            .map(|last| {
                self.page_tokens
                    .encode(caller.user_id(), query.filter, last)
            })
            .unwrap_or_default();
        let page = pb::ListTasksResponse {
            tasks,
            next_page_token,
        };
        Ok(self.unread.reply(&caller, page)?)
    }

    #[instrument(name = "UpdateTask", skip_all, fields(user_id, task_id))]
    async fn update_task(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (tasks, reply) = self.caller_with_reply(&request)?;
        let update = Update::try_from(request.into_inner())?;
        let id = record(update.id);
        let task = tasks
            .update(id, update.changes, update.etag, self.clock.now())
            .await?;
        Ok(reply.reply(task_pb(task)))
    }

    #[instrument(name = "DeleteTask", skip_all, fields(user_id, task_id))]
    async fn delete_task(
        &self,
        request: Request<pb::DeleteTaskRequest>,
    ) -> Result<Response<()>, Status> {
        let (_, tasks) = self.caller(&request)?;
        let deletion = Deletion::try_from(request.get_ref())?;
        tasks.delete(record(deletion.id), deletion.etag).await?;
        Ok(Response::new(()))
    }

    #[instrument(name = "ToggleTask", skip_all, fields(user_id, task_id))]
    async fn toggle_task(
        &self,
        request: Request<pb::ToggleTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (tasks, reply) = self.caller_with_reply(&request)?;
        let id = record(TaskId::try_from(request.get_ref())?);
        Ok(reply.reply(task_pb(tasks.toggle(id, self.clock.now()).await?)))
    }
}
