//! A charged sign-in attempt and how it is settled: a failure may block the (account,
//! address) pair, a success gives the charges back, an attempt dropped before its password
//! hash started gives them back in the background, and one dropped after (a call cancelled
//! mid-hash) is settled as a failure: the CPU was spent, so the guess counts.

use super::{AttemptKeys, Throttle, store};
use crate::error::AuthError;
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::DatabaseConnection;

/// One charge made to a throttle key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Charge {
    /// The (provisional) block this charge set because it reached the key's limit; a refund
    /// lifts exactly this block, and no other.
    pub(super) block: Option<DateTime<Utc>>,
}

impl Charge {
    /// A charge that set `block` if it `reached` the limit.
    pub(super) fn of(reached: bool, block: DateTime<Utc>) -> Self {
        Self {
            block: reached.then_some(block),
        }
    }
}

/// The charges of one sign-in attempt: `None` for a key not charged (yet).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Charges {
    /// This account's count from this address, including this attempt.
    pub(super) pair_failures: i32,
    pub(super) address: Option<Charge>,
    pub(super) pair: Option<Charge>,
    pub(super) account: Option<Charge>,
}

/// A sign-in attempt [`Throttle::admit`] charged. Settle it with [`Attempt::failed`] or
/// [`Attempt::succeeded`]; dropped unsettled, it gives its charges back in the background.
pub struct Attempt {
    pub(super) throttle: Throttle,
    pub(super) db: DatabaseConnection,
    pub(super) keys: AttemptKeys,
    pub(super) charges: Charges,
    pub(super) settled: bool,
    /// The account signed in from this address in the last 30 days.
    pub(super) known: bool,
    /// When its password hash started, if it has: from then on it is charged whatever happens.
    pub(super) hashing_since: Option<DateTime<Utc>>,
}

impl Attempt {
    /// Whether the account signed in from this address in the last 30 days (its hashing turn
    /// comes before others').
    pub fn is_from_known_address(&self) -> bool {
        self.known
    }

    /// The password hash is about to start (at `now`): if the attempt is dropped from here on
    /// (the call cancelled), it is settled as a failure, not given back.
    pub fn hashing(&mut self, now: DateTime<Utc>) {
        self.hashing_since = Some(now);
    }

    /// The password was wrong: from the free attempts on, each failure of this account from
    /// this address blocks the pair for the base delay, doubled per further failure, up to
    /// the longest delay, counted from `now`. The charges stay counted.
    pub async fn failed(mut self, now: DateTime<Utc>) -> Result<(), AuthError> {
        self.settled = true;
        block_failed_pair(&self.throttle, &self.db, &self.keys, self.charges, now).await?;
        Ok(())
    }

    /// The password was right: this account starts over from this address, the address and
    /// the account get their charges back, and the address is remembered as the account's.
    pub async fn succeeded(mut self, now: DateTime<Utc>) -> Result<(), AuthError> {
        self.settled = true;
        if !self.throttle.enabled {
            return Ok(());
        }
        let (keys, charges) = (&self.keys, self.charges);
        store::forget(&self.db, &keys.pair).await?;
        if let Some(charge) = charges.address {
            store::refund(&self.db, &keys.address, charge.block).await?;
        }
        if let Some(charge) = charges.account {
            store::refund(&self.db, &keys.account, charge.block).await?;
        }
        store::remember(&self.db, &keys.known, now.trunc_subsecs(6)).await?;
        Ok(())
    }
}

/// The delay a failure adds: from the free attempts on, the pair is blocked for the base delay,
/// doubled per further failure, up to the longest delay, counted from `now`.
async fn block_failed_pair(
    t: &Throttle,
    db: &DatabaseConnection,
    keys: &AttemptKeys,
    charges: Charges,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    if charges.pair.is_some() && charges.pair_failures >= t.free_attempts {
        let doublings = u32::try_from(charges.pair_failures - t.free_attempts)
            .unwrap_or(0)
            .min(20);
        let delay = (t.base_delay * 2_i32.saturating_pow(doublings)).min(t.max_delay);
        let until = now.trunc_subsecs(6) + delay;
        store::block_exactly(db, &keys.pair, until).await?;
    }
    Ok(())
}

/// Gives back every charge of an attempt whose password was never checked.
async fn give_back(
    db: &DatabaseConnection,
    keys: &AttemptKeys,
    charges: Charges,
) -> Result<(), sea_orm::DbErr> {
    for (key, charge) in [
        (&keys.address, charges.address),
        (&keys.pair, charges.pair),
        (&keys.account, charges.account),
    ] {
        if let Some(charge) = charge {
            store::refund(db, key, charge.block).await?;
        }
    }
    Ok(())
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let c = self.charges;
        if self.settled || (c.address.is_none() && c.pair.is_none() && c.account.is_none()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (db, keys) = (self.db.clone(), self.keys.clone());
        if let Some(since) = self.hashing_since {
            // Cancelled after its hash started: a guess like any other.
            let throttle = self.throttle.clone();
            runtime.spawn(async move {
                if let Err(error) = block_failed_pair(&throttle, &db, &keys, c, since).await {
                    tracing::warn!(%error, "charging a sign-in cancelled mid-hash failed");
                }
            });
            return;
        }
        runtime.spawn(async move {
            if let Err(error) = give_back(&db, &keys, c).await {
                tracing::warn!(%error, "giving back the charges of an unchecked sign-in failed");
            }
        });
    }
}
