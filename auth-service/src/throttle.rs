//! Sign-in throttling kept in the database, so it holds across replicas: progressive delays
//! per account after repeated failures, and a failure budget per client address and window.

use crate::{config::ThrottleArgs, error::AuthError, store::throttle as store};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::DatabaseConnection;
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
        let blocked_until = store::blocked_until(db, &[&keys.account, &keys.address])
            .await?
            .filter(|until| *until > now);
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
        let account = store::count_failure(db, &keys.account, now, ACCOUNT_WINDOW).await?;
        if account.count >= self.free_attempts {
            let doublings = u32::try_from(account.count - self.free_attempts)
                .unwrap_or(0)
                .min(20);
            let delay = (self.base_delay * 2_i32.saturating_pow(doublings)).min(self.max_delay);
            store::block(db, &keys.account, now + delay).await?;
        }
        let address = store::count_failure(db, &keys.address, now, self.address_window).await?;
        if address.count >= self.address_max_failures {
            store::block(
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
            store::forget(db, &keys.account).await?;
        }
        Ok(())
    }
}

/// How long an account's failures count before they are forgotten.
const ACCOUNT_WINDOW: TimeDelta = TimeDelta::days(1);

/// Whole seconds, rounded up: a client that waits exactly this long is let through.
fn to_duration(delta: TimeDelta) -> Duration {
    let micros =
        u64::try_from(delta.num_microseconds().unwrap_or(i64::MAX).max(1)).unwrap_or(u64::MAX);
    let seconds = micros.div_ceil(1_000_000);
    Duration::from_secs(seconds)
}
