//! The objects the operator scenario writes, and how it reads their state back.
//!
//! Pure. No client: builds the resources, the patches of the no-op round and of the spec change,
//! and answers "has this status observed its generation?" and "which sidecar image does this
//! Deployment run?". Used by the scenario (`drive`), which does the writes and the reads.

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use kcp_crds::{KafkaConsumerProxy, KafkaConsumerProxySpec};
use kcp_operator::reconcile::build::SIDECAR_CONTAINER;
use serde_json::{Value, json};

/// Where the resources' Kafka is: a closed port on the operator's host, so each lag probe fails
/// fast (`KafkaReachable=False`) and nothing else is needed in the cluster.
pub const UNREACHABLE_KAFKA: &str = "127.0.0.1:9";

/// The annotation the bench sets to trigger a reconcile without changing the spec.
pub const TOUCH_ANNOTATION: &str = "kcp-bench/touch";

/// The spec field the bench changes to measure how soon the operator notices an edit. It lands
/// in the Deployment's pod template as the sidecar's image; with `replicas: 0` nothing pulls it.
pub const SPEC_CHANGE_FIELD: &str = "spec.sidecar.image";

/// The value [`SPEC_CHANGE_FIELD`] gets (`.invalid` is reserved: no registry answers to it).
pub const SPEC_CHANGE_IMAGE: &str = "registry.invalid/kcp-bench/kcp-sidecar:spec-change";

/// Name of resource `i` of a run: zero-padded so a listing sorts in creation order.
pub fn resource_name(i: usize) -> String {
    format!("bench-{i:04}")
}

/// The `n` resources of a run, in `namespace`: distinct names, no pods (`replicas: 0`), a
/// remote endpoint (no pod template needed), Kafka on [`UNREACHABLE_KAFKA`]. Built from the
/// CRD's own types, so serde fills every default the operator would see.
pub fn resources(namespace: &str, n: usize) -> anyhow::Result<Vec<KafkaConsumerProxy>> {
    (0..n)
        .map(|i| {
            let spec: KafkaConsumerProxySpec = serde_json::from_value(json!({
                "kafka": {
                    "bootstrapServers": UNREACHABLE_KAFKA,
                    "topics": [format!("kcp-bench-{i:04}")],
                },
                "endpoint": { "url": "http://127.0.0.1:9/records" },
                "replicas": 0,
            }))
            .context("bench resource spec")?;
            let mut kcp = KafkaConsumerProxy::new(&resource_name(i), spec);
            kcp.metadata.namespace = Some(namespace.to_owned());
            Ok(kcp)
        })
        .collect()
}

/// The merge patch of the no-op round: metadata only, so the generation (and the memoized lag)
/// stay, yet the watch sees a change and reconciles.
pub fn touch_patch() -> Value {
    json!({ "metadata": { "annotations": { TOUCH_ANNOTATION: "1" } } })
}

/// The merge patch of the spec change: [`SPEC_CHANGE_FIELD`] = [`SPEC_CHANGE_IMAGE`].
pub fn spec_change_patch() -> Value {
    json!({ "spec": { "sidecar": { "image": SPEC_CHANGE_IMAGE } } })
}

/// Whether `kcp`'s status was written for its current generation.
pub fn has_observed(kcp: &KafkaConsumerProxy) -> bool {
    kcp.metadata.generation.is_some()
        && kcp.status.as_ref().and_then(|s| s.observed_generation) == kcp.metadata.generation
}

/// Whether `kcp`'s status was written for `generation` or a later one.
pub fn has_observed_generation(kcp: &KafkaConsumerProxy, generation: i64) -> bool {
    kcp.status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_some_and(|g| g >= generation)
}

/// How many of `all` have a status for their current generation.
pub fn observed_count(all: &[KafkaConsumerProxy]) -> usize {
    all.iter().filter(|k| has_observed(k)).count()
}

/// The image of the operator's sidecar container in `deployment`, if it has one.
pub fn sidecar_image(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == SIDECAR_CONTAINER)?
        .image
        .as_deref()
}

