//! Sessions and their tokens: starting one, rotating its refresh token (with a grace window
//! and reuse detection), signing out, introspection and bearer authentication.
//!
//! Rotation: each refresh token's successor is derived from it with the session's secret
//! (`tokens::next_refresh_token`), and the access token issued with it is signed
//! deterministically (`iat` = the moment of rotation, `jti` derived too). So two concurrent
//! refreshes of one token both get the same new pair, while the database keeps only hashes.
//! A spent token presented after the grace window revokes the whole session.

use super::{
    KeyRing,
    tokens::{self, Subject, TokenIssuer},
};
use crate::{
    domain::{ActiveToken, TokenPair, User},
    error::AuthError,
    store::sessions::{self as store, Exchange, Exchanged, NewSession, Session},
};
use access_token::{AccessClaims, TokenVerifier, token_kid};
use chrono::{DateTime, TimeDelta, Utc};
use clock::SharedClock;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use uuid::Uuid;

/// Sessions and the tokens they issue.
pub struct Sessions {
    db: DatabaseConnection,
    clock: SharedClock,
    keys: Arc<KeyRing>,
    issuer: TokenIssuer,
    verifier: TokenVerifier,
    /// How long a session lasts from sign-in.
    ttl: TimeDelta,
    /// How long after a refresh token is spent it still gets the same successor pair.
    refresh_grace: TimeDelta,
}

impl Sessions {
    /// Sessions in `db`, signing with `keys` through `issuer`, verifying with `verifier`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        keys: Arc<KeyRing>,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        ttl: TimeDelta,
        refresh_grace: TimeDelta,
    ) -> Self {
        Self {
            db,
            clock,
            keys,
            issuer,
            verifier,
            ttl,
            refresh_grace,
        }
    }

    /// The issuer of the tokens (`iss` and `aud`, as Introspect reports them).
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// Opens a session for `user` and issues its first pair.
    pub(crate) async fn start(
        &self,
        user: &User,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let refresh_token = tokens::new_refresh_token()?;
        let new = NewSession {
            user_id: user.id,
            rotation_secret: tokens::random_secret()?.to_vec(),
            now,
            expires_at: now + self.ttl,
        };
        let session =
            store::create(&self.db, new, tokens::hash_refresh_token(&refresh_token)).await?;
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
        let now = self.clock.now();
        let hash = tokens::hash_refresh_token(presented);
        let token = store::refresh_token(&self.db, &hash)
            .await?
            .ok_or(AuthError::InvalidRefreshToken("unknown"))?;
        let (session, user) = self.live_session(token.session_id, now).await?;

        let spent = match token.spent {
            Some(spent) => spent,
            None => match self.rotate(&hash, presented, &session, now).await? {
                Some(kid) => {
                    return self
                        .successor_pair(presented, &session, &user, now, &kid)
                        .await;
                }
                // Another refresh of the same token won the race: treat as a replay.
                None => store::refresh_token(&self.db, &hash)
                    .await?
                    .and_then(|token| token.spent)
                    .ok_or(AuthError::InvalidRefreshToken("unknown"))?,
            },
        };

        if now - spent.at <= self.refresh_grace {
            return self
                .successor_pair(presented, &session, &user, spent.at, &spent.kid)
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
        session: &Session,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError> {
        let keys = self.keys.current(now).await?;
        let kid = keys.signing_kid().to_owned();
        let successor = tokens::next_refresh_token(&session.rotation_secret, presented)?;
        let exchange = Exchange {
            spent_hash: hash,
            successor_hash: tokens::hash_refresh_token(&successor),
            session_id: session.id,
            kid: &kid,
            now,
        };
        match store::exchange(&self.db, exchange).await? {
            Exchanged::Done => Ok(Some(kid)),
            Exchanged::AlreadySpent => Ok(None),
            Exchanged::SessionEnded => Err(AuthError::InvalidRefreshToken("session ended")),
        }
    }

    /// The pair issued when `presented` was spent at `spent_at` with key `kid`: the same
    /// bytes every time.
    async fn successor_pair(
        &self,
        presented: &str,
        session: &Session,
        user: &User,
        spent_at: DateTime<Utc>,
        kid: &str,
    ) -> Result<TokenPair, AuthError> {
        let refresh_token = tokens::next_refresh_token(&session.rotation_secret, presented)?;
        let jti = tokens::rotation_jti(&session.rotation_secret, presented)?;
        let keys = self.keys.for_kid(Some(kid), self.clock.now()).await?;
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
    ) -> Result<(Session, User), AuthError> {
        let (session, user) = store::with_user(&self.db, id)
            .await?
            .ok_or(AuthError::InvalidRefreshToken("no session"))?;
        if !session.is_live(now) {
            return Err(AuthError::InvalidRefreshToken("session ended"));
        }
        Ok((session, user))
    }

    /// Ends a session; every token it issued stops working (access tokens at once wherever
    /// Introspect is consulted, otherwise when they expire).
    async fn revoke(&self, session_id: Uuid, now: DateTime<Utc>) -> Result<(), AuthError> {
        Ok(store::revoke(&self.db, session_id, now).await?)
    }

    /// Signs out the session of `refresh_token` if given, else of the bearer access token.
    pub async fn sign_out(
        &self,
        refresh_token: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        let (session_id, user_id) = match refresh_token {
            Some(token) => {
                let token = store::refresh_token(&self.db, &tokens::hash_refresh_token(token))
                    .await?
                    .ok_or(AuthError::InvalidRefreshToken("unknown"))?;
                let (session, user) = self.live_session(token.session_id, now).await?;
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
    ) -> Result<(AccessClaims, Session), AuthError> {
        let token = bearer.ok_or_else(|| AuthError::InvalidToken("no bearer token".into()))?;
        let now = self.clock.now();
        let keys = self.keys.for_kid(token_kid(token).as_deref(), now).await?;
        let claims = self
            .verifier
            .verify(token, &keys.verify, now.timestamp())
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let session_id = Uuid::parse_str(&claims.sid)
            .map_err(|_| AuthError::InvalidToken("sid is not a UUID".into()))?;
        let session = store::find(&self.db, session_id)
            .await?
            .filter(|s| s.is_live(now))
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
        let now = self.clock.now();
        let hash = tokens::hash_refresh_token(token);
        let Some(token) = store::refresh_token(&self.db, &hash).await? else {
            return Ok(None);
        };
        if token.spent.is_some() {
            return Ok(None);
        }
        match self.live_session(token.session_id, now).await {
            Ok((session, user)) => Ok(Some(ActiveToken {
                user_id: user.id,
                email: user.email,
                session_id: session.id,
                token_type: "refresh_token",
                issued_at: token.created_at,
                expires_at: session.expires_at,
                jti: None,
            })),
            Err(AuthError::InvalidRefreshToken(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }
}
