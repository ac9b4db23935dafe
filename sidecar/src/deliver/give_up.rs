//! Giving a record up: `onExhausted` (dead-letter, skip, or block), the dead-letter produce
//! and what the partition's next commit says of it, and how a failure is described (the
//! dead-letter headers, the commit metadata's failure code).
//!
//! Part of `deliver`: these are the record's last steps once `drive` decided it cannot be
//! delivered.

use std::time::SystemTime;

use kcp_crds::{
    progress::{DeadLetterKind, DeadLetterNote, Failure},
    v1alpha1::OnExhausted,
};
use tracing::{error, warn};

use super::{Deliverer, End, error_source, now_ms, sleep_unless};
use crate::{
    deadletter::{FailureLog, LastFailure},
    dispatch::Job,
    forward::Outcome,
    retry::jitter,
    stats::Stats,
};

impl Deliverer {
    /// Applies `onExhausted`; `None` means block: wait `maxBackoff` and try again.
    pub(super) async fn exhausted(
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
    pub(super) async fn dead_letter(
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
pub(super) fn prior_failures(prior: &crate::progress::RecordState) -> Option<FailureLog> {
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

/// The error text of an attempt that timed out.
const TIMED_OUT: &str = "request timed out";

pub(super) fn last_failure(outcome: &Outcome) -> LastFailure {
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
pub(super) fn failure_code(last: &LastFailure) -> Failure {
    match last {
        LastFailure::Status(s) => Failure::status(*s),
        LastFailure::Error(e) if e == TIMED_OUT => Failure::Timeout,
        LastFailure::Error(_) => Failure::Error,
    }
}

pub(super) fn describe(last: &LastFailure) -> String {
    match last {
        LastFailure::Status(s) => format!("status {s}"),
        LastFailure::Error(e) => e.clone(),
    }
}
