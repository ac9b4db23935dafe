//! End-to-end against a real cluster (kind, k3d, any conformant 1.32+): what only a real API
//! server shows. The shipped manifests install and re-apply unchanged; the examples are
//! admitted and the refusal table refused, with the server's own messages; `/scale`, suspend,
//! children, status and garbage collection work with the operator run in-process; and a
//! reconcile that changes nothing writes nothing.
//!
//! Run them all with `.ci/cluster-tests` (see CONTRIBUTING.md), or:
//! `cargo test -p kcp-operator --test e2e_cluster -- --ignored --test-threads=1`
//! Each test works in its own namespace `kcp-e2e-*` (see `e2e_support`).

#![allow(clippy::unwrap_used)]

mod e2e_support;

use std::collections::BTreeSet;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kcp_crds::KafkaConsumerProxy;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

use e2e_support::{
    Operator, admission, apply, apply_manifests, client, condition, crd_established,
    delete_all_kcps, eventually, example, fresh_namespace, install, kubectl, kubectl_ok, no_op,
    stop_installed_operator,
};

fn deployment_replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.replicas)
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn shipped_manifests_install_and_a_second_apply_changes_nothing() {
    let client = client().await;
    apply_manifests().await;
    let again = apply_manifests().await;
    let changed: Vec<&str> = again
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.ends_with(" unchanged"))
        .collect();
    assert!(
        changed.is_empty(),
        "a second `kubectl apply -k manifests/` changed something:\n{again}"
    );
    let diff = kubectl(&["diff", "-k", "manifests/"]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "`kubectl diff -k manifests/` after an apply:\n{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    crd_established(&client).await;
    kubectl_ok(&["get", "kcp", "--all-namespaces"]).await;
    // The other tests run the operator in-process; the installed one must not fight it.
    stop_installed_operator(&client).await;
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn every_shipped_example_is_admitted() {
    let namespace = "kcp-e2e-examples";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let examples = admission::examples();
    assert!(examples.len() >= 4, "examples found: {}", examples.len());
    let mut refused = Vec::new();
    for (file, object) in &examples {
        // KEDA's ScaledObject needs KEDA's CRD, which the test cluster does not have; it is
        // validated against KEDA's published schema in `tests/tests/autoscaling.rs`.
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        if api_version.starts_with("keda.sh/") {
            continue;
        }
        if let Err(e) = admission::dry_run_create(&client, namespace, object).await {
            refused.push(format!(
                "{file} {}/{}: {e}",
                object["kind"], object["metadata"]["name"]
            ));
        }
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn bad_resources_are_refused_by_the_api_server_with_their_messages() {
    let namespace = "kcp-e2e-refusals";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let table = admission::refusals();
    if let Err(e) = admission::dry_run_create(&client, namespace, &table.good).await {
        panic!("the table's good resource must be admitted, else every case passes: {e}");
    }
    let mut wrong = Vec::new();
    for case in &table.cases {
        let object = case.object(&table.good).unwrap();
        let result = admission::dry_run_create(&client, namespace, &object).await;
        if let Some(why) = admission::refusal_mismatch(case, &result) {
            let moved = (case.moved_from.as_deref())
                .map(|m| format!(" (moved from {m})"))
                .unwrap_or_default();
            wrong.push(format!("{}{moved}: {why}", case.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases in {} are not refused as written:\n{}",
        wrong.len(),
        table.cases.len(),
        admission::REFUSALS,
        wrong.join("\n")
    );
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn group_id_cannot_change_after_creation() {
    let namespace = "kcp-e2e-group-id";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let mut object = example(namespace, "orders", 1);
    object["spec"]["kafka"]["groupId"] = json!("group-a");
    apply(&kcps, &object).await;
    let patch = |group: &str| Patch::Merge(json!({"spec": {"kafka": {"groupId": group}}}));
    match kcps
        .patch("orders", &PatchParams::default(), &patch("group-b"))
        .await
    {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 422 && s.message.contains("groupId is immutable"),
            "{} {}",
            s.code,
            s.message
        ),
        other => panic!("changing the groupId must be refused, got {other:?}"),
    }
    // The rule is about the groupId only: other fields still change.
    let scaled = Patch::Merge(json!({"spec": {"replicas": 2}}));
    kcps.patch("orders", &PatchParams::default(), &scaled)
        .await
        .unwrap();
    delete_all_kcps(&client, namespace).await;
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn example_gets_children_status_and_garbage_collection() {
    let namespace = "kcp-e2e-lifecycle";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let _operator = Operator::start(namespace, "5s").await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    apply(&kcps, &example(namespace, "orders", 1)).await;

    let deployment = eventually("the Deployment", || async {
        deployments.get_opt("orders").await.unwrap()
    })
    .await;
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "kcp-sidecar"]);
    // The API server keeps the app's drain hook, on the admin port by number, and the grace
    // period: the default drain (30 s) and margin (10 s), then the app's default 30 s.
    let hook = pod.containers[0]
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.http_get.as_ref())
        .unwrap();
    assert_eq!(hook.path.as_deref(), Some("/drain"));
    assert_eq!(
        hook.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090)
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(70));
    let config = config_maps.get_opt("orders-kcp-config").await.unwrap();
    assert!(config.is_some(), "the ConfigMap");

    let kcp = eventually("a status with every condition", || async {
        let kcp = kcps.get("orders").await.unwrap();
        [
            "Ready",
            "Reconciling",
            "Stalled",
            "KafkaReachable",
            "DeadLetterTopicsReady",
            "PartitionsStuck",
        ]
        .iter()
        .all(|t| condition(&kcp, t).is_some())
        .then_some(kcp)
    })
    .await;
    let status = kcp.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.selector.as_deref(),
        Some("kafkaproxy.io/instance=orders")
    );
    let kafka = condition(&kcp, "KafkaReachable").unwrap();
    assert_eq!(kafka.reason, "KafkaUnreachable", "the brokers do not exist");
    let dead_letter = condition(&kcp, "DeadLetterTopicsReady").unwrap();
    assert_eq!(
        (dead_letter.status.as_str(), dead_letter.reason.as_str()),
        ("Unknown", "KafkaUnreachable"),
        "not known without Kafka"
    );

    // A hand edit of a field the operator owns is put back.
    let hand_edit = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 5}});
    deployments
        .patch(
            "orders",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(hand_edit),
        )
        .await
        .unwrap();
    eventually("replicas put back to 1", || async {
        let d = deployments.get("orders").await.unwrap();
        (deployment_replicas(&d) == Some(1)).then_some(())
    })
    .await;

    // Deleting the resource lets Kubernetes collect the children (owner references).
    kcps.delete("orders", &DeleteParams::background())
        .await
        .unwrap();
    eventually("the children to be garbage-collected", || async {
        let gone = deployments.get_opt("orders").await.unwrap().is_none()
            && config_maps
                .get_opt("orders-kcp-config")
                .await
                .unwrap()
                .is_none();
        gone.then_some(())
    })
    .await;
}

