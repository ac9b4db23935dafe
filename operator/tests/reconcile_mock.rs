//! Reconcile against a mocked API server (`tower-test` + `kube::Client::new`): which requests
//! are sent, in which order, with which parameters, and that nothing is written when nothing
//! changed.

#![allow(clippy::unwrap_used)]

mod support;

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kcp_crds::KafkaConsumerProxy;
use kcp_operator::{
    Error, ErrorKind, api_calls,
    error::RECHECK_EXTERNAL_FIX,
    reconcile::{
        error_policy, reconcile,
        testing::{UID, port_app_spec, sasl_tls_spec, url_spec},
    },
};
use kube::{
    core::{DeserializeGuard, ObjectList},
    runtime::controller::Action,
};
use serde_json::{Value, json};
use support::*;

const USERNAME: &str = "svc-orders-7f3a";
const PASSWORD: &str = "s3cr3t-Pa55w0rd-x9";
const CA_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfakeCAfake\n-----END CERTIFICATE-----\n";

fn kcp_json(spec: Value) -> Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1",
        "kind": "KafkaConsumerProxy",
        "metadata": {"name": "orders", "namespace": "shop", "uid": UID, "generation": 1},
        "spec": spec
    })
}

fn put_secrets(fake: &FakeApi) {
    fake.put(
        &secret_path("kafka-user"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kafka-user", "namespace": "shop",
                         "annotations": {"kafkaproxy.io/allowed-consumers": "orders"}},
            "data": {"username": B64.encode(USERNAME), "password": B64.encode(PASSWORD)}
        }),
    );
    fake.put(
        &secret_path("kafka-ca"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kafka-ca", "namespace": "shop",
                         "annotations": {"kafkaproxy.io/allowed-consumers": "*"}},
            "data": {"ca.crt": B64.encode(CA_PEM)}
        }),
    );
}

/// The resource as the watch would deliver it now.
fn current(fake: &FakeApi) -> Arc<DeserializeGuard<KafkaConsumerProxy>> {
    Arc::new(serde_json::from_value(fake.get(KCP_PATH).unwrap()).unwrap())
}

fn writes(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.is_write())
        .map(|c| (c.method.clone(), c.path.clone()))
        .collect()
}

fn patch(path: &str) -> (String, String) {
    ("PATCH".into(), path.into())
}

fn status_path() -> String {
    format!("{KCP_PATH}/status")
}

fn condition(fake: &FakeApi, type_: &str) -> (String, String) {
    let kcp = fake.get(KCP_PATH).unwrap();
    let c = kcp["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {kcp:#}"))
        .clone();
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn assert_all_in_api_calls_table(calls: &[Call]) {
    for c in calls {
        let (group, resource, verb) = c.rbac();
        assert!(
            api_calls::allows(&group, &resource, &verb),
            "{} {} needs {verb} on {group}/{resource}, which api_calls.rs does not list",
            c.method,
            c.path
        );
    }
}

fn assert_no_secret_value_sent(calls: &[Call]) {
    for c in calls.iter().filter(|c| c.is_write()) {
        let body = String::from_utf8_lossy(&c.raw_body);
        for secret in [USERNAME, PASSWORD, "MIIBszCCAVmgAwIBAgIUfakeCAfake"] {
            assert!(
                !body.contains(secret),
                "{} {} carries a secret value",
                c.method,
                c.path
            );
            assert!(
                !body.contains(&B64.encode(secret)),
                "{} {} carries a base64 secret value",
                c.method,
                c.path
            );
        }
    }
}

