//! Prometheus metrics: one [`Metrics`] registry per service instance (never a process-global
//! recorder: the tests run many servers in one process, and `todo-stack` runs both services
//! in one), served in the Prometheus text format on the service's admin listener
//! ([`serve`], `AUTH_METRICS_LISTEN_ADDR` / `TASK_METRICS_LISTEN_ADDR`), never on a gRPC port.
//!
//! What every service gets from this crate (README, "Operating it"):
//! - per RPC, `rpc_server_call_duration_seconds` (OpenTelemetry's `rpc.server.call.duration`)
//!   by service, method and gRPC code, and `rpc_server_active_calls` by listener (read from
//!   the connection table at scrape time: nothing per call).
//!   Method labels are the served methods' names or `other`: a client never chooses a label.
//! - per fair-share limit, `fair_share_in_use` and `fair_share_limit` (read at scrape time)
//!   and `fair_share_refusals_total` by resource and reason (the setting that refused);
//!   `fair_share_evictions_total` counts idle connections closed to make way for a newcomer.
//! - the database pool (`db_client_connections_*`), query latency
//!   (`db_client_operation_duration_seconds` by statement kind) and health (`health_serving`).
//!
//! Labels are always from a fixed set: never a user id, email, token, task id or path.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text},
    metrics::{
        MetricType, TypedMetric,
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::{Metric, Registry},
};
use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// A metric's labels: fixed names and values from a fixed set (never anything a client sent).
pub type Labels = Vec<(&'static str, &'static str)>;

/// A family of duration histograms by [`Labels`], with its buckets.
pub type HistogramFamily = Family<Labels, DurationHistogram, Buckets>;

/// Makes the histograms of a [`HistogramFamily`] with these buckets.
#[derive(Clone, Copy, Debug)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<DurationHistogram> for Buckets {
    fn new_metric(&self) -> DurationHistogram {
        DurationHistogram::new(self.0)
    }
}

/// How many copies of a hot metric's atomics there are: each thread adds to its own (picked
/// round-robin when it first records), so calls on different cores never write the same cache
/// line; a scrape sums them.
const SHARDS: usize = 8;

/// The shard of the calling thread.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// Cache-line aligned, so shards never share a line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line<T>(T);

/// Most bounds a [`DurationHistogram`] has: with +Inf and the sum, 16 atomics per shard.
const MAX_BOUNDS: usize = 14;

/// A histogram of durations, in seconds, on sharded atomics: an observation is two relaxed
/// adds (its bucket and the sum, in nanoseconds) to the calling thread's shard, never a lock
/// and never a cache line another core writes (prometheus-client's `Histogram` takes a mutex
/// per observation).
#[derive(Clone, Debug)]
pub struct DurationHistogram {
    inner: Arc<DurationBuckets>,
}

#[derive(Debug)]
struct DurationBuckets {
    /// Upper bounds in seconds (as exposed) and in nanoseconds (as compared).
    bounds: &'static [f64],
    bounds_ns: [u64; MAX_BOUNDS],
    /// Per shard: a count per bound, then +Inf (at the bounds' length), and the sum in
    /// nanoseconds (last).
    shards: [Line<[AtomicU64; MAX_BOUNDS + 2]>; SHARDS],
}

impl DurationHistogram {
    /// A histogram with these upper bounds, in seconds, ascending (at most [`MAX_BOUNDS`];
    /// more are dropped).
    pub fn new(bounds: &'static [f64]) -> Self {
        let bounds = &bounds[..bounds.len().min(MAX_BOUNDS)];
        let mut bounds_ns = [u64::MAX; MAX_BOUNDS];
        for (ns, bound) in bounds_ns.iter_mut().zip(bounds) {
            *ns = (bound * 1e9) as u64;
        }
        Self {
            inner: Arc::new(DurationBuckets {
                bounds,
                bounds_ns,
                shards: std::array::from_fn(|_| Line(std::array::from_fn(|_| AtomicU64::new(0)))),
            }),
        }
    }

    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let inner = &self.inner;
        let bucket = inner.bounds_ns[..inner.bounds.len()].partition_point(|bound| *bound < ns);
        let shard = &inner.shards[shard()].0;
        shard[bucket].fetch_add(1, Ordering::Relaxed);
        shard[MAX_BOUNDS + 1].fetch_add(ns, Ordering::Relaxed);
    }
}

