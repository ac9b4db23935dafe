//! Drives one record to its end: delivered, skipped, dead-lettered, or abandoned.
//!
//! The per-record state machine around the pure [`classify`](crate::forward::classify()):
//! attempt, decide (`Deliverer::settle`, `deliver/settle.rs`), wait, repeat. The
//! records of a batch (`delivery.batch`) take the same path per entry (`deliver/batch.rs`).
//! Attempts count toward `maxAttempts` only when the request may have reached the app; an
//! unreachable endpoint (connection refused) waits with backoff and retries without counting,
//! so an app restart never sends good records to the dead-letter topic. A record is marked
//! finished in the [`OffsetTracker`] only when delivered, skipped, or acknowledged by the
//! dead-letter topic; a record abandoned by a stop (revoke, shutdown) stays unfinished, so it is
//! never committed and is consumed again. Each HTTP request holds a `maxInFlight` permit; waits
//! between attempts do not.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, SystemTime},
};

use kcp_crds::{
    SidecarConfig,
    progress::DeadLetterKind,
    v1alpha1::{Guarantee, OnExhausted},
};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::{
    commit::{Slot, Window},
    concurrency::{Limiter, Permit, Signal},
    deadletter::{DeadLetter, FailureLog, LastFailure},
    dispatch::Job,
    forward::{Forwarder, Outcome},
    offsets::OffsetTracker,
    outage::{self, Outage, Verdict},
    record::Tp,
    retry::Backoff,
    stats::Stats,
};

/// How a record's journey ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Delivered,
    Skipped,
    DeadLettered,
    /// Stopped before a final state (revoke, shutdown): not finished, consumed again later.
    Abandoned,
}

/// Everything a record needs on its way; shared by all lanes.
pub struct Deliverer {
    pub forwarder: Forwarder,
    pub dead_letter: DeadLetter,
    pub backoff: Backoff,
    pub max_attempts: u32,
    /// `delivery.maxCrashes`: crashes a record may be in flight for; 0 = no limit.
    pub max_crashes: u32,
    pub on_exhausted: OnExhausted,
    pub guarantee: Guarantee,
    /// `partition` or `key` order: a batch's entries after one to be retried are sent again
    /// with it (`deliver/batch.rs`).
    pub ordered: bool,
    /// Requests in flight across lanes (`concurrency.rs`).
    pub limiter: Limiter,
    /// Records sent and not yet committed (`commit/window.rs`).
    pub window: Arc<Window>,
    /// Endpoint outage or bad records (`outage.rs`).
    pub outage: Outage,
    pub tracker: Arc<Mutex<OffsetTracker<Tp>>>,
    pub stats: Arc<Stats>,
    /// Whether the last attempt found the endpoint unreachable (logs once per outage).
    endpoint_down: AtomicBool,
    /// Whether the last attempt found the schema registry unavailable (logs once per outage).
    registry_down: AtomicBool,
}

impl Deliverer {
    pub fn new(
        config: &SidecarConfig,
        forwarder: Forwarder,
        dead_letter: DeadLetter,
        tracker: Arc<Mutex<OffsetTracker<Tp>>>,
        stats: Arc<Stats>,
    ) -> Self {
        let d = &config.delivery;
        Self {
            forwarder,
            dead_letter,
            backoff: Backoff::from_config(&d.retry),
            max_attempts: d.retry.max_attempts,
            max_crashes: d.max_crashes,
            on_exhausted: d.on_exhausted,
            guarantee: d.guarantee,
            ordered: d.ordering != kcp_crds::v1alpha1::Ordering::Unordered,
            limiter: Limiter::from_config(d.concurrency, d.max_in_flight, Arc::clone(&stats)),
            window: Arc::new(Window::new(d.window())),
            // `block` never gives a record up: there is no flood of dead letters to stop, and
            // the records it holds would look like an outage.
            outage: Outage::new(
                d.outage
                    .as_ref()
                    .filter(|_| d.on_exhausted != OnExhausted::Block)
                    .map(|o| outage::Settings {
                        records: o.records as usize,
                        window_ms: o.window.as_std().as_millis() as u64,
                        max_probe_interval_ms: o.max_probe_interval.as_std().as_millis() as u64,
                    }),
                Arc::clone(&stats),
            ),
            tracker,
            stats,
            endpoint_down: AtomicBool::new(false),
            registry_down: AtomicBool::new(false),
        }
    }

    /// Runs `job` to its end and records the result. Dropping the last handle on the job
    /// releases its budget.
    pub async fn process(&self, job: &Job) {
        let mut slot = None;
        let end = self.drive(job, &mut slot).await;
        self.end(job, end, slot);
    }

    /// Records how `job` ended; its window place (if it took one) then waits for the commit.
    fn end(&self, job: &Job, end: End, slot: Option<Slot<'_>>) {
        self.finish(job, end);
        // After the tracker knows the end: the next commit carries it (`commit/window.rs`).
        if let Some(slot) = slot
            && end != End::Abandoned
        {
            slot.finished();
        }
    }

