//! A reconcile that changes nothing writes nothing, for every example and for templates full of
//! values the API server stores differently from how we send them. "What the API server
//! returns" is simulated from the Go API types in `support/shape.rs` (zero values of
//! non-pointer `omitempty` fields dropped, defaults added, quantities canonical), plus items
//! another field manager adds to our lists. Real drift must still be written.

#![allow(clippy::unwrap_used)]

mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kcp_crds::KafkaConsumerProxy;
use kcp_operator::reconcile::{
    Context,
    build::{BuildOptions, build},
    drift::covers,
    reconcile,
    testing::{UID, kcp_from, pod_settings_spec, port_app_spec},
    validate::validate,
};
use kube::core::DeserializeGuard;
use serde::Deserialize;
use serde_json::{Value, json};
use support::{
    shape::{canonical_quantity, other_managers_additions, server_shape},
    *,
};

/// The `spec` of every KafkaConsumerProxy in `manifests/examples`, with its file name.
fn examples() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut specs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let object = Value::deserialize(doc).unwrap();
            if object["kind"] == "KafkaConsumerProxy" {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                specs.push((file, object["spec"].clone()));
            }
        }
    }
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(specs.len() >= 4, "examples found: {specs:?}");
    specs
}

/// An app template setting values the API server drops (zero values of non-pointer
/// `omitempty` fields), replaces (zeros it defaults) or rewrites (quantities).
fn zero_values_spec() -> Value {
    let mut spec = port_app_spec();
    spec["template"] = json!({
        "metadata": {"labels": {}, "annotations": {}},
        "spec": {
            "hostNetwork": false,
            "serviceAccountName": "",
            "dnsPolicy": "",
            "containers": [{
                "name": "app",
                "image": "shop/orders:1.4.2",
                "imagePullPolicy": "",
                "workingDir": "",
                "stdin": false,
                "tty": false,
                "ports": [{"containerPort": 8080, "hostPort": 0, "name": "http"}],
                "env": [{"name": "EMPTY", "value": ""}, {"name": "LEVEL", "value": "info"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": false, "subPath": ""}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080, "scheme": ""},
                    "initialDelaySeconds": 0, "timeoutSeconds": 0, "successThreshold": 0
                },
                "lifecycle": {"postStart": {"httpGet": {"path": "/warm-up", "port": 8080, "scheme": ""}}},
                "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"}, "limits": {"cpu": 2}},
                "securityContext": {"readOnlyRootFilesystem": false, "allowPrivilegeEscalation": false}
            }],
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1024Mi"}}]
        }
    });
    spec
}

fn all_specs() -> Vec<(String, Value)> {
    let mut specs = examples();
    specs.push(("zero values".into(), zero_values_spec()));
    specs.push(("pod settings".into(), pod_settings_spec()));
    specs
}

/// Desired (ConfigMap, Deployment) as sent to the API server.
fn desired(spec: &Value) -> (Value, Value) {
    let children = build(
        &validate(&kcp_from(spec.clone())).unwrap(),
        &BuildOptions {
            default_sidecar_image: "kcp-sidecar:test".into(),
        },
    );
    (children.config_map_body(), children.deployment_body())
}

#[test]
fn quantities_come_back_canonical() {
    let cases = [
        ("1000m", "1"),
        ("100m", "100m"),
        ("0.5", "500m"),
        ("1.5", "1500m"),
        ("2000", "2k"),
        ("1e3", "1k"),
        ("128Mi", "128Mi"),
        ("0.5Gi", "512Mi"),
        ("1024Mi", "1Gi"),
        ("0", "0"),
    ];
    for (input, canonical) in cases {
        assert_eq!(canonical_quantity(input), canonical, "{input}");
    }
}

#[test]
fn what_the_api_server_returns_covers_what_we_sent() {
    for (name, spec) in all_specs() {
        let (config_map, deployment) = desired(&spec);
        let mut stored = deployment.clone();
        server_shape(&mut stored);
        assert_ne!(
            stored, deployment,
            "{name}: the simulation changes something"
        );
        assert!(
            covers(&stored, &deployment),
            "{name}: server shape is drift"
        );
        other_managers_additions(&mut stored);
        assert!(
            covers(&stored, &deployment),
            "{name}: another manager's container, env var or label is drift"
        );
        let mut stored_cm = config_map.clone();
        server_shape(&mut stored_cm);
        assert!(covers(&stored_cm, &config_map), "{name}: ConfigMap");
    }
}

