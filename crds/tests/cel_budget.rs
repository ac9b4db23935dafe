//! Every CEL rule and message of the generated CRD stays within the API server's estimated cost
//! budget (per expression and for the whole schema), as estimated by the model in `cel_cost`,
//! and kube-cel's own static analysis flags nothing.
//!
//! The model is checked against what real API servers said: the round-1 `clientConfig` message,
//! which Kubernetes 1.32 and 1.36 refused ("estimated messageExpression cost exceeds budget by
//! factor of more than 100x"), must be refused here too.

// Only `crd_schema` is used here; the rest serves `schema.rs`.
#[allow(dead_code)]
mod admission;
mod cel_cost;

use admission::crd_schema;
use cel_cost::{CRD_LIMIT, PER_EXPRESSION_LIMIT, estimate, sites};
use serde_json::json;

/// We keep each expression under a tenth of the API server's limit, so an estimate of ours that
/// is low by up to 10x still passes on a real API server.
const MARGIN: f64 = 10.0;

#[test]
fn every_rule_and_message_is_within_a_tenth_of_the_budget() {
    let sites = sites(&crd_schema());
    assert!(
        sites.len() >= 8,
        "found only {} expressions: is the walk broken?",
        sites.len()
    );
    let mut report = Vec::new();
    let mut over = Vec::new();
    let mut total = 0.0;
    for site in &sites {
        match site.cost() {
            Ok(cost) => {
                total += cost * site.cardinality;
                report.push(format!(
                    "{:>12.0} x{:<4} {} {}: {}",
                    cost, site.cardinality, site.path, site.kind, site.expression
                ));
                if cost > PER_EXPRESSION_LIMIT / MARGIN {
                    over.push(format!("{} {}: {cost:.0}", site.path, site.kind));
                }
            }
            Err(e) => over.push(format!(
                "{} {} cannot be estimated ({e}): {}",
                site.path, site.kind, site.expression
            )),
        }
    }
    // `cargo test -p kcp-crds --test cel_budget -- --nocapture` shows every estimate.
    eprintln!("{}", report.join("\n"));
    assert!(
        over.is_empty(),
        "over {} per expression:\n{}\n\nall estimates:\n{}",
        PER_EXPRESSION_LIMIT / MARGIN,
        over.join("\n"),
        report.join("\n")
    );
    assert!(
        total <= CRD_LIMIT / MARGIN,
        "estimated total {total:.0} is over {}:\n{}",
        CRD_LIMIT / MARGIN,
        report.join("\n")
    );
}

#[test]
fn kube_cel_static_analysis_flags_nothing() {
    let mut warnings = Vec::new();
    for site in sites(&crd_schema()) {
        let compiled = kube_cel::compile_schema(&site_node(&site));
        // kube-cel 0.8 reports a macro's own variable (`k` in `self.all(k, ...)`) as out of
        // scope; those are not findings.
        let bound = cel_cost::bound_variables(&site.expression);
        for w in kube_cel::analyze_rule(
            &site.expression,
            &compiled,
            kube_cel::ScopeContext::CrdValidation,
        )
        .into_iter()
        .filter(|w| {
            w.kind != kube_cel::WarningKind::WrongScope
                || !bound.iter().any(|v| w.message.contains(&format!("'{v}'")))
        }) {
            warnings.push(format!(
                "{} {}: {:?} {}",
                site.path, site.kind, w.kind, w.message
            ));
        }
    }
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// The node a site's expression runs on, for kube-cel (which takes the schema, not our site).
fn site_node(site: &cel_cost::Site) -> serde_json::Value {
    let root = crd_schema();
    let mut node = &root;
    for part in site.path.split('.').filter(|p| !p.is_empty()) {
        node = if let Some(name) = part.strip_suffix("[*]") {
            let n = &node["properties"][name];
            if n["items"].is_object() {
                &n["items"]
            } else {
                &n["additionalProperties"]
            }
        } else {
            &node["properties"][part]
        };
    }
    node.clone()
}

/// The `clientConfig` schema as round 1 shipped it.
fn round_one_client_config() -> serde_json::Value {
    json!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 4096 },
    })
}

