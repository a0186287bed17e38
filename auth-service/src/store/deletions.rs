//! Deleting an account, and the outbox that carries the deletion to the task-service: the
//! account, its sessions (and with them any stored refresh tokens) and a row of
//! `account_deletions` go in one transaction, so a deletion is never lost and never recorded
//! for an account that still exists. Replicas claim rows one at a time before delivering.

use super::entity::{account_deletion as outbox, session, user};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
    sea_query::Expr,
};
use uuid::Uuid;

/// The longest delivery error kept, in characters (the column's size).
const LAST_ERROR_MAX_CHARS: usize = 512;

/// A deletion waiting to reach the task-service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingDeletion {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Deliveries tried so far, this one included.
    pub attempts: u32,
}

/// Deletes the account `user_id` with every session, and records the deletion for the
/// task-service, in one transaction, unless the password changed since version
/// `password_version` was verified; whether it did.
pub(crate) async fn delete_account(
    db: &DatabaseConnection,
    user_id: Uuid,
    password_version: i64,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let deleted = user::Entity::delete_many()
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::PasswordVersion.eq(password_version))
        .exec(&txn)
        .await?
        .rows_affected;
    if deleted != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    // The foreign key cascades too; said here so that it does not depend on SQLite's
    // `foreign_keys` pragma.
    session::Entity::delete_many()
        .filter(session::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    outbox::Entity::insert(outbox::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        requested_at: Set(now),
        attempts: Set(0),
        next_attempt_at: Set(now),
        claimed_until: Set(None),
        last_error: Set(None),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Claims up to `limit` deletions due at `now` for `lease` (no other replica takes them until
/// it ends), oldest first; each claim counts an attempt.
pub(crate) async fn claim_due(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease: TimeDelta,
    limit: u64,
) -> Result<Vec<PendingDeletion>, DbErr> {
    let unclaimed = || {
        Condition::any()
            .add(outbox::Column::ClaimedUntil.is_null())
            .add(outbox::Column::ClaimedUntil.lt(now))
    };
    let due: Vec<Uuid> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Id)
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .filter(unclaimed())
        .order_by_asc(outbox::Column::NextAttemptAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let mut claimed = Vec::with_capacity(due.len());
    for id in due {
        // One statement decides between replicas: whoever moves `claimed_until` has it.
        let won = outbox::Entity::update_many()
            .col_expr(outbox::Column::ClaimedUntil, Expr::value(now + lease))
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .filter(outbox::Column::Id.eq(id))
            .filter(unclaimed())
            .exec(db)
            .await?
            .rows_affected
            == 1;
        if won && let Some(row) = outbox::Entity::find_by_id(id).one(db).await? {
            claimed.push(PendingDeletion {
                id: row.id,
                user_id: row.user_id,
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            });
        }
    }
    Ok(claimed)
}

/// The task-service acknowledged the deletion: it is done.
pub(crate) async fn delivered(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    outbox::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// A delivery failed with `error`: try again at `retry_at` (the claim ends).
pub(crate) async fn failed(
    db: &impl ConnectionTrait,
    id: Uuid,
    retry_at: DateTime<Utc>,
    error: &str,
) -> Result<(), DbErr> {
    let error: String = error.chars().take(LAST_ERROR_MAX_CHARS).collect();
    outbox::Entity::update_many()
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(retry_at))
        .col_expr(
            outbox::Column::ClaimedUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(outbox::Column::LastError, Expr::value(error))
        .filter(outbox::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// How many deletions wait for delivery.
pub(crate) async fn pending(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    outbox::Entity::find().count(db).await
}
