//! The gRPC face of the task-service: each handler takes the verified [`Caller`] (put there
//! by [`auth`]), charges the reply to the unread-replies budget ([`unread`]), parses the
//! request at the edge (`requests`), calls one operation of [`Tasks`], and maps the answer
//! (`replies`). No business logic lives here.

pub mod auth;
pub mod encoded;
pub mod internal;
mod replies;
mod requests;
pub mod unread;

use crate::metrics::{TaskMetrics, Written};
use crate::{
    domain::{ListQuery, MAX_PAGE_BYTES, MAX_TASK_REPLY_BYTES, NewTask, TaskId},
    error::TaskError,
    rules::{PageCache, PageTokens, Tasks, Watches, resume_token},
};
use auth::Caller;
use encoded::Encoded;
use futures_util::Stream;
use grpc_edge::server::AbortOnDrop;
use prost::Message;
use replies::{task_pb, watch_pb, within_bytes};
use requests::{Deletion, Update, parse_resume_token};
use std::{pin::Pin, sync::Arc};
use todo_api::todo::task::v1::{self as pb, task_service_server::TaskService};
use tonic::{Request, Response, Status};
use tracing::{Span, field::display, instrument};
use unread::{Recipient, Reserved, UnreadBudget};

/// ListTasks replies kept, encoded, while they are still true.
pub type ListCache = PageCache<EncodedPage>;

/// A ListTasks reply, encoded once, and how many tasks it holds.
#[derive(Debug, Clone)]
pub struct EncodedPage {
    reply: Encoded,
    tasks: usize,
}

/// Implements `todo.task.v1.TaskService`.
#[derive(Clone)]
pub struct TaskApi {
    tasks: Tasks,
    watches: Watches,
    page_tokens: PageTokens,
    unread: Arc<UnreadBudget>,
    pages: Arc<ListCache>,
    metrics: TaskMetrics,
}

impl TaskApi {
    /// Serves RPCs with `tasks` and `watches`, holding replies for slow readers within
    /// `unread` and answering unchanged ListTasks pages from `pages`.
    pub fn new(
        tasks: Tasks,
        watches: Watches,
        page_tokens: PageTokens,
        unread: UnreadBudget,
        pages: Arc<ListCache>,
        metrics: TaskMetrics,
    ) -> Self {
        Self {
            tasks,
            watches,
            page_tokens,
            unread: Arc::new(unread),
            pages,
            metrics,
        }
    }

    /// The verified caller and a reply of one task charged to them before any work (a write
    /// is then never refused after it was done).
    async fn caller_with_reply<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Caller, Reserved), TaskError> {
        let caller = self.caller(request)?;
        let reserved = self
            .unread
            .reserve(&Recipient::of(&caller, request), MAX_TASK_REPLY_BYTES)
            .await?;
        Ok((caller, reserved))
    }

    /// The verified caller of `request`, recorded on the RPC's span.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, TaskError> {
        let caller = Caller::of(request)?;
        Span::current().record("user_id", display(caller.user_id()));
        Ok(caller)
    }
}

/// Records the task's id on the RPC's span.
fn record<Id: std::fmt::Display>(id: Id) -> Id {
    Span::current().record("task_id", display(&id));
    id
}

/// Makes a WatchTasks stream's messages, each charged to its recipient's unread budget until
/// the next is asked for (the message has left the stream for HTTP/2).
struct Producer {
    stream: crate::rules::watch::Stream,
    unread: Arc<UnreadBudget>,
    recipient: Recipient,
    /// The charge of the last message made.
    held: Option<Reserved>,
}

impl Producer {
    /// The next message (`None` once the stream has ended), and the producer back unless it
    /// has.
    async fn produce(mut self) -> (Option<Self>, Option<Result<pb::WatchTasksResponse, Status>>) {
        // Asked for the next message: the last one has been handed on.
        self.held = None;
        let message = match self.stream.next().await {
            None => return (None, None),
            Some(Err(error)) => return (None, Some(Err(error.into()))),
            Some(Ok(batch)) => watch_pb(batch),
        };
        match self
            .unread
            .reserve(&self.recipient, message.encoded_len())
            .await
        {
            Ok(held) => {
                self.held = Some(held);
                (Some(self), Some(Ok(message)))
            }
            Err(error) => (None, Some(Err(error.into()))),
        }
    }
}

