//! The CRD as the API server will enforce it, without an API server.
//!
//! Every object goes through two checks, the two an API server makes at `kubectl apply`:
//! the OpenAPI schema (types, enums, ranges, patterns, unknown fields — `jsonschema`) and the
//! CEL rules in `x-kubernetes-validations`, transition rules included (`kube-cel`).
//! What is tested here is the CRD as generated from the Rust types, so a field or rule that
//! drifts breaks a test.

mod admission;

use std::path::PathBuf;

use admission::{ApiServer, crd_schema};
use kcp_crds::{KafkaConsumerProxy, SidecarConfig};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn good() -> Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1",
        "kind": "KafkaConsumerProxy",
        "metadata": { "name": "orders", "namespace": "shop" },
        "spec": {
            "kafka": { "bootstrapServers": "kafka:9092", "topics": ["orders"] },
            "endpoint": { "port": 8080 },
            "template": { "spec": { "containers": [{ "name": "app", "image": "app:1" }] } }
        }
    })
}

/// Sets `value` at a `/`-separated path under the object, creating objects on the way.
fn with(mut obj: Value, path: &str, value: Value) -> Value {
    let mut cur = &mut obj;
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        cur = cur
            .as_object_mut()
            .expect("path goes through objects")
            .entry(*part)
            .or_insert_with(|| json!({}));
    }
    let last = parts[parts.len() - 1];
    let map = cur.as_object_mut().expect("parent is an object");
    if value.is_null() {
        map.remove(last);
    } else {
        map.insert(last.into(), value);
    }
    obj
}

#[test]
fn committed_crd_matches_the_code() {
    let path = repo_root().join(kcp_crds::CRD_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == kcp_crds::crd_yaml(),
        "{} is out of date with crds/src/v1alpha1.rs.\nRegenerate it: cargo run -p kcp-crds --bin crdgen > {}",
        path.display(),
        kcp_crds::CRD_PATH
    );
}

#[test]
fn crd_is_small_enough_for_client_side_apply() {
    // kubectl's last-applied-configuration annotation is capped at 256 KiB.
    let len = kcp_crds::crd_yaml().len();
    assert!(
        len < 128 * 1024,
        "CRD is {len} bytes; keep it well under 256 KiB"
    );
}

