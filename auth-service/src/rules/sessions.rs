//! Sessions and their tokens: starting one, rotating its refresh token (with a grace window
//! and reuse detection), signing out, introspection and bearer authentication.
//!
//! Rotation: a refresh token names its session and a generation under a MAC made with the
//! session's secret (`tokens::refresh_token`); the session row keeps the current generation
//! and when, and with which key, the previous one was exchanged. Exchanging the current
//! generation moves the session to the next; the access token issued with it is signed
//! deterministically (`iat` = the moment of rotation, `jti` derived from the spent token). So
//! two concurrent refreshes of one token both get the same new pair, the database keeps one
//! row per session however often it refreshes, and no token is stored at all.
//!
//! - The previous generation, within the grace window of its exchange: the same new pair.
//! - Any older generation, or the previous one after the grace window: reuse, and the whole
//!   session is revoked. (When the older one was spent is not kept, so its own grace window
//!   cannot be told apart from the last exchange's: an older generation always revokes, or a
//!   thief refreshing every few seconds could make the owner's old token look harmless.)
//! - The current generation again sooner than `min_interval` after the last exchange: refused
//!   with a retry delay, so one session cannot make the server sign and write in a loop.
//!
//! Tokens issued before generations (32 random bytes, stored by hash in `refresh_tokens`) are
//! exchanged once for generation 1 and recognised as spent afterwards, as before.

use super::{
    KeyRing,
    tokens::{self, Subject, TokenIssuer},
};
use crate::{
    domain::{ActiveToken, Device, SessionView, TokenPair, User},
    error::AuthError,
    store::sessions::{self as store, Exchange, Exchanged, NewSession, Session},
};
use access_token::{AccessClaims, TokenVerifier, token_kid};
use chrono::{DateTime, TimeDelta, Utc};
use clock::SharedClock;
use prometheus_client::metrics::counter::Counter;
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
    times: SessionTimes,
    /// `auth_refresh_token_reuse_total`.
    reuse: Counter,
}

/// How long sessions and their refresh tokens last, and how often they may be exchanged.
#[derive(Debug, Clone, Copy)]
pub struct SessionTimes {
    /// How long a session lasts from sign-in.
    pub ttl: TimeDelta,
    /// How long after a refresh token is spent it still gets the same successor pair.
    pub refresh_grace: TimeDelta,
    /// The least time between two exchanges of one session's tokens.
    pub min_interval: TimeDelta,
    /// The most sessions one user keeps; a new one ends the oldest beyond.
    pub max_per_user: u64,
}

