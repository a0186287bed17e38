//! Every request of the API becomes domain values here, in one place: each conversion parses
//! every field, collects every violation (INVALID_ARGUMENT lists them all at once), and only
//! then hands the handler values that are already valid.

use crate::{
    domain::Position,
    domain::{
        CompletedFilter, Description, Etag, ListQuery, NewTask, PageSize, RequestId, TaskChanges,
        TaskId, Title,
    },
    error::TaskError,
    rules::{PageTokens, resume_token},
};
use grpc_edge::violations::FieldViolations;
use todo_api::todo::task::v1 as pb;
use uuid::Uuid;

impl TryFrom<pb::CreateTaskRequest> for NewTask {
    type Error = TaskError;

    fn try_from(req: pb::CreateTaskRequest) -> Result<Self, TaskError> {
        let mut v = FieldViolations::new();
        let title = Title::parse(&req.title, "title", &mut v);
        let description = Description::parse(req.description, "description", &mut v);
        let request_id = RequestId::parse_optional(&req.request_id, "request_id", &mut v);
        let new = match (title, description) {
            (Some(title), Some(description)) => Some(Self {
                title,
                description,
                request_id,
            }),
            _ => None,
        };
        v.finish(new).map_err(TaskError::InvalidArgument)
    }
}

/// The position a WatchTasks request resumes from: `None` (from now) when it has no token.
pub fn parse_resume_token(req: &pb::WatchTasksRequest) -> Result<Option<Position>, TaskError> {
    if req.resume_token.trim().is_empty() {
        return Ok(None);
    }
    let mut v = FieldViolations::new();
    let position = resume_token::decode(&req.resume_token);
    if position.is_none() {
        v.add(
            "resume_token",
            "is not a resume token from ListTasks or WatchTasks: send one as received, or none to watch from now",
        );
    }
    v.finish(position.map(Some))
        .map_err(TaskError::InvalidArgument)
}

impl TryFrom<&pb::GetTaskRequest> for TaskId {
    type Error = TaskError;

    fn try_from(req: &pb::GetTaskRequest) -> Result<Self, TaskError> {
        let mut v = FieldViolations::new();
        let id = TaskId::parse(&req.id, "id", &mut v);
        v.finish(id).map_err(TaskError::InvalidArgument)
    }
}

impl TryFrom<&pb::ToggleTaskRequest> for TaskId {
    type Error = TaskError;

    fn try_from(req: &pb::ToggleTaskRequest) -> Result<Self, TaskError> {
        let mut v = FieldViolations::new();
        let id = TaskId::parse(&req.id, "id", &mut v);
        v.finish(id).map_err(TaskError::InvalidArgument)
    }
}

/// A valid DeleteTask request.
#[derive(Debug)]
pub struct Deletion {
    pub id: TaskId,
    pub etag: Option<Etag>,
}

impl TryFrom<&pb::DeleteTaskRequest> for Deletion {
    type Error = TaskError;

    fn try_from(req: &pb::DeleteTaskRequest) -> Result<Self, TaskError> {
        let mut v = FieldViolations::new();
        let id = TaskId::parse(&req.id, "id", &mut v);
        let etag = Etag::parse_optional(&req.etag, "etag", &mut v);
        let deletion = id.map(|id| Self { id, etag });
        v.finish(deletion).map_err(TaskError::InvalidArgument)
    }
}

/// A valid UpdateTask request.
#[derive(Debug)]
pub struct Update {
    pub id: TaskId,
    pub etag: Option<Etag>,
    pub changes: TaskChanges,
}

impl TryFrom<pb::UpdateTaskRequest> for Update {
    type Error = TaskError;

    fn try_from(req: pb::UpdateTaskRequest) -> Result<Self, TaskError> {
        let mut v = FieldViolations::new();
        let Some(mut task) = req.task else {
            v.add("task", "is required (with at least its id)");
            return Err(TaskError::InvalidArgument(v));
        };
        let id = TaskId::parse(&task.id, "task.id", &mut v);
        let etag = Etag::parse_optional(&std::mem::take(&mut task.etag), "task.etag", &mut v);
        let changes = task_changes(task, req.update_mask, &mut v);
        let update = match (id, changes) {
            (Some(id), Some(changes)) => Some(Self { id, etag, changes }),
            _ => None,
        };
        v.finish(update).map_err(TaskError::InvalidArgument)
    }
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

impl ListQuery {
    /// Parses `req` for `owner`, whose page tokens `page_tokens` signed.
    pub fn parse(
        req: &pb::ListTasksRequest,
        owner: Uuid,
        page_tokens: &PageTokens,
    ) -> Result<Self, TaskError> {
        let filter = CompletedFilter::from(req.completed);
        let mut v = FieldViolations::new();
        let size = PageSize::parse(req.page_size, "page_size", &mut v);
        let after = if req.page_token.is_empty() {
            None
        } else {
            match page_tokens.decode(&req.page_token, owner, filter) {
                Ok(after) => Some(after),
                Err(error) => {
                    v.add("page_token", error.to_string());
                    None
                }
            }
        };
        let query = size.map(|size| Self {
            filter,
            size,
            after,
        });
        v.finish(query).map_err(TaskError::InvalidArgument)
    }
}
