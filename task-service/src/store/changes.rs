//! Each owner's change log (`task_changes`), written in the transaction of every change to a
//! task, and its head (`task_change_heads`).
//!
//! Positions cannot be seen out of order: [`append`] first moves the owner's head with an
//! upsert, which on PostgreSQL holds the head row's lock until the transaction ends, so the
//! owner's next writer takes the next position only after this one has committed (or rolled
//! back, giving its position up). SQLite has one writer at a time anyway. A reader of
//! "changes after p" therefore never sees p+2 before p+1, and the log of an owner is always the
//! unbroken run `(floor, head]`: sweeping removes a prefix and raises `floor` with it.

use super::entity::{
    task_change::{self, Column, Entity},
    task_change_head::{self, Column as HeadColumn, Entity as Heads},
};
use crate::domain::{Change, ChangeKind, LogRange, Position, Task};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use uuid::Uuid;

/// The PostgreSQL channel that carries wake-ups: the payload is the owner's id, never data.
pub(crate) const NOTIFY_CHANNEL: &str = "todo_task_changes";

/// How far past its retained length an owner's log may grow before a write trims it (trimming
/// in batches keeps it off most writes).
const TRIM_SLACK: i64 = 64;

/// What a change did, as stored.
fn kind_code(kind: ChangeKind) -> i16 {
    match kind {
        ChangeKind::Created => 1,
        ChangeKind::Updated => 2,
        ChangeKind::Deleted => 3,
    }
}

fn kind_of(code: i16) -> Result<ChangeKind, DbErr> {
    match code {
        1 => Ok(ChangeKind::Created),
        2 => Ok(ChangeKind::Updated),
        3 => Ok(ChangeKind::Deleted),
        other => Err(DbErr::Custom(format!(
            "unknown change kind {other} in task_changes"
        ))),
    }
}

/// One change to append: what it did, and to which task (the task as it now is, or only its
/// id when deleted).
pub(crate) enum Written<'a> {
    /// Created or updated: the task as it now is.
    Task(ChangeKind, &'a Task),
    /// Deleted.
    Deleted(Uuid),
}

/// Appends a change of `owner`'s tasks at the owner's next position, inside the caller's
/// transaction `txn`, keeping at most `retained` changes (the oldest go first); on
/// PostgreSQL, also queues a wake-up for every replica, sent when `txn` commits.
pub(crate) async fn append(
    txn: &impl ConnectionTrait,
    owner: Uuid,
    written: Written<'_>,
    now: DateTime<Utc>,
    retained: i64,
) -> Result<Position, DbErr> {
    let mut advance = Query::insert();
    advance
        .into_table(Heads)
        .columns([HeadColumn::OwnerId, HeadColumn::Head, HeadColumn::Floor])
        .values([owner.into(), 1_i64.into(), 0_i64.into()])
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    advance
        .on_conflict(
            OnConflict::column(HeadColumn::OwnerId)
                .value(
                    HeadColumn::Head,
                    Expr::col((Heads, HeadColumn::Head)).add(1),
                )
                .to_owned(),
        )
        .returning(Query::returning().columns([HeadColumn::Head, HeadColumn::Floor]));
    let row = txn
        .query_one(&advance)
        .await?
        .ok_or_else(|| DbErr::Custom("the change log's head upsert returned no row".into()))?;
    let head: i64 = row.try_get("", "head")?;
    let floor: i64 = row.try_get("", "floor")?;
    let (kind, task_id, task) = match written {
        Written::Task(kind, task) => (kind, task.id, Some(task)),
        Written::Deleted(id) => (ChangeKind::Deleted, id, None),
    };
    Entity::insert(task_change::ActiveModel {
        owner_id: Set(owner),
        position: Set(head),
        kind: Set(kind_code(kind)),
        task_id: Set(task_id),
        changed_at: Set(now),
        title: Set(task.map(|t| t.title.clone())),
        description: Set(task.map(|t| t.description.clone())),
        completed: Set(task.map(|t| t.completed)),
        completed_at: Set(task.and_then(|t| t.completed_at)),
        created_at: Set(task.map(|t| t.created_at)),
        updated_at: Set(task.map(|t| t.updated_at)),
        version: Set(task.map(|t| t.version)),
    })
    .exec_without_returning(txn)
    .await?;
    if head - floor > retained + TRIM_SLACK {
        raise_floor(txn, owner, head - retained).await?;
    }
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [NOTIFY_CHANNEL.into(), owner.to_string().into()],
        ))
        .await?;
    }
    Ok(Position(head))
}

