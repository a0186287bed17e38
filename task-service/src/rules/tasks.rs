//! What the task-service decides about a user's tasks: every operation is scoped to its
//! [`Owner`], every write is stamped with the clock's time (the database appends it to the
//! owner's change log in the same statement), moves the owner's [`Stamp`] (the ListTasks
//! cache's check) and then wakes the owner's streams here, and creates stop at the quota.

use super::{page_cache::Freshness, purges::PurgedOwners, watch::Feed};
use crate::{
    domain::{
        CompletedFilter, Etag, NewTask, Owner, Page, PageSize, Stamp, Task, TaskChanges, TaskId,
        TaskQuota,
    },
    error::TaskError,
    store::tasks::OwnedTasks,
};
use clock::SharedClock;
use sea_orm::DatabaseConnection;
use std::{future::Future, sync::Arc};
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
    /// How an owner's current [`Stamp`] is known.
    freshness: Arc<Freshness>,
}

impl Tasks {
    /// Tasks in `db`, stamped by `clock`, at most `quota` per user, refused to the accounts
    /// in `purged`; writes move `freshness` and wake `feed`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        quota: TaskQuota,
        purged: Arc<PurgedOwners>,
        feed: Arc<Feed>,
        freshness: Arc<Freshness>,
    ) -> Self {
        Self {
            db,
            clock,
            quota,
            purged,
            feed,
            freshness,
        }
    }

    /// Runs a write of `owner`'s through [`Freshness::write`] and, if it succeeded, wakes
    /// their streams here.
    async fn written<T: Send + 'static>(
        &self,
        owner: Owner,
        write: impl Future<Output = Result<T, TaskError>> + Send + 'static,
    ) -> Result<T, TaskError> {
        let result = self.freshness.write(owner.user_id(), write).await;
        if result.is_ok() {
            self.feed.changed(owner.user_id());
        }
        result
    }

    /// `owner`'s stamp now, unless the account was deleted: in memory on SQLite, a read of the
    /// change log's committed head begun after this call on PostgreSQL; `None` with the cache
    /// off.
    pub async fn stamp(&self, owner: Owner) -> Result<Option<Stamp>, TaskError> {
        self.refuse_purged(owner)?;
        self.freshness.current(owner.user_id()).await
    }

    /// `owner`'s tasks, unless the account was deleted. (What this replica knows of deletions
    /// may lag a purge made through another by a few seconds; a create checks the database
    /// itself, in its insert.)
    fn of(&self, owner: Owner) -> Result<OwnedTasks, TaskError> {
        self.refuse_purged(owner)?;
        Ok(OwnedTasks::of(&self.db, owner))
    }

    /// Refuses a deleted account.
    fn refuse_purged(&self, owner: Owner) -> Result<(), TaskError> {
        if self.purged.contains(owner.user_id()) {
            return Err(TaskError::Unauthenticated("the account was deleted".into()));
        }
        Ok(())
    }

    /// Creates a task (or, for a retried `request_id`, returns the one it made).
    pub async fn create(&self, owner: Owner, new: NewTask) -> Result<Task, TaskError> {
        let (tasks, now, quota) = (self.of(owner)?, self.clock.now(), self.quota);
        self.written(owner, async move { tasks.create(new, now, quota).await })
            .await
    }

    /// One task.
    pub async fn get(&self, owner: Owner, id: TaskId) -> Result<Task, TaskError> {
        self.of(owner)?.get(id).await
    }

    /// Up to `size` tasks older than `after` (or the newest), newest first, the change log's
    /// position they were read at, and the stamp a cache may keep them at.
    pub async fn list(
        &self,
        owner: Owner,
        filter: CompletedFilter,
        after: Option<Uuid>,
        size: PageSize,
    ) -> Result<Page, TaskError> {
        let tasks = self.of(owner)?;
        // SQLite: counted before the snapshot, so any write the page misses moves it after.
        let counted = self.freshness.counted_stamp(owner.user_id());
        let mut page = tasks.list(filter, after, size).await?;
        page.stamp = match (&*self.freshness, counted) {
            (_, Some(stamp)) => Some(stamp),
            // PostgreSQL: the head in the page's snapshot. Position 0 is also what an erased
            // log reads as (a purged account), so a page at 0 is never kept.
            (Freshness::Log(_), None) => (page.position.0 > 0).then_some(Stamp(page.position.0)),
            (Freshness::Off | Freshness::Counted(_), None) => None,
        };
        Ok(page)
    }

    /// Writes `changes`, only if the task still has `etag` when one is given.
    pub async fn update(
        &self,
        owner: Owner,
        id: TaskId,
        changes: TaskChanges,
        etag: Option<Etag>,
    ) -> Result<Task, TaskError> {
        let (tasks, now) = (self.of(owner)?, self.clock.now());
        self.written(
            owner,
            async move { tasks.update(id, changes, etag, now).await },
        )
        .await
    }

    /// Flips completion.
    pub async fn toggle(&self, owner: Owner, id: TaskId) -> Result<Task, TaskError> {
        let (tasks, now) = (self.of(owner)?, self.clock.now());
        self.written(owner, async move { tasks.toggle(id, now).await })
            .await
    }

    /// Deletes a task, only if it still has `etag` when one is given.
    pub async fn delete(
        &self,
        owner: Owner,
        id: TaskId,
        etag: Option<Etag>,
    ) -> Result<(), TaskError> {
        let tasks = self.of(owner)?;
        self.written(owner, async move { tasks.delete(id, etag).await })
            .await
    }
}
