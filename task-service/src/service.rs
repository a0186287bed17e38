//! The gRPC face of the task-service: each handler takes the verified [`Caller`], parses the
//! request at the edge, calls one method of the caller's [`Tasks`] repository, and maps the
//! result. No business logic lives here.

use crate::{
    auth::Caller,
    domain::{
        CompletedFilter, Description, Etag, NewTask, PageSize, RequestId, TaskChanges, TaskId,
        Title,
    },
    error::TaskError,
    page_token::PageTokens,
    repo::{Task, Tasks},
};
use sea_orm::DatabaseConnection;
use shared::{
    clock::SharedClock,
    proto::{
        timestamp,
        todo::task::v1::{self as pb, task_service_server::TaskService},
    },
    status::FieldViolations,
};
use tonic::{Request, Response, Status};
use tracing::{Span, field::display, instrument};

/// Implements `todo.task.v1.TaskService`.
#[derive(Clone)]
pub struct TaskApi {
    db: DatabaseConnection,
    clock: SharedClock,
    page_tokens: PageTokens,
}

impl TaskApi {
    /// Serves RPCs from `db`, stamping times from `clock`.
    pub fn new(db: DatabaseConnection, clock: SharedClock, page_tokens: PageTokens) -> Self {
        Self {
            db,
            clock,
            page_tokens,
        }
    }

    /// The verified caller of `request` (recorded on the RPC's span) and their tasks.
    fn caller<T>(&self, request: &Request<T>) -> Result<(Caller, Tasks<'_>), TaskError> {
        let caller = Caller::of(request)?;
        Span::current().record("user_id", display(caller.user_id()));
        let tasks = Tasks::of(&self.db, &caller);
        Ok((caller, tasks))
    }
}

fn invalid(violations: FieldViolations) -> Status {
    TaskError::InvalidArgument(violations).into()
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

/// Parses `id` and records it on the span.
fn task_id(raw: &str, field: &str, v: &mut FieldViolations) -> Option<TaskId> {
    let id = TaskId::parse(raw, field, v)?;
    Span::current().record("task_id", display(id));
    Some(id)
}

/// The fields an UpdateTask writes: those named by the mask, or (no mask) every field set to
/// a non-default value (AIP-134).
fn task_changes(
    task: pb::Task,
    mask: Option<prost_types::FieldMask>,
    v: &mut FieldViolations,
) -> Option<TaskChanges> {
    let (mut title, mut description, mut completed) = (false, false, false);
    match mask {
        None => {
            title = !task.title.is_empty();
            description = !task.description.is_empty();
            completed = task.completed;
        }
        Some(mask) => {
            for path in &mask.paths {
                match path.trim() {
                    "title" => title = true,
                    "description" => description = true,
                    "completed" => completed = true,
                    "*" => (title, description, completed) = (true, true, true),
                    other => v.add(
                        "update_mask.paths",
                        format!(
                            "unknown field {other:?}: expected title, description, completed or *"
                        ),
                    ),
                }
            }
        }
    }
    let changes = TaskChanges {
        title: title
            .then(|| Title::parse(&task.title, "task.title", v))
            .flatten(),
        description: description
            .then(|| Description::parse(task.description, "task.description", v))
            .flatten(),
        completed: completed.then_some(task.completed),
    };
    if changes.is_empty() && v.is_empty() {
        v.add(
            "update_mask",
            "names no field to change (title, description or completed)",
        );
    }
    v.is_empty().then_some(changes)
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    #[instrument(name = "CreateTask", skip_all, fields(user_id, task_id))]
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (_, tasks) = self.caller(&request)?;
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        let title = Title::parse(&req.title, "title", &mut v);
        let description = Description::parse(req.description, "description", &mut v);
        let request_id = RequestId::parse_optional(&req.request_id, "request_id", &mut v);
        let (Some(title), Some(description), Some(request_id)) = (title, description, request_id)
        else {
            return Err(invalid(v));
        };
        let new = NewTask {
            title,
            description,
            request_id,
        };
        let task = tasks.create(new, self.clock.now()).await?;
        Span::current().record("task_id", display(task.id));
        Ok(Response::new(task_pb(task)))
    }

    #[instrument(name = "GetTask", skip_all, fields(user_id, task_id))]
    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (_, tasks) = self.caller(&request)?;
        let mut v = FieldViolations::new();
        let Some(id) = task_id(&request.get_ref().id, "id", &mut v) else {
            return Err(invalid(v));
        };
        Ok(Response::new(task_pb(tasks.get(id).await?)))
    }

    #[instrument(name = "ListTasks", skip_all, fields(user_id, page_size, count))]
    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let (caller, tasks) = self.caller(&request)?;
        let req = request.into_inner();
        let filter = CompletedFilter::from(req.completed);
        let mut v = FieldViolations::new();
        let size = PageSize::parse(req.page_size, "page_size", &mut v);
        let after = if req.page_token.is_empty() {
            None
        } else {
            match self
                .page_tokens
                .decode(&req.page_token, caller.user_id(), filter)
            {
                Ok(after) => Some(after),
                Err(error) => {
                    v.add("page_token", error.to_string());
                    None
                }
            }
        };
        let Some(size) = size.filter(|_| v.is_empty()) else {
            return Err(invalid(v));
        };
        Span::current().record("page_size", size.0);
        let page = tasks.list(filter, after, size).await?;
        Span::current().record("count", page.tasks.len());
        let next_page_token = match page.tasks.last() {
            Some(last) if page.more => self.page_tokens.encode(caller.user_id(), filter, last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTasksResponse {
            tasks: page.tasks.into_iter().map(task_pb).collect(),
            next_page_token,
        }))
    }

    #[instrument(name = "UpdateTask", skip_all, fields(user_id, task_id))]
    async fn update_task(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (_, tasks) = self.caller(&request)?;
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        let Some(mut task) = req.task else {
            v.add("task", "is required (with at least its id)");
            return Err(invalid(v));
        };
        let id = task_id(&task.id, "task.id", &mut v);
        let etag = Etag::parse_optional(&std::mem::take(&mut task.etag), "task.etag", &mut v);
        let changes = task_changes(task, req.update_mask, &mut v);
        let (Some(id), Some(etag), Some(changes)) = (id, etag, changes) else {
            return Err(invalid(v));
        };
        let task = tasks.update(id, changes, etag, self.clock.now()).await?;
        Ok(Response::new(task_pb(task)))
    }

    #[instrument(name = "DeleteTask", skip_all, fields(user_id, task_id))]
    async fn delete_task(
        &self,
        request: Request<pb::DeleteTaskRequest>,
    ) -> Result<Response<()>, Status> {
        let (_, tasks) = self.caller(&request)?;
        let req = request.get_ref();
        let mut v = FieldViolations::new();
        let id = task_id(&req.id, "id", &mut v);
        let etag = Etag::parse_optional(&req.etag, "etag", &mut v);
        let (Some(id), Some(etag)) = (id, etag) else {
            return Err(invalid(v));
        };
        tasks.delete(id, etag).await?;
        Ok(Response::new(()))
    }

    #[instrument(name = "ToggleTask", skip_all, fields(user_id, task_id))]
    async fn toggle_task(
        &self,
        request: Request<pb::ToggleTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (_, tasks) = self.caller(&request)?;
        let mut v = FieldViolations::new();
        let Some(id) = task_id(&request.get_ref().id, "id", &mut v) else {
            return Err(invalid(v));
        };
        Ok(Response::new(task_pb(
            tasks.toggle(id, self.clock.now()).await?,
        )))
    }
}
