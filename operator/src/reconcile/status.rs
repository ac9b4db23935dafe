//! Status: what the resource reports, computed from what was observed.
//!
//! Pure. Input: the outcome of validation and apply (or the error the user must fix), the
//! Deployment as last seen, the lag observation, the previous status and the time. Output: the
//! whole new status. The reconciler writes it only when it differs from the previous one, so
//! this function carries forward every timestamp that did not really change:
//! `lastTransitionTime` moves only when a condition's `status` changes, `lag.updatedAt` only
//! when the figures (or their staleness) change.
//!
//! Conditions follow kstatus: `Ready`, `Reconciling`, `Stalled`, plus `KafkaReachable` for the
//! operator's own lag probe (it does not affect `Ready`: pods may reach Kafka when the operator
//! cannot), `DeadLetterTopicsReady` from the same read ([`dead_letter`]), `PartitionsStuck`
//! ([`stuck`]) and `EndpointOutage` ([`outage`]).

use k8s_openapi::{
    api::apps::v1::Deployment,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kcp_crds::v1alpha1::{DeadLetterStatus, KafkaConsumerProxyStatus, LagStatus};

use crate::lag::{LagObservation, LagSnapshot};

mod dead_letter;
mod outage;
mod stuck;

/// Condition types.
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const KAFKA_REACHABLE: &str = "KafkaReachable";
pub const DEAD_LETTER_TOPICS_READY: &str = "DeadLetterTopicsReady";
pub const PARTITIONS_STUCK: &str = "PartitionsStuck";
pub const ENDPOINT_OUTAGE: &str = "EndpointOutage";

/// Every condition reason the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// All desired pods are available.
    Available,
    /// `spec.suspend` is set and no pod runs.
    Suspended,
    /// An operation (rewind, fast-forward, skip) stopped the pods while it changes offsets.
    OperationInProgress,
    /// `spec.paused` is set: the pods run and take no record.
    Paused,
    /// The Deployment is being created or rolled out.
    DeploymentProgressing,
    /// Rolled out, but fewer pods are available than desired.
    ReplicasUnavailable,
    /// The Deployment exceeded its progress deadline.
    ProgressDeadlineExceeded,
    /// The spec (or the object built from it) is invalid.
    InvalidSpec,
    /// A Secret named in `spec.kafka.auth` does not exist.
    SecretNotFound,
    /// A Secret lacks a key named in `spec.kafka.auth`.
    SecretKeyNotFound,
    /// A Secret named in `spec.kafka.auth` does not allow this resource to use it.
    SecretNotAllowed,
    /// A child's name is taken by an object this resource does not control.
    OwnershipConflict,
    /// The operator read lag from Kafka.
    KafkaReachable,
    /// The operator could not read lag from Kafka.
    KafkaUnreachable,
    /// Every dead-letter topic exists (whether it may be written is the sidecar's to report).
    DeadLetterTopicsExist,
    /// A dead-letter topic does not exist.
    DeadLetterTopicMissing,
    /// The resource's Kafka user may not describe a dead-letter topic, so not write it either.
    DeadLetterTopicNotAuthorized,
    /// A partition's committed offset has not moved for the stuck window, with lag.
    PartitionsStuck,
    /// Every partition with lag moved within the stuck window.
    PartitionsMoving,
    /// A sidecar's last commit reports the app failing every record alike.
    EndpointFailsEveryRecord,
    /// No sidecar reports an endpoint outage.
    EndpointAnswers,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "Available",
            Self::Suspended => "Suspended",
            Self::OperationInProgress => "OperationInProgress",
            Self::Paused => "Paused",
            Self::DeploymentProgressing => "DeploymentProgressing",
            Self::ReplicasUnavailable => "ReplicasUnavailable",
            Self::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            Self::InvalidSpec => "InvalidSpec",
            Self::SecretNotFound => "SecretNotFound",
            Self::SecretKeyNotFound => "SecretKeyNotFound",
            Self::SecretNotAllowed => "SecretNotAllowed",
            Self::OwnershipConflict => "OwnershipConflict",
            Self::KafkaReachable => "KafkaReachable",
            Self::KafkaUnreachable => "KafkaUnreachable",
            Self::DeadLetterTopicsExist => "DeadLetterTopicsExist",
            Self::DeadLetterTopicMissing => "DeadLetterTopicMissing",
            Self::DeadLetterTopicNotAuthorized => "DeadLetterTopicNotAuthorized",
            Self::PartitionsStuck => "PartitionsStuck",
            Self::PartitionsMoving => "PartitionsMoving",
            Self::EndpointFailsEveryRecord => "EndpointFailsEveryRecord",
            Self::EndpointAnswers => "EndpointAnswers",
        }
    }
}

