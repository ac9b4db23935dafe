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

/// Each case: a change to a good resource, and a piece of the message the user must see.
#[test]
fn bad_resources_are_refused_with_a_message_a_person_understands() {
    let api = ApiServer::new();
    let url_only = with(
        with(good(), "spec/endpoint/port", Value::Null),
        "spec/endpoint/url",
        json!("http://svc:80/x"),
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no topics",
            with(good(), "spec/kafka/topics", json!([])),
            "/spec/kafka/topics",
        ),
        (
            "topics missing",
            with(good(), "spec/kafka/topics", Value::Null),
            "topics",
        ),
        (
            "no bootstrap servers",
            with(good(), "spec/kafka/bootstrapServers", Value::Null),
            "bootstrapServers",
        ),
        (
            "both port and url",
            with(good(), "spec/endpoint/url", json!("http://x:1/")),
            "exactly one of endpoint.port",
        ),
        (
            "neither port nor url",
            with(good(), "spec/endpoint/port", Value::Null),
            "exactly one of endpoint.port",
        ),
        (
            "port without template",
            with(good(), "spec/template", Value::Null),
            "spec.template is required",
        ),
        (
            "port 0",
            with(good(), "spec/endpoint/port", json!(0)),
            "/spec/endpoint/port",
        ),
        (
            "port 65536",
            with(good(), "spec/endpoint/port", json!(65536)),
            "/spec/endpoint/port",
        ),
        (
            "negative replicas",
            with(good(), "spec/replicas", json!(-1)),
            "/spec/replicas",
        ),
        (
            "maxInFlight 0",
            with(good(), "spec/delivery/maxInFlight", json!(0)),
            "/spec/delivery/maxInFlight",
        ),
        (
            "unknown ordering",
            with(good(), "spec/delivery/ordering", json!("random")),
            "/spec/delivery/ordering",
        ),
        (
            "unknown guarantee",
            with(good(), "spec/delivery/guarantee", json!("exactlyOnce")),
            "/spec/delivery/guarantee",
        ),
        (
            "unknown onExhausted",
            with(good(), "spec/delivery/onExhausted", json!("retry")),
            "/spec/delivery/onExhausted",
        ),
        (
            "duration in words",
            with(good(), "spec/endpoint/requestTimeout", json!("10 seconds")),
            "/spec/endpoint/requestTimeout",
        ),
        (
            "negative duration",
            with(good(), "spec/delivery/commitInterval", json!("-1s")),
            "/spec/delivery/commitInterval",
        ),
        (
            "fractional duration",
            with(good(), "spec/delivery/retry/maxBackoff", json!("1.5s")),
            "/spec/delivery/retry/maxBackoff",
        ),
        (
            "owned key group.id",
            with(good(), "spec/kafka/clientConfig", json!({"group.id": "x"})),
            "must not set group.id",
        ),
        (
            "owned key bootstrap.servers",
            with(
                good(),
                "spec/kafka/clientConfig",
                json!({"fetch.max.bytes": "1", "bootstrap.servers": "y"}),
            ),
            "must not set bootstrap.servers",
        ),
        (
            "owned key enable.auto.commit",
            with(
                good(),
                "spec/kafka/clientConfig",
                json!({"enable.auto.commit": "true"}),
            ),
            "must not set enable.auto.commit",
        ),
        (
            "owned security key",
            with(
                good(),
                "spec/kafka/clientConfig",
                json!({"sasl.password": "p"}),
            ),
            "must not set sasl.password",
        ),
        (
            "backoff bigger than cap",
            with(
                with(good(), "spec/delivery/retry/initialBackoff", json!("2m")),
                "spec/delivery/retry/maxBackoff",
                json!("1m"),
            ),
            "initialBackoff must not be longer",
        ),
        (
            "client cert without key",
            with(
                good(),
                "spec/kafka/auth/tls",
                json!({"secretName": "s", "certKey": "tls.crt"}),
            ),
            "certKey and auth.tls.keyKey go together",
        ),
        (
            "unknown SASL mechanism",
            with(
                good(),
                "spec/kafka/auth/sasl",
                json!({"mechanism": "GSSAPI", "secretName": "s"}),
            ),
            "/spec/kafka/auth/sasl/mechanism",
        ),
        (
            "bad retryOn",
            with(good(), "spec/endpoint/retryOn", json!(["6xx"])),
            "/spec/endpoint/retryOn/0",
        ),
        (
            "unknown field",
            with(good(), "spec/endpoint/timeout", json!("1s")),
            "timeout",
        ),
        (
            "wrong type",
            with(good(), "spec/replicas", json!("two")),
            "/spec/replicas",
        ),
        (
            "template without containers",
            with(good(), "spec/template", json!({"spec": {}})),
            "containers",
        ),
        (
            "remote url without scheme",
            with(url_only.clone(), "spec/endpoint/url", json!("svc:80/x")),
            "/spec/endpoint/url",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, obj, expected) in &cases {
        let errors = api.admit(obj, None);
        if !errors.iter().any(|e| e.contains(expected)) {
            wrong.push(format!(
                "{name}: expected an error mentioning {expected:?}, got {errors:?}"
            ));
        }
    }
    // The remote-url variant itself is fine without a template.
    assert_eq!(api.admit(&url_only, None), Vec::<String>::new());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
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

/// Malformed objects of every sort a hand-edited or generated manifest produces: each is refused
/// at `kubectl apply` (the operator never sees it). Objects the schema cannot judge (a pod
/// template the operator cannot parse) are the operator's `InvalidSpec` tests.
#[test]
fn malformed_resources_are_all_refused() {
    let api = ApiServer::new();
    let long = "x".repeat(5000);
    let many_topics: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let many_props: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("fetch.k{i}"), json!("1")))
        .collect();
    let cases: Vec<(&str, Value)> = vec![
        ("spec missing", with(good(), "spec", Value::Null)),
        ("spec is a string", with(good(), "spec", json!("oops"))),
        (
            "kafka is a list",
            with(good(), "spec/kafka", json!(["kafka:9092"])),
        ),
        (
            "endpoint missing",
            with(good(), "spec/endpoint", Value::Null),
        ),
        (
            "topics is a string",
            with(good(), "spec/kafka/topics", json!("orders")),
        ),
        (
            "topic is a number",
            with(good(), "spec/kafka/topics", json!([42])),
        ),
        (
            "empty topic name",
            with(good(), "spec/kafka/topics", json!([""])),
        ),
        (
            "65 topics",
            with(good(), "spec/kafka/topics", json!(many_topics)),
        ),
        (
            "65 clientConfig keys",
            with(good(), "spec/kafka/clientConfig", Value::Object(many_props)),
        ),
        (
            "clientConfig value is a number",
            with(
                good(),
                "spec/kafka/clientConfig",
                json!({"fetch.max.bytes": 1048576}),
            ),
        ),
        (
            "5000-char bootstrap",
            with(good(), "spec/kafka/bootstrapServers", json!(long)),
        ),
        (
            "empty bootstrap",
            with(good(), "spec/kafka/bootstrapServers", json!("")),
        ),
        ("replicas 1001", with(good(), "spec/replicas", json!(1001))),
        (
            "replicas 2^40",
            with(good(), "spec/replicas", json!(1_u64 << 40)),
        ),
        ("replicas 1.5", with(good(), "spec/replicas", json!(1.5))),
        (
            "maxInFlight 10001",
            with(good(), "spec/delivery/maxInFlight", json!(10001)),
        ),
        (
            "maxAttempts -1",
            with(good(), "spec/delivery/retry/maxAttempts", json!(-1)),
        ),
        (
            "multiplier 0.5",
            with(good(), "spec/delivery/retry/multiplier", json!(0.5)),
        ),
        (
            "multiplier 100",
            with(good(), "spec/delivery/retry/multiplier", json!(100)),
        ),
        (
            "duration as number",
            with(good(), "spec/delivery/commitInterval", json!(1000)),
        ),
        (
            "empty duration",
            with(good(), "spec/endpoint/connectTimeout", json!("")),
        ),
        (
            "suspend as string",
            with(good(), "spec/suspend", json!("yes")),
        ),
        (
            "path without slash",
            with(good(), "spec/endpoint/path", json!("events")),
        ),
        (
            "method GET",
            with(good(), "spec/endpoint/method", json!("GET")),
        ),
        (
            "header name with space",
            with(good(), "spec/endpoint/actionHeader", json!("X Action")),
        ),
        (
            "33 static headers",
            with(
                good(),
                "spec/endpoint/headers",
                json!(
                    (0..33)
                        .map(|i| (format!("h{i}"), json!("v")))
                        .collect::<serde_json::Map<_, _>>()
                ),
            ),
        ),
        (
            "bodyAck without pointer",
            with(good(), "spec/endpoint/bodyAck", json!({"equals": "0"})),
        ),
        (
            "sasl without secret",
            with(
                good(),
                "spec/kafka/auth/sasl",
                json!({"mechanism": "PLAIN"}),
            ),
        ),
        (
            "unknown top-level spec field",
            with(good(), "spec/replica", json!(2)),
        ),
        (
            "unknown delivery field",
            with(good(), "spec/delivery/maxInflight", json!(2)),
        ),
        (
            "admin port 0",
            with(good(), "spec/sidecar/adminPort", json!(0)),
        ),
        (
            "log level verbose",
            with(good(), "spec/sidecar/logLevel", json!("verbose")),
        ),
        (
            "template is a string",
            with(good(), "spec/template", json!("pod.yaml")),
        ),
        (
            "container without name",
            with(
                good(),
                "spec/template",
                json!({"spec": {"containers": [{"image": "x"}]}}),
            ),
        ),
    ];
    let admitted: Vec<&str> = cases
        .iter()
        .filter(|(_, obj)| api.admit(obj, None).is_empty())
        .map(|(name, _)| *name)
        .collect();
    assert!(
        admitted.is_empty(),
        "admitted but should be refused: {admitted:?}"
    );
}
