//! Custom resources checked the way an API server checks them at `kubectl apply`, without one:
//! against the upstream CRD schemas vendored in `tests/fixtures/crds/` (see the README there)
//! and, for `KafkaConsumerProxy`, against the CRD generated from this repository's code. The
//! schema is made strict as `kubectl apply` is (unknown fields refused) by the same code that
//! checks the project's own CRD in `crds/tests/`, then its CEL rules are evaluated.

use std::collections::BTreeMap;

use jsonschema::Keyword;
use serde_json::{Value, json};

use super::{read, yaml_docs};

/// The admission check of `crds/tests/`, shared as the bench shares it: one `strict` for all.
#[path = "../../../crds/tests/admission/mod.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod admission;

pub use admission::ApiServer as KcpApiServer;

/// Vendored schemas: (file under `tests/fixtures/crds/`, apiVersion, kind).
const VENDORED: &[(&str, &str, &str)] = &[
    (
        "monitoring.coreos.com_podmonitors.yaml",
        "monitoring.coreos.com/v1",
        "PodMonitor",
    ),
    (
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    ),
    (
        "monitoring.coreos.com_prometheusrules.yaml",
        "monitoring.coreos.com/v1",
        "PrometheusRule",
    ),
    (
        "keda.sh_scaledobjects.yaml",
        "keda.sh/v1alpha1",
        "ScaledObject",
    ),
];

struct Crd {
    schema: Value,
    openapi: jsonschema::Validator,
}

/// The vendored CRDs, by apiVersion and kind.
pub struct Crds {
    by_kind: BTreeMap<(String, String), Crd>,
}

impl Crds {
    pub fn load() -> Self {
        let mut by_kind = BTreeMap::new();
        for (file, api_version, kind) in VENDORED {
            let path = format!("tests/fixtures/crds/{file}");
            let mut docs = yaml_docs(&read(&path));
            assert_eq!(docs.len(), 1, "{path}: one schema");
            let schema = docs.remove(0);
            let mut strict = admission::strict(&schema);
            // The API server checks these itself; metadata's own fields are not in the CRD.
            for (field, ty) in [("apiVersion", "string"), ("kind", "string")] {
                strict["properties"][field] = json!({ "type": ty });
            }
            strict["properties"]["metadata"] = json!({
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": { "type": "string", "minLength": 1 },
                    "namespace": { "type": "string", "minLength": 1 },
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                    "annotations": { "type": "object", "additionalProperties": { "type": "string" } }
                }
            });
            re2_patterns(&mut strict);
            let openapi = jsonschema::draft4::options()
                .with_keyword(RE2_PATTERN, |_, value, _| {
                    let pattern = value.as_str().unwrap_or_default();
                    regex::Regex::new(pattern)
                        .map(|re| Box::new(Re2Pattern(re)) as Box<dyn for<'i> Keyword<'i>>)
                        .map_err(|e| jsonschema::ValidationError::schema(e.to_string()))
                })
                .build(&strict)
                .unwrap_or_else(|e| panic!("{path}: schema compiles: {e}"));
            by_kind.insert(
                ((*api_version).to_owned(), (*kind).to_owned()),
                Crd { schema, openapi },
            );
        }
        Self { by_kind }
    }

    /// What `kubectl apply` of `obj` would be told: empty when admitted. `Err` when no vendored
    /// CRD serves its apiVersion and kind.
    pub fn admit(&self, obj: &Value) -> Result<Vec<String>, String> {
        let key = (
            obj["apiVersion"].as_str().unwrap_or_default().to_owned(),
            obj["kind"].as_str().unwrap_or_default().to_owned(),
        );
        let crd = self
            .by_kind
            .get(&key)
            .ok_or_else(|| format!("no vendored CRD for {}/{}", key.0, key.1))?;
        let mut errors: Vec<String> = crd
            .openapi
            .iter_errors(obj)
            .map(|e| format!("{}: {e}", admission::dotted(e.instance_path().as_str())))
            .collect();
        if let Err(cel) = kube_cel::Validator::new().validate(&crd.schema, obj, None) {
            errors.extend(
                cel.into_vec()
                    .into_iter()
                    .map(|e| format!("{}: {}", e.field_path, e.message)),
            );
        }
        Ok(errors)
    }
}

/// Kubernetes checks `pattern` with Go's regexp (RE2 syntax: `(?i)` is fine), JSON Schema with
/// ECMA 262 (where it is not); each `pattern` moves to a keyword checked by the `regex` crate,
/// whose syntax is RE2's.
const RE2_PATTERN: &str = "x-re2-pattern";

struct Re2Pattern(regex::Regex);

impl<'i> Keyword<'i> for Re2Pattern {
    fn validate(&self, instance: &'i Value) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            Err(jsonschema::ValidationError::custom(format!(
                "{instance} does not match {:?}",
                self.0.as_str()
            )))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        instance.as_str().is_none_or(|s| self.0.is_match(s))
    }
}

/// Moves every schema node's `pattern` to [`RE2_PATTERN`].
fn re2_patterns(node: &mut Value) {
    let Value::Object(map) = node else { return };
    if let Some(pattern) = map.remove("pattern") {
        map.insert(RE2_PATTERN.to_owned(), pattern);
    }
    for (key, child) in map.iter_mut() {
        match (key.as_str(), child) {
            ("properties", Value::Object(props)) => props.values_mut().for_each(re2_patterns),
            ("items" | "additionalProperties" | "not", child) => re2_patterns(child),
            ("anyOf" | "allOf" | "oneOf", Value::Array(branches)) => {
                branches.iter_mut().for_each(re2_patterns);
            }
            _ => {}
        }
    }
}

/// `value` with the JSON pointer `pointer` set to `to` (`Value::Null` removes it).
pub fn with(value: &Value, pointer: &str, to: Value) -> Value {
    let mut out = value.clone();
    let (parent, last) = pointer.rsplit_once('/').expect("a JSON pointer");
    let target = out
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent} exists"));
    match (target, to) {
        (Value::Object(map), Value::Null) => {
            map.remove(last);
        }
        (Value::Object(map), to) => {
            map.insert(last.to_owned(), to);
        }
        (Value::Array(items), to) => {
            let i: usize = last.parse().expect("an index");
            items[i] = to;
        }
        (other, _) => panic!("{parent} is {other}, not an object or a list"),
    }
    out
}

/// `value` with the key at `pointer` renamed to `to` (a misspelled field).
pub fn renamed(value: &Value, pointer: &str, to: &str) -> Value {
    let moved = value.pointer(pointer).cloned().expect("the field exists");
    let (parent, _) = pointer.rsplit_once('/').expect("a JSON pointer");
    with(
        &with(value, pointer, Value::Null),
        &format!("{parent}/{to}"),
        moved,
    )
}