/// How far the reconcile got.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Children applied (or already as desired).
    Applied { suspended: bool },
    /// Children applied with no pods while an operation changes the group's offsets.
    Stopped { operation: String },
    /// Children applied; `spec.paused` keeps the pods from taking records.
    Paused,
    /// Stopped on something the user must fix.
    Blocked { reason: Reason, message: String },
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// `metadata.generation` of the resource.
    pub generation: Option<i64>,
    /// The pods' selector, in string form.
    pub selector: String,
    pub outcome: Outcome,
    /// The Deployment after apply (or as observed); `None` when absent or not read.
    pub deployment: Option<&'a Deployment>,
    pub lag: &'a LagObservation,
    pub previous: Option<&'a KafkaConsumerProxyStatus>,
    /// Now, already truncated to seconds (what the API server stores).
    pub now: Timestamp,
}

/// Where the Deployment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rollout {
    Progressing(String),
    Unavailable(String),
    DeadlineExceeded(String),
    Available(String),
}

/// Computes the whole status.
pub fn compute(input: &Input<'_>) -> KafkaConsumerProxyStatus {
    let previous = input.previous;
    let (ready, reconciling, stalled) = kstatus(input);
    let mut conditions = Vec::new();
    for (type_, status, reason, message) in [
        (READY, ready.0, ready.1, ready.2),
        (RECONCILING, reconciling.0, reconciling.1, reconciling.2),
        (STALLED, stalled.0, stalled.1, stalled.2),
    ] {
        conditions.push(condition(input, type_, status, reason, message));
    }
    if let Some(c) = kafka_condition(input) {
        conditions.push(c);
    }
    if let Some(c) = dead_letter::condition(input) {
        conditions.push(c);
    }
    if let Some(c) = stuck::condition(input) {
        conditions.push(c);
    }
    if let Some(c) = outage::condition(input) {
        conditions.push(c);
    }

    let (replicas, ready_replicas) = match (input.deployment, &input.outcome) {
        (Some(d), _) => {
            let s = d.status.as_ref();
            (
                s.and_then(|s| s.replicas).unwrap_or(0),
                s.and_then(|s| s.ready_replicas).unwrap_or(0),
            )
        }
        (None, Outcome::Blocked { .. }) => (
            previous.and_then(|p| p.replicas).unwrap_or(0),
            previous.and_then(|p| p.ready_replicas).unwrap_or(0),
        ),
        (None, _) => (0, 0),
    };

    let (lag, dead_letter) = lag_figures(input);
    KafkaConsumerProxyStatus {
        observed_generation: input.generation,
        conditions,
        replicas: Some(replicas),
        ready_replicas: Some(ready_replicas),
        selector: Some(input.selector.clone()),
        lag,
        dead_letter,
        stuck: stuck::list(input),
    }
}

type Cond = (bool, Reason, String);

fn kstatus(input: &Input<'_>) -> (Cond, Cond, Cond) {
    match &input.outcome {
        Outcome::Blocked { reason, message } => (
            (false, *reason, message.clone()),
            (false, *reason, "waiting for the problem to be fixed".into()),
            (true, *reason, message.clone()),
        ),
        outcome => match rollout(input.deployment) {
            Rollout::Available(msg) => {
                let (reason, msg) = match outcome {
                    Outcome::Applied { suspended: true } => (
                        Reason::Suspended,
                        "suspended: no pods run; lag is still reported".to_owned(),
                    ),
                    Outcome::Stopped { operation } => (
                        Reason::OperationInProgress,
                        format!(
                            "no pods run while operation {operation} changes the group's \
                             offsets; they start again when it ends"
                        ),
                    ),
                    Outcome::Paused => (
                        Reason::Paused,
                        format!(
                            "paused (spec.paused): {msg}; the pods keep their partitions and \
                             take no record until spec.paused is false"
                        ),
                    ),
                    _ => (Reason::Available, msg),
                };
                (
                    (true, reason, msg.clone()),
                    (false, reason, msg.clone()),
                    (false, reason, msg),
                )
            }
            Rollout::Progressing(msg) => (
                (false, Reason::DeploymentProgressing, msg.clone()),
                (true, Reason::DeploymentProgressing, msg.clone()),
                (false, Reason::DeploymentProgressing, msg),
            ),
            Rollout::Unavailable(msg) => (
                (false, Reason::ReplicasUnavailable, msg.clone()),
                (true, Reason::ReplicasUnavailable, msg.clone()),
                (false, Reason::ReplicasUnavailable, msg),
            ),
            Rollout::DeadlineExceeded(msg) => (
                (false, Reason::ProgressDeadlineExceeded, msg.clone()),
                (false, Reason::ProgressDeadlineExceeded, msg.clone()),
                (true, Reason::ProgressDeadlineExceeded, msg),
            ),
        },
    }
}

