//! Deleted accounts: purging one leaves a tombstone, then deletes its tasks; creating a task
//! checks the tombstone in the same statement as the insert, so a create racing the purge
//! either lands before the tombstone (and is deleted with the rest) or is refused.
//!
//! On PostgreSQL a statement does not see a tombstone committed while it waits (READ COMMITTED
//! sees it only in the next statement), so the purge writes its tombstone holding a
//! transaction-level advisory lock on the owner exclusively, and the database's trigger before
//! each insert into `tasks` takes it shared and then looks for the tombstone in a statement of
//! its own (migration `m20261204_000002`): a create that began before the tombstone commits
//! first (and its task is deleted with the rest), one that begins after waits and then sees the
//! tombstone, and its row is skipped. The lock's key is the owner id's last eight bytes, here
//! and in the trigger. On SQLite writes are serialized and a write statement always sees the
//! latest commit, so the conditional insert alone is enough.

use super::entity::{
    purged_owner::{self, Column, Entity},
    task,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect, Statement, TransactionTrait,
    sea_query::{Expr, OnConflict, Query, SelectStatement},
};
use uuid::Uuid;

/// Takes `owner`'s lock exclusively until the end of the transaction `txn` (PostgreSQL;
/// nothing to do on SQLite, whose writes are serialized anyway). Creates take it shared, in
/// the database's trigger.
async fn lock_owner_exclusively(txn: &impl ConnectionTrait, owner: Uuid) -> Result<(), DbErr> {
    if txn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    // The UUID's last eight bytes (random in a v7 id) name the lock.
    let bytes = owner.as_bytes();
    let key = i64::from_be_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    txn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [key.into()],
    ))
    .await?;
    Ok(())
}

/// A subquery that finds `owner`'s tombstone: an insert guarded by `NOT EXISTS` of it does
/// nothing for a purged owner.
pub(crate) fn tombstone_of(owner: Uuid) -> SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(Entity)
        .and_where(Column::OwnerId.eq(owner))
        .to_owned()
}

/// Whether `owner` was purged (and is still remembered).
pub(crate) async fn is_purged(db: &impl ConnectionTrait, owner: Uuid) -> Result<bool, DbErr> {
    Ok(Entity::find_by_id(owner).one(db).await?.is_some())
}

/// Tasks deleted per statement of a purge, so that no statement holds the database (SQLite's
/// one writer) for long, however many tasks the account had.
const PURGE_BATCH: u64 = 500;

/// Leaves `owner`'s tombstone until `forget_after` (purging again moves it to the later of the
/// two), then deletes every task of `owner`, a batch per statement, and their change log;
/// returns how many tasks were deleted. The tombstone is committed first, under the owner's lock: from then on no
/// create can add a task, so the deletes that follow cannot miss one, and a purge cut short
/// (a timeout, a crash) leaves the tombstone and is finished by the next delivery.
pub(crate) async fn purge(
    db: &DatabaseConnection,
    owner: Uuid,
    now: DateTime<Utc>,
    forget_after: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    lock_owner_exclusively(&txn, owner).await?;
    // Writes only, no read first: on SQLite a transaction that read before writing fails if
    // another connection wrote in between.
    Entity::insert(purged_owner::ActiveModel {
        owner_id: Set(owner),
        purged_at: Set(now),
        forget_after: Set(forget_after),
    })
    .on_conflict(OnConflict::column(Column::OwnerId).do_nothing().to_owned())
    .exec_without_returning(&txn)
    .await?;
    Entity::update_many()
        .col_expr(Column::ForgetAfter, Expr::value(forget_after))
        .filter(Column::OwnerId.eq(owner))
        .filter(Column::ForgetAfter.lt(forget_after))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    let mut deleted = 0;
    loop {
        let batch = Query::select()
            .column(task::Column::Id)
            .from(task::Entity)
            .and_where(task::Column::OwnerId.eq(owner))
            .limit(PURGE_BATCH)
            .to_owned();
        let n = task::Entity::delete_many()
            .filter(task::Column::OwnerId.eq(owner))
            .filter(task::Column::Id.in_subquery(batch))
            .exec(db)
            .await?
            .rows_affected;
        deleted += n;
        if n < PURGE_BATCH {
            // Then the change log, which holds the tasks' contents too. No write can add to
            // it any more: creates are refused, and every other write finds no task.
            super::changes::erase(db, owner).await?;
            return Ok(deleted);
        }
    }
}

/// The owners purged and still remembered at `now`, at most `limit` of them (by the
/// `forget_after` index).
pub(crate) async fn remembered(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    Entity::find()
        .select_only()
        .column(Column::OwnerId)
        .filter(Column::ForgetAfter.gt(now))
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
