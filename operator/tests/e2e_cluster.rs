//! End-to-end against a real cluster (kind, k3d, minikube...): install the CRD, run the
//! operator in-process for one namespace, apply an example resource, see the Deployment,
//! ConfigMap and a status with conditions; edit a child by hand and see it put back; delete
//! the resource and see Kubernetes garbage-collect the children.
//!
//! `KUBECONFIG=... cargo test -p kcp-operator --test e2e_cluster -- --ignored --test-threads=1`

#![allow(clippy::unwrap_used)]

use std::{future::Future, time::Duration};

use clap::Parser;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kcp_crds::KafkaConsumerProxy;
use kcp_operator::{cli::Args, run};
use kube::{
    Api, Client, CustomResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};
use serde_json::json;

const MANAGER: &str = "kcp-e2e";

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..120 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Installs the CRD, creates a fresh namespace and runs the operator on it.
async fn setup(namespace: &str) -> (Client, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let client = Client::try_default().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = KafkaConsumerProxy::crd();
    let name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .unwrap()
    .unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    let _ = namespaces.create(&PostParams::default(), &ns).await;

    let args = Args::try_parse_from([
        "kcp-operator",
        "--namespace",
        namespace,
        "--leader-election=false",
        "--metrics-addr=127.0.0.1:0",
        "--lag-refresh-interval=5s",
        "--lag-probe-timeout=3s",
        "--sidecar-image=ghcr.io/kafka-consumer-proxy/kcp-sidecar:e2e",
    ])
    .unwrap();
    let operator = tokio::spawn(run::run(args));
    (client, operator)
}

fn example(namespace: &str) -> serde_json::Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1",
        "kind": "KafkaConsumerProxy",
        "metadata": {"name": "orders", "namespace": namespace},
        "spec": {
            "kafka": {"bootstrapServers": "kafka.invalid:9092", "topics": ["orders"]},
            "endpoint": {"port": 8080, "path": "/events"},
            "replicas": 1,
            "template": {"spec": {"containers": [{
                "name": "app", "image": "nginxinc/nginx-unprivileged:1.27",
                "ports": [{"containerPort": 8080}]
            }]}}
        }
    })
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn example_gets_children_status_and_garbage_collection() {
    let namespace = "kcp-e2e-lifecycle";
    let (client, operator) = setup(namespace).await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    kcps.patch(
        "orders",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(example(namespace)),
    )
    .await
    .unwrap();

    let deployment = eventually("the Deployment", || async {
        deployments.get_opt("orders").await.unwrap()
    })
    .await;
    let containers = deployment.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["app", "kcp-sidecar"]
    );
    assert!(
        config_maps
            .get_opt("orders-kcp-config")
            .await
            .unwrap()
            .is_some()
    );

    let status = eventually("a status with conditions", || async {
        let kcp = kcps.get("orders").await.unwrap();
        kcp.status.filter(|s| {
            ["Ready", "Reconciling", "Stalled", "KafkaReachable"]
                .iter()
                .all(|t| s.conditions.iter().any(|c| c.type_ == *t))
        })
    })
    .await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.selector.as_deref(),
        Some("kafkaproxy.io/instance=orders")
    );
    let kafka = status
        .conditions
        .iter()
        .find(|c| c.type_ == "KafkaReachable")
        .unwrap();
    assert_eq!(
        kafka.reason, "KafkaUnreachable",
        "the example's brokers do not exist"
    );

    // A hand edit of a field the operator owns is put back.
    deployments
        .patch(
            "orders",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "spec": {"replicas": 5}
            })),
        )
        .await
        .unwrap();
    eventually("replicas put back to 1", || async {
        let d = deployments.get("orders").await.unwrap();
        (d.spec.and_then(|s| s.replicas) == Some(1)).then_some(())
    })
    .await;

    // Deleting the resource lets Kubernetes collect the children (owner references).
    kcps.delete("orders", &DeleteParams::foreground())
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
    operator.abort();
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn a_missing_secret_is_reported_in_the_status() {
    let namespace = "kcp-e2e-secret";
    let (client, operator) = setup(namespace).await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let mut kcp = example(namespace);
    kcp["spec"]["kafka"]["auth"] =
        json!({"sasl": {"mechanism": "PLAIN", "secretName": "does-not-exist"}});
    kcps.patch(
        "orders",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(kcp),
    )
    .await
    .unwrap();
    let ready = eventually("Ready=False SecretNotFound", || async {
        let kcp = kcps.get("orders").await.unwrap();
        kcp.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.reason == "SecretNotFound")
    })
    .await;
    assert_eq!(ready.status, "False");
    kcps.delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    operator.abort();
}
