//! The capacity scenario's judgement: per phase, the best and the worst fixed `maxInFlight` of
//! the sweep, the adaptive limit's throughput against the best, and whether errors stopped
//! after the capacity dropped.
//!
//! Pure: the runs' figures in, goals and verdicts out.

use std::time::Duration;

use serde::Serialize;

use crate::{
    answers::{self, Answer, Window},
    scenarios::Verdict,
    stats::Summary,
};

/// The goal: the adaptive limit's throughput at least this share of the best fixed setting's,
/// in each phase.
pub const TARGET_RATIO: f64 = 0.9;
/// After a drop, the limit has this long to adapt before errors count as a storm.
pub const SETTLE: Duration = Duration::from_secs(1);
/// A storm: errors above this share of the answers once [`SETTLE`] is over (steady shedding,
/// as a fixed setting above capacity does, not the burst that teaches the limit the drop).
pub const STORM_SHARE: f64 = 0.01;

/// One phase of the app model: its workers and how long it lasts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub capacity: u32,
    pub seconds: f64,
}

/// How the sidecar chose its requests in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Setting {
    /// `concurrency: fixed` at this `maxInFlight`.
    Fixed(u32),
    /// `concurrency: adaptive` with this `maxInFlight` as the ceiling.
    Adaptive(u32),
}

impl Setting {
    pub fn label(self) -> String {
        match self {
            Self::Fixed(n) => format!("fixed {n}"),
            Self::Adaptive(n) => format!("adaptive (≤ {n})"),
        }
    }
}

/// One sidecar run through every phase.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub setting: Setting,
    /// What the app answered in each phase.
    pub phases: Vec<Window>,
    /// In a phase the capacity dropped into: its answers after [`SETTLE`].
    pub settled: Vec<Option<Window>>,
    /// The sidecar's limit (`concurrencyLimit` of its stats, every 250 ms) in each phase.
    pub limit: Vec<Option<Summary>>,
    /// The sidecar's counters at the end of the run.
    pub retried: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub endpoint_outages: u64,
}

/// The goals of one phase.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseGoal {
    pub capacity: u32,
    /// `maxInFlight` of the best and the worst fixed run in this phase.
    pub best_fixed: Option<u32>,
    pub worst_fixed: Option<u32>,
    /// Adaptive throughput ÷ the best fixed one.
    pub ratio_to_best: Option<f64>,
    pub verdict_throughput: Verdict,
    /// Whether errors stopped after the drop; only in a phase the capacity dropped into.
    pub verdict_storm: Option<Verdict>,
}

/// Whether the capacity dropped into each phase.
pub fn drops(phases: &[Phase]) -> Vec<bool> {
    phases
        .iter()
        .enumerate()
        .map(|(i, p)| i > 0 && p.capacity < phases[i - 1].capacity)
        .collect()
}

/// In each phase the capacity dropped into, the answers after [`SETTLE`]; `bounds` are the
/// phases' starts and the end of the last (ns on [`crate::clock`]).
pub fn settled(answers: &[Answer], bounds: &[u64], phases: &[Phase]) -> Vec<Option<Window>> {
    let settle = u64::try_from(SETTLE.as_nanos()).unwrap_or(u64::MAX);
    drops(phases)
        .into_iter()
        .zip(bounds.windows(2))
        .map(|(dropped, b)| {
            let from = b[0].saturating_add(settle);
            (dropped && from < b[1]).then(|| answers::window(answers, from, b[1]))
        })
        .collect()
}

/// Records one run takes at most: every phase at its capacity, with room to spare.
pub fn records_needed(phases: &[Phase], service: Duration) -> u64 {
    let at_capacity: f64 = phases
        .iter()
        .map(|p| f64::from(p.capacity) / service.as_secs_f64().max(1e-6) * p.seconds)
        .sum();
    (at_capacity * 1.5).round() as u64 + 1_000
}

/// Better first: higher throughput, then fewer errors, then lower p99.
fn rank(a: &Window, b: &Window) -> std::cmp::Ordering {
    let p99 = |w: &Window| w.p99_ms.unwrap_or(f64::INFINITY);
    a.rate
        .total_cmp(&b.rate)
        .then(b.errors.cmp(&a.errors))
        .then(p99(b).total_cmp(&p99(a)))
}

