//! The statuses Argo CD's health check (`manifests/argocd/health.lua`) is tested against, computed
//! by the operator's own status code, never written by hand.
//!
//! Each scenario runs the real pure stages (`validate`, the `Error` → condition mapping the
//! reconciler uses, `status::compute`, with the previous status carried over as the reconciler
//! does) and records the resource as Argo CD would read it, with the health and a piece of the
//! message Argo CD must show. The result is committed as `manifests/argocd/samples.json`;
//! `tests/tests/manifests.rs` runs `health.lua` on every sample with `lua5.4`. A difference
//! fails here; when the change is intended:
//!
//! `KCP_UPDATE_SNAPSHOTS=1 cargo test -p kcp-operator --test argocd_samples`
//!
//! and review the new file in the diff of the change.

#![allow(clippy::unwrap_used)]

#[path = "argocd_samples/inputs.rs"]
mod inputs;

use std::{collections::BTreeSet, path::PathBuf};

use kcp_crds::KafkaConsumerProxyStatus;
use kcp_operator::{
    lag::LagObservation,
    reconcile::{
        status::{Outcome, Reason},
        testing::{NAME, NAMESPACE},
    },
};
use serde_json::{Value, json};

use inputs::{
    RUNNING, SUSPENDED, blocked, dead_letter_problem, deployment, endpoint_outage, kafka_down, lag,
    status, stuck, stuck_partition, terminating, unseen, user_errors,
};

const SAMPLES: &str = "manifests/argocd/samples.json";
const REGENERATE: &str = "KCP_UPDATE_SNAPSHOTS=1 cargo test -p kcp-operator --test argocd_samples";

/// Every condition reason the operator writes. `sample_for` matches on each without a
/// wildcard, so a new `Reason` does not compile until it has a sample here.
const ALL_REASONS: [Reason; 21] = [
    Reason::Available,
    Reason::Suspended,
    Reason::OperationInProgress,
    Reason::Paused,
    Reason::DeploymentProgressing,
    Reason::ReplicasUnavailable,
    Reason::ProgressDeadlineExceeded,
    Reason::InvalidSpec,
    Reason::SecretNotFound,
    Reason::SecretKeyNotFound,
    Reason::SecretNotAllowed,
    Reason::OwnershipConflict,
    Reason::KafkaReachable,
    Reason::KafkaUnreachable,
    Reason::DeadLetterTopicsExist,
    Reason::DeadLetterTopicMissing,
    Reason::DeadLetterTopicNotAuthorized,
    Reason::PartitionsStuck,
    Reason::PartitionsMoving,
    Reason::EndpointFailsEveryRecord,
    Reason::EndpointAnswers,
];

/// The sample that shows `reason` to Argo CD.
fn sample_for(reason: Reason) -> &'static str {
    match reason {
        Reason::Available => "ready",
        Reason::Suspended => "suspended, no pods left",
        Reason::OperationInProgress => "stopped for an operation",
        Reason::Paused => "paused",
        Reason::DeploymentProgressing => "rolling out: pods being updated",
        Reason::ReplicasUnavailable => "rolled out, fewer pods available than desired",
        Reason::ProgressDeadlineExceeded => "rollout past its progress deadline",
        Reason::InvalidSpec => "invalid spec: template the operator cannot parse",
        Reason::SecretNotFound => "Secret missing",
        Reason::SecretKeyNotFound => "Secret key missing",
        Reason::SecretNotAllowed => "Secret does not allow this resource",
        Reason::OwnershipConflict => "child name taken by another object",
        Reason::KafkaReachable => "ready, a source topic missing",
        Reason::KafkaUnreachable => "ready, Kafka unreachable: lag stale",
        Reason::DeadLetterTopicsExist => "ready",
        Reason::DeadLetterTopicMissing => "ready, a dead-letter topic missing",
        Reason::DeadLetterTopicNotAuthorized => {
            "ready, a dead-letter topic the Kafka user may not describe"
        }
        Reason::PartitionsStuck => "ready, a partition stuck",
        Reason::PartitionsMoving => "ready",
        Reason::EndpointFailsEveryRecord => "ready, the app failing every record",
        Reason::EndpointAnswers => "ready",
    }
}

