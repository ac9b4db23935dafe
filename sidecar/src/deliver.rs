//! Drives one record to its end: delivered, skipped, dead-lettered, or abandoned.
//!
//! The per-record state machine around the pure [`classify`]: attempt, decide, wait, repeat.
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
    progress::{DeadLetterKind, DeadLetterNote, Failure},
    v1alpha1::{Guarantee, OnExhausted},
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    deadletter::{DeadLetter, FailureLog, LastFailure},
    dispatch::Job,
    forward::{Decision, Forwarder, Outcome, classify},
    offsets::OffsetTracker,
    record::Tp,
    retry::{Backoff, jitter},
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
    pub permits: Arc<Semaphore>,
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
            permits: Arc::new(Semaphore::new(d.max_in_flight.max(1) as usize)),
            tracker,
            stats,
            endpoint_down: AtomicBool::new(false),
            registry_down: AtomicBool::new(false),
        }
    }

    /// Runs `job` to its end and records the result. Dropping the last handle on the job
    /// releases its budget.
    pub async fn process(&self, job: &Job) {
        let end = self.drive(job).await;
        self.finish(job, end);
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

    async fn drive(&self, job: &Job) -> End {
        let record = &job.record;
        let p = &job.partition;
        // Attempts made before a rebalance or a crash count (`offsets/carry.rs`).
        let mut attempts: u32 = job.prior.attempts;
        let mut down_waits: u32 = 0;
        let mut failures: Option<FailureLog> = prior_failures(&job.prior);
        let mut blocked_logged = false;
        if self.max_crashes > 0 && job.prior.crashes >= self.max_crashes {
            let reason = format!(
                "crash loop: in flight during {} consecutive crashes of the sidecar (delivery.maxCrashes {})",
                job.prior.crashes, self.max_crashes
            );
            error!(coordinates = %record.coordinates(), crashes = job.prior.crashes,
                "Record was in flight during every recent crash of the sidecar; dead-lettering it instead of crashing again");
            Stats::incr(&self.stats.crash_looped);
            let now = SystemTime::now();
            let failures = failures.or(Some(FailureLog {
                attempts,
                last: LastFailure::Error(reason.clone()),
                first_at: now,
                last_at: now,
            }));
            return self
                .dead_letter(job, &failures, &reason, DeadLetterKind::CrashLoop)
                .await;
        }
        loop {
            let Some(outcome) = self.attempt(job, attempts + 1).await else {
                return End::Abandoned;
            };
            let decision = classify(&outcome, self.forwarder.policy());
            if !matches!(decision, Decision::Delivered | Decision::Skip) {
                self.stats.metrics.attempt_failed(&outcome);
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
            debug!(coordinates = %record.coordinates(), attempt = attempts + 1, ?decision, "Attempt finished");
            let now = SystemTime::now();
            let wait = match decision {
                Decision::Delivered => return End::Delivered,
                Decision::Skip => {
                    debug!(coordinates = %record.coordinates(), "Skipped record: the app asked");
                    return End::Skipped;
                }
                Decision::AppDown => {
                    // Pauses fetching of every partition until the app answers again.
                    self.stats.gate.app_unreachable();
                    down_waits += 1;
                    Stats::incr(&self.stats.app_down);
                    if !self.endpoint_down.swap(true, Relaxed) {
                        let error = describe(&last_failure(&outcome));
                        warn!(%error, "Endpoint unreachable; waiting for it without counting attempts");
                        self.stats.set_last_error(format!("endpoint: {error}"));
                    }
                    debug!(coordinates = %record.coordinates(), waits = down_waits, "Endpoint unreachable");
                    self.backoff.delay(down_waits, jitter())
                }
                Decision::RegistryDown => {
                    // Not the record's fault, and not the app's: records wait, fetching goes on.
                    down_waits += 1;
                    if !self.registry_down.swap(true, Relaxed) {
                        let error = describe(&last_failure(&outcome));
                        warn!(%error, "Schema registry unavailable; records wait for it without counting attempts");
                        self.stats.set_last_error(error);
                    }
                    debug!(coordinates = %record.coordinates(), waits = down_waits, "Schema registry unavailable");
                    self.backoff.delay(down_waits, jitter())
                }
                Decision::DeadLetter { reason } => {
                    attempts += 1;
                    FailureLog::record(&mut failures, attempts, last_failure(&outcome), now);
                    self.note_attempts(job, &failures);
                    return self
                        .dead_letter(job, &failures, &reason, DeadLetterKind::Refused)
                        .await;
                }
                Decision::Reject { reason } => {
                    attempts += 1;
                    down_waits = 0;
                    FailureLog::record(&mut failures, attempts, last_failure(&outcome), now);
                    self.note_attempts(job, &failures);
                    let kind = match outcome {
                        Outcome::Undecodable(_) => DeadLetterKind::Undecodable,
                        _ => DeadLetterKind::Refused,
                    };
                    match self
                        .exhausted(job, &failures, (&reason, kind), &mut blocked_logged)
                        .await
                    {
                        Some(end) => return end,
                        None => self.backoff.blocked(),
                    }
                }
                Decision::Retry { after } => {
                    attempts += 1;
                    down_waits = 0;
                    FailureLog::record(&mut failures, attempts, last_failure(&outcome), now);
                    self.note_attempts(job, &failures);
                    // At most once: the app may have received this request (it answered, or
                    // did not answer in time), so it is never sent again. A refused connection
                    // is `AppDown` above: never delivered, so waiting for the app is safe.
                    let at_most_once = self.guarantee == Guarantee::AtMostOnce;
                    if at_most_once || (self.max_attempts != 0 && attempts >= self.max_attempts) {
                        let (why, kind) = if at_most_once {
                            ("not retried (atMostOnce)", DeadLetterKind::NotRetried)
                        } else {
                            ("retries exhausted", DeadLetterKind::RetriesExhausted)
                        };
                        let reason = format!("{why}: {}", describe(&last_failure(&outcome)));
                        match self
                            .exhausted(job, &failures, (&reason, kind), &mut blocked_logged)
                            .await
                        {
                            Some(end) => return end,
                            None => self.backoff.blocked(),
                        }
                    } else {
                        Stats::incr(&self.stats.retried);
                        self.backoff.next(attempts, after, jitter())
                    }
                }
            };
            if !sleep_unless(&p.stop, wait).await {
                return End::Abandoned;
            }
        }
    }

    /// One HTTP request under a `maxInFlight` permit; `None` when stopped first.
    async fn attempt(&self, job: &Job, attempt: u32) -> Option<Outcome> {
        let p = &job.partition;
        if p.stop.is_cancelled() {
            return None;
        }
        if self.stats.gate.is_held() {
            // The app announced its stop (`gate.rs`, hold): nothing new is sent to it.
            tokio::select! {
                biased;
                _ = p.stop.cancelled() => return None,
                _ = self.stats.gate.unheld() => {}
            }
        }
        let _permit = tokio::select! {
            biased;
            _ = p.stop.cancelled() => return None,
            permit = self.permits.acquire() => permit.expect("invariant: the permit semaphore is never closed"),
        };
        let _in_flight = InFlight::start(&self.stats);
        // Commits meanwhile list it as in flight: a crash now counts against it (`carry.rs`).
        self.mark_in_flight(job, true);
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            biased;
            _ = p.abort.cancelled() => None,
            o = self.forwarder.attempt(&job.record, attempt) => Some(o),
        };
        self.mark_in_flight(job, false);
        if outcome.is_some() {
            self.stats.metrics.attempt_took(started.elapsed());
        }
        outcome
    }

    /// Applies `onExhausted`; `None` means block: wait `maxBackoff` and try again.
    async fn exhausted(
        &self,
        job: &Job,
        failures: &Option<FailureLog>,
        (reason, kind): (&str, DeadLetterKind),
        blocked_logged: &mut bool,
    ) -> Option<End> {
        let r = &job.record;
        match self.on_exhausted {
            OnExhausted::Skip => {
                warn!(topic = %r.tp.topic, partition = r.tp.partition, offset = r.offset, reason, "Skipped record");
                Some(End::Skipped)
            }
            OnExhausted::DeadLetter => Some(self.dead_letter(job, failures, reason, kind).await),
            OnExhausted::Block => {
                if !*blocked_logged {
                    *blocked_logged = true;
                    warn!(topic = %r.tp.topic, partition = r.tp.partition, offset = r.offset, reason,
                        "Record cannot be delivered; blocking its lane and retrying at maxBackoff");
                }
                None
            }
        }
    }

    /// Produces to the dead-letter topic until the broker acknowledges (or a stop); then the
    /// partition's next commit counts it (`offsets/carry.rs`), which the operator reports.
    async fn dead_letter(
        &self,
        job: &Job,
        failures: &Option<FailureLog>,
        reason: &str,
        kind: DeadLetterKind,
    ) -> End {
        let r = &job.record;
        let p = &job.partition;
        let failure = failures.clone().unwrap_or_else(|| FailureLog {
            attempts: 0,
            last: LastFailure::Error("none".into()),
            first_at: SystemTime::now(),
            last_at: SystemTime::now(),
        });
        let mut tries = 0u32;
        loop {
            let result = tokio::select! {
                biased;
                _ = p.abort.cancelled() => return End::Abandoned,
                res = self.dead_letter.produce(r, &failure, reason) => res,
            };
            match result {
                Ok((topic, partition, offset)) => {
                    warn!(coordinates = %r.coordinates(), reason, dlq_topic = %topic, dlq_partition = partition, dlq_offset = offset, "Dead-lettered record");
                    let note = DeadLetterNote {
                        offset: r.offset,
                        at_ms: u64::try_from(now_ms()).unwrap_or_default(),
                        kind,
                        attempts: failure.attempts,
                        last: (failure.attempts > 0).then(|| failure_code(&failure.last)),
                    };
                    self.tracker
                        .lock()
                        .expect("invariant: tracker lock never poisoned")
                        .dead_lettered(&r.tp, job.epoch, note);
                    return End::DeadLettered;
                }
                Err(e) => {
                    tries += 1;
                    Stats::incr(&self.stats.dead_letter_failures);
                    self.stats.set_last_error(format!("dead-letter: {e}"));
                    error!(coordinates = %r.coordinates(), error = %e, source = %error_source(&e), tries,
                        "Dead-letter produce failed; the record stays uncommitted and is retried");
                    if !sleep_unless(&p.stop, self.backoff.delay(tries, jitter())).await {
                        return End::Abandoned;
                    }
                }
            }
        }
    }
}