/// Sweeps `owner`'s changes up to and including `floor` away.
async fn raise_floor(txn: &impl ConnectionTrait, owner: Uuid, floor: i64) -> Result<(), DbErr> {
    Heads::update_many()
        .col_expr(HeadColumn::Floor, Expr::value(floor))
        .filter(HeadColumn::OwnerId.eq(owner))
        .filter(HeadColumn::Floor.lt(floor))
        .exec(txn)
        .await?;
    Entity::delete_many()
        .filter(Column::OwnerId.eq(owner))
        .filter(Column::Position.lte(floor))
        .exec(txn)
        .await?;
    Ok(())
}

/// What `owner`'s log holds now (all zero before their first change).
pub(crate) async fn range(db: &impl ConnectionTrait, owner: Uuid) -> Result<LogRange, DbErr> {
    let head = Heads::find_by_id(owner).one(db).await?;
    Ok(
        head.map_or_else(LogRange::default, |h: task_change_head::Model| LogRange {
            floor: Position(h.floor),
            head: Position(h.head),
        }),
    )
}

/// Up to `limit` of `owner`'s changes after `after`, oldest first.
pub(crate) async fn after(
    db: &impl ConnectionTrait,
    owner: Uuid,
    after: Position,
    limit: u64,
) -> Result<Vec<Change>, DbErr> {
    let rows = Entity::find()
        .filter(Column::OwnerId.eq(owner))
        .filter(Column::Position.gt(after.0))
        .order_by_asc(Column::Position)
        .limit(limit)
        .all(db)
        .await?;
    rows.into_iter().map(change_of).collect()
}

fn change_of(row: task_change::Model) -> Result<Change, DbErr> {
    let kind = kind_of(row.kind)?;
    let task = match (
        kind,
        row.title,
        row.description,
        row.completed,
        row.created_at,
        row.updated_at,
        row.version,
    ) {
        (ChangeKind::Deleted, ..) => None,
        (
            _,
            Some(title),
            Some(description),
            Some(completed),
            Some(created_at),
            Some(updated_at),
            Some(version),
        ) => Some(Task {
            id: row.task_id,
            title,
            description,
            completed,
            completed_at: row.completed_at,
            created_at,
            updated_at,
            version,
        }),
        _ => {
            return Err(DbErr::Custom(format!(
                "task_changes row {} of an owner has no task",
                row.position
            )));
        }
    };
    Ok(Change {
        position: Position(row.position),
        kind,
        task_id: row.task_id,
        task,
        changed_at: row.changed_at,
    })
}

/// Sweeps away changes made before `before`, for up to `owners` owners (each owner's oldest
/// first, raising their floor); returns how many owners' logs were swept.
pub(crate) async fn sweep_older(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    owners: u64,
) -> Result<usize, DbErr> {
    let old: Vec<(Uuid, i64)> = Entity::find()
        .select_only()
        .column(Column::OwnerId)
        .column_as(Column::Position.max(), "newest_old")
        .filter(Column::ChangedAt.lt(before))
        .group_by(Column::OwnerId)
        .limit(owners)
        .into_tuple()
        .all(db)
        .await?;
    for (owner, newest_old) in &old {
        raise_floor(db, *owner, *newest_old).await?;
    }
    Ok(old.len())
}

/// Erases `owner`'s log and head (their account was deleted: the log holds their tasks'
/// contents).
pub(crate) async fn erase(db: &impl ConnectionTrait, owner: Uuid) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::OwnerId.eq(owner))
        .exec(db)
        .await?;
    Heads::delete_many()
        .filter(HeadColumn::OwnerId.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// Listens for wake-ups on [`NOTIFY_CHANNEL`] on a connection of its own (PostgreSQL), calling
/// `wake(Some(owner))` for each and `wake(None)` whenever notifications may have been lost
/// (the connection was lost and made again, or listening failed); returns when the pool
/// closes.
pub(crate) async fn listen(db: &sea_orm::DatabaseConnection, wake: impl Fn(Option<Uuid>)) {
    use sea_orm::sqlx::{Error, postgres::PgListener};
    let pool = db.get_postgres_connection_pool();
    let mut retry = std::time::Duration::from_millis(250);
    loop {
        if pool.is_closed() {
            return;
        }
        let listener = match PgListener::connect_with(pool).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Ok(listener),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, retry_ms = retry.as_millis(), "cannot listen for task changes: streams re-read on their timer meanwhile");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(std::time::Duration::from_secs(10));
                continue;
            }
        };
        // Anything sent while no one listened is lost: every stream reads again.
        wake(None);
        retry = std::time::Duration::from_millis(250);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Ok(owner) = Uuid::try_parse(notification.payload()) {
                        wake(Some(owner));
                    }
                }
                // The connection was lost and made again: notifications were lost with it.
                Ok(None) => {
                    tracing::info!(
                        "the task-change listener reconnected: every stream reads again"
                    );
                    wake(None);
                }
                Err(Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "the task-change listener failed: connecting again");
                    break;
                }
            }
        }
    }
}
