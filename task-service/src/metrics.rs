//! The task-service's own metrics (README, "Operating it"), counted into the instance's
//! registry ([`grpc_edge::metrics::Metrics`]). Every label value is from a fixed list.

use grpc_edge::metrics::{Labels, Metrics};
use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};

/// Buckets of page sizes (tasks per ListTasks answer).
const PAGE_SIZES: &[f64] = &[0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Counters and histograms of the task-service's use cases.
#[derive(Clone, Debug)]
pub struct TaskMetrics {
    /// The interceptor's answers: `verified`, `cached`, or `refused` with a reason.
    pub authentication: Family<Labels, Counter>,
    /// Fetches of the auth-service's signing keys, by outcome.
    pub key_fetches: Family<Labels, Counter>,
    /// Tasks created, updated and deleted.
    pub tasks_written: Family<Labels, Counter>,
    /// Tasks per ListTasks page.
    pub page_sizes: Histogram,
    metrics: Metrics,
}

impl Default for TaskMetrics {
    /// In a registry of their own, served nowhere (tests and benchmarks).
    fn default() -> Self {
        Self::new(&Metrics::new())
    }
}

impl TaskMetrics {
    /// Registers the task-service's metrics in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            authentication: metrics.counters(
                "task_authentications",
                "Bearer tokens checked by the interceptor, by outcome (verified, cached, refused) and reason",
            ),
            key_fetches: metrics.counters(
                "task_key_fetches",
                "Fetches of the auth-service's signing keys (GetSigningKeys), by outcome",
            ),
            tasks_written: metrics.counters(
                "task_tasks_written",
                "Tasks created, updated and deleted, by operation",
            ),
            page_sizes: {
                let histogram = Histogram::new(PAGE_SIZES.iter().copied());
                metrics.register(
                    "task_list_page_size",
                    "Tasks per ListTasks answer",
                    histogram.clone(),
                );
                histogram
            },
            metrics: metrics.clone(),
        }
    }

    /// The registry these are in (for gauges read at scrape time and refusals).
    pub fn registry(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts one interceptor answer: `outcome` with `reason` (empty for a success).
    pub fn authenticated(&self, outcome: &'static str, reason: &'static str) {
        self.authentication
            .get_or_create(&vec![("outcome", outcome), ("reason", reason)])
            .inc();
    }

    /// Counts one key fetch with `outcome`.
    pub fn key_fetch(&self, outcome: &'static str) {
        self.key_fetches
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    /// Counts one task written by `operation` (created, updated, deleted).
    pub fn task_written(&self, operation: &'static str) {
        self.tasks_written
            .get_or_create(&vec![("operation", operation)])
            .inc();
    }
}
