//! What every scenario uses: progress lines, what it hands back, and its phases run in
//! alternating rounds.

use crate::{
    cli::Args,
    load::{Phase, PhaseResult, RawPhase},
    report::Derived,
};

/// What a scenario hands back: its phases, derived figures and notes.
#[derive(Default)]
pub struct Outcome {
    pub phases: Vec<PhaseResult>,
    pub derived: Vec<Derived>,
    pub notes: Vec<String>,
}

/// A line on stderr about what is happening.
pub fn progress(message: &str) {
    eprintln!("load-bench: {message}");
}

/// Runs the phases `names` (each `args.duration` in total), in `args.rounds` rounds of
/// alternating order; `spawn(i, phase)` adds phase `i`'s workers.
pub async fn phases(
    args: &Args,
    names: &[&str],
    mut spawn: impl FnMut(usize, &mut Phase),
) -> Vec<PhaseResult> {
    let rounds = args.rounds.max(1);
    let per_round = args.duration / rounds;
    let mut raw: Vec<RawPhase> = names.iter().map(|_| RawPhase::default()).collect();
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..names.len()).collect()
        } else {
            (0..names.len()).rev().collect()
        };
        for i in order {
            progress(&format!(
                "phase {:?} (round {}/{rounds}): {:.1}s warm-up + {:.1}s",
                names[i],
                round + 1,
                args.warmup.as_secs_f64(),
                per_round.as_secs_f64()
            ));
            let mut phase = Phase::start(args.warmup, per_round);
            spawn(i, &mut phase);
            raw[i].merge(phase.finish().await);
        }
    }
    names
        .iter()
        .zip(raw)
        .map(|(name, raw)| raw.summarise(name))
        .collect()
}