impl Sessions {
    /// Sessions in `db`, signing with `keys` through `issuer`, verifying with `verifier`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        keys: Arc<KeyRing>,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        times: SessionTimes,
        reuse: Counter,
    ) -> Self {
        Self {
            db,
            clock,
            keys,
            issuer,
            verifier,
            times,
            reuse,
        }
    }

    /// The issuer of the tokens (`iss` and `aud`, as Introspect reports them).
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// Opens a session for `user` on `device` and issues its first pair. With
    /// `password_version` (a sign-in), only while the account's password is still the one
    /// verified: `InvalidCredentials` if it changed meanwhile.
    pub(crate) async fn start(
        &self,
        user: &User,
        device: Device,
        password_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let new = NewSession {
            user_id: user.id,
            rotation_secret: tokens::random_secret()?.to_vec(),
            now,
            expires_at: now + self.times.ttl,
            device,
        };
        let session = store::create(&self.db, new, password_version)
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        let ended = store::keep_newest(&self.db, user.id, self.times.max_per_user).await?;
        if ended > 0 {
            tracing::info!(
                target: "audit", event = "sessions_ended", user_id = %user.id, ended,
                "more sessions than MAX_SESSIONS_PER_USER: the oldest ended"
            );
        }
        let refresh_token = tokens::refresh_token(&session.rotation_secret, session.id, 0)?;
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

    /// Exchanges a refresh token, presented from `device`, for a new pair (see the module
    /// docs).
    pub async fn refresh(&self, presented: &str, device: &Device) -> Result<TokenPair, AuthError> {
        let now = self.clock.now();
        match tokens::RefreshClaim::parse(presented) {
            Some(claim) => self.refresh_generation(presented, claim, device, now).await,
            None => self.refresh_legacy(presented, device, now).await,
        }
    }

    async fn refresh_generation(
        &self,
        presented: &str,
        claim: tokens::RefreshClaim,
        device: &Device,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let (mut session, user) = self.live_session(claim.session_id, now).await?;
        if !claim.is_authentic(&session.rotation_secret)? {
            return Err(AuthError::InvalidRefreshToken("unknown"));
        }
        if claim.generation > session.refresh_generation {
            return Err(AuthError::InvalidRefreshToken("unknown"));
        }
        if claim.generation == session.refresh_generation {
            if let Some(last) = &session.refreshed {
                let wait = self.times.min_interval - (now - last.at);
                if wait > TimeDelta::zero() {
                    return Err(AuthError::RefreshTooSoon(wait.to_std().unwrap_or_default()));
                }
            }
            match self
                .exchange(&session, claim.generation, None, device, now)
                .await?
            {
                Some(kid) => {
                    return self
                        .successor_pair(presented, claim.generation, &session, &user, now, &kid)
                        .await;
                }
                // Another refresh of the same token won the race: a replay of it.
                None => {
                    session = self.live_session(claim.session_id, now).await?.0;
                }
            }
        }
        let last = session
            .refreshed
            .clone()
            .ok_or(AuthError::InvalidRefreshToken("unknown"))?;
        let within_grace = now - last.at <= self.times.refresh_grace;
        if claim.generation + 1 == session.refresh_generation && within_grace {
            return self
                .successor_pair(
                    presented,
                    claim.generation,
                    &session,
                    &user,
                    last.at,
                    &last.kid,
                )
                .await;
        }
        self.reused(&session, &user, now).await
    }

    /// A token from before generations: exchanged once for generation 1, as it was.
    async fn refresh_legacy(
        &self,
        presented: &str,
        device: &Device,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let hash = tokens::hash_refresh_token(presented);
        let token = store::refresh_token(&self.db, &hash)
            .await?
            .ok_or(AuthError::InvalidRefreshToken("unknown"))?;
        let (session, user) = self.live_session(token.session_id, now).await?;
        let spent = match token.spent {
            Some(spent) => spent,
            None => match self.exchange(&session, 0, Some(&hash), device, now).await? {
                Some(kid) => {
                    return self
                        .successor_pair(presented, 0, &session, &user, now, &kid)
                        .await;
                }
                None => store::refresh_token(&self.db, &hash)
                    .await?
                    .and_then(|token| token.spent)
                    .ok_or(AuthError::InvalidRefreshToken("unknown"))?,
            },
        };
        if now - spent.at <= self.times.refresh_grace {
            return self
                .successor_pair(presented, 0, &session, &user, spent.at, &spent.kid)
                .await;
        }
        self.reused(&session, &user, now).await
    }

    /// A spent token presented after the grace window: the session is revoked.
    async fn reused(
        &self,
        session: &Session,
        user: &User,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        self.revoke(session.id, now).await?;
        self.reuse.inc();
        tracing::warn!(
            target: "audit", event = "refresh_token_reused", user_id = %user.id, session_id = %session.id,
            "spent refresh token presented after the grace window: session revoked"
        );
        Err(AuthError::InvalidRefreshToken("reused after grace window"))
    }

    /// Moves `session` from generation `from` to the next (spending `legacy_hash` too, for a
    /// token from before generations). `Some(kid)` when this call moved it, `None` when a
    /// concurrent call already had.
    async fn exchange(
        &self,
        session: &Session,
        from: u64,
        legacy_hash: Option<&str>,
        device: &Device,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError> {
        let keys = self.keys.current(now).await?;
        let kid = keys.signing_kid().to_owned();
        let exchange = Exchange {
            session_id: session.id,
            from,
            kid: &kid,
            now,
            legacy_hash,
            device,
        };
        match store::exchange(&self.db, exchange).await? {
            Exchanged::Done => Ok(Some(kid)),
            Exchanged::AlreadySpent => Ok(None),
            Exchanged::SessionEnded => Err(AuthError::InvalidRefreshToken("session ended")),
        }
    }

    /// The pair issued when `presented` (of generation `spent`) was exchanged at `spent_at`
    /// with key `kid`: the same bytes every time.
    async fn successor_pair(
        &self,
        presented: &str,
        spent: u64,
        session: &Session,
        user: &User,
        spent_at: DateTime<Utc>,
        kid: &str,
    ) -> Result<TokenPair, AuthError> {
        let refresh_token = tokens::refresh_token(&session.rotation_secret, session.id, spent + 1)?;
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
                let (session, user) = self.session_of_refresh_token(token, now).await?;
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

    /// The live sessions of the bearer token's user, newest first, the asking one marked.
    pub async fn list(&self, bearer: Option<&str>) -> Result<Vec<SessionView>, AuthError> {
        let (_, current) = self.authenticate(bearer).await?;
        let now = self.clock.now();
        Ok(store::live_of_user(&self.db, current.user_id, current.id, now).await?)
    }

    /// Signs out `session_id` if it is a live session of the bearer token's user; otherwise
    /// `SessionNotFound`, whoever's it is.
    pub async fn revoke_one(
        &self,
        bearer: Option<&str>,
        session_id: Uuid,
    ) -> Result<(), AuthError> {
        let (_, current) = self.authenticate(bearer).await?;
        let now = self.clock.now();
        if !store::revoke_of_user(&self.db, current.user_id, session_id, now).await? {
            return Err(AuthError::SessionNotFound);
        }
        tracing::info!(
            target: "audit", event = "session_revoked", user_id = %current.user_id, %session_id,
            by_session = %current.id, "session signed out by its owner"
        );
        Ok(())
    }

    /// Signs out every session of the bearer token's user but its own; returns how many.
    pub async fn revoke_others(&self, bearer: Option<&str>) -> Result<u64, AuthError> {
        let (_, current) = self.authenticate(bearer).await?;
        let now = self.clock.now();
        let revoked = store::revoke_others(&self.db, current.user_id, current.id, now).await?;
        tracing::info!(
            target: "audit", event = "other_sessions_revoked", user_id = %current.user_id,
            by_session = %current.id, revoked, "other sessions signed out by their owner"
        );
        Ok(revoked)
    }

    /// The live session that issued `token` (any generation) and its user.
    async fn session_of_refresh_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Session, User), AuthError> {
        let session_id = match tokens::RefreshClaim::parse(token) {
            Some(claim) => {
                let (session, user) = self.live_session(claim.session_id, now).await?;
                if !claim.is_authentic(&session.rotation_secret)? {
                    return Err(AuthError::InvalidRefreshToken("unknown"));
                }
                return Ok((session, user));
            }
            None => {
                store::refresh_token(&self.db, &tokens::hash_refresh_token(token))
                    .await?
                    .ok_or(AuthError::InvalidRefreshToken("unknown"))?
                    .session_id
            }
        };
        self.live_session(session_id, now).await
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
        // For the RPC's span, where it declares `user_id`.
        tracing::Span::current().record("user_id", tracing::field::display(session.user_id));
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
        // Active: the current generation of a live session (or an unspent token from before
        // generations).
        let found = match tokens::RefreshClaim::parse(token) {
            Some(claim) => self
                .session_of_refresh_token(token, now)
                .await
                .map(|(s, u)| {
                    let current = claim.generation == s.refresh_generation;
                    let issued_at = s.refreshed.as_ref().map_or(s.created_at, |r| r.at);
                    current.then_some((s, u, issued_at))
                }),
            None => {
                let hash = tokens::hash_refresh_token(token);
                match store::refresh_token(&self.db, &hash).await? {
                    Some(stored) if stored.spent.is_none() => self
                        .live_session(stored.session_id, now)
                        .await
                        .map(|(s, u)| Some((s, u, stored.created_at))),
                    _ => Ok(None),
                }
            }
        };
        match found {
            Ok(Some((session, user, issued_at))) => Ok(Some(ActiveToken {
                user_id: user.id,
                email: user.email,
                session_id: session.id,
                token_type: "refresh_token",
                issued_at,
                expires_at: session.expires_at,
                jti: None,
            })),
            Ok(None) | Err(AuthError::InvalidRefreshToken(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }
}