/// A counter on sharded atomics (see [`DurationHistogram`]), for counts made on every call.
#[derive(Clone, Debug, Default)]
pub struct ShardedCounter {
    shards: Arc<[Line<AtomicU64>; SHARDS]>,
}

impl ShardedCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.shards[shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_counter::<NoLabelSet, u64, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let inner = &self.inner;
        let total = |index: usize| -> u64 {
            inner
                .shards
                .iter()
                .map(|shard| shard.0[index].load(Ordering::Relaxed))
                .sum()
        };
        let n = inner.bounds.len();
        // prometheus-client writes the bound f64::MAX as +Inf.
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip((0..=n).map(total))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = total(MAX_BOUNDS + 1) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Buckets of RPC latencies, in seconds: 0.5 ms to 10 s.
pub const RPC_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of database statements and queue waits, in seconds: 0.1 ms to 5 s.
pub const QUICK_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One service instance's metrics registry. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Mutex<Registry>,
    gauges: Arc<ScrapedGauges>,
    refusals: Family<Labels, Counter>,
    evictions: Family<Labels, Counter>,
    rpc: RpcMetrics,
}

/// The per-RPC metrics the server's RPC layer records.
#[derive(Clone, Debug)]
pub(crate) struct RpcMetrics {
    pub(crate) duration: HistogramFamily,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with the metrics every service has (RPCs, fair-share limits).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let gauges = Arc::new(ScrapedGauges::default());
        registry.register_collector(Box::new(Arc::clone(&gauges)));
        let refusals = Family::<Labels, Counter>::default();
        registry.register(
            "fair_share_refusals",
            "Requests, connections and streams refused by a fair-share limit, by resource and by the setting that refused",
            refusals.clone(),
        );
        let evictions = Family::<Labels, Counter>::default();
        registry.register(
            "fair_share_evictions",
            "Idle connections closed to make way for a newcomer when the server was full (MAX_CONNECTIONS), by listener",
            evictions.clone(),
        );
        let rpc = RpcMetrics {
            duration: histogram_family(RPC_SECONDS),
        };
        registry.register(
            "rpc_server_call_duration_seconds",
            "Duration of RPCs until their response headers (a stream's opening), by service, method and gRPC status code (OpenTelemetry rpc.server.call.duration)",
            rpc.duration.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                gauges,
                refusals,
                evictions,
                rpc,
            }),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn rpc(&self) -> &RpcMetrics {
        &self.inner.rpc
    }

    /// Registers `metric` as `name` (`_total` is added to counters' names).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry().register(name, help, metric);
    }

    /// A new counter registered as `name` (exposed as `name_total`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.register(name, help, counter.clone());
        counter
    }

    /// A new counter family registered as `name` (exposed as `name_total`).
    pub fn counters(&self, name: &str, help: &str) -> Family<Labels, Counter> {
        let family = Family::default();
        self.register(name, help, family.clone());
        family
    }

    /// A new histogram with `buckets`, registered as `name`.
    pub fn histogram(&self, name: &str, help: &str, buckets: &'static [f64]) -> Histogram {
        let histogram = Histogram::new(buckets.iter().copied());
        self.register(name, help, histogram.clone());
        histogram
    }

    /// A new duration histogram with `buckets` (seconds), registered as `name`.
    pub fn durations(&self, name: &str, help: &str, buckets: &'static [f64]) -> DurationHistogram {
        let histogram = DurationHistogram::new(buckets);
        self.register(name, help, histogram.clone());
        histogram
    }

    /// A new duration histogram family with `buckets`, registered as `name`.
    pub fn histograms(&self, name: &str, help: &str, buckets: &'static [f64]) -> HistogramFamily {
        let family = histogram_family(buckets);
        self.register(name, help, family.clone());
        family
    }

    /// A gauge read at each scrape: `value` answers `None` once what it reads is gone (a
    /// stopped server), and the gauge is left out.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        value: impl Fn() -> Option<i64> + Send + Sync + 'static,
    ) {
        self.inner.gauges.add(name, help, labels, Box::new(value));
    }

    /// A fair-share limit: `fair_share_limit` is `limit`, `fair_share_in_use` is what
    /// `in_use` reads at each scrape. `labels` name the resource (and the listener).
    pub fn fair_share(
        &self,
        labels: Labels,
        limit: u64,
        in_use: impl Fn() -> Option<u64> + Send + Sync + 'static,
    ) {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let in_use = Arc::new(in_use);
        let alive = Arc::clone(&in_use);
        // Left out, like the use, once what it bounds is gone (a stopped listener).
        self.gauge_fn(
            "fair_share_limit",
            "The configured bound of a fair-share limit, by resource",
            labels.clone(),
            move || alive().map(|_| limit),
        );
        self.in_use(labels, move || in_use());
    }

    /// `fair_share_in_use` of a resource bounded by another's limit (TLS handshakes are
    /// connections): what `in_use` reads at each scrape.
    pub fn in_use(&self, labels: Labels, in_use: impl Fn() -> Option<u64> + Send + Sync + 'static) {
        self.gauge_fn(
            "fair_share_in_use",
            "How much of a fair-share limit is in use now, by resource",
            labels,
            move || in_use().map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        );
    }

    /// Counts one refusal by a fair-share limit (`labels`: resource, listener, reason).
    pub fn refused(&self, labels: &Labels) {
        self.inner.refusals.get_or_create(labels).inc();
    }

    /// The eviction counter of `labels` (resource, listener), to keep.
    pub fn evictions(&self, labels: &Labels) -> Counter {
        self.inner.evictions.get_or_create_owned(labels)
    }

    /// The refusal counter of `labels`, to keep and increment without a lookup.
    pub fn refusals(&self, labels: &Labels) -> Counter {
        self.inner.refusals.get_or_create_owned(labels)
    }

    /// The whole registry in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(error) = prometheus_text::encode(&mut text, &self.registry()) {
            tracing::error!(%error, "encoding the metrics failed");
        }
        text
    }
}

