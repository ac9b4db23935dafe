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
//! Fields the API server or others add (defaults, status, other managers' labels) are ignored.
//! Empty objects, empty lists and nulls we send count as equal to an absent field (the server
//! drops some of them). Resource quantities compare by value (`1000m` = `1`), as the server
//! rewrites them in canonical form. Booleans and numbers must match exactly.

use serde_json::Value;

/// Whether `observed` holds every field of `desired` with the same value.
pub fn covers(observed: &Value, desired: &Value) -> bool {
    covers_at(observed, desired, false)
}

fn covers_at(observed: &Value, desired: &Value, quantities: bool) -> bool {
    match (desired, observed) {
        (Value::Object(d), Value::Object(o)) => d.iter().all(|(k, dv)| match o.get(k) {
            Some(ov) => covers_at(ov, dv, quantities || is_quantity_map(k)),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(o)) => {
            d.len() == o.len()
                && d.iter()
                    .zip(o)
                    .all(|(dv, ov)| covers_at(ov, dv, quantities))
        }
        (Value::String(d), Value::String(o)) if quantities && d != o => {
            matches!((parse_quantity(d), parse_quantity(o)), (Some(a), Some(b)) if (a - b).abs() <= f64::EPSILON * a.abs().max(1.0))
        }
        (d, Value::Null) => is_empty(d),
        (d, o) => d == o,
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
        let extra_container =
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}});
        assert!(!covers(&extra_container, &desired));
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
    fn quantity_parsing() {
        assert_eq!(parse_quantity("128Mi"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("50m"), Some(0.05));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Zi"), None);
    }
}
