//! The monitoring kit (`manifests/monitoring/`) as the API server, Prometheus and Grafana see it:
//! every object admitted by its published CRD schema; every PromQL expression of the alerts and
//! the dashboard parsed by a PromQL parser and using only metrics, labels and label values that
//! `docs/observability.md` documents (the tables other tests hold to the real `/metrics`); every
//! alert explained in the docs and in `docs/runbooks.md`; a dashboard Grafana can load. What the
//! monitors scrape is `monitoring_targets.rs`. Each check also proves it can fail, on a broken
//! copy.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::parser::{self, Expr};
use serde_json::{Value, json};
use support::{
    crd_schema::{Crds, renamed, with},
    kit::{
        Checker, KIT, alerts, component, dashboard, kit_object, kit_objects, kit_queries, panels,
    },
    metrics_doc::{Documented, Source},
    promql, read, rendered_at, repo, strings, yaml_docs,
};

const RUNBOOKS: &str = "docs/runbooks.md";

#[test]
fn metric_tables_are_read_with_their_labels_values_and_source() {
    let doc = "# x\n## Metrics\n\n| name | type | labels | meaning |\n|---|---|---|---|\n\
        | `a_total` | counter | `outcome` = `ok`, `bad` (final) | a |\n\
        | `b` | histogram | | b |\n\n### Operator metrics\n\n\
        | name | type | labels | meaning |\n|---|---|---|---|\n\
        | `c` | gauge | `namespace`, `name` | c \\| d |\n\n## Logs\n\n\
        | name | type | labels | meaning |\n|---|---|---|---|\n| `z` | gauge | | no |\n";
    let d = Documented::parse(doc).expect("parses");
    assert_eq!(
        d.metrics.keys().collect::<Vec<_>>(),
        ["a_total", "b", "c"],
        "only the tables of the Metrics section"
    );
    assert_eq!(
        d.metrics["a_total"].labels,
        BTreeSet::from(["outcome".to_owned()])
    );
    assert_eq!(
        d.metrics["a_total"].values["outcome"],
        BTreeSet::from(["ok".to_owned(), "bad".to_owned()])
    );
    assert_eq!(
        d.metrics["c"].labels,
        BTreeSet::from(["namespace".to_owned(), "name".to_owned()])
    );
    assert_eq!(d.metrics["a_total"].source, Source::Sidecar);
    assert_eq!(d.metrics["c"].source, Source::Operator);
    assert_eq!(
        d.series("b_bucket").map(|(m, le)| (m.name.as_str(), le)),
        Some(("b", Some("le")))
    );
    assert!(
        d.series("a_total_bucket").is_none(),
        "only histograms have buckets"
    );
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_documented() {
    let checker = Checker::new(Documented::load());
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in kit_queries() {
        match checker.check(&expr) {
            Ok(metrics) => used.extend(metrics),
            Err(p) => problems.extend(p.into_iter().map(|p| format!("{place}: {p}"))),
        }
    }
    // The dashboard shows every per-resource series the operator documents.
    let dashboard_text = read(format!("{KIT}/dashboard.json"));
    for metric in checker.docs.from(Source::Operator) {
        if metric.name.starts_with("kcp_operator_resource_")
            && !dashboard_text.contains(&metric.name)
        {
            problems.push(format!("the dashboard does not show `{}`", metric.name));
        }
    }
    assert!(
        problems.is_empty(),
        "the monitoring kit disagrees with docs/observability.md:\n{}",
        problems.join("\n")
    );
    assert!(used.len() >= 10, "the kit uses {used:?}");

    // The checker is not a rubber stamp.
    for (bad, why) in [
        (
            "max(kcp_operator_resource_lag_secnds)",
            "kcp_operator_resource_lag_secnds",
        ),
        ("max by (namespace (kcp_app_ready)", "does not parse"),
        ("rate(kcp_commit_failures_total)", "does not parse"),
        (r#"kcp_deliveries_total{outcom="delivered"}"#, "`outcom`"),
        (r#"kcp_deliveries_total{outcome="deliverd"}"#, "deliverd"),
        ("sum by (topik) (kcp_partition_lag_records)", "`topik`"),
        (
            "kcp_commit_failures_total_bucket",
            "kcp_commit_failures_total_bucket",
        ),
    ] {
        let problems = checker
            .check(bad)
            .expect_err(&format!("`{bad}` must be refused"));
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "`{bad}`: {problems:?}"
        );
    }
}

#[test]
fn the_component_lists_only_files_that_exist_and_every_file_it_has() {
    let c = component();
    assert_eq!(c["apiVersion"], "kustomize.config.k8s.io/v1alpha1");
    assert_eq!(c["kind"], "Component");
    let mut referenced: BTreeSet<String> = strings(&c["resources"]).into_iter().collect();
    for generator in c["configMapGenerator"].as_array().into_iter().flatten() {
        for file in strings(&generator["files"]) {
            // `key=path` or `path`.
            let path = file.rsplit_once('=').map_or(file.as_str(), |(_, p)| p);
            referenced.insert(path.to_owned());
        }
    }
    for patch in c["patches"].as_array().into_iter().flatten() {
        if let Some(path) = patch["path"].as_str() {
            referenced.insert(path.to_owned());
        }
    }
    let dir = repo().join(KIT);
    for file in &referenced {
        assert!(
            dir.join(file).is_file(),
            "{KIT}/kustomization.yaml names {file}, which does not exist"
        );
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("the kit's folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(
        present, referenced,
        "every file of {KIT} is part of the component"
    );

    // The overlay that installs everything includes it and only names what exists.
    let overlay_dir = "manifests/overlays/monitoring";
    let overlay = yaml_docs(&read(format!("{overlay_dir}/kustomization.yaml"))).remove(0);
    assert_eq!(strings(&overlay["components"]), ["../../monitoring"]);
    for dir in strings(&overlay["resources"]) {
        assert!(
            repo()
                .join(overlay_dir)
                .join(&dir)
                .join("kustomization.yaml")
                .is_file(),
            "{overlay_dir} names {dir}, which is no kustomization"
        );
    }
}

#[test]
fn every_kit_object_is_admitted_by_its_published_crd_schema() {
    let crds = Crds::load();
    let objects = kit_objects();
    let kinds: BTreeSet<&str> = objects
        .iter()
        .filter_map(|(_, o)| o["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["PodMonitor", "PrometheusRule", "ServiceMonitor"])
    );
    let mut refused = Vec::new();
    for (file, obj) in &objects {
        match crds.admit(obj) {
            Ok(errors) => refused.extend(errors.into_iter().map(|e| format!("{file}: {e}"))),
            Err(e) => refused.push(format!("{file}: {e}")),
        }
        assert_eq!(
            obj["metadata"]["namespace"], "kcp-system",
            "{file}: installed next to the operator"
        );
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));

    // The schemas are not rubber stamps: a misspelled field, a wrong type, a bad duration.
    let pod_monitor = kit_object("PodMonitor");
    let rule = kit_object("PrometheusRule");
    let service_monitor = kit_object("ServiceMonitor");
    for (broken, why) in [
        (
            renamed(
                &pod_monitor,
                "/spec/podMetricsEndpoints",
                "podMetricEndpoints",
            ),
            "podMetricEndpoints",
        ),
        (
            with(&pod_monitor, "/spec/selector", Value::Null),
            "selector",
        ),
        (
            with(
                &service_monitor,
                "/spec/endpoints/0/honorLabels",
                json!("yes"),
            ),
            "honorLabels",
        ),
        (
            with(&rule, "/spec/groups/0/rules/0/for", json!("10 minutes")),
            "for",
        ),
        (
            with(
                &rule,
                "/spec/groups/0/rules/0/annotations/summary",
                json!(1),
            ),
            "summary",
        ),
        // A CEL rule of the CRD (x-kubernetes-validations), not a schema type.
        (
            with(
                &pod_monitor,
                "/spec/podMetricsEndpoints/0/oauth2",
                json!({
                    "clientId": { "secret": { "name": "oauth", "key": "id" } },
                    "clientSecret": { "name": "oauth", "key": "secret" },
                    "grantType": "JWTBearer",
                    "tokenUrl": "https://auth.example.com/token"
                }),
            ),
            "clientSecret is only allowed",
        ),
    ] {
        let errors = crds.admit(&broken).expect("a vendored CRD");
        assert!(
            errors.iter().any(|e| e.contains(why)),
            "a broken {} must be refused naming {why}: {errors:?}",
            broken["kind"]
        );
    }
}

#[test]
fn kustomize_builds_the_kit_with_its_dashboard_configmap() {
    let Some(objs) = rendered_at("manifests/overlays/monitoring") else {
        return;
    };
    let Some(install) = rendered_at("manifests") else {
        return;
    };
    let id = |o: &Value| format!("{}/{}", o["kind"], o["metadata"]["name"]);
    let ids: BTreeSet<String> = objs.iter().map(id).collect();
    for o in install.iter().chain(kit_objects().iter().map(|(_, o)| o)) {
        assert!(
            ids.contains(&id(o)),
            "the overlay installs {}: {ids:?}",
            id(o)
        );
    }
    let config_map = objs
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "kcp-grafana-dashboard")
        .expect("the dashboard ConfigMap, with a fixed name");
    assert_eq!(config_map["metadata"]["namespace"], "kcp-system");
    assert_eq!(
        config_map["metadata"]["labels"]["grafana_dashboard"], "1",
        "the label Grafana's dashboard sidecar looks for"
    );
    let data = config_map["data"].as_object().expect("data");
    assert_eq!(data.len(), 1, "{:?}", data.keys());
    let (key, json) = data.iter().next().expect("one key");
    assert!(key.ends_with(".json"), "{key}");
    let embedded: Value = serde_json::from_str(json.as_str().expect("text")).expect("JSON");
    assert_eq!(
        embedded,
        dashboard(),
        "the ConfigMap holds dashboard.json as is"
    );
}

#[test]
fn every_alert_says_what_happened_and_links_its_runbook_section() {
    let runbooks = read(RUNBOOKS);
    let anchors: BTreeSet<String> = support::h2_anchors(&runbooks).into_iter().collect();
    let base = format!("{}/blob/main/{RUNBOOKS}#", env!("CARGO_PKG_REPOSITORY"));
    let mut names = BTreeSet::new();
    for rule in alerts() {
        let alert = rule["alert"].as_str().expect("alerting rules only");
        assert!(names.insert(alert.to_owned()), "{alert} twice");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{alert}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(
                text.len() > 20,
                "{alert}: annotation {key} says too little: {text:?}"
            );
        }
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = url
            .strip_prefix(&base)
            .unwrap_or_else(|| panic!("{alert}: runbook_url {url:?} is not under {base}"));
        assert_eq!(
            anchor,
            alert.to_lowercase(),
            "{alert}: the section named after it"
        );
        assert!(
            anchors.contains(anchor),
            "{alert}: {RUNBOOKS} has no section `## {alert}`"
        );
        let section = runbooks
            .split(&format!("\n## {alert}\n"))
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap_or_default();
        for part in ["What it means", "How to look", "What to do"] {
            assert!(
                section.contains(&format!("**{part}")),
                "{RUNBOOKS}, {alert}: no \"{part}\""
            );
        }
    }
    // Every alerting section of the runbooks belongs to an alert (none left after a rename).
    let sections: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## KafkaConsumerProxy"))
        .map(|rest| format!("KafkaConsumerProxy{}", rest.trim()))
        .collect();
    assert_eq!(sections, names, "{RUNBOOKS} sections and the alerts");
    // The lag alert waits before firing: a burst that is soon caught up is no page.
    let behind = alerts()
        .into_iter()
        .find(|r| {
            r["expr"]
                .as_str()
                .is_some_and(|e| e.contains("kcp_operator_resource_lag_seconds"))
        })
        .expect("an alert on the lag in seconds");
    assert!(behind["for"].is_string(), "{behind}");
}

#[test]
fn the_dashboard_parses_and_every_panel_has_a_query() {
    let dashboard = dashboard();
    assert!(
        dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "a fixed uid"
    );
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(datasource["query"], "prometheus");
    let datasource_ref = format!("${{{}}}", datasource["name"].as_str().expect("name"));
    let mut ids = BTreeSet::new();
    let all = panels(&dashboard);
    let queried: Vec<&Value> = all.iter().filter(|p| p["type"] != "row").collect();
    assert!(queried.len() >= 10, "{} panels", queried.len());
    for panel in &all {
        assert!(
            ids.insert(panel["id"].to_string()),
            "panel id {} twice",
            panel["id"]
        );
        assert!(panel["gridPos"].is_object(), "{}: gridPos", panel["title"]);
    }
    for panel in queried {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "{title}: no query");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "{title}: a target without an expression"
            );
            assert!(
                ref_ids.insert(target["refId"].to_string()),
                "{title}: refId twice"
            );
            for ds in [&panel["datasource"], &target["datasource"]] {
                assert_eq!(ds["uid"], datasource_ref.as_str(), "{title}: data source");
            }
        }
    }
}

