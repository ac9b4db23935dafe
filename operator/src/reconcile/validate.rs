//! Validation: the cross-field rules the CRD schema cannot express, and the parse of the raw
//! `spec.template` into a `PodTemplateSpec` (`template::parse`, which also keeps the fields the
//! pinned pod types do not know, for the API server to judge).
//!
//! Pure. No client, no clock. Produces [`Validated`], consumed by `build`, `status` and the
//! lag probe; every problem is reported at once in one [`InvalidSpec`].

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{Container, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kcp_crds::{KafkaConsumerProxy, KafkaConsumerProxySpec, SidecarConfig};
use kube::Resource;
use sha2::{Digest, Sha256};

use super::{
    build::{CONFIG_VOLUME, INSTANCE_LABEL, REGISTRY_TLS_VOLUME, SIDECAR_CONTAINER, TLS_VOLUME},
    template::{self, UnknownField},
};

/// Longest resource name: the name is a label value (`kafkaproxy.io/instance`), at most 63.
pub const MAX_NAME_LEN: usize = 63;

/// A resource that passed validation, with everything later stages need already derived.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub name: String,
    pub namespace: String,
    /// `metadata.generation` (absent only on objects not read from an API server).
    pub generation: Option<i64>,
    /// Controller owner reference for the children.
    pub owner: OwnerReference,
    pub spec: KafkaConsumerProxySpec,
    /// The sidecar config, every default resolved.
    pub config: SidecarConfig,
    /// `config` as written into the ConfigMap.
    pub config_json: String,
    /// Hex SHA-256 of `config_json`; a pod-template annotation, so a config change rolls pods.
    pub config_hash: String,
    /// The app's pod template; `None` runs the sidecar alone (`endpoint.url`).
    pub template: Option<PodTemplateSpec>,
    /// Fields of `spec.template` that `template` lacks because the pinned pod types do not know
    /// them (a typo, or a newer pod field), as written. `build` puts them back into the
    /// Deployment and the API server judges them.
    pub template_unknown: Vec<UnknownField>,
    /// Dead-letter topics in use, sorted, without duplicates.
    pub dead_letter_topics: Vec<String>,
    /// Fingerprint of the referenced Secrets' values (`secrets.rs`), filled in once they were
    /// read; a pod-template annotation, so a rotated Secret rolls the pods.
    pub secrets_hash: Option<String>,
    /// The operation that holds the pods stopped (`operations`), filled in once it was read.
    pub quiesced_for: Option<String>,
}

impl Validated {
    /// What the operator reads in Kafka for this resource: its cluster, group and topics.
    pub fn lag_target(&self) -> crate::lag::LagTarget {
        crate::lag::LagTarget {
            bootstrap_servers: self.config.kafka.bootstrap_servers.clone(),
            group_id: self.config.kafka.group_id.clone(),
            topics: self.config.kafka.topics.clone(),
            dead_letter_topics: self.dead_letter_topics.clone(),
            protocol: self.config.kafka.security.protocol,
            sasl_mechanism: self.config.kafka.security.sasl_mechanism,
        }
    }
}

/// Everything wrong with a spec, for the `InvalidSpec` condition and Warning Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct InvalidSpec {
    pub problems: Vec<String>,
}

