//! The monitoring kit (`manifests/monitoring/`) as its tests read it: the component, its
//! objects, the dashboard, the alerts, every PromQL expression they hold, and the check of an
//! expression against the documented metrics (`Checker`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    metrics_doc::{Documented, Source},
    promql, read, strings, yaml_docs,
};

pub const KIT: &str = "manifests/monitoring";

/// Labels Prometheus (with the Prometheus Operator's default relabelings) puts on every series
/// it scrapes from a PodMonitor or ServiceMonitor target.
pub const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "namespace",
    "pod",
    "container",
    "endpoint",
    "service",
];

pub fn component() -> Value {
    yaml_docs(&read(format!("{KIT}/kustomization.yaml"))).remove(0)
}

/// Every object of the component's `resources`, with its file.
pub fn kit_objects() -> Vec<(String, Value)> {
    strings(&component()["resources"])
        .into_iter()
        .flat_map(|file| {
            yaml_docs(&read(format!("{KIT}/{file}")))
                .into_iter()
                .map(move |o| (file.clone(), o))
        })
        .collect()
}

/// The kit's one object of `kind`.
pub fn kit_object(kind: &str) -> Value {
    let mut found: Vec<Value> = kit_objects()
        .into_iter()
        .map(|(_, o)| o)
        .filter(|o| o["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {KIT}");
    found.remove(0)
}

pub fn dashboard() -> Value {
    serde_json::from_str(&read(format!("{KIT}/dashboard.json")))
        .unwrap_or_else(|e| panic!("{KIT}/dashboard.json is not JSON: {e}"))
}

/// Every panel of the dashboard, those inside collapsed rows included.
pub fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel.clone());
        out.extend(panel["panels"].as_array().into_iter().flatten().cloned());
    }
    out
}

pub fn alerts() -> Vec<Value> {
    kit_object("PrometheusRule")["spec"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

/// Every PromQL expression of the kit, as Prometheus receives it, with where it is.
pub fn kit_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in alerts() {
        let name = rule["alert"].as_str().or(rule["record"].as_str());
        out.push((
            format!("PrometheusRule {}", name.unwrap_or("?")),
            rule["expr"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    let dashboard = dashboard();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("dashboard panel {} {}", panel["title"], target["refId"]),
                promql::from_grafana(target["expr"].as_str().unwrap_or_default()),
            ));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let query = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap_or_default();
        out.push((
            format!("dashboard variable {}", var["name"]),
            label_values_as_promql(query),
        ));
    }
    out
}

/// Grafana's `label_values(<selector>, <label>)` as the PromQL it amounts to, so that both the
/// selector and the label are checked; any other form is left as is and fails to parse.
pub fn label_values_as_promql(query: &str) -> String {
    query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .and_then(|q| q.rsplit_once(','))
        .map_or_else(
            || query.to_owned(),
            |(selector, label)| format!("count by ({}) ({selector})", label.trim()),
        )
}

/// Checks PromQL against the documented metrics.
pub struct Checker {
    pub docs: Documented,
    /// Labels the PodMonitor adds to the sidecars' series by relabeling.
    sidecar_relabeled: BTreeSet<String>,
}

impl Checker {
    pub fn new(docs: Documented) -> Self {
        let sidecar_relabeled = kit_object("PodMonitor")["spec"]["podMetricsEndpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["relabelings"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["targetLabel"].as_str().map(str::to_owned))
            .collect();
        Self {
            docs,
            sidecar_relabeled,
        }
    }

    /// The documented metrics `expr` uses, or every problem with it: a parse error, a metric
    /// not documented, a label its series do not carry, a value its label never takes.
    pub fn check(&self, expr: &str) -> Result<BTreeSet<String>, Vec<String>> {
        let query = promql::parse(expr).map_err(|e| vec![format!("{e}: {expr}")])?;
        let mut problems = Vec::new();
        let mut used = BTreeSet::new();
        let mut all_labels = BTreeSet::new();
        let mut all_known = true;
        for sel in &query.selectors {
            let Some((metric, extra)) = self.docs.series(&sel.metric) else {
                all_known = false;
                problems.push(format!(
                    "`{}` is in no metric table of docs/observability.md",
                    sel.metric
                ));
                continue;
            };
            used.insert(metric.name.clone());
            let mut allowed: BTreeSet<String> = metric.labels.clone();
            allowed.extend(TARGET_LABELS.iter().map(|l| (*l).to_owned()));
            allowed.extend(extra.map(str::to_owned));
            if metric.source == Source::Sidecar {
                allowed.extend(self.sidecar_relabeled.iter().cloned());
            }
            for label in sel.labels.difference(&allowed) {
                problems.push(format!("`{}` has no label `{label}`", sel.metric));
            }
            for (label, value) in &sel.equal {
                let known = metric.values.get(label);
                if known.is_some_and(|v| !v.contains(value)) && !value.contains('$') {
                    problems.push(format!(
                        "`{}{{{label}=\"{value}\"}}`: `{label}` takes only {known:?}",
                        sel.metric
                    ));
                }
            }
            all_labels.extend(allowed);
        }
        // (Only once every metric is known: an unknown one has already been reported.)
        if all_known {
            for label in query.grouping.difference(&all_labels) {
                problems.push(format!("no series of `{expr}` has the label `{label}`"));
            }
        }
        if problems.is_empty() {
            Ok(used)
        } else {
            Err(problems)
        }
    }
}
