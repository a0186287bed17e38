//! The results: a table for people, JSON for machines.

use crate::{
    load::{OpStats, PhaseResult},
    stack::StartupMemory,
    system,
};
use serde::Serialize;
use std::fmt::Write as _;

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub signing: String,
    pub database: String,
    pub concurrency: usize,
    pub channels: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub rounds: u32,
    pub machine: Machine,
    /// Process RSS while the services started (both run in this process).
    pub startup_memory: Option<StartupMemory>,
    pub phases: Vec<PhaseResult>,
    /// Figures derived from the phases (ratios, per-connection memory) and their targets.
    pub derived: Vec<Derived>,
    pub notes: Vec<String>,
}

/// Where it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    /// 1-minute load average when the run started (other work on the machine).
    pub load_average_at_start: f64,
}

impl Machine {
    /// This machine, now.
    pub fn now() -> Self {
        Self {
            cpu_model: system::cpu_model(),
            cpus: system::cpus(),
            load_average_at_start: system::load_average(),
        }
    }
}

/// A derived figure, with the target it is held against, if any.
#[derive(Debug, Clone, Serialize)]
pub struct Derived {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub target: Option<String>,
    pub met: Option<bool>,
}

impl Derived {
    /// A figure without a target.
    pub fn info(name: impl Into<String>, value: f64, unit: &str) -> Self {
        Self {
            name: name.into(),
            value,
            unit: unit.into(),
            target: None,
            met: None,
        }
    }

    /// A figure that must be at least `min`.
    pub fn at_least(name: impl Into<String>, value: f64, unit: &str, min: f64) -> Self {
        Self {
            target: Some(format!(">= {min}")),
            met: Some(value >= min),
            ..Self::info(name, value, unit)
        }
    }

    /// A figure that must be at most `max`.
    pub fn at_most(name: impl Into<String>, value: f64, unit: &str, max: f64) -> Self {
        Self {
            target: Some(format!("<= {max}")),
            met: Some(value <= max),
            ..Self::info(name, value, unit)
        }
    }
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== load-bench {} | signing {} | {} ==",
            self.scenario, self.signing, self.database
        );
        let _ = write!(
            out,
            "machine: {} x{} (load average {:.2} at start)",
            self.machine.cpu_model, self.machine.cpus, self.machine.load_average_at_start,
        );
        if !self.phases.is_empty() {
            let _ = write!(
                out,
                " | {} in flight over {} connection(s) | warm-up {:.1}s, measured {:.1}s per phase",
                self.concurrency, self.channels, self.warmup_s, self.duration_s,
            );
            if self.rounds > 1 {
                let _ = write!(out, " in {} alternating rounds", self.rounds);
            }
        }
        let _ = writeln!(out);
        if !self.phases.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<26} {:<14} {:>10} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>8}  errors",
                "phase",
                "operation",
                "ok/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "cpu %",
                "mach %",
                "peak MiB"
            );
        }
        for phase in &self.phases {
            let mut rows: Vec<(&str, &OpStats)> =
                phase.ops.iter().map(|(k, v)| (k.as_str(), v)).collect();
            if rows.len() > 1 {
                rows.push(("(all)", &phase.total));
            }
            for (i, (op, s)) in rows.iter().enumerate() {
                let errors = if s.errors.is_empty() {
                    "0".to_owned()
                } else {
                    s.errors
                        .iter()
                        .map(|(code, n)| format!("{code}={n}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let (cpu, machine, peak) = if i == 0 {
                    (
                        format!("{:.0}", phase.cpu.process_pct),
                        format!("{:.0}", phase.cpu.machine_pct),
                        format!("{:.1}", phase.peak_rss_mib),
                    )
                } else {
                    Default::default()
                };
                let name = if i == 0 { phase.name.as_str() } else { "" };
                let _ = writeln!(
                    out,
                    "{name:<26} {op:<14} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {cpu:>7} {machine:>7} {peak:>8}  {errors}",
                    s.rps, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms,
                );
            }
        }
        if let Some(m) = &self.startup_memory {
            let _ = writeln!(
                out,
                "\nprocess RSS (both services run in this one process): {:.1} MiB before the services, \
                 {:.1} MiB with the auth-service (+{:.1}), {:.1} MiB with both (+{:.1} for the task-service)",
                m.baseline_mib,
                m.with_auth_mib,
                m.auth_mib(),
                m.with_both_mib,
                m.task_mib()
            );
        }
        if !self.phases.is_empty() {
            let _ = writeln!(
                out,
                "cpu % = this process (services + load generator), mach % = whole machine, in % of one core \
                 ({} cores = {}%); peak MiB = process VmHWM during the window",
                self.machine.cpus,
                self.machine.cpus * 100
            );
        }
        if !self.derived.is_empty() {
            let _ = writeln!(out);
            for d in &self.derived {
                let verdict = match (d.met, &d.target) {
                    (Some(true), Some(t)) => format!("target {t}: MET"),
                    (Some(false), Some(t)) => format!("target {t}: MISSED"),
                    _ => String::new(),
                };
                let (name, value, unit) = (&d.name, format_value(d.value), &d.unit);
                let _ = writeln!(out, "{name:<58} {value:>12} {unit:<8} {verdict}");
            }
        }
        for phase in &self.phases {
            for (op, stats) in &phase.ops {
                for (code, message) in &stats.error_examples {
                    let _ = writeln!(
                        out,
                        "error example: {} / {op}: {code}: {message}",
                        phase.name
                    );
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

fn format_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
