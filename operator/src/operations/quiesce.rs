//! Stopping a proxy's pods for an operation: the one owner of the hold annotation.
//!
//! An operation that changes the group's offsets (rewind, fast-forward, skip) holds its proxy
//! by writing its own name in the proxy's [`HOLD_ANNOTATION`] (a merge patch carrying the
//! proxy's `resourceVersion`, so two operations cannot both take it). While an operation that
//! has not finished holds it, the proxy's reconcile builds its Deployment with zero replicas
//! ([`holder`]) and reports `Ready=True, reason OperationInProgress`. A hold whose operation
//! finished or was deleted is ignored, so a crash between finishing and [`release`] never
//! leaves a proxy stopped; [`release`] removes it once the operation ends.

use kcp_crds::{KafkaConsumerProxy, v1alpha1::KafkaConsumerProxyOperation};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::Error;

/// The annotation naming the operation that holds a proxy's pods stopped.
pub const HOLD_ANNOTATION: &str = "kafkaproxy.io/stopped-for-operation";

/// The operation named in `kcp`'s hold annotation, if it exists, is for this proxy and has not
/// finished; `None` otherwise.
pub async fn holder(client: &Client, kcp: &KafkaConsumerProxy) -> Result<Option<String>, Error> {
    let Some(name) = kcp.annotations().get(HOLD_ANNOTATION) else {
        return Ok(None);
    };
    let ops: Api<KafkaConsumerProxyOperation> =
        Api::namespaced(client.clone(), &kcp.namespace().unwrap_or_default());
    let op = ops.get_opt(name).await.map_err(|source| Error::ReadChild {
        kind: "KafkaConsumerProxyOperation",
        name: name.clone(),
        source,
    })?;
    Ok(op
        .filter(|op| holds(op, &kcp.name_any()))
        .map(|op| op.name_any()))
}

/// Whether `op` is for `proxy` and has not finished.
pub fn holds(op: &KafkaConsumerProxyOperation, proxy: &str) -> bool {
    op.spec.proxy == proxy
        && !op
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.finished())
}

/// Writes `operation` into the proxy's hold annotation, if the proxy is still at
/// `resource_version` (a conflict means someone changed it meanwhile: read it again).
pub async fn hold(
    api: &Api<KafkaConsumerProxy>,
    proxy: &str,
    resource_version: &str,
    operation: &str,
) -> kube::Result<()> {
    let patch = json!({"metadata": {
        "resourceVersion": resource_version,
        "annotations": {HOLD_ANNOTATION: operation},
    }});
    api.patch(proxy, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

/// Removes the hold annotation, if `operation` holds it.
pub async fn release(
    api: &Api<KafkaConsumerProxy>,
    proxy: &str,
    operation: &str,
) -> kube::Result<()> {
    let Some(kcp) = api.get_opt(proxy).await? else {
        return Ok(());
    };
    if kcp.annotations().get(HOLD_ANNOTATION).map(String::as_str) != Some(operation) {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "resourceVersion": kcp.resource_version(),
        "annotations": {HOLD_ANNOTATION: null},
    }});
    api.patch(proxy, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use kcp_crds::v1alpha1::{OperationStatus, Phase};
    use serde_json::json;

    use super::*;

    fn op(proxy: &str, phase: Option<Phase>) -> KafkaConsumerProxyOperation {
        let mut op: KafkaConsumerProxyOperation = serde_json::from_value(json!({
            "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyOperation",
            "metadata": {"name": "rewind", "namespace": "shop"},
            "spec": {"proxy": proxy, "rewind": {"toEarliest": true}}
        }))
        .expect("a valid operation");
        op.status = phase.map(|phase| OperationStatus {
            phase: Some(phase),
            ..OperationStatus::default()
        });
        op
    }

    #[test]
    fn only_an_unfinished_operation_of_the_proxy_holds_it() {
        assert!(holds(&op("orders", None), "orders"));
        assert!(holds(&op("orders", Some(Phase::Pending)), "orders"));
        assert!(holds(&op("orders", Some(Phase::Quiescing)), "orders"));
        assert!(holds(&op("orders", Some(Phase::Running)), "orders"));
        assert!(!holds(&op("orders", Some(Phase::Succeeded)), "orders"));
        assert!(!holds(&op("orders", Some(Phase::Failed)), "orders"));
        assert!(!holds(&op("payments", None), "orders"), "another proxy's");
    }
}
