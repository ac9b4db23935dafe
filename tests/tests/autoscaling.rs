//! Autoscaling a `KafkaConsumerProxy` with KEDA, as `docs/autoscaling.md` and the example
//! `manifests/examples/keda-scaledobject.yaml` describe it: the ScaledObject is admitted by
//! KEDA's published schema, targets the resource through the `/scale` subresource its CRD
//! really has, within the replicas the CRD accepts, and scales on the operator's documented
//! lag-seconds metric of that same resource; `suspend` still wins over what it sets; and the
//! doc's GitOps snippets leave `spec.replicas` to the autoscaler.

mod support;

use kcp_crds::KafkaConsumerProxy;
use kcp_operator::reconcile::{
    build::{BuildOptions, build},
    testing::{kcp_from, port_app_spec},
    validate::validate,
};
use kube::CustomResourceExt;
use promql_parser::parser::{self, Expr};
use serde_json::{Value, json};
use support::{
    code_blocks,
    crd_schema::{Crds, KcpApiServer, renamed, with},
    metrics_doc::{Documented, Source},
    promql, read, yaml_docs,
};

const EXAMPLE: &str = "keda-scaledobject.yaml";
const DOC: &str = "docs/autoscaling.md";
const LAG_SECONDS: &str = "kcp_operator_resource_lag_seconds";

fn scaled_object() -> Value {
    let mut found: Vec<(String, Value)> = support::examples()
        .into_iter()
        .filter(|(_, doc)| doc["kind"] == "ScaledObject")
        .collect();
    assert_eq!(found.len(), 1, "one ScaledObject among the examples");
    let (file, so) = found.remove(0);
    assert_eq!(file, EXAMPLE);
    so
}

/// The CRD as generated from the code: (group, served version, kind, the version's entry).
fn crd() -> (String, String, String, Value) {
    let crd = serde_json::to_value(KafkaConsumerProxy::crd()).expect("the CRD serializes");
    let version = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["served"] == true && v["storage"] == true)
        .expect("a served storage version")
        .clone();
    (
        crd["spec"]["group"].as_str().expect("group").to_owned(),
        version["name"].as_str().expect("name").to_owned(),
        crd["spec"]["names"]["kind"]
            .as_str()
            .expect("kind")
            .to_owned(),
        version,
    )
}

/// A whole number, however JSON wrote it (the generated CRD writes `0.0`).
fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .unwrap_or_else(|| panic!("{v} is not a whole number"))
}

#[test]
fn the_keda_example_is_admitted_by_kedas_published_schema() {
    let crds = Crds::load();
    let so = scaled_object();
    let errors = crds.admit(&so).expect("KEDA's CRD is vendored");
    assert!(errors.is_empty(), "{EXAMPLE} refused: {errors:#?}");

    // Not a rubber stamp: a misspelled field, a number as text, a metadata value not text.
    for (broken, why) in [
        (
            renamed(&so, "/spec/scaleTargetRef", "scaleTarget"),
            "scaleTarget",
        ),
        (
            with(&so, "/spec/maxReplicaCount", json!("6")),
            "maxReplicaCount",
        ),
        (
            with(
                &so,
                "/spec/triggers/0/metadata/ignoreNullValues",
                json!(false),
            ),
            "ignoreNullValues",
        ),
        (with(&so, "/spec/triggers", Value::Null), "triggers"),
    ] {
        let errors = crds.admit(&broken).expect("KEDA's CRD is vendored");
        assert!(
            errors.iter().any(|e| e.contains(why)),
            "a broken ScaledObject must be refused naming {why}: {errors:?}"
        );
    }
}

#[test]
fn it_scales_a_kafka_consumer_proxy_through_its_scale_subresource() {
    let so = scaled_object();
    let (group, version, kind, served) = crd();
    let target = &so["spec"]["scaleTargetRef"];
    assert_eq!(target["apiVersion"], format!("{group}/{version}").as_str());
    assert_eq!(target["kind"], kind.as_str());
    let scale = &served["subresources"]["scale"];
    assert_eq!(
        scale["specReplicasPath"], ".spec.replicas",
        "KEDA writes replicas through /scale"
    );
    assert!(
        scale["labelSelectorPath"].is_string() && scale["statusReplicasPath"].is_string(),
        "the HPA reads the pods' selector and current replicas from /scale: {scale}"
    );
    // The resource it scales is one of the examples, in the same namespace.
    let namespace = &so["metadata"]["namespace"];
    assert!(
        support::examples().iter().any(|(_, doc)| {
            doc["kind"] == kind.as_str()
                && doc["metadata"]["name"] == target["name"]
                && &doc["metadata"]["namespace"] == namespace
        }),
        "no example {kind} {namespace}/{} to scale",
        target["name"]
    );
    // KEDA never asks for replicas the API server would refuse.
    let replicas =
        &served["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"];
    let (min, max) = (int(&replicas["minimum"]), int(&replicas["maximum"]));
    let spec = &so["spec"];
    let (lo, hi) = (int(&spec["minReplicaCount"]), int(&spec["maxReplicaCount"]));
    assert!(
        min <= lo && lo <= hi && hi <= max,
        "{lo}..={hi} within {min}..={max}"
    );
    let fallback = int(&spec["fallback"]["replicas"]);
    assert!(
        (1..=hi).contains(&fallback),
        "fallback {fallback} within 1..={hi}"
    );
}

