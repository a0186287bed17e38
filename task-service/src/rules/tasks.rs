//! What the task-service decides about a user's tasks: every operation is scoped to its
//! [`Owner`], every write is stamped with the clock's time, and creates stop at the quota.
//! (The per-user change log of live tasks will be written here, beside each change.)

use super::purges::PurgedOwners;
use crate::{
    domain::{
        CompletedFilter, Etag, NewTask, Owner, Page, PageSize, Task, TaskChanges, TaskId, TaskQuota,
    },
    error::TaskError,
    store::tasks::OwnedTasks,
};
use clock::SharedClock;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use uuid::Uuid;

/// Each user's tasks.
#[derive(Clone)]
pub struct Tasks {
    db: DatabaseConnection,
    clock: SharedClock,
    quota: TaskQuota,
    /// Deleted accounts, whose tokens that have not expired yet are refused.
    purged: Arc<PurgedOwners>,
}

impl Tasks {
    /// Tasks in `db`, stamped by `clock`, at most `quota` per user, refused to the accounts
    /// in `purged`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        quota: TaskQuota,
        purged: Arc<PurgedOwners>,
    ) -> Self {
        Self {
            db,
            clock,
            quota,
            purged,
        }
    }

    /// `owner`'s tasks, unless the account was deleted. (What this replica knows of deletions
    /// may lag a purge made through another by a few seconds; a create checks the database
    /// itself, in its insert.)
    fn of(&self, owner: Owner) -> Result<OwnedTasks<'_>, TaskError> {
        if self.purged.contains(owner.user_id()) {
            return Err(TaskError::Unauthenticated("the account was deleted".into()));
        }
        Ok(OwnedTasks::of(&self.db, owner))
    }

    /// Creates a task (or, for a retried `request_id`, returns the one it made).
    pub async fn create(&self, owner: Owner, new: NewTask) -> Result<Task, TaskError> {
        self.of(owner)?
            .create(new, self.clock.now(), self.quota)
            .await
    }

    /// One task.
    pub async fn get(&self, owner: Owner, id: TaskId) -> Result<Task, TaskError> {
        self.of(owner)?.get(id).await
    }

    /// Up to `size` tasks older than `after` (or the newest), newest first.
    pub async fn list(
        &self,
        owner: Owner,
        filter: CompletedFilter,
        after: Option<Uuid>,
        size: PageSize,
    ) -> Result<Page, TaskError> {
        self.of(owner)?.list(filter, after, size).await
    }

    /// Writes `changes`, only if the task still has `etag` when one is given.
    pub async fn update(
        &self,
        owner: Owner,
        id: TaskId,
        changes: TaskChanges,
        etag: Option<Etag>,
    ) -> Result<Task, TaskError> {
        self.of(owner)?
            .update(id, changes, etag, self.clock.now())
            .await
    }

    /// Flips completion.
    pub async fn toggle(&self, owner: Owner, id: TaskId) -> Result<Task, TaskError> {
        self.of(owner)?.toggle(id, self.clock.now()).await
    }

    /// Deletes a task, only if it still has `etag` when one is given.
    pub async fn delete(
        &self,
        owner: Owner,
        id: TaskId,
        etag: Option<Etag>,
    ) -> Result<(), TaskError> {
        self.of(owner)?.delete(id, etag).await
    }
}