#[test]
fn schema_is_structural() {
    // Every node has a type, except where unknown fields are explicitly preserved.
    fn walk(path: &str, s: &Value, problems: &mut Vec<String>) {
        let Value::Object(map) = s else { return };
        let untyped_ok = [
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-int-or-string",
        ]
        .iter()
        .any(|k| map.get(*k) == Some(&Value::Bool(true)));
        if !map.contains_key("type") && !untyped_ok {
            problems.push(format!("{path}: no type"));
        }
        for forbidden in [
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "definitions",
            "$defs",
        ] {
            if map.contains_key(forbidden) {
                problems.push(format!("{path}: uses {forbidden}"));
            }
        }
        if let Some(Value::Object(props)) = map.get("properties") {
            for (k, v) in props {
                walk(&format!("{path}.{k}"), v, problems);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(v) = map.get(key) {
                walk(&format!("{path}[{key}]"), v, problems);
            }
        }
    }
    let mut problems = Vec::new();
    walk("", &crd_schema(), &mut problems);
    assert!(problems.is_empty(), "non-structural schema: {problems:#?}");
}

#[test]
fn cel_rules_over_collections_are_bounded() {
    // The API server estimates CEL cost and refuses rules over unbounded lists, maps or strings.
    fn walk(path: &str, s: &Value, problems: &mut Vec<String>) {
        let Value::Object(map) = s else { return };
        if map.contains_key("x-kubernetes-validations") {
            let bounded = |node: &Value| match node.get("type").and_then(Value::as_str) {
                Some("array") => node.get("maxItems").is_some(),
                Some("object") if node.get("additionalProperties").is_some() => {
                    node.get("maxProperties").is_some()
                }
                Some("string") => node.get("maxLength").is_some() || node.get("enum").is_some(),
                _ => true,
            };
            let mut nodes = vec![s];
            if let Some(Value::Object(props)) = map.get("properties") {
                nodes.extend(props.values());
            }
            for node in nodes {
                if !bounded(node) {
                    problems.push(format!("{path}: a rule sees an unbounded value: {node}"));
                }
            }
        }
        if let Some(Value::Object(props)) = map.get("properties") {
            for (k, v) in props {
                walk(&format!("{path}.{k}"), v, problems);
            }
        }
    }
    let mut problems = Vec::new();
    walk("", &crd_schema(), &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_minimal_resource_is_admitted_and_defaulted() {
    let api = ApiServer::new();
    assert_eq!(api.admit(&good(), None), Vec::<String>::new());
    // Updating it without changes passes the transition rules too.
    assert_eq!(api.admit(&good(), Some(&good())), Vec::<String>::new());
}

#[test]
fn every_example_is_admitted_and_renders_a_sidecar_config() {
    let api = ApiServer::new();
    let dir = repo_root().join("manifests/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("manifests/examples exists") {
        let path = entry.expect("readable dir").path();
        let text = std::fs::read_to_string(&path).expect("readable example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).expect("example is YAML");
            if value["kind"] != "KafkaConsumerProxy" {
                continue;
            }
            seen += 1;
            let errors = api.admit(&value, None);
            assert!(errors.is_empty(), "{} refused: {errors:#?}", path.display());
            let kcp: KafkaConsumerProxy =
                serde_json::from_value(value).expect("example deserializes into the Rust type");
            let config = SidecarConfig::render(&kcp).expect("example renders");
            assert_eq!(
                config.problems(),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            let parsed = SidecarConfig::parse(&config.to_json_pretty()).expect("round-trips");
            assert_eq!(parsed, config);
        }
    }
    assert!(
        seen >= 4,
        "expected at least 4 example resources, found {seen}"
    );
}

/// The refusal table (`tests/cases/refusals.yaml`, also run against a real API server by the
/// cluster tests): each case is refused, and an error names its field (and says its message).
#[test]
fn every_case_of_the_refusal_table_is_refused_naming_its_field() {
    let api = ApiServer::new();
    let table = refusal_table();
    let good = table["good"].clone();
    let good_json: Value = serde_json::to_value(&good).expect("YAML is JSON");
    assert_eq!(
        api.admit(&good_json, None),
        Vec::<String>::new(),
        "the table's good resource"
    );
    let cases = table["cases"].as_sequence().expect("cases is a list");
    assert!(cases.len() >= 90, "only {} cases", cases.len());
    let mut wrong = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let obj = apply_set(&good, &case["set"]);
        let field = case["field"].as_str().expect("field");
        let message = case.get("message").and_then(serde_yaml::Value::as_str);
        let errors = api.admit(&obj, None);
        let named = errors.iter().any(|e| {
            (field.is_empty() || e.starts_with(&format!("{field}:")))
                && message.is_none_or(|m| e.contains(m))
        });
        if !named {
            wrong.push(format!(
                "{name}: expected an error at {field:?}{} got {errors:?}",
                message
                    .map(|m| format!(" saying {m:?},"))
                    .unwrap_or_default()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn refusal_table() -> serde_yaml::Value {
    let path = repo_root().join("crds/tests/cases/refusals.yaml");
    let text = std::fs::read_to_string(&path).expect("refusals.yaml is readable");
    serde_yaml::from_str(&text).expect("refusals.yaml is YAML")
}

/// `good` with each JSON pointer of `set` given its value: null removes the field, missing
/// objects on the way are created, a number indexes a list.
fn apply_set(good: &serde_yaml::Value, set: &serde_yaml::Value) -> Value {
    let mut obj: Value = serde_json::to_value(good).expect("YAML is JSON");
    for (pointer, value) in set.as_mapping().expect("set is a map") {
        let pointer = pointer.as_str().expect("pointer is a string");
        let value: Value = serde_json::to_value(value).expect("YAML is JSON");
        let parts: Vec<&str> = pointer.split('/').skip(1).collect();
        let (last, path) = parts.split_last().expect("pointer has a /");
        let mut cur = &mut obj;
        for part in path {
            cur = match cur {
                Value::Array(items) => &mut items[part.parse::<usize>().expect("array index")],
                Value::Object(map) => map.entry(*part).or_insert_with(|| json!({})),
                other => panic!("{pointer}: {part} is inside {other}"),
            };
        }
        match cur {
            Value::Object(map) if value.is_null() => {
                map.remove(*last);
            }
            Value::Object(map) => {
                map.insert((*last).into(), value);
            }
            Value::Array(items) => items[last.parse::<usize>().expect("array index")] = value,
            other => panic!("{pointer}: parent is {other}"),
        }
    }
    obj
}

/// A resource without a template may set every pod setting, in the Kubernetes form users copy
/// from their other workloads; it reaches the Rust type whole.
#[test]
fn pod_settings_of_a_resource_without_a_template_are_admitted() {
    let api = ApiServer::new();
    let selector = json!({"matchLabels": {"kafkaproxy.io/instance": "orders"}});
    let pod = json!({
        "labels": {"team": "audit", "app.kubernetes.io/part-of": "shop", "empty": ""},
        "annotations": {"prometheus.io/scrape": "true", "config": "{\"a\": [1, 2]}"},
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"kubernetes.io/arch": "arm64"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"},
            {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["kafka"]}]}
            ]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": selector}
            }]}
        },
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector,
            "matchLabelKeys": ["pod-template-hash"]}],
        "priorityClassName": "kafka-consumers",
        "serviceAccountName": "audit-forwarder",
        "runtimeClassName": "gvisor"
    });
    let mut obj = with(good(), "spec/template", Value::Null);
    obj = with(
        obj,
        "spec/endpoint",
        json!({"url": "http://audit.shop.svc:8080/ingest"}),
    );
    obj = with(obj, "spec/pod", pod.clone());
    assert_eq!(api.admit(&obj, None), Vec::<String>::new());
    let kcp: KafkaConsumerProxy = serde_json::from_value(obj).expect("deserializes");
    let typed = serde_json::to_value(kcp.spec.pod.expect("pod settings")).expect("serializes");
    assert_eq!(typed, pod, "every field reaches the Rust type and back");
}

