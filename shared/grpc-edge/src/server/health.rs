//! `grpc.health.v1` status that follows the database: NOT_SERVING while it does not answer.

use sea_orm::DatabaseConnection;
use std::time::Duration;
use tonic_health::{ServingStatus, server::HealthReporter};

/// Whether a service is ready apart from its database (e.g. it has its verification keys).
pub type ReadyCheck = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// How often readiness is checked while the service is not serving, so it turns SERVING
/// soon after start-up or recovery.
const RECHECK_WHILE_NOT_SERVING: Duration = Duration::from_millis(250);

/// Keeps `services` (and the server as a whole) SERVING while the database answers a ping and
/// `ready` holds, NOT_SERVING otherwise, checking every `every` (more often while not
/// serving), and keeps `serving` in step (the `health_serving` gauge). Runs until its handle
/// is aborted.
pub fn watch_health(
    db: DatabaseConnection,
    reporter: HealthReporter,
    services: &'static [&'static str],
    every: Duration,
    ready: Option<ReadyCheck>,
    serving: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = match db.ping().await {
                Ok(()) if ready.as_ref().is_none_or(|ready| ready()) => ServingStatus::Serving,
                Ok(()) => ServingStatus::NotServing,
                Err(error) => {
                    if last != Some(ServingStatus::NotServing) {
                        tracing::error!(%error, "database unreachable: reporting NOT_SERVING");
                    }
                    ServingStatus::NotServing
                }
            };
            serving.store(
                status == ServingStatus::Serving,
                std::sync::atomic::Ordering::Relaxed,
            );
            if last != Some(status) {
                for service in services.iter().copied().chain([""]) {
                    reporter.set_service_status(service, status).await;
                }
                last = Some(status);
            }
            let pause = if status == ServingStatus::Serving {
                every
            } else {
                every.min(RECHECK_WHILE_NOT_SERVING)
            };
            tokio::time::sleep(pause).await;
        }
    })
}