    /// Gives a record an outcome after [`Deliverer::process`] panicked on it (a sidecar bug:
    /// `dispatch` catches the panic and logs it). The same code would likely panic again, so the
    /// record is not retried: it is dead-lettered, whatever `onExhausted` says (as with the app's
    /// `dead-letter` action), with `kcp-dlq-reason: sidecar error: <panic>`. It is never
    /// skipped: the commit passes it only once the dead-letter topic acknowledged it, and a
    /// failing dead-letter produce is retried with backoff, the record uncommitted meanwhile.
    pub async fn recover(&self, job: &Job, panic: &str) {
        let now = SystemTime::now();
        let reason = format!("sidecar error: {panic}");
        let failures = Some(FailureLog {
            attempts: 0,
            last: LastFailure::Error(reason.clone()),
            first_at: now,
            last_at: now,
        });
        let end = self
            .dead_letter(job, &failures, &reason, DeadLetterKind::SidecarError)
            .await;
        self.finish(job, end);
    }

    fn mark_in_flight(&self, job: &Job, in_flight: bool) {
        let r = &job.record;
        self.tracker
            .lock()
            .expect("invariant: tracker lock never poisoned")
            .in_flight(&r.tp, job.epoch, r.offset, in_flight);
    }

    /// Lets the tracker carry the record's attempts in the next commit, so a new owner goes on
    /// counting (`offsets/carry.rs`).
    fn note_attempts(&self, job: &Job, failures: &Option<FailureLog>) {
        let Some(f) = failures else { return };
        let first_ms = f
            .first_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let r = &job.record;
        self.tracker
            .lock()
            .expect("invariant: tracker lock never poisoned")
            .attempted(
                &r.tp,
                job.epoch,
                r.offset,
                f.attempts,
                first_ms,
                Some(failure_code(&f.last)),
            );
    }

    /// Counts how `job` ended and marks it finished unless it was abandoned.
    fn finish(&self, job: &Job, end: End) {
        match end {
            End::Abandoned => return,
            End::Delivered => {
                Stats::incr(&self.stats.delivered);
                self.stats.metrics.delivered(&job.record, now_ms());
            }
            End::Skipped => Stats::incr(&self.stats.skipped),
            End::DeadLettered => Stats::incr(&self.stats.dead_lettered),
        }
        let r = &job.record;
        // At-most-once records were marked finished when dispatched; this is then a no-op.
        self.tracker
            .lock()
            .expect("invariant: tracker lock never poisoned")
            .finished(&r.tp, job.epoch, r.offset);
    }