#[test]
fn sasl_plain_is_admitted_over_tls_or_when_cleartext_is_allowed() {
    let api = ApiServer::new();
    let sasl = json!({"mechanism": "PLAIN", "secretName": "kafka-user"});
    for auth in [
        json!({"sasl": sasl, "tls": {}}),
        json!({"sasl": sasl, "allowCleartextPassword": true}),
        json!({"sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"}}),
    ] {
        let obj = with(good(), "spec/kafka/auth", auth.clone());
        assert_eq!(api.admit(&obj, None), Vec::<String>::new(), "{auth}");
    }
}

#[test]
fn group_id_cannot_change_after_creation() {
    let api = ApiServer::new();
    let a = with(good(), "spec/kafka/groupId", json!("group-a"));
    let b = with(good(), "spec/kafka/groupId", json!("group-b"));
    let immutable = |errors: Vec<String>| errors.iter().any(|e| e.contains("groupId is immutable"));
    assert!(
        api.admit(&a, None).is_empty(),
        "creating with a groupId is fine"
    );
    assert!(api.admit(&a, Some(&a)).is_empty(), "unchanged is fine");
    assert!(immutable(api.admit(&b, Some(&a))), "changed");
    assert!(immutable(api.admit(&good(), Some(&a))), "removed");
    assert!(immutable(api.admit(&a, Some(&good()))), "added later");
    // Other fields may change freely.
    let scaled = with(a.clone(), "spec/replicas", json!(5));
    assert!(api.admit(&scaled, Some(&a)).is_empty());
}

#[test]
fn committed_api_reference_matches_the_code() {
    let path = repo_root().join(kcp_crds::apidoc::API_DOC_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == kcp_crds::apidoc::api_reference_markdown(),
        "{} is out of date with crds/src/v1alpha1.rs.\nRegenerate it: cargo run -p kcp-crds --bin apidoc > {}",
        path.display(),
        kcp_crds::apidoc::API_DOC_PATH
    );
}

#[test]
fn record_format_settings_are_admitted() {
    let api = ApiServer::new();
    let mut obj = with(good(), "spec/endpoint/format", json!("cloudevents-binary"));
    obj = with(
        obj,
        "spec/endpoint/cloudEvents",
        json!({"type": "com.example.order.created", "source": "/shop/orders"}),
    );
    obj = with(obj, "spec/endpoint/decode", json!("auto"));
    obj = with(
        obj,
        "spec/kafka/schemaRegistry",
        json!({
            "url": "https://registry.kafka.svc:8081",
            "basicAuth": {"secretName": "registry-user"},
            "tls": {"secretName": "registry-tls", "caKey": "ca.crt", "certKey": "tls.crt", "keyKey": "tls.key"},
            "requestTimeout": "5s",
            "cache": {"maxSchemas": 50, "errorTtl": "1m"}
        }),
    );
    assert_eq!(api.admit(&obj, None), Vec::<String>::new());
    let plain_http = with(
        good(),
        "spec/kafka/schemaRegistry",
        json!({"url": "http://registry:8081", "basicAuth": {"secretName": "r"}, "allowCleartextPassword": true}),
    );
    assert_eq!(api.admit(&plain_http, None), Vec::<String>::new());
}

/// `kubectl get kcp` shows readiness, replicas, lag in records and in time, and this group's
/// dead letters; each column's path names a field the status schema has, with its type.
#[test]
fn printer_columns_read_fields_the_status_has() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(KafkaConsumerProxy::crd()).expect("CRD as JSON");
    let version = &crd["spec"]["versions"][0];
    let columns: Vec<(String, String, String)> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("type"), s("jsonPath"))
        })
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["Ready", "Replicas", "Lag", "Behind", "DLQ", "Age"]);
    let schema = &version["schema"]["openAPIV3Schema"];
    for (name, type_, path) in &columns {
        let Some(field_path) = path.strip_prefix(".status.") else {
            continue;
        };
        // `conditions[?(@.type=="Ready")].status` reads a condition's status: a string.
        let field_path = field_path.split('[').next().unwrap_or_default();
        let mut node = &schema["properties"]["status"];
        for part in field_path.split('.') {
            node = &node["properties"][part];
        }
        if field_path == "conditions" {
            assert_eq!(node["type"], "array", "{name}");
            continue;
        }
        assert_eq!(node["type"], json!(type_), "column {name} reads {path}");
    }
}
