//! `users`: accounts.

use super::entity::user;
use crate::domain::User;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, ExprTrait, QueryFilter, SqlErr, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

/// An account with its password hash, for checking a password.
pub struct StoredCredentials {
    pub user: User,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Which password it is: moved by every password change.
    pub password_version: i64,
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
        password_version: Set(0),
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
        password_version: row.password_version,
        user: row.into(),
    }))
}

/// The account with this id.
pub(crate) async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<User>, DbErr> {
    Ok(user::Entity::find_by_id(id).one(db).await?.map(User::from))
}

/// Replaces the password hash with a re-hash of the same password (current parameters),
/// unless the password changed since version `version` was read; whether it did.
pub(crate) async fn rehash(
    db: &impl ConnectionTrait,
    id: Uuid,
    version: i64,
    password_hash: String,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let updated = user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(password_hash))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::PasswordVersion.eq(version))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// A password change: the new hash, which password it replaces, and which session (if any)
/// is the only one to stay signed in.
pub(crate) struct PasswordChange {
    pub id: Uuid,
    /// The version of the password that was verified.
    pub version: i64,
    pub password_hash: String,
    /// Sign out every other live session of the account, keeping this one.
    pub sign_out_all_but: Option<Uuid>,
    /// The session asking, which must still be live.
    pub asking: Uuid,
    pub now: DateTime<Utc>,
}

/// Sets a new password and, when asked, revokes every other live session of the account, in
/// one transaction; `None` (and nothing changed) when the password changed since the verified
/// version or the asking session ended meanwhile. Returns how many sessions were signed out.
///
/// The update of the user row locks it until commit, and a sign-in checks the password version
/// under a shared lock of that row after opening its session (`sessions::create`): a sign-in
/// with the old password either opens its session before this transaction revokes the others,
/// or sees the new version and gives its session up.
pub(crate) async fn change_password(
    db: &DatabaseConnection,
    change: PasswordChange,
) -> Result<Option<u64>, DbErr> {
    let txn = db.begin().await?;
    let updated = user::Entity::update_many()
        .col_expr(
            user::Column::PasswordHash,
            Expr::value(change.password_hash),
        )
        .col_expr(
            user::Column::PasswordVersion,
            Expr::col(user::Column::PasswordVersion).add(1),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(change.now))
        .filter(user::Column::Id.eq(change.id))
        .filter(user::Column::PasswordVersion.eq(change.version))
        .exec(&txn)
        .await?;
    let asking_live = super::sessions::find(&txn, change.asking)
        .await?
        .is_some_and(|session| session.is_live(change.now));
    if updated.rows_affected != 1 || !asking_live {
        txn.rollback().await?;
        return Ok(None);
    }
    let signed_out = match change.sign_out_all_but {
        Some(keep) => super::sessions::revoke_others(&txn, change.id, keep, change.now).await?,
        None => 0,
    };
    txn.commit().await?;
    Ok(Some(signed_out))
}

/// The version of `id`'s password, read under a shared lock of its row on PostgreSQL (held
/// until the transaction `txn` ends); `None` if the account is gone.
pub(crate) async fn password_version(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<i64>, DbErr> {
    use sea_orm::{DatabaseBackend, QuerySelect};
    let mut query = user::Entity::find_by_id(id)
        .select_only()
        .column(user::Column::PasswordVersion);
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        query = query.lock_shared();
    }
    query.into_tuple().one(txn).await
}

/// Sets the display name unless it already is `display_name`; the account as it is now, `None`
/// if it no longer exists.
pub(crate) async fn set_display_name(
    db: &impl ConnectionTrait,
    id: Uuid,
    display_name: &str,
    now: DateTime<Utc>,
) -> Result<Option<User>, DbErr> {
    user::Entity::update_many()
        .col_expr(
            user::Column::DisplayName,
            Expr::value(display_name.to_owned()),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::DisplayName.ne(display_name))
        .exec(db)
        .await?;
    find(db, id).await
}
