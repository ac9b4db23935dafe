//! The endpoint outage breaker's shell: one [`Outage`] per sidecar, shared by every lane.
//!
//! The rules are [`breaker`]'s (pure). This module feeds it every attempt's outcome, makes
//! attempts wait while it is open (one probe at a time), tells the gate to stop taking records
//! from Kafka while it is not closed (`gate.rs`), logs each transition (WARN when it opens, INFO
//! when it closes) and keeps the figures for `/metrics` and `/status`.

pub mod breaker;

use std::{
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use breaker::{Admit, Breaker, Class, RecordId, Settings, State, Verdict};

use kcp_crds::progress::OutageNote;

use crate::{
    deadletter::headers::epoch_millis,
    forward::Outcome,
    record::Record,
    stats::{EndpointOutage, Stats},
};

/// The breaker and who hears of it.
#[derive(Debug)]
pub struct Outage {
    breaker: Mutex<Breaker>,
    changed: Notify,
    epoch: Instant,
    /// `epoch` as wall time, in milliseconds since the Unix epoch.
    epoch_ms: u64,
    stats: Arc<Stats>,
    enabled: bool,
}

/// What an attempt's outcome says about the endpoint.
pub fn class_of(outcome: &Outcome) -> Option<Option<Class>> {
    match outcome {
        Outcome::Response { status, .. } => Some(Class::of_status(*status)),
        Outcome::Timeout => Some(Some(Class::Timeout)),
        Outcome::Failed(_) => Some(Some(Class::Broken)),
        // Not an answer from the endpoint: the gate and the registry wait have their own rules.
        Outcome::Unreachable(_) | Outcome::Undecodable(_) | Outcome::RegistryUnavailable(_) => None,
    }
}

impl Outage {
    /// `None`: detection off (every failure is the record's).
    pub fn new(settings: Option<Settings>, stats: Arc<Stats>) -> Self {
        let enabled = settings.is_some();
        let settings = settings.unwrap_or(Settings {
            records: usize::MAX,
            window_ms: 0,
            max_probe_interval_ms: 0,
        });
        Self {
            breaker: Mutex::new(Breaker::new(settings)),
            changed: Notify::new(),
            epoch: Instant::now(),
            epoch_ms: u64::try_from(epoch_millis(SystemTime::now())).unwrap_or(0),
            stats,
            enabled,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker
            .lock()
            .expect("invariant: the breaker lock is never poisoned")
    }

    pub fn state(&self) -> State {
        self.lock().state()
    }

    /// Waits until an attempt may go (at once while closed). `None` when `stop` fired first.
    pub async fn admit(&self, stop: &CancellationToken) -> Option<()> {
        if !self.enabled {
            return Some(());
        }
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let until = match self.lock().admit(self.now_ms()) {
                Admit::Go | Admit::Probe => return Some(()),
                Admit::WaitUntil(ms) => ms,
            };
            let wait = std::time::Duration::from_millis(until.saturating_sub(self.now_ms()));
            tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = &mut changed => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The breaker's clock, for [`Outage::report`]'s `started`.
    pub fn clock(&self) -> u64 {
        self.now_ms()
    }

    /// Reports an attempt of `record` started at `started` ([`Outage::clock`]) and what it came
    /// to; returns when, on the clock [`Outage::verdict`] takes, and whether the state changed.
    /// An answer to a request sent before the outage began is ignored while it lasts.
    pub fn report(&self, record: &Record, started: u64, outcome: &Outcome) -> (u64, bool) {
        let now = self.now_ms();
        if !self.enabled {
            return (now, false);
        }
        let transition = {
            let mut b = self.lock();
            if b.predates_outage(started) {
                return (now, false);
            }
            match class_of(outcome) {
                None => {
                    // No word about the endpoint; a probe must not hold the slot for it.
                    b.inconclusive(now);
                    return (now, false);
                }
                Some(None) => b.succeeded(now),
                Some(Some(class)) => {
                    let id = (
                        record.tp.topic.to_string(),
                        record.tp.partition,
                        record.offset,
                    );
                    b.failed(now, class, id)
                }
            }
        };
        if let Some(t) = transition {
            match t.to {
                State::Open { class, .. } if t.from == State::Closed => {
                    warn!(
                        class = class.as_str(),
                        "Endpoint outage: records fail alike across records; no attempt is counted and nothing is dead-lettered until it answers; probing"
                    );
                }
                State::Closed => info!("Endpoint answers again: outage over"),
                _ => {}
            }
            self.stats.gate.set_outage(t.to != State::Closed);
            self.stats
                .set_endpoint_outage(outage_now(&t.to, self.epoch_ms));
            self.changed.notify_waiters();
        }
        (now, transition.is_some())
    }

    /// The outage going on, as the commits carry it; `None` when closed.
    pub fn note(&self) -> Option<OutageNote> {
        match self.state() {
            State::Closed => None,
            State::Open {
                class, since_ms, ..
            }
            | State::Probing {
                class, since_ms, ..
            } => Some(OutageNote {
                class,
                since_ms: self.epoch_ms.saturating_add(since_ms),
            }),
        }
    }
    /// Whether `outcome` failed in a way that may be the endpoint's rather than the record's.
    pub fn endpoint_like(outcome: &Outcome) -> bool {
        matches!(class_of(outcome), Some(Some(_)))
    }

    /// Whether the endpoint is out now.
    pub fn is_out(&self) -> bool {
        self.enabled && !self.lock().is_closed()
    }

    /// Waits for the verdict on a record whose attempt failed at `failed_at`: the endpoint is
    /// out, or the failure is the record's. `None` when `stop` fired first.
    pub async fn verdict(&self, failed_at: u64, stop: &CancellationToken) -> Option<Verdict> {
        if !self.enabled {
            return Some(Verdict::RecordsFault);
        }
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.lock().verdict(failed_at, self.now_ms()) {
                Verdict::Wait => {}
                v => return Some(v),
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = &mut changed => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
            }
        }
    }
}

/// What `/status` shows of `state`, with `epoch_ms` the wall time of the breaker's clock zero;
/// `None` when closed.
fn outage_now(state: &State, epoch_ms: u64) -> Option<EndpointOutage> {
    let (name, class, since) = match *state {
        State::Closed => return None,
        State::Open {
            class, since_ms, ..
        } => ("open", class, since_ms),
        State::Probing {
            class, since_ms, ..
        } => ("probing", class, since_ms),
    };
    Some(EndpointOutage {
        state: name,
        class: class.as_str(),
        since_ms: epoch_ms.saturating_add(since),
    })
}
