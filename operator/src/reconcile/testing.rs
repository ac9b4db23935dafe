//! Test fixtures shared by the unit tests and the integration tests in `tests/`.
//!
//! Pure builders of example resources; not part of the operator's behaviour.

use kcp_crds::{KafkaConsumerProxy, KafkaConsumerProxySpec};
use kube::api::ObjectMeta;
use serde_json::{Value, json};

/// Namespace of the fixtures.
pub const NAMESPACE: &str = "shop";
/// Name of the fixtures.
pub const NAME: &str = "orders";
/// UID of the fixtures.
pub const UID: &str = "0b8f8d4e-5d5e-4c39-9a55-6f1d1c2b3a4f";

/// A resource as read from the API server: name, namespace, uid, generation 1.
pub fn kcp_from(spec: Value) -> KafkaConsumerProxy {
    let spec: KafkaConsumerProxySpec =
        serde_json::from_value(spec).expect("fixture spec deserializes");
    KafkaConsumerProxy {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NAMESPACE.into()),
            uid: Some(UID.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// An app in the same pod on port 8080.
pub fn port_app_spec() -> Value {
    json!({
        "kafka": {"bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092", "topics": ["orders"]},
        "endpoint": {"port": 8080, "path": "/events"},
        "template": {
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "shop/orders:1.4.2",
                    "ports": [{"containerPort": 8080, "name": "http"}]
                }]
            }
        }
    })
}

/// A remote endpoint: the sidecar runs alone.
pub fn url_spec() -> Value {
    json!({
        "kafka": {"bootstrapServers": "kafka:9092", "topics": ["orders"]},
        "endpoint": {"url": "http://orders.shop.svc:8080/events"}
    })
}

/// `url_spec` with every pod setting (`spec.pod`) a pod without a template may have.
pub fn pod_settings_spec() -> Value {
    let mut spec = url_spec();
    spec["pod"] = json!({
        "labels": {"team": "audit", "app.kubernetes.io/name": "audit-forwarder"},
        "annotations": {"prometheus.io/scrape": "true"},
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"kubernetes.io/arch": "arm64"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kafka",
                         "effect": "NoExecute", "tolerationSeconds": 0}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"kafkaproxy.io/instance": NAME}}}
        }]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"kafkaproxy.io/instance": NAME}}}],
        "priorityClassName": "kafka-consumers",
        "serviceAccountName": "audit-forwarder",
        "runtimeClassName": "gvisor"
    });
    spec
}

/// `port_app_spec` with SASL over TLS, credentials and CA from Secrets.
pub fn sasl_tls_spec() -> Value {
    let mut spec = port_app_spec();
    spec["kafka"]["auth"] = json!({
        "sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"},
        "tls": {"secretName": "kafka-ca", "caKey": "ca.crt"}
    });
    spec
}