/// The failure history carried over from before a handover, if the record had failed.
fn prior_failures(prior: &crate::progress::RecordState) -> Option<FailureLog> {
    if prior.attempts == 0 {
        return None;
    }
    let first = prior.first_failure_ms.map_or_else(SystemTime::now, |ms| {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
    });
    Some(FailureLog {
        attempts: prior.attempts,
        last: LastFailure::Error("failed before a rebalance or restart".into()),
        first_at: first,
        last_at: first,
    })
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

/// The error text of an attempt that timed out.
const TIMED_OUT: &str = "request timed out";

fn last_failure(outcome: &Outcome) -> LastFailure {
    match outcome {
        Outcome::Response { status, .. } => LastFailure::Status(*status),
        Outcome::Timeout => LastFailure::Error(TIMED_OUT.into()),
        Outcome::Unreachable(e)
        | Outcome::Failed(e)
        | Outcome::Undecodable(e)
        | Outcome::RegistryUnavailable(e) => LastFailure::Error(e.clone()),
    }
}

/// How the commit metadata records `last` (`progress.rs`).
fn failure_code(last: &LastFailure) -> Failure {
    match last {
        LastFailure::Status(s) => Failure::status(*s),
        LastFailure::Error(e) if e == TIMED_OUT => Failure::Timeout,
        LastFailure::Error(_) => Failure::Error,
    }
}

fn describe(last: &LastFailure) -> String {
    match last {
        LastFailure::Status(s) => format!("status {s}"),
        LastFailure::Error(e) => e.clone(),
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

#[cfg(test)]
mod tests;
