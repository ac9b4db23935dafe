//! The API server's admission of a `KafkaConsumerProxy`, without an API server: the CRD's
//! OpenAPI schema made strict as `kubectl apply` enforces it (`jsonschema`), then every CEL rule
//! (`kube-cel`). Shared by `crds/tests/schema.rs` and the bench's tests (which include this file
//! by path), so both admit objects the same way.

use kcp_crds::KafkaConsumerProxy;
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// The CRD's `openAPIV3Schema`, as JSON.
pub fn crd_schema() -> Value {
    let crd = serde_json::to_value(KafkaConsumerProxy::crd()).expect("crd serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The OpenAPI schema made into a JSON Schema that refuses what the API server refuses:
/// `nullable` becomes a null type, and objects without `additionalProperties` or
/// `x-kubernetes-preserve-unknown-fields` refuse unknown fields (kubectl's default
/// `--validate=strict` turns the server's unknown-field warnings into errors).
pub fn strict(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Value::Object(map) = &mut s {
        if map.remove("nullable") == Some(Value::Bool(true))
            && let Some(Value::String(t)) = map.get("type").cloned()
        {
            map.insert("type".into(), json!([t, "null"]));
        }
        let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserve
        {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        for (key, value) in map.iter_mut() {
            match key.as_str() {
                "properties" => {
                    if let Value::Object(props) = value {
                        for prop in props.values_mut() {
                            *prop = strict(prop);
                        }
                    }
                }
                "items" | "additionalProperties" if value.is_object() => *value = strict(value),
                _ => {}
            }
        }
    }
    s
}

pub struct ApiServer {
    schema: Value,
    openapi: jsonschema::Validator,
    cel: kube_cel::Validator,
}

impl ApiServer {
    pub fn new() -> Self {
        Self::for_schema(crd_schema())
    }

    /// The admission of another CRD's `openAPIV3Schema`.
    pub fn for_schema(schema: Value) -> Self {
        let mut strict_schema = strict(&schema);
        // The API server checks these itself; they are not part of the CRD's schema.
        for (field, ty) in [
            ("apiVersion", "string"),
            ("kind", "string"),
            ("metadata", "object"),
        ] {
            strict_schema["properties"][field] = json!({ "type": ty });
        }
        let openapi = jsonschema::draft4::new(&strict_schema).expect("schema compiles");
        Self {
            schema,
            openapi,
            cel: kube_cel::Validator::new(),
        }
    }

    /// What `kubectl apply` would be told: empty when admitted. Each error starts with the
    /// field the way the API server names it (`spec.kafka.topics[0]: ...`); for a missing or
    /// unknown field that is the field itself, not its parent.
    pub fn admit(&self, obj: &Value, old: Option<&Value>) -> Vec<String> {
        let mut errors: Vec<String> = self
            .openapi
            .iter_errors(obj)
            .map(|e| {
                let mut path = dotted(e.instance_path().as_str());
                match e.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        push_field(&mut path, property.as_str().unwrap_or_default())
                    }
                    jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                        push_field(&mut path, unexpected.first().map_or("", String::as_str))
                    }
                    _ => {}
                }
                format!("{path}: {e}")
            })
            .collect();
        if let Err(cel) = self.cel.validate(&self.schema, obj, old) {
            errors.extend(
                cel.as_slice()
                    .iter()
                    .map(|e| format!("{}: {}", e.field_path, e.message)),
            );
        }
        errors
    }
}

/// A JSON pointer (`/spec/kafka/topics/0`) as the API server writes a field path
/// (`spec.kafka.topics[0]`).
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            push_field(&mut out, &part);
        }
    }
    out
}

fn push_field(path: &mut String, field: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(field);
}
