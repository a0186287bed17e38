//! The load generator: N workers, each with one RPC in flight, call after call (closed loop)
//! or starting a call on a schedule (open loop), for a warm-up and then a measured window.
//! Only calls that complete inside the window count; their latencies are kept whole and
//! sorted for the percentiles (see [`stats`]).

mod stats;

pub use stats::{OpStats, PhaseResult, RawPhase, mib};

use crate::system::{self, CpuSample};
use stats::Ops;
use std::{future::Future, time::Duration};
use tokio::{task::JoinHandle, time::Instant};
use tonic::Status;

/// One call's outcome: the operation's name and whether it got the answer it expects.
pub type Outcome = (&'static str, Result<(), Status>);

/// A worker: makes one call at a time.
pub trait Worker: Send + 'static {
    /// Makes the next call.
    fn call(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// How long a call in flight at the end of the window may still take before it is dropped.
const GRACE: Duration = Duration::from_secs(15);

/// A phase under way: workers are running.
pub struct Phase {
    window_start: Instant,
    window_end: Instant,
    handles: Vec<JoinHandle<Ops>>,
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
            let mut due =
                pace.map(|every| (Instant::now() + every.mul_f64(i as f64 / n as f64), every));
            self.handles.push(tokio::spawn(async move {
                let mut ops = Ops::new();
                while Instant::now() < end {
                    let began = match &mut due {
                        Some((due, every)) => {
                            tokio::time::sleep_until(*due).await;
                            let began = *due;
                            *due += *every;
                            began
                        }
                        None => Instant::now(),
                    };
                    let Ok((op, result)) =
                        tokio::time::timeout_at(end + GRACE, worker.call()).await
                    else {
                        break;
                    };
                    let done = Instant::now();
                    if (start..=end).contains(&done) {
                        ops.entry(op).or_default().record(done - began, result);
                    }
                }
                ops
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
        let seconds = (self.window_end - self.window_start).as_secs_f64();
        let mut raw = RawPhase {
            seconds,
            ops: Ops::new(),
            cpu: vec![(cpu, seconds)],
            rss_kib: system::rss_kib(),
            peak_rss_kib: system::peak_rss_kib(),
            peak_since_phase_start: peak_reset,
        };
        let deadline = self.window_end + GRACE + Duration::from_secs(1);
        for handle in self.handles.drain(..) {
            let abort = handle.abort_handle();
            match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(ops)) => stats::merge(&mut raw.ops, ops),
                Ok(Err(_)) | Err(_) => abort.abort(),
            }
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .map(|op| {
                op.latencies_us
                    .iter_recorded()
                    .flat_map(|v| {
                        let ms = u32::try_from(v.value_iterated_to() / 1000).unwrap_or(u32::MAX);
                        std::iter::repeat_n(ms, v.count_at_value() as usize)
                    })
                    .collect()
            })
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
}
