//! A reconcile that changes nothing writes nothing: checked against a real API server, which
//! drops zero values, defaults fields and rewrites quantities, so that a desired object and
//! what the server returns differ in form without differing in meaning.

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kcp_crds::KafkaConsumerProxy;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{API_WRITES, Operator, apply, condition, delete_all_kcps, eventually};

/// Brings `object` to Ready, then makes the operator reconcile it 5 times without a spec
/// change (an unrelated annotation is touched each time) and checks that nothing was written.
pub async fn assert_reconciles_write_nothing(client: &Client, namespace: &str, object: Value) {
    // Resync and lag refresh far away: the touches are the only reconcile triggers, so each
    // one is seen (and the lag probe, which fails here, runs once).
    let operator = Operator::start(namespace, "10m").await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    apply(&kcps, &object).await;
    // `replicas: 0` makes the Deployment settle, and the resource become Ready, without pulling
    // images or reaching Kafka; the pod template is built, defaulted and compared all the same.
    eventually("Ready=True and the Deployment settled", || async {
        let kcp = kcps.get(&name).await.unwrap();
        let ready = condition(&kcp, "Ready")?;
        let d = deployments.get_opt(&name).await.unwrap()?;
        let s = d.status.as_ref()?;
        let settled = s.observed_generation == d.metadata.generation
            && s.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            });
        (ready.status == "True" && condition(&kcp, "KafkaReachable").is_some() && settled)
            .then_some(())
    })
    .await;
    operator.idle().await;
    let rv = |meta: &kube::api::ObjectMeta| meta.resource_version.clone().unwrap();
    let deployment_rv = rv(&deployments.get(&name).await.unwrap().metadata);
    let config_rv = rv(&config_maps
        .get(&format!("{name}-kcp-config"))
        .await
        .unwrap()
        .metadata);
    let writes = operator.metric(API_WRITES).await;
    let before = operator.idle().await;

    for touch in 1..=5 {
        let done = operator.idle().await;
        let annotation =
            json!({"metadata": {"annotations": {"e2e.kafkaproxy.io/touch": touch.to_string()}}});
        let touched = kcps
            .patch(&name, &PatchParams::default(), &Patch::Merge(annotation))
            .await
            .unwrap();
        eventually("the operator to reconcile the touched resource", || async {
            (operator.reconciles_done().await > done).then_some(())
        })
        .await;
        operator.idle().await;
        let kcp = kcps.get(&name).await.unwrap();
        assert_eq!(
            rv(&kcp.metadata),
            rv(&touched.metadata),
            "touch {touch}: the operator wrote the status of an unchanged resource: {:?}",
            kcp.status
        );
    }
    // Each touch waited for a finished reconcile; five in all, so that a reconcile queued
    // before a touch cannot stand in for every touch's own.
    eventually("five reconciles after the touches began", || async {
        (operator.reconciles_done().await >= before + 5.0).then_some(())
    })
    .await;
    operator.idle().await;
    let deployment = deployments.get(&name).await.unwrap();
    let config = config_maps
        .get(&format!("{name}-kcp-config"))
        .await
        .unwrap();
    assert_eq!(
        (rv(&deployment.metadata), rv(&config.metadata)),
        (deployment_rv, config_rv),
        "no-op reconciles rewrote a child (Deployment, ConfigMap resourceVersions); Deployment now:\n{}",
        serde_json::to_string_pretty(&deployment.spec).unwrap()
    );
    assert_eq!(
        operator.metric(API_WRITES).await,
        writes,
        "no-op reconciles sent writes (kcp_operator_api_writes_total), even if the server kept the objects"
    );
    delete_all_kcps(client, namespace).await;
}
