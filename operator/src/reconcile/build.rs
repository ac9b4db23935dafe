//! Build: the desired children of a validated resource, a ConfigMap with the rendered sidecar
//! config and a Deployment running the app's pod template plus the sidecar container.
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
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
            EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext,
            PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
            SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kcp_crds::config::{
    CONFIG_FILE_NAME, CONFIG_MOUNT_DIR, CONFIG_PATH_ENV, POD_NAME_ENV, SASL_PASSWORD_ENV,
    SASL_USERNAME_ENV, TLS_MOUNT_DIR,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    template::{self, UnknownField},
    validate::Validated,
};
use crate::FIELD_MANAGER;

/// Name of the sidecar container (reserved in the app's template).
pub const SIDECAR_CONTAINER: &str = "kcp-sidecar";
/// Volume holding the rendered config (reserved in the app's template).
pub const CONFIG_VOLUME: &str = "kcp-config";
/// Volume holding TLS material from the referenced Secret (reserved in the app's template).
pub const TLS_VOLUME: &str = "kcp-tls";
/// Name of the sidecar's admin port, used by the probes.
pub const ADMIN_PORT_NAME: &str = "kcp-admin";
/// The pods' selector label; its value is the resource name. Ours alone, so an app's own
/// `app.kubernetes.io/*` labels are left as they are.
pub const INSTANCE_LABEL: &str = "kafkaproxy.io/instance";
/// Pod-template annotation: SHA-256 of the rendered config, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "kafkaproxy.io/config-hash";
/// Object annotation: SHA-256 of the desired object, so a change of what we want is seen.
pub const APPLIED_HASH_ANNOTATION: &str = "kafkaproxy.io/applied-hash";
/// Seconds added to `delivery.drainTimeout` for the pods' termination grace period: time for
/// the final commit and leaving the group after the drain.
pub const DRAIN_MARGIN_SECONDS: i64 = 10;
/// UID and GID the sidecar runs as (distroless `nonroot`), so `runAsNonRoot` is checkable.
pub const SIDECAR_UID: i64 = 65532;

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
        data: Some(BTreeMap::from([(
            CONFIG_FILE_NAME.to_owned(),
            v.config_json.clone(),
        )])),
        ..ConfigMap::default()
    };
    stamp_applied_hash(&mut config_map, |o| &mut o.metadata, &[]);

    let mut deployment = Deployment {
        metadata: child_meta(v, deployment_name(&v.name)),
        spec: Some(DeploymentSpec {
            replicas: Some(if v.spec.suspend { 0 } else { v.spec.replicas }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..LabelSelector::default()
            },
            template: pod_template(v, opts),
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

/// The app's template (or an empty one for a sidecar-only resource) with the sidecar added.
fn pod_template(v: &Validated, opts: &BuildOptions) -> PodTemplateSpec {
    let sidecar_only = v.template.is_none();
    let mut template = v.template.clone().unwrap_or_default();

    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if sidecar_only {
        labels.extend(object_labels(&v.name));
        labels.remove("app.kubernetes.io/managed-by");
    }
    labels.extend(selector_labels(&v.name));
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_HASH_ANNOTATION.to_owned(), v.config_hash.clone());

    let pod = template.spec.get_or_insert_with(PodSpec::default);
    pod.containers.push(sidecar_container(v, opts));
    pod.volumes
        .get_or_insert_with(Vec::new)
        .extend(sidecar_volumes(v));
    let drain = i64::try_from(v.spec.delivery.drain_timeout.as_std().as_secs())
        .unwrap_or(i64::MAX / 2)
        .saturating_add(i64::from(
            v.spec.delivery.drain_timeout.as_std().subsec_nanos() > 0,
        ));
    let grace = drain.saturating_add(DRAIN_MARGIN_SECONDS);
    pod.termination_grace_period_seconds =
        Some(pod.termination_grace_period_seconds.unwrap_or(0).max(grace));
    if sidecar_only {
        // The sidecar never talks to the Kubernetes API; no token for it.
        pod.automount_service_account_token = Some(false);
        pod.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        });
    }
    template
}

