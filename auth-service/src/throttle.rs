//! Sign-in throttling kept in the database, so it holds across replicas: progressive delays
//! per account after repeated failures, and a failure budget per client address and window.
//!
//! The lockout policy: progressive delays count failures per *(account, address)*, so guesses
//! from elsewhere never delay the owner's own address; a much higher daily ceiling per account
//! (THROTTLE_ACCOUNT_MAX_FAILURES, from all addresses together) stops distributed guessing, and
//! does not apply to addresses the account signed in from in the last 30 days; each address
//! has a failure budget across all accounts.
//!
//! Every attempt is charged before its password is hashed (one atomic statement per key, see
//! `store::throttle::charge`), so a burst of concurrent guesses cannot outrun the counters: the
//! burst gets the free attempts verified and the rest refused at once. A success gives the
//! address and the account their charges back and starts the pair over.

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
    account_max_failures: i32,
}

/// Throttle keys of one sign-in attempt.
#[derive(Debug, Clone)]
pub struct AttemptKeys {
    /// This account from this address: the progressive delays.
    pair: String,
    /// This account from every address: the daily ceiling.
    account: String,
    /// This address, for every account: the address budget.
    address: String,
    /// Marks the address as one this account signed in from.
    known: String,
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
            pair: format!("account-ip:{digest}:{client}"),
            account: format!("account:{digest}"),
            address: format!("ip:{client}"),
            known: format!("known:{digest}:{client}"),
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
            account_max_failures: clamp(args.throttle_account_max_failures),
        }
    }

    /// Admits one sign-in attempt, charging it *before* its password is checked (one atomic
    /// statement per key) to the address, to this account from this address, and, unless the
    /// account signed in from this address in the last 30 days, to the account as a whole;
    /// or refuses it with `Throttled`. Of a burst of concurrent guesses only the free attempts
    /// get through. Settle the attempt with [`Throttle::succeeded`] or [`Throttle::failed`].
    pub async fn admit(
        &self,
        db: &DatabaseConnection,
        keys: AttemptKeys,
        now: DateTime<Utc>,
    ) -> Result<Admitted, AuthError> {
        let mut admitted = Admitted {
            keys,
            now,
            pair_failures: 0,
            pair_block: None,
            address_block: None,
            account: None,
        };
        if !self.enabled {
            return Ok(admitted);
        }
        let keys = &admitted.keys;
        let known = store::remembered(db, &keys.known)
            .await?
            .is_some_and(|seen| now - seen < KNOWN_ADDRESS_PERIOD);
        let watched: &[&str] = if known {
            &[&keys.pair, &keys.address]
        } else {
            &[&keys.pair, &keys.address, &keys.account]
        };
        // A blocked key costs one read, and no write.
        self.refuse_if_blocked(db, watched, now).await?;

        let address_block = now + self.address_window;
        let charged = store::charge(
            db,
            &keys.address,
            now,
            self.address_window,
            self.address_max_failures,
            address_block,
        )
        .await?;
        let Some(address) = charged else {
            return Err(self.refusal(db, watched, now).await);
        };
        admitted.address_block =
            (address.count >= self.address_max_failures).then_some(address_block);

        // Until this attempt's outcome is known, a charge that uses up the free attempts
        // blocks for the longest delay; `failed` sets the real one.
        let pair_block = now + self.max_delay;
        let charged = store::charge(
            db,
            &keys.pair,
            now,
            ACCOUNT_WINDOW,
            self.free_attempts,
            pair_block,
        )
        .await?;
        let Some(pair) = charged else {
            store::refund(db, &keys.address, admitted.address_block).await?;
            return Err(self.refusal(db, watched, now).await);
        };
        admitted.pair_failures = pair.count;
        admitted.pair_block = (pair.count >= self.free_attempts).then_some(pair_block);

        if !known {
            let account_block = now + self.max_delay;
            let charged = store::charge(
                db,
                &keys.account,
                now,
                ACCOUNT_WINDOW,
                self.account_max_failures,
                account_block,
            )
            .await?;
            let Some(account) = charged else {
                store::refund(db, &keys.address, admitted.address_block).await?;
                store::refund(db, &keys.pair, admitted.pair_block).await?;
                return Err(self.refusal(db, watched, now).await);
            };
            admitted.account =
                Some((account.count >= self.account_max_failures).then_some(account_block));
        }
        Ok(admitted)
    }

    /// The attempt failed: from the free attempts on, each failure of this account from this
    /// address blocks the pair for the base delay, doubled per further failure, up to the
    /// longest delay. The charges stay counted.
    pub async fn failed(
        &self,
        db: &DatabaseConnection,
        attempt: Admitted,
    ) -> Result<(), AuthError> {
        if self.enabled && attempt.pair_failures >= self.free_attempts {
            let doublings = u32::try_from(attempt.pair_failures - self.free_attempts)
                .unwrap_or(0)
                .min(20);
            let delay = (self.base_delay * 2_i32.saturating_pow(doublings)).min(self.max_delay);
            store::block_exactly(db, &attempt.keys.pair, attempt.now + delay).await?;
        }
        Ok(())
    }

    /// The attempt succeeded: this account starts over from this address, the address and
    /// the account get their charges back, and the address is remembered as the account's.
    pub async fn succeeded(
        &self,
        db: &DatabaseConnection,
        attempt: Admitted,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let keys = &attempt.keys;
        store::forget(db, &keys.pair).await?;
        store::refund(db, &keys.address, attempt.address_block).await?;
        if let Some(account_block) = attempt.account {
            store::refund(db, &keys.account, account_block).await?;
        }
        store::remember(db, &keys.known, attempt.now).await?;
        Ok(())
    }

    async fn refuse_if_blocked(
        &self,
        db: &DatabaseConnection,
        keys: &[&str],
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        match store::blocked_until(db, keys).await? {
            Some(until) if until > now => Err(AuthError::Throttled(to_duration(until - now))),
            _ => Ok(()),
        }
    }

    /// `Throttled` with the time left on the block that refused a charge.
    async fn refusal(
        &self,
        db: &DatabaseConnection,
        keys: &[&str],
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
    /// This account's count from this address, including this attempt.
    pair_failures: i32,
    /// The provisional pair block this attempt's charge set, if it used up the free attempts.
    pair_block: Option<DateTime<Utc>>,
    /// The address block this attempt's charge set, if it used up the address's budget.
    address_block: Option<DateTime<Utc>>,
    /// Whether the account as a whole was charged (not a known address), and the block that
    /// charge set, if it reached the ceiling.
    account: Option<Option<DateTime<Utc>>>,
}

/// How long an account's failures count before they are forgotten.
const ACCOUNT_WINDOW: TimeDelta = TimeDelta::days(1);

/// How long an address an account signed in from stays exempt from the account's ceiling.
const KNOWN_ADDRESS_PERIOD: TimeDelta = TimeDelta::days(30);

/// Whole seconds, rounded up: a client that waits exactly this long is let through.
fn to_duration(delta: TimeDelta) -> Duration {
    let micros =
        u64::try_from(delta.num_microseconds().unwrap_or(i64::MAX).max(1)).unwrap_or(u64::MAX);
    let seconds = micros.div_ceil(1_000_000);
    Duration::from_secs(seconds)
}
