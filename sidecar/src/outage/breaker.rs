//! Is it the records, or the endpoint? The outage detector and circuit breaker.
//!
//! Pure: failures and successes come in with the clock; out come the state and, for a failed
//! record, a verdict. `deliver` is the shell: it reports every attempt, asks before it counts a
//! failed attempt or gives a record up (`onExhausted`), and waits while the breaker is open;
//! the poll loop stops taking records while it is open (the gate, `gate.rs`).
//!
//! When an app is down behind a Service, an Ingress or a mesh, or misconfigured, it answers
//! every record the same way: 502/503/504, 404, 401/403, a redirect, or not at all. Counting
//! those against each record would burn their retries and dead-letter the whole stream at full
//! speed (the "DLQ flood"). The rule:
//!
//! - **Closed** (normal). A failure of an outage class ([`Class`]) is remembered for `window`.
//!   When `records` distinct records (default 5) failed with the same class within the window
//!   and no attempt succeeded since the first of them, the endpoint is out: **Open**.
//! - **Open**: no request is sent, attempts are not counted, nothing is dead-lettered. After a
//!   wait (1 s, doubling up to `max_probe_interval`) one request goes as a probe: **Probing**.
//! - **Probing**: the probe's answer decides. A success, or an answer that is not an outage
//!   class (a 422 is the app working and judging a record), closes it; another outage answer
//!   opens it again with a longer wait.
//!
//! A failed record is only given up (dead-lettered, skipped) once the endpoint is known to work:
//! an attempt of another record succeeded after its failure ([`Verdict::RecordsFault`]). While
//! that is not known it waits ([`Verdict::Wait`]), up to `window`, after which the record is
//! judged on its own. A single bad record among good ones is therefore given up at the next
//! success, at once in practice; a record alone in flight (one partition in `partition`
//! order, `maxInFlight` 1) waits up to `window` first.

use std::collections::{HashSet, VecDeque};

/// Failures that say more about the endpoint than about the record (the commit metadata's
/// class, so the operator reads the same names).
pub use kcp_crds::progress::OutageClass as Class;

/// The thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Distinct records failing the same way within `window_ms` that make an outage.
    pub records: usize,
    pub window_ms: u64,
    /// Longest wait between probes.
    pub max_probe_interval_ms: u64,
}

/// First wait before a probe; doubles per failed probe up to `max_probe_interval_ms`.
pub const FIRST_PROBE_MS: u64 = 1_000;

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open {
        class: Class,
        since_ms: u64,
        probe_at_ms: u64,
        interval_ms: u64,
    },
    Probing {
        class: Class,
        since_ms: u64,
        interval_ms: u64,
        /// When the probe went: a probe that never reports (stopped, or its answer said nothing
        /// of the endpoint) gives way to another after [`Breaker::probe_expiry_ms`].
        probe_ms: u64,
    },
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::Probing { .. } => "probing",
        }
    }
}

/// What to do with a record whose attempt failed with an outage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The endpoint is out: do not count the attempt; wait for the breaker.
    Outage,
    /// The endpoint works (another record succeeded since): the failure is the record's.
    RecordsFault,
    /// Not known yet: wait a little and ask again.
    Wait,
}

/// What an attempt may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Go, as the one probe.
    Probe,
    /// Wait until then (or until the state changes).
    WaitUntil(u64),
}

/// A record, for counting distinct ones.
pub type RecordId = (String, i32, i64);

#[derive(Debug)]
pub struct Breaker {
    settings: Settings,
    state: State,
    failures: VecDeque<(u64, Class, RecordId)>,
    last_success_ms: Option<u64>,
}

/// A transition, for the log line and the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

impl Breaker {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            state: State::Closed,
            failures: VecDeque::new(),
            last_success_ms: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether records may be taken from Kafka (the poll loop pauses while not).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// May an attempt go now?
    pub fn admit(&mut self, now_ms: u64) -> Admit {
        match self.state {
            State::Closed => Admit::Go,
            State::Open {
                class,
                since_ms,
                probe_at_ms,
                interval_ms,
            } if now_ms >= probe_at_ms => {
                self.state = State::Probing {
                    class,
                    since_ms,
                    interval_ms,
                    probe_ms: now_ms,
                };
                Admit::Probe
            }
            State::Open { probe_at_ms, .. } => Admit::WaitUntil(probe_at_ms),
            // One probe at a time; the others wait for its answer, or for it to expire.
            State::Probing {
                class,
                since_ms,
                interval_ms,
                probe_ms,
            } => {
                let expires = probe_ms + self.probe_expiry_ms();
                if now_ms >= expires {
                    self.state = State::Probing {
                        class,
                        since_ms,
                        interval_ms,
                        probe_ms: now_ms,
                    };
                    Admit::Probe
                } else {
                    Admit::WaitUntil(expires.min(now_ms + interval_ms))
                }
            }
        }
    }