#[tokio::test]
async fn first_reconcile_applies_configmap_then_deployment_then_status() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(sasl_tls_spec()));
    put_secrets(&fake);
    let lag = StubLag::new(42);
    let (ctx, metrics) = context(&fake, &lag, REFRESH);

    let action = reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(REFRESH));

    let calls = fake.take_calls();
    assert_eq!(
        writes(&calls),
        vec![
            patch(CONFIGMAP_PATH),
            patch(DEPLOYMENT_PATH),
            patch(&status_path())
        ],
        "exactly these writes, in this order"
    );
    for c in calls.iter().filter(|c| c.is_write()) {
        assert_eq!(
            c.query.get("fieldManager").map(String::as_str),
            Some("kafka-consumer-proxy-operator")
        );
        assert_eq!(c.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(
            c.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
    }
    for (c, kind) in calls
        .iter()
        .filter(|c| c.is_write())
        .zip(["ConfigMap", "Deployment"])
    {
        let body = c.body.as_ref().unwrap();
        assert_eq!(body["kind"], kind);
        let owner = &body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "KafkaConsumerProxy");
        assert_eq!(owner["apiVersion"], "kafkaproxy.io/v1alpha1");
        assert_eq!(owner["name"], "orders");
        assert_eq!(owner["uid"], UID);
        assert_eq!(owner["controller"], true);
    }
    let status_body = calls.last().unwrap().body.clone().unwrap();
    assert_eq!(status_body["kind"], "KafkaConsumerProxy");
    assert_eq!(status_body["apiVersion"], "kafkaproxy.io/v1alpha1");
    assert_eq!(
        status_body["status"].get("lag"),
        None,
        "the reconcile did not wait for the lag read it asked for"
    );
    assert_eq!(
        status_body["status"]["selector"],
        "kafkaproxy.io/instance=orders"
    );
    assert_eq!(
        condition(&fake, "Ready"),
        ("False".into(), "DeploymentProgressing".into())
    );
    assert_eq!(
        condition(&fake, "Reconciling"),
        ("True".into(), "DeploymentProgressing".into())
    );

    // The sidecar gets credentials by reference; the lag reader gets the values in memory.
    let deployment = fake.get(DEPLOYMENT_PATH).unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][1]["env"]
        .as_array()
        .unwrap();
    let username = env
        .iter()
        .find(|e| e["name"] == "KCP_SASL_USERNAME")
        .unwrap();
    assert_eq!(username["valueFrom"]["secretKeyRef"]["name"], "kafka-user");
    assert_no_secret_value_sent(&calls);
    assert_all_in_api_calls_table(&calls);

    // The read ended; the reconcile it asks for writes the figures, and only them.
    ctx.lag.idle().await;
    let probes = lag.probes.lock().unwrap().clone();
    assert_eq!(probes[0].1.sasl, Some((USERNAME.into(), PASSWORD.into())));
    assert_eq!(probes[0].1.tls_ca.as_deref(), Some(CA_PEM));
    assert_eq!(probes[0].0.group_id, "shop.orders");
    reconcile(current(&fake), ctx).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(writes(&calls), vec![patch(&status_path())]);
    let status_body = calls.last().unwrap().body.clone().unwrap();
    assert_eq!(status_body["status"]["lag"]["total"], 42);
    assert_eq!(status_body["status"]["lag"]["partitionCount"], 1);
    assert_eq!(status_body["status"]["deadLetter"]["count"], 3);
    assert_eq!(
        condition(&fake, "KafkaReachable"),
        ("True".into(), "KafkaReachable".into())
    );
    assert_eq!(
        lag.probes.lock().unwrap().len(),
        1,
        "read once per interval"
    );
    assert_eq!(metrics.api_writes_to("configmaps"), 1);
    assert_eq!(metrics.api_writes_to("deployments"), 1);
    assert_eq!(metrics.api_writes_to("kafkaconsumerproxies/status"), 2);
}

