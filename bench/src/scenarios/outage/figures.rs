//! The outage scenario's figures: throughput before (the reference), what reached the app while
//! it was down, the time from recovery to the first delivery and to full speed, and the wait
//! the breaker's probe schedule sets.
//!
//! Pure: answers and the run's timeline in, figures out.

use std::time::Duration;

use serde::Serialize;

use crate::answers::{self, Answer, Window};

/// Left out of the reference rate: the sidecar's first fetches and connections.
pub const WARM_UP: Duration = Duration::from_secs(1);
/// Full speed: this share of the throughput before the outage...
pub const FULL_SPEED_SHARE: f64 = 0.9;
/// ...over a span this long (spans start every [`STEP`]).
pub const SPAN: Duration = Duration::from_millis(500);
pub const STEP: Duration = Duration::from_millis(50);
/// The breaker's first wait before a probe (`outage/breaker.rs`: 1 s, doubling).
pub const FIRST_PROBE_WAIT: Duration = Duration::from_secs(1);

/// When things happened in one run, ns on [`crate::clock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The sidecar's first request.
    pub first_ns: u64,
    /// The app went down (503 for every request).
    pub down_ns: u64,
    /// It answered again.
    pub up_ns: u64,
    pub end_ns: u64,
}

/// The figures of one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// From [`WARM_UP`] after the first request until the app went down: the reference.
    pub before: Window,
    /// While it was down: its errors are the requests that reached it.
    pub during: Window,
    /// While it was down, after its first [`WARM_UP`]: with detection on, the probes.
    pub during_settled: Window,
    pub after: Window,
    /// Seconds from recovery to the first 2xx answer.
    pub first_delivery_secs: Option<f64>,
    /// Seconds from recovery until a span of [`SPAN`] ran at [`FULL_SPEED_SHARE`] of `before`,
    /// to that span's end; `None` when none did before the run ended.
    pub full_speed_secs: Option<f64>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

pub fn figures(answers: &[Answer], t: Timeline) -> Figures {
    let before = answers::window(answers, t.first_ns.saturating_add(ns(WARM_UP)), t.down_ns);
    let full_speed = answers::time_to_rate(
        answers,
        t.up_ns,
        t.end_ns,
        FULL_SPEED_SHARE * before.rate,
        ns(SPAN),
        ns(STEP),
    );
    Figures {
        before,
        during: answers::window(answers, t.down_ns, t.up_ns),
        during_settled: answers::window(
            answers,
            t.down_ns.saturating_add(ns(WARM_UP)),
            t.up_ns.max(t.down_ns.saturating_add(ns(WARM_UP))),
        ),
        after: answers::window(answers, t.up_ns, t.end_ns),
        first_delivery_secs: answers::first_ok_after(answers, t.up_ns).map(secs),
        full_speed_secs: full_speed.filter(|_| before.rate > 0.0).map(secs),
    }
}

/// How long after an outage of `outage` the breaker's next probe is due, if it opened when the
/// outage began: probes after 1 s, then waits doubling up to `max_probe_interval`.
pub fn next_probe_after(outage: Duration, max_probe_interval: Duration) -> Duration {
    let mut at = Duration::ZERO;
    let mut wait = FIRST_PROBE_WAIT.min(max_probe_interval);
    loop {
        at += wait;
        if at > outage {
            return at - outage;
        }
        wait = (wait * 2).min(max_probe_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ms: u64, status: u16) -> Answer {
        Answer {
            arrived_ns: ms * MS,
            done_ns: ms * MS,
            status,
        }
    }

    #[test]
    fn before_during_after_and_the_way_back_to_full_speed() {
        // 1 answer per ms from 0 to 3 s; down from 3 to 5 s (two 503 probes); from 5.8 s one
        // per 2 ms, from 6.5 s one per ms again; the run ends at 8 s.
        let mut a: Vec<Answer> = (0..3000).map(|t| at(t, 200)).collect();
        a.extend([at(3000, 503), at(4000, 503)]);
        a.extend((2900..3250).map(|t| at(2 * t, 200)));
        a.extend((6500..8000).map(|t| at(t, 200)));
        let f = figures(
            &a,
            Timeline {
                first_ns: 0,
                down_ns: 3000 * MS,
                up_ns: 5000 * MS,
                end_ns: 8000 * MS,
            },
        );
        assert_eq!(
            (f.before.ok, f.before.seconds),
            (2000, 2.0),
            "warm-up left out"
        );
        assert_eq!(f.before.rate, 1000.0);
        assert_eq!((f.during.ok, f.during.errors), (0, 2));
        assert_eq!(
            f.during_settled.errors, 1,
            "the probe at 4 s, not the 503 at 3 s"
        );
        assert_eq!(f.first_delivery_secs, Some(0.8));
        // 500/s is short of 900/s; the span 6.4–6.9 s holds 50 + 400 answers: 900/s.
        assert_eq!(f.full_speed_secs, Some(1.9));
        assert_eq!(f.after.ok, 350 + 1500);
    }

    #[test]
    fn no_full_speed_without_a_reference_or_a_way_back() {
        let t = Timeline {
            first_ns: 0,
            down_ns: 1500 * MS,
            up_ns: 2000 * MS,
            end_ns: 3000 * MS,
        };
        let f = figures(&[at(2100, 200)], t);
        assert_eq!(f.before.rate, 0.0);
        assert_eq!(f.full_speed_secs, None, "no reference");
        assert_eq!(f.first_delivery_secs, Some(0.1));
        let steady: Vec<Answer> = (0..1500).map(|t| at(t, 200)).collect();
        let f = figures(&steady, t);
        assert_eq!(f.full_speed_secs, None, "never delivered again");
        assert_eq!(f.first_delivery_secs, None);
    }

    #[test]
    fn the_probe_schedule_sets_the_earliest_way_back() {
        let s = Duration::from_secs;
        // Probes at 1, 3, 7, 15, 31 s after the breaker opened.
        assert_eq!(next_probe_after(s(30), s(30)), s(1));
        assert_eq!(next_probe_after(s(5), s(30)), s(2));
        assert_eq!(
            next_probe_after(s(15), s(30)),
            s(16),
            "a probe at 15 s finds it down"
        );
        // Capped at 4 s: 1, 3, 7, 11, 15, 19, ...
        assert_eq!(next_probe_after(s(16), s(4)), s(3));
    }
}
