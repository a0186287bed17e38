//! What the workers recorded, merged over workers and rounds, and summarised: throughput,
//! percentiles (HdrHistogram, three significant digits: within 0.1%), unexpected answers by
//! gRPC code.

use crate::system::CpuUse;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::{collections::BTreeMap, time::Duration};
use tonic::{Code, Status};

/// Records by operation name.
pub(super) type Ops = BTreeMap<&'static str, OpRecord>;

/// The longest latency told apart from longer ones, in microseconds.
const LONGEST_US: u64 = 60_000_000;

/// Latencies and errors of one operation.
#[derive(Debug)]
pub(super) struct OpRecord {
    /// Latencies of successful calls, in microseconds.
    pub(super) latencies_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    /// The first message seen for each error code.
    examples: BTreeMap<String, String>,
}

impl Default for OpRecord {
    fn default() -> Self {
        Self {
            // 1 µs to a minute (longer calls count as a minute: RPCs time out at 30 s), three
            // significant digits.
            latencies_us: Histogram::new_with_bounds(1, LONGEST_US, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
        }
    }
}

impl OpRecord {
    /// Counts one call that took `latency`.
    pub(super) fn record(&mut self, latency: Duration, result: Result<(), Status>) {
        match result {
            Ok(()) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latencies_us.saturating_record(micros.max(1));
            }
            Err(status) => {
                let code = code_name(status.code());
                *self.errors.entry(code.clone()).or_default() += 1;
                self.examples
                    .entry(code)
                    .or_insert_with(|| status.message().to_owned());
            }
        }
    }

    /// Adds `other`'s calls (the first example of each code stays).
    fn absorb(&mut self, other: Self) {
        // Same bounds on both sides, so adding cannot run out of range.
        let _ = self.latencies_us.add(&other.latencies_us);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (code, message) in other.examples {
            self.examples.entry(code).or_insert(message);
        }
    }
}

/// Adds the records of `from` to `into`.
pub(super) fn merge(into: &mut Ops, from: Ops) {
    for (op, record) in from {
        into.entry(op).or_default().absorb(record);
    }
}

/// A phase's raw measurements; phases run in several rounds merge before summarising.
#[derive(Debug, Default)]
pub struct RawPhase {
    pub(super) seconds: f64,
    pub(super) ops: Ops,
    /// CPU use of each round, weighted by its length.
    pub(super) cpu: Vec<(CpuUse, f64)>,
    pub(super) rss_kib: u64,
    pub(super) peak_rss_kib: u64,
    pub(super) peak_since_phase_start: bool,
}

impl RawPhase {
    /// Adds another round of the same phase.
    pub fn merge(&mut self, other: RawPhase) {
        if self.seconds == 0.0 {
            *self = other;
            return;
        }
        self.seconds += other.seconds;
        merge(&mut self.ops, other.ops);
        self.cpu.extend(other.cpu);
        self.rss_kib = other.rss_kib;
        self.peak_rss_kib = self.peak_rss_kib.max(other.peak_rss_kib);
        self.peak_since_phase_start &= other.peak_since_phase_start;
    }

    /// The summary, with per-operation rows and a `total` row.
    pub fn summarise(self, name: &str) -> PhaseResult {
        let seconds = self.seconds.max(f64::EPSILON);
        let mut all = OpRecord::default();
        let mut ops = BTreeMap::new();
        for (op, mut record) in self.ops {
            ops.insert(op.to_owned(), OpStats::of(&mut record, seconds));
            all.absorb(record);
        }
        let total = OpStats::of(&mut all, seconds);
        let weight: f64 = self
            .cpu
            .iter()
            .map(|(_, w)| w)
            .sum::<f64>()
            .max(f64::EPSILON);
        let mean = |pct: fn(&CpuUse) -> f64| {
            self.cpu.iter().map(|(c, w)| pct(c) * w).sum::<f64>() / weight
        };
        let cpu = CpuUse {
            process_pct: mean(|c| c.process_pct),
            services_pct: mean(|c| c.services_pct),
            machine_pct: mean(|c| c.machine_pct),
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

    /// CPU time one call cost the whole process (services + client), µs.
    pub fn cpu_us_per_call(&self) -> f64 {
        self.per_call(self.cpu.process_pct)
    }

    /// CPU time one call cost the services alone (the load generator's threads apart), µs.
    pub fn services_cpu_us_per_call(&self) -> f64 {
        self.per_call(self.cpu.services_pct)
    }

    fn per_call(&self, pct: f64) -> f64 {
        if self.total.rps > 0.0 {
            pct / 100.0 * 1e6 / self.total.rps
        } else {
            0.0
        }
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
    fn of(record: &mut OpRecord, seconds: f64) -> Self {
        let latencies = &record.latencies_us;
        let ok = latencies.len();
        let ms = |us: u64| us as f64 / 1000.0;
        let pct = |q: f64| {
            if ok == 0 {
                0.0
            } else {
                ms(latencies.value_at_quantile(q))
            }
        };
        Self {
            ok,
            rps: ok as f64 / seconds,
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: if ok == 0 { 0.0 } else { ms(latencies.max()) },
            mean_ms: if ok == 0 {
                0.0
            } else {
                latencies.mean() / 1000.0
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
fn code_name(code: Code) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_nearest_rank_within_a_tenth_of_a_percent() {
        let mut record = OpRecord::default();
        for ms in (1..=100).rev() {
            record.record(Duration::from_millis(ms), Ok(()));
        }
        let mut other = OpRecord::default();
        other.record(Duration::from_millis(7), Err(Status::unavailable("down")));
        record.absorb(other);
        let stats = OpStats::of(&mut record, 2.0);
        assert_eq!(stats.ok, 100);
        assert_eq!(stats.rps, 50.0);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001;
        for (got, want) in [
            (stats.p50_ms, 50.0),
            (stats.p90_ms, 90.0),
            (stats.p99_ms, 99.0),
            (stats.max_ms, 100.0),
            (stats.mean_ms, 50.5),
        ] {
            assert!(close(got, want), "{got} is not {want}");
        }
        assert_eq!(stats.errors["UNAVAILABLE"], 1);
    }

    #[test]
    fn code_names_are_the_canonical_upper_snake_case() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
    }
}