fn rollout(deployment: Option<&Deployment>) -> Rollout {
    let Some(d) = deployment else {
        return Rollout::Progressing("waiting for the Deployment to be created".into());
    };
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(s) = d.status.as_ref() else {
        return Rollout::Progressing("waiting for the Deployment controller".into());
    };
    if s.observed_generation.unwrap_or(0) < generation {
        return Rollout::Progressing(
            "waiting for the Deployment controller to see the change".into(),
        );
    }
    if let Some(c) = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing" && c.status == "False")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Rollout::DeadlineExceeded(
            c.message
                .clone()
                .unwrap_or_else(|| "the Deployment exceeded its progress deadline".into()),
        );
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    if updated < desired {
        return Rollout::Progressing(format!("{updated} of {desired} pods updated"));
    }
    // Also covers a scale-down (or suspend): surplus pods are still terminating.
    if total > desired {
        return Rollout::Progressing(format!(
            "{} surplus pods pending termination",
            total - desired
        ));
    }
    // Reported by Kubernetes 1.33+ (DeploymentReplicaSetTerminatingReplicas); absent before.
    let terminating = s.terminating_replicas.unwrap_or(0);
    if terminating > 0 {
        return Rollout::Progressing(format!("{terminating} pods terminating"));
    }
    if available < desired {
        return Rollout::Unavailable(format!("{available} of {desired} pods available"));
    }
    Rollout::Available(format!("{available} of {desired} pods available"))
}

fn kafka_condition(input: &Input<'_>) -> Option<Condition> {
    let (status, reason, message) = match input.lag {
        LagObservation::Fresh { snapshot, .. } => {
            let message = if snapshot.missing_topics.is_empty() {
                "lag and dead-letter counts read from Kafka".to_owned()
            } else {
                format!(
                    "lag read from Kafka; these topics do not exist: {}",
                    snapshot.missing_topics.join(", ")
                )
            };
            (true, Reason::KafkaReachable, message)
        }
        LagObservation::Failed { message, .. } => {
            (false, Reason::KafkaUnreachable, message.clone())
        }
        LagObservation::Pending | LagObservation::NotProbed => {
            return input
                .previous?
                .conditions
                .iter()
                .find(|c| c.type_ == KAFKA_REACHABLE)
                .cloned();
        }
    };
    Some(condition(input, KAFKA_REACHABLE, status, reason, message))
}

/// A condition taken from the lag read: `fresh` decides it from a fresh read; `Unknown`
/// (`KafkaUnreachable`) when the last read failed; the previous condition while no read ended.
fn from_read(
    input: &Input<'_>,
    type_: &str,
    fresh: impl FnOnce(&LagSnapshot) -> (&'static str, Reason, String),
) -> Option<Condition> {
    let (status, reason, message) = match input.lag {
        LagObservation::Fresh { snapshot, .. } => fresh(snapshot),
        LagObservation::Failed { .. } => (
            "Unknown",
            Reason::KafkaUnreachable,
            "not known: the operator could not read from Kafka (see KafkaReachable)".to_owned(),
        ),
        LagObservation::Pending | LagObservation::NotProbed => {
            return input
                .previous?
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .cloned();
        }
    };
    Some(condition_with(input, type_, status, reason, message))
}

/// A condition whose `lastTransitionTime` is carried over unless `status` changed.
fn condition(
    input: &Input<'_>,
    type_: &str,
    status: bool,
    reason: Reason,
    message: String,
) -> Condition {
    let status = if status { "True" } else { "False" };
    condition_with(input, type_, status, reason, message)
}

/// [`condition`] with the status as written: `True`, `False` or `Unknown`.
fn condition_with(
    input: &Input<'_>,
    type_: &str,
    status: &str,
    reason: Reason,
    message: String,
) -> Condition {
    let status = status.to_owned();
    let last_transition_time = input
        .previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(input.now));
    Condition {
        last_transition_time,
        message,
        observed_generation: input.generation,
        reason: reason.as_str().to_owned(),
        status,
        type_: type_.to_owned(),
    }
}

