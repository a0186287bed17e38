//! Account deletion reaching the task-service: at least once, surviving outages and restarts.
//!
//! DeleteAccount records the deletion in the auth database in the same transaction that
//! deletes the account (`store::deletions`). A worker in every replica claims due deletions
//! (one replica per deletion at a time, for a lease), asks the task-service's internal
//! listener to purge the account's tasks (`TaskAdmin.PurgeUser`, with a 60-second service
//! token signed by this service's keys), and deletes the row once the task-service answers
//! OK. A replica claims one deletion at a time, for longer than its delivery may take, and
//! only the claim's holder settles it. A failure waits 1 s, then 2 s, 4 s, … up to
//! DELETION_RETRY_MAX_SECS; a replica that dies mid-delivery leaves its claim to run out, and
//! another (or itself, restarted) delivers again. The purge is idempotent, so a delivery
//! twice is harmless.

use super::{KeyRing, tokens::TokenIssuer};
use crate::{
    error::AuthError,
    store::deletions::{self as store, PendingDeletion},
};
use chrono::TimeDelta;
use clock::SharedClock;
use grpc_edge::telemetry::{Traced, traced};
use sea_orm::DatabaseConnection;
use std::{sync::Arc, time::Duration};
use todo_api::todo::task::internal::v1::{PurgeUserRequest, task_admin_client::TaskAdminClient};
use tokio::sync::Notify;
use tonic::transport::Channel;

/// The name service tokens of this service carry (the task-service purges only for it).
pub const SERVICE_NAME: &str = "auth-service";
/// How long one delivery may take (a purge deletes up to TASK_QUOTA tasks, in batches).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica holds a claimed deletion before another may deliver it: longer than a
/// delivery (with its connection) can take.
const CLAIM_LEASE: TimeDelta = TimeDelta::seconds(90);
/// How often the outbox is looked at without being woken (retries that came due, deletions
/// recorded by other replicas, or left behind by a crash).
const POLL_EVERY: Duration = Duration::from_secs(2);

/// Delivers recorded account deletions to the task-service.
pub struct Deliveries {
    db: DatabaseConnection,
    clock: SharedClock,
    keys: Arc<KeyRing>,
    issuer: TokenIssuer,
    /// The task-service's internal API; `None` when TASK_INTERNAL_URL is not set.
    task_admin: Option<TaskAdminClient<Traced<Channel>>>,
    /// How long an access token lasts, leeway included: the task-service keeps a deleted
    /// account's tombstone at least that long after the deletion.
    token_lifetime: TimeDelta,
    retry_max: TimeDelta,
    wake: Notify,
}

/// What one round of deliveries did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Acknowledged by the task-service.
    pub done: u32,
    /// Failed; tried again later.
    pub failed: u32,
}

impl Deliveries {
    /// Deliveries from `db` to `task_admin` (none: recorded only), signing service tokens
    /// with `keys` through `issuer`, for access tokens lasting `token_lifetime`.
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        keys: Arc<KeyRing>,
        issuer: TokenIssuer,
        task_admin: Option<Channel>,
        token_lifetime: TimeDelta,
        retry_max: TimeDelta,
    ) -> Self {
        Self {
            db,
            clock,
            keys,
            issuer,
            task_admin: task_admin.map(|channel| TaskAdminClient::new(traced(channel))),
            token_lifetime,
            retry_max,
            wake: Notify::new(),
        }
    }

    /// A deletion was recorded: deliver now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers every deletion due now that no other replica holds, one at a time.
    pub async fn deliver_due(&self) -> Result<Delivered, AuthError> {
        let mut round = Delivered::default();
        let Some(task_admin) = &self.task_admin else {
            return Ok(round);
        };
        while let Some(deletion) =
            store::claim_next(&self.db, self.clock.now(), CLAIM_LEASE).await?
        {
            match self.deliver(task_admin.clone(), &deletion).await {
                Ok(()) => {
                    store::delivered(&self.db, &deletion).await?;
                    tracing::info!(
                        target: "audit", event = "account_deletion_delivered",
                        user_id = %deletion.user_id, attempts = deletion.attempts,
                        "the task-service purged the deleted account's tasks"
                    );
                    round.done += 1;
                }
                Err(error) => {
                    let wait = self.backoff(deletion.attempts);
                    let retry_at = self.clock.now() + wait;
                    store::failed(&self.db, &deletion, retry_at, &error).await?;
                    tracing::warn!(
                        user_id = %deletion.user_id, attempts = deletion.attempts, %error,
                        retry_in_secs = wait.num_seconds(),
                        "account deletion not delivered to the task-service yet"
                    );
                    round.failed += 1;
                }
            }
        }
        Ok(round)
    }

    /// Asks the task-service to purge one deleted account.
    async fn deliver(
        &self,
        mut task_admin: TaskAdminClient<Traced<Channel>>,
        deletion: &PendingDeletion,
    ) -> Result<(), String> {
        let now = self.clock.now();
        let keys = self.keys.current(now).await.map_err(|e| e.to_string())?;
        let token = self
            .issuer
            .sign_service(&keys, keys.signing_kid(), SERVICE_NAME, now)
            .map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(PurgeUserRequest {
            user_id: deletion.user_id.to_string(),
            keep_until: Some(todo_api::timestamp(
                deletion.requested_at + self.token_lifetime,
            )),
        });
        request.set_timeout(DELIVERY_TIMEOUT);
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| "service token is not a header value".to_owned())?;
        request.metadata_mut().insert("authorization", bearer);
        task_admin
            .purge_user(request)
            .await
            .map(|_| ())
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    }

    /// How long to wait after the `attempts`-th failed delivery: 1 s, doubling, at most
    /// DELETION_RETRY_MAX_SECS.
    fn backoff(&self, attempts: u32) -> TimeDelta {
        let doubled = TimeDelta::seconds(1 << attempts.saturating_sub(1).min(20));
        doubled.min(self.retry_max)
    }

    /// Delivers until the returned task is aborted: at once when woken, and every 2 s.
    /// Without TASK_INTERNAL_URL nothing is delivered: says so once.
    pub fn spawn_worker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let deliveries = Arc::clone(self);
        tokio::spawn(async move {
            if deliveries.task_admin.is_none() {
                tracing::warn!(
                    "TASK_INTERNAL_URL is not set: deleted accounts are recorded, but their tasks \
                     are not purged at the task-service until it is"
                );
                return;
            }
            loop {
                if let Err(error) = deliveries.deliver_due().await {
                    tracing::warn!(%error, "account deletion deliveries failed");
                }
                let _ = tokio::time::timeout(POLL_EVERY, deliveries.wake.notified()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_double_from_a_second_up_to_the_maximum() {
        let db = crate::store::test_database().await;
        let clock: SharedClock = Arc::new(clock::SystemClock);
        let args = crate::config::AuthConfig::for_database(
            "127.0.0.1:0".parse().unwrap(),
            "sqlite::memory:",
        );
        let keys = Arc::new(
            KeyRing::load(db.clone(), &args.tokens, clock.now(), &Default::default())
                .await
                .unwrap(),
        );
        let issuer = TokenIssuer::new("iss", "aud", TimeDelta::minutes(15));
        let lifetime = TimeDelta::minutes(15);
        let retry_max = TimeDelta::seconds(60);
        let deliveries = Deliveries::new(db, clock, keys, issuer, None, lifetime, retry_max);
        let waits: Vec<i64> = (1..=8)
            .map(|n| deliveries.backoff(n).num_seconds())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(deliveries.backoff(u32::MAX).num_seconds(), 60);
    }
}
