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

use crate::{config::ThrottleArgs, error::AuthError, store::throttle as store};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use grpc_edge::client_address::ClientKey;
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
    signup_max: i32,
    signup_window: TimeDelta,
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
            signup_max: clamp(args.throttle_signup_max_per_address),
            signup_window: TimeDelta::seconds(args.throttle_signup_window_secs.into()),
        }
    }

    /// Admits one sign-up from `client`, charged before its password is hashed, or refuses it
    /// with `SignUpThrottled` once the address has made its sign-ups of the window (successful
    /// or not: each costs a hash, and each new account is a new budget of guesses).
    pub async fn admit_sign_up(
        &self,
        db: &DatabaseConnection,
        client: ClientKey,
        now: DateTime<Utc>,
    ) -> Result<SignUpCharge, AuthError> {
        let key = format!("signup:{client}");
        if !self.enabled {
            return Ok(SignUpCharge { key, charge: None });
        }
        let now = now.trunc_subsecs(6);
        let block = now + self.signup_window;
        let window = self.signup_window;
        match store::charge(db, &key, now, window, self.signup_max, block).await? {
            Some(charged) => Ok(SignUpCharge {
                key,
                charge: Some(Charge::of(charged.count >= self.signup_max, block)),
            }),
            None => match self.refusal(db, &[&key], now).await {
                AuthError::Throttled(delay) => Err(AuthError::SignUpThrottled(delay)),
                other => Err(other),
            },
        }
    }

    /// Gives a sign-up's charge back (it was refused before any hashing).
    pub async fn give_back_sign_up(
        &self,
        db: &DatabaseConnection,
        charge: SignUpCharge,
    ) -> Result<(), AuthError> {
        if let Some(made) = charge.charge {
            store::refund(db, &charge.key, made.block).await?;
        }
        Ok(())
    }

    /// Admits one sign-in attempt, charging it *before* its password is checked (one atomic
    /// statement per key) to the address, to this account from this address, and, unless the
    /// account signed in from this address in the last 30 days, to the account as a whole;
    /// or refuses it with `Throttled`. Of a burst of concurrent guesses only the free attempts
    /// get through. Settle the attempt with [`Attempt::failed`] or [`Attempt::succeeded`]; an
    /// attempt dropped unsettled before [`Attempt::hashing`] (an error, a full hashing queue,
    /// a call cancelled while waiting) gives every charge back, since no password was
    /// checked; one dropped after counts as a failure.
    pub async fn admit(
        &self,
        db: &DatabaseConnection,
        keys: AttemptKeys,
        now: DateTime<Utc>,
    ) -> Result<Attempt, AuthError> {
        // Whole microseconds, as PostgreSQL stores them: a refund finds the block its charge
        // set by comparing the two for equality.
        let now = now.trunc_subsecs(6);
        let mut attempt = Attempt {
            throttle: self.clone(),
            db: db.clone(),
            keys: keys.clone(),
            charges: Charges::default(),
            settled: false,
            known: false,
            hashing_since: None,
        };
        if !self.enabled {
            return Ok(attempt);
        }
        let known = store::remembered(db, &keys.known)
            .await?
            .is_some_and(|seen| now - seen < KNOWN_ADDRESS_PERIOD);
        attempt.known = known;
        let watched: &[&str] = if known {
            &[&keys.pair, &keys.address]
        } else {
            &[&keys.pair, &keys.address, &keys.account]
        };
        // A blocked key costs one read, and no write.
        self.refuse_if_blocked(db, watched, now).await?;

        // Each charge is recorded in `attempt` as soon as it is made: any way out of here
        // before the last one (a refusal, an error) gives the earlier ones back.
        let block = now + self.address_window;
        let window = self.address_window;
        let Some(address) = store::charge(
            db,
            &keys.address,
            now,
            window,
            self.address_max_failures,
            block,
        )
        .await?
        else {
            return Err(self.refusal(db, watched, now).await);
        };
        attempt.charges.address = Some(Charge::of(
            address.count >= self.address_max_failures,
            block,
        ));

        // Until this attempt's outcome is known, a charge that uses up the free attempts
        // blocks the pair for as long as an attempt can be in flight (so concurrent guesses
        // are told to come back soon, not in 15 minutes); `failed` sets the real delay.
        let block = now + IN_FLIGHT;
        let Some(pair) = store::charge(
            db,
            &keys.pair,
            now,
            ACCOUNT_WINDOW,
            self.free_attempts,
            block,
        )
        .await?
        else {
            return Err(self.refusal(db, watched, now).await);
        };
        attempt.charges.pair_failures = pair.count;
        attempt.charges.pair = Some(Charge::of(pair.count >= self.free_attempts, block));

        if !known {
            // Reaching the ceiling closes the account for the longest delay, whatever the
            // outcome of this attempt.
            let block = now + self.max_delay;
            let ceiling = self.account_max_failures;
            let Some(account) =
                store::charge(db, &keys.account, now, ACCOUNT_WINDOW, ceiling, block).await?
            else {
                return Err(self.refusal(db, watched, now).await);
            };
            attempt.charges.account = Some(Charge::of(account.count >= ceiling, block));
        }
        Ok(attempt)
    }

    /// The longest window any counter counts over: rows older than it have no effect.
    pub fn longest_window(&self) -> TimeDelta {
        ACCOUNT_WINDOW
            .max(self.address_window)
            .max(self.signup_window)
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

/// A sign-up charged to its address (`charge`: `None` when nothing was charged).
#[derive(Debug)]
pub struct SignUpCharge {
    key: String,
    charge: Option<Charge>,
}

/// How long an account's failures count before they are forgotten.
const ACCOUNT_WINDOW: TimeDelta = TimeDelta::days(1);

/// The longest a sign-in attempt is in flight between its charge and its outcome: the
/// hashing queue's wait (HASH_QUEUE_MAX_WAIT_MS, 5 s by default), the hash, and the
/// bookkeeping, with room to spare. The provisional block of a charge lasts this long.
const IN_FLIGHT: TimeDelta = TimeDelta::seconds(30);

/// How long an address an account signed in from stays exempt from the account's ceiling.
const KNOWN_ADDRESS_PERIOD: TimeDelta = TimeDelta::days(30);

/// Whole seconds, rounded up: a client that waits exactly this long is let through.
fn to_duration(delta: TimeDelta) -> Duration {
    let micros =
        u64::try_from(delta.num_microseconds().unwrap_or(i64::MAX).max(1)).unwrap_or(u64::MAX);
    let seconds = micros.div_ceil(1_000_000);
    Duration::from_secs(seconds)
}

mod attempt;

pub use attempt::Attempt;
use attempt::{Charge, Charges};

#[cfg(test)]
mod tests;