#[tokio::test]
async fn a_reconcile_that_changes_nothing_writes_nothing() {
    let fake = FakeApi::new();
    let mut spec = port_app_spec();
    // The fake rewrites 1000m as 1, like a real API server: still no drift.
    spec["sidecar"] = json!({"resources": {"limits": {"cpu": "1000m", "memory": "128Mi"}}});
    fake.put(KCP_PATH, kcp_json(spec));
    let lag = StubLag::new(5);
    let (ctx, metrics) = context(&fake, &lag, Duration::ZERO);

    // Each reconcile asks for a read (refresh zero) and sees the one the previous asked for.
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    ctx.lag.idle().await;
    assert_eq!(writes(&fake.take_calls()).len(), 3);

    // Pods come up, and the first figures are in: one status write.
    fake.mark_deployment_available(DEPLOYMENT_PATH);
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    ctx.lag.idle().await;
    assert_eq!(writes(&fake.take_calls()), vec![patch(&status_path())]);
    assert_eq!(
        condition(&fake, "Ready"),
        ("True".into(), "Available".into())
    );
    assert_eq!(fake.get(KCP_PATH).unwrap()["status"]["lag"]["total"], 5);

    // Nothing changed (lag read again, same figures): reads only.
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    ctx.lag.idle().await;
    let calls = fake.take_calls();
    assert_eq!(writes(&calls), vec![], "no-op reconcile must not write");
    assert_eq!(calls.len(), 2, "reads: ConfigMap and Deployment");
    assert_eq!(
        lag.probes.lock().unwrap().len(),
        3,
        "lag was read each time"
    );
    assert_eq!(metrics.api_writes_to("configmaps"), 1);
    assert_eq!(metrics.api_writes_to("deployments"), 1);
    assert_eq!(metrics.api_writes_to("kafkaconsumerproxies/status"), 2);

    // Lag moves: the next read finds it, and the reconcile after it writes it.
    *lag.result.lock().unwrap() = Ok(snapshot(9));
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    ctx.lag.idle().await;
    assert_eq!(writes(&fake.take_calls()), vec![]);
    reconcile(current(&fake), ctx).await.unwrap();
    assert_eq!(writes(&fake.take_calls()), vec![patch(&status_path())]);
    assert_eq!(fake.get(KCP_PATH).unwrap()["status"]["lag"]["total"], 9);
}

#[tokio::test]
async fn hand_edits_to_children_are_put_back() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(port_app_spec()));
    let lag = StubLag::new(0);
    let (ctx, _) = context(&fake, &lag, REFRESH);
    reconcile_and_read_lag(&fake, &ctx).await.unwrap();
    fake.take_calls();

    fake.edit(DEPLOYMENT_PATH, |d| {
        d["spec"]["template"]["spec"]["containers"][1]["image"] = json!("evil:latest");
    });
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(writes(&calls), vec![patch(DEPLOYMENT_PATH)]);
    assert_eq!(
        fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["template"]["spec"]["containers"][1]["image"],
        "kcp-sidecar:test"
    );

    fake.edit(CONFIGMAP_PATH, |c| c["data"]["config.json"] = json!("{}"));
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(writes(&fake.take_calls()), vec![patch(CONFIGMAP_PATH)]);

    // Someone deletes the Deployment: it is recreated.
    fake.remove(DEPLOYMENT_PATH);
    reconcile(current(&fake), ctx).await.unwrap();
    assert_eq!(writes(&fake.take_calls()), vec![patch(DEPLOYMENT_PATH)]);
}

#[tokio::test]
async fn a_spec_change_reapplies_both_children_and_rolls_the_pods() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(port_app_spec()));
    let lag = StubLag::new(0);
    let (ctx, _) = context(&fake, &lag, REFRESH);
    reconcile_and_read_lag(&fake, &ctx).await.unwrap();
    let hash = |fake: &FakeApi| {
        fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["kafkaproxy.io/config-hash"]
            .clone()
    };
    let first_hash = hash(&fake);
    fake.take_calls();

    fake.edit(KCP_PATH, |k| {
        k["spec"]["delivery"] = json!({"maxInFlight": 64});
        k["metadata"]["generation"] = json!(2);
    });
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(
        writes(&fake.take_calls()),
        vec![
            patch(CONFIGMAP_PATH),
            patch(DEPLOYMENT_PATH),
            patch(&status_path())
        ]
    );
    assert_ne!(hash(&fake), first_hash, "config change rolls the pods");
    assert_eq!(
        fake.get(KCP_PATH).unwrap()["status"]["observedGeneration"],
        2
    );

    // Scaling changes the Deployment only, and not the pods' config hash.
    let second_hash = hash(&fake);
    fake.edit(KCP_PATH, |k| {
        k["spec"]["replicas"] = json!(4);
        k["metadata"]["generation"] = json!(3);
    });
    reconcile(current(&fake), ctx).await.unwrap();
    let w = writes(&fake.take_calls());
    assert_eq!(w[0], patch(DEPLOYMENT_PATH));
    assert!(!w.contains(&patch(CONFIGMAP_PATH)));
    assert_eq!(hash(&fake), second_hash);
    assert_eq!(fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["replicas"], 4);
}