    /// `slot`: the record's place in the window of uncommitted records, taken by each attempt
    /// and kept when the attempt ends the record.
    async fn drive<'a>(&'a self, job: &Job, slot: &mut Option<Slot<'a>>) -> End {
        let mut progress = Progress::of(job);
        if let Some(end) = self.crash_looped(job, &progress).await {
            return end;
        }
        loop {
            // Not sent, not ended: waiting for another attempt holds no place.
            *slot = None;
            let Some((outcome, failed_at)) = self.attempt(job, progress.attempts + 1, slot).await
            else {
                return End::Abandoned;
            };
            match self.settle(job, &mut progress, &outcome, failed_at).await {
                Step::End(end) => return end,
                Step::Resend => {}
                Step::Wait(wait) => {
                    *slot = None;
                    if !sleep_unless(&job.partition.stop, wait).await {
                        return End::Abandoned;
                    }
                }
            }
        }
    }

    /// Whether `job` was in flight during `maxCrashes` crashes of the sidecar.
    fn crash_looping(&self, job: &Job) -> bool {
        self.max_crashes > 0 && job.prior.crashes >= self.max_crashes
    }

    /// A record that was in flight during `maxCrashes` crashes is dead-lettered before any
    /// attempt; `None` for the others.
    async fn crash_looped(&self, job: &Job, progress: &Progress) -> Option<End> {
        if !self.crash_looping(job) {
            return None;
        }
        let record = &job.record;
        let reason = format!(
            "crash loop: in flight during {} consecutive crashes of the sidecar (delivery.maxCrashes {})",
            job.prior.crashes, self.max_crashes
        );
        error!(coordinates = %record.coordinates(), crashes = job.prior.crashes,
            "Record was in flight during every recent crash of the sidecar; dead-lettering it instead of crashing again");
        Stats::incr(&self.stats.crash_looped);
        let now = SystemTime::now();
        let failures = progress.failures.clone().or(Some(FailureLog {
            attempts: progress.attempts,
            last: LastFailure::Error(reason.clone()),
            first_at: now,
            last_at: now,
        }));
        Some(
            self.dead_letter(job, &failures, &reason, DeadLetterKind::CrashLoop)
                .await,
        )
    }

    /// Before a record is given up for a failure that may be the endpoint's: waits until the
    /// endpoint is known to work (the failure is the record's) or known out (`outage.rs`).
    /// `None` when stopped first.
    async fn judge(
        &self,
        outcome: &Outcome,
        failed_at: u64,
        stop: &CancellationToken,
    ) -> Option<Verdict> {
        // `block` never gives a record up: it has nothing to wait for.
        if !Outage::endpoint_like(outcome) || self.on_exhausted == OnExhausted::Block {
            return Some(Verdict::RecordsFault);
        }
        self.outage.verdict(failed_at, stop).await
    }

    /// One HTTP request under the concurrency limit, once the breaker lets it go; `None` when
    /// stopped first. Also returns when it ended, on the breaker's clock.
    async fn attempt<'a>(
        &'a self,
        job: &Job,
        attempt: u32,
        slot: &mut Option<Slot<'a>>,
    ) -> Option<(Outcome, u64)> {
        let p = &job.partition;
        self.admitted(&p.stop).await?;
        // A place in the window first, so a record waiting for a commit holds no permit.
        *slot = Some(tokio::select! {
            biased;
            _ = p.stop.cancelled() => return None,
            entered = self.window.enter() => entered,
        });
        let permit = tokio::select! {
            biased;
            _ = p.stop.cancelled() => return None,
            permit = self.limiter.acquire() => permit,
        };
        let _in_flight = InFlight::start(&self.stats);
        // Commits meanwhile list it as in flight: a crash now counts against it (`carry.rs`).
        self.mark_in_flight(job, true);
        let started = std::time::Instant::now();
        let sent_at = self.outage.clock();
        let outcome = tokio::select! {
            biased;
            _ = p.abort.cancelled() => None,
            o = self.forwarder.attempt(&job.record, attempt) => Some(o),
        };
        self.mark_in_flight(job, false);
        let outcome = outcome?;
        self.answered(started, permit, Some(&outcome));
        let at = self.report(&job.record, sent_at, &outcome);
        Some((outcome, at))
    }

    /// Waits until a request may go: the breaker lets it (while the endpoint is out, one
    /// request at a time probes it) and the app has not announced its stop. `None` when
    /// stopped first.
    async fn admitted(&self, stop: &CancellationToken) -> Option<()> {
        if stop.is_cancelled() {
            return None;
        }
        self.outage.admit(stop).await?;
        if self.stats.gate.is_held() {
            // The app announced its stop (`gate.rs`, hold): nothing new is sent to it.
            tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = self.stats.gate.unheld() => {}
            }
        }
        Some(())
    }

    /// What a request's answer says of the endpoint rather than of a record: its time, a
    /// `Retry-After` (holds every new request), and its load for the adaptive limit. `outcome`
    /// is `None` when no request was sent.
    fn answered(&self, started: std::time::Instant, permit: Permit<'_>, outcome: Option<&Outcome>) {
        let Some(outcome) = outcome else {
            drop(permit);
            return;
        };
        self.stats.metrics.attempt_took(started.elapsed());
        if let Outcome::Response {
            retry_after: Some(after),
            ..
        } = outcome
        {
            // The app asked the endpoint to slow down, not this record alone.
            let pause = (*after).min(crate::retry::RETRY_AFTER_CEILING);
            self.limiter
                .pause_until(tokio::time::Instant::now() + pause);
        }
        match load_signal(outcome) {
            Some(signal) => permit.finish(signal),
            None => drop(permit),
        }
    }

    /// Tells the breaker what `record`'s attempt sent at `sent_at` came to; returns when, on
    /// the breaker's clock.
    fn report(&self, record: &crate::record::Record, sent_at: u64, outcome: &Outcome) -> u64 {
        let (at, changed) = self.outage.report(record, sent_at, outcome);
        if changed {
            // Every partition's next commit says so, for the resource's status.
            self.tracker
                .lock()
                .expect("invariant: tracker lock never poisoned")
                .set_outage(self.outage.note());
        }
        at
    }
}

/// Counts one request in `Stats::in_flight` while it lives, however the request ends (a panic
/// included: the gauge must not drift).
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn start(stats: &'a Stats) -> Self {
        Stats::incr(&stats.in_flight);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn error_source(e: &dyn std::error::Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}

/// What an attempt's outcome says of the app's load, for the adaptive limit; `None` when no
/// request reached it.
fn load_signal(outcome: &Outcome) -> Option<Signal> {
    match outcome {
        Outcome::Response {
            status: 429 | 503, ..
        }
        | Outcome::Timeout => Some(Signal::Backpressure),
        Outcome::Response { .. } | Outcome::Failed(_) => Some(Signal::Normal),
        Outcome::Unreachable(_) | Outcome::Undecodable(_) | Outcome::RegistryUnavailable(_) => None,
    }
}

/// Sleeps `wait` unless `stop` fires first; false when stopped.
async fn sleep_unless(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

mod batch;
mod give_up;
mod settle;
#[cfg(test)]
mod tests;

use give_up::{describe, failure_code, last_failure, prior_failures};
use settle::{Progress, Step};
