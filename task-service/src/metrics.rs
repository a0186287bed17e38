//! The task-service's own metrics (README, "Operating it"), counted into the instance's
//! registry ([`grpc_edge::metrics::Metrics`]) when metrics are on (TASK_METRICS_LISTEN_ADDR);
//! off, every method here does nothing. Every label value is from a fixed list.

use grpc_edge::metrics::{Labels, Metrics, ShardedCounter};
use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use std::sync::Arc;

/// Buckets of page sizes (tasks per ListTasks answer).
const PAGE_SIZES: &[f64] = &[0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Counters and histograms of the task-service's use cases; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TaskMetrics {
    on: Option<Arc<On>>,
}

/// The handles, taken once: the hot paths (every authenticated call, every write) count
/// without a lookup.
#[derive(Debug)]
struct On {
    registry: Metrics,
    authentications: Family<Labels, ShardedCounter>,
    verified: ShardedCounter,
    cached: ShardedCounter,
    key_fetches: [Counter; 2],
    /// Created, updated, deleted.
    written: [Counter; 3],
    page_sizes: Histogram,
    list_cache_hits: ShardedCounter,
    /// Absent, stale.
    list_cache_misses: [Counter; 2],
    /// Past a user's share, past the capacity.
    list_cache_evictions: [Counter; 2],
}

/// Why pages were dropped from the ListTasks cache, for `task_list_cache_evictions_total`.
#[derive(Debug, Clone, Copy)]
pub enum Evicted {
    /// Past the user's share (LIST_CACHE_BYTES_PER_USER, or its most pages).
    UserShare = 0,
    /// Past the cache's bytes (LIST_CACHE_BYTES).
    Capacity = 1,
}

/// Why a ListTasks page was not answered from the cache, for `task_list_cache_misses_total`.
#[derive(Debug, Clone, Copy)]
pub enum CacheMiss {
    /// No page kept for the query.
    Absent = 0,
    /// A page kept, but a write of its owner's came after it.
    Stale = 1,
}

/// What a write did, for `task_tasks_written_total`.
#[derive(Debug, Clone, Copy)]
pub enum Written {
    Created = 0,
    Updated = 1,
    Deleted = 2,
}

impl TaskMetrics {
    /// Metrics off: nothing is counted.
    pub fn off() -> Self {
        Self::default()
    }