/// Checks `kcp` and derives what the later stages need.
pub fn validate(kcp: &KafkaConsumerProxy) -> Result<Validated, InvalidSpec> {
    let mut problems = Vec::new();
    let meta = kcp.meta();
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    if name.len() > MAX_NAME_LEN {
        problems.push(format!(
            "metadata.name is {} characters long; at most {MAX_NAME_LEN} are allowed because it is used as a label value",
            name.len()
        ));
    }
    let owner = kcp.controller_owner_ref(&());
    if owner.is_none() || meta.uid.is_none() {
        problems.push("resource has no name or uid: it must be read from the API server".into());
    }

    let spec = &kcp.spec;
    let config = match SidecarConfig::render(kcp) {
        Ok(config) => {
            problems.extend(config.problems());
            Some(config)
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };

    let (template, template_unknown) = match &spec.template {
        None => {
            if spec.endpoint.port.is_some() {
                problems.push(
                    "spec.template is required when endpoint.port is set: the port belongs to your app's container".into(),
                );
            }
            (None, Vec::new())
        }
        Some(raw) => match template::parse(raw) {
            Ok(parsed) => {
                check_template(&parsed.template, spec, &name, &mut problems);
                (Some(parsed.template), parsed.unknown)
            }
            Err(problem) => {
                problems.push(problem);
                (None, Vec::new())
            }
        },
    };

    if let Some(problem) = spec.kafka.auth.as_ref().and_then(|a| a.cleartext_problem()) {
        problems.push(problem.to_owned());
    }

    let admin_port = spec.sidecar.admin_port;
    if spec.endpoint.port == Some(admin_port) {
        problems.push(format!(
            "endpoint.port and sidecar.adminPort are both {admin_port}: the app and the sidecar share the pod's network, pick another sidecar.adminPort"
        ));
    }

    let dead_letter_topics: Vec<String> = config
        .as_ref()
        .map(|c| {
            c.kafka
                .topics
                .iter()
                .map(|t| c.delivery.dead_letter_topic_for(t))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    if let Some(c) = &config {
        for t in &c.kafka.topics {
            let dlq = c.delivery.dead_letter_topic_for(t);
            if c.kafka.topics.contains(&dlq) {
                problems.push(format!(
                    "the dead-letter topic of {t:?} is {dlq:?}, which is also a source topic: failed records would be consumed again; set delivery.deadLetter.topic or rename the topics"
                ));
            }
        }
    }

    match (config, owner) {
        (Some(config), Some(owner)) if problems.is_empty() => {
            let config_json = config.to_json_pretty();
            let config_hash = hex::encode(Sha256::digest(config_json.as_bytes()));
            Ok(Validated {
                name,
                namespace,
                generation: meta.generation,
                owner,
                spec: spec.clone(),
                config,
                config_json,
                config_hash,
                template,
                template_unknown,
                dead_letter_topics,
                secrets_hash: None,
                quiesced_for: None,
            })
        }
        _ => Err(InvalidSpec { problems }),
    }
}

/// Rules on the app's template: names we add must be free, the admin port must be free, the
/// pods must be restartable by a Deployment, and our selector label must stay ours.
fn check_template(
    t: &PodTemplateSpec,
    spec: &KafkaConsumerProxySpec,
    name: &str,
    problems: &mut Vec<String>,
) {
    let Some(pod) = &t.spec else {
        problems.push("spec.template.spec is required".into());
        return;
    };
    if pod.containers.is_empty() {
        problems.push("spec.template.spec.containers must list at least one container".into());
    }
    let init = pod.init_containers.as_deref().unwrap_or_default();
    let all: Vec<&Container> = pod.containers.iter().chain(init).collect();
    if all.iter().any(|c| c.name == SIDECAR_CONTAINER) {
        problems.push(format!(
            "spec.template has a container named {SIDECAR_CONTAINER:?}; that name is reserved for the sidecar"
        ));
    }
    for v in pod.volumes.as_deref().unwrap_or_default() {
        if [CONFIG_VOLUME, TLS_VOLUME, REGISTRY_TLS_VOLUME].contains(&v.name.as_str()) {
            problems.push(format!(
                "spec.template has a volume named {:?}; that name is reserved for the sidecar",
                v.name
            ));
        }
    }
    if let Some(policy) = pod.restart_policy.as_deref()
        && policy != "Always"
    {
        problems.push(format!(
            "spec.template.spec.restartPolicy is {policy:?}; pods of a Deployment must use \"Always\" (or leave it unset)"
        ));
    }
    let admin_port = spec.sidecar.admin_port;
    for c in &all {
        for p in c.ports.as_deref().unwrap_or_default() {
            if p.container_port == admin_port {
                problems.push(format!(
                    "container {:?} uses port {admin_port}, which is sidecar.adminPort: set spec.sidecar.adminPort to a free port",
                    c.name
                ));
            }
        }
    }
    if let Some(v) = t
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(INSTANCE_LABEL))
        && v != name
    {
        problems.push(format!(
            "spec.template.metadata.labels[{INSTANCE_LABEL:?}] is {v:?}; the operator sets it to the resource name {name:?} to select the pods: remove it"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::testing::{kcp_from, port_app_spec, url_spec};
    use serde_json::json;

    #[test]
    fn a_valid_app_resource_yields_config_and_template() {
        let v = validate(&kcp_from(port_app_spec())).expect("valid");
        assert_eq!(v.config.endpoint.url, "http://127.0.0.1:8080/events");
        assert_eq!(v.config.kafka.group_id, "shop.orders");
        assert_eq!(v.template.as_ref().map(|t| t.spec.is_some()), Some(true));
        assert_eq!(v.dead_letter_topics, vec!["orders-dlq".to_string()]);
        assert_eq!(v.config_hash.len(), 64);
        assert_eq!(v.owner.controller, Some(true));
    }

    #[test]
    fn an_unparsable_template_is_invalid_spec_with_the_path() {
        let mut spec = port_app_spec();
        spec["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": "eighty"}]);
        let err = validate(&kcp_from(spec)).expect_err("invalid");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.problems[0].contains("spec.template.spec.containers[0].ports[0].containerPort"),
            "{err}"
        );
    }

    #[test]
    fn fields_the_pod_types_do_not_know_are_kept_not_refused() {
        let mut spec = port_app_spec();
        spec["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
        let v = validate(&kcp_from(spec)).expect("the API server judges unknown fields");
        let paths: Vec<String> = v.template_unknown.iter().map(ToString::to_string).collect();
        assert_eq!(paths, ["spec.template.spec.containers[0].imagePullPolcy"]);
        assert_eq!(v.template_unknown[0].value, json!("Always"));
    }

    #[test]
    fn an_app_container_on_the_admin_port_is_refused() {
        let mut spec = port_app_spec();
        spec["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 9090}]);
        let err = validate(&kcp_from(spec)).expect_err("conflict");
        assert!(err.to_string().contains("sidecar.adminPort"), "{err}");
    }

    #[test]
    fn the_endpoint_port_may_not_be_the_admin_port() {
        let mut spec = port_app_spec();
        spec["sidecar"] = json!({"adminPort": 8080});
        let err = validate(&kcp_from(spec)).expect_err("conflict");
        assert!(
            err.to_string()
                .contains("endpoint.port and sidecar.adminPort"),
            "{err}"
        );
    }

    #[test]
    fn reserved_names_restart_policy_and_selector_label_are_checked_together() {
        let mut spec = port_app_spec();
        spec["template"]["spec"]["containers"][0]["name"] = json!("kcp-sidecar");
        spec["template"]["spec"]["volumes"] = json!([{"name": "kcp-config", "emptyDir": {}}]);
        spec["template"]["spec"]["restartPolicy"] = json!("Never");
        spec["template"]["metadata"] = json!({"labels": {"kafkaproxy.io/instance": "other"}});
        let err = validate(&kcp_from(spec)).expect_err("invalid");
        assert_eq!(err.problems.len(), 4, "every problem at once: {err}");
    }

    #[test]
    fn a_dead_letter_topic_that_is_also_a_source_topic_is_refused() {
        let mut spec = url_spec();
        spec["kafka"]["topics"] = json!(["a", "a-dlq"]);
        let err = validate(&kcp_from(spec)).expect_err("loop");
        assert!(err.to_string().contains("also a source topic"), "{err}");

        let mut spec = url_spec();
        spec["kafka"]["topics"] = json!(["a", "b"]);
        spec["delivery"] = json!({"deadLetter": {"topic": "b"}});
        assert!(validate(&kcp_from(spec)).is_err());
    }

    #[test]
    fn port_without_template_is_refused_even_if_the_schema_was_bypassed() {
        let mut spec = port_app_spec();
        spec.as_object_mut().map(|m| m.remove("template"));
        let err = validate(&kcp_from(spec)).expect_err("no template");
        assert!(
            err.to_string().contains("spec.template is required"),
            "{err}"
        );
    }

    #[test]
    fn sidecar_config_problems_are_reported() {
        let mut spec = url_spec();
        spec["endpoint"]["headers"] = json!({"bad header": "x"});
        let err = validate(&kcp_from(spec)).expect_err("bad header");
        assert!(
            err.to_string().contains("not a valid HTTP header name"),
            "{err}"
        );
    }

    #[test]
    fn sasl_plain_without_tls_is_refused_unless_allowed() {
        let mut spec = url_spec();
        spec["kafka"]["auth"] = json!({"sasl": {"mechanism": "PLAIN", "secretName": "kafka-user"}});
        let err = validate(&kcp_from(spec.clone())).expect_err("cleartext password");
        assert!(err.to_string().contains("clear text"), "{err}");
        spec["kafka"]["auth"]["allowCleartextPassword"] = json!(true);
        assert!(
            validate(&kcp_from(spec.clone())).is_ok(),
            "explicitly allowed"
        );
        spec["kafka"]["auth"] =
            json!({"sasl": {"mechanism": "PLAIN", "secretName": "kafka-user"}, "tls": {}});
        assert!(validate(&kcp_from(spec.clone())).is_ok(), "over TLS");
        spec["kafka"]["auth"] =
            json!({"sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"}});
        assert!(
            validate(&kcp_from(spec)).is_ok(),
            "SCRAM never sends the password"
        );
    }

    #[test]
    fn long_names_are_refused() {
        let mut kcp = kcp_from(url_spec());
        kcp.metadata.name = Some("x".repeat(64));
        assert!(validate(&kcp).is_err());
    }

    #[test]
    fn objects_not_read_from_the_api_server_are_refused() {
        let mut kcp = kcp_from(url_spec());
        kcp.metadata.uid = None;
        assert!(validate(&kcp).is_err());
    }
}