    /// How long a probe may go without an answer about the endpoint before another may go.
    pub fn probe_expiry_ms(&self) -> u64 {
        self.settings.max_probe_interval_ms.max(FIRST_PROBE_MS)
    }

    /// The probe's attempt ended without saying anything of the endpoint (the app refused the
    /// connection: the gate's business; a record that could not be decoded): probe again after
    /// the same wait.
    pub fn inconclusive(&mut self, now_ms: u64) {
        if let State::Probing {
            class,
            since_ms,
            interval_ms,
            ..
        } = self.state
        {
            self.state = State::Open {
                class,
                since_ms,
                probe_at_ms: now_ms + interval_ms,
                interval_ms,
            };
        }
    }

    /// Whether an answer to a request started at `started_ms` is older than the outage going
    /// on: requests sent before it opened say nothing of whether it is over (only the probe,
    /// sent after, does), so their answers are ignored while it is not closed.
    pub fn predates_outage(&self, started_ms: u64) -> bool {
        match self.state {
            State::Closed => false,
            State::Open { since_ms, .. } | State::Probing { since_ms, .. } => started_ms < since_ms,
        }
    }

    /// An attempt succeeded (or the app judged the record: any answer that is not an outage
    /// class).
    pub fn succeeded(&mut self, now_ms: u64) -> Option<Transition> {
        self.last_success_ms = Some(now_ms);
        self.failures.clear();
        self.close()
    }

    /// An attempt of `record` failed with `class`.
    pub fn failed(&mut self, now_ms: u64, class: Class, record: RecordId) -> Option<Transition> {
        let from = self.state;
        match self.state {
            State::Probing {
                class,
                since_ms,
                interval_ms,
                ..
            } => {
                let interval_ms = (interval_ms * 2).min(self.settings.max_probe_interval_ms);
                self.state = State::Open {
                    class,
                    since_ms,
                    probe_at_ms: now_ms + interval_ms,
                    interval_ms,
                };
                return Some(Transition {
                    from,
                    to: self.state,
                });
            }
            State::Open { .. } => return None,
            State::Closed => {}
        }
        self.failures.push_back((now_ms, class, record));
        let horizon = now_ms.saturating_sub(self.settings.window_ms);
        while self.failures.front().is_some_and(|f| f.0 < horizon) {
            self.failures.pop_front();
        }
        let distinct: HashSet<&RecordId> = self
            .failures
            .iter()
            .filter(|f| f.1 == class)
            .map(|f| &f.2)
            .collect();
        if distinct.len() < self.settings.records.max(1) {
            return None;
        }
        let interval_ms = FIRST_PROBE_MS.min(self.settings.max_probe_interval_ms);
        self.state = State::Open {
            class,
            since_ms: now_ms,
            probe_at_ms: now_ms + interval_ms,
            interval_ms,
        };
        Some(Transition {
            from,
            to: self.state,
        })
    }

    /// The verdict on a record whose attempt failed at `failed_at_ms`.
    pub fn verdict(&self, failed_at_ms: u64, now_ms: u64) -> Verdict {
        if !self.is_closed() {
            return Verdict::Outage;
        }
        if self.last_success_ms.is_some_and(|s| s > failed_at_ms)
            || now_ms.saturating_sub(failed_at_ms) >= self.settings.window_ms
        {
            return Verdict::RecordsFault;
        }
        Verdict::Wait
    }

