//! JSON Schema: the payload is JSON already; it is parsed and validated against its registered
//! schema (compiled once with `jsonschema`, the schemas it references registered as resources).
//!
//! Pure and offline: a `$ref` is resolved only against the schema's registered references (each
//! under its `name`, relative to the schema's `$id` or to [`BASE_URI`]), never fetched from the
//! network or the file system. Formats (`"format": "date-time"`, ...) are annotations, as the
//! JSON Schema specification has them by default, not checked.

use jsonschema::{Registry, Validator};
use serde_json::Value as Json;
use url::Url;

/// The base URI of a schema without an absolute `$id`; reference names resolve against it.
pub const BASE_URI: &str = "https://schema-registry.kcp.invalid/";

/// At most this many validation errors are named in a refusal.
const MAX_ERRORS_NAMED: usize = 3;

/// A compiled JSON Schema.
#[derive(Debug)]
pub struct JsonSchema {
    validator: Validator,
}

/// Compiles `schema`; `references` are `(name, schema text)`.
pub fn compile(schema: &str, references: &[(String, String)]) -> Result<JsonSchema, String> {
    let root: Json =
        serde_json::from_str(schema).map_err(|e| format!("the schema is not JSON: {e}"))?;
    let base = root
        .get("$id")
        .and_then(Json::as_str)
        .and_then(|id| Url::parse(id).ok())
        .unwrap_or_else(|| Url::parse(BASE_URI).expect("invariant: BASE_URI is a valid URL"));
    let mut resources = Vec::with_capacity(references.len());
    for (name, text) in references {
        let uri = base
            .join(name)
            .map_err(|e| format!("reference name {name:?} is not a URI reference: {e}"))?;
        let contents: Json = serde_json::from_str(text)
            .map_err(|e| format!("referenced schema {name:?} is not JSON: {e}"))?;
        resources.push((uri.to_string(), contents));
    }
    let mut builder = Registry::new();
    for (uri, contents) in resources {
        builder = builder
            .add(uri, contents)
            .map_err(|e| format!("referenced schema: {e}"))?;
    }
    let registry = builder
        .prepare()
        .map_err(|e| format!("referenced schemas: {e}"))?;
    let validator = jsonschema::options()
        .offline()
        .with_base_uri(base.to_string())
        .with_registry(&registry)
        .build(&root)
        .map_err(|e| e.to_string())?;
    Ok(JsonSchema { validator })
}

impl JsonSchema {
    /// The payload as JSON, when it is JSON and valid against the schema.
    pub fn decode(&self, payload: &[u8]) -> Result<Json, String> {
        let json: Json =
            serde_json::from_slice(payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
        let errors: Vec<String> = self
            .validator
            .iter_errors(&json)
            .take(MAX_ERRORS_NAMED + 1)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{} at {}", e, if at.is_empty() { "/" } else { &at })
            })
            .collect();
        if errors.is_empty() {
            return Ok(json);
        }
        let more = if errors.len() > MAX_ERRORS_NAMED {
            ", and more"
        } else {
            ""
        };
        Err(format!(
            "the payload does not match its schema: {}{more}",
            errors[..errors.len().min(MAX_ERRORS_NAMED)].join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{
        "type": "object",
        "properties": { "id": {"type": "string"}, "address": {"$ref": "address.json"} },
        "required": ["id"]
    }"#;
    const ADDRESS: &str =
        r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"#;

    #[test]
    fn references_are_resolved_by_name_and_payloads_validated() {
        let schema = compile(ORDER, &[("address.json".into(), ADDRESS.into())]).expect("compiles");
        assert_eq!(
            schema.decode(br#"{"id":"o-1","address":{"city":"Oslo"}}"#),
            Ok(serde_json::json!({"id":"o-1","address":{"city":"Oslo"}}))
        );
        let err = schema
            .decode(br#"{"id":"o-1","address":{}}"#)
            .expect_err("address without city");
        assert!(err.contains("city") && err.contains("/address"), "{err}");
        assert!(
            schema
                .decode(b"{not json")
                .expect_err("not json")
                .contains("not JSON")
        );
    }

    #[test]
    fn a_reference_that_was_not_registered_is_not_fetched() {
        assert!(compile(ORDER, &[]).is_err(), "address.json is nowhere");
    }

    #[test]
    fn an_absolute_id_is_the_base_of_reference_names() {
        let order = r#"{"$id": "https://example.com/schemas/order.json", "$ref": "address.json"}"#;
        let schema = compile(order, &[("address.json".into(), ADDRESS.into())]).expect("compiles");
        assert!(schema.decode(br#"{"city":"Oslo"}"#).is_ok());
        assert!(schema.decode(br#"{"city":1}"#).is_err());
    }
}
