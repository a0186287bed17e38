//! Each owner's change log (`task_changes`) and its head (`task_change_heads`), as WatchTasks
//! and ListTasks read them. The database writes them: a trigger on `tasks` appends every insert,
//! update and delete in the statement that made it (`migrations`, `m20261204_000002`), so no
//! write can forget its change.
//!
//! Positions cannot be seen out of order: the trigger first moves the owner's head with an
//! upsert, which on PostgreSQL holds the head row's lock until the transaction ends, so the
//! owner's next writer takes the next position only after this one has committed (or rolled
//! back, giving its position up). SQLite has one writer at a time anyway. A reader of
//! "changes after p" therefore never sees p+2 before p+1, and an owner's log is always the
//! unbroken run `(floor, head]`: trimming and sweeping remove a prefix and raise `floor` with it.

use super::entity::{
    task_change::{self, Column, Entity},
    task_change_head::{self, Column as HeadColumn, Entity as Heads},
    task_change_settings::{Column as SettingsColumn, Entity as Settings},
};
use crate::domain::{Change, ChangeKind, LogRange, Position, Task};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

/// The PostgreSQL channel that carries wake-ups (the trigger's `NOTIFY`): the payload is the
/// owner's id, never data.
const NOTIFY_CHANNEL: &str = "todo_task_changes";

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

/// Tells the trigger how many changes each owner's log keeps (WATCH_RETAINED_CHANGES; the
/// replica that started last decides, when replicas disagree).
pub(crate) async fn keep(db: &impl ConnectionTrait, retained: u32) -> Result<(), DbErr> {
    Settings::update_many()
        .col_expr(SettingsColumn::Retained, Expr::value(i64::from(retained)))
        .filter(SettingsColumn::Id.eq(1))
        .exec(db)
        .await?;
    Ok(())
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

/// The last position given out of each of `owners`, as committed now (0 for those with none),
/// in one statement: one primary-key read each. The list is padded to a power of two (repeating
/// an owner), so batches of any size use a handful of statements, not one prepared per size.
pub(crate) async fn heads(
    db: &impl ConnectionTrait,
    owners: &[Uuid],
) -> Result<Vec<(Uuid, Position)>, DbErr> {
    let padded = owners.len().next_power_of_two();
    let listed = owners.iter().copied().chain(std::iter::repeat_n(
        owners.first().copied().unwrap_or_default(),
        padded - owners.len(),
    ));
    let heads: Vec<(Uuid, i64)> = Heads::find()
        .select_only()
        .column(HeadColumn::OwnerId)
        .column(HeadColumn::Head)
        .filter(HeadColumn::OwnerId.is_in(listed))
        .into_tuple()
        .all(db)
        .await?;
    Ok(owners
        .iter()
        .map(|owner| {
            let head = heads.iter().find(|(id, _)| id == owner).map_or(0, |h| h.1);
            (*owner, Position(head))
        })
        .collect())
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
/// contents). The head goes first: a stream reading in between finds an empty log, never one
/// that looks swept.
pub(crate) async fn erase(db: &impl ConnectionTrait, owner: Uuid) -> Result<(), DbErr> {
    Heads::delete_many()
        .filter(HeadColumn::OwnerId.eq(owner))
        .exec(db)
        .await?;
    Entity::delete_many()
        .filter(Column::OwnerId.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// Listens for wake-ups on [`NOTIFY_CHANNEL`] on a connection of its own (PostgreSQL; made
/// with the pool's settings but outside it, so it takes none of the connections calls need),
/// calling `wake(Some(owner))` for each and `wake(None)` whenever notifications may have been
/// lost (the connection was lost and made again); never returns (the caller aborts it).
pub(crate) async fn listen(db: &sea_orm::DatabaseConnection, wake: impl Fn(Option<Uuid>)) {
    use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
    use std::time::{Duration, Instant};
    let options = (*db.get_postgres_connection_pool().connect_options()).clone();
    let own = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut retry = Duration::from_millis(250);
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&own).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, retry_ms = retry.as_millis(), "cannot listen for task changes: streams re-read on their timer meanwhile");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let since = Instant::now();
        // Anything sent while no one listened is lost: every stream reads again.
        wake(None);
        let error = loop {
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
                Err(error) => break error,
            }
        };
        // A listener that fails as soon as it is up backs off like one that cannot connect,
        // so a flapping database does not make every stream read again in a tight loop.
        if since.elapsed() > Duration::from_secs(60) {
            retry = Duration::from_millis(250);
        }
        tracing::warn!(%error, retry_ms = retry.as_millis(), "the task-change listener failed: connecting again");
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(10));
    }
}