    fn close(&mut self) -> Option<Transition> {
        let from = self.state;
        if from == State::Closed {
            return None;
        }
        self.state = State::Closed;
        Some(Transition {
            from,
            to: self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        records: 5,
        window_ms: 30_000,
        max_probe_interval_ms: 8_000,
    };

    fn rec(offset: i64) -> RecordId {
        ("orders".into(), 0, offset)
    }

    #[test]
    fn five_records_failing_alike_open_it_and_a_success_between_keeps_it_closed() {
        let mut b = Breaker::new(S);
        for o in 0..4 {
            assert_eq!(b.failed(o as u64, Class::ServerError, rec(o)), None);
        }
        // The same record again is not a fifth record.
        assert_eq!(b.failed(10, Class::ServerError, rec(3)), None);
        // Another class does not add up with these.
        assert_eq!(b.failed(11, Class::NotFound, rec(9)), None);
        let t = b.failed(12, Class::ServerError, rec(4)).expect("opens");
        assert_eq!(t.from, State::Closed);
        assert!(matches!(
            t.to,
            State::Open {
                class: Class::ServerError,
                ..
            }
        ));

        let mut b = Breaker::new(S);
        for o in 0..4 {
            b.failed(o as u64, Class::NotFound, rec(o));
        }
        b.succeeded(5);
        assert_eq!(
            b.failed(6, Class::NotFound, rec(4)),
            None,
            "the endpoint works"
        );
        assert!(b.is_closed());
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let mut b = Breaker::new(S);
        for o in 0..4 {
            b.failed(o as u64, Class::Timeout, rec(o));
        }
        assert_eq!(b.failed(40_000, Class::Timeout, rec(4)), None);
        assert!(b.is_closed());
    }

    #[test]
    fn open_probes_once_with_a_doubling_wait_and_closes_on_an_answer() {
        let mut b = Breaker::new(S);
        for o in 0..5 {
            b.failed(0, Class::ServerError, rec(o));
        }
        assert_eq!(b.admit(500), Admit::WaitUntil(1_000));
        assert_eq!(b.admit(1_000), Admit::Probe);
        assert!(
            matches!(b.admit(1_001), Admit::WaitUntil(_)),
            "one probe at a time"
        );
        let t = b
            .failed(1_050, Class::ServerError, rec(7))
            .expect("reopens");
        assert!(matches!(
            t.to,
            State::Open {
                probe_at_ms: 3_050,
                interval_ms: 2_000,
                ..
            }
        ));
        for at in [3_050, 7_050, 15_050, 23_050] {
            assert_eq!(b.admit(at), Admit::Probe);
            b.failed(at, Class::ServerError, rec(7));
        }
        assert!(
            matches!(
                b.state(),
                State::Open {
                    interval_ms: 8_000,
                    ..
                }
            ),
            "capped: {:?}",
            b.state()
        );
        assert_eq!(b.admit(31_050), Admit::Probe);
        let t = b.succeeded(31_060).expect("closes");
        assert_eq!(t.to, State::Closed);
        assert_eq!(b.admit(31_061), Admit::Go);
    }

    #[test]
    fn a_probe_that_says_nothing_or_never_reports_gives_way_to_another() {
        let mut b = Breaker::new(S);
        for o in 0..5 {
            b.failed(0, Class::ServerError, rec(o));
        }
        assert_eq!(b.admit(1_000), Admit::Probe);
        // The app refused the connection: nothing said of the outage; probe again later.
        b.inconclusive(1_010);
        assert!(matches!(
            b.state(),
            State::Open {
                probe_at_ms: 2_010,
                ..
            }
        ));
        assert_eq!(b.admit(2_010), Admit::Probe);
        // This probe is stopped and never reports: another may go once it expires.
        assert!(matches!(b.admit(2_020), Admit::WaitUntil(_)));
        let expiry = 2_010 + b.probe_expiry_ms();
        assert_eq!(b.admit(expiry), Admit::Probe);
    }

    #[test]
    fn answers_to_requests_sent_before_the_outage_do_not_end_it() {
        let mut b = Breaker::new(S);
        for o in 0..5 {
            b.failed(100, Class::ServerError, rec(o));
        }
        assert!(b.predates_outage(90), "sent before it opened at 100");
        assert!(!b.predates_outage(1_100), "the probe, sent after");
        b.succeeded(1_200);
        assert!(
            b.is_closed(),
            "the shell asks before reporting: the breaker itself closes"
        );
        assert!(!b.predates_outage(90), "closed: nothing predates it");
    }

    #[test]
    fn a_lone_bad_record_is_its_own_fault_at_the_next_success_or_after_the_window() {
        let mut b = Breaker::new(S);
        b.failed(100, Class::NotFound, rec(1));
        assert_eq!(b.verdict(100, 150), Verdict::Wait);
        b.succeeded(160);
        assert_eq!(b.verdict(100, 170), Verdict::RecordsFault);
        assert_eq!(
            b.verdict(200, 210),
            Verdict::Wait,
            "a later failure needs a later success"
        );
        assert_eq!(
            b.verdict(200, 30_200),
            Verdict::RecordsFault,
            "alone: judged after the window"
        );
        for o in 10..15 {
            b.failed(300, Class::NotFound, rec(o));
        }
        assert_eq!(b.verdict(300, 301), Verdict::Outage);
    }
}