struct Sample {
    name: &'static str,
    generation: i64,
    status: Option<KafkaConsumerProxyStatus>,
    health: &'static str,
    message: String,
}

impl Sample {
    /// The resource as Argo CD reads it (the spec is left out: the health check reads only
    /// `metadata.generation` and `status`).
    fn to_json(&self) -> Value {
        let mut object = json!({
            "apiVersion": "kafkaproxy.io/v1alpha1",
            "kind": "KafkaConsumerProxy",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": self.generation},
        });
        if let Some(s) = &self.status {
            object["status"] = serde_json::to_value(s).unwrap();
        }
        json!({
            "name": self.name,
            "expect": {"status": self.health, "message": self.message},
            "object": object,
        })
    }
}

fn samples() -> Vec<Sample> {
    let none = LagObservation::NotProbed;
    let ready_dep = deployment(3, 3, 3, 3);
    let suspended_dep = deployment(0, 0, 0, 0);
    let fresh = lag(12, &[], 0);
    // The resource as it is most of its life: ready, lag read.
    let ready = status(1, RUNNING, Some(&ready_dep), &fresh, None, 0);
    let suspending = status(2, SUSPENDED, Some(&terminating()), &fresh, Some(&ready), 60);
    let suspended = status(
        2,
        SUSPENDED,
        Some(&suspended_dep),
        &fresh,
        Some(&suspending),
        90,
    );
    let stale = |dep, previous| status(2, SUSPENDED, Some(dep), &kafka_down(120), previous, 120);

    let mut out = vec![Sample {
        name: "created, not yet reconciled",
        generation: 1,
        status: None,
        health: "Progressing",
        message: "Waiting for the operator".into(),
    }];
    let mut add = |name, generation, status, health, message: &str| {
        out.push(Sample {
            name,
            generation,
            status: Some(status),
            health,
            message: message.to_owned(),
        });
    };
    let progressing = "Progressing";
    add(
        "Deployment not created yet",
        1,
        status(1, RUNNING, None, &none, None, 0),
        progressing,
        "waiting for the Deployment to be created",
    );
    let rolling = deployment(3, 1, 3, 1);
    add(
        "rolling out: pods being updated",
        1,
        status(1, RUNNING, Some(&rolling), &fresh, None, 0),
        progressing,
        "1 of 3 pods updated",
    );
    add(
        "Deployment controller has not seen the change",
        2,
        status(2, RUNNING, Some(&unseen()), &fresh, Some(&ready), 60),
        progressing,
        "waiting for the Deployment controller",
    );
    let short = deployment(3, 3, 3, 2);
    add(
        "rolled out, fewer pods available than desired",
        1,
        status(1, RUNNING, Some(&short), &fresh, None, 0),
        progressing,
        "2 of 3 pods available",
    );
    add(
        "ready",
        1,
        ready.clone(),
        "Healthy",
        "3 of 3 pods available",
    );
    add(
        "spec edited, not yet processed by the operator",
        2,
        ready.clone(),
        progressing,
        "not yet processed generation 2",
    );
    let missing_topic = lag(0, &["orders-eu"], 30);
    add(
        "ready, a source topic missing",
        1,
        status(
            1,
            RUNNING,
            Some(&ready_dep),
            &missing_topic,
            Some(&ready),
            30,
        ),
        "Healthy",
        "3 of 3 pods available",
    );
    add(
        "ready, Kafka unreachable: lag stale",
        1,
        status(
            1,
            RUNNING,
            Some(&ready_dep),
            &kafka_down(60),
            Some(&ready),
            60,
        ),
        "Healthy",
        "lag not updated: fetching metadata",
    );
    add(
        "ready, a dead-letter topic missing",
        1,
        status(
            1,
            RUNNING,
            Some(&ready_dep),
            &dead_letter_problem(&["orders-dlq"], &[], 30),
            Some(&ready),
            30,
        ),
        "Healthy",
        "3 of 3 pods available; DeadLetterTopicMissing: dead-letter topic orders-dlq does not exist",
    );
    add(
        "ready, a dead-letter topic the Kafka user may not describe",
        1,
        status(
            1,
            RUNNING,
            Some(&ready_dep),
            &dead_letter_problem(&[], &["orders-dlq"], 30),
            Some(&ready),
            30,
        ),
        "Healthy",
        "DeadLetterTopicNotAuthorized: the resource's Kafka user may not describe dead-letter topic orders-dlq",
    );
    add(
        "ready, a partition stuck",
        1,
        status(
            1,
            RUNNING,
            Some(&ready_dep),
            &stuck_partition(0, 400),
            Some(&ready),
            400,
        ),
        "Healthy",
        "3 of 3 pods available; PartitionsStuck: orders/0 stuck at offset 1000 for 6m40s (record tried 17 times, last 503)",
    );
    add(
        "ready, the app failing every record",
        1,
        status(
            1,
            RUNNING,
            Some(&ready_dep),
            &endpoint_outage(30),
            Some(&ready),
            30,
        ),
        "Healthy",
        "3 of 3 pods available; EndpointFailsEveryRecord: the app answers every record alike (5xx) since 2027-01-15T08:00:00Z, as the last commits of orders/0 report: the sidecars count no attempt, dead-letter nothing and take no record until a probe gets an answer",
    );
    add(
        "suspending, pods terminating",
        2,
        suspending.clone(),
        progressing,
        "2 pods terminating",
    );
    add(
        "suspended, no pods left",
        2,
        suspended.clone(),
        "Suspended",
        "suspended: no pods run",
    );
    add(
        "suspended, Kafka unreachable",
        2,
        stale(&suspended_dep, Some(&suspended)),
        "Suspended",
        "lag not updated",
    );
    add(
        "stopped for an operation",
        2,
        status(
            2,
            Outcome::Stopped {
                operation: "orders-rewind-20261129-100000".into(),
            },
            Some(&suspended_dep),
            &fresh,
            Some(&ready),
            60,
        ),
        progressing,
        "no pods run while operation orders-rewind-20261129-100000 changes the group's offsets",
    );
    add(
        "paused",
        2,
        status(
            2,
            Outcome::Paused,
            Some(&ready_dep),
            &fresh,
            Some(&ready),
            60,
        ),
        "Suspended",
        "paused (spec.paused): 3 of 3 pods available",
    );
    add(
        "rollout past its progress deadline",
        1,
        status(1, RUNNING, Some(&stuck()), &fresh, None, 0),
        "Degraded",
        "ProgressDeadlineExceeded: ReplicaSet \"orders-7d9f8b6c5d\" has timed out",
    );
    for (name, e, message) in user_errors() {
        // A user error after the resource had been ready: replicas and lag are carried over.
        let blocked = status(2, blocked(&e), None, &none, Some(&ready), 60);
        add(name, 2, blocked, "Degraded", message);
    }
    out
}