/// The CRD's admission as `crds/tests/schema.rs` checks it: the same file, so both agree.
#[cfg(test)]
#[path = "../../../../crds/tests/admission/mod.rs"]
mod admission;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::operator::RESOURCES;
    use kcp_crds::KafkaConsumerProxyStatus;
    use kcp_operator::reconcile::build::{BuildOptions, build};
    use kube::ResourceExt;
    use std::collections::BTreeSet;

    /// A DNS-1123 label, as the API server wants a name that is also a Deployment's name (and,
    /// with `-kcp-config`, a ConfigMap's): lowercase alphanumerics and `-`, at most 63.
    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn builds_distinct_resources_the_api_server_admits() {
        let api_server = admission::ApiServer::new();
        let all = resources("kcp-bench-1", RESOURCES).expect("builds");
        assert_eq!(all.len(), RESOURCES);
        let names: BTreeSet<String> = all.iter().map(|k| k.name_any()).collect();
        assert_eq!(names.len(), RESOURCES, "names are distinct");
        assert_eq!(
            names.iter().next_back().map(String::as_str),
            Some("bench-0999"),
            "names sort in creation order"
        );
        for kcp in &all {
            let name = kcp.name_any();
            assert!(
                is_dns_label(&name) && is_dns_label(&format!("{name}-kcp-config")),
                "{name}"
            );
            let v = serde_json::to_value(kcp).expect("serializes");
            assert_eq!(v["apiVersion"], "kafkaproxy.io/v1alpha1");
            assert_eq!(v["kind"], "KafkaConsumerProxy");
            assert_eq!(v["metadata"]["namespace"], "kcp-bench-1");
            assert_eq!(v["spec"]["kafka"]["bootstrapServers"], UNREACHABLE_KAFKA);
            assert_eq!(v["spec"]["replicas"], 0);
            assert!(v.get("status").is_none_or(Value::is_null));
            let errors = api_server.admit(&v, None);
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
        // The check above can refuse: a resource without topics is not admitted.
        let mut bad = serde_json::to_value(&all[0]).expect("serializes");
        bad["spec"]["kafka"]["topics"] = json!([]);
        assert!(!api_server.admit(&bad, None).is_empty());
        assert!(!is_dns_label("Bench_1") && !is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn every_resource_passes_the_operators_own_validation() {
        for mut kcp in resources("ns", 3).expect("builds") {
            kcp.metadata.uid = Some("uid".into());
            kcp_operator::reconcile::validate::validate(&kcp).expect("operator accepts it");
        }
    }

    /// `resource` with a JSON merge patch applied, as the API server would store it.
    fn merged(resource: &KafkaConsumerProxy, patch: &Value) -> Value {
        fn merge(target: &mut Value, patch: &Value) {
            match (target, patch) {
                (Value::Object(t), Value::Object(p)) => {
                    for (k, v) in p {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            merge(t.entry(k.clone()).or_insert(Value::Null), v);
                        }
                    }
                }
                (t, p) => *t = p.clone(),
            }
        }
        let mut v = serde_json::to_value(resource).expect("serializes");
        merge(&mut v, patch);
        v
    }

    /// The Deployment the operator builds for `v` (a resource as JSON).
    fn deployment_of(v: &Value) -> Deployment {
        let mut kcp: KafkaConsumerProxy = serde_json::from_value(v.clone()).expect("parses");
        kcp.metadata.uid = Some("uid".into());
        let validated = kcp_operator::reconcile::validate::validate(&kcp).expect("valid");
        let opts = BuildOptions {
            default_sidecar_image: "kcp-sidecar:default".into(),
        };
        build(&validated, &opts).deployment
    }

    #[test]
    fn the_spec_change_is_admitted_and_changes_the_deployment() {
        let api_server = admission::ApiServer::new();
        let before = resources("ns", 1).expect("builds").remove(0);
        let old = serde_json::to_value(&before).expect("serializes");
        let after = merged(&before, &spec_change_patch());
        assert_eq!(after["spec"]["sidecar"]["image"], SPEC_CHANGE_IMAGE);
        assert_ne!(
            after["spec"], old["spec"],
            "a spec change: the generation moves"
        );
        let errors = api_server.admit(&after, Some(&old));
        assert!(errors.is_empty(), "{errors:?}");

        assert_eq!(
            sidecar_image(&deployment_of(&old)),
            Some("kcp-sidecar:default")
        );
        assert_eq!(
            sidecar_image(&deployment_of(&after)),
            Some(SPEC_CHANGE_IMAGE),
            "the operator puts the new value into the Deployment"
        );
        assert_eq!(sidecar_image(&Deployment::default()), None);
    }

    #[test]
    fn the_touch_changes_metadata_only() {
        let before = resources("ns", 1).expect("builds").remove(0);
        let old = serde_json::to_value(&before).expect("serializes");
        let after = merged(&before, &touch_patch());
        assert_eq!(after["spec"], old["spec"]);
        assert_eq!(after["metadata"]["annotations"][TOUCH_ANNOTATION], "1");
    }

    #[test]
    fn a_status_counts_only_for_its_own_generation() {
        let mut all = resources("ns", 3).expect("builds");
        // Just created: no generation seen by us yet, no status.
        assert_eq!(observed_count(&all), 0);
        let status = |g| KafkaConsumerProxyStatus {
            observed_generation: Some(g),
            ..KafkaConsumerProxyStatus::default()
        };
        all[0].metadata.generation = Some(1);
        all[0].status = Some(status(1));
        all[1].metadata.generation = Some(2);
        all[1].status = Some(status(1));
        all[2].metadata.generation = Some(1);
        assert!(has_observed(&all[0]));
        assert!(!has_observed(&all[1]), "status of the previous generation");
        assert!(!has_observed(&all[2]), "no status");
        assert_eq!(observed_count(&all), 1);

        // After a change to generation 2: the old status does not count, a newer one does.
        assert!(!has_observed_generation(&all[0], 2));
        assert!(has_observed_generation(&all[1], 1));
        assert!(!has_observed_generation(&all[2], 1), "no status");
        all[0].status = Some(status(3));
        assert!(has_observed_generation(&all[0], 2));
    }
}
