//! The auth-service's own metrics (README, "Operating it"), counted into the instance's
//! registry ([`grpc_edge::metrics::Metrics`]). Outcome labels come from a fixed list
//! (`AuthError::outcome`), never from a request.

use grpc_edge::metrics::{DurationHistogram, Labels, Metrics, QUICK_SECONDS};
use prometheus_client::metrics::{counter::Counter, family::Family};

/// Counters and histograms of the auth-service's use cases.
#[derive(Clone, Debug)]
pub struct AuthMetrics {
    /// Sign-ups by outcome.
    pub sign_ups: Family<Labels, Counter>,
    /// Sign-ins by outcome (`ok`, `invalid_credentials`, `throttled`, `busy`, ...).
    pub sign_ins: Family<Labels, Counter>,
    /// Refreshes by outcome.
    pub refreshes: Family<Labels, Counter>,
    /// Sign-outs by outcome.
    pub sign_outs: Family<Labels, Counter>,
    /// Answers refused by the sign-in / sign-up throttle, by operation.
    pub throttled: Family<Labels, Counter>,
    /// Refresh tokens presented again after their grace window: the session is revoked.
    pub refresh_reuse: Counter,
    /// Signing keys created (first start) and rotated.
    pub signing_keys: Family<Labels, Counter>,
    /// How long a password hash or check waited for a permit.
    pub hash_wait: DurationHistogram,
    metrics: Metrics,
}

impl Default for AuthMetrics {
    /// In a registry of their own, served nowhere (tests and benchmarks).
    fn default() -> Self {
        Self::new(&Metrics::new())
    }
}

impl AuthMetrics {
    /// Registers the auth-service's metrics in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            sign_ups: metrics.counters("auth_sign_ups", "SignUp calls by outcome"),
            sign_ins: metrics.counters("auth_sign_ins", "SignIn calls by outcome"),
            refreshes: metrics.counters("auth_refreshes", "Refresh calls by outcome"),
            sign_outs: metrics.counters("auth_sign_outs", "SignOut calls by outcome"),
            throttled: metrics.counters(
                "auth_throttled",
                "Answers refused by the sign-in throttle (THROTTLE_*), by operation",
            ),
            refresh_reuse: metrics.counter(
                "auth_refresh_token_reuse",
                "Refresh tokens presented after their grace window: reuse detected, session revoked",
            ),
            signing_keys: metrics.counters(
                "auth_signing_keys",
                "Signing keys created or rotated, by event",
            ),
            hash_wait: metrics.durations(
                "auth_hash_queue_wait_seconds",
                "How long a password hash or check waited for a hash permit",
                QUICK_SECONDS,
            ),
            metrics: metrics.clone(),
        }
    }

    /// The registry these are in (for gauges read at scrape time).
    pub fn registry(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts one answer of `operation` refused by the throttle.
    pub fn throttled_in(&self, operation: &'static str) {
        self.throttled
            .get_or_create(&vec![("operation", operation)])
            .inc();
    }

    /// Counts one `event` in `family`.
    pub fn count_event(family: &Family<Labels, Counter>, event: &'static str) {
        family.get_or_create(&vec![("event", event)]).inc();
    }

    /// Counts one call of `family` with `outcome`.
    pub fn count(family: &Family<Labels, Counter>, outcome: &'static str) {
        family.get_or_create(&vec![("outcome", outcome)]).inc();
    }
}