/// `10m` as the docs write it (`10 minute`, matching "10 minutes" too).
fn in_words(duration: &str) -> String {
    let (n, unit) = duration.split_at(duration.len() - 1);
    match unit {
        "m" => format!("{n} minute"),
        "h" => format!("{n} hour"),
        _ => panic!("a duration in minutes or hours: {duration}"),
    }
}

/// The numbers an expression compares its result with (`> 300`, `== 0`).
fn thresholds(expr: &Expr) -> Vec<f64> {
    match expr {
        Expr::Binary(b) => {
            let mut out = thresholds(&b.lhs);
            if let Expr::NumberLiteral(n) = b.rhs.as_ref() {
                out.push(n.val);
            }
            out.extend(thresholds(&b.rhs));
            out
        }
        Expr::Paren(p) => thresholds(&p.expr),
        _ => Vec::new(),
    }
}

#[test]
fn the_docs_alert_table_says_what_each_alert_watches() {
    let doc = read("docs/observability.md");
    let section = doc
        .split("\n## Monitoring kit")
        .nth(1)
        .expect("docs/observability.md: a \"Monitoring kit\" section");
    let rows: BTreeMap<String, String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `KafkaConsumerProxy"))
        .map(|rest| {
            let (name, cells) = rest.split_once('`').expect("a name cell");
            (format!("KafkaConsumerProxy{name}"), cells.to_owned())
        })
        .collect();
    let rules = alerts();
    assert_eq!(
        rows.keys().collect::<BTreeSet<_>>(),
        rules
            .iter()
            .filter_map(|r| r["alert"].as_str().map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .iter()
            .collect(),
        "the table lists every alert"
    );
    for rule in &rules {
        let alert = rule["alert"].as_str().expect("an alert");
        let row = &rows[alert];
        let severity = rule["labels"]["severity"].as_str().expect("severity");
        assert!(
            row.trim_end().ends_with(&format!("| {severity} |")),
            "{alert}: {row}"
        );
        let expr = rule["expr"].as_str().expect("expr");
        for metric in promql::parse(expr).expect("parses").metrics() {
            assert!(
                row.contains(&format!("`{metric}`")),
                "{alert}: the row names {metric}: {row}"
            );
        }
        let ast = parser::parse(expr).expect("parses");
        for n in thresholds(&ast).into_iter().filter(|n| *n != 0.0) {
            assert!(
                row.contains(&n.to_string()),
                "{alert}: the row says {n}: {row}"
            );
        }
        if let Some(wait) = rule["for"].as_str() {
            assert!(
                row.contains(&in_words(wait)),
                "{alert}: the row says {wait}: {row}"
            );
        }
    }
}
