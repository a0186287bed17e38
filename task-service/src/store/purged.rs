//! Deleted accounts: purging one deletes its tasks and leaves a tombstone; creating a task
//! checks the tombstone in the same statement as the insert, so a create racing the purge
//! either lands before it (and is deleted with the rest) or is refused.
//!
//! On PostgreSQL a transaction's snapshot does not see a purge that commits while it runs
//! (READ COMMITTED sees it only in its next statement), so a purge takes a transaction-level
//! advisory lock on the owner exclusively and a create takes it shared before its insert: a
//! create that began before the purge finishes first, one that begins after waits for the
//! purge and then sees its tombstone. On SQLite writes are serialized and a write statement
//! always sees the latest commit, so the conditional insert alone is enough (and needs no
//! transaction).

use super::entity::{
    purged_owner::{self, Column, Entity},
    task,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect, Statement, TransactionTrait,
    sea_query::{OnConflict, Query, SelectStatement},
};
use uuid::Uuid;

/// How a transaction holds an owner's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerLock {
    /// Writes of the owner's tasks: any number at once.
    Shared,
    /// A purge: alone.
    Exclusive,
}

/// Takes `owner`'s lock until the end of the transaction `txn` (PostgreSQL; nothing to do on
/// SQLite, whose writes are serialized anyway).
pub(crate) async fn lock_owner(
    txn: &impl ConnectionTrait,
    owner: Uuid,
    lock: OwnerLock,
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let function = match lock {
        OwnerLock::Shared => "pg_advisory_xact_lock_shared",
        OwnerLock::Exclusive => "pg_advisory_xact_lock",
    };
    // The UUID's last eight bytes (random in a v7 id) name the lock.
    let bytes = owner.as_bytes();
    let key = i64::from_be_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    txn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!("SELECT {function}($1)"),
        [key.into()],
    ))
    .await?;
    Ok(())
}

/// A subquery that finds `owner`'s tombstone: an insert guarded by `NOT EXISTS` of it does
/// nothing for a purged owner.
pub(crate) fn tombstone_of(owner: Uuid) -> SelectStatement {
    Query::select()
        .expr(sea_orm::sea_query::Expr::val(1))
        .from(Entity)
        .and_where(Column::OwnerId.eq(owner))
        .to_owned()
}

/// Whether `owner` was purged (and is still remembered).
pub(crate) async fn is_purged(db: &impl ConnectionTrait, owner: Uuid) -> Result<bool, DbErr> {
    Ok(Entity::find_by_id(owner).one(db).await?.is_some())
}

/// Deletes every task of `owner` and keeps its tombstone until `forget_after` (purging again
/// restarts it); returns how many tasks were deleted.
pub(crate) async fn purge(
    db: &DatabaseConnection,
    owner: Uuid,
    now: DateTime<Utc>,
    forget_after: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    lock_owner(&txn, owner, OwnerLock::Exclusive).await?;
    Entity::insert(purged_owner::ActiveModel {
        owner_id: Set(owner),
        purged_at: Set(now),
        forget_after: Set(forget_after),
    })
    .on_conflict(
        OnConflict::column(Column::OwnerId)
            .update_column(Column::ForgetAfter)
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let deleted = task::Entity::delete_many()
        .filter(task::Column::OwnerId.eq(owner))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok(deleted)
}

/// The owners purged and still remembered at `now`, at most `limit` (newest purges first).
pub(crate) async fn remembered(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    use sea_orm::QueryOrder;
    Entity::find()
        .select_only()
        .column(Column::OwnerId)
        .filter(Column::ForgetAfter.gt(now))
        .order_by_desc(Column::PurgedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// Deletes up to `limit` tombstones whose accounts' tokens have all expired by `now`;
/// returns how many.
pub(crate) async fn forget_expired(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    let expired = Query::select()
        .column(Column::OwnerId)
        .from(Entity)
        .and_where(Column::ForgetAfter.lte(now))
        .limit(limit)
        .to_owned();
    let deleted = Entity::delete_many()
        .filter(Column::OwnerId.in_subquery(expired))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