/// Every status field the operator writes (seconds behind, stuck partitions, this group's dead
/// letters) is kept by a real API server as written (a field the schema lacked would be pruned),
/// and `kubectl get kcp` shows `BEHIND` and `DLQ`. No operator runs: the test writes the status.
#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn the_status_keeps_every_figure_and_kubectl_get_shows_them() {
    let namespace = "kcp-e2e-status-fields";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    apply(&kcps, &example(namespace, "orders", 0)).await;
    let at = "2026-11-29T10:00:00Z";
    let status = json!({
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Available",
            "message": "0 of 0 pods available", "lastTransitionTime": at, "observedGeneration": 1
        }, {
            "type": "PartitionsStuck", "status": "True", "reason": "PartitionsStuck",
            "message": "orders/3 stuck at offset 18234 for 6m (record tried 17 times, last 503)",
            "lastTransitionTime": at, "observedGeneration": 1
        }],
        "replicas": 0,
        "readyReplicas": 0,
        "selector": "kafkaproxy.io/instance=orders",
        "lag": {
            "total": 1840, "seconds": 252, "behind": "4m12s", "partitionCount": 6,
            "partitions": [{"topic": "orders", "partition": 3, "committedOffset": 18234,
                            "highWatermark": 20074, "lag": 1840, "lagSeconds": 252}],
            "updatedAt": at
        },
        "deadLetter": {
            "topics": ["orders-dlq"], "count": 3, "inTopics": 11,
            "recent": [{"topic": "orders", "partition": 1, "offset": 5521,
                        "idempotencyKey": "orders/1/5521",
                        "reason": "refused by the app after 1 attempt (last 422)", "at": at}]
        },
        "stuck": [{"topic": "orders", "partition": 3, "offset": 18234, "since": at,
                   "record": "record tried 17 times, last 503"}]
    });
    kcps.patch_status(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
    let kept = serde_json::to_value(kcps.get("orders").await.unwrap().status).unwrap();
    assert_eq!(kept, status, "the API server kept the status as written");

    let table = kubectl_ok(&["get", "kcp", "orders", "-n", namespace]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "REPLICAS", "LAG", "BEHIND", "DLQ", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..6],
        ["orders", "True", "0", "1840", "4m12s", "3"],
        "{table}"
    );
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn a_missing_secret_is_reported_in_the_status() {
    let namespace = "kcp-e2e-secret";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let _operator = Operator::start(namespace, "5s").await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let mut object = example(namespace, "orders", 1);
    object["spec"]["kafka"]["auth"] =
        json!({"sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "does-not-exist"}});
    apply(&kcps, &object).await;
    let ready = eventually("Ready=False reason=SecretNotFound", || async {
        let kcp = kcps.get("orders").await.unwrap();
        condition(&kcp, "Ready").filter(|c| c.reason == "SecretNotFound")
    })
    .await;
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("does-not-exist"),
        "{}",
        ready.message
    );
    delete_all_kcps(&client, namespace).await;
}

/// A Secret is used only once it names the resource; a rotated value then rolls the pods
/// (a new pod template), noticed within the operator's refresh interval without a Secret watch.
#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn a_secret_needs_consent_and_its_rotation_rolls_the_pods() {
    let namespace = "kcp-e2e-rotation";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let _operator = Operator::start(namespace, "5s").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    let secret = |password: &str, allowed: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kafka-user", "namespace": namespace,
                         "annotations": {"kafkaproxy.io/allowed-consumers": allowed}},
            "stringData": {"username": "orders", "password": password}
        })
    };
    let pp = kube::api::PatchParams::apply("kcp-e2e").force();
    let put = |v: serde_json::Value| {
        let secrets = secrets.clone();
        let pp = pp.clone();
        async move {
            secrets
                .patch("kafka-user", &pp, &kube::api::Patch::Apply(&v))
                .await
                .unwrap();
        }
    };
    put(secret("one", "payments")).await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut object = example(namespace, "orders", 1);
    object["spec"]["kafka"]["auth"] =
        json!({"sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"}});
    apply(&kcps, &object).await;
    eventually("Ready=False reason=SecretNotAllowed", || async {
        let kcp = kcps.get("orders").await.unwrap();
        condition(&kcp, "Ready").filter(|c| c.reason == "SecretNotAllowed")
    })
    .await;
    assert!(deployments.get_opt("orders").await.unwrap().is_none());

    put(secret("one", "orders")).await;
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("kafkaproxy.io/secrets-hash")
            .cloned()
    };
    let first = eventually("the Deployment, with the Secret's fingerprint", || async {
        hash(&deployments.get_opt("orders").await.unwrap()?)
    })
    .await;
    put(secret("two", "orders")).await;
    eventually("the rotated password rolls the pod template", || async {
        let now = hash(&deployments.get_opt("orders").await.unwrap()?)?;
        (now != first).then_some(())
    })
    .await;
    delete_all_kcps(&client, namespace).await;
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn kubectl_scale_changes_replicas_and_the_deployment_follows() {
    let namespace = "kcp-e2e-scale";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let _operator = Operator::start(namespace, "5s").await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    apply(&kcps, &example(namespace, "orders", 1)).await;
    eventually("the Deployment with 1 replica", || async {
        let d = deployments.get_opt("orders").await.unwrap()?;
        (deployment_replicas(&d) == Some(1)).then_some(())
    })
    .await;

    kubectl_ok(&["scale", "kcp/orders", "-n", namespace, "--replicas=3"]).await;
    assert_eq!(kcps.get("orders").await.unwrap().spec.replicas, 3);
    eventually("the Deployment to follow to 3 replicas", || async {
        let d = deployments.get("orders").await.unwrap();
        (deployment_replicas(&d) == Some(3)).then_some(())
    })
    .await;
    // What `kubectl get --subresource=scale` and a HorizontalPodAutoscaler read. The pods need
    // not become ready: the Deployment counts them as soon as they exist.
    let scale = eventually("the scale subresource to report 3 replicas", || async {
        let scale = kcps.get_scale("orders").await.unwrap();
        (scale.status.as_ref()?.replicas == 3).then_some(scale)
    })
    .await;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("kafkaproxy.io/instance=orders")
    );
    delete_all_kcps(&client, namespace).await;
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn suspend_scales_to_zero_and_reports_ready_suspended() {
    let namespace = "kcp-e2e-suspend";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let _operator = Operator::start(namespace, "5s").await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut object = example(namespace, "orders", 1);
    apply(&kcps, &object).await;
    eventually("the Deployment with 1 replica", || async {
        let d = deployments.get_opt("orders").await.unwrap()?;
        (deployment_replicas(&d) == Some(1)).then_some(())
    })
    .await;

    object["spec"]["suspend"] = json!(true);
    let generation = apply(&kcps, &object).await.metadata.generation;
    eventually("the Deployment scaled to 0", || async {
        let d = deployments.get("orders").await.unwrap();
        (deployment_replicas(&d) == Some(0)).then_some(())
    })
    .await;
    let (kcp, ready) = eventually("Ready=True reason=Suspended", || async {
        let kcp = kcps.get("orders").await.unwrap();
        let ready = condition(&kcp, "Ready").filter(|c| c.reason == "Suspended")?;
        Some((kcp, ready))
    })
    .await;
    assert_eq!(ready.status, "True");
    assert!(ready.message.contains("suspended"), "{}", ready.message);
    let status = kcp.status.unwrap();
    assert_eq!(status.observed_generation, generation);
    assert_eq!(status.replicas, Some(0));

    object["spec"]["suspend"] = json!(false);
    apply(&kcps, &object).await;
    eventually("the Deployment back to 1 replica", || async {
        let d = deployments.get("orders").await.unwrap();
        (deployment_replicas(&d) == Some(1)).then_some(())
    })
    .await;
    delete_all_kcps(&client, namespace).await;
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn reconciles_without_a_change_write_nothing() {
    let namespace = "kcp-e2e-noop";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    no_op::assert_reconciles_write_nothing(&client, namespace, example(namespace, "orders", 0))
        .await;
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn zero_values_the_api_server_drops_cause_no_rewrites() {
    let namespace = "kcp-e2e-zero-values";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let mut object = example(namespace, "orders", 0);
    object["spec"]["template"] = json!({"spec": {
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "containers": [{
            "name": "app",
            "image": "nginxinc/nginx-unprivileged:1.27",
            "ports": [{"containerPort": 8080}],
            "env": [],
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch", "readOnly": false}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "initialDelaySeconds": 0},
            "resources": {"limits": {"cpu": "1000m"}}
        }]
    }});
    no_op::assert_reconciles_write_nothing(&client, namespace, object).await;
}

/// Every namespace a test uses is the one CONTRIBUTING.md names and `.ci/cluster-tests`
/// cleans up.
#[test]
fn every_test_namespace_is_documented_and_cleaned_up() {
    let read = |file: &str| std::fs::read_to_string(e2e_support::repo().join(file)).unwrap();
    let source = read("operator/tests/e2e_cluster.rs") + &read("operator/tests/e2e_operations.rs");
    let used: BTreeSet<&str> = source
        .split('"')
        .filter(|s| {
            s.strip_prefix("kcp-e2e-").is_some_and(|rest| {
                !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            })
        })
        .collect();
    assert!(used.len() >= 9, "namespaces found: {used:?}");
    let script = read(".ci/cluster-tests");
    let guide = read("CONTRIBUTING.md");
    for ns in used {
        assert!(
            script.contains(ns),
            ".ci/cluster-tests does not delete {ns}"
        );
        assert!(
            guide.contains(&format!("`{ns}`")),
            "CONTRIBUTING.md does not name {ns}"
        );
    }
}
