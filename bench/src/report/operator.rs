//! The operator scenario's section of the report.
//!
//! Pure: figures in, markdown out. Each figure is printed beside its limit and verdict
//! ([`crate::scenarios::operator::limits`] says why each limit is what it is); nothing is
//! asserted.

use std::fmt::Write as _;

use super::thousands;
use crate::scenarios::operator::{
    OperatorFigures, OperatorResult, SpecChange,
    limits::{LIST_POLL, NOTICE_POLL},
};

pub(super) fn operator_md(o: &mut String, r: &OperatorResult) {
    let f = match r {
        OperatorResult::NotSelected => {
            let _ = writeln!(o, "## Operator\n\nnot selected\n");
            return;
        }
        OperatorResult::NoCluster => {
            let _ = writeln!(o, "## Operator\n\nnot measured (no cluster)\n");
            return;
        }
        OperatorResult::NotMeasured { reason } => {
            let _ = writeln!(o, "## Operator\n\nnot measured: {reason}\n");
            return;
        }
        OperatorResult::Measured(f) => f,
    };
    figures_md(o, f);
}

fn figures_md(o: &mut String, f: &OperatorFigures) {
    let n = thousands(f.resources as f64);
    let _ = writeln!(
        o,
        "## Operator ({n} resources in namespace {}, its own process, /proc; flags `{}`)\n\n\
         | figure | value | target | verdict |\n|---|---:|---|---|",
        f.namespace,
        f.operator_flags.join(" ")
    );
    let limit = format!("≤ {:.0} MiB", f.memory_limit_mib);
    let _ = writeln!(
        o,
        "| **resident memory** with {n} resources, all reconciled, idle (VmRSS) | {:.1} MiB | {limit} (the operator Deployment's memory limit) | {} |",
        f.rss_mib,
        f.verdict_memory.label()
    );
    let _ = writeln!(
        o,
        "| resident memory, peak of the whole run (VmHWM) | {:.1} MiB | {limit} | {} |",
        f.peak_rss_mib,
        f.verdict_peak_memory.label()
    );
    let _ = writeln!(
        o,
        "| **time to reconcile all**: from the first create until every status observed its generation (listed every {:.0} s; the creates, {} at once, took {:.1} s) | {:.1} s | ≤ {:.0} s (the default resync interval) | {} |",
        LIST_POLL.as_secs_f64(),
        f.write_concurrency,
        f.seconds_to_create_all,
        f.seconds_to_reconcile_all,
        f.reconcile_all_limit_seconds,
        f.verdict_reconcile_all.label()
    );
    let by: Vec<String> = f
        .noop_api_writes_by_resource
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" ({})", by.join(", "))
    };
    let _ = writeln!(
        o,
        "| **API writes per no-op reconcile** (`kcp_operator_api_writes_total`; {} writes{by} over {} reconciles after annotating each resource) | {:.2} | 0 | {} |",
        f.noop_api_writes,
        f.noop_reconciles,
        f.api_writes_per_noop_reconcile,
        f.verdict_writes.label()
    );
    spec_change_md(o, &f.spec_change, &n);
    let _ = writeln!(
        o,
        "| reconciles and API writes until idle (informative) | {} reconciles, {} writes | | |\n",
        f.initial_reconciles, f.initial_api_writes
    );
    for note in &f.notes {
        let _ = writeln!(o, "- note: {note}");
    }
    if !f.notes.is_empty() {
        o.push('\n');
    }
}

