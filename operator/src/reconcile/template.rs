//! Template: the app's raw `spec.template` against the pod types the operator is built with
//! (k8s-openapi, pinned to one Kubernetes version).
//!
//! Pure. Parsing into a `PodTemplateSpec` silently drops every field the pinned types do not
//! know, whether a typo (`imagePullPolcy`) or a pod field newer than the pinned version.
//! [`parse`] finds them by round trip (the raw JSON against the parsed template serialized
//! again) so none is lost: `build` puts them back into the Deployment at the same place
//! ([`restore`], containers matched by name), and the API server, which knows the cluster's
//! pod API, judges them on apply. A newer field is kept; a typo makes the API server refuse
//! the Deployment, naming the field in the Deployment's terms, which [`template_path`] turns
//! into the path in the resource (`spec.template.spec.containers[0].imagePullPolcy`).
//! Must not decide on its own which unknown field is a typo: only the API server knows.

use std::fmt;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Serialize;
use serde_json::Value;

/// What the API server says about each field of an applied object its schema lacks.
pub const UNDECLARED_FIELD: &str = ": field not declared in schema";

/// A parsed template and the fields of the raw one the parse dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub template: PodTemplateSpec,
    pub unknown: Vec<UnknownField>,
}

/// A field of `spec.template` the pinned pod types do not know, with its value as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownField {
    /// Steps from the template's root; the last one is always a [`Step::Key`].
    pub path: Vec<Step>,
    pub value: Value,
}

/// One step of a path into the template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Step {
    Key(String),
    /// A list item, with its `name` when it has one: items of named lists (containers,
    /// volumes, ...) are found by name in the built Deployment, where the operator adds its own.
    Item {
        index: usize,
        name: Option<String>,
    },
}