fn histogram_family(buckets: &'static [f64]) -> HistogramFamily {
    Family::new_with_constructor(Buckets(buckets))
}

/// A value read at scrape time.
type Read = Box<dyn Fn() -> Option<i64> + Send + Sync>;

/// A gauge's name, help, and its series.
type Named = (&'static str, &'static str, Vec<(Labels, Read)>);

/// The gauges read at scrape time, grouped by name (one HELP and TYPE per name).
#[derive(Default)]
struct ScrapedGauges {
    by_name: Mutex<Vec<Named>>,
}

impl fmt::Debug for ScrapedGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapedGauges").finish_non_exhaustive()
    }
}

impl ScrapedGauges {
    fn add(&self, name: &'static str, help: &'static str, labels: Labels, read: Read) {
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        match by_name.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, series)) => series.push((labels, read)),
            None => by_name.push((name, help, vec![(labels, read)])),
        }
    }
}

impl Collector for ScrapedGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, help, series) in by_name.iter_mut() {
            let mut values = Vec::with_capacity(series.len());
            // What is gone (a stopped listener, a closed pool) is left out, and forgotten.
            series.retain(|(labels, read)| match read() {
                Some(value) => {
                    values.push((labels.clone(), value));
                    true
                }
                None => false,
            });
            if values.is_empty() {
                continue;
            }
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, value) in &values {
                ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// A service instance's metrics and, when its `*_METRICS_LISTEN_ADDR` is set, the admin
/// listener that serves them. Without a listener nothing is recorded per RPC or per
/// statement ([`Admin::enabled`] is `None`): metrics off cost nothing on the hot path.
#[derive(Debug)]
pub struct Admin {
    metrics: Metrics,
    listener: Option<tokio::net::TcpListener>,
}

impl Admin {
    /// Binds `addr` (the setting named `setting`), or keeps metrics off when it is `None`.
    pub async fn bind(
        setting: &'static str,
        addr: Option<std::net::SocketAddr>,
    ) -> Result<Self, crate::server::BindError> {
        let listener = match addr {
            Some(addr) => Some(crate::server::bind(setting, addr).await?),
            None => None,
        };
        Ok(Self {
            metrics: Metrics::new(),
            listener,
        })
    }

    /// The registry (counted into even when nothing serves it: service counters are a few
    /// atomic adds).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The registry, when an admin listener serves it: what the per-RPC layer and the
    /// database hooks record into.
    pub fn enabled(&self) -> Option<&Metrics> {
        self.listener.as_ref().map(|_| &self.metrics)
    }

    /// Where metrics are served, if they are.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Records `db`'s pool and statements when metrics are on, and gives each statement a
    /// span when tracing is on (call before `db` is cloned: clones made earlier report
    /// nothing).
    pub fn watch_database(&self, db: &mut sea_orm::DatabaseConnection) {
        let metrics = self.enabled();
        if metrics.is_none() && !crate::telemetry::tracing_enabled() {
            return;
        }
        database(metrics, db);
    }

    /// Serves `GET /metrics` until `shutdown` completes, when there is a listener.
    pub fn spawn(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<crate::server::AbortOnDrop<()>> {
        let listener = self.listener?;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "metrics at GET /metrics (Prometheus text format)");
        }
        Some(crate::server::AbortOnDrop(tokio::spawn(serve(
            listener,
            self.metrics,
            shutdown,
        ))))
    }
}

