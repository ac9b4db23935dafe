//! What one attempt's outcome means for a record: [`Deliverer::settle`], the one place that
//! reads an outcome for a record, single or in a batch (`deliver/batch.rs`).
//!
//! It classifies the outcome ([`classify`]), counts the attempt when it counts (not for an
//! unreachable app or registry, nor during an endpoint outage), logs the endpoint or registry
//! going down and coming back once, and ends the record (delivered, skipped, dead-lettered,
//! `onExhausted`) or says when to send it again. The record's window place is the caller's.

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, SystemTime},
};

use kcp_crds::{progress::DeadLetterKind, v1alpha1::Guarantee};
use tracing::{debug, info, warn};

use super::{Deliverer, End, describe, last_failure, prior_failures};
use crate::{
    deadletter::FailureLog,
    dispatch::Job,
    forward::{Decision, Outcome, classify},
    outage::{Outage, Verdict},
    retry::jitter,
    stats::Stats,
};

impl Deliverer {
    /// What an attempt's `outcome` means for the record: its end, or when to send it again.
    /// Counts the attempt when it counts, and gives the record up (`onExhausted`) when its
    /// attempts ran out or it was refused; the record's slot is the caller's.
    pub(super) async fn settle(
        &self,
        job: &Job,
        progress: &mut Progress,
        outcome: &Outcome,
        failed_at: u64,
    ) -> Step {
        let record = &job.record;
        let p = &job.partition;
        let Progress {
            attempts,
            down_waits,
            failures,
            blocked_logged,
        } = progress;
        let decision = classify(outcome, self.forwarder.policy());
        if Outage::endpoint_like(outcome) && self.outage.is_out() {
            // Every record fails alike: the endpoint's outage, not this record's failure.
            // Not counted; the next attempt waits for the breaker's probe (`outage.rs`).
            self.stats.metrics.attempt_failed(outcome);
            debug!(coordinates = %record.coordinates(), "Endpoint outage: attempt not counted");
            return Step::Resend;
        }
        if !matches!(decision, Decision::Delivered | Decision::Skip) {
            self.stats.metrics.attempt_failed(outcome);
        }
        let reached_app = !matches!(
            outcome,
            Outcome::Unreachable(_) | Outcome::Undecodable(_) | Outcome::RegistryUnavailable(_)
        );
        if reached_app && self.endpoint_down.swap(false, Relaxed) {
            info!("Endpoint reachable again");
        }
        if decision != Decision::RegistryDown && self.registry_down.swap(false, Relaxed) {
            info!("Schema registry readable again");
        }
        debug!(coordinates = %record.coordinates(), attempt = *attempts + 1, ?decision, "Attempt finished");
        let now = SystemTime::now();
        let wait = match decision {
            Decision::Delivered => return Step::End(End::Delivered),
            Decision::Skip => {
                debug!(coordinates = %record.coordinates(), "Skipped record: the app asked");
                return Step::End(End::Skipped);
            }
            Decision::AppDown => {
                // Pauses fetching of every partition until the app answers again.
                self.stats.gate.app_unreachable();
                *down_waits += 1;
                Stats::incr(&self.stats.app_down);
                if !self.endpoint_down.swap(true, Relaxed) {
                    let error = describe(&last_failure(outcome));
                    warn!(%error, "Endpoint unreachable; waiting for it without counting attempts");
                    self.stats.set_last_error(format!("endpoint: {error}"));
                }
                debug!(coordinates = %record.coordinates(), waits = *down_waits, "Endpoint unreachable");
                self.backoff.delay(*down_waits, jitter())
            }
            Decision::RegistryDown => {
                // Not the record's fault, and not the app's: records wait, fetching goes on.
                *down_waits += 1;
                if !self.registry_down.swap(true, Relaxed) {
                    let error = describe(&last_failure(outcome));
                    warn!(%error, "Schema registry unavailable; records wait for it without counting attempts");
                    self.stats.set_last_error(error);
                }
                debug!(coordinates = %record.coordinates(), waits = *down_waits, "Schema registry unavailable");
                self.backoff.delay(*down_waits, jitter())
            }
            Decision::DeadLetter { reason } => {
                *attempts += 1;
                FailureLog::record(failures, *attempts, last_failure(outcome), now);
                self.note_attempts(job, failures);
                return Step::End(
                    self.dead_letter(job, failures, &reason, DeadLetterKind::Refused)
                        .await,
                );
            }
            Decision::Reject { reason } => {
                match self.judge(outcome, failed_at, &p.stop).await {
                    None => return Step::End(End::Abandoned),
                    Some(Verdict::Outage) => return Step::Resend,
                    Some(_) => {}
                }
                *attempts += 1;
                *down_waits = 0;
                FailureLog::record(failures, *attempts, last_failure(outcome), now);
                self.note_attempts(job, failures);
                let kind = match outcome {
                    Outcome::Undecodable(_) => DeadLetterKind::Undecodable,
                    _ => DeadLetterKind::Refused,
                };
                match self
                    .exhausted(job, failures, (&reason, kind), blocked_logged)
                    .await
                {
                    Some(end) => return Step::End(end),
                    None => self.backoff.blocked(),
                }
            }
            Decision::Retry { after } => {
                // At most once: the app may have received this request (it answered, or
                // did not answer in time), so it is never sent again. A refused connection
                // is `AppDown` above: never delivered, so waiting for the app is safe.
                let at_most_once = self.guarantee == Guarantee::AtMostOnce;
                let last = self.max_attempts != 0 && *attempts + 1 >= self.max_attempts;
                if last && !at_most_once {
                    match self.judge(outcome, failed_at, &p.stop).await {
                        None => return Step::End(End::Abandoned),
                        Some(Verdict::Outage) => return Step::Resend,
                        Some(_) => {}
                    }
                }
                *attempts += 1;
                *down_waits = 0;
                FailureLog::record(failures, *attempts, last_failure(outcome), now);
                self.note_attempts(job, failures);
                if at_most_once || last {
                    let (why, kind) = if at_most_once {
                        ("not retried (atMostOnce)", DeadLetterKind::NotRetried)
                    } else {
                        ("retries exhausted", DeadLetterKind::RetriesExhausted)
                    };
                    let reason = format!("{why}: {}", describe(&last_failure(outcome)));
                    match self
                        .exhausted(job, failures, (&reason, kind), blocked_logged)
                        .await
                    {
                        Some(end) => return Step::End(end),
                        None => self.backoff.blocked(),
                    }
                } else {
                    Stats::incr(&self.stats.retried);
                    self.backoff.next(*attempts, after, jitter())
                }
            }
        };
        Step::Wait(wait)
    }
}

/// What a record carries from one attempt to the next.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Attempts counted so far, those made before a rebalance or a crash included
    /// (`offsets/carry.rs`).
    pub(super) attempts: u32,
    /// Waits for an unreachable app or registry since the last counted attempt.
    down_waits: u32,
    pub(super) failures: Option<FailureLog>,
    /// Whether a blocked record was logged (`onExhausted: block` logs once).
    blocked_logged: bool,
}

impl Progress {
    pub(super) fn of(job: &Job) -> Self {
        Self {
            attempts: job.prior.attempts,
            down_waits: 0,
            failures: prior_failures(&job.prior),
            blocked_logged: false,
        }
    }
}

/// What follows an attempt.
#[derive(Debug)]
pub(super) enum Step {
    End(End),
    /// Send again now, nothing counted (the endpoint is out: the breaker paces it).
    Resend,
    /// Send again after this wait.
    Wait(Duration),
}
