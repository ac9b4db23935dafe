//! What the sink's app model answered, and the figures over a stretch of time: throughput,
//! latency at the app, errors, and how soon after a moment the answers reach a rate.
//!
//! Pure. [`Answer`]s come from [`crate::sink::app`], times in ns on [`crate::clock`]. An answer
//! belongs to the stretch in which it was given (`done_ns`), as the app's own metrics would
//! count it.

use serde::Serialize;

use crate::stats::percentile;

/// One request the app model answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// When the request arrived (its body read).
    pub arrived_ns: u64,
    /// When it was answered.
    pub done_ns: u64,
    pub status: u16,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Latency at the app: waiting for a worker plus being served.
    pub fn latency_ns(&self) -> u64 {
        self.done_ns.saturating_sub(self.arrived_ns)
    }
}

/// Figures of the answers given within a stretch of time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub seconds: f64,
    /// 2xx answers.
    pub ok: u64,
    /// Other answers (503: shed, or the app is down).
    pub errors: u64,
    /// 2xx answers per second: records delivered per second.
    pub rate: f64,
    /// Latency at the app of the 2xx answers, milliseconds (none without a 2xx answer).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Window {
    /// Errors as a share of all answers (0 without answers).
    pub fn error_share(&self) -> f64 {
        let all = self.ok + self.errors;
        if all == 0 {
            0.0
        } else {
            self.errors as f64 / all as f64
        }
    }
}

/// The figures of the answers given in `[from_ns, to_ns)`.
pub fn window(answers: &[Answer], from_ns: u64, to_ns: u64) -> Window {
    let inside = answers
        .iter()
        .filter(|a| a.done_ns >= from_ns && a.done_ns < to_ns);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for a in inside {
        if a.ok() {
            latencies.push(a.latency_ns());
        } else {
            errors += 1;
        }
    }
    latencies.sort_unstable();
    let seconds = to_ns.saturating_sub(from_ns) as f64 / 1e9;
    let ok = latencies.len() as u64;
    let ms = |p| percentile(&latencies, p).map(|ns| ns as f64 / 1e6);
    Window {
        seconds,
        ok,
        errors,
        rate: if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        },
        p50_ms: ms(50.0),
        p99_ms: ms(99.0),
    }
}

/// One window between each two consecutive `bounds` (n + 1 bounds give n windows).
pub fn split(answers: &[Answer], bounds: &[u64]) -> Vec<Window> {
    bounds
        .windows(2)
        .map(|b| window(answers, b[0], b[1]))
        .collect()
}

/// Nanoseconds from `from_ns` to the first 2xx answer given then or later.
pub fn first_ok_after(answers: &[Answer], from_ns: u64) -> Option<u64> {
    answers
        .iter()
        .filter(|a| a.ok() && a.done_ns >= from_ns)
        .map(|a| a.done_ns - from_ns)
        .min()
}

