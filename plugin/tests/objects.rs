//! The exact objects and patches the plugin sends: each operation command's
//! `KafkaConsumerProxyOperation` as JSON (name, label, spec), and the pause/resume patches.

#![allow(clippy::unwrap_used)]

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
use kcp_crds::KafkaConsumerProxy;
use kubectl_kcp::{
    cli::Cli,
    objects::{Action, check_against_proxy, operation, operation_name, paused_patch, plan},
};
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2026-03-01T10:15:30Z".parse().unwrap()
}

/// The operation object the command would create in namespace `shop`, as JSON.
fn sent(args: &[&str]) -> Value {
    let argv = std::iter::once("kubectl-kcp").chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap();
    let Action::Operate { proxy, op, .. } = plan(&cli.command, now()).unwrap() else {
        panic!("{args:?} is not an operation")
    };
    serde_json::to_value(operation("shop", &proxy, &op, now())).unwrap()
}

fn expected(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1",
        "kind": "KafkaConsumerProxyOperation",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": { "kafkaproxy.io/proxy": "orders" },
        },
        "spec": spec,
    })
}

#[test]
fn rewind_two_hours_ago() {
    assert_eq!(
        sent(&["rewind", "orders", "--to-time", "2h"]),
        expected(
            "orders-rewind-20260301-101530",
            json!({ "proxy": "orders", "rewind": { "toTime": "2026-03-01T08:15:30Z" } })
        )
    );
}

#[test]
fn rewind_to_an_offset_of_partitions() {
    assert_eq!(
        sent(&[
            "rewind",
            "orders",
            "--to-offset",
            "42",
            "--topic",
            "orders",
            "--partition",
            "0,2",
        ]),
        expected(
            "orders-rewind-20260301-101530",
            json!({ "proxy": "orders", "rewind": {
                "toOffset": 42, "topic": "orders", "partitions": [0, 2],
            } })
        )
    );
}

#[test]
fn rewind_to_earliest() {
    assert_eq!(
        sent(&["rewind", "orders", "--to-earliest"]),
        expected(
            "orders-rewind-20260301-101530",
            json!({ "proxy": "orders", "rewind": { "toEarliest": true } })
        )
    );
}

#[test]
fn fast_forward_to_latest_of_a_topic() {
    assert_eq!(
        sent(&[
            "fast-forward",
            "orders",
            "--to-latest",
            "--topic",
            "payments"
        ]),
        expected(
            "orders-fast-forward-20260301-101530",
            json!({ "proxy": "orders", "fastForward": { "toLatest": true, "topic": "payments" } })
        )
    );
}

#[test]
fn fast_forward_to_a_time() {
    assert_eq!(
        sent(&[
            "fast-forward",
            "orders",
            "--to-time",
            "2026-03-01T09:00:00.750Z"
        ]),
        expected(
            "orders-fast-forward-20260301-101530",
            json!({ "proxy": "orders", "fastForward": { "toTime": "2026-03-01T09:00:00Z" } })
        )
    );
}

#[test]
fn skip_one_record() {
    assert_eq!(
        sent(&[
            "skip",
            "orders",
            "--topic",
            "orders",
            "--partition",
            "2",
            "--offset",
            "17",
            "--reason",
            "poison pill",
        ]),
        expected(
            "orders-skip-20260301-101530",
            json!({ "proxy": "orders", "skip": {
                "topic": "orders", "partition": 2, "offset": 17, "reason": "poison pill",
            } })
        )
    );
}

#[test]
fn redrive_with_defaults() {
    assert_eq!(
        sent(&["redrive", "orders"]),
        expected(
            "orders-redrive-20260301-101530",
            json!({ "proxy": "orders", "redrive": { "ratePerSecond": 100, "maxRedrives": 3 } })
        )
    );
}

#[test]
fn redrive_with_every_filter() {
    assert_eq!(
        sent(&[
            "redrive",
            "orders",
            "--since",
            "1d",
            "--until",
            "2026-03-01T10:00:00Z",
            "--reason-contains",
            "status 503",
            "--rate",
            "20",
            "--max-redrives",
            "5",
            "--max-records",
            "1000",
        ]),
        expected(
            "orders-redrive-20260301-101530",
            json!({ "proxy": "orders", "redrive": {
                "since": "2026-02-28T10:15:30Z",
                "until": "2026-03-01T10:00:00Z",
                "reasonContains": "status 503",
                "ratePerSecond": 20,
                "maxRedrives": 5,
                "maxRecords": 1000,
            } })
        )
    );
}

#[test]
fn names_are_lowercase_and_fit_253_characters() {
    assert_eq!(
        operation_name("Orders", "fast-forward", now()),
        "orders-fast-forward-20260301-101530"
    );
    let long = "a".repeat(300);
    let name = operation_name(&long, "fast-forward", now());
    assert_eq!(name.len(), 253);
    assert!(name.ends_with("a-fast-forward-20260301-101530"), "{name}");
}

#[test]
fn pause_and_resume_patches() {
    assert_eq!(paused_patch(true), json!({ "spec": { "paused": true } }));
    assert_eq!(paused_patch(false), json!({ "spec": { "paused": false } }));
}

fn proxy() -> KafkaConsumerProxy {
    serde_json::from_str(include_str!("fixtures/proxy.json")).unwrap()
}

fn op_of(args: &[&str]) -> kubectl_kcp::objects::Op {
    let argv = std::iter::once("kubectl-kcp").chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap();
    let Action::Operate { op, .. } = plan(&cli.command, now()).unwrap() else {
        panic!("not an operation")
    };
    op
}

#[test]
fn a_topic_must_be_one_of_the_proxys() {
    let p = proxy();
    assert_eq!(
        check_against_proxy(
            &op_of(&["rewind", "orders", "--to-earliest", "--topic", "order"]),
            &p
        )
        .unwrap_err()
        .to_string(),
        "topic \"order\" is not one of orders's topics (orders, payments)"
    );
    assert_eq!(
        check_against_proxy(
            &op_of(&[
                "skip",
                "orders",
                "--topic",
                "orders-dlq",
                "--partition",
                "0",
                "--offset",
                "1"
            ]),
            &p
        )
        .unwrap_err()
        .to_string(),
        "topic \"orders-dlq\" is not one of orders's topics (orders, payments)"
    );
    check_against_proxy(
        &op_of(&["rewind", "orders", "--to-earliest", "--topic", "payments"]),
        &p,
    )
    .unwrap();
    check_against_proxy(&op_of(&["redrive", "orders"]), &p).unwrap();
}