/// The pool gauges (OpenTelemetry `db.client.connection.*`) and a histogram of statements by
/// kind, with a counter of failed ones, when there are `metrics`; a span per statement when
/// tracing is on.
fn database(metrics: Option<&Metrics>, db: &mut sea_orm::DatabaseConnection) {
    const KINDS: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "other"];
    let system = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "postgresql",
        sea_orm::DatabaseBackend::Sqlite => "sqlite",
        _ => "other_sql",
    };
    let recorded = metrics.map(|metrics| {
        let statements = metrics.histograms(
            "db_client_operation_duration_seconds",
            "Duration of database statements, by kind (SELECT, INSERT, UPDATE, DELETE, other)",
            QUICK_SECONDS,
        );
        let failures = metrics.counters(
            "db_client_operation_errors",
            "Database statements that failed, by kind",
        );
        KINDS.map(|kind| {
            let labels = vec![("db_operation_name", kind)];
            (
                statements.get_or_create_owned(&labels),
                failures.get_or_create_owned(&labels),
            )
        })
    });
    db.set_metric_callback(move |info| {
        let sql = info.statement.sql.trim_start();
        let index = KINDS[..4]
            .iter()
            .position(|kind| {
                sql.get(..kind.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(kind))
            })
            .unwrap_or(4);
        if let Some(recorded) = &recorded {
            let (duration, failures) = &recorded[index];
            duration.observe(info.elapsed);
            if info.failed {
                failures.inc();
            }
        }
        crate::telemetry::statement_span(info.elapsed, KINDS[index], system, info.failed);
    });
    let Some(metrics) = metrics else {
        return;
    };
    let pool = db.clone();
    let read = move |idle: bool| -> Option<i64> {
        let (size, idle_now) = match pool.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => {
                let p = pool.get_sqlite_connection_pool();
                if p.is_closed() {
                    return None;
                }
                (p.size(), p.num_idle())
            }
            sea_orm::DatabaseBackend::Postgres => {
                let p = pool.get_postgres_connection_pool();
                if p.is_closed() {
                    return None;
                }
                (p.size(), p.num_idle())
            }
            _ => return None,
        };
        let idle_now = u32::try_from(idle_now).unwrap_or(u32::MAX);
        Some(i64::from(if idle {
            idle_now
        } else {
            size.saturating_sub(idle_now)
        }))
    };
    let read = Arc::new(read);
    for (state, idle) in [("idle", true), ("used", false)] {
        let read = Arc::clone(&read);
        metrics.gauge_fn(
            "db_client_connections",
            "Open database connections, by state (idle, used)",
            vec![("db_client_connection_state", state)],
            move || read(idle),
        );
    }
    let max = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => Some(
            db.get_sqlite_connection_pool()
                .options()
                .get_max_connections(),
        ),
        sea_orm::DatabaseBackend::Postgres => Some(
            db.get_postgres_connection_pool()
                .options()
                .get_max_connections(),
        ),
        _ => None,
    };
    if let Some(max) = max {
        metrics.gauge_fn(
            "db_client_connection_max",
            "The most database connections the pool opens (DATABASE_MAX_CONNECTIONS)",
            Vec::new(),
            move || Some(i64::from(max)),
        );
    }
}

