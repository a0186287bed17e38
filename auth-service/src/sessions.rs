//! Sessions and their tokens: starting one, rotating its refresh token (with a grace window
//! and reuse detection), signing out, introspection and bearer authentication.
//!
//! Rotation: each refresh token's successor is derived from it with the session's secret
//! (`tokens::next_refresh_token`), and the access token issued with it is signed
//! deterministically (`iat` = the moment of rotation, `jti` derived too). So two concurrent
//! refreshes of one token both get the same new pair, while the database keeps only hashes.
//! A spent token presented after the grace window revokes the whole session.

use crate::{
    entity::{refresh_token, session, user},
    error::AuthError,
    state::AuthState,
    tokens::{self, AccessToken, Subject},
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::Expr,
};
use shared::token::{AccessClaims, token_kid};
use uuid::Uuid;

/// A new access token with the refresh token that renews it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access: AccessToken,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

/// What Introspect reports for an active token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub user_id: Uuid,
    pub email: String,
    pub session_id: Uuid,
    pub token_type: &'static str,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub jti: Option<String>,
}

impl AuthState {
    /// Opens a session for `user` and issues its first pair.
    pub(crate) async fn start_session(
        &self,
        user: &user::Model,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let session = session::Entity::insert(session::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user.id),
            rotation_secret: Set(tokens::random_secret()?.to_vec()),
            created_at: Set(now),
            expires_at: Set(now + self.session_ttl),
            last_used_at: Set(now),
            revoked_at: Set(None),
        })
        .exec_with_returning(&self.db)
        .await?;
        let refresh_token = tokens::new_refresh_token()?;
        insert_refresh_token(&self.db, &refresh_token, session.id, now).await?;
        let keys = self.keys.current(now).await?;
        let subject = Subject {
            user_id: user.id,
            email: &user.email,
            session_id: session.id,
        };
        let access = self
            .issuer
            .sign(&keys, keys.signing_kid(), subject, Uuid::now_v7(), now)?;
        Ok(TokenPair {
            access,
            refresh_token,
            refresh_expires_at: session.expires_at,
        })
    }

    /// Exchanges a refresh token for a new pair (see the module docs).
    pub async fn refresh(&self, presented: &str) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let hash = tokens::hash_refresh_token(presented);
        let row = refresh_token::Entity::find_by_id(hash.clone())
            .one(&self.db)
            .await?
            .ok_or(AuthError::InvalidRefreshToken("unknown"))?;
        let (session, user) = self.live_session(row.session_id, now).await?;

        let row = match row.spent_at {
            Some(_) => row,
            None => match self.rotate(&hash, presented, &session, now).await? {
                Some(kid) => {
                    return self
                        .successor_pair(presented, &session, &user, now, &kid)
                        .await;
                }
                // Another refresh of the same token won the race: treat as a replay.
                None => refresh_token::Entity::find_by_id(hash)
                    .one(&self.db)
                    .await?
                    .ok_or(AuthError::InvalidRefreshToken("unknown"))?,
            },
        };

        let (Some(spent_at), Some(kid)) = (row.spent_at, row.spent_kid) else {
            return Err(AuthError::internal(
                "spent refresh token without spent_at/spent_kid",
            ));
        };
        if now - spent_at <= self.refresh_grace {
            return self
                .successor_pair(presented, &session, &user, spent_at, &kid)
                .await;
        }
        self.revoke(session.id, now).await?;
        tracing::warn!(
            target: "audit", event = "refresh_token_reused", user_id = %user.id, session_id = %session.id,
            "spent refresh token presented after the grace window: session revoked"
        );
        Err(AuthError::InvalidRefreshToken("reused after grace window"))
    }

    /// Marks `hash` spent and stores its successor, atomically. `Some(kid)` when this call
    /// spent it, `None` when a concurrent call already had.
    async fn rotate(
        &self,
        hash: &str,
        presented: &str,
        session: &session::Model,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError> {
        let keys = self.keys.current(now).await?;
        let kid = keys.signing_kid().to_owned();
        let txn = self.db.begin().await?;
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::SpentAt, Expr::value(now))
            .col_expr(refresh_token::Column::SpentKid, Expr::value(kid.clone()))
            .filter(refresh_token::Column::TokenHash.eq(hash))
            .filter(refresh_token::Column::SpentAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if spent != 1 {
            txn.rollback().await?;
            return Ok(None);
        }
        let successor = tokens::next_refresh_token(&session.rotation_secret, presented)?;
        insert_refresh_token(&txn, &successor, session.id, now).await?;
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::Id.eq(session.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(kid))
    }

    /// The pair issued when `presented` was spent at `spent_at` with key `kid`: the same
    /// bytes every time.
    async fn successor_pair(
        &self,
        presented: &str,
        session: &session::Model,
        user: &user::Model,
        spent_at: DateTime<Utc>,
        kid: &str,
    ) -> Result<TokenPair, AuthError> {
        let refresh_token = tokens::next_refresh_token(&session.rotation_secret, presented)?;
        let jti = tokens::rotation_jti(&session.rotation_secret, presented)?;
        let keys = self.keys.for_kid(Some(kid), self.now()).await?;
        let subject = Subject {
            user_id: user.id,
            email: &user.email,
            session_id: session.id,
        };
        let access = self.issuer.sign(&keys, kid, subject, jti, spent_at)?;
        Ok(TokenPair {
            access,
            refresh_token,
            refresh_expires_at: session.expires_at,
        })
    }

    /// The session and its user, if the session is neither revoked nor expired.
    async fn live_session(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(session::Model, user::Model), AuthError> {
        let (session, user) = session::Entity::find_by_id(id)
            .find_also_related(user::Entity)
            .one(&self.db)
            .await?
            .ok_or(AuthError::InvalidRefreshToken("no session"))?;
        let user = user.ok_or(AuthError::InvalidRefreshToken("no user"))?;
        if session.revoked_at.is_some() || session.expires_at <= now {
            return Err(AuthError::InvalidRefreshToken("session ended"));
        }
        Ok((session, user))
    }

    /// Ends a session; every token it issued stops working (access tokens at once wherever
    /// Introspect is consulted, otherwise when they expire).
    async fn revoke(&self, session_id: Uuid, now: DateTime<Utc>) -> Result<(), AuthError> {
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Signs out the session of `refresh_token` if given, else of the bearer access token.
    pub async fn sign_out(
        &self,
        refresh_token: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let (session_id, user_id) = match refresh_token {
            Some(token) => {
                let row = refresh_token::Entity::find_by_id(tokens::hash_refresh_token(token))
                    .one(&self.db)
                    .await?
                    .ok_or(AuthError::InvalidRefreshToken("unknown"))?;
                let (session, user) = self.live_session(row.session_id, now).await?;
                (session.id, user.id)
            }
            None => {
                let (claims, session) = self.authenticate(bearer).await?;
                (session.id, claims.sub.parse().unwrap_or_default())
            }
        };
        self.revoke(session_id, now).await?;
        tracing::info!(target: "audit", event = "sign_out", %user_id, %session_id, "signed out");
        Ok(())
    }

    /// Verifies a bearer access token and checks its session is still live.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
    ) -> Result<(AccessClaims, session::Model), AuthError> {
        let token = bearer.ok_or_else(|| AuthError::InvalidToken("no bearer token".into()))?;
        let now = self.now();
        let keys = self.keys.for_kid(token_kid(token).as_deref(), now).await?;
        let claims = self
            .verifier
            .verify(token, &keys.verify, now.timestamp())
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let session_id = Uuid::parse_str(&claims.sid)
            .map_err(|_| AuthError::InvalidToken("sid is not a UUID".into()))?;
        let session = session::Entity::find_by_id(session_id)
            .one(&self.db)
            .await?
            .filter(|s| s.revoked_at.is_none() && s.expires_at > now)
            .ok_or_else(|| AuthError::InvalidToken("session ended".into()))?;
        Ok((claims, session))
    }

    /// RFC 7662: `Some` for an active access or refresh token, `None` for anything else.
    pub async fn introspect(
        &self,
        token: &str,
        hint: &str,
    ) -> Result<Option<ActiveToken>, AuthError> {
        let looks_like_jwt = token.split('.').count() == 3;
        if hint == "refresh_token" || !looks_like_jwt {
            if let Some(active) = self.introspect_refresh(token).await? {
                return Ok(Some(active));
            }
            if !looks_like_jwt {
                return Ok(None);
            }
        }
        match self.authenticate(Some(token)).await {
            Ok((claims, session)) => Ok(Some(ActiveToken {
                user_id: claims.sub.parse().unwrap_or_default(),
                email: claims.email,
                session_id: session.id,
                token_type: "access_token",
                issued_at: DateTime::from_timestamp(claims.iat, 0).unwrap_or_default(),
                expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
                jti: Some(claims.jti),
            })),
            Err(AuthError::InvalidToken(reason)) => {
                tracing::debug!(%reason, "introspected token is inactive");
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    async fn introspect_refresh(&self, token: &str) -> Result<Option<ActiveToken>, AuthError> {
        let now = self.now();
        let Some(row) = refresh_token::Entity::find_by_id(tokens::hash_refresh_token(token))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if row.spent_at.is_some() {
            return Ok(None);
        }
        match self.live_session(row.session_id, now).await {
            Ok((session, user)) => Ok(Some(ActiveToken {
                user_id: user.id,
                email: user.email,
                session_id: session.id,
                token_type: "refresh_token",
                issued_at: row.created_at,
                expires_at: session.expires_at,
                jti: None,
            })),
            Err(AuthError::InvalidRefreshToken(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

async fn insert_refresh_token(
    db: &impl ConnectionTrait,
    token: &str,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        token_hash: Set(tokens::hash_refresh_token(token)),
        session_id: Set(session_id),
        created_at: Set(now),
        spent_at: Set(None),
        spent_kid: Set(None),
    })
    .exec(db)
    .await?;
    Ok(())
}