#[tokio::test]
async fn a_missing_secret_stalls_reports_once_and_is_rechecked() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(sasl_tls_spec()));
    let lag = StubLag::new(0);
    let (ctx, metrics) = context(&fake, &lag, REFRESH);

    let obj = current(&fake);
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(matches!(err, Error::SecretNotFound { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        error_policy(obj, &err, ctx.clone()),
        Action::requeue(RECHECK_EXTERNAL_FIX)
    );
    let calls = fake.take_calls();
    assert_eq!(
        writes(&calls),
        vec![patch(&status_path()), ("POST".into(), EVENTS_PATH.into())],
        "status and a Warning Event, no children"
    );
    let event = calls.last().unwrap().body.clone().unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "SecretNotFound");
    assert_eq!(
        condition(&fake, "Ready"),
        ("False".into(), "SecretNotFound".into())
    );
    assert_eq!(
        condition(&fake, "Stalled"),
        ("True".into(), "SecretNotFound".into())
    );
    assert!(lag.probes.lock().unwrap().is_empty());
    assert_eq!(
        metrics
            .reconcile_failures
            .get_or_create(&kcp_operator::metrics::CategoryLabel {
                category: "secret_not_found"
            })
            .get(),
        1
    );

    // Still missing: nothing new to say, nothing written.
    reconcile(current(&fake), ctx.clone()).await.unwrap_err();
    assert_eq!(writes(&fake.take_calls()), vec![]);

    // The user creates the Secrets: the next check converges.
    put_secrets(&fake);
    reconcile(current(&fake), ctx).await.unwrap();
    assert_eq!(writes(&fake.take_calls()).len(), 3);
    assert_eq!(condition(&fake, "Stalled").0, "False");
}

/// A Secret that does not name the resource is never used: no pod refers to it and the lag
/// probe does not get its values. Once its owner allows the resource, it converges; a rotated
/// value then rolls the pods.
#[tokio::test]
async fn a_secret_is_used_only_when_it_allows_the_resource_and_a_rotation_rolls_the_pods() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(sasl_tls_spec()));
    put_secrets(&fake);
    fake.edit(&secret_path("kafka-user"), |s| {
        s["metadata"]["annotations"] = json!({"kafkaproxy.io/allowed-consumers": "payments"})
    });
    let lag = StubLag::new(0);
    let (ctx, metrics) = context(&fake, &lag, REFRESH);

    let obj = current(&fake);
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(matches!(err, Error::SecretNotAllowed { .. }), "{err:?}");
    // An annotation on a Secret triggers no watch event: it is looked at again.
    assert_eq!(
        error_policy(obj, &err, ctx.clone()),
        Action::requeue(RECHECK_EXTERNAL_FIX)
    );
    assert!(
        err.to_string()
            .contains("kafkaproxy.io/allowed-consumers=orders"),
        "says what to do: {err}"
    );
    assert_eq!(
        condition(&fake, "Ready"),
        ("False".into(), "SecretNotAllowed".into())
    );
    assert!(fake.get(DEPLOYMENT_PATH).is_none(), "no pod refers to it");
    assert!(
        lag.probes.lock().unwrap().is_empty(),
        "its values were not used"
    );
    assert_eq!(
        metrics
            .reconcile_failures
            .get_or_create(&kcp_operator::metrics::CategoryLabel {
                category: "secret_not_allowed"
            })
            .get(),
        1
    );

    // The Secret's owner allows it.
    fake.edit(&secret_path("kafka-user"), |s| {
        s["metadata"]["annotations"] =
            json!({"kafkaproxy.io/allowed-consumers": "payments, orders"})
    });
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    let secrets_hash = |fake: &FakeApi| {
        fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["kafkaproxy.io/secrets-hash"]
            .clone()
    };
    let before = secrets_hash(&fake);
    assert!(before.is_string(), "{before}");
    fake.take_calls();

    // Nothing changed: nothing rolls.
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert!(
        !writes(&fake.take_calls()).contains(&patch(DEPLOYMENT_PATH)),
        "an unchanged Secret writes nothing"
    );

    // The password is rotated: the pod template changes, so the Deployment replaces the pods.
    fake.edit(&secret_path("kafka-user"), |s| {
        s["data"]["password"] = json!(B64.encode("rotated"))
    });
    reconcile(current(&fake), ctx).await.unwrap();
    assert!(writes(&fake.take_calls()).contains(&patch(DEPLOYMENT_PATH)));
    assert_ne!(secrets_hash(&fake), before);
}

