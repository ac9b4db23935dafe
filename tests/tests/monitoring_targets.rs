//! What the monitoring kit's monitors scrape (`manifests/monitoring/`): the PodMonitor selects
//! the pods the operator really builds (every example resource, a moved admin port) and finds
//! the sidecar's admin port on them; the ServiceMonitor selects the operator's metrics Service
//! as installed and nothing else, and keeps the `namespace` label of the operator's
//! per-resource series.

mod support;

use std::collections::BTreeMap;

use kcp_crds::KafkaConsumerProxy;
use kcp_operator::reconcile::{
    build::{ADMIN_PORT_NAME, BuildOptions, INSTANCE_LABEL, SIDECAR_CONTAINER, build},
    testing::{UID, kcp_from, pod_settings_spec, port_app_spec, url_spec},
    validate::validate,
};
use serde_json::{Value, json};
use support::{
    kit::kit_object,
    metrics_doc::{Documented, Source},
    rendered_at, strings,
};

/// The pod templates the operator builds for every example resource and for representative
/// specs (a remote URL with pod settings, a moved admin port), with the resource's name.
fn built_pods() -> Vec<(String, Value)> {
    let mut resources: Vec<KafkaConsumerProxy> = support::examples()
        .into_iter()
        .filter(|(_, doc)| doc["kind"] == "KafkaConsumerProxy")
        .map(|(file, doc)| {
            let mut kcp: KafkaConsumerProxy =
                serde_json::from_value(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            kcp.metadata.uid = Some(UID.into());
            kcp
        })
        .collect();
    assert!(resources.len() >= 4, "the examples");
    let mut moved_port = url_spec();
    moved_port["sidecar"] = json!({ "adminPort": 9191 });
    for spec in [port_app_spec(), pod_settings_spec(), moved_port] {
        resources.push(kcp_from(spec));
    }
    let options = BuildOptions {
        default_sidecar_image: "kcp-sidecar:test".into(),
    };
    resources
        .iter()
        .map(|kcp| {
            let validated =
                validate(kcp).unwrap_or_else(|e| panic!("{:?}: {e}", kcp.metadata.name));
            let body = build(&validated, &options).deployment_body();
            (validated.name, body["spec"]["template"].clone())
        })
        .collect()
}

/// Whether a Kubernetes label selector selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels[k].as_str();
    let by_value = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let by_expression = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values = strings(&e["values"]);
            match e["operator"].as_str() {
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                Some("In") => label(key).is_some_and(|v| values.iter().any(|x| x == v)),
                Some("NotIn") => !label(key).is_some_and(|v| values.iter().any(|x| x == v)),
                other => panic!("operator {other:?}"),
            }
        });
    by_value && by_expression
}

/// Prometheus' `__meta_kubernetes_pod_label_<name>` for a pod label.
fn meta_label(label: &str) -> String {
    let sanitized: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__meta_kubernetes_pod_label_{sanitized}")
}

#[test]
fn the_pod_monitor_scrapes_every_pod_the_operator_builds() {
    let monitor = kit_object("PodMonitor");
    let spec = &monitor["spec"];
    assert_eq!(
        spec["namespaceSelector"]["any"], true,
        "resources live in any namespace"
    );
    let endpoints = spec["podMetricsEndpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    assert_eq!(endpoint["port"], ADMIN_PORT_NAME);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "30s", "as docs/observability.md says");
    let relabel = endpoint["relabelings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["targetLabel"] == "name")
        .expect("a relabeling that names the resource");
    assert_eq!(
        strings(&relabel["sourceLabels"]),
        [meta_label(INSTANCE_LABEL)]
    );

    for (name, template) in built_pods() {
        let labels = &template["metadata"]["labels"];
        assert!(
            selects(&spec["selector"], labels),
            "{name}: the PodMonitor does not select pods labelled {labels}"
        );
        assert_eq!(
            labels[INSTANCE_LABEL],
            name.as_str(),
            "the relabeled `name`"
        );
        let sidecar = template["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["name"] == SIDECAR_CONTAINER)
            .expect("the sidecar container");
        assert!(
            sidecar["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == ADMIN_PORT_NAME),
            "{name}: the sidecar has no port named {ADMIN_PORT_NAME}: {}",
            sidecar["ports"]
        );
    }
    // Nor does it select everything: the operator's own pods are not sidecars.
    let operator_pod = json!({
        "app.kubernetes.io/name": "kafka-consumer-proxy-operator",
        "app.kubernetes.io/component": "operator"
    });
    assert!(!selects(&spec["selector"], &operator_pod));
}

#[test]
fn the_service_monitor_scrapes_the_operator_metrics_service() {
    let Some(objs) = rendered_at("manifests") else {
        return;
    };
    let monitor = kit_object("ServiceMonitor");
    let namespace = monitor["metadata"]["namespace"]
        .as_str()
        .expect("namespace");
    let names = strings(&monitor["spec"]["namespaceSelector"]["matchNames"]);
    let services: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "Service")
        .filter(|s| {
            let ns = s["metadata"]["namespace"].as_str().unwrap_or_default();
            if names.is_empty() {
                ns == namespace
            } else {
                names.iter().any(|n| n == ns)
            }
        })
        .filter(|s| selects(&monitor["spec"]["selector"], &s["metadata"]["labels"]))
        .collect();
    assert_eq!(
        services
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["kcp-operator-metrics"],
        "the ServiceMonitor selects the operator's metrics Service and nothing else"
    );
    let service = services[0];
    let deployment = objs
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "kcp-operator")
        .expect("the operator Deployment");
    let container_ports: BTreeMap<String, Value> =
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_owned(),
                    p["containerPort"].clone(),
                )
            })
            .collect();
    for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(endpoint["interval"], "30s", "as docs/observability.md says");
        let port = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == endpoint["port"])
            .unwrap_or_else(|| panic!("the Service has no port {}", endpoint["port"]));
        let target = &port["targetPort"];
        assert!(
            target
                .as_str()
                .map_or(container_ports.values().any(|p| p == target), |n| {
                    container_ports.contains_key(n)
                }),
            "the Service's port {} leads to no port of the operator container ({container_ports:?})",
            endpoint["port"]
        );
    }
}

#[test]
fn operator_series_keep_the_namespace_label_of_their_resource() {
    // A scraped `namespace` label loses to the target's (renamed `exported_namespace`) unless
    // the endpoint honors labels; the operator's per-resource series carry their own.
    let docs = Documented::load();
    let own_namespace: Vec<&str> = docs
        .from(Source::Operator)
        .filter(|m| m.labels.contains("namespace"))
        .map(|m| m.name.as_str())
        .collect();
    let monitor = kit_object("ServiceMonitor");
    for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
        assert!(
            own_namespace.is_empty() || endpoint["honorLabels"] == true,
            "{own_namespace:?} carry `namespace`: the ServiceMonitor endpoint needs honorLabels: true"
        );
    }
    assert!(
        !own_namespace.is_empty(),
        "docs/observability.md documents no operator metric labelled `namespace` (the \
         per-resource kcp_operator_resource_* series)"
    );
}