/// `maxInFlight` of the best and of the worst of `fixed` (`maxInFlight`, that phase's figures).
pub fn best_and_worst(fixed: &[(u32, Window)]) -> Option<(u32, u32)> {
    let best = fixed.iter().max_by(|a, b| rank(&a.1, &b.1))?;
    let worst = fixed.iter().min_by(|a, b| rank(&a.1, &b.1))?;
    Some((best.0, worst.0))
}

/// No storm: at most [`STORM_SHARE`] of the answers after [`SETTLE`] are errors.
pub fn storm_verdict(settled: Option<&Window>) -> Verdict {
    match settled {
        Some(w) if w.ok + w.errors > 0 => Verdict::at_most(Some(w.error_share()), STORM_SHARE),
        _ => Verdict::NotMeasured,
    }
}

/// Each phase's goals, from every run of the sweep and the adaptive run.
pub fn goals(phases: &[Phase], runs: &[Run]) -> Vec<PhaseGoal> {
    let adaptive = runs
        .iter()
        .find(|r| matches!(r.setting, Setting::Adaptive(_)));
    let drops = drops(phases);
    phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let fixed: Vec<(u32, Window)> = runs
                .iter()
                .filter_map(|r| match r.setting {
                    Setting::Fixed(n) => r.phases.get(i).map(|w| (n, *w)),
                    Setting::Adaptive(_) => None,
                })
                .collect();
            let bw = best_and_worst(&fixed);
            let best_rate = bw
                .and_then(|(b, _)| fixed.iter().find(|f| f.0 == b))
                .map(|f| f.1.rate);
            let adaptive_phase = adaptive.and_then(|a| a.phases.get(i));
            let ratio = match (adaptive_phase, best_rate) {
                (Some(a), Some(b)) if b > 0.0 => Some(a.rate / b),
                _ => None,
            };
            PhaseGoal {
                capacity: phase.capacity,
                best_fixed: bw.map(|b| b.0),
                worst_fixed: bw.map(|b| b.1),
                ratio_to_best: ratio,
                verdict_throughput: Verdict::at_least(ratio, TARGET_RATIO),
                verdict_storm: drops[i].then(|| {
                    storm_verdict(
                        adaptive
                            .and_then(|a| a.settled.get(i))
                            .and_then(Option::as_ref),
                    )
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases(p: &[(u32, f64)]) -> Vec<Phase> {
        p.iter()
            .map(|&(capacity, seconds)| Phase { capacity, seconds })
            .collect()
    }

    fn w(rate: f64, errors: u64, p99: f64) -> Window {
        Window {
            seconds: 1.0,
            ok: rate as u64,
            errors,
            rate,
            p50_ms: Some(p99 / 2.0),
            p99_ms: Some(p99),
        }
    }

    fn run(setting: Setting, phases: Vec<Window>, settled: Vec<Option<Window>>) -> Run {
        Run {
            setting,
            limit: vec![None; phases.len()],
            phases,
            settled,
            retried: 0,
            dead_lettered: 0,
            skipped: 0,
            endpoint_outages: 0,
        }
    }

    #[test]
    fn only_a_lower_capacity_is_a_drop() {
        let p = phases(&[(8, 1.0), (32, 1.0), (4, 1.0), (4, 1.0)]);
        assert_eq!(drops(&p), [false, false, true, false]);
        assert!(drops(&[]).is_empty());
    }

    #[test]
    fn best_is_the_fastest_and_worst_the_slowest_ties_by_errors_then_latency() {
        let fixed = [
            (1, w(200.0, 0, 5.0)),
            (8, w(1600.0, 0, 5.1)),
            (16, w(1600.0, 0, 10.0)),
            (64, w(1600.0, 900, 10.0)),
        ];
        assert_eq!(best_and_worst(&fixed), Some((8, 1)));
        let tied_slowest = [(4, w(100.0, 0, 5.0)), (64, w(100.0, 50, 5.0))];
        assert_eq!(best_and_worst(&tied_slowest), Some((4, 64)));
        assert_eq!(best_and_worst(&[]), None);
    }

    #[test]
    fn a_storm_is_steady_errors_after_the_limit_had_time_to_adapt() {
        assert_eq!(storm_verdict(Some(&w(1000.0, 10, 5.0))), Verdict::Met);
        assert_eq!(storm_verdict(Some(&w(1000.0, 11, 5.0))), Verdict::Missed);
        assert_eq!(storm_verdict(Some(&w(0.0, 0, 5.0))), Verdict::NotMeasured);
        assert_eq!(storm_verdict(None), Verdict::NotMeasured);
    }

    #[test]
    fn goals_compare_adaptive_with_the_best_fixed_run_of_each_phase() {
        let phases = phases(&[(8, 4.0), (4, 4.0)]);
        let runs = [
            run(
                Setting::Fixed(8),
                vec![w(1600.0, 0, 5.0), w(800.0, 0, 10.0)],
                vec![None, Some(w(800.0, 0, 10.0))],
            ),
            run(
                Setting::Fixed(4),
                vec![w(800.0, 0, 5.0), w(790.0, 0, 5.0)],
                vec![None, Some(w(790.0, 0, 5.0))],
            ),
            run(
                Setting::Adaptive(64),
                vec![w(1500.0, 3, 6.0), w(700.0, 40, 7.0)],
                vec![None, Some(w(700.0, 20, 7.0))],
            ),
        ];
        let g = goals(&phases, &runs);
        assert_eq!((g[0].best_fixed, g[0].worst_fixed), (Some(8), Some(4)));
        assert_eq!(g[0].ratio_to_best, Some(1500.0 / 1600.0));
        assert_eq!(g[0].verdict_throughput, Verdict::Met);
        assert_eq!(g[0].verdict_storm, None, "not a drop");
        assert_eq!(g[1].best_fixed, Some(8));
        assert_eq!(g[1].ratio_to_best, Some(700.0 / 800.0));
        assert_eq!(g[1].verdict_throughput, Verdict::Missed);
        assert_eq!(
            g[1].verdict_storm,
            Some(Verdict::Missed),
            "20 of 720 after settling"
        );
    }

    #[test]
    fn without_an_adaptive_run_nothing_is_judged() {
        let phases = phases(&[(8, 1.0)]);
        let g = goals(
            &phases,
            &[run(Setting::Fixed(8), vec![w(1.0, 0, 1.0)], vec![None])],
        );
        assert_eq!(g[0].verdict_throughput, Verdict::NotMeasured);
        assert_eq!(g[0].best_fixed, Some(8));
    }

    #[test]
    fn settling_leaves_out_the_first_second_after_a_drop() {
        const S: u64 = 1_000_000_000;
        let phases = phases(&[(8, 2.0), (4, 3.0), (2, 0.5)]);
        let answer = |at: u64, status| Answer {
            arrived_ns: at,
            done_ns: at,
            status,
        };
        // Errors at the drop (2.0–2.9 s) and one later; one in the first phase.
        let a = [
            answer(S / 2, 503),
            answer(2 * S, 503),
            answer(2 * S + S / 2, 503),
            answer(3 * S + 1, 200),
            answer(4 * S, 503),
        ];
        let s = settled(&a, &[0, 2 * S, 5 * S, 5 * S + S / 2], &phases);
        assert_eq!(s.len(), 3);
        assert!(s[0].is_none(), "not a drop");
        let after = s[1].expect("a drop longer than the settling time");
        assert_eq!((after.ok, after.errors), (1, 1));
        assert_eq!(after.seconds, 2.0);
        assert!(s[2].is_none(), "a drop shorter than the settling time");
    }

    #[test]
    fn records_cover_every_phase_at_capacity_with_room() {
        let phases = phases(&[(8, 2.0), (4, 1.0)]);
        // 8 / 5 ms × 2 s + 4 / 5 ms × 1 s = 3,200 + 800; × 1.5 + 1,000.
        assert_eq!(records_needed(&phases, Duration::from_millis(5)), 7_000);
    }
}
