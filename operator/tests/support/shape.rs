//! What a real API server does to a Deployment or ConfigMap we apply, written from the Go API
//! types (`k8s.io/api/core/v1`, `apps/v1`) rather than from the operator's drift rules, so the
//! no-op tests compare the operator against Kubernetes and not against itself:
//!
//! - non-pointer `omitempty` fields holding their zero value (`false`, `0`, `""`) are not
//!   stored, so they come back absent;
//! - fields defaulted when unset or zero come back with the default (`imagePullPolicy`,
//!   `terminationMessagePath`, probe thresholds, `protocol`, `dnsPolicy`, `defaultMode`, ...);
//! - quantities come back in canonical form (`1000m` → `1`, `0.5Gi` → `512Mi`);
//! - pointer fields keep what was sent, zero or not (`allowPrivilegeEscalation: false`).
//!
//! And what another field manager might add: [`other_managers_additions`].

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Map, Value, json};

/// Shapes `object` (a Deployment or ConfigMap as applied) as the API server stores it.
pub fn server_shape(object: &mut Value) {
    if object["kind"] != "Deployment" {
        return;
    }
    let spec = &mut object["spec"];
    drop_zero(spec, &["minReadySeconds", "paused"]);
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    default(
        spec,
        "strategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    );
    shape_pod(&mut spec["template"]["spec"]);
}

fn shape_pod(pod: &mut Value) {
    // PodSpec: non-pointer omitempty fields.
    drop_zero(
        pod,
        &[
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "serviceAccountName",
            "nodeName",
            "hostname",
            "subdomain",
            "priorityClassName",
            "preemptionPolicy",
        ],
    );
    default_if_zero(pod, "dnsPolicy", json!("ClusterFirst"));
    default_if_zero(pod, "restartPolicy", json!("Always"));
    default_if_zero(pod, "schedulerName", json!("default-scheduler"));
    default(pod, "terminationGracePeriodSeconds", json!(30));
    default(pod, "securityContext", json!({}));
    default(pod, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        for c in items(pod, list) {
            shape_container(c);
        }
    }
    for v in items(pod, "volumes") {
        for source in ["configMap", "secret"] {
            if v[source].is_object() {
                default(&mut v[source], "defaultMode", json!(420));
            }
        }
        if v["emptyDir"].is_object() {
            canonicalize(&mut v["emptyDir"]["sizeLimit"]);
        }
    }
}

fn shape_container(c: &mut Value) {
    drop_zero(c, &["workingDir", "stdin", "stdinOnce", "tty"]);
    let image = c["image"].as_str().unwrap_or_default().to_owned();
    let latest =
        image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':');
    default_if_zero(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    default_if_zero(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_if_zero(c, "terminationMessagePolicy", json!("File"));
    for p in items(c, "ports") {
        drop_zero(p, &["hostPort", "hostIP", "name"]);
        default_if_zero(p, "protocol", json!("TCP"));
    }
    for e in items(c, "env") {
        drop_zero(e, &["value"]);
        if e["valueFrom"]["fieldRef"].is_object() {
            default(&mut e["valueFrom"]["fieldRef"], "apiVersion", json!("v1"));
        }
    }
    for m in items(c, "volumeMounts") {
        drop_zero(m, &["readOnly", "subPath", "subPathExpr"]);
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let p = &mut c[probe];
        if !p.is_object() {
            continue;
        }
        drop_zero(p, &["initialDelaySeconds"]);
        default_if_zero(p, "timeoutSeconds", json!(1));
        default_if_zero(p, "periodSeconds", json!(10));
        default_if_zero(p, "successThreshold", json!(1));
        default_if_zero(p, "failureThreshold", json!(3));
        shape_http_get(p);
    }
    for hook in ["postStart", "preStop"] {
        if c["lifecycle"][hook].is_object() {
            shape_http_get(&mut c["lifecycle"][hook]);
        }
    }
    for section in ["limits", "requests"] {
        if let Some(q) = c["resources"][section].as_object_mut() {
            q.values_mut().for_each(canonicalize);
        }
    }
    if c["resources"].as_object().is_some_and(Map::is_empty) {
        c.as_object_mut().unwrap().remove("resources");
    }
}

/// An `httpGet` action of a probe or a lifecycle hook (`HTTPGetAction`).
fn shape_http_get(handler: &mut Value) {
    if handler["httpGet"].is_object() {
        drop_zero(&mut handler["httpGet"], &["path", "host"]);
        default_if_zero(&mut handler["httpGet"], "scheme", json!("HTTP"));
    }
}

/// What another field manager (a person with kubectl, a mesh injector) adds to our
/// Deployment: a container in front, an env var on our sidecar, a label.
pub fn other_managers_additions(deployment: &mut Value) {
    let pod = &mut deployment["spec"]["template"]["spec"];
    pod["containers"].as_array_mut().unwrap().insert(
        0,
        json!({"name": "istio-proxy", "image": "istio/proxyv2:1.22.0",
               "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
               "terminationMessagePolicy": "File"}),
    );
    let sidecar = pod["containers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "kcp-sidecar")
        .unwrap();
    sidecar["env"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"name": "RUST_BACKTRACE", "value": "1"}));
    deployment["metadata"]["labels"]["team"] = json!("payments");
}

fn items<'a>(parent: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    parent
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn is_zero(v: &Value) -> bool {
    matches!(v, Value::Bool(false) | Value::Null) || v.as_i64() == Some(0) || v.as_str() == Some("")
}

fn drop_zero(object: &mut Value, keys: &[&str]) {
    if let Some(m) = object.as_object_mut() {
        for k in keys {
            if m.get(*k).is_some_and(is_zero) {
                m.remove(*k);
            }
        }
    }
}

fn default(object: &mut Value, key: &str, value: Value) {
    if let Some(m) = object.as_object_mut() {
        m.entry(key).or_insert(value);
    }
}

fn default_if_zero(object: &mut Value, key: &str, value: Value) {
    if let Some(m) = object.as_object_mut()
        && m.get(key).is_none_or(is_zero)
    {
        m.insert(key.to_owned(), value);
    }
}

fn canonicalize(q: &mut Value) {
    if let Some(s) = q.as_str() {
        *q = json!(canonical_quantity(s));
    } else if let Some(n) = q.as_i64() {
        *q = json!(canonical_quantity(&n.to_string()));
    }
}

/// A quantity as the API server prints it: binary suffixes stay binary with the largest
/// suffix that divides the value; decimal values use the largest of `""`, `k`, `M`, `G` that
/// divides them, or milli-units. Covers the forms the fixtures use.
pub fn canonical_quantity(s: &str) -> String {
    const BINARY: [(&str, u32); 6] = [
        ("Ki", 1),
        ("Mi", 2),
        ("Gi", 3),
        ("Ti", 4),
        ("Pi", 5),
        ("Ei", 6),
    ];
    for (suffix, power) in BINARY {
        if let Some(n) = s.strip_suffix(suffix) {
            let bytes = (n.parse::<f64>().unwrap() * 1024f64.powi(power as i32)).round() as u128;
            let (mut value, mut unit) = (bytes, 0usize);
            while unit < BINARY.len() && value % 1024 == 0 && value > 0 {
                value /= 1024;
                unit += 1;
            }
            return match unit {
                0 => value.to_string(),
                u => format!("{value}{}", BINARY[u - 1].0),
            };
        }
    }
    let (number, factor) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        None => (s, 1.0),
        Some((i, _)) => {
            let factor = match &s[i..] {
                "m" => 1e-3,
                "k" => 1e3,
                "M" => 1e6,
                "G" => 1e9,
                e => 10f64.powi(e[1..].parse().unwrap()),
            };
            (&s[..i], factor)
        }
    };
    let millis = (number.parse::<f64>().unwrap() * factor * 1000.0).round() as i128;
    if millis % 1000 != 0 {
        return format!("{millis}m");
    }
    let mut units = millis / 1000;
    for suffix in ["", "k", "M", "G"] {
        if units % 1000 != 0 || units == 0 || suffix == "G" {
            return format!("{units}{suffix}");
        }
        units /= 1000;
    }
    unreachable!()
}
