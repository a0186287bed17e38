//! Sign-up, sign-in and the current user.

use super::{
    Sessions,
    password::{Claimant, Class, PasswordCheck, PasswordHasher},
    throttle::{AttemptKeys, Throttle},
};
use crate::{
    domain::{Credentials, NewAccount, Password, TokenPair, User},
    error::AuthError,
    store::users::{self, NewUser},
};
use clock::SharedClock;
use grpc_edge::client_address::ClientKey;
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
}

impl Accounts {
    /// Accounts in `db`, hashing with `hasher`, throttled by `throttle`, signed in through
    /// `sessions`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        hasher: PasswordHasher,
        throttle: Throttle,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self {
            db,
            clock,
            hasher,
            throttle,
            sessions,
        }
    }

    /// Creates the account and signs it in; `client` waits its turn for a hash.
    pub async fn sign_up(
        &self,
        account: NewAccount,
        client: ClientKey,
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
        let tokens = self.sessions.start(&user, now).await?;
        Ok(SignedIn { user, tokens })
    }

    /// How many password hashes are running now.
    pub fn hashes_running(&self) -> usize {
        self.hasher.running()
    }

    /// Checks the credentials (same work whether or not the account exists) and signs in.
    pub async fn sign_in(
        &self,
        credentials: Credentials,
        client: ClientKey,
    ) -> Result<SignedIn, AuthError> {
        let keys = AttemptKeys::new(credentials.email.as_str(), client);
        let mut attempt = self
            .throttle
            .admit(&self.db, keys, self.clock.now())
            .await?;
        // Any error before the hash starts drops `attempt` unsettled: its charges are given
        // back. From `hashing` on, even a cancelled call counts as a guess.
        let stored = users::credentials(&self.db, credentials.email.as_str()).await?;
        let (user, hash) = match stored {
            Some(stored) => (Some(stored.user), Some(stored.password_hash)),
            None => (None, None),
        };
        let class = if attempt.is_from_known_address() {
            Class::Known
        } else {
            Class::Other
        };
        let turn = self.hasher.turn(Claimant { client, class }).await?;
        attempt.hashing(self.clock.now());
        let verified = turn.verify(credentials.password.clone(), hash).await?;
        let now = self.clock.now();
        let (user, needs_rehash) = match (user, verified) {
            (Some(user), PasswordCheck::Right { needs_rehash }) => (user, needs_rehash),
            _ => {
                tracing::info!(target: "audit", event = "sign_in_failed", %client, "sign-in failed");
                attempt.failed(now).await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        attempt.succeeded(now).await?;
        if needs_rehash {
            self.upgrade_hash(&user, credentials.password, client).await;
        }
        tracing::info!(target: "audit", event = "sign_in", user_id = %user.id, "signed in");
        let tokens = self.sessions.start(&user, now).await?;
        Ok(SignedIn { user, tokens })
    }

    /// Re-hashes with the configured parameters. A failure is logged, not fatal: the old
    /// hash still works and the upgrade is tried again next time.
    async fn upgrade_hash(&self, user: &User, password: Password, client: ClientKey) {
        let result = async {
            let hash = self.hasher.hash_as(client, password).await?;
            users::set_password_hash(&self.db, user.id, hash, self.clock.now()).await?;
            Ok::<_, AuthError>(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(user_id = %user.id, "password hash upgraded to current parameters")
            }
            Err(error) => {
                tracing::warn!(user_id = %user.id, %error, "password hash upgrade failed")
            }
        }
    }

    /// The user behind a bearer access token of a live session.
    pub async fn current_user(&self, bearer: Option<&str>) -> Result<User, AuthError> {
        let (claims, _) = self.sessions.authenticate(bearer).await?;
        let user_id = Uuid::parse_str(&claims.sub)
            .map_err(|_| AuthError::InvalidToken("sub is not a UUID".into()))?;
        users::find(&self.db, user_id)
            .await?
            .ok_or_else(|| AuthError::InvalidToken("user no longer exists".into()))
    }
}