/// Most scrapes served at once: an admin port, but still bounded.
const MAX_SCRAPES: usize = 8;

/// Longest a scrape's request head may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest one scrape connection may stay open.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` (Prometheus text format) on `listener` until `shutdown` completes.
/// Nothing else is served: any other path is 404, any other method 405. At most
/// [`MAX_SCRAPES`] connections at once (more are closed at once), one request each, its head
/// within [`HEADER_TIMEOUT`], the whole within [`SCRAPE_TIMEOUT`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    use http_body_util::Full;
    use hyper::{Method, Response, StatusCode, header, service::service_fn};

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let (status, content_type, body) =
                        match (request.method(), request.uri().path()) {
                            (&Method::GET | &Method::HEAD, "/metrics") => (
                                StatusCode::OK,
                                "text/plain; version=0.0.4; charset=utf-8",
                                metrics.encode(),
                            ),
                            (_, "/metrics") => (
                                StatusCode::METHOD_NOT_ALLOWED,
                                "text/plain; charset=utf-8",
                                "GET /metrics\n".to_owned(),
                            ),
                            _ => (
                                StatusCode::NOT_FOUND,
                                "text/plain; charset=utf-8",
                                "metrics are at GET /metrics\n".to_owned(),
                            ),
                        };
                    let mut response = Response::new(Full::new(bytes::Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            // One scrape per connection, its request head within a few seconds: a slot is
            // held briefly, never by an idle connection.
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_falls_in_the_first_bucket_at_or_above_it_and_counts_once() {
        let metrics = Metrics::new();
        let histogram = metrics.durations("waits_seconds", "Waits", &[0.001, 0.01]);
        for ms in [1, 5, 50] {
            histogram.observe(Duration::from_millis(ms));
        }
        let text = metrics.encode();
        for line in [
            "waits_seconds_bucket{le=\"0.001\"} 1",
            "waits_seconds_bucket{le=\"0.01\"} 2",
            "waits_seconds_bucket{le=\"+Inf\"} 3",
            "waits_seconds_sum 0.056",
            "waits_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn counters_gauges_and_histograms_are_encoded_once_per_name() {
        let metrics = Metrics::new();
        let signins = metrics.counters("auth_sign_ins", "Sign-ins by outcome");
        signins.get_or_create(&vec![("outcome", "failed")]).inc();
        metrics.fair_share(vec![("resource", "connections")], 10, || Some(3));
        metrics.fair_share(vec![("resource", "streams")], 5, || None);
        metrics.refused(&vec![
            ("resource", "connections"),
            ("reason", "MAX_CONNECTIONS"),
        ]);
        let text = metrics.encode();
        assert!(
            text.contains("auth_sign_ins_total{outcome=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fair_share_in_use{resource=\"connections\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("fair_share_limit{resource=\"connections\"} 10"),
            "{text}"
        );
        assert!(
            !text.contains("resource=\"streams\""),
            "a gone gauge is left out: {text}"
        );
        assert_eq!(
            text.matches("# TYPE fair_share_in_use gauge").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains(
                "fair_share_refusals_total{resource=\"connections\",reason=\"MAX_CONNECTIONS\"} 1"
            ),
            "{text}"
        );
    }
}
