//! Hand-written schema fragments of `KafkaConsumerProxy`: the pod template's outline, the two
//! string maps (`kafka.clientConfig`, `endpoint.headers`) with their CEL rules, and the
//! Kubernetes types of `spec.pod` (label maps, object names, k8s-openapi's scheduling types with
//! their nested descriptions left out).
//!
//! Pure. Every CEL rule here must stay within the API server's estimated cost budget
//! (ARCHITECTURE.md, "CEL rules and the API server's cost budget"); `crds/tests/cel_cost.rs`
//! estimates each one and fails the build when one does not. In short: a map's keys have no
//! length bound, so rules over keys only use `in` (a lookup) and `startsWith` with a constant,
//! and no message is built from a key: messages that cannot name the key within budget say
//! so, and the operator's `Ready` condition names it.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::{
    FORBIDDEN_STATIC_HEADERS, OWNED_CLIENT_CONFIG_KEYS, OWNED_CLIENT_CONFIG_PREFIXES,
    librdkafka::CONSUMER_PROPERTIES,
};

/// The name of the container the operator adds; a template may not use it. The operator's
/// `SIDECAR_CONTAINER` is this constant.
pub const RESERVED_CONTAINER_NAME: &str = "kcp-sidecar";

/// The pods' selector label, set by the operator to the resource name; `spec.pod.labels` may not
/// set it. The operator's `INSTANCE_LABEL` is this constant.
pub const SELECTOR_LABEL: &str = "kafkaproxy.io/instance";

/// A label value as the API server accepts it: at most 63 characters, alphanumerics at both
/// ends, `-`, `_` and `.` between (or empty).
const LABEL_VALUE_PATTERN: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// A DNS subdomain (RFC 1123), the form of PriorityClass, ServiceAccount and RuntimeClass names.
const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// `template`: the outline of a PodTemplateSpec. Inlining the full PodTemplateSpec schema would
/// make the CRD several hundred KiB, past what client-side `kubectl apply` can store in its
/// last-applied annotation; the operator parses the full type and reports `InvalidSpec`.
pub fn pod_template_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "The application's pod template (a standard PodTemplateSpec: metadata and spec). Required with endpoint.port; omit it with endpoint.url to run the sidecar alone. Checked in full by the operator, which reports problems in the Ready condition.",
        "x-kubernetes-preserve-unknown-fields": true,
        "required": ["spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
            },
            "spec": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "required": ["containers"],
                "properties": {
                    "containers": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 32,
                        "items": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "required": ["name"],
                            "properties": {
                                "name": { "type": "string", "minLength": 1, "maxLength": 63 },
                            },
                        },
                    },
                    "restartPolicy": { "type": "string", "maxLength": 16 },
                },
                "x-kubernetes-validations": [
                    {
                        "rule": format!("self.containers.all(c, c.name != '{RESERVED_CONTAINER_NAME}')"),
                        "message": format!("spec.template has a container named {RESERVED_CONTAINER_NAME}; that name is reserved for the sidecar"),
                    },
                    {
                        "rule": "!has(self.restartPolicy) || self.restartPolicy == 'Always'",
                        "message": "spec.template.spec.restartPolicy must be Always (or unset): the pods belong to a Deployment",
                    },
                ],
            },
        },
    })
}

