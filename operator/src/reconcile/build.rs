//! Build: the desired children of a validated resource, a ConfigMap with the rendered sidecar
//! config and a Deployment running the app's pod template plus the sidecar container.
//! The pod is shaped in `pod` (the template or `spec.pod`, labels and annotations), `sidecar`
//! (the sidecar container and its volumes) and `lifecycle` (the drain hooks and the grace
//! period: how the pod stops).
//!
//! Pure. No client, no clock; the same `Validated` always yields byte-identical objects. Secret
//! values never appear here: credentials reach the sidecar as `secretKeyRef` env vars and a
//! Secret volume. Each object carries [`APPLIED_HASH_ANNOTATION`], the hash of the object
//! itself (with the template fields the pinned pod types do not know), which is how `drift`
//! notices that what we want has changed. What is applied is JSON ([`Children::deployment_body`]):
//! the typed Deployment with those unknown fields put back where the user wrote them.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::ConfigMap,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kcp_crds::config::{CONFIG_FILE_NAME, CONTROL_FILE_NAME};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    template::{self, UnknownField},
    validate::Validated,
};
use crate::FIELD_MANAGER;

mod lifecycle;
mod pod;
mod sidecar;
#[cfg(test)]
mod tests;

pub use lifecycle::{
    DEFAULT_GRACE_SECONDS, DRAIN_MARGIN_SECONDS, drain_hook, grace_period_seconds,
};
pub use sidecar::{SIDECAR_UID, default_resources};

/// Name of the sidecar container (reserved in the app's template; the schema refuses it there).
pub const SIDECAR_CONTAINER: &str = kcp_crds::v1alpha1::RESERVED_CONTAINER_NAME;
/// Volume holding the rendered config (reserved in the app's template).
pub const CONFIG_VOLUME: &str = "kcp-config";
/// Volume holding TLS material from the referenced Secret (reserved in the app's template).
pub const TLS_VOLUME: &str = "kcp-tls";
/// Volume holding the schema registry's TLS material (reserved in the app's template).
pub const REGISTRY_TLS_VOLUME: &str = "kcp-registry-tls";
/// Name of the sidecar's admin port, used by its probes. (The app containers' drain hooks name
/// the port by number: kubelet resolves a name against the hooked container's own ports.)
pub const ADMIN_PORT_NAME: &str = "kcp-admin";
/// The pods' selector label; its value is the resource name. Ours alone, so an app's own
/// `app.kubernetes.io/*` labels are left as they are (the schema refuses it in `spec.pod.labels`).
pub const INSTANCE_LABEL: &str = kcp_crds::v1alpha1::SELECTOR_LABEL;
/// Pod-template annotation: SHA-256 of the rendered config, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "kafkaproxy.io/config-hash";
/// Pod-template annotation: the fingerprint of the Secret values the pods use
/// (`secrets::Resolved::fingerprint`), so a rotated Secret rolls them.
pub const SECRETS_HASH_ANNOTATION: &str = "kafkaproxy.io/secrets-hash";
/// Object annotation: SHA-256 of the desired object, so a change of what we want is seen.
pub const APPLIED_HASH_ANNOTATION: &str = "kafkaproxy.io/applied-hash";

/// Settings of the operator that shape the children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Sidecar image when `spec.sidecar.image` is unset.
    pub default_sidecar_image: String,
}

/// The desired children of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub config_map: ConfigMap,
    /// The Deployment as the pinned types know it; apply [`Children::deployment_body`].
    pub deployment: Deployment,
    /// Fields of the app's template the pinned pod types do not know, as written.
    pub template_unknown: Vec<UnknownField>,
}

impl Children {
    /// The ConfigMap as applied.
    pub fn config_map_body(&self) -> Value {
        serde_json::to_value(&self.config_map).expect("invariant: k8s-openapi objects serialize")
    }

    /// The Deployment as applied: `deployment` with `template_unknown` put back into its pod
    /// template (containers found by name), for the API server to keep or refuse.
    pub fn deployment_body(&self) -> Value {
        let mut body = serde_json::to_value(&self.deployment)
            .expect("invariant: k8s-openapi objects serialize");
        template::restore(&mut body["spec"]["template"], &self.template_unknown);
        body
    }
}

/// Name of the ConfigMap holding the rendered config.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-kcp-config")
}

/// Name of the Deployment (the resource's own name).
pub fn deployment_name(name: &str) -> String {
    name.to_owned()
}

/// Labels selecting the pods of resource `name`; never change, Deployment selectors are immutable.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(INSTANCE_LABEL.to_owned(), name.to_owned())])
}

/// The selector in string form, as the scale subresource wants it in `status.selector`.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on the children themselves; the operator's watches select on `managed-by`.
pub fn object_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "kafka-consumer-proxy".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ])
}

/// Label selector for the owned-object watches.
pub fn managed_by_selector() -> String {
    format!("app.kubernetes.io/managed-by={FIELD_MANAGER}")
}

/// Builds the desired children.
pub fn build(v: &Validated, opts: &BuildOptions) -> Children {
    let mut config_map = ConfigMap {
        metadata: child_meta(v, config_map_name(&v.name)),
        data: Some(BTreeMap::from([
            (CONFIG_FILE_NAME.to_owned(), v.config_json.clone()),
            // Not in the config hash: a pause reaches running pods without restarting them.
            (
                CONTROL_FILE_NAME.to_owned(),
                serde_json::json!({ "paused": v.spec.paused }).to_string(),
            ),
        ])),
        ..ConfigMap::default()
    };
    stamp_applied_hash(&mut config_map, |o| &mut o.metadata, &[]);

    let mut deployment = Deployment {
        metadata: child_meta(v, deployment_name(&v.name)),
        spec: Some(DeploymentSpec {
            replicas: Some(if v.spec.suspend || v.quiesced_for.is_some() {
                0
            } else {
                v.spec.replicas
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..LabelSelector::default()
            },
            template: pod::pod_template(v, opts),
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    stamp_applied_hash(&mut deployment, |o| &mut o.metadata, &v.template_unknown);

    Children {
        config_map,
        deployment,
        template_unknown: v.template_unknown.clone(),
    }
}

fn child_meta(v: &Validated, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(v.namespace.clone()),
        labels: Some(object_labels(&v.name)),
        owner_references: Some(vec![v.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Puts the hash of `obj` (as built, before the annotation) and of the `unknown` template
/// fields it carries into its annotations. Without unknown fields, the hash of `obj` alone.
fn stamp_applied_hash<K: Serialize>(
    obj: &mut K,
    meta: impl Fn(&mut K) -> &mut ObjectMeta,
    unknown: &[UnknownField],
) {
    let mut bytes = serde_json::to_vec(&*obj).expect("invariant: k8s-openapi objects serialize");
    if !unknown.is_empty() {
        bytes.extend(serde_json::to_vec(unknown).expect("invariant: JSON values serialize"));
    }
    let hash = hex::encode(Sha256::digest(&bytes));
    meta(obj)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
}
