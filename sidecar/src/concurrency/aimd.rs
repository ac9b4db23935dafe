//! The adaptive concurrency limit: additive increase, multiplicative decrease, driven by
//! response times and back-pressure answers.
//!
//! Pure: the caller says when requests start and end (with their round-trip time and whether
//! the answer asked to slow down) and passes the clock in; this decides the limit.
//!
//! References: Vector's adaptive request concurrency (per measurement period, decrease by a
//! ratio on back-pressure or when the period's mean round-trip time leaves the band its past
//! mean and deviation allow, else increase by one if the limit was reached), TCP's RTT
//! estimator (RFC 6298: smoothed RTT and mean deviation), Netflix concurrency-limits (a
//! long-term baseline that follows a slower app when there is nothing left to shed).
//!
//! - A **period** lasts at least one smoothed round trip (at least [`MIN_PERIOD_MS`]) and ends
//!   at the first answer after that. At its end:
//!   - **decrease** (`limit × 0.9`, rounded down, at least 1 less, never below 1) when an answer
//!     asked to slow down (429, 503, a timeout) or the period's mean round trip exceeds
//!     `srtt + 2.5 × rttvar + 1 ms`;
//!   - else **increase** by 1 (up to the ceiling, `maxInFlight`) when requests in flight
//!     reached the limit during the period: a limit never reached says nothing about more.
//! - The baseline (`srtt`, `rttvar`) learns from periods that were not congested, so rising
//!   latency does not raise the bar; at the floor it learns from every period (the app got
//!   slower and nothing is left to shed: the new latency becomes the baseline).
//! - After the app pushed back (429, 503, a timeout) at a limit, growth stops one below it for
//!   [`HOLD_PERIODS`] periods: an app that sheds load past its capacity (a queue in front of a
//!   worker pool) answers in its usual time right up to it, so latency alone would walk the
//!   limit back into the shedding every few periods.

/// Shortest measurement period: below a millisecond, scheduling noise is the signal.
pub const MIN_PERIOD_MS: f64 = 5.0;
/// Multiplicative decrease.
const DECREASE: f64 = 0.9;
/// How many mean deviations above the smoothed round trip a period may be.
const DEVIATIONS: f64 = 2.5;
/// Absolute slack above the band, so sub-millisecond jitter is not congestion.
const SLACK_MS: f64 = 1.0;
/// Periods without growing back to a limit the app pushed back at.
pub const HOLD_PERIODS: u32 = 50;
/// RFC 6298 gains.
const ALPHA: f64 = 0.125;
const BETA: f64 = 0.25;

/// What an answer says about the endpoint's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Answered in its own time (whatever the status).
    Normal,
    /// Asked to slow down: 429, 503, or no answer within `requestTimeout`.
    Backpressure,
}

/// How a period ended, for the log and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Increased(u32),
    Decreased(u32),
}

#[derive(Clone, Debug, Default)]
struct Period {
    /// When it began: the end of the previous one (the first begins with its first request).
    start_ms: Option<f64>,
    sum_ms: f64,
    count: u32,
    saturated: bool,
    backpressure: bool,
}

/// The limit and what it learnt.
#[derive(Clone, Debug)]
pub struct Aimd {
    max: u32,
    limit: u32,
    srtt: Option<f64>,
    rttvar: f64,
    period: Period,
    /// The limit the app last pushed back at, and the periods left before growing to it again.
    hold: Option<(u32, u32)>,
}

