//! Tests of the built children: the pod as a user would see it in the Deployment.

use k8s_openapi::{
    api::core::v1::{Container, EnvVar, LifecycleHandler, PodSpec},
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};
use serde_json::json;

use super::*;
use crate::reconcile::{
    testing::{kcp_from, pod_settings_spec, port_app_spec, url_spec},
    validate::validate,
};

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
fn a_rotated_secret_rolls_the_pods() {
    let spec = port_app_spec();
    let v = |hash: Option<&str>| {
        let mut v = validate(&kcp_from(spec.clone())).expect("valid");
        v.secrets_hash = hash.map(str::to_owned);
        build(&v, &opts())
    };
    let (none, one, two) = (v(None), v(Some("aaa")), v(Some("bbb")));
    assert_eq!(template_annotation(&none, SECRETS_HASH_ANNOTATION), None);
    assert_eq!(
        template_annotation(&one, SECRETS_HASH_ANNOTATION).as_deref(),
        Some("aaa")
    );
    // A different pod template is what makes the Deployment controller replace the pods.
    assert_ne!(
        one.deployment.spec.as_ref().map(|s| &s.template),
        two.deployment.spec.as_ref().map(|s| &s.template)
    );
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
fn grace_period_covers_the_drain_and_then_the_apps_own_shutdown() {
    // With an app: the drain (rounded up to whole seconds) and the margin come first (the
    // app gets SIGTERM only once the sidecar is done), then the app's own grace period
    // (Kubernetes' default 30 s when the template sets none).
    let mut spec = port_app_spec();
    spec["delivery"] = json!({"drainTimeout": "45s"});
    assert_eq!(
        pod(&built(spec)).termination_grace_period_seconds,
        Some(45 + 10 + 30)
    );

    let mut spec = port_app_spec();
    spec["delivery"] = json!({"drainTimeout": "1500ms"});
    assert_eq!(
        pod(&built(spec)).termination_grace_period_seconds,
        Some(2 + 10 + 30)
    );

    let mut spec = port_app_spec();
    spec["template"]["spec"]["terminationGracePeriodSeconds"] = json!(300);
    assert_eq!(
        pod(&built(spec)).termination_grace_period_seconds,
        Some(30 + 10 + 300)
    );

    let mut spec = port_app_spec();
    spec["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    assert_eq!(
        pod(&built(spec)).termination_grace_period_seconds,
        Some(30 + 10)
    );

    // The sidecar alone: its drain and the margin.
    let mut spec = url_spec();
    spec["delivery"] = json!({"drainTimeout": "45s"});
    assert_eq!(
        pod(&built(spec)).termination_grace_period_seconds,
        Some(45 + 10)
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
fn container<'a>(c: &'a Children, name: &str) -> &'a Container {
    pod(c)
        .containers
        .iter()
        .find(|c| c.name == name)
        .expect("container")
}

fn pre_stop(c: &Container) -> Option<&LifecycleHandler> {
    c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

fn two_app_containers() -> serde_json::Value {
    let mut spec = port_app_spec();
    spec["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "metrics-exporter", "image": "shop/exporter:2"}));
    spec["template"]["spec"]["initContainers"] =
        json!([{"name": "migrate", "image": "shop/migrate:1"}]);
    spec
}

#[test]
fn every_app_container_without_a_pre_stop_calls_the_drain_hook() {
    let c = built(two_app_containers());
    for name in ["app", "metrics-exporter"] {
        let hook = pre_stop(container(&c, name)).expect("a preStop hook");
        let get = hook.http_get.as_ref().expect("an httpGet hook");
        assert_eq!(
            get.path.as_deref(),
            Some(kcp_crds::config::DRAIN_PATH),
            "{name}"
        );
        assert_eq!(get.scheme.as_deref(), Some("HTTP"), "{name}");
        assert_eq!(
            get.host, None,
            "{name}: the pod IP, where the sidecar listens"
        );
        assert_eq!(hook.exec, None);
    }
    // Not the sidecar itself, and not init containers (they ended before the pod stops).
    assert_eq!(pre_stop(container(&c, SIDECAR_CONTAINER)), None);
    let init = pod(&c).init_containers.as_ref().expect("init containers");
    assert_eq!(init[0].lifecycle, None);
}

#[test]
fn the_drain_hook_calls_the_admin_port_by_number() {
    // kubelet resolves a named port against the hooked container's own ports, where the
    // sidecar's `kcp-admin` is not: the hook must name the number.
    let mut spec = port_app_spec();
    spec["sidecar"] = json!({"adminPort": 9191});
    let c = built(spec);
    let get = pre_stop(container(&c, "app"))
        .and_then(|h| h.http_get.as_ref())
        .expect("an httpGet hook");
    assert_eq!(get.port, IntOrString::Int(9191));
}

#[test]
fn a_containers_own_pre_stop_is_kept() {
    let mut spec = two_app_containers();
    let own = json!({"exec": {"command": ["/bin/flush-cache"]}});
    spec["template"]["spec"]["containers"][0]["lifecycle"] = json!({"preStop": own});
    let post_start = json!({"exec": {"command": ["/bin/warm-up"]}});
    spec["template"]["spec"]["containers"][1]["lifecycle"] = json!({"postStart": post_start});
    let c = built(spec);
    let app = serde_json::to_value(container(&c, "app")).expect("serializes");
    assert_eq!(app["lifecycle"], json!({"preStop": own}), "kept as written");
    let exporter = serde_json::to_value(container(&c, "metrics-exporter")).expect("serializes");
    assert_eq!(exporter["lifecycle"]["postStart"], post_start, "kept");
    assert_eq!(
        exporter["lifecycle"]["preStop"]["httpGet"]["path"], "/drain",
        "added"
    );
}

#[test]
fn the_sidecar_is_told_when_the_app_containers_call_the_drain_hook() {
    let drain_env = kcp_crds::config::DRAIN_HOOK_ENV;
    let c = built(port_app_spec());
    let var = env(container(&c, SIDECAR_CONTAINER), drain_env).expect("the env var");
    assert_eq!(var.value.as_deref(), Some("true"));

    // No app container: nobody calls it, the sidecar need not wait for a call.
    let c = built(url_spec());
    assert_eq!(env(container(&c, SIDECAR_CONTAINER), drain_env), None);

    // Every app container has its own preStop: no hook calls the sidecar either.
    let mut spec = port_app_spec();
    spec["template"]["spec"]["containers"][0]["lifecycle"] =
        json!({"preStop": {"sleep": {"seconds": 5}}});
    let c = built(spec);
    assert_eq!(env(container(&c, SIDECAR_CONTAINER), drain_env), None);
}

#[test]
fn a_pod_without_a_template_gets_the_pod_settings() {
    let spec = pod_settings_spec();
    let c = built(spec.clone());
    let p = serde_json::to_value(pod(&c)).expect("serializes");
    for field in [
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "serviceAccountName",
        "runtimeClassName",
    ] {
        assert_eq!(p[field], spec["pod"][field], "{field}");
    }
    // A ServiceAccount, still no API token: the sidecar never calls the API.
    assert_eq!(p["automountServiceAccountToken"], json!(false));
    assert_eq!(
        template_annotation(&c, "prometheus.io/scrape").as_deref(),
        Some("true")
    );
    let labels = c
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("audit"));
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("audit-forwarder"),
        "the user's own app labels replace the defaults"
    );
}

#[test]
fn pod_labels_and_annotations_never_replace_the_operators() {
    // The schema refuses the selector label in spec.pod.labels; an object that got past it
    // still keeps its pods selected.
    let mut spec = url_spec();
    spec["pod"] = json!({
        "labels": {INSTANCE_LABEL: "other", "team": "audit"},
        "annotations": {CONFIG_HASH_ANNOTATION: "stale"}
    });
    let c = built(spec);
    let meta = c
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.clone())
        .expect("template metadata");
    let labels = meta.labels.unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("audit"));
    assert_eq!(
        labels.get(INSTANCE_LABEL).map(String::as_str),
        Some("orders")
    );
    let hash = template_annotation(&c, CONFIG_HASH_ANNOTATION).expect("config hash");
    assert_eq!(hash.len(), 64, "{hash}");
}

