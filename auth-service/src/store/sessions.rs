//! `sessions` and `refresh_tokens`: one session per sign-in, with the generation of its current
//! refresh token; and, stored only as hashes, refresh tokens issued before generations
//! (kept until their sessions end, so their reuse is still recognised).

use super::entity::{refresh_token, session, user};
use crate::domain::{Device, SessionView, User};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

/// A session: what a sign-in opened and a sign-out (or reuse detection) revokes.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Derives each next refresh token from the current one. Never logged.
    pub rotation_secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The generation of the current refresh token.
    pub refresh_generation: u64,
    /// The exchange of the previous generation for the current one, if there was one.
    pub refreshed: Option<Spent>,
    pub last_used_at: DateTime<Utc>,
    /// Where it signed in or last refreshed from.
    pub device: Device,
}

impl Session {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl From<session::Model> for Session {
    fn from(row: session::Model) -> Self {
        let refreshed = match (row.refreshed_at, row.refreshed_kid) {
            (Some(at), Some(kid)) => Some(Spent { at, kid }),
            _ => None,
        };
        Self {
            id: row.id,
            user_id: row.user_id,
            rotation_secret: row.rotation_secret,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            refresh_generation: u64::try_from(row.refresh_generation).unwrap_or(0),
            refreshed,
            last_used_at: row.last_used_at,
            device: Device {
                address: row.client_address,
                user_agent: row.user_agent,
            },
        }
    }
}

/// A refresh token issued before generations, stored by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub session_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// When and with which signing key it was exchanged, once it has been.
    pub spent: Option<Spent>,
}

/// The exchange of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    pub at: DateTime<Utc>,
    /// The key that signed the access token issued with its successor.
    pub kid: String,
}

impl TryFrom<refresh_token::Model> for RefreshToken {
    type Error = DbErr;

    fn try_from(row: refresh_token::Model) -> Result<Self, DbErr> {
        let spent = match (row.spent_at, row.spent_kid) {
            (None, _) => None,
            (Some(at), Some(kid)) => Some(Spent { at, kid }),
            (Some(_), None) => {
                return Err(DbErr::Custom(
                    "refresh token spent without the key of its successor".into(),
                ));
            }
        };
        Ok(Self {
            session_id: row.session_id,
            created_at: row.created_at,
            spent,
        })
    }
}

/// What a new session is made of.
pub struct NewSession {
    pub user_id: Uuid,
    pub rotation_secret: Vec<u8>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub device: Device,
}

/// Opens a session (its refresh token is generation 0). With `password_version`, only if the
/// account's password is still that version, checked after the insert in the same
/// transaction (see `users::change_password`); `None` when it is not.
pub(crate) async fn create(
    db: &DatabaseConnection,
    new: NewSession,
    password_version: Option<i64>,
) -> Result<Option<Session>, DbErr> {
    let user_id = new.user_id;
    let txn = db.begin().await?;
    let row = session::Entity::insert(session::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(new.user_id),
        rotation_secret: Set(new.rotation_secret),
        created_at: Set(new.now),
        expires_at: Set(new.expires_at),
        last_used_at: Set(new.now),
        revoked_at: Set(None),
        refresh_generation: Set(0),
        refreshed_at: Set(None),
        refreshed_kid: Set(None),
        client_address: Set(new.device.address),
        user_agent: Set(new.device.user_agent),
    })
    .exec_with_returning(&txn)
    .await?;
    if let Some(verified) = password_version
        && super::users::password_version(&txn, user_id).await? != Some(verified)
    {
        txn.rollback().await?;
        return Ok(None);
    }
    txn.commit().await?;
    Ok(Some(row.into()))
}

/// Deletes the sessions of `user_id` beyond its `keep` newest (their tokens stop working);
/// returns how many.
pub(crate) async fn keep_newest(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    keep: u64,
) -> Result<u64, DbErr> {
    use sea_orm::{PaginatorTrait, QueryOrder, QuerySelect};
    let count = session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .count(db)
        .await?;
    let Some(excess) = count.checked_sub(keep).filter(|n| *n > 0) else {
        return Ok(0);
    };
    let oldest: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::UserId.eq(user_id))
        .order_by_asc(session::Column::CreatedAt)
        .order_by_asc(session::Column::Id)
        .limit(excess)
        .into_tuple()
        .all(db)
        .await?;
    let deleted = session::Entity::delete_many()
        .filter(session::Column::Id.is_in(oldest))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// The refresh token from before generations with this hash.
pub(crate) async fn refresh_token(
    db: &impl ConnectionTrait,
    hash: &str,
) -> Result<Option<RefreshToken>, DbErr> {
    refresh_token::Entity::find_by_id(hash.to_owned())
        .one(db)
        .await?
        .map(RefreshToken::try_from)
        .transpose()
}

/// The session with this id.
pub(crate) async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Session>, DbErr> {
    Ok(session::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(Session::from))
}

/// The session with this id and its user, in one query.
pub(crate) async fn with_user(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<(Session, User)>, DbErr> {
    let found = session::Entity::find_by_id(id)
        .find_also_related(user::Entity)
        .one(db)
        .await?;
    Ok(match found {
        Some((session, Some(user))) => Some((session.into(), user.into())),
        _ => None,
    })
}

/// Exchanging generation `from` of a session's refresh token for the next.
pub struct Exchange<'a> {
    pub session_id: Uuid,
    pub from: u64,
    /// The key that signs the access token issued with the successor.
    pub kid: &'a str,
    pub now: DateTime<Utc>,
    /// A token from before generations being exchanged (by hash): marked spent as well.
    pub legacy_hash: Option<&'a str>,
    /// Where the exchange came from.
    pub device: &'a Device,
}