/// A WatchTasks stream as tonic sends it.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchTasksResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TaskService for TaskApi {
    type WatchTasksStream = WatchStream;

    #[instrument(name = "WatchTasks", skip_all, fields(user_id))]
    async fn watch_tasks(
        &self,
        request: Request<pb::WatchTasksRequest>,
    ) -> Result<Response<Self::WatchTasksStream>, Status> {
        let caller = self.caller(&request)?;
        let recipient = Recipient::of(&caller, &request);
        let from = parse_resume_token(request.get_ref())?;
        let stream = self
            .watches
            .open(caller.owner(), from, caller.expires_at())
            .await
            .inspect_err(|error| {
                if let (TaskError::TooManyWatches(_), Some(registry)) =
                    (error, self.metrics.registry())
                {
                    registry.refused(&vec![
                        ("resource", "watch_streams_per_user"),
                        ("reason", "WATCH_STREAMS_PER_USER"),
                    ]);
                }
            })?;
        // Each message is made in a task of its own and charged to the unread-replies budget
        // until the stream is asked for the next one (tonic asks as soon as it has encoded this
        // one, which HTTP/2 may still hold: within the connection's bound on unwritten data).
        // HTTP/2 stops polling a body whose client grants no window: made inline, a read could
        // stall half-way holding a database connection. So a client that stops reading holds
        // one charged message and one handed over, and no connection.
        let producer = Producer {
            stream,
            unread: Arc::clone(&self.unread),
            recipient,
            held: None,
        };
        let messages = futures_util::stream::unfold(Some(producer), |producer| async move {
            let mut task = AbortOnDrop(tokio::spawn(producer?.produce()));
            match (&mut task.0).await {
                Ok((producer, next)) => Some((next?, producer)),
                Err(error) => {
                    let error = TaskError::Internal(format!("a watch message failed: {error}"));
                    Some((Err(error.into()), None))
                }
            }
        });
        Ok(Response::new(Box::pin(messages)))
    }

    #[instrument(name = "CreateTask", skip_all, fields(user_id, task_id))]
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (caller, reply) = self.caller_with_reply(&request).await?;
        let new = NewTask::try_from(request.into_inner())?;
        let task = self.tasks.create(caller.owner(), new).await?;
        self.metrics.written(Written::Created);
        record(&task.id);
        Ok(reply.reply(task_pb(task)))
    }

    #[instrument(name = "GetTask", skip_all, fields(user_id, task_id))]
    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (caller, reply) = self.caller_with_reply(&request).await?;
        let id = record(TaskId::try_from(request.get_ref())?);
        Ok(reply.reply(task_pb(self.tasks.get(caller.owner(), id).await?)))
    }

    #[instrument(name = "ListTasks", skip_all, fields(user_id, page_size, count))]
    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = self.caller(&request)?;
        let recipient = Recipient::of(&caller, &request);
        self.unread.has_room(&recipient)?;
        let query = ListQuery::parse(request.get_ref(), caller.user_id(), &self.page_tokens)?;
        Span::current().record("page_size", query.size.0);
        let user = caller.user_id();
        // The same query at the same stamp makes the same reply (page tokens are a MAC of
        // what they hold), so a kept reply is sent again as it was encoded.
        let page = self
            .pages
            .page(&self.tasks, caller.owner(), query, |page| {
                let position = page.position;
                let (tasks, continue_after) = within_bytes(page, MAX_PAGE_BYTES);
                let next_page_token = continue_after
                    .map(|last| self.page_tokens.encode(user, query.filter, last))
                    .unwrap_or_default();
                let count = tasks.len();
                let reply = Encoded::of(&pb::ListTasksResponse {
                    tasks,
                    next_page_token,
                    resume_token: resume_token::encode(position),
                });
                // What it holds: the bytes, their handle and the shared header.
                let bytes = reply.len() + 64;
                (
                    EncodedPage {
                        reply,
                        tasks: count,
                    },
                    bytes,
                )
            })
            .await?;
        Span::current().record("count", page.tasks);
        self.metrics.page(page.tasks);
        // Charged like any reply, from memory or not.
        Ok(self.unread.reply_encoded(&recipient, page.reply).await?)
    }

    #[instrument(name = "UpdateTask", skip_all, fields(user_id, task_id))]
    async fn update_task(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (caller, reply) = self.caller_with_reply(&request).await?;
        let update = Update::try_from(request.into_inner())?;
        let id = record(update.id);
        let task = self
            .tasks
            .update(caller.owner(), id, update.changes, update.etag)
            .await?;
        self.metrics.written(Written::Updated);
        Ok(reply.reply(task_pb(task)))
    }

    #[instrument(name = "DeleteTask", skip_all, fields(user_id, task_id))]
    async fn delete_task(
        &self,
        request: Request<pb::DeleteTaskRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&request)?;
        let deletion = Deletion::try_from(request.get_ref())?;
        self.tasks
            .delete(caller.owner(), record(deletion.id), deletion.etag)
            .await?;
        self.metrics.written(Written::Deleted);
        Ok(Response::new(()))
    }

    #[instrument(name = "ToggleTask", skip_all, fields(user_id, task_id))]
    async fn toggle_task(
        &self,
        request: Request<pb::ToggleTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (caller, reply) = self.caller_with_reply(&request).await?;
        let id = record(TaskId::try_from(request.get_ref())?);
        let task = self.tasks.toggle(caller.owner(), id).await?;
        self.metrics.written(Written::Updated);
        Ok(reply.reply(task_pb(task)))
    }
}
