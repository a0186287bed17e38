//! The authenticated caller, as the interceptor found it.

use crate::{domain::Owner, error::TaskError};
use access_token::AccessClaims;
use uuid::Uuid;

/// The user a request was verified to come from. Only the interceptor makes one, so a
/// handler that has a `Caller` has a verified token behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    user_id: Uuid,
    /// When the token expires (Unix seconds): long-lived streams end then.
    expires_at: i64,
}

impl Caller {
    /// The caller from verified claims; `sub` must be a user id (UUID).
    pub(crate) fn from_claims(claims: AccessClaims) -> Result<Self, TaskError> {
        let user_id = Uuid::try_parse(&claims.sub)
            .map_err(|_| TaskError::Unauthenticated("`sub` is not a user id".into()))?;
        Ok(Self {
            user_id,
            expires_at: claims.exp,
        })
    }

    /// When the caller's access token expires (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// The caller's user id (the token's `sub`).
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// The owner whose tasks this caller may read and change: themselves.
    pub fn owner(&self) -> Owner {
        Owner::verified(self.user_id)
    }

    /// The caller of a request that went through the interceptor. A request without one
    /// never reaches a handler in a correctly wired server; fail closed if it does.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, TaskError> {
        request.extensions().get::<Self>().cloned().ok_or_else(|| {
            TaskError::Internal("request reached a handler without a verified caller".into())
        })
    }
}
