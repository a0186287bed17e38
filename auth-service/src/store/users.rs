//! `users`: accounts.

use super::entity::user;
use crate::domain::User;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, SqlErr, TransactionTrait,
};
use uuid::Uuid;

/// An account with its password hash, for checking a password.
pub struct StoredCredentials {
    pub user: User,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What a new account is made of.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: String,
    pub now: DateTime<Utc>,
}

impl From<user::Model> for User {
    fn from(row: user::Model) -> Self {
        Self {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            created_at: row.created_at,
        }
    }
}

/// Creates the account; `None` when the email is already registered (the unique index
/// decides, so concurrent sign-ups of one email make one account).
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    new: NewUser<'_>,
) -> Result<Option<User>, DbErr> {
    let inserted = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(new.email.to_owned()),
        display_name: Set(new.display_name.to_owned()),
        password_hash: Set(new.password_hash),
        created_at: Set(new.now),
        updated_at: Set(new.now),
    }
    .insert(db)
    .await;
    match inserted {
        Ok(row) => Ok(Some(row.into())),
        Err(error) => match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Ok(None),
            _ => Err(error),
        },
    }
}

/// The account registered with `email` (normalized), with its password hash.
pub(crate) async fn credentials(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<StoredCredentials>, DbErr> {
    let row = user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?;
    Ok(row.map(|row| StoredCredentials {
        password_hash: row.password_hash.clone(),
        user: row.into(),
    }))
}

/// The account with this id.
pub(crate) async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<User>, DbErr> {
    Ok(user::Entity::find_by_id(id).one(db).await?.map(User::from))
}

/// Replaces the password hash (a rehash with current parameters).
pub(crate) async fn set_password_hash(
    db: &impl ConnectionTrait,
    id: Uuid,
    password_hash: String,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    user::ActiveModel {
        id: Set(id),
        password_hash: Set(password_hash),
        updated_at: Set(now),
        ..Default::default()
    }
    .update(db)
    .await?;
    Ok(())
}

/// Sets a new password hash and, when `sign_out_all_but` names a session, revokes every other
/// live session of the account, in one transaction: no other session outlives the old
/// password. Returns how many sessions were signed out.
pub(crate) async fn change_password(
    db: &DatabaseConnection,
    id: Uuid,
    password_hash: String,
    sign_out_all_but: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    set_password_hash(&txn, id, password_hash, now).await?;
    let signed_out = match sign_out_all_but {
        Some(keep) => super::sessions::revoke_others(&txn, id, keep, now).await?,
        None => 0,
    };
    txn.commit().await?;
    Ok(signed_out)
}

/// Sets the display name; the account as it is now, `None` if it no longer exists.
pub(crate) async fn set_display_name(
    db: &impl ConnectionTrait,
    id: Uuid,
    display_name: &str,
    now: DateTime<Utc>,
) -> Result<Option<User>, DbErr> {
    let updated = user::Entity::update_many()
        .col_expr(
            user::Column::DisplayName,
            sea_orm::sea_query::Expr::value(display_name.to_owned()),
        )
        .col_expr(
            user::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Ok(None);
    }
    find(db, id).await
}
