//! What the operator scenario reports: the figures, the limits beside them and the verdicts.
//!
//! Pure. No client: the scenario (`drive`) measures; these types hold the result (serialized
//! into the report's JSON) and decide each verdict from a figure and its limit
//! ([`super::limits`]).

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

use super::{
    limits::{MEMORY_LIMIT_MIB, NOTICE_LIMIT},
    objects::SPEC_CHANGE_FIELD,
};
use crate::scenarios::Verdict;

/// The scenario's outcome, as it appears in the report.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum OperatorResult {
    /// `--scenario` did not ask for it.
    NotSelected,
    /// `KUBECONFIG` is not set.
    NoCluster,
    /// A cluster was given but the scenario could not run; `reason` says why and what to do.
    NotMeasured {
        reason: String,
    },
    Measured(Box<OperatorFigures>),
}

impl OperatorResult {
    /// Whether a cluster was given and the scenario failed (the report keeps the scratch
    /// directory, with the operator's log, for diagnosis).
    pub fn is_error(&self) -> bool {
        matches!(self, Self::NotMeasured { .. })
    }
}

/// What the operator scenario measured.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorFigures {
    /// The scratch namespace (deleted at the end).
    pub namespace: String,
    /// The operator's flags.
    pub operator_flags: Vec<String>,
    pub resources: usize,
    /// Creates (and annotations) in flight at once.
    pub write_concurrency: usize,
    /// From the first create until the last one was answered (informative).
    pub seconds_to_create_all: f64,
    /// From the first create until every resource's status observed its generation (listed
    /// every [`super::limits::LIST_POLL`]).
    pub seconds_to_reconcile_all: f64,
    pub reconcile_all_limit_seconds: f64,
    pub verdict_reconcile_all: Verdict,
    /// Reconciles and API writes from start until the operator was quiet (informative).
    pub initial_reconciles: u64,
    pub initial_api_writes: u64,
    /// `VmRSS` once all resources are reconciled and the operator is quiet.
    pub rss_mib: f64,
    /// `VmHWM` at the end: the peak of the whole run.
    pub peak_rss_mib: f64,
    pub memory_limit_mib: f64,
    pub verdict_memory: Verdict,
    pub verdict_peak_memory: Verdict,
    /// Reconciles finished after annotating every resource.
    pub noop_reconciles: u64,
    /// `kcp_operator_api_writes_total` added by them, summed over `resource`.
    pub noop_api_writes: u64,
    /// The same by label set (`resource="..."`), only those that moved.
    pub noop_api_writes_by_resource: BTreeMap<String, u64>,
    pub api_writes_per_noop_reconcile: f64,
    /// Target 0.
    pub verdict_writes: Verdict,
    /// The time to notice a spec change with every resource present.
    pub spec_change: SpecChange,
    /// Anything that makes the figures less clean (the operator never went quiet, cleanup
    /// failed).
    pub notes: Vec<String>,
}

impl OperatorFigures {
    /// The memory verdicts: both figures against [`MEMORY_LIMIT_MIB`].
    pub fn memory_verdicts(rss_mib: f64, peak_rss_mib: f64) -> (Verdict, Verdict) {
        (
            Verdict::at_most(Some(rss_mib), MEMORY_LIMIT_MIB),
            Verdict::at_most(Some(peak_rss_mib), MEMORY_LIMIT_MIB),
        )
    }

    /// The no-op verdict: 0 writes per reconcile, judged only when every resource was
    /// reconciled again.
    pub fn writes_verdict(per_reconcile: f64, noop_reconciles: u64, resources: usize) -> Verdict {
        if noop_reconciles >= resources as u64 {
            Verdict::at_most(Some(per_reconcile), 0.0)
        } else {
            Verdict::NotMeasured
        }
    }
}

/// One spec change, with every resource present and the operator quiet.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecChange {
    /// The changed resource.
    pub resource: String,
    /// The changed field ([`SPEC_CHANGE_FIELD`]).
    pub field: String,
    /// The resource's generation after the change.
    pub generation: Option<i64>,
    /// From sending the change until the status observed `generation` (read every
    /// [`super::limits::NOTICE_POLL`]); `None` when not within `timeout_seconds`, or not measured.
    pub seconds_to_observed: Option<f64>,
    /// From sending the change until the Deployment ran the new image (informative).
    pub seconds_to_deployment: Option<f64>,
    /// The change was sent and not noticed within `timeout_seconds`.
    pub timed_out: bool,
    pub timeout_seconds: f64,
    pub limit_seconds: f64,
    pub verdict: Verdict,
}

impl SpecChange {
    /// The figures of a change of `resource` and their verdict: a change not noticed within
    /// the timeout missed the limit; one that could not be made (`generation` unknown) is not
    /// measured.
    pub fn new(
        resource: String,
        generation: Option<i64>,
        observed: Option<Duration>,
        deployment: Option<Duration>,
        timeout: Duration,
    ) -> Self {
        let seconds_to_observed = observed.map(|d| d.as_secs_f64());
        let timed_out = generation.is_some() && observed.is_none();
        let verdict = match seconds_to_observed {
            Some(s) => Verdict::at_most(Some(s), NOTICE_LIMIT.as_secs_f64()),
            None if timed_out => Verdict::Missed,
            None => Verdict::NotMeasured,
        };
        Self {
            resource,
            field: SPEC_CHANGE_FIELD.to_owned(),
            generation,
            seconds_to_observed,
            seconds_to_deployment: deployment.map(|d| d.as_secs_f64()),
            timed_out,
            timeout_seconds: timeout.as_secs_f64(),
            limit_seconds: NOTICE_LIMIT.as_secs_f64(),
            verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_limits() {
        assert_eq!(
            OperatorFigures::memory_verdicts(41.0, 127.9),
            (Verdict::Met, Verdict::Met)
        );
        assert_eq!(
            OperatorFigures::memory_verdicts(41.0, 130.0),
            (Verdict::Met, Verdict::Missed)
        );
        assert_eq!(
            OperatorFigures::writes_verdict(0.0, 1000, 1000),
            Verdict::Met
        );
        assert_eq!(
            OperatorFigures::writes_verdict(0.01, 1000, 1000),
            Verdict::Missed
        );
        assert_eq!(
            OperatorFigures::writes_verdict(0.0, 999, 1000),
            Verdict::NotMeasured,
            "not every resource was reconciled again"
        );
    }

    #[test]
    fn a_spec_change_is_judged_by_when_its_status_observed_it() {
        let timeout = Duration::from_secs(60);
        let seen = SpecChange::new(
            "bench-0500".into(),
            Some(2),
            Some(Duration::from_millis(700)),
            Some(Duration::from_millis(650)),
            timeout,
        );
        assert_eq!(seen.verdict, Verdict::Met);
        assert_eq!(seen.field, "spec.sidecar.image");
        assert!(!seen.timed_out);
        let slow = SpecChange::new(
            "bench-0500".into(),
            Some(2),
            Some(Duration::from_secs(11)),
            None,
            timeout,
        );
        assert_eq!(slow.verdict, Verdict::Missed);
        let never = SpecChange::new("bench-0500".into(), Some(2), None, None, timeout);
        assert!(never.timed_out);
        assert_eq!(never.verdict, Verdict::Missed, "not seen at all is a miss");
        let failed = SpecChange::new("bench-0500".into(), None, None, None, timeout);
        assert!(!failed.timed_out);
        assert_eq!(
            failed.verdict,
            Verdict::NotMeasured,
            "the change was not made"
        );
    }
}