impl Aimd {
    /// A limit between 1 and `max`, starting at a quarter of it (at least 1).
    pub fn new(max: u32) -> Self {
        let max = max.max(1);
        Self {
            max,
            limit: (max / 4).max(1),
            srtt: None,
            rttvar: 0.0,
            period: Period::default(),
            hold: None,
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The smoothed round trip learnt so far, in milliseconds.
    pub fn baseline_ms(&self) -> Option<f64> {
        self.srtt
    }

    /// A request started; `in_flight` counts it.
    pub fn started(&mut self, in_flight: u32) {
        if in_flight >= self.limit {
            self.period.saturated = true;
        }
    }

    /// A request ended at `now_ms` after `rtt_ms`. Returns the change if it ended a period.
    pub fn finished(&mut self, now_ms: f64, rtt_ms: f64, signal: Signal) -> Option<Change> {
        let p = &mut self.period;
        let start = *p.start_ms.get_or_insert(now_ms - rtt_ms.max(0.0));
        p.sum_ms += rtt_ms.max(0.0);
        p.count += 1;
        p.backpressure |= signal == Signal::Backpressure;
        let length = self.srtt.unwrap_or(0.0).max(MIN_PERIOD_MS);
        // Back-pressure ends the period at once: waiting a round trip would keep overloading.
        if now_ms - start < length && !p.backpressure {
            return None;
        }
        let period = std::mem::take(&mut self.period);
        self.period.start_ms = Some(now_ms);
        Some(self.decide(&period))
    }

    fn decide(&mut self, p: &Period) -> Change {
        let mean = p.sum_ms / f64::from(p.count.max(1));
        let slow = self
            .srtt
            .is_some_and(|srtt| mean > srtt + DEVIATIONS * self.rttvar + SLACK_MS);
        let congested = p.backpressure || slow;
        if !congested || self.limit == 1 {
            self.learn(mean);
        }
        if p.backpressure {
            self.hold = Some((self.limit, HOLD_PERIODS));
        }
        if congested {
            let lower = (f64::from(self.limit) * DECREASE).floor() as u32;
            self.limit = lower.min(self.limit.saturating_sub(1)).max(1);
            Change::Decreased(self.limit)
        } else {
            let ceiling = match &mut self.hold {
                Some((at, left)) if *left > 0 => {
                    *left -= 1;
                    at.saturating_sub(1).max(1)
                }
                _ => self.max,
            };
            if p.saturated && self.limit < ceiling {
                self.limit += 1;
            }
            Change::Increased(self.limit)
        }
    }

    fn learn(&mut self, rtt: f64) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2.0;
            }
            Some(srtt) => {
                self.rttvar = (1.0 - BETA) * self.rttvar + BETA * (srtt - rtt).abs();
                self.srtt = Some((1.0 - ALPHA) * srtt + ALPHA * rtt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `periods` periods of `limit` requests at once, each taking `rtt` ms, ending with
    /// `signal`; returns the limit after.
    fn drive(a: &mut Aimd, clock: &mut f64, periods: u32, rtt: f64, signal: Signal) -> u32 {
        for _ in 0..periods {
            let n = a.limit();
            for i in 1..=n {
                a.started(i);
            }
            *clock += rtt.max(MIN_PERIOD_MS);
            for _ in 0..n {
                a.finished(*clock, rtt, signal);
            }
        }
        a.limit()
    }

    #[test]
    fn grows_by_one_per_period_while_latency_stays_at_its_baseline() {
        let mut a = Aimd::new(64);
        let mut clock = 0.0;
        assert_eq!(a.limit(), 16);
        drive(&mut a, &mut clock, 10, 5.0, Signal::Normal);
        assert_eq!(a.limit(), 26);
        drive(&mut a, &mut clock, 100, 5.0, Signal::Normal);
        assert_eq!(a.limit(), 64, "never above maxInFlight");
    }

    #[test]
    fn a_limit_never_reached_does_not_grow() {
        let mut a = Aimd::new(64);
        let mut clock = 0.0;
        for _ in 0..20 {
            a.started(2);
            clock += 10.0;
            a.finished(clock, 5.0, Signal::Normal);
        }
        assert_eq!(a.limit(), 16);
    }

    #[test]
    fn rising_latency_shrinks_it_and_the_baseline_does_not_follow_up() {
        let mut a = Aimd::new(64);
        let mut clock = 0.0;
        drive(&mut a, &mut clock, 30, 5.0, Signal::Normal);
        let before = a.limit();
        let baseline = a.baseline_ms().expect("learnt");
        // The app slows down past capacity: from the first period that sees it, every period
        // is slower than the band allows, and each takes 10 % off.
        let after = drive(&mut a, &mut clock, 4, 20.0, Signal::Normal);
        assert!(after < before, "{before} -> {after}");
        assert!(
            after <= (f64::from(before) * 0.9f64.powi(3)).ceil() as u32,
            "{before} -> {after}"
        );
        // Only the period that mixed old and new answers taught it something.
        let now = a.baseline_ms().expect("learnt");
        assert!(
            now < baseline + 1.0,
            "{baseline} -> {now}: congested periods teach nothing"
        );
    }

    #[test]
    fn back_pressure_ends_the_period_at_once_and_shrinks() {
        let mut a = Aimd::new(32);
        a.started(8);
        assert_eq!(
            a.finished(1.0, 1.0, Signal::Backpressure),
            Some(Change::Decreased(7))
        );
        let mut clock = 10.0;
        assert_eq!(
            drive(&mut a, &mut clock, 50, 3.0, Signal::Backpressure),
            1,
            "floor"
        );
    }

    #[test]
    fn it_does_not_grow_back_at_once_to_where_the_app_pushed_back() {
        let mut a = Aimd::new(64);
        let mut clock = 0.0;
        drive(&mut a, &mut clock, 10, 5.0, Signal::Normal);
        assert_eq!(a.limit(), 26);
        // A 503 at 26: down to 23, then up to 25 at most for HOLD_PERIODS periods.
        a.started(26);
        clock += 5.0;
        a.finished(clock, 5.0, Signal::Backpressure);
        assert_eq!(a.limit(), 23);
        drive(&mut a, &mut clock, HOLD_PERIODS - 1, 5.0, Signal::Normal);
        assert_eq!(
            a.limit(),
            25,
            "held one below the limit that was pushed back at"
        );
        drive(&mut a, &mut clock, 5, 5.0, Signal::Normal);
        assert!(a.limit() > 26, "then it probes again: {}", a.limit());
    }

    #[test]
    fn at_the_floor_a_slower_app_becomes_the_new_baseline() {
        let mut a = Aimd::new(8);
        let mut clock = 0.0;
        drive(&mut a, &mut clock, 10, 5.0, Signal::Normal);
        assert_eq!(a.limit(), 8);
        let mut lowest = a.limit();
        for _ in 0..100 {
            lowest = lowest.min(drive(&mut a, &mut clock, 1, 200.0, Signal::Normal));
        }
        assert_eq!(lowest, 1, "it shed everything it could");
        // Having learnt 200 ms at the floor, it grew again at that latency.
        assert_eq!(a.limit(), 8);
        assert!(a.baseline_ms().expect("learnt") > 150.0);
    }

    #[test]
    fn a_ceiling_of_one_stays_one() {
        let mut a = Aimd::new(1);
        let mut clock = 0.0;
        assert_eq!(drive(&mut a, &mut clock, 10, 5.0, Signal::Normal), 1);
        assert_eq!(drive(&mut a, &mut clock, 10, 5.0, Signal::Backpressure), 1);
    }
}