/// How an [`exchange`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchanged {
    /// The session moved to the next generation.
    Done,
    /// A concurrent exchange moved it first; nothing changed.
    AlreadySpent,
    /// The session was revoked (e.g. a sign-out that won the race); nothing changed.
    SessionEnded,
}

/// Moves the session from generation `from` to the next (only while it is there and not
/// revoked), recording when and with which key, in one statement: of concurrent exchanges
/// exactly one moves it, and a concurrent sign-out either comes after (and ends the new
/// generation) or makes this one see the revocation. A token from before generations is
/// marked spent in the same transaction.
pub(crate) async fn exchange(
    db: &DatabaseConnection,
    exchange: Exchange<'_>,
) -> Result<Exchanged, DbErr> {
    let from = i64::try_from(exchange.from).map_err(|e| DbErr::Custom(e.to_string()))?;
    let txn = db.begin().await?;
    let moved = session::Entity::update_many()
        .col_expr(session::Column::RefreshGeneration, Expr::value(from + 1))
        .col_expr(session::Column::RefreshedAt, Expr::value(exchange.now))
        .col_expr(
            session::Column::RefreshedKid,
            Expr::value(exchange.kid.to_owned()),
        )
        .col_expr(session::Column::LastUsedAt, Expr::value(exchange.now))
        .col_expr(
            session::Column::ClientAddress,
            Expr::value(exchange.device.address.clone()),
        )
        .col_expr(
            session::Column::UserAgent,
            Expr::value(exchange.device.user_agent.clone()),
        )
        .filter(session::Column::Id.eq(exchange.session_id))
        .filter(session::Column::RefreshGeneration.eq(from))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if moved != 1 {
        txn.rollback().await?;
        let revoked = find(db, exchange.session_id)
            .await?
            .is_none_or(|session| session.revoked_at.is_some());
        return Ok(if revoked {
            Exchanged::SessionEnded
        } else {
            Exchanged::AlreadySpent
        });
    }
    if let Some(hash) = exchange.legacy_hash {
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::SpentAt, Expr::value(exchange.now))
            .col_expr(
                refresh_token::Column::SpentKid,
                Expr::value(exchange.kid.to_owned()),
            )
            .filter(refresh_token::Column::TokenHash.eq(hash))
            .filter(refresh_token::Column::SpentAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if spent != 1 {
            txn.rollback().await?;
            return Ok(Exchanged::AlreadySpent);
        }
    }
    txn.commit().await?;
    Ok(Exchanged::Done)
}

/// Revokes the session (if it is not already).
pub(crate) async fn revoke(
    db: &impl ConnectionTrait,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    revoke_where(db, session::Column::Id.eq(session_id), now).await?;
    Ok(())
}

/// Revokes `session_id` if it is a live session of `user_id`; whether it was.
pub(crate) async fn revoke_of_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let filter = Condition::all()
        .add(session::Column::Id.eq(session_id))
        .add(session::Column::UserId.eq(user_id))
        .add(session::Column::ExpiresAt.gt(now));
    Ok(revoke_where(db, filter, now).await? == 1)
}

/// Revokes every live session of `user_id` but `keep`; returns how many.
pub(crate) async fn revoke_others(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    keep: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let filter = Condition::all()
        .add(session::Column::UserId.eq(user_id))
        .add(session::Column::Id.ne(keep))
        .add(session::Column::ExpiresAt.gt(now));
    revoke_where(db, filter, now).await
}

/// Revokes the sessions `filter` selects that are not revoked yet, erasing where they were
/// used from (personal data kept only as long as the session); returns how many.
async fn revoke_where(
    db: &impl ConnectionTrait,
    filter: impl sea_orm::sea_query::IntoCondition,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let revoked = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .col_expr(session::Column::ClientAddress, Expr::value(None::<String>))
        .col_expr(session::Column::UserAgent, Expr::value(None::<String>))
        .filter(filter)
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(revoked.rows_affected)
}

/// The live sessions of `user_id` at `now`, newest first; `current` marks the asking one.
pub(crate) async fn live_of_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    current: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<SessionView>, DbErr> {
    use sea_orm::QueryOrder;
    let rows = session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now))
        .order_by_desc(session::Column::CreatedAt)
        .order_by_desc(session::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(Session::from)
        .map(|session| SessionView {
            current: session.id == current,
            id: session.id,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at,
            device: session.device,
        })
        .collect())
}

/// Deletes up to `limit` sessions that expired before `expired_before` or were revoked before
/// `revoked_before`, with their refresh tokens (the foreign key cascades); returns how many.
pub(crate) async fn delete_ended(
    db: &impl ConnectionTrait,
    expired_before: DateTime<Utc>,
    revoked_before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    use sea_orm::sea_query::Query;
    let ended = Query::select()
        .column(session::Column::Id)
        .from(session::Entity)
        .cond_where(
            sea_orm::Condition::any()
                .add(session::Column::ExpiresAt.lt(expired_before))
                .add(session::Column::RevokedAt.lt(revoked_before)),
        )
        .limit(limit)
        .to_owned();
    let deleted = session::Entity::delete_many()
        .filter(session::Column::Id.in_subquery(ended))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