fn kcp_json(spec: Value) -> Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1",
        "kind": "KafkaConsumerProxy",
        "metadata": {"name": "orders", "namespace": "shop", "uid": UID, "generation": 1},
        "spec": spec
    })
}

fn put_example_secrets(fake: &FakeApi) {
    fake.put(
        &secret_path("payments-kafka-user"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "payments-kafka-user", "namespace": "shop",
                         "annotations": {"kafkaproxy.io/allowed-consumers": "*"}},
            "data": {"username": B64.encode("u"), "password": B64.encode("p")}
        }),
    );
}

fn child_patches(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.is_write() && (c.path == DEPLOYMENT_PATH || c.path == CONFIGMAP_PATH))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

/// A fake API server holding the resource `spec` (and the examples' Secret), and a context.
fn start(spec: Value) -> (Arc<FakeApi>, Arc<Context>) {
    let fake = FakeApi::new();
    put_example_secrets(&fake);
    fake.put(KCP_PATH, kcp_json(spec));
    let (ctx, _) = context(&fake, &StubLag::new(0), Duration::ZERO);
    (fake, ctx)
}

/// Reconciles the resource as stored now; the child writes it sent.
async fn reconcile_now(fake: &FakeApi, ctx: &Arc<Context>) -> Vec<String> {
    let obj: Arc<DeserializeGuard<KafkaConsumerProxy>> =
        Arc::new(serde_json::from_value(fake.get(KCP_PATH).unwrap()).unwrap());
    reconcile(obj, ctx.clone()).await.unwrap();
    child_patches(&fake.take_calls())
}

#[tokio::test]
async fn a_second_reconcile_writes_no_child_when_they_have_the_servers_shape() {
    for (name, spec) in all_specs() {
        let (fake, ctx) = start(spec);
        assert_eq!(
            reconcile_now(&fake, &ctx).await.len(),
            2,
            "{name}: first apply"
        );
        assert_eq!(
            reconcile_now(&fake, &ctx).await,
            Vec::<String>::new(),
            "{name}: second reconcile"
        );
        fake.edit(DEPLOYMENT_PATH, other_managers_additions);
        assert_eq!(
            reconcile_now(&fake, &ctx).await,
            Vec::<String>::new(),
            "{name}: after another manager added a container, an env var and a label"
        );
    }
}

#[tokio::test]
async fn real_drift_is_still_written() {
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 6] = [
        ("hand-edited sidecar image", |d| {
            sidecar(d)["image"] = json!("evil:latest");
        }),
        ("removed sidecar container", |d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .retain(|c| c["name"] != "kcp-sidecar");
        }),
        ("removed env var we set", |d| {
            sidecar(d)["env"]
                .as_array_mut()
                .unwrap()
                .retain(|e| e["name"] != "KCP_CONFIG");
        }),
        ("changed replicas", |d| d["spec"]["replicas"] = json!(7)),
        ("removed the app's drain hook", |d| {
            container(d, "app")["lifecycle"]
                .as_object_mut()
                .unwrap()
                .remove("preStop");
        }),
        ("removed volume we set", |d| {
            d["spec"]["template"]["spec"]["volumes"]
                .as_array_mut()
                .unwrap()
                .retain(|v| v["name"] != "kcp-config");
        }),
    ];
    for (what, edit) in edits {
        let (fake, ctx) = start(zero_values_spec());
        reconcile_now(&fake, &ctx).await;
        let applied = fake.get(DEPLOYMENT_PATH).unwrap();
        fake.edit(DEPLOYMENT_PATH, other_managers_additions);
        fake.edit(DEPLOYMENT_PATH, edit);
        assert_eq!(
            reconcile_now(&fake, &ctx).await,
            vec![format!("PATCH {DEPLOYMENT_PATH}")],
            "{what}"
        );
        // The fake keeps only what was applied (a real server would keep the other manager's
        // items too): our fields are back.
        assert_eq!(
            fake.get(DEPLOYMENT_PATH).unwrap()["spec"],
            applied["spec"],
            "{what}: put back"
        );
        assert_eq!(
            reconcile_now(&fake, &ctx).await,
            Vec::<String>::new(),
            "{what}: converged again"
        );
    }
}

fn sidecar(d: &mut Value) -> &mut Value {
    container(d, "kcp-sidecar")
}

fn container<'a>(d: &'a mut Value, name: &str) -> &'a mut Value {
    d["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == name)
        .unwrap()
}