impl fmt::Display for UnknownField {
    /// The path in the resource: `spec.template.spec.containers[0].imagePullPolcy`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("spec.template")?;
        for step in &self.path {
            match step {
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Item { index, .. } => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Parses `raw` as a `PodTemplateSpec` and lists the fields the parse dropped. The error names
/// the JSON path of the first value of a known field that has the wrong type.
pub fn parse(raw: &Value) -> Result<Parsed, String> {
    let template: PodTemplateSpec = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        format!(
            "spec.template{at} is not a valid pod template: {}",
            e.into_inner()
        )
    })?;
    let typed = serde_json::to_value(&template).expect("invariant: k8s-openapi objects serialize");
    let mut unknown = Vec::new();
    collect_unknown(raw, &typed, &mut Vec::new(), &mut unknown);
    Ok(Parsed { template, unknown })
}

/// Walks `raw` beside `typed` (the same template after the typed round trip): a key of `raw`
/// missing from `typed` was dropped, unless its value was null or empty (the typed form drops
/// those itself, and so does the API server).
fn collect_unknown(raw: &Value, typed: &Value, path: &mut Vec<Step>, out: &mut Vec<UnknownField>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (key, value) in r {
                path.push(Step::Key(key.clone()));
                match t.get(key) {
                    Some(typed_value) => collect_unknown(value, typed_value, path, out),
                    None if !is_empty(value) => out.push(UnknownField {
                        path: path.clone(),
                        value: value.clone(),
                    }),
                    None => {}
                }
                path.pop();
            }
        }
        // The typed form keeps every item, in order.
        (Value::Array(r), Value::Array(t)) => {
            for (index, (value, typed_value)) in r.iter().zip(t).enumerate() {
                let name = value.get("name").and_then(Value::as_str).map(str::to_owned);
                path.push(Step::Item { index, name });
                collect_unknown(value, typed_value, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Puts each unknown field back into `template` (the built Deployment's `spec.template` as
/// JSON). Named list items are matched by name, others by index; missing objects on the way
/// are created. A field inside a list item the built template lacks is left out (`build`
/// keeps every item of the app's template, so this does not happen).
pub fn restore(template: &mut Value, unknown: &[UnknownField]) {
    for field in unknown {
        if let Some((Step::Key(last), parents)) = field.path.split_last()
            && let Some(parent) = descend(template, parents).and_then(Value::as_object_mut)
        {
            parent.insert(last.clone(), field.value.clone());
        }
    }
}

fn descend<'a>(at: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(at);
    };
    let next = match step {
        Step::Key(k) => at
            .as_object_mut()?
            .entry(k.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new())),
        Step::Item { name: Some(n), .. } => at
            .as_array_mut()?
            .iter_mut()
            .find(|item| item["name"] == n.as_str())?,
        Step::Item { index, name: None } => at.as_array_mut()?.get_mut(*index)?,
    };
    descend(next, rest)
}

/// The paths the API server names in a refusal of fields its schema lacks, in its own terms
/// (`.spec.template.spec.containers[name="app"].imagePullPolcy`). Empty for other messages.
pub fn undeclared_paths(message: &str) -> Vec<String> {
    message
        .match_indices(UNDECLARED_FIELD)
        .filter_map(|(at, _)| message[..at].split_whitespace().last())
        .map(str::to_owned)
        .collect()
}

/// Turns a Deployment path from the API server into the path in the resource, resolving keyed
/// list items (`[name="app"]`) to their index in `raw` (the raw `spec.template`). `None` when
/// the path is not inside the pod template or does not lead through `raw`.
pub fn template_path(server_path: &str, raw: &Value) -> Option<String> {
    let mut rest = server_path.strip_prefix(".spec.template")?;
    let mut out = String::from("spec.template");
    let mut at = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            out.push('.');
            out.push_str(key);
            rest = &after[end..];
            // The last key is the unknown field itself; earlier ones must exist in `raw`.
            at = match at.get(key) {
                Some(v) => v,
                None if rest.is_empty() => break,
                None => return None,
            };
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let selector = &after[..end];
            rest = &after[end + 1..];
            let items = at.as_array()?;
            let index = match selector.parse::<usize>() {
                Ok(i) => i,
                Err(_) => items.iter().position(|item| matches_keys(item, selector))?,
            };
            out.push_str(&format!("[{index}]"));
            at = items.get(index)?;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Whether `item` has every `key=value` of an API server list selector (`name="app"`,
/// `containerPort=80,protocol="TCP"`). A `protocol` the item leaves unset is `TCP`.
fn matches_keys(item: &Value, selector: &str) -> bool {
    selector.split(',').all(|pair| {
        let Some((key, value)) = pair.split_once('=') else {
            return false;
        };
        let Ok(value) = serde_json::from_str::<Value>(value) else {
            return false;
        };
        match item.get(key) {
            Some(v) => *v == value,
            None => key == "protocol" && value == "TCP",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app": "orders"}, "lables": {"typo": "x"}},
            "spec": {
                "hostnameOverride": "worker",
                "securityContext": {},
                "containers": [
                    {"name": "helper", "image": "h", "env": null},
                    {"name": "app", "image": "a", "imagePullPolcy": "Always",
                     "ports": [{"containerPort": 80, "hostPorts": 8}],
                     "restartPolicyRules": [{"action": "Restart"}]}
                ],
                "volumes": []
            }
        })
    }

    fn paths(p: &Parsed) -> Vec<String> {
        p.unknown.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn fields_the_pinned_types_drop_are_found_with_their_paths() {
        let parsed = parse(&template()).expect("parses");
        assert_eq!(
            paths(&parsed),
            [
                "spec.template.metadata.lables",
                "spec.template.spec.containers[1].imagePullPolcy",
                "spec.template.spec.containers[1].ports[0].hostPorts",
                "spec.template.spec.containers[1].restartPolicyRules",
                "spec.template.spec.hostnameOverride",
            ]
        );
        assert_eq!(parsed.unknown[3].value, json!([{"action": "Restart"}]));
    }

    #[test]
    fn a_template_of_known_fields_has_none() {
        let raw = json!({"spec": {"containers": [{"name": "a", "image": "x",
            "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": 2}},
            "env": [], "securityContext": {}}], "volumes": null}});
        assert_eq!(parse(&raw).expect("parses").unknown, vec![]);
    }

    #[test]
    fn a_known_field_of_the_wrong_type_is_an_error_naming_it() {
        let raw =
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "x"}]}]}});
        let err = parse(&raw).expect_err("wrong type");
        assert!(
            err.starts_with("spec.template.spec.containers[0].ports[0].containerPort "),
            "{err}"
        );
    }

    #[test]
    fn restore_puts_fields_back_by_container_name() {
        let parsed = parse(&template()).expect("parses");
        // The built template: the operator's sidecar first here, so indices differ.
        let mut built = json!({"metadata": {"labels": {"app": "orders"}}, "spec": {
        "containers": [
            {"name": "kcp-sidecar"},
            {"name": "app", "ports": [{"containerPort": 80}]},
            {"name": "helper"}
        ]}});
        restore(&mut built, &parsed.unknown);
        let pod = &built["spec"];
        assert_eq!(pod["hostnameOverride"], "worker");
        assert_eq!(pod["containers"][1]["imagePullPolcy"], "Always");
        assert_eq!(
            pod["containers"][1]["restartPolicyRules"][0]["action"],
            "Restart"
        );
        assert_eq!(pod["containers"][1]["ports"][0]["hostPorts"], 8);
        assert_eq!(pod["containers"][0], json!({"name": "kcp-sidecar"}));
        assert_eq!(built["metadata"]["lables"], json!({"typo": "x"}));
    }

    #[test]
    fn the_api_servers_paths_become_paths_in_the_resource() {
        let single = "failed to create typed patch object (shop/orders; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"app\"].imagePullPolcy: field not declared in schema";
        let paths = undeclared_paths(single);
        assert_eq!(
            paths,
            [".spec.template.spec.containers[name=\"app\"].imagePullPolcy"]
        );
        assert_eq!(
            template_path(&paths[0], &template()).as_deref(),
            Some("spec.template.spec.containers[1].imagePullPolcy")
        );

        let several = "failed to create typed patch object (shop/orders; apps/v1, Kind=Deployment): errors:\n  .spec.template.spec.containers[name=\"app\"].ports[containerPort=80,protocol=\"TCP\"].hostPorts: field not declared in schema\n  .spec.template.metadata.lables: field not declared in schema";
        let resolved: Vec<_> = undeclared_paths(several)
            .iter()
            .map(|p| template_path(p, &template()))
            .collect();
        assert_eq!(
            resolved,
            [
                Some("spec.template.spec.containers[1].ports[0].hostPorts".to_owned()),
                Some("spec.template.metadata.lables".to_owned()),
            ]
        );

        assert_eq!(
            undeclared_paths("deployments.apps \"x\" is invalid"),
            Vec::<String>::new()
        );
        assert_eq!(template_path(".spec.replicas", &template()), None);
        assert_eq!(
            template_path(
                ".spec.template.spec.containers[name=\"gone\"].x",
                &template()
            ),
            None
        );
    }
}
