//! Sign-in throttling kept in the database, so it holds across replicas: progressive delays
//! per account after repeated failures, and a failure budget per client address and window.
//!
//! Every attempt is charged before its password is hashed (one atomic statement per key, see
//! `store::throttle::charge`), so a burst of concurrent guesses cannot outrun the counter: the
//! burst gets the free attempts verified and the rest refused at once. A success gives the
//! address its charge back and resets the account.

use crate::{config::ThrottleArgs, error::AuthError, fair::ClientKey, store::throttle as store};
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
    /// Keys for `email` (normalized) from `client` (an IPv4 address, or an IPv6 /64: one
    /// machine's addresses share a budget). The email is hashed so the table holds no
    /// addresses of people who may not even have an account.
    pub fn new(email: &str, client: ClientKey) -> Self {
        let digest: String = Sha256::digest(email.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            account: format!("account:{digest}"),
            address: format!("ip:{client}"),
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

    /// Admits one sign-in attempt, charging it to the account and to the address *before* its
    /// password is checked (atomically, in the database), or refuses it with `Throttled`.
    /// Of a burst of concurrent guesses at one account, only the free attempts get through;
    /// the same holds for the address's budget. Settle the attempt with
    /// [`Throttle::succeeded`] or [`Throttle::failed`].
    pub async fn admit(
        &self,
        db: &DatabaseConnection,
        keys: AttemptKeys,
        now: DateTime<Utc>,
    ) -> Result<Admitted, AuthError> {
        let mut admitted = Admitted {
            keys,
            now,
            account_failures: 0,
            address_block: None,
        };
        if !self.enabled {
            return Ok(admitted);
        }
        let keys = &admitted.keys;
        // A blocked account or address costs one read, and no write.
        self.refuse_if_blocked(db, keys, now).await?;
        let address_block = now + self.address_window;
        let Some(address) = store::charge(
            db,
            &keys.address,
            now,
            self.address_window,
            self.address_max_failures,
            address_block,
        )
        .await?
        else {
            return Err(self.refusal(db, keys, now).await);
        };
        let address_block = (address.count >= self.address_max_failures).then_some(address_block);
        // Until this attempt's outcome is known, a charge that uses up the free attempts
        // blocks the account for the longest delay; `failed` sets the real one.
        let account = store::charge(
            db,
            &keys.account,
            now,
            ACCOUNT_WINDOW,
            self.free_attempts,
            now + self.max_delay,
        )
        .await?;
        let Some(account) = account else {
            store::refund(db, &keys.address, address_block).await?;
            return Err(self.refusal(db, keys, now).await);
        };
        admitted.account_failures = account.count;
        admitted.address_block = address_block;
        Ok(admitted)
    }

    /// The attempt failed: from the free attempts on, each failure blocks the account for
    /// the base delay, doubled per further failure, up to the longest delay. The charges
    /// stay counted.
    pub async fn failed(
        &self,
        db: &DatabaseConnection,
        attempt: Admitted,
    ) -> Result<(), AuthError> {
        if self.enabled && attempt.account_failures >= self.free_attempts {
            let doublings = u32::try_from(attempt.account_failures - self.free_attempts)
                .unwrap_or(0)
                .min(20);
            let delay = (self.base_delay * 2_i32.saturating_pow(doublings)).min(self.max_delay);
            store::block_exactly(db, &attempt.keys.account, attempt.now + delay).await?;
        }
        Ok(())
    }

    /// The attempt succeeded: the account starts over, and the address gets its charge back.
    pub async fn succeeded(
        &self,
        db: &DatabaseConnection,
        attempt: Admitted,
    ) -> Result<(), AuthError> {
        if self.enabled {
            store::forget(db, &attempt.keys.account).await?;
            store::refund(db, &attempt.keys.address, attempt.address_block).await?;
        }
        Ok(())
    }

    async fn refuse_if_blocked(
        &self,
        db: &DatabaseConnection,
        keys: &AttemptKeys,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        match store::blocked_until(db, &[&keys.account, &keys.address]).await? {
            Some(until) if until > now => Err(AuthError::Throttled(to_duration(until - now))),
            _ => Ok(()),
        }
    }

    /// `Throttled` with the time left on the block that refused a charge.
    async fn refusal(
        &self,
        db: &DatabaseConnection,
        keys: &AttemptKeys,
        now: DateTime<Utc>,
    ) -> AuthError {
        match self.refuse_if_blocked(db, keys, now).await {
            Err(error) => error,
            // The block ended in between: ask for the shortest wait.
            Ok(()) => AuthError::Throttled(Duration::from_secs(1)),
        }
    }
}

/// An attempt [`Throttle::admit`] let through, to settle with its outcome.
#[derive(Debug)]
pub struct Admitted {
    keys: AttemptKeys,
    now: DateTime<Utc>,
    /// The account's count including this attempt.
    account_failures: i32,
    /// The address block this attempt's charge set, if it used up the address's budget.
    address_block: Option<DateTime<Utc>>,
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
