//! Hand-written schema fragments of `KafkaConsumerProxy`: the pod template's outline and the two
//! string maps (`kafka.clientConfig`, `endpoint.headers`) with their CEL rules.
//!
//! Pure. Every CEL rule here must stay within the API server's estimated cost budget
//! (ARCHITECTURE.md, "CEL rules and the API server's cost budget"); `crds/tests/cel_cost.rs`
//! estimates each one and fails the build when one does not. In short: a map's keys have no
//! length bound, so rules over keys only use `in` (a lookup) and `startsWith` with a constant,
//! and no message is built from a key: messages that cannot name the key within budget say
//! so, and the operator's `Ready` condition names it.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::{
    FORBIDDEN_STATIC_HEADERS, OWNED_CLIENT_CONFIG_KEYS, OWNED_CLIENT_CONFIG_PREFIXES,
    librdkafka::CONSUMER_PROPERTIES,
};

/// The name of the container the operator adds; a template may not use it.
// Kept equal to the operator's `SIDECAR_CONTAINER` by a test in the operator crate.
pub const RESERVED_CONTAINER_NAME: &str = "kcp-sidecar";

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
        "description": "Extra librdkafka consumer properties, e.g. fetch.max.bytes. Only consumer properties librdkafka knows are accepted. Keys the sidecar owns are refused: bootstrap.servers (and metadata.broker.list), group.id, group.instance.id, enable.auto.commit (and auto.commit.enable), enable.auto.offset.store, auto.offset.reset (see initialOffset), and security settings (security.protocol, sasl.*, ssl.*), which are set through auth.",
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