fn sidecar_container(v: &Validated, opts: &BuildOptions) -> Container {
    let sidecar = &v.spec.sidecar;
    let mut env = vec![
        EnvVar {
            name: CONFIG_PATH_ENV.to_owned(),
            value: Some(format!("{CONFIG_MOUNT_DIR}/{CONFIG_FILE_NAME}")),
            value_from: None,
        },
        EnvVar {
            name: POD_NAME_ENV.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.name".to_owned(),
                }),
                ..EnvVarSource::default()
            }),
        },
    ];
    if let Some(sasl) = v.spec.kafka.auth.as_ref().and_then(|a| a.sasl.as_ref()) {
        for (var, key) in [
            (SASL_USERNAME_ENV, &sasl.username_key),
            (SASL_PASSWORD_ENV, &sasl.password_key),
        ] {
            env.push(EnvVar {
                name: var.to_owned(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: sasl.secret_name.clone(),
                        key: key.clone(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
            });
        }
    }

    let mut mounts = vec![VolumeMount {
        name: CONFIG_VOLUME.to_owned(),
        mount_path: CONFIG_MOUNT_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    if tls_volume(v).is_some() {
        mounts.push(VolumeMount {
            name: TLS_VOLUME.to_owned(),
            mount_path: TLS_MOUNT_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };

    Container {
        name: SIDECAR_CONTAINER.to_owned(),
        image: Some(
            sidecar
                .image
                .clone()
                .unwrap_or_else(|| opts.default_sidecar_image.clone()),
        ),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(ADMIN_PORT_NAME.to_owned()),
            container_port: sidecar.admin_port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(sidecar.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SIDECAR_UID),
            run_as_group: Some(SIDECAR_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn sidecar_volumes(v: &Validated) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: CONFIG_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&v.name),
            items: Some(vec![KeyToPath {
                key: kcp_crds::config::CONFIG_FILE_NAME.to_owned(),
                path: kcp_crds::config::CONFIG_FILE_NAME.to_owned(),
                mode: None,
            }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    volumes.extend(tls_volume(v));
    volumes
}

/// The Secret volume for TLS material: only the keys the spec names, each as a file of that
/// name under `TLS_MOUNT_DIR` (where the rendered config points).
fn tls_volume(v: &Validated) -> Option<Volume> {
    let tls = v.spec.kafka.auth.as_ref()?.tls.as_ref()?;
    let secret_name = tls.secret_name.clone()?;
    let items: Vec<KeyToPath> = [&tls.ca_key, &tls.cert_key, &tls.key_key]
        .into_iter()
        .flatten()
        .map(|k| KeyToPath {
            key: k.clone(),
            path: k.clone(),
            mode: None,
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    Some(Volume {
        name: TLS_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name),
            items: Some(items),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    })
}

/// Sidecar resources when `spec.sidecar.resources` is unset.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("128Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{
        testing::{kcp_from, port_app_spec, url_spec},
        validate::validate,
    };
    use serde_json::json;

    fn opts() -> BuildOptions {
        BuildOptions {
            default_sidecar_image: "kcp-sidecar:test".into(),
        }
    }

    fn built(spec: serde_json::Value) -> Children {
        build(&validate(&kcp_from(spec)).expect("valid"), &opts())
    }

    fn pod(c: &Children) -> &PodSpec {
        c.deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    fn template_annotation(c: &Children, key: &str) -> Option<String> {
        c.deployment
            .spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(key)
            .cloned()
    }

    fn replicas(c: &Children) -> Option<i32> {
        c.deployment.spec.as_ref().and_then(|s| s.replicas)
    }

    #[test]
    fn the_apps_containers_labels_annotations_and_volumes_are_kept() {
        let mut spec = port_app_spec();
        spec["template"]["metadata"] =
            json!({"labels": {"app": "orders"}, "annotations": {"team": "shop"}});
        spec["template"]["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        let c = built(spec);
        let p = pod(&c);
        let names: Vec<_> = p.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app", SIDECAR_CONTAINER]);
        let vols: Vec<_> = p
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(vols, ["scratch", CONFIG_VOLUME]);
        let meta = c
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref());
        let labels = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("orders"));
        assert_eq!(
            labels.get(INSTANCE_LABEL).map(String::as_str),
            Some("orders")
        );
        assert_eq!(template_annotation(&c, "team").as_deref(), Some("shop"));
    }

    #[test]
    fn config_hash_changes_with_the_config_and_not_with_replicas() {
        let base = built(port_app_spec());
        let mut more = port_app_spec();
        more["replicas"] = json!(5);
        let scaled = built(more);
        assert_eq!(replicas(&scaled), Some(5));
        assert_eq!(
            template_annotation(&base, CONFIG_HASH_ANNOTATION),
            template_annotation(&scaled, CONFIG_HASH_ANNOTATION)
        );
        // The object changed, so its applied hash did.
        assert_ne!(
            base.deployment.metadata.annotations,
            scaled.deployment.metadata.annotations
        );

        let mut other = port_app_spec();
        other["delivery"] = json!({"maxInFlight": 64});
        let reconfigured = built(other);
        assert_ne!(
            template_annotation(&base, CONFIG_HASH_ANNOTATION),
            template_annotation(&reconfigured, CONFIG_HASH_ANNOTATION)
        );
        assert!(template_annotation(&base, CONFIG_HASH_ANNOTATION).is_some());
    }

    #[test]
    fn suspend_runs_zero_replicas() {
        let mut spec = port_app_spec();
        spec["replicas"] = json!(3);
        spec["suspend"] = json!(true);
        assert_eq!(replicas(&built(spec)), Some(0));
    }

    #[test]
    fn sidecar_only_mode_has_one_hardened_container_and_no_token() {
        let c = built(url_spec());
        let p = pod(&c);
        assert_eq!(p.containers.len(), 1);
        assert_eq!(p.containers[0].name, SIDECAR_CONTAINER);
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(
            p.security_context.as_ref().and_then(|s| s.run_as_non_root),
            Some(true)
        );
    }

    #[test]
    fn grace_period_covers_the_drain_and_never_shrinks_the_apps() {
        let mut spec = port_app_spec();
        spec["delivery"] = json!({"drainTimeout": "45s"});
        assert_eq!(pod(&built(spec)).termination_grace_period_seconds, Some(55));

        let mut spec = port_app_spec();
        spec["delivery"] = json!({"drainTimeout": "1500ms"});
        assert_eq!(pod(&built(spec)).termination_grace_period_seconds, Some(12));

        let mut spec = port_app_spec();
        spec["template"]["spec"]["terminationGracePeriodSeconds"] = json!(300);
        assert_eq!(
            pod(&built(spec)).termination_grace_period_seconds,
            Some(300)
        );
    }

    #[test]
    fn sidecar_image_and_resources_follow_the_spec_when_set() {
        let c = built(url_spec());
        let s = &pod(&c).containers[0];
        assert_eq!(s.image.as_deref(), Some("kcp-sidecar:test"));
        assert_eq!(s.resources, Some(default_resources()));

        let mut spec = url_spec();
        spec["sidecar"] = json!({
            "image": "registry.example/kcp:1",
            "resources": {"limits": {"memory": "512Mi"}}
        });
        let c = built(spec);
        let s = &pod(&c).containers[0];
        assert_eq!(s.image.as_deref(), Some("registry.example/kcp:1"));
        let limits = s.resources.as_ref().and_then(|r| r.limits.clone());
        assert_eq!(
            limits.and_then(|l| l.get("memory").cloned()),
            Some(Quantity("512Mi".into()))
        );
    }

    #[test]
    fn template_fields_the_pod_types_lack_are_applied_and_hashed() {
        let rules = |code: i32| json!([{"action": "Restart", "exitCodes": {"operator": "In", "values": [code]}}]);
        let mut spec = port_app_spec();
        spec["template"]["spec"]["containers"][0]["restartPolicyRules"] = rules(42);
        let c = built(spec.clone());
        let body = c.deployment_body();
        let app = &body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(app["name"], "app");
        assert_eq!(app["restartPolicyRules"], rules(42));
        assert!(
            body["spec"]["template"]["spec"]["containers"][1]
                .get("restartPolicyRules")
                .is_none(),
            "only on the container that has it"
        );

        let hash = |c: &Children| {
            c.deployment
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
                .cloned()
        };
        let plain = built(port_app_spec());
        assert_ne!(hash(&c), hash(&plain), "the field is part of what we want");
        spec["template"]["spec"]["containers"][0]["restartPolicyRules"] = rules(43);
        assert_ne!(hash(&c), hash(&built(spec)), "so is its value");
        // Without such fields, the body is the typed Deployment.
        assert_eq!(
            plain.deployment_body(),
            serde_json::to_value(&plain.deployment).expect("serializes")
        );
    }

    #[test]
    fn building_twice_gives_identical_objects() {
        assert_eq!(built(port_app_spec()), built(port_app_spec()));
    }

    #[test]
    fn selector_is_the_instance_label_only() {
        assert_eq!(selector_string("orders"), "kafkaproxy.io/instance=orders");
        let c = built(port_app_spec());
        assert_eq!(
            c.deployment
                .spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.clone()),
            Some(selector_labels("orders"))
        );
    }
}
