//! `sign_in_throttle`: failure counters per key (an account's hashed email, or a client
//! address), each in a window, with the time the key is blocked until.

use super::entity::sign_in_throttle as row;
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, ExprTrait, QueryFilter,
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

/// Adds one failure to `key` in a single statement (so concurrent failures are all counted),
/// starting a new window when the current one began at or before `now - window`.
pub(crate) async fn count_failure(
    db: &impl ConnectionTrait,
    key: &str,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Result<Failures, DbErr> {
    let stale = Expr::col((row::Entity, row::Column::WindowStart)).lte(now - window);
    let failures = Expr::case(stale.clone(), 1)
        .finally(Expr::col((row::Entity, row::Column::Failures)).add(1));
    let window_start =
        Expr::case(stale, now).finally(Expr::col((row::Entity, row::Column::WindowStart)));
    let model = row::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(1),
        window_start: Set(now),
        blocked_until: Set(None),
    };
    let updated = row::Entity::insert(model)
        .on_conflict(
            OnConflict::column(row::Column::Key)
                .value(row::Column::Failures, failures)
                .value(row::Column::WindowStart, window_start)
                .to_owned(),
        )
        .exec_with_returning(db)
        .await?;
    Ok(Failures {
        count: updated.failures,
        window_start: updated.window_start,
    })
}

/// Moves `key`'s block to `until`, never earlier than it already is (a concurrent failure
/// with a lower count must not shorten it).
pub(crate) async fn block(
    db: &impl ConnectionTrait,
    key: &str,
    until: DateTime<Utc>,
) -> Result<(), DbErr> {
    row::Entity::update_many()
        .col_expr(row::Column::BlockedUntil, Expr::value(until))
        .filter(row::Column::Key.eq(key))
        .filter(
            Condition::any()
                .add(row::Column::BlockedUntil.is_null())
                .add(row::Column::BlockedUntil.lt(until)),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Forgets `key`'s failures.
pub(crate) async fn forget(db: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    row::Entity::delete_by_id(key.to_owned()).exec(db).await?;
    Ok(())
}
