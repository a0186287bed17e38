//! Sign-up, sign-in and the current user.

use crate::{
    domain::{DisplayName, Email, Password},
    entity::user,
    error::AuthError,
    password::Verified,
    sessions::TokenPair,
    state::AuthState,
    throttle::AttemptKeys,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, SqlErr};
use uuid::Uuid;

/// A valid sign-up request.
#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub display_name: DisplayName,
}

/// A valid sign-in request.
#[derive(Debug)]
pub struct Credentials {
    pub email: Email,
    pub password: Password,
}

/// A signed-in user and their tokens.
#[derive(Debug)]
pub struct SignedIn {
    pub user: user::Model,
    pub tokens: TokenPair,
}

impl AuthState {
    /// Creates the account and signs it in.
    pub async fn sign_up(&self, account: NewAccount) -> Result<SignedIn, AuthError> {
        let password_hash = self.hasher.hash(account.password).await?;
        let now = self.now();
        let user = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(account.email.as_str().to_owned()),
            display_name: Set(account.display_name.as_str().to_owned()),
            password_hash: Set(password_hash),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await
        .map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => AuthError::EmailTaken,
            _ => AuthError::from(e),
        })?;
        tracing::info!(target: "audit", event = "sign_up", user_id = %user.id, "account created");
        let tokens = self.start_session(&user, now).await?;
        Ok(SignedIn { user, tokens })
    }

    /// Checks the credentials (same work whether or not the account exists) and signs in.
    pub async fn sign_in(
        &self,
        credentials: Credentials,
        client_address: &str,
    ) -> Result<SignedIn, AuthError> {
        let attempt = AttemptKeys::new(credentials.email.as_str(), client_address);
        self.throttle.check(&self.db, &attempt, self.now()).await?;

        let user = user::Entity::find()
            .filter(user::Column::Email.eq(credentials.email.as_str()))
            .one(&self.db)
            .await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self
            .hasher
            .verify(credentials.password.clone(), stored)
            .await?;
        let now = self.now();
        let (user, needs_rehash) = match (user, verified) {
            (Some(user), Verified::Yes { needs_rehash }) => (user, needs_rehash),
            _ => {
                tracing::info!(target: "audit", event = "sign_in_failed", client = %client_address, "sign-in failed");
                self.throttle
                    .record_failure(&self.db, &attempt, now)
                    .await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        self.throttle.record_success(&self.db, &attempt).await?;
        if needs_rehash {
            self.upgrade_hash(&user, credentials.password).await;
        }
        tracing::info!(target: "audit", event = "sign_in", user_id = %user.id, "signed in");
        let tokens = self.start_session(&user, now).await?;
        Ok(SignedIn { user, tokens })
    }

    /// Re-hashes with the configured parameters. A failure is logged, not fatal: the old
    /// hash still works and the upgrade is tried again next time.
    async fn upgrade_hash(&self, user: &user::Model, password: Password) {
        let result = async {
            let hash = self.hasher.hash(password).await?;
            user::ActiveModel {
                id: Set(user.id),
                password_hash: Set(hash),
                updated_at: Set(self.now()),
                ..Default::default()
            }
            .update(&self.db)
            .await?;
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
    pub async fn current_user(&self, bearer: Option<&str>) -> Result<user::Model, AuthError> {
        let (claims, _) = self.authenticate(bearer).await?;
        let user_id = Uuid::parse_str(&claims.sub)
            .map_err(|_| AuthError::InvalidToken("sub is not a UUID".into()))?;
        user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AuthError::InvalidToken("user no longer exists".into()))
    }
}