#[tokio::test]
async fn an_invalid_spec_waits_for_a_change() {
    let fake = FakeApi::new();
    let mut spec = port_app_spec();
    spec["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 9090}]);
    fake.put(KCP_PATH, kcp_json(spec));
    let (ctx, _) = context(&fake, &StubLag::new(0), REFRESH);
    let obj = current(&fake);
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert_eq!(error_policy(obj, &err, ctx), Action::await_change());
    let calls = fake.take_calls();
    assert_eq!(
        writes(&calls),
        vec![patch(&status_path()), ("POST".into(), EVENTS_PATH.into())]
    );
    assert_eq!(
        condition(&fake, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );
    let message = fake.get(KCP_PATH).unwrap()["status"]["conditions"][0]["message"].clone();
    assert!(
        message.as_str().unwrap().contains("sidecar.adminPort"),
        "{message}"
    );
}

#[tokio::test]
async fn a_malformed_object_is_reported_and_others_still_parse() {
    let mut bad = kcp_json(url_spec());
    bad["spec"]["replicas"] = json!("three");
    bad["metadata"]["name"] = json!("broken");
    let good = kcp_json(url_spec());
    // What the watcher does with a page holding one bad and one good object.
    let list: ObjectList<DeserializeGuard<KafkaConsumerProxy>> = serde_json::from_value(json!({
        "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyList",
        "metadata": {}, "items": [bad, good]
    }))
    .unwrap();
    assert!(list.items[0].0.is_err());
    assert!(list.items[1].0.is_ok());

    let fake = FakeApi::new();
    let (ctx, _) = context(&fake, &StubLag::new(0), REFRESH);
    let obj = Arc::new(list.items[0].clone());
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(matches!(err, Error::MalformedObject(_)), "{err:?}");
    assert_eq!(error_policy(obj, &err, ctx), Action::await_change());
    let calls = fake.take_calls();
    assert_eq!(writes(&calls), vec![("POST".into(), EVENTS_PATH.into())]);
    let event = calls[0].body.clone().unwrap();
    assert_eq!(event["regarding"]["name"], "broken");
    assert!(event["note"].as_str().unwrap().contains("cannot be parsed"));
}

#[tokio::test]
async fn a_deployment_we_do_not_own_is_never_taken_over() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(port_app_spec()));
    fake.put(
        DEPLOYMENT_PATH,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "orders", "namespace": "shop"}, "spec": {}}),
    );
    let (ctx, _) = context(&fake, &StubLag::new(0), REFRESH);
    let err = reconcile(current(&fake), ctx).await.unwrap_err();
    assert!(matches!(err, Error::OwnershipConflict { .. }), "{err:?}");
    let w = writes(&fake.take_calls());
    assert!(!w.contains(&patch(DEPLOYMENT_PATH)));
    assert!(!w.contains(&patch(CONFIGMAP_PATH)));
    assert_eq!(
        condition(&fake, "Stalled"),
        ("True".into(), "OwnershipConflict".into())
    );
}

