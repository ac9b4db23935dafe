//! The `KafkaConsumerProxyOperation` CRD: generated file up to date, every CEL rule within a
//! tenth of the API server's cost budget, and admission (schema + CEL, as `schema.rs` does for
//! the proxy) accepting what the plugin writes and refusing the rest with the CRD's messages.

#[allow(dead_code)]
mod admission;
#[allow(dead_code)]
mod cel_cost;

use std::path::PathBuf;

use admission::ApiServer;
use cel_cost::{CRD_LIMIT, PER_EXPRESSION_LIMIT, sites};
use kcp_crds::v1alpha1::KafkaConsumerProxyOperation;
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(KafkaConsumerProxyOperation::crd()).expect("crd serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn op(spec: Value) -> Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyOperation",
        "metadata": {"name": "orders-rewind-1", "namespace": "shop"},
        "spec": spec
    })
}

#[test]
fn committed_operation_crd_matches_the_code() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(kcp_crds::OPERATION_CRD_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == kcp_crds::operation_crd_yaml(),
        "{} is out of date with crds/src/v1alpha1/operation.rs.\nRegenerate it: cargo run -p kcp-crds --bin crdgen operation > {}",
        path.display(),
        kcp_crds::OPERATION_CRD_PATH
    );
}

#[test]
fn every_rule_is_within_a_tenth_of_the_budget() {
    let sites = sites(&schema());
    assert!(sites.len() >= 9, "found only {}", sites.len());
    let mut total = 0.0;
    let mut report = Vec::new();
    for site in &sites {
        let cost = site
            .cost()
            .unwrap_or_else(|e| panic!("{} cannot be estimated: {e}", site.expression));
        report.push(format!(
            "{cost:>10.0} x{} {} {}",
            site.cardinality, site.path, site.expression
        ));
        assert!(
            cost <= PER_EXPRESSION_LIMIT / 10.0,
            "{} {}: {cost}",
            site.path,
            site.expression
        );
        total += cost * site.cardinality;
    }
    eprintln!("{}", report.join("\n"));
    assert!(total <= CRD_LIMIT / 10.0, "total {total}");
}

#[test]
fn what_the_plugin_writes_is_admitted() {
    let server = ApiServer::for_schema(schema());
    for spec in [
        json!({"proxy": "orders", "rewind": {"toTime": "2026-11-29T10:00:00Z"}}),
        json!({"proxy": "orders", "rewind": {"toOffset": 5, "topic": "orders", "partitions": [0, 2]}}),
        json!({"proxy": "orders", "rewind": {"toEarliest": true, "topic": "orders"}}),
        json!({"proxy": "orders", "fastForward": {"toLatest": true}}),
        json!({"proxy": "orders", "skip": {"topic": "orders", "partition": 1, "offset": 41, "reason": "poison"}}),
        json!({"proxy": "orders", "redrive": {"reasonContains": "503", "ratePerSecond": 50, "maxRedrives": 2}}),
    ] {
        let errors = server.admit(&op(spec.clone()), None);
        assert!(errors.is_empty(), "{spec}: {errors:?}");
    }
}

#[test]
fn refusals_say_what_to_fix() {
    let server = ApiServer::for_schema(schema());
    for (spec, expected) in [
        (
            json!({"proxy": "orders"}),
            "set exactly one of rewind, fastForward, skip, redrive",
        ),
        (
            json!({"proxy": "orders", "rewind": {"toEarliest": true}, "redrive": {}}),
            "set exactly one of rewind, fastForward, skip, redrive",
        ),
        (
            json!({"proxy": "orders", "rewind": {}}),
            "set exactly one of toTime, toOffset, toEarliest, toLatest",
        ),
        (
            json!({"proxy": "orders", "rewind": {"toOffset": 3}}),
            "toOffset is an offset of particular partitions: set topic and partitions too",
        ),
        (
            json!({"proxy": "orders", "rewind": {"toEarliest": true, "partitions": [1]}}),
            "partitions are partitions of one topic: set topic too",
        ),
        (
            json!({"proxy": "orders", "rewind": {"toLatest": true}}),
            "rewind moves back",
        ),
        (
            json!({"proxy": "orders", "fastForward": {"toEarliest": true}}),
            "fastForward moves ahead",
        ),
        (
            json!({"proxy": "orders", "rewind": {"toTime": "yesterday"}}),
            "date-time",
        ),
        (
            json!({"proxy": "orders", "redrive": {"ratePerSecond": 0}}),
            "ratePerSecond",
        ),
        (
            json!({"proxy": "orders", "skip": {"topic": "orders", "partition": 1}}),
            "offset",
        ),
    ] {
        let errors = server.admit(&op(spec.clone()), None).join("\n");
        assert!(
            errors.contains(expected),
            "{spec}: expected {expected:?} in:\n{errors}"
        );
    }
}

#[test]
fn the_spec_of_an_operation_cannot_change() {
    let server = ApiServer::for_schema(schema());
    let old = op(
        json!({"proxy": "orders", "rewind": {"toOffset": 5, "topic": "orders", "partitions": [0]}}),
    );
    let new = op(
        json!({"proxy": "orders", "rewind": {"toOffset": 1, "topic": "orders", "partitions": [0]}}),
    );
    let errors = server.admit(&new, Some(&old)).join("\n");
    assert!(
        errors.contains("an operation's spec cannot change"),
        "{errors}"
    );
    assert!(server.admit(&old, Some(&old)).is_empty());
}
