//! Drift: does an observed child still hold every field we want it to hold?
//!
//! Pure. `apply` skips the write when [`covers`] says yes, so a reconcile that changes nothing
//! issues no write. Two kinds of difference are caught by one check, because the desired object
//! carries `kafkaproxy.io/applied-hash` (the hash of the desired object):
//! - what we want changed: the hash annotation differs, so the server-side apply runs and also
//!   drops fields we no longer set;
//! - someone changed our fields by hand: a desired field is missing or different, so the apply
//!   (with force) puts it back.
//!
//! The observed object is what the API server stores, which is not what we sent. Differences
//! that are not drift:
//! - fields the API server or others add (defaults, status, other managers' labels);
//! - empty objects, empty lists and nulls we send, which count as absent;
//! - zero values (`false`, `0`, `""`) we send, which the server does not store for non-pointer
//!   `omitempty` fields, so an absent field covers them, except [`ABSENT_IS_NOT_ZERO`];
//! - zero values the server replaces by a default ([`DEFAULTED_WHEN_ZERO`]);
//! - items others add to lists that server-side apply merges by key ([`KEYED_LISTS`]:
//!   containers by name, ports by port and protocol, ...): our items are found by key, extras
//!   are ignored, order does not matter. Other lists are atomic and compared whole, in order;
//! - resource quantities in another notation (`1000m` = `1`), as the server rewrites them in
//!   canonical form.

use serde_json::Value;

/// Lists server-side apply treats as maps (`x-kubernetes-list-type: map` in the pod and meta
/// API), by field name, with their merge keys.
pub const KEYED_LISTS: &[(&str, &[&str])] = &[
    ("containers", &["name"]),
    ("initContainers", &["name"]),
    ("ephemeralContainers", &["name"]),
    ("volumes", &["name"]),
    ("imagePullSecrets", &["name"]),
    ("env", &["name"]),
    ("ports", &["containerPort", "protocol"]),
    ("volumeMounts", &["mountPath"]),
    ("volumeDevices", &["devicePath"]),
    ("resourceClaims", &["name"]),
    ("claims", &["name"]),
    ("schedulingGates", &["name"]),
    ("hostAliases", &["ip"]),
    (
        "topologySpreadConstraints",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    ("ownerReferences", &["uid"]),
];

/// Pointer fields whose absence does not mean their zero value, so an absent observed field
/// does not cover a desired `false` or `0` (removing it by hand is drift). Everything else the
/// pod API leaves out when zero means zero when absent.
pub const ABSENT_IS_NOT_ZERO: &[&str] = &[
    "allowPrivilegeEscalation",      // absent: allowed
    "automountServiceAccountToken",  // absent: mounted (unless the ServiceAccount says no)
    "enableServiceLinks",            // absent: defaulted to true
    "hostUsers",                     // absent: the host's user namespace (true)
    "replicas",                      // absent: defaulted to 1
    "terminationGracePeriodSeconds", // absent: defaulted to 30; 0 kills at once
    "revisionHistoryLimit",          // absent: defaulted to 10
    "progressDeadlineSeconds",       // absent: defaulted to 600
    "runAsUser",                     // absent: the image's user; 0 is root
    "runAsGroup",                    // absent: the image's group; 0 is root
    "fsGroup",                       // absent: no fsGroup; 0 is root
    "defaultMode",                   // absent: 0644; 0 is no permission
    "mode",                          // absent: the volume's defaultMode
    "tolerationSeconds",             // absent: tolerate forever; 0 evicts at once
];

/// Fields the API server sets to its default when they arrive as zero: a desired zero is
/// covered by whatever the server chose.
pub const DEFAULTED_WHEN_ZERO: &[&str] = &[
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
    "imagePullPolicy",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "protocol",
    "scheme",
    "dnsPolicy",
    "restartPolicy",
    "schedulerName",
];

/// Whether `observed` holds every field of `desired` with the same value.
pub fn covers(observed: &Value, desired: &Value) -> bool {
    covers_at(Some(observed), desired, At::default())
}

/// Where in the object a value sits: its field name and whether it is a resource quantity.
#[derive(Debug, Clone, Copy, Default)]
struct At<'a> {
    key: &'a str,
    quantities: bool,
}

