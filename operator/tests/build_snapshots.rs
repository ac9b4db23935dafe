//! Snapshots of the built children for representative resources, committed under
//! `tests/snapshots/`. A difference fails with a line diff. When the change is intended:
//!
//! `KCP_UPDATE_SNAPSHOTS=1 cargo test -p kcp-operator --test build_snapshots`
//!
//! and review the new files in the diff of the change.

#![allow(clippy::unwrap_used)]

use std::{fs, path::PathBuf};

use kcp_operator::reconcile::{
    build::{BuildOptions, Children, build},
    testing::{kcp_from, pod_settings_spec, port_app_spec, sasl_tls_spec, url_spec},
    validate::validate,
};
use serde_json::json;

fn render(spec: serde_json::Value) -> (Children, String) {
    let children = build(
        &validate(&kcp_from(spec)).unwrap(),
        &BuildOptions {
            default_sidecar_image: "ghcr.io/kafka-consumer-proxy/kcp-sidecar:0.1.0".into(),
        },
    );
    let yaml = format!(
        "{}---\n{}",
        serde_yaml::to_string(&children.config_map).unwrap(),
        serde_yaml::to_string(&children.deployment).unwrap()
    );
    (children, yaml)
}

/// Longest-common-subsequence line diff, `-` expected, `+` actual.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}

fn check_snapshot(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(file);
    if std::env::var_os("KCP_UPDATE_SNAPSHOTS").is_some() {
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        eprintln!(
            "--- {} (committed)\n+++ built now\n{}",
            path.display(),
            diff(&expected, actual)
        );
        panic!(
            "snapshot {file} differs from what build() produces (diff above). If the change is intended, regenerate with:\n  KCP_UPDATE_SNAPSHOTS=1 cargo test -p kcp-operator --test build_snapshots"
        );
    }
}

#[test]
fn app_with_sasl_and_tls() {
    let (children, yaml) = render(sasl_tls_spec());
    check_snapshot("app-sasl-tls.yaml", &yaml);
    // Credentials only by reference.
    let pod = children.deployment.spec.unwrap().template.spec.unwrap();
    let sidecar = pod
        .containers
        .iter()
        .find(|c| c.name == "kcp-sidecar")
        .unwrap();
    for var in sidecar
        .env
        .iter()
        .flatten()
        .filter(|e| e.name.starts_with("KCP_SASL_"))
    {
        assert_eq!(var.value, None);
        assert!(var.value_from.as_ref().unwrap().secret_key_ref.is_some());
    }
}

#[test]
fn sidecar_only() {
    check_snapshot("sidecar-only.yaml", &render(url_spec()).1);
}

/// A pod without a template, scheduled, pulled and labelled by `spec.pod`.
#[test]
fn sidecar_only_with_pod_settings() {
    check_snapshot(
        "sidecar-only-pod-settings.yaml",
        &render(pod_settings_spec()).1,
    );
}

/// An app of two containers: one with a `preStop` hook of its own, which it keeps, and one that
/// gets the drain hook beside its `postStart`.
#[test]
fn app_containers_with_and_without_their_own_pre_stop() {
    let mut spec = port_app_spec();
    let containers = spec["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap();
    containers[0]["lifecycle"] = json!({"preStop": {"exec": {"command": ["/bin/flush"]}}});
    containers.push(json!({"name": "exporter", "image": "shop/exporter:2",
        "lifecycle": {"postStart": {"exec": {"command": ["/bin/warm-up"]}}}}));
    spec["template"]["spec"]["terminationGracePeriodSeconds"] = json!(60);
    check_snapshot("app-own-pre-stop.yaml", &render(spec).1);
}

#[test]
fn suspended_app() {
    let mut spec = port_app_spec();
    spec["suspend"] = json!(true);
    spec["replicas"] = json!(3);
    check_snapshot("app-suspended.yaml", &render(spec).1);
}

/// The apply body keeps pod fields newer than the operator's pinned types (here Kubernetes
/// 1.34's `hostnameOverride` and `restartPolicyRules`) and typos alike, for the API server to
/// judge. Rendered from the JSON body, so keys are in alphabetical order.
#[test]
fn app_with_pod_fields_the_pinned_types_lack() {
    let mut spec = port_app_spec();
    spec["template"]["spec"]["hostnameOverride"] = json!("orders-worker");
    spec["template"]["spec"]["containers"][0]["restartPolicyRules"] =
        json!([{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]);
    let (children, _) = render(spec);
    let yaml = serde_yaml::to_string(&children.deployment_body()).unwrap();
    check_snapshot("app-unknown-pod-fields.yaml", &yaml);
}

#[test]
fn the_diff_shows_changed_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "+ x\n- b\n");
}