/// `clientConfig`: a bounded string map. Keys the sidecar owns are refused one rule per key (so
/// the message names it); keys librdkafka does not know are refused by one allow-list rule,
/// whose message cannot name the key within the cost budget.
pub fn client_config_schema(_: &mut SchemaGenerator) -> Schema {
    let mut rules: Vec<Value> = OWNED_CLIENT_CONFIG_KEYS
        .iter()
        .map(|(key, instead)| {
            json!({
                "rule": format!("!('{key}' in self)"),
                "message": format!("kafka.clientConfig must not set {key}: {instead}"),
            })
        })
        .collect();
    rules.extend(OWNED_CLIENT_CONFIG_PREFIXES.iter().map(|prefix| {
        json!({
            "rule": format!("!self.exists(k, k.startsWith('{prefix}'))"),
            "message": format!("kafka.clientConfig must not set {prefix}* keys: security settings come from kafka.auth and its Secrets"),
        })
    }));
    let known = CONSUMER_PROPERTIES
        .iter()
        .filter(|k| {
            !OWNED_CLIENT_CONFIG_PREFIXES
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let owned_prefix = OWNED_CLIENT_CONFIG_PREFIXES
        .iter()
        .map(|p| format!("k.startsWith('{p}')"))
        .collect::<Vec<_>>()
        .join(" || ");
    rules.push(json!({
        "rule": format!("self.all(k, {owned_prefix} || k in [{known}])"),
        "message": format!(
            "kafka.clientConfig has a key that is not a consumer property of librdkafka {}: check its spelling against librdkafka's CONFIGURATION.md (the API server cannot name the key here; the operator names it in the resource's Ready condition when it sees one)",
            crate::librdkafka::LIBRDKAFKA_VERSION
        ),
    }));
    json_schema!({
        "type": "object",
        "description": "Extra librdkafka consumer properties, e.g. fetch.max.bytes. Only consumer properties librdkafka knows are accepted. Keys the sidecar owns are refused: bootstrap.servers (and metadata.broker.list), group.id, group.instance.id, enable.auto.commit (and auto.commit.enable), enable.auto.offset.store, auto.offset.reset (see initialOffset), and security settings (security.protocol, sasl.*, ssl.*), which are set through auth. The general (not consumer-only) properties also apply to the dead-letter producer.",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 4096 },
        "x-kubernetes-validations": rules,
    })
}

/// `headers`: a bounded map of static request headers. Values are what HTTP can carry (tab and
/// printable ASCII). Framing and hop-by-hop headers are refused in the three spellings people
/// write (`content-length`, `Content-Length`, `CONTENT-LENGTH`); a map key cannot be lowercased
/// within the cost budget, so other spellings are refused by the operator and the sidecar.
pub fn static_headers_schema(_: &mut SchemaGenerator) -> Schema {
    let rules: Vec<Value> = FORBIDDEN_STATIC_HEADERS
        .iter()
        .map(|(name, why)| {
            let spellings = [name.to_ascii_lowercase(), (*name).to_owned(), name.to_ascii_uppercase()];
            let mut spellings: Vec<String> = spellings.into_iter().collect();
            spellings.dedup();
            let rule = spellings
                .iter()
                .map(|s| format!("!('{s}' in self)"))
                .collect::<Vec<_>>()
                .join(" && ");
            json!({ "rule": rule, "message": format!("endpoint.headers must not set {name}: {why}") })
        })
        .collect();
    json_schema!({
        "type": "object",
        "description": "Static headers added to every request. Values are tab and printable ASCII. Framing and hop-by-hop headers (Content-Length, Transfer-Encoding, Connection, Host, ...) are refused: the sidecar frames each request itself; set the Host header with hostHeader.",
        "maxProperties": 32,
        "additionalProperties": { "type": "string", "maxLength": 4096, "pattern": "^[\t -~]*$" },
        "x-kubernetes-validations": rules,
    })
}

/// A map of label keys to label values. Keys are checked by the API server when the operator
/// applies the Deployment: a map's keys cannot be matched against a pattern in the schema.
fn label_map(max: u32) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": max,
        "additionalProperties": { "type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN },
    })
}

/// `pod.labels`: label values, and not the operator's selector label (a lookup: constant cost).
pub fn pod_labels_schema(_: &mut SchemaGenerator) -> Schema {
    let mut schema = label_map(64);
    schema.insert(
        "x-kubernetes-validations".into(),
        json!([{
            "rule": format!("!('{SELECTOR_LABEL}' in self)"),
            "message": format!("spec.pod.labels must not set {SELECTOR_LABEL}: the operator sets it to the resource name to select the pods"),
        }]),
    );
    schema
}

/// `pod.nodeSelector`: node label keys to label values.
pub fn node_selector_schema(_: &mut SchemaGenerator) -> Schema {
    label_map(64)
}

/// The name of a cluster object (PriorityClass, ServiceAccount, RuntimeClass).
pub fn object_name_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": DNS_SUBDOMAIN_PATTERN,
    })
}

/// A Kubernetes type's schema from k8s-openapi without the descriptions below its top: they
/// would repeat the Kubernetes reference in the CRD (`affinity` alone is ~40 KiB with them).
/// The field's own rustdoc stays as its description. The generator inlines subschemas (no
/// `$ref`, which a structural schema may not have; `crds/tests/schema.rs` checks it).
pub fn terse_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<T>();
    if let Some(node) = schema.as_object_mut() {
        strip_descriptions(node);
    }
    schema
}

/// Removes `description` from a schema node and the nodes below it (never a property that
/// happens to be named `description`).
fn strip_descriptions(node: &mut serde_json::Map<String, Value>) {
    node.remove("description");
    for (key, value) in node.iter_mut() {
        let children: Vec<&mut Value> = match (key.as_str(), value) {
            ("properties", Value::Object(props)) => props.values_mut().collect(),
            ("items" | "additionalProperties", child) => vec![child],
            _ => Vec::new(),
        };
        for child in children {
            if let Value::Object(child) = child {
                strip_descriptions(child);
            }
        }
    }
}
