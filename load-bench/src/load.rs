//! The closed-loop load generator: N workers, each with one RPC in flight, call after call,
//! for a warm-up and then a measured window. Only calls that complete inside the window
//! count; their latencies are kept whole and sorted for the percentiles.

use crate::system::{self, CpuSample, CpuUse};
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    time::Duration,
};
use tokio::{task::JoinHandle, time::Instant};
use tonic::{Code, Status};

/// One call's outcome: the operation's name and whether it got the answer it expects.
pub type Outcome = (&'static str, Result<(), Status>);

/// A worker: makes one call at a time.
pub trait Worker: Send + 'static {
    /// Makes the next call.
    fn call(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// How long a call in flight at the end of the window may still take before it is dropped.
const GRACE: Duration = Duration::from_secs(15);

/// Latencies and errors of one operation.
#[derive(Debug, Default)]
struct OpRecord {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    /// The first message seen for each error code.
    examples: BTreeMap<String, String>,
}

/// Everything one worker saw inside the window.
#[derive(Debug, Default)]
struct Recorder {
    ops: HashMap<&'static str, OpRecord>,
}

/// A phase under way: workers are running.
pub struct Phase {
    window_start: Instant,
    window_end: Instant,
    handles: Vec<JoinHandle<Recorder>>,
}

impl Phase {
    /// Starts the clock: `warmup` of unmeasured load, then `duration` measured.
    pub fn start(warmup: Duration, duration: Duration) -> Self {
        let window_start = Instant::now() + warmup;
        Self {
            window_start,
            window_end: window_start + duration,
            handles: Vec::new(),
        }
    }

    /// Adds closed-loop workers (they start at once): each makes its next call as soon as
    /// the previous one is answered.
    pub fn spawn<W: Worker>(&mut self, workers: impl IntoIterator<Item = W>) {
        self.spawn_with(workers, None);
    }

    /// Adds open-loop workers: each starts a call every `every` whatever the service does,
    /// and a call's latency counts from when it was due, so a late start is not hidden
    /// (no coordinated omission).
    pub fn spawn_paced<W: Worker>(
        &mut self,
        workers: impl IntoIterator<Item = W>,
        every: Duration,
    ) {
        self.spawn_with(workers, Some(every));
    }

    fn spawn_with<W: Worker>(
        &mut self,
        workers: impl IntoIterator<Item = W>,
        pace: Option<Duration>,
    ) {
        let workers: Vec<W> = workers.into_iter().collect();
        let n = workers.len().max(1);
        for (i, mut worker) in workers.into_iter().enumerate() {
            let (start, end) = (self.window_start, self.window_end);
            // Paced workers are spread evenly over one interval.
            let mut due = pace.map(|every| Instant::now() + every.mul_f64(i as f64 / n as f64));
            self.handles.push(tokio::spawn(async move {
                let mut recorder = Recorder::default();
                while Instant::now() < end {
                    let began = match (&mut due, pace) {
                        (Some(due), Some(every)) => {
                            tokio::time::sleep_until(*due).await;
                            let began = *due;
                            *due += every;
                            began
                        }
                        _ => Instant::now(),
                    };
                    let Ok((op, result)) =
                        tokio::time::timeout_at(end + GRACE, worker.call()).await
                    else {
                        break;
                    };
                    let done = Instant::now();
                    if done < start || done > end {
                        continue;
                    }
                    let record = recorder.ops.entry(op).or_default();
                    match result {
                        Ok(()) => {
                            let micros = done.duration_since(began).as_micros();
                            record
                                .latencies_us
                                .push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                        Err(status) => {
                            let code = code_name(status.code());
                            *record.errors.entry(code.clone()).or_default() += 1;
                            record
                                .examples
                                .entry(code)
                                .or_insert_with(|| status.message().to_owned());
                        }
                    }
                }
                recorder
            }));
        }
    }

    /// Waits for the window to end and the workers to stop; returns what they recorded.
    pub async fn finish(mut self) -> RawPhase {
        tokio::time::sleep_until(self.window_start).await;
        let peak_reset = system::reset_peak_rss();
        let cpu_at_start = CpuSample::now();
        tokio::time::sleep_until(self.window_end).await;
        let cpu = cpu_at_start.until(&CpuSample::now());
        let peak_rss_kib = system::peak_rss_kib();
        let rss_kib = system::rss_kib();
        let mut raw = RawPhase {
            seconds: self
                .window_end
                .duration_since(self.window_start)
                .as_secs_f64(),
            ops: BTreeMap::new(),
            cpu: Vec::new(),
            rss_kib,
            peak_rss_kib,
            peak_since_phase_start: peak_reset,
        };
        let deadline = self.window_end + GRACE + Duration::from_secs(1);
        for handle in self.handles.drain(..) {
            let abort = handle.abort_handle();
            match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(recorder)) => {
                    for (op, record) in recorder.ops {
                        let merged = raw.ops.entry(op.to_owned()).or_default();
                        merged.latencies_us.extend(record.latencies_us);
                        for (code, n) in record.errors {
                            *merged.errors.entry(code).or_default() += n;
                        }
                        for (code, message) in record.examples {
                            merged.examples.entry(code).or_insert(message);
                        }
                    }
                }
                Ok(Err(_)) | Err(_) => abort.abort(),
            }
        }
        raw.cpu.push((cpu, raw.seconds));
        raw
    }
}

/// A phase's raw measurements; phases run in several rounds merge before summarising.
#[derive(Debug, Default)]
pub struct RawPhase {
    seconds: f64,
    ops: BTreeMap<String, RawOp>,
    /// CPU use of each round, weighted by its length.
    cpu: Vec<(CpuUse, f64)>,
    rss_kib: u64,
    peak_rss_kib: u64,
    peak_since_phase_start: bool,
}

#[derive(Debug, Default)]
struct RawOp {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    examples: BTreeMap<String, String>,
}

impl RawPhase {
    /// Adds another round of the same phase.
    pub fn merge(&mut self, other: RawPhase) {
        if self.seconds == 0.0 {
            *self = other;
            return;
        }
        self.seconds += other.seconds;
        for (op, record) in other.ops {
            let merged = self.ops.entry(op).or_default();
            merged.latencies_us.extend(record.latencies_us);
            for (code, n) in record.errors {
                *merged.errors.entry(code).or_default() += n;
            }
            for (code, message) in record.examples {
                merged.examples.entry(code).or_insert(message);
            }
        }
        self.cpu.extend(other.cpu);
        self.rss_kib = other.rss_kib;
        self.peak_rss_kib = self.peak_rss_kib.max(other.peak_rss_kib);
        self.peak_since_phase_start &= other.peak_since_phase_start;
    }

    /// The summary, with per-operation rows and a `total` row.
    pub fn summarise(self, name: &str) -> PhaseResult {
        let seconds = self.seconds.max(f64::EPSILON);
        let mut all = RawOp::default();
        let mut ops = BTreeMap::new();
        for (op, mut record) in self.ops {
            all.latencies_us.extend_from_slice(&record.latencies_us);
            for (code, n) in &record.errors {
                *all.errors.entry(code.clone()).or_default() += n;
            }
            for (code, message) in &record.examples {
                all.examples
                    .entry(code.clone())
                    .or_insert_with(|| message.clone());
            }
            ops.insert(op, OpStats::of(&mut record, seconds));
        }
        let total = OpStats::of(&mut all, seconds);
        let weight: f64 = self
            .cpu
            .iter()
            .map(|(_, w)| w)
            .sum::<f64>()
            .max(f64::EPSILON);
        let cpu = CpuUse {
            process_pct: self.cpu.iter().map(|(c, w)| c.process_pct * w).sum::<f64>() / weight,
            machine_pct: self.cpu.iter().map(|(c, w)| c.machine_pct * w).sum::<f64>() / weight,
        };
        PhaseResult {
            name: name.to_owned(),
            seconds,
            ops,
            total,
            cpu,
            rss_mib: mib(self.rss_kib),
            peak_rss_mib: mib(self.peak_rss_kib),
            peak_is_per_phase: self.peak_since_phase_start,
        }
    }
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One phase's results.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: String,
    /// Measured seconds (all rounds).
    pub seconds: f64,
    /// By operation.
    pub ops: BTreeMap<String, OpStats>,
    /// All operations together.
    pub total: OpStats,
    pub cpu: CpuUse,
    /// Process RSS at the end of the window (both services + the load generator), MiB.
    pub rss_mib: f64,
    /// Process peak RSS during the window (VmHWM, reset at the window's start), MiB.
    pub peak_rss_mib: f64,
    /// Whether the peak could be reset at the window's start (else it is since start-up).
    pub peak_is_per_phase: bool,
}

impl PhaseResult {
    /// The row of `op`, or the total when there is no such operation.
    pub fn op(&self, op: &str) -> &OpStats {
        self.ops.get(op).unwrap_or(&self.total)
    }
}

/// Throughput and latency of one operation (successful calls only; errors are counted).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpStats {
    /// Calls that got the expected answer.
    pub ok: u64,
    /// `ok` per second.
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Unexpected answers by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// The first message of each code.
    pub error_examples: BTreeMap<String, String>,
}

