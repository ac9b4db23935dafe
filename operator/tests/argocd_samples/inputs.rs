//! What the samples' statuses are computed from: Deployments as the API server returns them,
//! lag observations, the errors a user must fix, and one reconcile's status computation.

use k8s_openapi::{
    api::apps::v1::{Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kcp_crds::{
    KafkaConsumerProxyStatus,
    v1alpha1::{DeadLetterStatus, PartitionLag, StuckPartition},
};
use kcp_operator::{
    Error,
    lag::{DeadLetterCheck, LagObservation, LagSnapshot, OutageSeen, error_chain},
    reconcile::{
        build::selector_string,
        status::{self, Outcome, Reason},
        testing::{NAME, NAMESPACE, kcp_from, port_app_spec},
        validate::validate,
    },
};
use kube::api::ObjectMeta;
use serde_json::json;

pub const RUNNING: Outcome = Outcome::Applied { suspended: false };
pub const SUSPENDED: Outcome = Outcome::Applied { suspended: true };

/// A fixed time, so the generated file does not change from run to run.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("a valid timestamp")
}

/// A Deployment as the API server returns it after the Deployment controller saw it.
pub fn deployment(desired: i32, updated: i32, total: i32, available: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(desired),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(total),
            updated_replicas: Some(updated),
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }),
    }
}

/// Changed (generation 2) but not yet seen by the Deployment controller.
pub fn unseen() -> Deployment {
    let mut d = deployment(3, 3, 3, 3);
    d.metadata.generation = Some(2);
    d
}

/// A rollout that exceeded its progress deadline.
pub fn stuck() -> Deployment {
    let mut d = deployment(3, 1, 3, 2);
    if let Some(s) = d.status.as_mut() {
        s.conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"orders-7d9f8b6c5d\" has timed out progressing.".into()),
            ..DeploymentCondition::default()
        }]);
    }
    d
}

/// Scaled to 0, two pods still terminating.
pub fn terminating() -> Deployment {
    let mut d = deployment(0, 0, 0, 0);
    if let Some(s) = d.status.as_mut() {
        s.terminating_replicas = Some(2);
    }
    d
}

pub fn lag(total: i64, missing_topics: &[&str], read_at: i64) -> LagObservation {
    LagObservation::Fresh {
        snapshot: LagSnapshot {
            partitions: vec![PartitionLag {
                topic: "orders".into(),
                partition: 0,
                committed_offset: Some(1_000),
                high_watermark: 1_000 + total,
                lag: total,
                lag_seconds: Some(if total > 0 { 42 } else { 0 }),
            }],
            partition_count: 1,
            total,
            dead_letter: DeadLetterStatus {
                topics: vec!["orders-dlq".into()],
                count: 0,
                ..DeadLetterStatus::default()
            },
            missing_topics: missing_topics.iter().map(|t| (*t).to_owned()).collect(),
            dead_letter_check: DeadLetterCheck::default(),
            seconds: Some(if total > 0 { 42 } else { 0 }),
            ..LagSnapshot::default()
        },
        read_at: at(read_at),
    }
}

/// A read that found the dead-letter topics `missing` and `unauthorized`.
pub fn dead_letter_problem(
    missing: &[&str],
    unauthorized: &[&str],
    read_at: i64,
) -> LagObservation {
    let mut observation = lag(0, &[], read_at);
    if let LagObservation::Fresh { snapshot, .. } = &mut observation {
        let names = |topics: &[&str]| topics.iter().map(|t| (*t).to_owned()).collect();
        snapshot.dead_letter_check = DeadLetterCheck {
            missing: names(missing),
            unauthorized: names(unauthorized),
        };
    }
    observation
}

/// A read that found partition 0 stuck since `since` at offset 1,000.
pub fn stuck_partition(since: i64, read_at: i64) -> LagObservation {
    let mut observation = lag(7, &[], read_at);
    if let LagObservation::Fresh { snapshot, .. } = &mut observation {
        snapshot.stuck = vec![StuckPartition {
            topic: "orders".into(),
            partition: 0,
            offset: Some(1_000),
            since: Time(at(since)),
            record: Some("record tried 17 times, last 503".into()),
        }];
        snapshot.stuck_count = 1;
    }
    observation
}

/// A read whose commits report an endpoint outage since the samples' epoch.
pub fn endpoint_outage(read_at: i64) -> LagObservation {
    let mut observation = lag(7, &[], read_at);
    if let LagObservation::Fresh { snapshot, .. } = &mut observation {
        snapshot.outage = Some(OutageSeen {
            class: "5xx",
            since_ms: 1_800_000_000_000,
            partitions: vec!["orders/0".into()],
        });
    }
    observation
}

pub fn kafka_down(at_secs: i64) -> LagObservation {
    LagObservation::Failed {
        message: "fetching metadata of topic \"orders\": Meta data fetch error: \
                  BrokerTransportFailure (Local: Broker transport failure)"
            .into(),
        at: at(at_secs),
    }
}

/// What the reconciler reports for an error the user must fix (its mapping in `reconcile`).
pub fn blocked(e: &Error) -> Outcome {
    Outcome::Blocked {
        reason: e.reason().unwrap_or(Reason::InvalidSpec),
        message: error_chain(e),
    }
}

/// One reconcile's status, at generation `generation`, time `now`.
pub fn status(
    generation: i64,
    outcome: Outcome,
    deployment: Option<&Deployment>,
    lag: &LagObservation,
    previous: Option<&KafkaConsumerProxyStatus>,
    now: i64,
) -> KafkaConsumerProxyStatus {
    status::compute(&status::Input {
        generation: Some(generation),
        selector: selector_string(NAME),
        outcome,
        deployment,
        lag,
        previous,
        now: at(now),
    })
}

/// Each error a user must fix: sample name, the error, and what Argo CD must show of it.
pub fn user_errors() -> Vec<(&'static str, Error, &'static str)> {
    let mut bad_template = port_app_spec();
    bad_template["template"]["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": "eighty"}]);
    let invalid = validate(&kcp_from(bad_template))
        .expect_err("a port that is not a number is an invalid template");
    let refused = kube::core::Status::failure(
        "Deployment.apps \"orders\" is invalid: spec.template.spec.containers[0].image: Required value",
        "Invalid",
    )
    .with_code(422);
    vec![
        (
            "invalid spec: template the operator cannot parse",
            Error::from(invalid),
            "InvalidSpec: spec.template",
        ),
        (
            "template refused by the API server",
            Error::from_apply("Deployment", NAME, kube::Error::Api(refused.boxed())),
            "InvalidSpec: the API server rejected Deployment",
        ),
        (
            "Secret missing",
            Error::SecretNotFound {
                namespace: NAMESPACE.into(),
                name: "kafka-user".into(),
            },
            "SecretNotFound: secret \"kafka-user\" not found",
        ),
        (
            "Secret key missing",
            Error::SecretKeyNotFound {
                name: "kafka-user".into(),
                key: "password".into(),
            },
            "SecretKeyNotFound: secret \"kafka-user\" has no key \"password\"",
        ),
        (
            "Secret does not allow this resource",
            Error::SecretNotAllowed {
                name: "kafka-user".into(),
                resource: NAME.into(),
            },
            "SecretNotAllowed: secret \"kafka-user\" does not allow this resource to use it",
        ),
        (
            "child name taken by another object",
            Error::OwnershipConflict {
                kind: "Deployment",
                name: NAME.into(),
            },
            "OwnershipConflict: Deployment \"orders\" already exists",
        ),
    ]
}
