//! Sign-up, sign-in, the current user and what they change about their account (password,
//! profile).

use super::{
    Deliveries, Sessions,
    password::{Claimant, Class, PasswordCheck, PasswordHasher},
    throttle::{AttemptKeys, Throttle},
};
use crate::{
    domain::{
        Credentials, Device, NewAccount, Password, PasswordChange, ProfileChange, TokenPair, User,
    },
    error::AuthError,
    store::{
        deletions,
        users::{self, NewUser},
    },
};
use clock::SharedClock;
use grpc_edge::{client_address::ClientKey, violations::FieldViolations};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use uuid::Uuid;

/// A signed-in user and their tokens.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub tokens: TokenPair,
}

/// Accounts: creating them, signing in to them, and who a bearer token's user is.
pub struct Accounts {
    db: DatabaseConnection,
    clock: SharedClock,
    hasher: PasswordHasher,
    throttle: Throttle,
    sessions: Arc<Sessions>,
    deliveries: Arc<Deliveries>,
}

impl Accounts {
    /// Accounts in `db`, hashing with `hasher`, throttled by `throttle`, signed in through
    /// `sessions`; deletions go out through `deliveries`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        hasher: PasswordHasher,
        throttle: Throttle,
        sessions: Arc<Sessions>,
        deliveries: Arc<Deliveries>,
    ) -> Self {
        Self {
            db,
            clock,
            hasher,
            throttle,
            sessions,
            deliveries,
        }
    }

    /// Creates the account and signs it in on `device`; `client` waits its turn for a hash.
    pub async fn sign_up(
        &self,
        account: NewAccount,
        client: ClientKey,
        device: Device,
    ) -> Result<SignedIn, AuthError> {
        let charge = self
            .throttle
            .admit_sign_up(&self.db, client, self.clock.now())
            .await?;
        let password_hash = match self.hasher.hash_as(client, account.password).await {
            // Refused before any hashing: the sign-up does not count.
            Err(AuthError::Busy(delay)) => {
                self.throttle.give_back_sign_up(&self.db, charge).await?;
                return Err(AuthError::Busy(delay));
            }
            hashed => hashed?,
        };
        let now = self.clock.now();
        let new_user = NewUser {
            email: account.email.as_str(),
            display_name: account.display_name.as_str(),
            password_hash,
            now,
        };
        let user = users::insert(&self.db, new_user)
            .await?
            .ok_or(AuthError::EmailTaken)?;
        tracing::info!(target: "audit", event = "sign_up", user_id = %user.id, "account created");
        let tokens = self.sessions.start(&user, device, None, now).await?;
        Ok(SignedIn { user, tokens })
    }

    /// How many password hashes are running now.
    pub fn hashes_running(&self) -> usize {
        self.hasher.running()
    }

    /// Checks the credentials (same work whether or not the account exists) and signs in on
    /// `device`.
    pub async fn sign_in(
        &self,
        credentials: Credentials,
        client: ClientKey,
        device: Device,
    ) -> Result<SignedIn, AuthError> {
        let Some(checked) = self
            .check_password(
                credentials.email.as_str(),
                &credentials.password,
                client,
                "sign_in_failed",
            )
            .await?
        else {
            return Err(AuthError::InvalidCredentials);
        };
        let user = &checked.user;
        // Opened only if the password is still the one just verified: a sign-in that raced a
        // password change does not outlive it.
        let tokens = self
            .sessions
            .start(user, device, Some(checked.version), self.clock.now())
            .await?;
        tracing::info!(target: "audit", event = "sign_in", user_id = %user.id, "signed in");
        if checked.needs_rehash {
            self.upgrade_hash(&checked, credentials.password, client)
                .await;
        }
        Ok(SignedIn {
            user: checked.user,
            tokens,
        })
    }

    /// Checks `password` for the account registered as `email`, as a sign-in attempt of
    /// `client`: admitted by the throttle, hashed in `client`'s turn, the same work whether or
    /// not the account exists, and recorded as a success or a failure. `None` when it is
    /// wrong.
    async fn check_password(
        &self,
        email: &str,
        password: &Password,
        client: ClientKey,
        failure_event: &'static str,
    ) -> Result<Option<Checked>, AuthError> {
        let keys = AttemptKeys::new(email, client);
        let mut attempt = self
            .throttle
            .admit(&self.db, keys, self.clock.now())
            .await?;
        // Any error before the hash starts drops `attempt` unsettled: its charges are given
        // back. From `hashing` on, even a cancelled call counts as a guess.
        let stored = users::credentials(&self.db, email).await?;
        let (account, hash) = match stored {
            Some(stored) => (
                Some((stored.user, stored.password_version)),
                Some(stored.password_hash),
            ),
            None => (None, None),
        };
        let class = if attempt.is_from_known_address() {
            Class::Known
        } else {
            Class::Other
        };
        let turn = self.hasher.turn(Claimant { client, class }).await?;
        attempt.hashing(self.clock.now());
        let verified = turn.verify(password.clone(), hash).await?;
        let now = self.clock.now();
        match (account, verified) {
            (Some((user, version)), PasswordCheck::Right { needs_rehash }) => {
                attempt.succeeded(now).await?;
                Ok(Some(Checked {
                    user,
                    version,
                    needs_rehash,
                    class,
                }))
            }
            (account, _) => {
                match account {
                    // The account's own user, signed in (ChangePassword): say whose.
                    Some((user, _)) if failure_event != "sign_in_failed" => tracing::info!(
                        target: "audit", event = failure_event, user_id = %user.id,
                        "password check failed"
                    ),
                    _ => tracing::info!(
                        target: "audit", event = failure_event, %client, "sign-in failed"
                    ),
                }
                attempt.failed(now).await?;
                Ok(None)
            }
        }
    }

    /// Changes the bearer token's user's password after checking the current one (a sign-in
    /// attempt of `client`, throttled alike), signing out their other sessions if asked;
    /// returns how many were.
    pub async fn change_password(
        &self,
        bearer: Option<&str>,
        change: PasswordChange,
        client: ClientKey,
    ) -> Result<u64, AuthError> {
        let (user, session_id) = self.caller(bearer).await?;
        let Some(checked) = self
            .check_password(
                &user.email,
                &change.current,
                client,
                "password_check_failed",
            )
            .await?
        else {
            return Err(AuthError::WrongPassword);
        };
        // Compared with the password just verified: no second hash to find out.
        if change.new.is_same_as(&change.current) {
            let mut violations = FieldViolations::new();
            violations.add("new_password", "must differ from the current password");
            return Err(AuthError::InvalidArgument(violations));
        }
        // In the same line as the check: a flood from elsewhere does not keep the owner from
        // finishing what their known address started.
        let hash = self
            .hasher
            .turn(Claimant {
                client,
                class: checked.class,
            })
            .await?
            .hash(change.new)
            .await?;
        let change = users::PasswordChange {
            id: user.id,
            version: checked.version,
            password_hash: hash,
            sign_out_all_but: change.sign_out_others.then_some(session_id),
            asking: session_id,
            now: self.clock.now(),
        };
        // Nothing changed if another change came first (the current password is no longer
        // the one given) or this session was signed out meanwhile.
        let signed_out = users::change_password(&self.db, change)
            .await?
            .ok_or(AuthError::WrongPassword)?;
        tracing::info!(
            target: "audit", event = "password_changed", user_id = %user.id, %session_id,
            signed_out, "password changed"
        );
        Ok(signed_out)
    }

    /// Deletes the bearer token's user's account after checking `password` (a sign-in attempt
    /// of `client`, throttled alike): every session ends and the account goes, with the
    /// deletion recorded for the task-service in the same transaction and delivered to it
    /// as soon as it can be (see `deletions`).
    pub async fn delete_account(
        &self,
        bearer: Option<&str>,
        password: Password,
        client: ClientKey,
    ) -> Result<(), AuthError> {
        let (user, session_id) = self.caller(bearer).await?;
        let Some(checked) = self
            .check_password(&user.email, &password, client, "password_check_failed")
            .await?
        else {
            return Err(AuthError::WrongPassword);
        };
        let now = self.clock.now();
        // Nothing deleted if the password changed since it was checked.
        if !deletions::delete_account(&self.db, user.id, checked.version, now).await? {
            return Err(AuthError::WrongPassword);
        }
        tracing::info!(
            target: "audit", event = "account_deleted", user_id = %user.id, %session_id,
            "account deleted; its tasks are purged at the task-service"
        );
        self.deliveries.wake();
        Ok(())
    }

    /// Applies `change` to the bearer token's user's profile; the account as it is now.
    pub async fn update_profile(
        &self,
        bearer: Option<&str>,
        change: ProfileChange,
    ) -> Result<User, AuthError> {
        let (user, _) = self.caller(bearer).await?;
        let Some(display_name) = change.display_name else {
            return Ok(user);
        };
        users::set_display_name(&self.db, user.id, display_name.as_str(), self.clock.now())
            .await?
            .ok_or_else(|| AuthError::InvalidToken("user no longer exists".into()))
    }

    /// Re-hashes with the configured parameters, unless the password changed meanwhile. A
    /// failure is logged, not fatal: the old hash still works and the upgrade is tried again
    /// next time.
    async fn upgrade_hash(&self, checked: &Checked, password: Password, client: ClientKey) {
        let user_id = checked.user.id;
        let result = async {
            let hash = self.hasher.hash_as(client, password).await?;
            let now = self.clock.now();
            Ok::<_, AuthError>(users::rehash(&self.db, user_id, checked.version, hash, now).await?)
        }
        .await;
        match result {
            Ok(true) => tracing::info!(%user_id, "password hash upgraded to current parameters"),
            Ok(false) => tracing::info!(%user_id, "password changed meanwhile: no upgrade"),
            Err(error) => tracing::warn!(%user_id, %error, "password hash upgrade failed"),
        }
    }

    /// The user behind a bearer access token of a live session.
    pub async fn current_user(&self, bearer: Option<&str>) -> Result<User, AuthError> {
        Ok(self.caller(bearer).await?.0)
    }

    /// The user behind a bearer access token of a live session, and that session's id.
    async fn caller(&self, bearer: Option<&str>) -> Result<(User, Uuid), AuthError> {
        let (_, session) = self.sessions.authenticate(bearer).await?;
        let user = users::find(&self.db, session.user_id)
            .await?
            .ok_or_else(|| AuthError::InvalidToken("user no longer exists".into()))?;
        Ok((user, session.id))
    }
}

/// An account whose password was just verified.
struct Checked {
    user: User,
    /// Which password it was (see `users::change_password`).
    version: i64,
    /// Its hash was made with other parameters than the configured ones.
    needs_rehash: bool,
    /// The hashing line the check waited in.
    class: Class,
}
