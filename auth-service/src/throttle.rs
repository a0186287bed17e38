//! Sign-in throttling kept in the database, so it holds across replicas: progressive delays
//! per account after repeated failures, and a failure budget per client address and window.

use crate::{config::ThrottleArgs, entity::sign_in_throttle as row, error::AuthError};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set,
    DatabaseConnection, EntityTrait,
    sea_query::{Expr, OnConflict},
};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The throttle's policy.
#[derive(Debug, Clone)]
pub struct Throttle {
    enabled: bool,
    free_attempts: i32,
    base_delay: TimeDelta,
    max_delay: TimeDelta,
    address_max_failures: i32,
    address_window: TimeDelta,
}

/// Throttle keys of one sign-in attempt.
#[derive(Debug, Clone)]
pub struct AttemptKeys {
    account: String,
    address: String,
}

impl AttemptKeys {
    /// Keys for `email` (normalized) from `address`. The email is hashed so the table holds
    /// no addresses of people who may not even have an account.
    pub fn new(email: &str, address: &str) -> Self {
        let digest: String = Sha256::digest(email.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            account: format!("account:{digest}"),
            address: format!("ip:{address}"),
        }
    }
}

impl Throttle {
    /// The policy `args` describe.
    pub fn new(args: &ThrottleArgs) -> Self {
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        Self {
            enabled: !args.throttle_disabled,
            free_attempts: clamp(args.throttle_free_attempts),
            base_delay: TimeDelta::seconds(args.throttle_base_delay_secs.into()),
            max_delay: TimeDelta::seconds(args.throttle_max_delay_secs.into()),
            address_max_failures: clamp(args.throttle_address_max_failures),
            address_window: TimeDelta::seconds(args.throttle_address_window_secs.into()),
        }
    }

    /// Refuses the attempt with `Throttled` while the account or the address is blocked.
    pub async fn check(
        &self,
        db: &DatabaseConnection,
        keys: &AttemptKeys,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let rows = row::Entity::find()
            .filter(sea_orm::ColumnTrait::is_in(
                &row::Column::Key,
                [keys.account.clone(), keys.address.clone()],
            ))
            .all(db)
            .await?;
        let blocked_until = rows
            .iter()
            .filter_map(|r| r.blocked_until)
            .filter(|until| *until > now)
            .max();
        match blocked_until {
            Some(until) => Err(AuthError::Throttled(to_duration(until - now))),
            None => Ok(()),
        }
    }

    /// Records a failed attempt.
    pub async fn record_failure(
        &self,
        db: &DatabaseConnection,
        keys: &AttemptKeys,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let account = increment(db, &keys.account, now, ACCOUNT_WINDOW).await?;
        if account.failures >= self.free_attempts {
            let doublings = u32::try_from(account.failures - self.free_attempts)
                .unwrap_or(0)
                .min(20);
            let delay = (self.base_delay * 2_i32.saturating_pow(doublings)).min(self.max_delay);
            set_blocked_until(db, &keys.account, now + delay).await?;
        }
        let address = increment(db, &keys.address, now, self.address_window).await?;
        if address.failures >= self.address_max_failures {
            set_blocked_until(
                db,
                &keys.address,
                address.window_start + self.address_window,
            )
            .await?;
        }
        Ok(())
    }

    /// A successful sign-in resets the account's counter (not the address's).
    pub async fn record_success(
        &self,
        db: &DatabaseConnection,
        keys: &AttemptKeys,
    ) -> Result<(), AuthError> {
        if self.enabled {
            row::Entity::delete_by_id(keys.account.clone())
                .exec(db)
                .await?;
        }
        Ok(())
    }
}

use sea_orm::{ColumnTrait, QueryFilter};

/// How long an account's failures count before they are forgotten.
const ACCOUNT_WINDOW: TimeDelta = TimeDelta::days(1);

/// Adds one failure to `key` in a single statement (so concurrent failures are all counted),
/// starting a new window when the current one began at or before `now - window`.
async fn increment(
    db: &DatabaseConnection,
    key: &str,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Result<row::Model, AuthError> {
    use sea_orm::ExprTrait as _;
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
    Ok(updated)
}

/// Moves `key`'s block to `until`, never earlier than it already is (a concurrent failure
/// with a lower count must not shorten it).
async fn set_blocked_until(
    db: &DatabaseConnection,
    key: &str,
    until: DateTime<Utc>,
) -> Result<(), AuthError> {
    row::Entity::update_many()
        .col_expr(row::Column::BlockedUntil, Expr::value(until))
        .filter(row::Column::Key.eq(key))
        .filter(
            sea_orm::Condition::any()
                .add(row::Column::BlockedUntil.is_null())
                .add(row::Column::BlockedUntil.lt(until)),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Whole seconds, rounded up: a client that waits exactly this long is let through.
fn to_duration(delta: TimeDelta) -> Duration {
    let micros =
        u64::try_from(delta.num_microseconds().unwrap_or(i64::MAX).max(1)).unwrap_or(u64::MAX);
    let seconds = micros.div_ceil(1_000_000);
    Duration::from_secs(seconds)
}