/// The schema registry's credentials reach the sidecar by `secretKeyRef` and its TLS material as
/// a volume of only the named keys, where the rendered config points; no value in the config.
#[test]
fn the_schema_registry_secrets_reach_the_sidecar_by_reference() {
    let mut spec = url_spec();
    spec["kafka"]["schemaRegistry"] = json!({
        "url": "https://registry.kafka.svc:8081",
        "basicAuth": {"secretName": "registry-creds", "usernameKey": "user"},
        "tls": {"secretName": "registry-tls", "caKey": "ca.crt"}
    });
    spec["endpoint"]["decode"] = json!("avro");
    let c = built(spec);
    let sidecar = container(&c, SIDECAR_CONTAINER);
    let secret_ref = |var: &str| {
        env(sidecar, var)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|f| f.secret_key_ref.as_ref())
            .map(|r| (r.name.clone(), r.key.clone()))
    };
    assert_eq!(
        secret_ref("KCP_SCHEMA_REGISTRY_USERNAME"),
        Some(("registry-creds".into(), "user".into()))
    );
    assert_eq!(
        secret_ref("KCP_SCHEMA_REGISTRY_PASSWORD"),
        Some(("registry-creds".into(), "password".into()))
    );
    let volume = pod(&c)
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == REGISTRY_TLS_VOLUME)
        .expect("registry TLS volume");
    let secret = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("registry-tls"));
    let keys: Vec<_> = secret
        .items
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(keys, ["ca.crt"]);
    let mount = sidecar
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| m.name == REGISTRY_TLS_VOLUME)
        .expect("mounted");
    assert_eq!(mount.mount_path, kcp_crds::config::REGISTRY_TLS_MOUNT_DIR);
    let config = c
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get(kcp_crds::config::CONFIG_FILE_NAME))
        .expect("config");
    assert!(config.contains("/etc/kcp/registry-tls/ca.crt"), "{config}");
    assert!(!config.contains("registry-creds"), "{config}");
}
