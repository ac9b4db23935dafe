//! How far the operator scenario goes for `n` resources, and the limits its figures are printed
//! beside. Pure: each number next to its reason.
//!
//! Limits are printed with a verdict, never asserted: a cluster on a laptop is not the cluster
//! of a user, and the figures are for reading.

use std::time::Duration;

/// Resources created (and annotated) at once: enough to create 1,000 in a few seconds on kind,
/// few enough that the API server's default in-flight limit (400 mutating requests) is far away
/// and the creates do not starve the operator's own requests.
pub const WRITE_CONCURRENCY: usize = 16;

/// Memory limit: `resources.limits.memory` of the operator's Deployment in
/// `manifests/operator/deployment.yaml` (128Mi). Above it the kubelet kills the operator, so both
/// the idle figure and the peak must stay below it.
pub const MEMORY_LIMIT_MIB: f64 = 128.0;

/// Time to reconcile all: the operator's default `--lag-refresh-interval` (30 s). Every resource
/// is resynced once per interval; an operator that needs longer than one interval to reconcile
/// every resource falls behind and never catches up.
pub const RECONCILE_ALL_LIMIT: Duration = Duration::from_secs(30);

/// Time to notice a spec change while every resource is present and the operator is quiet. The
/// controller waits 500 ms (its debounce) before a reconcile, and nothing else is queued, so what
/// remains is the watch's delivery and one reconcile; 10 s is 20 times the debounce, and about
/// when a user who ran `kubectl apply` starts to wonder whether anything happened.
pub const NOTICE_LIMIT: Duration = Duration::from_secs(10);

/// How often the changed resource is read while waiting: the resolution of the notice figure.
pub const NOTICE_POLL: Duration = Duration::from_millis(50);

/// How often the resources are listed while waiting for every status: the resolution of the
/// time to reconcile all (a list of 1,000 resources is a few MB; once a second keeps it cheap).
pub const LIST_POLL: Duration = Duration::from_secs(1);

/// How long each wait of the scenario may take for a given number of resources. The timeouts
/// are far above what the limits allow (a missed limit is a figure, a timeout is "not
/// measured"), and grow with the count, so a run with 1,000 resources on a slow cluster still
/// ends with figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Until the operator's `/readyz` answers.
    pub ready: Duration,
    /// From the first create until every status observed its generation (creates included).
    pub reconcile_all: Duration,
    /// Until the operator is quiet, once per round (after creating, after annotating).
    pub quiet: Duration,
    /// Until the changed resource's status observed its new generation; past it the change is
    /// reported as not noticed (a missed limit, not an error).
    pub notice: Duration,
    /// Everything between starting the operator and stopping it, so cleanup always runs.
    pub drive: Duration,
}

impl Budget {
    /// The waits for `n` resources: a fixed part, plus 250 ms a resource to reconcile all (each
    /// is reconciled about three times: created, its lag probe failed, its Deployment's status
    /// moved; four at once), 100 ms a resource to go quiet, and a drive bound covering them all.
    pub fn for_resources(n: usize) -> Self {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let ready = Duration::from_secs(30);
        let reconcile_all = Duration::from_secs(120) + Duration::from_millis(250) * n;
        let quiet = Duration::from_secs(60) + Duration::from_millis(100) * n;
        let notice = NOTICE_LIMIT * 6;
        // The annotations of the no-op round, listing, scraping and stopping: 60 s and 10 ms a
        // resource on top of the waits.
        let rest = Duration::from_secs(60) + Duration::from_millis(10) * n;
        Self {
            ready,
            reconcile_all,
            quiet,
            notice,
            drive: ready + reconcile_all + quiet * 2 + notice + rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_with_the_count_and_the_drive_bound_covers_them() {
        let small = Budget::for_resources(100);
        let large = Budget::for_resources(1000);
        assert_eq!(small.reconcile_all, Duration::from_secs(145));
        assert_eq!(large.reconcile_all, Duration::from_secs(370));
        assert_eq!(large.quiet, Duration::from_secs(160));
        for b in [small, large, Budget::for_resources(1)] {
            assert!(
                b.drive > b.ready + b.reconcile_all + b.quiet * 2 + b.notice,
                "{b:?}"
            );
            assert!(
                b.notice > NOTICE_LIMIT,
                "a slow notice is a figure, not a timeout"
            );
            assert!(
                b.reconcile_all > RECONCILE_ALL_LIMIT,
                "a slow reconcile is a figure, not a timeout"
            );
        }
        // Whatever the count, the bound is finite and a wait never shrinks.
        let huge = Budget::for_resources(usize::MAX);
        assert!(huge.reconcile_all >= large.reconcile_all);
    }

    #[test]
    fn the_memory_limit_is_the_operators_deployment_limit() {
        let manifest = include_str!("../../../../manifests/operator/deployment.yaml");
        let limits = manifest
            .split_once("limits:")
            .map(|(_, rest)| rest)
            .expect("the operator's Deployment sets limits");
        let memory = limits
            .lines()
            .find_map(|l| l.trim().strip_prefix("memory:"))
            .map(str::trim)
            .expect("a memory limit");
        assert_eq!(
            memory,
            format!("{MEMORY_LIMIT_MIB:.0}Mi"),
            "update MEMORY_LIMIT_MIB and bench/README.md"
        );
    }

    #[test]
    fn the_reconcile_all_limit_is_the_operators_default_resync() {
        use clap::Parser as _;
        let args = kcp_operator::cli::Args::try_parse_from(["kcp-operator"]).expect("defaults");
        assert_eq!(args.lag_refresh_interval.as_std(), RECONCILE_ALL_LIMIT);
    }
}
