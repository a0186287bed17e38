//! Deleting an account, and the outbox that carries the deletion to the task-service: the
//! account, its sessions (and with them any stored refresh tokens) and a row of
//! `account_deletions` go in one transaction, so a deletion is never lost and never recorded
//! for an account that still exists. A replica claims one row at a time, for a lease longer
//! than a delivery may take, and only the claim's holder settles it.

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

/// A deletion claimed for delivery to the task-service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingDeletion {
    pub id: Uuid,
    pub user_id: Uuid,
    /// When the account was deleted.
    pub requested_at: DateTime<Utc>,
    /// Deliveries tried so far, this one included.
    pub attempts: u32,
    /// This claim: settling the row needs it.
    pub claim: Uuid,
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
        claim_token: Set(None),
        last_error: Set(None),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Claims the oldest deletion due at `now` that no replica holds, for `lease` (no other
/// replica takes it until then); the claim counts an attempt. `None` when there is none.
pub(crate) async fn claim_next(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease: TimeDelta,
) -> Result<Option<PendingDeletion>, DbErr> {
    let claimable = || {
        Condition::all()
            .add(outbox::Column::NextAttemptAt.lte(now))
            .add(
                Condition::any()
                    .add(outbox::Column::ClaimedUntil.is_null())
                    .add(outbox::Column::ClaimedUntil.lt(now)),
            )
    };
    // A few candidates, in case other replicas take the first ones meanwhile.
    let due: Vec<Uuid> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Id)
        .filter(claimable())
        .order_by_asc(outbox::Column::NextAttemptAt)
        .limit(4)
        .into_tuple()
        .all(db)
        .await?;
    for id in due {
        let claim = Uuid::now_v7();
        // One statement decides between replicas: whoever sets the claim has it.
        let won = outbox::Entity::update_many()
            .col_expr(outbox::Column::ClaimedUntil, Expr::value(now + lease))
            .col_expr(outbox::Column::ClaimToken, Expr::value(claim))
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .filter(outbox::Column::Id.eq(id))
            .filter(claimable())
            .exec(db)
            .await?
            .rows_affected
            == 1;
        if won && let Some(row) = outbox::Entity::find_by_id(id).one(db).await? {
            return Ok(Some(PendingDeletion {
                id: row.id,
                user_id: row.user_id,
                requested_at: row.requested_at,
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                claim,
            }));
        }
    }
    Ok(None)
}

/// The task-service acknowledged the deletion: it is done (if the claim was still ours; if
/// not, the replica that took it over delivers again, harmlessly).
pub(crate) async fn delivered(
    db: &impl ConnectionTrait,
    deletion: &PendingDeletion,
) -> Result<(), DbErr> {
    outbox::Entity::delete_many()
        .filter(outbox::Column::Id.eq(deletion.id))
        .filter(outbox::Column::ClaimToken.eq(deletion.claim))
        .exec(db)
        .await?;
    Ok(())
}

/// A delivery failed with `error`: try again at `retry_at`, releasing the claim (if it is
/// still ours).
pub(crate) async fn failed(
    db: &impl ConnectionTrait,
    deletion: &PendingDeletion,
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
        .col_expr(outbox::Column::ClaimToken, Expr::value(None::<Uuid>))
        .col_expr(outbox::Column::LastError, Expr::value(error))
        .filter(outbox::Column::Id.eq(deletion.id))
        .filter(outbox::Column::ClaimToken.eq(deletion.claim))
        .exec(db)
        .await?;
    Ok(())
}