#[tokio::test]
async fn kafka_unreachable_is_a_condition_not_a_failed_reconcile() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(url_spec()));
    let lag = StubLag::new(0);
    *lag.result.lock().unwrap() = Err("down".into());
    let (ctx, metrics) = context(&fake, &lag, REFRESH);
    let action = reconcile_and_read_lag(&fake, &ctx).await.unwrap();
    assert_eq!(action, Action::requeue(REFRESH));
    assert_eq!(
        condition(&fake, "KafkaReachable"),
        ("False".into(), "KafkaUnreachable".into())
    );
    let calls = fake.take_calls();
    assert!(writes(&calls).contains(&("POST".into(), EVENTS_PATH.into())));
    assert_eq!(metrics.lag_probe_failures.get(), 1);
    assert!(
        fake.get(DEPLOYMENT_PATH).is_some(),
        "children applied anyway"
    );
}

#[tokio::test]
async fn api_failures_are_transient_with_backoff_and_422_is_the_users() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(port_app_spec()));
    let (ctx, _) = context(&fake, &StubLag::new(0), REFRESH);

    fake.fail("PATCH", DEPLOYMENT_PATH, 500, "InternalError");
    let obj = current(&fake);
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert!(
        !writes(&fake.take_calls()).contains(&patch(&status_path())),
        "a transient failure leaves the status alone"
    );

    fake.fail("PATCH", DEPLOYMENT_PATH, 422, "Invalid");
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::await_change()
    );
    assert_eq!(
        condition(&fake, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );

    // Success resets the backoff.
    fake.clear_failures();
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    fake.fail("PATCH", DEPLOYMENT_PATH, 503, "ServiceUnavailable");
    fake.edit(DEPLOYMENT_PATH, |d| d["spec"]["replicas"] = json!(7));
    let err = reconcile(current(&fake), ctx.clone()).await.unwrap_err();
    assert_eq!(
        error_policy(obj, &err, ctx),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn startup_without_the_crd_explains_how_to_install_it() {
    let fake = FakeApi::new();
    let api: kube::Api<DeserializeGuard<KafkaConsumerProxy>> = kube::Api::all(fake.client());
    let err = kcp_operator::run::check_crd(&api).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("kubectl apply -f manifests/crds/kafkaconsumerproxies.yaml"),
        "{message}"
    );
    assert!(message.contains("kubectl apply -k manifests/"), "{message}");
    let calls = fake.take_calls();
    assert_eq!(calls[0].query.get("limit").map(String::as_str), Some("1"));
    assert_all_in_api_calls_table(&calls);
}

#[tokio::test]
async fn a_typo_in_the_template_is_invalid_spec_naming_its_path() {
    let fake = FakeApi::new();
    fake.undeclare("imagePullPolcy");
    let mut spec = port_app_spec();
    spec["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    fake.put(KCP_PATH, kcp_json(spec));
    let (ctx, _) = context(&fake, &StubLag::new(0), REFRESH);

    let obj = current(&fake);
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    assert_eq!(
        error_policy(obj, &err, ctx.clone()),
        Action::await_change(),
        "waits for a spec change, no hot retry"
    );
    let calls = fake.take_calls();
    let apply = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path == DEPLOYMENT_PATH)
        .unwrap();
    assert_eq!(
        apply.query.get("fieldValidation").map(String::as_str),
        Some("Strict")
    );
    assert_eq!(
        apply.body.as_ref().unwrap()["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"],
        "Always",
        "the typo is sent for the API server to judge, not dropped"
    );
    assert_eq!(
        condition(&fake, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );
    let message = fake.get(KCP_PATH).unwrap()["status"]["conditions"][0]["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("spec.template.spec.containers[0].imagePullPolcy"),
        "{message}"
    );
    let event = calls
        .iter()
        .find(|c| c.method == "POST" && c.path == EVENTS_PATH)
        .and_then(|c| c.body.clone())
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
}

#[tokio::test]
async fn a_pod_field_newer_than_the_operators_types_reaches_the_deployment() {
    let fake = FakeApi::new();
    let mut spec = port_app_spec();
    // Kubernetes 1.34 fields; the operator's types are pinned at 1.33.
    spec["template"]["spec"]["hostnameOverride"] = json!("orders-worker");
    let rules = json!([{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]);
    spec["template"]["spec"]["containers"][0]["restartPolicyRules"] = rules.clone();
    fake.put(KCP_PATH, kcp_json(spec));
    let (ctx, _) = context(&fake, &StubLag::new(0), Duration::ZERO);

    reconcile(current(&fake), ctx.clone()).await.unwrap();
    ctx.lag.idle().await;
    let calls = fake.take_calls();
    let apply = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path == DEPLOYMENT_PATH)
        .unwrap();
    assert_eq!(
        apply.query.get("fieldValidation").map(String::as_str),
        Some("Strict")
    );
    let pod = &apply.body.as_ref().unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["hostnameOverride"], "orders-worker");
    assert_eq!(pod["containers"][0]["name"], "app");
    assert_eq!(pod["containers"][0]["restartPolicyRules"], rules);
    let stored = fake.get(DEPLOYMENT_PATH).unwrap();
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["restartPolicyRules"],
        rules
    );

    // The field the operator's types do not know does not make every resync write.
    fake.mark_deployment_available(DEPLOYMENT_PATH);
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(writes(&fake.take_calls()), vec![patch(&status_path())]);
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(writes(&fake.take_calls()), vec![]);

    // Changing only that field is a change of what we want: applied again.
    fake.edit(KCP_PATH, |k| {
        k["spec"]["template"]["spec"]["hostnameOverride"] = json!("orders-2");
        k["metadata"]["generation"] = json!(2);
    });
    reconcile(current(&fake), ctx).await.unwrap();
    let w = writes(&fake.take_calls());
    assert!(w.contains(&patch(DEPLOYMENT_PATH)), "{w:?}");
    assert_eq!(
        fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["template"]["spec"]["hostnameOverride"],
        "orders-2"
    );
}