const ROUND_ONE_OWNED: &str = "k.startsWith('sasl.') || k.startsWith('ssl.') || k in ['bootstrap.servers', 'metadata.broker.list', 'group.id', 'group.instance.id', 'enable.auto.commit', 'enable.auto.offset.store', 'security.protocol']";

#[test]
fn the_message_real_api_servers_refused_is_refused_here() {
    let message = format!(
        "'kafka.clientConfig must not set ' + self.filter(k, {ROUND_ONE_OWNED}).join(', ') + ': the sidecar owns these keys; use kafka.bootstrapServers, kafka.groupId and kafka.auth instead'"
    );
    let cost = estimate(&message, &round_one_client_config()).expect("estimates");
    assert!(
        cost > 100.0 * PER_EXPRESSION_LIMIT,
        "the API server said more than 100x over budget; the model says {cost}"
    );
    // The rule itself was accepted by the same API servers.
    let rule = format!("self.all(k, !({ROUND_ONE_OWNED}))");
    let cost = estimate(&rule, &round_one_client_config()).expect("estimates");
    assert!(cost <= PER_EXPRESSION_LIMIT, "{cost}");
}

#[test]
fn unbounded_strings_and_lists_make_a_rule_too_expensive() {
    // The example of the Kubernetes CEL documentation: a regex over every item of a list.
    let rule = "self.all(x, x.matches('^[a-zA-Z]*$'))";
    let unbounded = json!({ "type": "array", "items": { "type": "string" } });
    assert!(estimate(rule, &unbounded).expect("estimates") > PER_EXPRESSION_LIMIT);
    let bounded = json!({
        "type": "array", "maxItems": 10,
        "items": { "type": "string", "maxLength": 10 },
    });
    assert!(estimate(rule, &bounded).expect("estimates") < 1_000.0);
    // Reading a map's keys with anything that walks them is unbounded; a lookup is not.
    let map = round_one_client_config();
    assert!(
        estimate("self.all(k, k.lowerAscii() != 'host')", &map).expect("estimates")
            > PER_EXPRESSION_LIMIT
    );
    assert!(
        estimate("self.all(k, k.matches('^[a-z]+$'))", &map).expect("estimates")
            > PER_EXPRESSION_LIMIT
    );
    assert!(estimate("!('Host' in self)", &map).expect("estimates") < 10.0);
}

#[test]
fn a_rule_inside_a_list_counts_once_per_item_in_the_total() {
    let schema = json!({
        "type": "object",
        "properties": {
            "items": {
                "type": "array", "maxItems": 100,
                "items": {
                    "type": "object",
                    "properties": { "a": { "type": "string", "maxLength": 10 } },
                    "x-kubernetes-validations": [{ "rule": "self.a.startsWith('x')" }],
                },
            },
        },
    });
    let sites = sites(&schema);
    let site = sites.iter().find(|s| s.kind == "rule").expect("one rule");
    assert_eq!(site.cardinality, 100.0);
    assert_eq!(site.path, ".items[*]");
}

/// The walk in `cel_cost::sites` follows `properties`, `items` and `additionalProperties`; a
/// rule anywhere else in the schema would escape the budget check. Count every rule and message
/// expression by scanning all of the schema's JSON instead, and require the same number.
#[test]
fn the_budget_check_sees_every_rule_of_the_crd() {
    fn count(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let own = if k == "x-kubernetes-validations" {
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .map(|r| {
                                usize::from(r.get("rule").is_some())
                                    + usize::from(r.get("messageExpression").is_some())
                            })
                            .sum()
                    } else {
                        0
                    };
                    own + count(v)
                })
                .sum(),
            serde_json::Value::Array(items) => items.iter().map(count).sum(),
            _ => 0,
        }
    }
    let schema = crd_schema();
    // `count` also descends into the validation lists themselves, which hold no nested rules.
    assert_eq!(sites(&schema).len(), count(&schema));
}