#[test]
fn it_scales_on_the_operators_lag_seconds_of_that_resource() {
    let so = scaled_object();
    let triggers = so["spec"]["triggers"].as_array().expect("triggers");
    assert_eq!(triggers.len(), 1);
    let trigger = &triggers[0];
    assert_eq!(trigger["type"], "prometheus");
    let meta = &trigger["metadata"];
    let query = meta["query"].as_str().expect("a query");

    // One element whatever the number of operator replicas scraped: an aggregation without
    // `by`, as KEDA's Prometheus scaler requires.
    match parser::parse(query).unwrap_or_else(|e| panic!("{query}: {e}")) {
        Expr::Aggregate(a) => assert!(a.modifier.is_none(), "{query}: no `by`"),
        other => panic!("{query}: an aggregation, not {other:?}"),
    }
    let parsed = promql::parse(query).expect("parses");
    assert_eq!(parsed.metrics(), [LAG_SECONDS].into(), "{query}");
    let selector = &parsed.selectors[0];
    let equal = |label: &str| {
        selector
            .equal
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(equal("namespace"), so["metadata"]["namespace"].as_str());
    assert_eq!(
        equal("name"),
        so["spec"]["scaleTargetRef"]["name"].as_str(),
        "the lag of the resource it scales"
    );

    let docs = Documented::load();
    let (metric, _) = docs
        .series(LAG_SECONDS)
        .unwrap_or_else(|| panic!("{LAG_SECONDS} is in no metric table of docs/observability.md"));
    assert_eq!(
        metric.source,
        Source::Operator,
        "from the operator, so it exists with zero pods"
    );
    for label in ["namespace", "name"] {
        assert!(
            metric.labels.contains(label),
            "{LAG_SECONDS} documents no `{label}` label"
        );
    }

    let threshold: f64 = meta["threshold"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a numeric threshold");
    assert!(threshold > 0.0);
    assert_eq!(
        meta["ignoreNullValues"], "false",
        "a missing series is an error (fallback), not a 0 that scales to zero"
    );
    assert!(so["spec"]["fallback"].is_object());
}

#[test]
fn suspend_wins_over_the_replicas_an_autoscaler_sets() {
    let replicas = |suspend: bool| {
        let mut spec = port_app_spec();
        spec["replicas"] = json!(5);
        spec["suspend"] = json!(suspend);
        let validated = validate(&kcp_from(spec)).expect("valid");
        let options = BuildOptions {
            default_sidecar_image: "kcp-sidecar:test".into(),
        };
        build(&validated, &options).deployment_body()["spec"]["replicas"].clone()
    };
    assert_eq!(replicas(false), 5);
    assert_eq!(replicas(true), 0);
}

#[test]
fn the_docs_gitops_snippets_leave_spec_replicas_to_the_autoscaler() {
    let doc = read(DOC);
    let objects: Vec<Value> = code_blocks(&doc, "yaml")
        .iter()
        .flat_map(|b| yaml_docs(b))
        .collect();
    let (group, version, kind, _) = crd();

    // Argo CD: the difference is ignored, and a sync leaves the live value alone.
    let app = objects
        .iter()
        .find(|o| o["kind"] == "Application")
        .expect("an Argo CD Application");
    let ignored = app["spec"]["ignoreDifferences"]
        .as_array()
        .expect("ignoreDifferences")
        .iter()
        .any(|d| {
            d["group"] == group.as_str()
                && d["kind"] == kind.as_str()
                && d["jsonPointers"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p == "/spec/replicas"))
        });
    assert!(
        ignored,
        "{DOC}: ignoreDifferences on /spec/replicas of {kind}"
    );
    assert!(
        app["spec"]["syncPolicy"]["syncOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o == "RespectIgnoreDifferences=true")),
        "{DOC}: without RespectIgnoreDifferences a sync writes Git's replicas back"
    );

    // Flux (and anyone applying the manifest): a resource without spec.replicas, admitted.
    let api = KcpApiServer::new();
    let resources: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind.as_str())
        .collect();
    assert!(!resources.is_empty(), "{DOC}: a {kind} without replicas");
    for resource in resources {
        assert_eq!(
            resource["apiVersion"],
            format!("{group}/{version}").as_str()
        );
        assert!(
            resource["spec"]["replicas"].is_null(),
            "{DOC}: the manifest Git holds leaves replicas out"
        );
        let errors = api.admit(resource, None);
        assert!(errors.is_empty(), "{DOC}: {errors:?}");
    }
}

#[test]
fn promql_in_the_autoscaling_doc_parses_and_uses_documented_metrics() {
    let docs = Documented::load();
    let blocks = code_blocks(&read(DOC), "promql");
    assert!(
        !blocks.is_empty(),
        "{DOC} shows its queries as ```promql blocks"
    );
    let mut missing = Vec::new();
    for block in blocks {
        let query = promql::parse(block.trim()).unwrap_or_else(|e| panic!("{DOC}: {e}"));
        missing.extend(
            query
                .metrics()
                .into_iter()
                .filter(|m| docs.series(m).is_none())
                .map(str::to_owned),
        );
    }
    assert!(
        missing.is_empty(),
        "{DOC} uses metrics docs/observability.md does not document: {missing:?}"
    );
}