fn generated() -> String {
    let samples: Vec<Value> = samples().iter().map(Sample::to_json).collect();
    let file = json!({
        "generatedBy": format!(
            "operator/tests/argocd_samples.rs from the operator's status code; do not edit, regenerate with: {REGENERATE}"
        ),
        "samples": samples,
    });
    serde_json::to_string_pretty(&file).unwrap() + "\n"
}

#[test]
fn committed_samples_are_what_the_status_code_writes() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(SAMPLES);
    let now = generated();
    if std::env::var_os("KCP_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != now {
        let first = committed
            .lines()
            .zip(now.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(now.lines().count()));
        panic!(
            "{SAMPLES} differs from what the status code produces (first difference at line {}:\n  committed: {:?}\n  generated: {:?}).\nIf the change is intended, regenerate with:\n  {REGENERATE}",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            now.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn samples_cover_every_reason_and_every_health() {
    let samples = samples();
    let names: BTreeSet<&str> = samples.iter().map(|s| s.name).collect();
    assert_eq!(names.len(), samples.len(), "sample names are unique");
    for reason in ALL_REASONS {
        let name = sample_for(reason);
        let sample = samples
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no sample named {name:?} for {reason:?}"));
        let status = sample.status.as_ref().unwrap();
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.reason == reason.as_str()),
            "sample {name:?} does not show reason {reason:?}: {:?}",
            status.conditions
        );
    }
    let healths: BTreeSet<&str> = samples.iter().map(|s| s.health).collect();
    assert_eq!(
        healths,
        BTreeSet::from(["Degraded", "Healthy", "Progressing", "Suspended"]),
        "every health the check can report has a sample"
    );
}