/// The schema registry's Secret needs the same consent as Kafka's, its values are never written
/// anywhere, and a rotated registry password rolls the pods.
#[tokio::test]
async fn a_schema_registry_secret_needs_consent_and_its_rotation_rolls_the_pods() {
    const REGISTRY_PASSWORD: &str = "registry-s3cret-value";
    let fake = FakeApi::new();
    let mut spec = port_app_spec();
    spec["kafka"]["schemaRegistry"] = json!({
        "url": "https://registry.kafka.svc:8081",
        "basicAuth": {"secretName": "registry-user"}
    });
    spec["endpoint"]["decode"] = json!("avro");
    fake.put(KCP_PATH, kcp_json(spec));
    fake.put(
        &secret_path("registry-user"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "registry-user", "namespace": "shop",
                         "annotations": {"kafkaproxy.io/allowed-consumers": "payments"}},
            "data": {"username": B64.encode("reader"), "password": B64.encode(REGISTRY_PASSWORD)}
        }),
    );
    let lag = StubLag::new(0);
    let (ctx, _) = context(&fake, &lag, REFRESH);

    let err = reconcile(current(&fake), ctx.clone()).await.unwrap_err();
    assert!(matches!(err, Error::SecretNotAllowed { .. }), "{err:?}");
    assert!(fake.get(DEPLOYMENT_PATH).is_none(), "no pod refers to it");

    fake.edit(&secret_path("registry-user"), |s| {
        s["metadata"]["annotations"] = json!({"kafkaproxy.io/allowed-consumers": "orders"})
    });
    fake.take_calls();
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    let calls = fake.take_calls();
    for c in calls.iter().filter(|c| c.is_write()) {
        assert!(
            !String::from_utf8_lossy(&c.raw_body).contains(REGISTRY_PASSWORD),
            "a registry password was written"
        );
    }
    let secrets_hash = |fake: &FakeApi| {
        fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["kafkaproxy.io/secrets-hash"]
            .clone()
    };
    let before = secrets_hash(&fake);
    assert!(before.is_string(), "{before}");

    fake.edit(&secret_path("registry-user"), |s| {
        s["data"]["password"] = json!(B64.encode("rotated"))
    });
    reconcile(current(&fake), ctx).await.unwrap();
    assert!(writes(&fake.take_calls()).contains(&patch(DEPLOYMENT_PATH)));
    assert_ne!(secrets_hash(&fake), before);
}

