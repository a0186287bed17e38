//! What the process and the machine are doing: resident memory, CPU time, open files.

use serde::Serialize;
use std::time::Instant;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`); 0 when unreadable.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

/// This process's resident set now, KiB.
pub fn rss_kib() -> u64 {
    status_kib("self", "VmRSS")
}

/// This process's peak resident set since start or the last [`reset_peak_rss`], KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("self", "VmHWM")
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0), so a phase reports its own peak.
/// Returns false when the kernel refused (the peak is then since process start).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The CPU model, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The name of the load generator's threads (its tokio runtime's workers). Every other
/// thread of this process works for the services: their runtime, the SQLite connections'
/// threads, password hashing.
pub const CLIENT_THREAD: &str = "load-client";

/// Clock ticks of CPU time: this process's (user + system), its load generator's, and the
/// machine's busy and total.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    process_ticks: u64,
    client_ticks: u64,
    machine_busy: u64,
    machine_total: u64,
}

/// CPU use between two samples, in percent of one core (200% = both of two cores busy).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// This process (both services and the load generator).
    pub process_pct: f64,
    /// The services alone: the process less the load generator's threads.
    pub services_pct: f64,
    /// The whole machine, including the database server and anything else running.
    pub machine_pct: f64,
}

/// utime + stime from a `/proc/…/stat` line (fields 14 and 15, counted after the
/// parenthesised command name, which may itself hold spaces).
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks of the load generator's threads: those named [`CLIENT_THREAD`], and the main
/// thread (which drives the scenario).
fn client_ticks() -> u64 {
    let pid = std::process::id().to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            name.starts_with(CLIENT_THREAD) || task.file_name().to_str() == Some(pid.as_str())
        })
        .filter_map(|task| stat_ticks(&std::fs::read_to_string(task.path().join("stat")).ok()?))
        .sum()
}

/// Linux reports CPU time in USER_HZ ticks, 100 per second on every mainstream platform.
const TICKS_PER_SEC: f64 = 100.0;

impl CpuSample {
    /// The counters now.
    pub fn now() -> Self {
        let process_ticks = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| stat_ticks(&stat))
            .unwrap_or(0);
        let client_ticks = client_ticks();
        let (machine_busy, machine_total) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().next()?;
                let values: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                let total: u64 = values.iter().take(8).sum();
                // idle + iowait
                let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
                Some((total.saturating_sub(idle), total))
            })
            .unwrap_or((0, 0));
        Self {
            at: Instant::now(),
            process_ticks,
            client_ticks,
            machine_busy,
            machine_total,
        }
    }

    /// CPU use from `self` to `later`.
    pub fn until(&self, later: &Self) -> CpuUse {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let process = later.process_ticks.saturating_sub(self.process_ticks) as f64;
        let client = later.client_ticks.saturating_sub(self.client_ticks) as f64;
        let pct = |ticks: f64| {
            if wall > 0.0 {
                100.0 * ticks / TICKS_PER_SEC / wall
            } else {
                0.0
            }
        };
        let busy = later.machine_busy.saturating_sub(self.machine_busy) as f64;
        let total = later.machine_total.saturating_sub(self.machine_total) as f64;
        CpuUse {
            process_pct: pct(process),
            services_pct: pct((process - client).max(0.0)),
            // /proc/stat's total counts every CPU, so scale to "percent of one core".
            machine_pct: if total > 0.0 {
                100.0 * busy / total * cpus() as f64
            } else {
                0.0
            },
        }
    }
}

/// The open-files limit after trying to make room for `wanted` descriptors: the soft limit
/// is raised towards `wanted` (as far as the hard limit, or beyond it when privileged).
/// Returns the soft limit in force.
pub fn raise_open_files(wanted: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft >= wanted {
        return soft;
    }
    if hard < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return wanted;
    }
    let target = wanted.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        target
    } else {
        soft
    }
}