fn spec_change_md(o: &mut String, c: &SpecChange, n: &str) {
    let seconds = |s: Option<f64>| match s {
        Some(s) => format!("{s:.2} s"),
        None if c.timed_out => format!("not within {:.0} s", c.timeout_seconds),
        None => "—".to_owned(),
    };
    let generation = c
        .generation
        .map_or_else(String::new, |g| format!(" to generation {g}"));
    let _ = writeln!(
        o,
        "| **time to notice a spec change** under load: `{}` of {}{generation}, with {n} resources and the operator quiet, until its status observed it (read every {:.0} ms) | {} | ≤ {:.0} s | {} |",
        c.field,
        c.resource,
        NOTICE_POLL.as_secs_f64() * 1000.0,
        seconds(c.seconds_to_observed),
        c.limit_seconds,
        c.verdict.label()
    );
    let _ = writeln!(
        o,
        "| same, until its Deployment ran the new image (informative) | {} | | |",
        seconds(c.seconds_to_deployment)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::Verdict;
    use std::time::Duration;

    fn figures(writes: u64, rss_mib: f64, notice: Option<Duration>) -> OperatorFigures {
        let reconciles = 1000;
        let per = writes as f64 / reconciles as f64;
        let (verdict_memory, verdict_peak_memory) =
            OperatorFigures::memory_verdicts(rss_mib, rss_mib + 11.25);
        OperatorFigures {
            namespace: "kcp-bench-7".into(),
            operator_flags: vec!["--namespace=kcp-bench-7".into()],
            resources: 1000,
            write_concurrency: 16,
            seconds_to_create_all: 4.04,
            seconds_to_reconcile_all: 21.2,
            reconcile_all_limit_seconds: 30.0,
            verdict_reconcile_all: Verdict::at_most(Some(21.2), 30.0),
            initial_reconciles: 2300,
            initial_api_writes: 4300,
            rss_mib,
            peak_rss_mib: rss_mib + 11.25,
            memory_limit_mib: 128.0,
            verdict_memory,
            verdict_peak_memory,
            noop_reconciles: reconciles,
            noop_api_writes: writes,
            noop_api_writes_by_resource: if writes > 0 {
                [(
                    "resource=\"kafkaconsumerproxies/status\"".to_owned(),
                    writes,
                )]
                .into()
            } else {
                Default::default()
            },
            api_writes_per_noop_reconcile: per,
            verdict_writes: OperatorFigures::writes_verdict(per, reconciles, 1000),
            spec_change: SpecChange::new(
                "bench-0500".into(),
                Some(2),
                notice,
                notice.map(|d| d.saturating_sub(Duration::from_millis(50))),
                Duration::from_secs(60),
            ),
            notes: vec![],
        }
    }

    fn rendered(f: OperatorFigures) -> String {
        let mut o = String::new();
        operator_md(&mut o, &OperatorResult::Measured(Box::new(f)));
        o
    }

    #[test]
    fn operator_figures_render_beside_limits_with_verdicts() {
        let o = rendered(figures(0, 41.25, Some(Duration::from_millis(700))));
        assert!(
            o.contains("## Operator (1,000 resources in namespace kcp-bench-7"),
            "{o}"
        );
        assert!(o.contains("| figure | value | target | verdict |"), "{o}");
        assert!(
            o.contains(
                "idle (VmRSS) | 41.2 MiB | ≤ 128 MiB (the operator Deployment's memory limit) | met |"
            ),
            "{o}"
        );
        assert!(o.contains("(VmHWM) | 52.5 MiB | ≤ 128 MiB | met |"), "{o}");
        assert!(
            o.contains("the creates, 16 at once, took 4.0 s) | 21.2 s | ≤ 30 s (the default resync interval) | met |"),
            "{o}"
        );
        assert!(o.contains("0 writes over 1000 reconciles"), "{o}");
        assert!(o.contains("| 0.00 | 0 | met |"), "{o}");
        assert!(
            o.contains("`spec.sidecar.image` of bench-0500 to generation 2, with 1,000 resources and the operator quiet"),
            "{o}"
        );
        assert!(
            o.contains("(read every 50 ms) | 0.70 s | ≤ 10 s | met |"),
            "{o}"
        );
        assert!(
            o.contains("ran the new image (informative) | 0.65 s |"),
            "{o}"
        );
        assert!(!o.contains("- note:"), "{o}");
    }

    #[test]
    fn missed_limits_say_so() {
        let o = rendered(figures(1000, 130.0, Some(Duration::from_secs(12))));
        assert!(
            o.contains(
                "| 130.0 MiB | ≤ 128 MiB (the operator Deployment's memory limit) | **missed** |"
            ),
            "{o}"
        );
        assert!(o.contains("| 141.2 MiB | ≤ 128 MiB | **missed** |"), "{o}");
        assert!(
            o.contains(
                "1000 writes (resource=\"kafkaconsumerproxies/status\": 1000) over 1000 reconciles"
            ),
            "{o}"
        );
        assert!(o.contains("| 1.00 | 0 | **missed** |"), "{o}");
        assert!(o.contains("| 12.00 s | ≤ 10 s | **missed** |"), "{o}");

        let mut never = figures(0, 41.0, None);
        never
            .notes
            .push("spec change: the operator was busy".into());
        let o = rendered(never);
        assert!(
            o.contains("| not within 60 s | ≤ 10 s | **missed** |"),
            "{o}"
        );
        assert!(
            o.contains("- note: spec change: the operator was busy"),
            "{o}"
        );

        let mut failed = figures(0, 41.0, None);
        failed.spec_change = SpecChange::new(
            "bench-0500".into(),
            None,
            None,
            None,
            Duration::from_secs(60),
        );
        let o = rendered(failed);
        assert!(o.contains("of bench-0500, with"), "no generation: {o}");
        assert!(o.contains("| — | ≤ 10 s | not measured |"), "{o}");
    }

    #[test]
    fn the_json_carries_figures_limits_and_verdicts() {
        let json = serde_json::to_value(OperatorResult::Measured(Box::new(figures(
            0,
            41.25,
            Some(Duration::from_millis(700)),
        ))))
        .expect("json");
        assert_eq!(json["result"], "measured");
        assert_eq!(json["resources"], 1000);
        assert_eq!(json["noopApiWrites"], 0);
        assert_eq!(json["verdictWrites"], "met");
        assert_eq!(json["memoryLimitMib"], 128.0);
        assert_eq!(json["verdictMemory"], "met");
        assert_eq!(json["reconcileAllLimitSeconds"], 30.0);
        assert_eq!(json["verdictReconcileAll"], "met");
        assert_eq!(json["specChange"]["field"], "spec.sidecar.image");
        assert_eq!(json["specChange"]["secondsToObserved"], 0.7);
        assert_eq!(json["specChange"]["limitSeconds"], 10.0);
        assert_eq!(json["specChange"]["verdict"], "met");
    }

    #[test]
    fn an_unmeasured_operator_says_why() {
        let mut o = String::new();
        operator_md(&mut o, &OperatorResult::NoCluster);
        assert_eq!(o, "## Operator\n\nnot measured (no cluster)\n\n");
        let failed = OperatorResult::NotMeasured {
            reason: "checking for the KafkaConsumerProxy CRD: connection refused".into(),
        };
        let mut o = String::new();
        operator_md(&mut o, &failed);
        assert!(
            o.contains("not measured: checking for the KafkaConsumerProxy CRD: connection refused"),
            "{o}"
        );
        assert!(failed.is_error() && !OperatorResult::NoCluster.is_error());
        let json = serde_json::to_value(&failed).expect("json");
        assert_eq!(json["result"], "notMeasured");
        assert!(
            json["reason"]
                .as_str()
                .is_some_and(|r| r.contains("refused"))
        );
    }
}