fn covers_at(observed: Option<&Value>, desired: &Value, at: At<'_>) -> bool {
    let observed = observed.filter(|o| !o.is_null());
    match (desired, observed) {
        (d, None) => is_empty(d) || (is_zero(d) && !ABSENT_IS_NOT_ZERO.contains(&at.key)),
        (d, Some(_)) if is_zero(d) && DEFAULTED_WHEN_ZERO.contains(&at.key) => true,
        (Value::Object(d), Some(Value::Object(o))) => d.iter().all(|(k, dv)| {
            let at = At {
                key: k,
                quantities: at.quantities || is_quantity_map(k),
            };
            covers_at(o.get(k), dv, at)
        }),
        (Value::Array(d), Some(Value::Array(o))) => {
            let item = At { key: "", ..at };
            match merge_keys(at.key).filter(|keys| d.iter().all(|i| key_of(i, keys).is_some())) {
                Some(keys) => d.iter().all(|dv| {
                    let key = key_of(dv, keys);
                    o.iter()
                        .find(|ov| key_of(ov, keys) == key)
                        .is_some_and(|ov| covers_at(Some(ov), dv, item))
                }),
                None => {
                    d.len() == o.len()
                        && d.iter()
                            .zip(o)
                            .all(|(dv, ov)| covers_at(Some(ov), dv, item))
                }
            }
        }
        (Value::String(d), Some(Value::String(o))) if at.quantities && d != o => {
            matches!((parse_quantity(d), parse_quantity(o)), (Some(a), Some(b)) if (a - b).abs() <= f64::EPSILON * a.abs().max(1.0))
        }
        (d, Some(o)) => d == o,
    }
}

fn merge_keys(list: &str) -> Option<&'static [&'static str]> {
    KEYED_LISTS
        .iter()
        .find(|(name, _)| *name == list)
        .map(|(_, keys)| *keys)
}

