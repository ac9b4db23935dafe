//! The operator's metrics table in `docs/observability.md` lists exactly what `/metrics`
//! exposes, and the per-resource series carry each resource's figures until it is no longer
//! reconciled.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use kcp_operator::metrics::{CategoryLabel, Figures, Metrics};
use prometheus_client::{encoding::text::encode, registry::Registry};

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

/// Families as scraped: a counter `x` is scraped as `x_total`.
fn exposed(text: &str) -> BTreeSet<String> {
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

fn documented() -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/observability.md");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| `kcp_operator_"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("kcp_operator_{name}"))
        .collect()
}

#[test]
fn the_table_lists_exactly_the_exposed_metrics() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    // A labelled family without samples is not printed at all: give each one.
    metrics.api_write("deployments");
    metrics
        .reconcile_failures
        .get_or_create(&CategoryLabel {
            category: "invalid_spec",
        })
        .inc();
    let exposed = exposed(&scrape(&registry));
    let listed = documented();
    assert!(exposed.len() >= 15, "{exposed:?}");
    assert_eq!(
        exposed, listed,
        "docs/observability.md \"Operator metrics\" must list what /metrics exposes"
    );
}

#[test]
fn each_resource_has_its_series_until_it_is_no_longer_reconciled() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics.resources.set(
        "shop",
        "orders",
        Figures {
            lag_records: Some(1_234),
            lag_seconds: Some(252),
            stuck_partitions: 1,
            dead_lettered: Some(7),
            ready: true,
        },
    );
    metrics.resources.set(
        "shop",
        "payments",
        Figures {
            lag_records: None,
            lag_seconds: None,
            ..Figures::default()
        },
    );
    let text = scrape(&registry);
    for sample in [
        r#"kcp_operator_resource_lag_records{namespace="shop",name="orders"} 1234"#,
        r#"kcp_operator_resource_lag_seconds{namespace="shop",name="orders"} 252"#,
        r#"kcp_operator_resource_stuck_partitions{namespace="shop",name="orders"} 1"#,
        r#"kcp_operator_resource_dead_lettered_records{namespace="shop",name="orders"} 7"#,
        r#"kcp_operator_resource_ready{namespace="shop",name="orders"} 1"#,
        r#"kcp_operator_resource_ready{namespace="shop",name="payments"} 0"#,
        r#"kcp_operator_resource_stuck_partitions{namespace="shop",name="payments"} 0"#,
    ] {
        assert!(text.contains(sample), "{sample} not in\n{text}");
    }
    assert!(
        !text.contains(r#"kcp_operator_resource_lag_seconds{namespace="shop",name="payments"}"#),
        "no figure read yet: no sample rather than a made-up 0"
    );

    // No reconcile within the time to live (a deleted resource): its series go.
    metrics.resources.set_ttl(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(2));
    let text = scrape(&registry);
    assert!(!text.contains(r#"name="orders""#), "{text}");
}
