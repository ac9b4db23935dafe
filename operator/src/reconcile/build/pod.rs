//! Pod: the Deployment's pod template. The app's template as written, or, for a resource
//! without one (`endpoint.url`), a pod built from `spec.pod` (labels, annotations, scheduling,
//! image pull secrets, ServiceAccount); then the sidecar container and its volumes, the drain
//! hooks and grace period of [`lifecycle`](super::lifecycle), and the operator's selector label
//! and config hash, which win over the same keys set by the user.
//!
//! Pure. `spec.pod` is used only without a template: the schema refuses both together, and with a
//! template these settings belong in it.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{PodSecurityContext, PodSpec, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{
    BuildOptions, CONFIG_HASH_ANNOTATION, SECRETS_HASH_ANNOTATION,
    lifecycle::{DEFAULT_GRACE_SECONDS, add_drain_hooks, grace_period_seconds},
    object_labels, selector_labels,
    sidecar::{runtime_default_seccomp, sidecar_container, sidecar_volumes},
};
use crate::reconcile::validate::Validated;

/// The pod template of the Deployment.
pub(super) fn pod_template(v: &Validated, opts: &BuildOptions) -> PodTemplateSpec {
    let mut template = match &v.template {
        Some(app) => app.clone(),
        None => sidecar_only_template(v),
    };

    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(selector_labels(&v.name));
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), v.config_hash.clone());
    // The sidecar reads its credentials at start: a rotated Secret must restart the pods.
    match &v.secrets_hash {
        Some(hash) => annotations.insert(SECRETS_HASH_ANNOTATION.to_owned(), hash.clone()),
        None => annotations.remove(SECRETS_HASH_ANNOTATION),
    };

    let pod = template.spec.get_or_insert_with(PodSpec::default);
    // The app's own shutdown time, which starts only once the sidecar has drained.
    let app_grace = v.template.as_ref().map(|_| {
        pod.termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_SECONDS)
    });
    let hooked = add_drain_hooks(&mut pod.containers, v.spec.sidecar.admin_port);
    pod.containers.push(sidecar_container(v, opts, hooked));
    pod.volumes
        .get_or_insert_with(Vec::new)
        .extend(sidecar_volumes(v));
    pod.termination_grace_period_seconds = Some(grace_period_seconds(
        v.spec.delivery.drain_timeout.as_std(),
        app_grace,
    ));
    template
}

/// The pod of a resource without a template: labelled like the children (the user's labels
/// replace those defaults), with `spec.pod`'s settings, no API token (the sidecar never calls
/// the Kubernetes API, whatever ServiceAccount it runs as) and a restricted security context.
fn sidecar_only_template(v: &Validated) -> PodTemplateSpec {
    let settings = v.spec.pod.clone().unwrap_or_default();
    let mut labels = object_labels(&v.name);
    labels.remove("app.kubernetes.io/managed-by");
    labels.extend(settings.labels);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(settings.annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            image_pull_secrets: non_empty(settings.image_pull_secrets),
            node_selector: Some(settings.node_selector).filter(|m| !m.is_empty()),
            tolerations: non_empty(settings.tolerations),
            affinity: settings.affinity,
            topology_spread_constraints: non_empty(settings.topology_spread_constraints),
            priority_class_name: settings.priority_class_name,
            service_account_name: settings.service_account_name,
            runtime_class_name: settings.runtime_class_name,
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(runtime_default_seccomp()),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    Some(items).filter(|i| !i.is_empty())
}
