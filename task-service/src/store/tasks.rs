//! The only way to reach the `tasks` table: an [`OwnedTasks`] repository that exists only for
//! an [`Owner`] (made from a verified caller) and puts `owner_id = owner` into the WHERE clause
//! of every statement it runs. Writes are single statements filtered by id *and* owner ("no row"
//! means NOT_FOUND, whether the task is missing or someone else's; nothing is fetched and then
//! checked in Rust); the database's trigger on `tasks` appends each to the owner's change log
//! in the same statement (`migrations`, `m20261204_000002`). A list reads the log's head and
//! its page in one snapshot.

use crate::{
    domain::{
        CompletedFilter, Etag, NewTask, Owner, Page, PageSize, RequestId, Task, TaskChanges,
        TaskId, TaskQuota,
    },
    error::TaskError,
};
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr,
    EntityTrait, ExprTrait, FromQueryResult, IsolationLevel, Iterable, ModelTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, OnConflict, Query, SimpleExpr},
};
use uuid::Uuid;

use super::{
    changes,
    entity::task::{self as entity, Column, Entity},
    purged,
};

/// The answer to a write with the token of an account deleted since: the token is no good.
fn purged_owner() -> TaskError {
    TaskError::Unauthenticated("the account was deleted".into())
}

/// A task row as read (straight from the columns [`TASK_COLUMNS`] names).
#[derive(FromQueryResult)]
struct Row {
    id: Uuid,
    title: String,
    description: String,
    completed: bool,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl From<Row> for Task {
    fn from(row: Row) -> Self {
        Self {
            id: row.id,
            title: row.title,
            description: row.description,
            completed: row.completed,
            completed_at: row.completed_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// The columns a [`Task`] is read from: not the owner (the query is scoped to it) nor the
/// request id, so a list reads and converts only what the reply carries.
const TASK_COLUMNS: [Column; 8] = [
    Column::Id,
    Column::Title,
    Column::Description,
    Column::Completed,
    Column::CompletedAt,
    Column::CreatedAt,
    Column::UpdatedAt,
    Column::Version,
];

impl From<entity::Model> for Task {
    fn from(m: entity::Model) -> Self {
        Self {
            id: m.id,
            title: m.title,
            description: m.description,
            completed: m.completed,
            completed_at: m.completed_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            version: m.version,
        }
    }
}

/// One owner's tasks, and only theirs (owning a handle on the pool, so a write can run to its
/// end in a task of its own).
pub struct OwnedTasks {
    db: DatabaseConnection,
    owner: Uuid,
}

impl OwnedTasks {
    /// The tasks `owner` owns, in `db`.
    pub fn of(db: &DatabaseConnection, owner: Owner) -> Self {
        Self {
            db: db.clone(),
            owner: owner.user_id(),
        }
    }

    /// Every statement's WHERE clause starts here.
    fn owned(&self) -> SimpleExpr {
        Column::OwnerId.eq(self.owner)
    }

    fn one(&self, id: TaskId) -> SimpleExpr {
        self.owned().and(Column::Id.eq(id.0))
    }

    /// Creates a task; with a request id, returns the task an earlier call with the same id
    /// made instead (concurrent retries included: the unique index decides). Refused once the
    /// caller has `quota` tasks (checked before the insert: concurrent creates of one user
    /// can pass it by at most their number in flight).
    pub async fn create(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        quota: TaskQuota,
    ) -> Result<Task, TaskError> {
        if let TaskQuota(Some(limit)) = quota
            && Entity::find().filter(self.owned()).count(&self.db).await? >= limit
        {
            // A retry of a create that made its task still gets that task.
            if let Some(request_id) = &new.request_id
                && let Some(task) = self.made_by(&self.db, request_id).await?
            {
                return Ok(task.into());
            }
            return Err(TaskError::QuotaExceeded(limit));
        }
        // What the database keeps (PostgreSQL: microseconds), so that the answer built here is
        // what every later read of the task answers.
        let now = now.trunc_subsecs(6);
        let model = entity::Model {
            id: Uuid::now_v7(),
            owner_id: self.owner,
            title: new.title.0,
            description: new.description.0,
            completed: false,
            completed_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
            request_id: new.request_id.map(|r| r.0),
        };
        // One statement on both databases. SQLite: writes are serialized and each statement
        // sees the latest commit, so the insert's own tombstone check is enough. PostgreSQL: a
        // trigger takes the owner's lock shared before the row goes in and skips it if the
        // owner was purged meanwhile (see `purged`).
        self.insert_once(&self.db, model, new.request_id).await
    }

    /// Inserts `model` unless the owner was purged; with a request id, unless the owner already
    /// used it, and then answers the task that carries it.
    async fn insert_once(
        &self,
        db: &impl ConnectionTrait,
        model: entity::Model,
        request_id: Option<RequestId>,
    ) -> Result<Task, TaskError> {
        let Some(request_id) = request_id else {
            if self.insert_unless_purged(db, &model).await? == 0 {
                return Err(purged_owner());
            }
            return Ok(model.into());
        };
        // Insert unless this owner already used the request id; either way, read back the
        // one task that carries it. If that task is deleted between the two statements, the
        // second attempt inserts.
        for _ in 0..2 {
            self.insert_unless_purged(db, &model).await?;
            if let Some(task) = self.made_by(db, &request_id).await? {
                return Ok(task.into());
            }
            if purged::is_purged(db, self.owner).await? {
                return Err(purged_owner());
            }
        }
        Err(TaskError::Internal(
            "a task with this request id keeps being deleted while it is created".into(),
        ))
    }

    /// Inserts `task` unless its owner was purged, or (with a request id) the owner already
    /// has a task with that request id; returns how many rows were inserted (0 or 1).
    async fn insert_unless_purged(
        &self,
        db: &impl ConnectionTrait,
        task: &entity::Model,
    ) -> Result<u64, DbErr> {
        // Every column, with the task's value for it, in one order.
        let columns: Vec<Column> = Column::iter().collect();
        let values = columns.iter().map(|column| Expr::val(task.get(*column)));
        let guarded = Query::select()
            .exprs(values)
            .and_where(Expr::exists(purged::tombstone_of(self.owner)).not())
            .to_owned();
        let mut insert = Query::insert();
        insert
            .into_table(Entity)
            .columns(columns)
            .select_from(guarded)
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        if task.request_id.is_some() {
            insert.on_conflict(
                OnConflict::columns([Column::OwnerId, Column::RequestId])
                    .do_nothing()
                    .to_owned(),
            );
        }
        Ok(db.execute(&insert).await?.rows_affected())
    }

    /// The task a create with `request_id` made, if it is still there.
    async fn made_by(
        &self,
        db: &impl ConnectionTrait,
        request_id: &RequestId,
    ) -> Result<Option<entity::Model>, DbErr> {
        Entity::find()
            .filter(self.owned().and(Column::RequestId.eq(request_id.0)))
            .one(db)
            .await
    }

    /// One task.
    pub async fn get(&self, id: TaskId) -> Result<Task, TaskError> {
        Entity::find()
            .select_only()
            .columns(TASK_COLUMNS)
            .filter(self.one(id))
            .into_model::<Row>()
            .one(&self.db)
            .await?
            .map(Task::from)
            .ok_or(TaskError::NotFound)
    }

    /// Up to `size` tasks older than `after` (or the newest), newest first.
    pub async fn list(
        &self,
        filter: CompletedFilter,
        after: Option<Uuid>,
        size: PageSize,
    ) -> Result<Page, TaskError> {
        let mut condition = self.owned();
        condition = match filter {
            CompletedFilter::Any => condition,
            CompletedFilter::Open => condition.and(Column::Completed.eq(false)),
            CompletedFilter::Done => condition.and(Column::Completed.eq(true)),
        };
        if let Some(after) = after {
            condition = condition.and(Column::Id.lt(after));
        }
        // The log's head and the page in one snapshot: REPEATABLE READ on PostgreSQL; a
        // SQLite read transaction is one snapshot from its first read.
        let txn = if self.db.get_database_backend() == DatabaseBackend::Postgres {
            self.db
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await?
        } else {
            self.db.begin().await?
        };
        let position = changes::range(&txn, self.owner).await?.head;
        let mut rows = Entity::find()
            .select_only()
            .columns(TASK_COLUMNS)
            .filter(condition)
            .order_by_desc(Column::Id)
            .limit(size.0 + 1)
            .into_model::<Row>()
            .all(&txn)
            .await?;
        txn.commit().await?;
        let more = rows.len() as u64 > size.0;
        rows.truncate(usize::try_from(size.0).unwrap_or(usize::MAX));
        let tasks = rows.into_iter().map(Task::from).collect();
        Ok(Page {
            tasks,
            more,
            position,
            stamp: None,
        })
    }

    /// Writes `changes` in one statement, only if the task still has `etag` when one is given.
    pub async fn update(
        &self,
        id: TaskId,
        changes: TaskChanges,
        etag: Option<Etag>,
        now: DateTime<Utc>,
    ) -> Result<Task, TaskError> {
        let mut update = Entity::update_many();
        if let Some(title) = changes.title {
            update = update.col_expr(Column::Title, Expr::value(title.0));
        }
        if let Some(description) = changes.description {
            update = update.col_expr(Column::Description, Expr::value(description.0));
        }
        if let Some(completed) = changes.completed {
            // Completing keeps the time of an earlier completion; reopening clears it.
            let completed_at = if completed {
                Expr::case(Column::Completed.eq(true), Expr::col(Column::CompletedAt))
                    .finally(Expr::value(now))
                    .into()
            } else {
                Expr::value(Option::<DateTime<Utc>>::None)
            };
            update = update
                .col_expr(Column::Completed, Expr::value(completed))
                .col_expr(Column::CompletedAt, completed_at);
        }
        self.write(update, id, etag, now).await
    }

    /// Flips completion in one statement (every right-hand side sees the old row).
    pub async fn toggle(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task, TaskError> {
        let update = Entity::update_many()
            .col_expr(Column::Completed, Expr::col(Column::Completed).not())
            .col_expr(
                Column::CompletedAt,
                Expr::case(
                    Column::Completed.eq(true),
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .finally(Expr::value(now))
                .into(),
            );
        self.write(update, id, None, now).await
    }

    /// Runs an update of one owned task, bumping its version; tells a stale etag (the task
    /// exists for this owner) from a missing task.
    async fn write(
        &self,
        update: sea_orm::UpdateMany<Entity>,
        id: TaskId,
        etag: Option<Etag>,
        now: DateTime<Utc>,
    ) -> Result<Task, TaskError> {
        let mut condition = self.one(id);
        if let Some(etag) = etag {
            condition = condition.and(Column::Version.eq(etag.0));
        }
        let updated = update
            .col_expr(Column::Version, Expr::col(Column::Version).add(1))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(condition)
            .exec_with_returning(&self.db)
            .await?;
        match updated.into_iter().next() {
            Some(model) => Ok(model.into()),
            None => Err(self.missing_or_stale(id, etag).await?),
        }
    }

    /// Deletes one task, only if it still has `etag` when one is given.
    pub async fn delete(&self, id: TaskId, etag: Option<Etag>) -> Result<(), TaskError> {
        let mut condition = self.one(id);
        if let Some(etag) = etag {
            condition = condition.and(Column::Version.eq(etag.0));
        }
        let deleted = Entity::delete_many()
            .filter(condition)
            .exec(&self.db)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(self.missing_or_stale(id, etag).await?);
        }
        Ok(())
    }

    /// After a conditional write touched no row: ABORTED if the caller's task exists (so the
    /// etag was stale), NOT_FOUND otherwise.
    async fn missing_or_stale(
        &self,
        id: TaskId,
        etag: Option<Etag>,
    ) -> Result<TaskError, TaskError> {
        if etag.is_none() {
            return Ok(TaskError::NotFound);
        }
        let exists = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(self.one(id))
            .into_tuple::<Uuid>()
            .one(&self.db)
            .await?
            .is_some();
        Ok(if exists {
            TaskError::EtagMismatch
        } else {
            TaskError::NotFound
        })
    }
}
