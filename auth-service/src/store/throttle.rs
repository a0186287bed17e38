//! `sign_in_throttle`: failure counters per key (an account's hashed email, or a client
//! address), each in a window, with the time the key is blocked until.

use super::entity::sign_in_throttle as row;
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, ExprTrait, FromQueryResult,
    QueryFilter, QueryTrait,
    sea_query::{Expr, OnConflict},
};

/// A key's failures in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: i32,
    pub window_start: DateTime<Utc>,
}

/// The latest time any of `keys` is blocked until, if one is blocked at all.
pub(crate) async fn blocked_until(
    db: &impl ConnectionTrait,
    keys: &[&str],
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let rows = row::Entity::find()
        .filter(row::Column::Key.is_in(keys.iter().copied()))
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|r| r.blocked_until).max())
}

/// Charges one attempt to `key` before its password is checked, in one statement, unless the
/// key is blocked at `now` (then `None`, and nothing changes). A window that began at or before
/// `now - window` starts over. The charge that brings the count to `threshold` blocks the key
/// until `block_until` in the same statement, so of any number of concurrent attempts exactly
/// those under the threshold, and the one reaching it, get through.
pub(crate) async fn charge(
    db: &impl ConnectionTrait,
    key: &str,
    now: DateTime<Utc>,
    window: TimeDelta,
    threshold: i32,
    block_until: DateTime<Utc>,
) -> Result<Option<Failures>, DbErr> {
    let col = |c: row::Column| Expr::col((row::Entity, c));
    let stale = col(row::Column::WindowStart).lte(now - window);
    let count = Expr::case(stale.clone(), 1).finally(col(row::Column::Failures).add(1));
    let window_start = Expr::case(stale, now).finally(col(row::Column::WindowStart));
    let blocked = Expr::case(count.clone().gte(threshold), block_until)
        .finally(col(row::Column::BlockedUntil));
    let not_blocked = Condition::any()
        .add(col(row::Column::BlockedUntil).is_null())
        .add(col(row::Column::BlockedUntil).lte(now));
    let first = row::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(1),
        window_start: Set(now),
        blocked_until: Set((1 >= threshold).then_some(block_until)),
    };
    let mut insert = row::Entity::insert(first)
        .on_conflict(
            OnConflict::column(row::Column::Key)
                .value(row::Column::Failures, count)
                .value(row::Column::WindowStart, window_start)
                .value(row::Column::BlockedUntil, blocked)
                .action_and_where(not_blocked.into())
                .to_owned(),
        )
        .into_query();
    insert.returning_all();
    let Some(charged) = db.query_one(&insert).await? else {
        return Ok(None);
    };
    let charged = row::Model::from_query_result(&charged, "")?;
    Ok(Some(Failures {
        count: charged.failures,
        window_start: charged.window_start,
    }))
}

/// Gives back an attempt charged to `key` (it succeeded), lifting the block that charge
/// set, if it set `block_until`.
pub(crate) async fn refund(
    db: &impl ConnectionTrait,
    key: &str,
    block_until: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    let col = |c: row::Column| Expr::col((row::Entity, c));
    let mut update = row::Entity::update_many()
        .col_expr(row::Column::Failures, col(row::Column::Failures).sub(1))
        .filter(row::Column::Key.eq(key))
        .filter(row::Column::Failures.gt(0));
    if let Some(until) = block_until {
        let lifted = Expr::case(col(row::Column::BlockedUntil).eq(until), Expr::null())
            .finally(col(row::Column::BlockedUntil));
        update = update.col_expr(row::Column::BlockedUntil, lifted.into());
    }
    update.exec(db).await?;
    Ok(())
}

/// Sets `key`'s block to exactly `until` (replacing the provisional block of a charge).
pub(crate) async fn block_exactly(
    db: &impl ConnectionTrait,
    key: &str,
    until: DateTime<Utc>,
) -> Result<(), DbErr> {
    row::Entity::update_many()
        .col_expr(row::Column::BlockedUntil, Expr::value(until))
        .filter(row::Column::Key.eq(key))
        .exec(db)
        .await?;
    Ok(())
}

/// Forgets `key`'s failures.
pub(crate) async fn forget(db: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    row::Entity::delete_by_id(key.to_owned()).exec(db).await?;
    Ok(())
}

/// When `key` was last remembered (see [`remember`]), if it was.
pub(crate) async fn remembered(
    db: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let row = row::Entity::find_by_id(key.to_owned()).one(db).await?;
    Ok(row.map(|r| r.window_start))
}

/// Remembers `key` as seen at `now` (a row with no failures and no block).
pub(crate) async fn remember(
    db: &impl ConnectionTrait,
    key: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let model = row::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(0),
        window_start: Set(now),
        blocked_until: Set(None),
    };
    row::Entity::insert(model)
        .on_conflict(
            OnConflict::column(row::Column::Key)
                .update_column(row::Column::WindowStart)
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes up to `limit` rows of keys that are not blocked at `now` and whose window began
/// before `before` (keys starting with `prefix`, or all but them when `exclude` is set);
/// returns how many.
pub(crate) async fn delete_stale(
    db: &impl ConnectionTrait,
    prefix: &str,
    exclude: bool,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    use sea_orm::sea_query::Query;
    let pattern = format!("{prefix}%");
    // The same conditions inside and outside: a row charged or blocked between the select and
    // the delete (PostgreSQL re-checks only the outer WHERE) is kept.
    let stale = || {
        let by_prefix = if exclude {
            row::Column::Key.not_like(pattern.clone())
        } else {
            row::Column::Key.like(pattern.clone())
        };
        Condition::all()
            .add(by_prefix)
            .add(row::Column::WindowStart.lt(before))
            .add(
                Condition::any()
                    .add(row::Column::BlockedUntil.is_null())
                    .add(row::Column::BlockedUntil.lte(now)),
            )
    };
    let batch = Query::select()
        .column(row::Column::Key)
        .from(row::Entity)
        .cond_where(stale())
        .limit(limit)
        .to_owned();
    let deleted = row::Entity::delete_many()
        .filter(row::Column::Key.in_subquery(batch))
        .filter(stale())
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