/// How long after `from_ns` the 2xx answers first reach `rate` per second over a span of
/// `span_ns` (spans start every `step_ns`), counted to the end of that span; `None` when no
/// span that ends by `to_ns` reaches it.
pub fn time_to_rate(
    answers: &[Answer],
    from_ns: u64,
    to_ns: u64,
    rate: f64,
    span_ns: u64,
    step_ns: u64,
) -> Option<u64> {
    let step_ns = step_ns.max(1);
    let per_span = (span_ns / step_ns).max(1) as usize;
    let buckets = (to_ns.saturating_sub(from_ns) / step_ns) as usize;
    let mut counts = vec![0u64; buckets];
    for a in answers.iter().filter(|a| a.ok() && a.done_ns >= from_ns) {
        if let Some(c) = counts.get_mut(((a.done_ns - from_ns) / step_ns) as usize) {
            *c += 1;
        }
    }
    let needed = rate * (per_span as u64 * step_ns) as f64 / 1e9;
    (0..buckets.checked_sub(per_span)? + 1)
        .find(|&i| counts[i..i + per_span].iter().sum::<u64>() as f64 >= needed)
        .map(|i| (i + per_span) as u64 * step_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ok(arrived_ms: u64, done_ms: u64) -> Answer {
        Answer {
            arrived_ns: arrived_ms * MS,
            done_ns: done_ms * MS,
            status: 200,
        }
    }

    fn shed(at_ms: u64) -> Answer {
        Answer {
            arrived_ns: at_ms * MS,
            done_ns: at_ms * MS,
            status: 503,
        }
    }

    #[test]
    fn a_window_counts_what_was_answered_in_it() {
        // 100 answers in the first second with latencies 1..=100 ms, one 503, and answers
        // outside the window on both sides.
        let mut a: Vec<Answer> = (1..=100)
            .map(|l| ok(1000 + 5 * l - l, 1000 + 5 * l))
            .collect();
        a.push(shed(1500));
        a.push(ok(900, 999));
        a.push(ok(1900, 2000));
        let w = window(&a, 1000 * MS, 2000 * MS);
        assert_eq!((w.ok, w.errors), (100, 1));
        assert_eq!(w.seconds, 1.0);
        assert_eq!(w.rate, 100.0);
        assert_eq!(w.p50_ms, Some(50.0));
        assert_eq!(w.p99_ms, Some(99.0), "the 503 is not in the latency");
        assert!((w.error_share() - 1.0 / 101.0).abs() < 1e-12);
    }

    #[test]
    fn an_empty_window_has_no_latency() {
        let w = window(&[shed(5)], 0, 10 * MS);
        assert_eq!((w.ok, w.errors, w.p99_ms), (0, 1, None));
        assert_eq!(w.error_share(), 1.0);
        assert_eq!(window(&[], 0, 0).rate, 0.0);
    }

    #[test]
    fn phases_split_at_their_bounds() {
        let a = [ok(0, 5), ok(5, 10), ok(10, 19), shed(20), ok(25, 30)];
        let w = split(&a, &[0, 10 * MS, 20 * MS, 40 * MS]);
        let counts: Vec<(u64, u64)> = w.iter().map(|w| (w.ok, w.errors)).collect();
        assert_eq!(
            counts,
            [(1, 0), (2, 0), (1, 1)],
            "an answer at a bound opens the next"
        );
        assert_eq!(split(&a, &[0]).len(), 0);
    }

    #[test]
    fn the_first_success_after_a_moment() {
        let a = [ok(0, 5), shed(12), ok(10, 30), ok(11, 20)];
        assert_eq!(first_ok_after(&a, 10 * MS), Some(10 * MS));
        assert_eq!(first_ok_after(&a, 31 * MS), None);
    }

    #[test]
    fn time_to_rate_ends_at_the_first_span_that_reaches_it() {
        // From 0: nothing for 300 ms, then 1 answer per 10 ms (100/s), then 1 per ms.
        let mut a: Vec<Answer> = (30..60).map(|i| ok(i * 10, i * 10)).collect();
        a.extend((600..1000).map(|t| ok(t, t)));
        let t = |rate| time_to_rate(&a, 0, 1000 * MS, rate, 100 * MS, 10 * MS);
        assert_eq!(
            t(100.0),
            Some(400 * MS),
            "the span 300–400 ms holds 10 answers"
        );
        assert_eq!(t(1000.0), Some(700 * MS), "the span 600–700 ms holds 100");
        assert_eq!(t(1001.0), None);
        assert_eq!(
            time_to_rate(&a, 0, 50 * MS, 1.0, 100 * MS, 10 * MS),
            None,
            "no whole span fits"
        );
    }

    #[test]
    fn time_to_rate_ignores_errors_and_what_came_before() {
        let mut a: Vec<Answer> = (0..100).map(shed).collect();
        a.extend((0..100).map(|t| ok(t, t)));
        assert_eq!(
            time_to_rate(&a, 100 * MS, 300 * MS, 1.0, 100 * MS, 10 * MS),
            None
        );
    }
}