#[tokio::test]
async fn pause_reaches_the_pods_without_a_rollout() {
    let fake = FakeApi::new();
    fake.put(KCP_PATH, kcp_json(port_app_spec()));
    let lag = StubLag::new(0);
    let (ctx, _) = context(&fake, &lag, REFRESH);
    reconcile_and_read_lag(&fake, &ctx).await.unwrap();
    let control = |fake: &FakeApi| {
        let cm = fake.get(CONFIGMAP_PATH).unwrap();
        serde_json::from_str::<Value>(cm["data"]["control.json"].as_str().unwrap()).unwrap()
    };
    assert_eq!(control(&fake), json!({"paused": false}));
    let template = fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["template"].clone();
    let sidecar = template["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kcp-sidecar")
        .unwrap()
        .clone();
    assert!(
        sidecar["env"].as_array().unwrap().iter().any(
            |e| e["name"] == "KCP_CONTROL_PATH" && e["value"] == "/etc/kcp/config/control.json"
        ),
        "the sidecar is told where the control file is: {sidecar:#}"
    );
    fake.take_calls();

    fake.edit(KCP_PATH, |k| {
        k["spec"]["paused"] = json!(true);
        k["metadata"]["generation"] = json!(2);
    });
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    let w = writes(&fake.take_calls());
    assert!(w.contains(&patch(CONFIGMAP_PATH)), "{w:?}");
    assert!(
        !w.contains(&patch(DEPLOYMENT_PATH)),
        "a pause must not roll the pods (they would lose their partitions): {w:?}"
    );
    assert_eq!(control(&fake), json!({"paused": true}));
    assert_eq!(
        fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["template"],
        template
    );
    fake.mark_deployment_available(DEPLOYMENT_PATH);
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(condition(&fake, "Ready"), ("True".into(), "Paused".into()));

    fake.edit(KCP_PATH, |k| {
        k["spec"]["paused"] = json!(false);
        k["metadata"]["generation"] = json!(3);
    });
    reconcile(current(&fake), ctx).await.unwrap();
    assert_eq!(control(&fake), json!({"paused": false}));
    assert_eq!(
        condition(&fake, "Ready"),
        ("True".into(), "Available".into())
    );
}

#[tokio::test]
async fn a_hold_stops_the_pods_only_while_its_operation_runs() {
    const OP_PATH: &str =
        "/apis/kafkaproxy.io/v1alpha1/namespaces/shop/kafkaconsumerproxyoperations/rewind";
    let fake = FakeApi::new();
    let mut held = kcp_json(url_spec());
    held["spec"]["replicas"] = json!(3);
    held["metadata"]["annotations"] = json!({"kafkaproxy.io/stopped-for-operation": "rewind"});
    fake.put(KCP_PATH, held);
    let lag = StubLag::new(0);
    let (ctx, _) = context(&fake, &lag, REFRESH);
    let replicas = |fake: &FakeApi| fake.get(DEPLOYMENT_PATH).unwrap()["spec"]["replicas"].clone();

    // The operation named is gone (deleted, or never created): the hold is ignored.
    reconcile_and_read_lag(&fake, &ctx).await.unwrap();
    assert_eq!(replicas(&fake), 3);

    let op = json!({
        "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyOperation",
        "metadata": {"name": "rewind", "namespace": "shop"},
        "spec": {"proxy": "orders", "rewind": {"toEarliest": true}},
        "status": {"phase": "Quiescing"}
    });
    fake.put(OP_PATH, op);
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(replicas(&fake), 0, "an unfinished operation stops the pods");
    fake.mark_deployment_available(DEPLOYMENT_PATH);
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    assert_eq!(
        condition(&fake, "Ready"),
        ("True".into(), "OperationInProgress".into())
    );

    // Finished, even with the annotation left behind: the pods come back.
    fake.edit(OP_PATH, |o| o["status"]["phase"] = json!("Succeeded"));
    reconcile(current(&fake), ctx).await.unwrap();
    assert_eq!(replicas(&fake), 3);
}
