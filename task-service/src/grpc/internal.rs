//! `todo.task.internal.v1.TaskAdmin`, served only on the internal listener: what the
//! auth-service asks of this service. Every call carries a service token (a JWT of the
//! auth-service's keys, audience [`SERVICE_AUDIENCE`], with an `svc` claim); a user's access
//! token has no `svc` and another audience, so it is refused like a forgery.

use super::auth::FetchedKeys;
use crate::{error::TaskError, rules::Purges};
use access_token::{SERVICE_AUDIENCE, ServiceClaims, TokenVerifier, token_kid};
use clock::SharedClock;
use grpc_edge::{bearer::bearer_token, violations::FieldViolations};
use std::sync::Arc;
use todo_api::todo::task::internal::v1::{self as pb, task_admin_server::TaskAdmin};
use tonic::{Request, Response, Status, metadata::MetadataMap};
use tracing::instrument;
use uuid::Uuid;

/// The only service that may purge accounts.
pub const PURGING_SERVICE: &str = "auth-service";

/// Implements `todo.task.internal.v1.TaskAdmin`.
#[derive(Clone)]
pub struct InternalApi {
    purges: Arc<Purges>,
    keys: Arc<FetchedKeys>,
    verifier: TokenVerifier,
    clock: SharedClock,
}

impl InternalApi {
    /// Purges with `purges`, verifying service tokens of `issuer` with `keys`.
    pub fn new(
        purges: Arc<Purges>,
        keys: Arc<FetchedKeys>,
        issuer: &str,
        leeway_secs: u32,
        clock: SharedClock,
    ) -> Self {
        Self {
            purges,
            keys,
            verifier: TokenVerifier::new(issuer, SERVICE_AUDIENCE, leeway_secs),
            clock,
        }
    }

    /// The calling service, from the service token in `metadata`. A token naming a key this
    /// service has not seen yet (a rotation) makes it fetch the keys first (at most one fetch
    /// per KEY_REFRESH_MIN_INTERVAL_SECS, as for access tokens).
    async fn calling_service(&self, metadata: &MetadataMap) -> Result<String, TaskError> {
        let token = bearer_token(metadata)
            .ok_or_else(|| TaskError::Unauthenticated("no service token".into()))?;
        if let Some(kid) = token_kid(token)
            && !self.keys.current().contains(&kid)
        {
            self.keys.refresh_for_unknown_kid(&kid).await;
        }
        let now = self.clock.now().timestamp();
        let claims: ServiceClaims = self
            .verifier
            .verify_claims(token, &self.keys.current(), now)
            .map_err(|e| TaskError::Unauthenticated(format!("service token: {e}")))?;
        if claims.svc.is_empty() || claims.svc != claims.sub {
            return Err(TaskError::Unauthenticated(
                "service token without a service".into(),
            ));
        }
        Ok(claims.svc)
    }
}

#[tonic::async_trait]
impl TaskAdmin for InternalApi {
    #[instrument(name = "PurgeUser", skip_all, fields(user_id, deleted))]
    async fn purge_user(
        &self,
        request: Request<pb::PurgeUserRequest>,
    ) -> Result<Response<pb::PurgeUserResponse>, Status> {
        let service = self.calling_service(request.metadata()).await?;
        if service != PURGING_SERVICE {
            return Err(TaskError::Unauthenticated(format!("{service} may not purge")).into());
        }
        let mut violations = FieldViolations::new();
        let owner = Uuid::parse_str(request.get_ref().user_id.trim()).ok();
        if owner.is_none() {
            violations.add("user_id", "must be a user id (a UUID)");
        }
        let owner = violations
            .finish(owner)
            .map_err(TaskError::InvalidArgument)?;
        tracing::Span::current().record("user_id", tracing::field::display(owner));
        let keep_until = request
            .get_ref()
            .keep_until
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0));
        let deleted = self.purges.purge(owner, keep_until).await?;
        tracing::Span::current().record("deleted", deleted);
        Ok(Response::new(pb::PurgeUserResponse {
            deleted_tasks: i64::try_from(deleted).unwrap_or(i64::MAX),
        }))
    }
}
