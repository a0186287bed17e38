//! What the task-service decides about a user's tasks: every operation is scoped to its
//! [`Owner`], every write is stamped with the clock's time (the database appends it to the
//! owner's change log in the same statement) and then wakes the owner's streams here, and
//! creates stop at the quota.

use super::{purges::PurgedOwners, watch::Feed};
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
    /// The owners' streams on this replica, woken after each write.
    feed: Arc<Feed>,
}

impl Tasks {
    /// Tasks in `db`, stamped by `clock`, at most `quota` per user, refused to the accounts
    /// in `purged`; writes wake `feed`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        quota: TaskQuota,
        purged: Arc<PurgedOwners>,
        feed: Arc<Feed>,
    ) -> Self {
        Self {
            db,
            clock,
            quota,
            purged,
            feed,
        }
    }

    /// After a write of `owner`'s committed: wakes their streams here.
    fn written<T>(&self, owner: Owner, result: Result<T, TaskError>) -> Result<T, TaskError> {
        if result.is_ok() {
            self.feed.changed(owner.user_id());
        }
        result
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
        let created = self
            .of(owner)?
            .create(new, self.clock.now(), self.quota)
            .await;
        self.written(owner, created)
    }

    /// One task.
    pub async fn get(&self, owner: Owner, id: TaskId) -> Result<Task, TaskError> {
        self.of(owner)?.get(id).await
    }

    /// Up to `size` tasks older than `after` (or the newest), newest first, and the change
    /// log's position they were read at.
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
        let updated = self
            .of(owner)?
            .update(id, changes, etag, self.clock.now())
            .await;
        self.written(owner, updated)
    }

    /// Flips completion.
    pub async fn toggle(&self, owner: Owner, id: TaskId) -> Result<Task, TaskError> {
        let toggled = self.of(owner)?.toggle(id, self.clock.now()).await;
        self.written(owner, toggled)
    }

    /// Deletes a task, only if it still has `etag` when one is given.
    pub async fn delete(
        &self,
        owner: Owner,
        id: TaskId,
        etag: Option<Etag>,
    ) -> Result<(), TaskError> {
        let deleted = self.of(owner)?.delete(id, etag).await;
        self.written(owner, deleted)
    }
}