/// The merge key of a list item, `None` when it lacks one. An unset or empty `protocol` is
/// `TCP`, the server's default, as the server does when it merges.
fn key_of(item: &Value, keys: &[&str]) -> Option<Vec<Value>> {
    keys.iter()
        .map(|k| match item.get(*k).filter(|v| !is_zero(v)) {
            Some(v) => Some(v.clone()),
            None if *k == "protocol" => Some(Value::from("TCP")),
            None => None,
        })
        .collect()
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn is_quantity_map(key: &str) -> bool {
    matches!(key, "limits" | "requests" | "sizeLimit" | "overhead")
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A Kubernetes quantity (`128Mi`, `50m`, `1.5`, `2e3`) as a number, or `None`.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp => {
            let e = exp.strip_prefix(['e', 'E'])?;
            10f64.powi(e.parse().ok()?)
        }
    };
    Some(n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_and_other_fields_are_ignored() {
        let desired = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let observed = json!({
            "spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]},
            "status": {"replicas": 1}
        });
        assert!(covers(&observed, &desired));
    }

    #[test]
    fn a_hand_edit_of_our_field_is_drift() {
        let desired = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let edited = json!({"spec": {"containers": [{"name": "a", "image": "y"}]}});
        assert!(!covers(&edited, &desired));
        let removed = json!({"spec": {"containers": [{"name": "a"}]}});
        assert!(!covers(&removed, &desired));
        // A container of ours removed is drift; one someone else added is not (see
        // `items_others_add_to_keyed_lists_are_not_drift`).
        let removed_container = json!({"spec": {"containers": [{"name": "b", "image": "x"}]}});
        assert!(!covers(&removed_container, &desired));
    }

    #[test]
    fn booleans_must_be_present_and_equal() {
        let desired = json!({"securityContext": {"allowPrivilegeEscalation": false}});
        assert!(!covers(&json!({"securityContext": {}}), &desired));
        assert!(covers(
            &json!({"securityContext": {"allowPrivilegeEscalation": false}}),
            &desired
        ));
    }

    #[test]
    fn empty_values_equal_absent_ones() {
        let desired = json!({"a": {}, "b": [], "c": null, "d": 1});
        assert!(covers(&json!({"d": 1}), &desired));
    }

    #[test]
    fn quantities_compare_by_value_only_under_resources() {
        let desired = json!({"resources": {"limits": {"cpu": "1000m", "memory": "0.5Gi"}}});
        let canonical = json!({"resources": {"limits": {"cpu": "1", "memory": "512Mi"}}});
        assert!(covers(&canonical, &desired));
        assert!(!covers(
            &json!({"resources": {"limits": {"cpu": "2", "memory": "512Mi"}}}),
            &desired
        ));
        // Elsewhere, "1000m" and "1" are different strings.
        assert!(!covers(&json!({"env": "1"}), &json!({"env": "1000m"})));
    }

    #[test]
    fn zero_values_the_server_does_not_store_still_cover() {
        // Non-pointer `omitempty` fields: the API server does not store their zero value.
        let desired = json!({"containers": [{
            "name": "app",
            "workingDir": "",
            "stdin": false,
            "env": [{"name": "EMPTY", "value": ""}],
            "ports": [{"containerPort": 8080, "hostPort": 0}],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": false}],
            "livenessProbe": {"initialDelaySeconds": 0, "httpGet": {"path": "/", "port": 8080}}
        }]});
        let stored = json!({"containers": [{
            "name": "app",
            "env": [{"name": "EMPTY"}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "livenessProbe": {"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
                              "timeoutSeconds": 1, "periodSeconds": 10,
                              "successThreshold": 1, "failureThreshold": 3}
        }]});
        assert!(covers(&stored, &desired));
        // ... but a value someone set in their place is drift.
        let mut edited = stored.clone();
        edited["containers"][0]["volumeMounts"][0]["readOnly"] = json!(true);
        assert!(!covers(&edited, &desired));
    }

    #[test]
    fn zero_values_the_server_replaces_by_its_default_still_cover() {
        let desired = json!({"readinessProbe": {"successThreshold": 0, "periodSeconds": 0},
                             "imagePullPolicy": "", "terminationMessagePath": ""});
        let stored = json!({"readinessProbe": {"successThreshold": 1, "periodSeconds": 10},
                            "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePath": "/dev/termination-log"});
        assert!(covers(&stored, &desired));
        // A value that is not zero must match.
        let desired = json!({"readinessProbe": {"periodSeconds": 5}});
        assert!(!covers(&stored, &desired));
    }

    #[test]
    fn an_absent_pointer_field_is_not_its_zero() {
        // Absent means true (or a default), not false/0: removing it by hand is drift.
        for (key, zero) in [
            ("allowPrivilegeEscalation", json!(false)),
            ("automountServiceAccountToken", json!(false)),
            ("enableServiceLinks", json!(false)),
            ("hostUsers", json!(false)),
            ("replicas", json!(0)),
            ("runAsUser", json!(0)),
        ] {
            let desired = json!({ key: zero });
            assert!(!covers(&json!({}), &desired), "{key}");
            assert!(covers(&desired, &desired), "{key}");
        }
    }

    #[test]
    fn items_others_add_to_keyed_lists_are_not_drift() {
        let desired = json!({"metadata": {"ownerReferences": [{"uid": "u", "controller": true}]},
            "spec": {"containers": [
                {"name": "app", "image": "x", "ports": [{"containerPort": 80}]},
                {"name": "kcp-sidecar", "image": "s", "env": [{"name": "A", "value": "1"}],
                 "volumeMounts": [{"name": "cfg", "mountPath": "/etc/kcp"}]}
            ],
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
            "imagePullSecrets": [{"name": "reg"}]}});
        let observed = json!({"metadata": {"ownerReferences": [
                {"uid": "other", "kind": "Thing"}, {"uid": "u", "controller": true}]},
            "spec": {"containers": [
                {"name": "istio-proxy", "image": "istio"},
                {"name": "app", "image": "x", "ports": [
                    {"containerPort": 9000, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}]},
                {"name": "kcp-sidecar", "image": "s",
                 "env": [{"name": "DEBUG", "value": "1"}, {"name": "A", "value": "1"}],
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "cfg", "mountPath": "/etc/kcp"}]}
            ],
            "volumes": [{"name": "istio-envoy", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
            "imagePullSecrets": [{"name": "other"}, {"name": "reg"}]}});
        assert!(covers(&observed, &desired));

        // Our items changed or removed are drift.
        let mut no_sidecar = observed.clone();
        no_sidecar["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .remove(2);
        assert!(!covers(&no_sidecar, &desired));
        let mut no_env = observed.clone();
        no_env["spec"]["containers"][2]["env"]
            .as_array_mut()
            .expect("list")
            .remove(1);
        assert!(!covers(&no_env, &desired));
        let mut image = observed.clone();
        image["spec"]["containers"][1]["image"] = json!("evil");
        assert!(!covers(&image, &desired));
        let mut port = observed;
        port["spec"]["containers"][1]["ports"][1]["protocol"] = json!("UDP");
        assert!(!covers(&port, &desired));
    }

    #[test]
    fn atomic_lists_stay_exact() {
        let desired =
            json!({"command": ["run"], "tolerations": [{"key": "a", "operator": "Exists"}]});
        let more_args = json!({"command": ["run", "--debug"], "tolerations": [{"key": "a", "operator": "Exists"}]});
        assert!(!covers(&more_args, &desired));
        let more_tolerations = json!({"command": ["run"], "tolerations": [
            {"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]});
        assert!(!covers(&more_tolerations, &desired));
    }

    #[test]
    fn quantity_parsing() {
        assert_eq!(parse_quantity("128Mi"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("50m"), Some(0.05));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Zi"), None);
    }
}