fn lag_figures(input: &Input<'_>) -> (Option<LagStatus>, Option<DeadLetterStatus>) {
    let previous = input.previous;
    let prev_lag = previous.and_then(|p| p.lag.clone());
    let prev_dlq = previous.and_then(|p| p.dead_letter.clone());
    match input.lag {
        LagObservation::Pending | LagObservation::NotProbed => (prev_lag, prev_dlq),
        LagObservation::Failed { .. } => {
            (prev_lag.map(|l| LagStatus { stale: true, ..l }), prev_dlq)
        }
        LagObservation::Fresh { snapshot, read_at } => {
            let same_figures = prev_lag.as_ref().is_some_and(|p| {
                !p.stale
                    && p.total == snapshot.total
                    && p.seconds == snapshot.seconds
                    && p.partition_count == Some(snapshot.partition_count)
                    && p.partitions == snapshot.partitions
            });
            let updated_at = if same_figures {
                prev_lag.and_then(|p| p.updated_at)
            } else {
                Some(Time(*read_at))
            };
            (
                Some(LagStatus {
                    total: snapshot.total,
                    seconds: snapshot.seconds,
                    behind: snapshot.seconds.map(crate::lag::stuck::human),
                    partition_count: Some(snapshot.partition_count),
                    partitions: snapshot.partitions.clone(),
                    updated_at,
                    stale: false,
                }),
                Some(snapshot.dead_letter.clone()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::LagSnapshot;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use kcp_crds::v1alpha1::PartitionLag;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
    }

    fn deployment(desired: i32, updated: i32, available: i32) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(updated),
                updated_replicas: Some(updated),
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn snapshot(lag: i64) -> LagSnapshot {
        LagSnapshot {
            partitions: vec![PartitionLag {
                topic: "orders".into(),
                partition: 0,
                committed_offset: Some(10),
                high_watermark: 10 + lag,
                lag,
                lag_seconds: Some(lag * 2),
            }],
            partition_count: 1,
            total: lag,
            dead_letter: DeadLetterStatus {
                topics: vec!["orders-dlq".into()],
                count: 2,
                ..DeadLetterStatus::default()
            },
            seconds: Some(lag * 2),
            ..LagSnapshot::default()
        }
    }

    fn run(
        outcome: Outcome,
        dep: Option<&Deployment>,
        lag: &LagObservation,
        previous: Option<&KafkaConsumerProxyStatus>,
        now: Timestamp,
    ) -> KafkaConsumerProxyStatus {
        compute(&Input {
            generation: Some(7),
            selector: "kafkaproxy.io/instance=orders".into(),
            outcome,
            deployment: dep,
            lag,
            previous,
            now,
        })
    }

    fn cond<'a>(s: &'a KafkaConsumerProxyStatus, type_: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    const APPLIED: Outcome = Outcome::Applied { suspended: false };

    #[test]
    fn all_pods_available_is_ready() {
        let d = deployment(3, 3, 3);
        let s = run(APPLIED, Some(&d), &LagObservation::NotProbed, None, t(0));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, READY).reason, "Available");
        assert_eq!(cond(&s, RECONCILING).status, "False");
        assert_eq!(cond(&s, STALLED).status, "False");
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.ready_replicas, Some(3));
        assert_eq!(s.observed_generation, Some(7));
        assert_eq!(s.selector.as_deref(), Some("kafkaproxy.io/instance=orders"));
    }

    #[test]
    fn rollout_states_map_to_kstatus() {
        let progressing = deployment(3, 1, 1);
        let s = run(
            APPLIED,
            Some(&progressing),
            &LagObservation::NotProbed,
            None,
            t(0),
        );
        assert_eq!(cond(&s, READY).reason, "DeploymentProgressing");
        assert_eq!(cond(&s, RECONCILING).status, "True");

        let unavailable = deployment(3, 3, 2);
        let s = run(
            APPLIED,
            Some(&unavailable),
            &LagObservation::NotProbed,
            None,
            t(0),
        );
        assert_eq!(cond(&s, READY).reason, "ReplicasUnavailable");
        assert_eq!(cond(&s, READY).message, "2 of 3 pods available");

        let mut stuck = deployment(3, 1, 1);
        if let Some(st) = stuck.status.as_mut() {
            st.conditions = Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "False".into(),
                reason: Some("ProgressDeadlineExceeded".into()),
                ..Default::default()
            }]);
        }
        let s = run(
            APPLIED,
            Some(&stuck),
            &LagObservation::NotProbed,
            None,
            t(0),
        );
        assert_eq!(cond(&s, STALLED).status, "True");
        assert_eq!(cond(&s, STALLED).reason, "ProgressDeadlineExceeded");

        let mut unseen = deployment(3, 3, 3);
        unseen.metadata.generation = Some(3);
        let s = run(
            APPLIED,
            Some(&unseen),
            &LagObservation::NotProbed,
            None,
            t(0),
        );
        assert_eq!(cond(&s, READY).reason, "DeploymentProgressing");

        let s = run(APPLIED, None, &LagObservation::NotProbed, None, t(0));
        assert_eq!(cond(&s, READY).reason, "DeploymentProgressing");
    }

    #[test]
    fn suspending_is_progressing_until_the_pods_are_gone() {
        let mut d = deployment(0, 3, 3);
        if let Some(st) = d.status.as_mut() {
            st.updated_replicas = Some(0);
        }
        let s = run(
            Outcome::Applied { suspended: true },
            Some(&d),
            &LagObservation::NotProbed,
            None,
            t(0),
        );
        assert_eq!(cond(&s, READY).reason, "DeploymentProgressing");
        assert_eq!(
            cond(&s, READY).message,
            "3 surplus pods pending termination"
        );

        let mut d = deployment(0, 0, 0);
        if let Some(st) = d.status.as_mut() {
            st.terminating_replicas = Some(2);
        }
        let s = run(
            Outcome::Applied { suspended: true },
            Some(&d),
            &LagObservation::NotProbed,
            None,
            t(0),
        );
        assert_eq!(cond(&s, READY).message, "2 pods terminating");
    }

    #[test]
    fn suspended_with_no_pods_is_ready_suspended() {
        let d = deployment(0, 0, 0);
        let s = run(
            Outcome::Applied { suspended: true },
            Some(&d),
            &LagObservation::NotProbed,
            None,
            t(0),
        );
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, READY).reason, "Suspended");
    }

    #[test]
    fn a_user_error_stalls_and_keeps_replicas_and_lag() {
        let d = deployment(2, 2, 2);
        let lag = LagObservation::Fresh {
            snapshot: snapshot(5),
            read_at: t(0),
        };
        let before = run(APPLIED, Some(&d), &lag, None, t(0));
        let blocked = Outcome::Blocked {
            reason: Reason::SecretNotFound,
            message: "secret \"kafka-user\" not found".into(),
        };
        let s = run(
            blocked,
            None,
            &LagObservation::NotProbed,
            Some(&before),
            t(60),
        );
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "SecretNotFound");
        assert_eq!(cond(&s, STALLED).status, "True");
        assert_eq!(cond(&s, RECONCILING).status, "False");
        assert_eq!(s.replicas, Some(2));
        assert_eq!(s.lag, before.lag);
        assert_eq!(cond(&s, KAFKA_REACHABLE), cond(&before, KAFKA_REACHABLE));
    }

    #[test]
    fn last_transition_time_moves_only_on_a_status_change() {
        let lag = LagObservation::NotProbed;
        let first = run(APPLIED, Some(&deployment(3, 1, 1)), &lag, None, t(0));
        assert_eq!(cond(&first, READY).last_transition_time, Time(t(0)));

        // Same status, new message: time kept.
        let second = run(
            APPLIED,
            Some(&deployment(3, 2, 2)),
            &lag,
            Some(&first),
            t(10),
        );
        assert_ne!(cond(&second, READY).message, cond(&first, READY).message);
        assert_eq!(cond(&second, READY).last_transition_time, Time(t(0)));

        // Ready flips to True: time moves; Stalled stays False: time kept.
        let third = run(
            APPLIED,
            Some(&deployment(3, 3, 3)),
            &lag,
            Some(&second),
            t(20),
        );
        assert_eq!(cond(&third, READY).last_transition_time, Time(t(20)));
        assert_eq!(cond(&third, RECONCILING).last_transition_time, Time(t(20)));
        assert_eq!(cond(&third, STALLED).last_transition_time, Time(t(0)));

        // Nothing changed: the whole status is equal, so no write happens.
        let fourth = run(
            APPLIED,
            Some(&deployment(3, 3, 3)),
            &lag,
            Some(&third),
            t(30),
        );
        assert_eq!(fourth, third);
    }

    #[test]
    fn unchanged_lag_keeps_its_timestamp_and_a_failure_marks_it_stale() {
        let d = deployment(1, 1, 1);
        let fresh = |lag, at| LagObservation::Fresh {
            snapshot: snapshot(lag),
            read_at: t(at),
        };
        let first = run(APPLIED, Some(&d), &fresh(5, 0), None, t(0));
        assert_eq!(first.lag.as_ref().map(|l| l.total), Some(5));
        assert_eq!(first.dead_letter.as_ref().map(|d| d.count), Some(2));
        assert_eq!(cond(&first, KAFKA_REACHABLE).status, "True");

        let same = run(APPLIED, Some(&d), &fresh(5, 30), Some(&first), t(30));
        assert_eq!(same, first, "same figures: no status change");

        let moved = run(APPLIED, Some(&d), &fresh(8, 60), Some(&same), t(60));
        assert_eq!(
            moved.lag.as_ref().and_then(|l| l.updated_at.clone()),
            Some(Time(t(60)))
        );

        let failed = LagObservation::Failed {
            message: "fetching metadata: broker transport failure".into(),
            at: t(90),
        };
        let stale = run(APPLIED, Some(&d), &failed, Some(&moved), t(90));
        let lag = stale.lag.as_ref().expect("kept");
        assert!(lag.stale);
        assert_eq!(lag.total, 8, "last figures kept");
        assert_eq!(lag.updated_at, Some(Time(t(60))));
        assert_eq!(cond(&stale, KAFKA_REACHABLE).status, "False");
        assert_eq!(cond(&stale, KAFKA_REACHABLE).reason, "KafkaUnreachable");
        assert_eq!(
            cond(&stale, READY).status,
            "True",
            "Ready is about the pods"
        );

        let recovered = run(APPLIED, Some(&d), &fresh(8, 120), Some(&stale), t(120));
        let lag = recovered.lag.as_ref().expect("present");
        assert!(!lag.stale);
        assert_eq!(lag.updated_at, Some(Time(t(120))));
    }

    #[test]
    fn a_read_still_running_keeps_the_last_figures_and_condition() {
        let d = deployment(1, 1, 1);
        let fresh = LagObservation::Fresh {
            snapshot: snapshot(5),
            read_at: t(0),
        };
        let first = run(APPLIED, Some(&d), &fresh, None, t(0));
        assert_eq!(first.lag.as_ref().and_then(|l| l.partition_count), Some(1));
        let pending = run(
            APPLIED,
            Some(&d),
            &LagObservation::Pending,
            Some(&first),
            t(30),
        );
        assert_eq!(pending, first, "nothing new to say: no write");

        let new = run(APPLIED, Some(&d), &LagObservation::Pending, None, t(0));
        assert_eq!(new.lag, None, "before the first read: no figures");
        assert!(new.conditions.iter().all(|c| c.type_ != KAFKA_REACHABLE));
    }

    #[test]
    fn no_lag_yet_and_unreachable_reports_no_figures() {
        let failed = LagObservation::Failed {
            message: "down".into(),
            at: t(0),
        };
        let s = run(APPLIED, None, &failed, None, t(0));
        assert_eq!(s.lag, None);
        assert_eq!(cond(&s, KAFKA_REACHABLE).reason, "KafkaUnreachable");
    }
}
