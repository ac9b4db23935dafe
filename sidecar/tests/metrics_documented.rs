//! Every metric `/metrics` exposes is in the README's metrics table and in
//! `docs/observability.md`, and every metric they list exists: the tables are a promise.

use std::{collections::BTreeSet, path::PathBuf, sync::Arc};

use kcp_sidecar::{Stats, forward::Outcome, metrics};

/// Metric families as exposed: `# TYPE kcp_x counter` gives `kcp_x_total`, as scraped.
fn exposed() -> BTreeSet<String> {
    let stats = Arc::new(Stats::default());
    // A labelled family without samples is not printed at all: give it one.
    stats.metrics.attempt_failed(&Outcome::Timeout);
    let text = metrics::encode(&metrics::registry(&stats));
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (name, kind) = (parts.next()?, parts.next()?);
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            })
        })
        .collect()
}

/// The names in a Markdown table's first column that start with `kcp_` (operator metrics,
/// `kcp_operator_*`, are the operator's).
fn documented(file: &str) -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .filter_map(|l| l.strip_prefix("| `kcp_"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("kcp_{name}"))
        .filter(|name| !name.starts_with("kcp_operator_"))
        .collect()
}

#[test]
fn readme_and_observability_doc_list_exactly_the_exposed_metrics() {
    let exposed = exposed();
    assert!(exposed.len() >= 20, "found only {exposed:?}");
    for file in ["README.md", "docs/observability.md"] {
        let listed = documented(file);
        let missing: Vec<_> = exposed.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&exposed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{file}: not listed {missing:?}; listed but not exposed {extra:?}"
        );
    }
}
