//! Sidecar: the `kcp-sidecar` container the operator adds to every pod, and its volumes.
//!
//! Pure. Secret values never appear here: SASL and schema registry credentials are
//! `secretKeyRef` env vars, TLS material (Kafka's, the registry's) a Secret volume each with only
//! the keys the spec names. The container is hardened
//! (non-root, read-only root filesystem, no capabilities, `RuntimeDefault` seccomp) and probed
//! on its admin port by name (a probe's named port is resolved against the sidecar's own ports).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
        HTTPGetAction, KeyToPath, ObjectFieldSelector, Probe, ResourceRequirements, SeccompProfile,
        SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};
use kcp_crds::config::{
    CONFIG_FILE_NAME, CONFIG_MOUNT_DIR, CONFIG_PATH_ENV, CONTROL_FILE_NAME, CONTROL_PATH_ENV,
    DRAIN_HOOK_ENV, POD_NAME_ENV, REGISTRY_TLS_MOUNT_DIR, SASL_PASSWORD_ENV, SASL_USERNAME_ENV,
    SCHEMA_REGISTRY_PASSWORD_ENV, SCHEMA_REGISTRY_USERNAME_ENV, TLS_MOUNT_DIR,
};

use super::{
    ADMIN_PORT_NAME, BuildOptions, CONFIG_VOLUME, REGISTRY_TLS_VOLUME, SIDECAR_CONTAINER,
    TLS_VOLUME, config_map_name,
};
use crate::reconcile::validate::Validated;

/// UID and GID the sidecar runs as (distroless `nonroot`), so `runAsNonRoot` is checkable.
pub const SIDECAR_UID: i64 = 65532;

/// The sidecar container. `drain_hook`: the app containers call [`DRAIN_PATH`] from their
/// `preStop` hook, so the sidecar must stay up to answer it after its shutdown.
///
/// [`DRAIN_PATH`]: kcp_crds::config::DRAIN_PATH
pub(super) fn sidecar_container(v: &Validated, opts: &BuildOptions, drain_hook: bool) -> Container {
    let sidecar = &v.spec.sidecar;
    let mut env = vec![
        EnvVar {
            name: CONFIG_PATH_ENV.to_owned(),
            value: Some(format!("{CONFIG_MOUNT_DIR}/{CONFIG_FILE_NAME}")),
            value_from: None,
        },
        // Read again every few seconds: the kubelet updates it in place (not a subPath mount).
        EnvVar {
            name: CONTROL_PATH_ENV.to_owned(),
            value: Some(format!("{CONFIG_MOUNT_DIR}/{CONTROL_FILE_NAME}")),
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
    if drain_hook {
        env.push(EnvVar {
            name: DRAIN_HOOK_ENV.to_owned(),
            value: Some("true".to_owned()),
            value_from: None,
        });
    }
    let secret_env = |var: &str, secret: &str, key: &str| EnvVar {
        name: var.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    };
    if let Some(sasl) = v.spec.kafka.auth.as_ref().and_then(|a| a.sasl.as_ref()) {
        env.push(secret_env(
            SASL_USERNAME_ENV,
            &sasl.secret_name,
            &sasl.username_key,
        ));
        env.push(secret_env(
            SASL_PASSWORD_ENV,
            &sasl.secret_name,
            &sasl.password_key,
        ));
    }
    let registry = v.spec.kafka.schema_registry.as_ref();
    if let Some(basic) = registry.and_then(|r| r.basic_auth.as_ref()) {
        env.push(secret_env(
            SCHEMA_REGISTRY_USERNAME_ENV,
            &basic.secret_name,
            &basic.username_key,
        ));
        env.push(secret_env(
            SCHEMA_REGISTRY_PASSWORD_ENV,
            &basic.secret_name,
            &basic.password_key,
        ));
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
    if registry_tls_volume(v).is_some() {
        mounts.push(VolumeMount {
            name: REGISTRY_TLS_VOLUME.to_owned(),
            mount_path: REGISTRY_TLS_MOUNT_DIR.to_owned(),
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

/// The sidecar's volumes: the rendered config, and the TLS material when the spec names some.
pub(super) fn sidecar_volumes(v: &Validated) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: CONFIG_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&v.name),
            items: Some(
                [CONFIG_FILE_NAME, CONTROL_FILE_NAME]
                    .map(|file| KeyToPath {
                        key: file.to_owned(),
                        path: file.to_owned(),
                        mode: None,
                    })
                    .to_vec(),
            ),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    volumes.extend(tls_volume(v));
    volumes.extend(registry_tls_volume(v));
    volumes
}

/// The Secret volume for TLS material: only the keys the spec names, each as a file of that
/// name under `TLS_MOUNT_DIR` (where the rendered config points).
fn tls_volume(v: &Validated) -> Option<Volume> {
    let tls = v.spec.kafka.auth.as_ref()?.tls.as_ref()?;
    let secret_name = tls.secret_name.clone()?;
    secret_volume(
        TLS_VOLUME,
        secret_name,
        [&tls.ca_key, &tls.cert_key, &tls.key_key],
    )
}

/// The Secret volume for the schema registry's TLS material, mounted at
/// `REGISTRY_TLS_MOUNT_DIR` (where the rendered config points).
fn registry_tls_volume(v: &Validated) -> Option<Volume> {
    let tls = v.spec.kafka.schema_registry.as_ref()?.tls.as_ref()?;
    secret_volume(
        REGISTRY_TLS_VOLUME,
        tls.secret_name.clone(),
        [&tls.ca_key, &tls.cert_key, &tls.key_key],
    )
}

/// A volume of `secret_name` holding only `keys`, each as a file of its name; `None` without keys.
fn secret_volume(name: &str, secret_name: String, keys: [&Option<String>; 3]) -> Option<Volume> {
    let items: Vec<KeyToPath> = keys
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
        name: name.to_owned(),
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

pub(super) fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}