    /// Registers the task-service's metrics in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let authentications = Family::<Labels, ShardedCounter>::default();
        metrics.register(
            "task_authentications",
            "Bearer tokens checked by the interceptor, by outcome (verified, cached, refused) and the refusal's reason",
            authentications.clone(),
        );
        let outcome = |outcome| authentications.get_or_create_owned(&vec![("outcome", outcome)]);
        let fetches = metrics.counters(
            "task_key_fetches",
            "Fetches of the auth-service's signing keys (GetSigningKeys), by outcome",
        );
        let fetch = |outcome| fetches.get_or_create_owned(&vec![("outcome", outcome)]);
        let written = metrics.counters(
            "task_tasks_written",
            "Tasks created, updated and deleted, by operation",
        );
        let write = |operation| written.get_or_create_owned(&vec![("operation", operation)]);
        let page_sizes = Histogram::new(PAGE_SIZES.iter().copied());
        metrics.register(
            "task_list_page_size",
            "Tasks per ListTasks answer",
            page_sizes.clone(),
        );
        let misses = metrics.counters(
            "task_list_cache_misses",
            "ListTasks pages read from the database rather than the cache, by reason (absent: none kept; stale: a write came after it, on SQLite possibly another user's sharing its stripe)",
        );
        let miss = |reason| misses.get_or_create_owned(&vec![("reason", reason)]);
        let evictions = metrics.counters(
            "task_list_cache_evictions",
            "ListTasks pages dropped from the cache, by reason (user_share: LIST_CACHE_BYTES_PER_USER, capacity: LIST_CACHE_BYTES)",
        );
        let evicted = |reason| evictions.get_or_create_owned(&vec![("reason", reason)]);
        let list_cache_hits = ShardedCounter::default();
        metrics.register(
            "task_list_cache_hits",
            "ListTasks pages answered from the cache (the owner's stamp unchanged since the page was read)",
            list_cache_hits.clone(),
        );
        Self {
            on: Some(Arc::new(On {
                list_cache_hits,
                list_cache_misses: [miss("absent"), miss("stale")],
                list_cache_evictions: [evicted("user_share"), evicted("capacity")],
                registry: metrics.clone(),
                verified: outcome("verified"),
                cached: outcome("cached"),
                authentications,
                key_fetches: [fetch("ok"), fetch("failed")],
                written: [write("created"), write("updated"), write("deleted")],
                page_sizes,
            })),
        }
    }

    /// The registry, when metrics are on (for gauges read at scrape time and refusals).
    pub fn registry(&self) -> Option<&Metrics> {
        self.on.as_ref().map(|on| &on.registry)
    }

    /// Counts a token the interceptor accepted: verified now, or found already verified.
    pub fn accepted(&self, cached: bool) {
        if let Some(on) = &self.on {
            if cached { &on.cached } else { &on.verified }.inc();
        }
    }

    /// Counts a token the interceptor refused, and why (a fixed set of reasons).
    pub fn refused(&self, reason: &'static str) {
        if let Some(on) = &self.on {
            on.authentications
                .get_or_create(&vec![("outcome", "refused"), ("reason", reason)])
                .inc();
        }
    }

    /// Counts one key fetch.
    pub fn key_fetch(&self, ok: bool) {
        if let Some(on) = &self.on {
            on.key_fetches[usize::from(!ok)].inc();
        }
    }

    /// Counts one task written.
    pub fn written(&self, what: Written) {
        if let Some(on) = &self.on {
            on.written[what as usize].inc();
        }
    }

    /// Records the size of one ListTasks page.
    pub fn page(&self, tasks: usize) {
        if let Some(on) = &self.on {
            on.page_sizes.observe(tasks as f64);
        }
    }

    /// Counts a ListTasks page answered from the cache.
    pub fn list_cache_hit(&self) {
        if let Some(on) = &self.on {
            on.list_cache_hits.inc();
        }
    }

    /// Counts a ListTasks page read from the database, and why.
    pub fn list_cache_miss(&self, why: CacheMiss) {
        if let Some(on) = &self.on {
            on.list_cache_misses[why as usize].inc();
        }
    }

    /// Counts `pages` dropped from the ListTasks cache, and why.
    pub fn list_cache_evicted(&self, why: Evicted, pages: usize) {
        if let (Some(on), 1..) = (&self.on, pages) {
            on.list_cache_evictions[why as usize].inc_by(pages as u64);
        }
    }

    /// Reports the ListTasks cache's bytes and users at each scrape (`held` answers `None`
    /// once the cache is gone), and its capacity as a fair-share limit.
    pub fn list_cache_size(
        &self,
        capacity: usize,
        held: impl Fn() -> Option<(usize, usize)> + Send + Sync + 'static,
    ) {
        let Some(on) = &self.on else {
            return;
        };
        let held = Arc::new(held);
        let as_gauge = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let bytes = Arc::clone(&held);
        on.registry.gauge_fn(
            "task_list_cache_bytes",
            "Bytes of ListTasks pages held in the cache (LIST_CACHE_BYTES bounds it)",
            Vec::new(),
            move || bytes().map(|(b, _)| as_gauge(b)),
        );
        let users = Arc::clone(&held);
        on.registry.gauge_fn(
            "task_list_cache_users",
            "Users with ListTasks pages in the cache",
            Vec::new(),
            move || users().map(|(_, u)| as_gauge(u)),
        );
        on.registry.fair_share(
            vec![("resource", "list_cache_bytes")],
            capacity as u64,
            move || held().map(|(b, _)| b as u64),
        );
    }
}