impl OpStats {
    fn of(record: &mut RawOp, seconds: f64) -> Self {
        let latencies = &mut record.latencies_us;
        latencies.sort_unstable();
        let ok = latencies.len() as u64;
        let ms = |us: u32| f64::from(us) / 1000.0;
        let pct = |p: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = (p * latencies.len() as f64).ceil() as usize;
            ms(latencies[rank.clamp(1, latencies.len()) - 1])
        };
        let sum: u64 = latencies.iter().map(|&us| u64::from(us)).sum();
        Self {
            ok,
            rps: ok as f64 / seconds,
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: latencies.last().map_or(0.0, |&us| ms(us)),
            mean_ms: if ok == 0 {
                0.0
            } else {
                sum as f64 / ok as f64 / 1000.0
            },
            errors: record.errors.clone(),
            error_examples: record.examples.clone(),
        }
    }

    /// Unexpected answers, all codes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A gRPC code's canonical name (`NOT_FOUND`).
pub fn code_name(code: Code) -> String {
    let name = format!("{code:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Maps an expected refusal to success: for calls whose right answer is an error.
pub fn expect_code<T>(result: Result<T, Status>, expected: Code) -> Result<(), Status> {
    match result {
        Err(status) if status.code() == expected => Ok(()),
        Ok(_) => Err(Status::unknown(format!(
            "expected {expected:?}, got a success"
        ))),
        Err(status) => Err(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut record = RawOp {
            latencies_us: (1..=100).rev().map(|ms| ms * 1000).collect(),
            ..RawOp::default()
        };
        let stats = OpStats::of(&mut record, 2.0);
        assert_eq!(stats.ok, 100);
        assert_eq!(stats.rps, 50.0);
        assert_eq!(stats.p50_ms, 50.0);
        assert_eq!(stats.p90_ms, 90.0);
        assert_eq!(stats.p99_ms, 99.0);
        assert_eq!(stats.max_ms, 100.0);
    }

    /// A call that takes a fixed time.
    struct Takes(Duration);

    impl Worker for Takes {
        async fn call(&mut self) -> Outcome {
            tokio::time::sleep(self.0).await;
            ("op", Ok(()))
        }
    }

    /// Latencies of a paced phase of one worker, in ms, sorted.
    async fn paced(call: Duration, every: Duration, window: Duration) -> Vec<u32> {
        let mut phase = Phase::start(Duration::ZERO, window);
        phase.spawn_paced([Takes(call)], every);
        let raw = phase.finish().await;
        let mut ms: Vec<u32> = raw
            .ops
            .get("op")
            .map(|op| op.latencies_us.iter().map(|us| us / 1000).collect())
            .unwrap_or_default();
        ms.sort_unstable();
        ms
    }

    #[tokio::test(start_paused = true)]
    async fn paced_calls_start_on_schedule() {
        let ms = paced(
            Duration::from_millis(10),
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
        .await;
        assert!((9..=10).contains(&ms.len()), "{ms:?}");
        assert!(ms.iter().all(|&ms| ms == 10), "{ms:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_paced_call_counts_its_wait_from_when_it_was_due() {
        // Due every 100 ms, each taking 300 ms: call k starts at 300k ms, was due at 100k ms,
        // and ends at 300(k + 1) ms, so its latency is 300 + 200k ms.
        let ms = paced(
            Duration::from_millis(300),
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(ms, [300, 500, 700]);
    }

    #[test]
    fn code_names_are_the_canonical_upper_snake_case() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
    }
}
