//! The `PartitionsStuck` condition and the `stuck` list: partitions whose committed offset has
//! not moved for the stuck window while they had records to consume (`lag/stuck.rs` decides).
//!
//! Pure, part of [`super::compute`].
//!
//! | observation | status | reason |
//! |---|---|---|
//! | read, a partition stuck | True | `PartitionsStuck`, the message names the first three (topic/partition, offset, for how long, what the sidecar said of the record) |
//! | read, none stuck | False | `PartitionsMoving` |
//! | the last read failed | Unknown | `KafkaUnreachable` |
//! | no read ended yet | the previous condition and list, or none | |
//!
//! It does not affect `Ready` (the pods are fine; a record is not), and it is not kstatus's
//! `Stalled`, which means the operator itself gave up.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kcp_crds::v1alpha1::StuckPartition;

use super::{Input, PARTITIONS_STUCK, Reason, from_read};
use crate::lag::{LagObservation, stuck::message};

/// The `PartitionsStuck` condition, or `None` before anything is known.
pub(super) fn condition(input: &Input<'_>) -> Option<Condition> {
    from_read(input, PARTITIONS_STUCK, |snapshot| {
        if snapshot.stuck_count > 0 {
            (
                "True",
                Reason::PartitionsStuck,
                message(&snapshot.stuck, snapshot.stuck_count, input.now),
            )
        } else {
            (
                "False",
                Reason::PartitionsMoving,
                "every partition with records to consume committed within the stuck window"
                    .to_owned(),
            )
        }
    })
}

/// The stuck partitions to list: the last read's, or the previous list while none is known.
pub(super) fn list(input: &Input<'_>) -> Vec<StuckPartition> {
    match input.lag {
        LagObservation::Fresh { snapshot, .. } => snapshot.stuck.clone(),
        LagObservation::Failed { .. } => Vec::new(),
        LagObservation::Pending | LagObservation::NotProbed => {
            input.previous.map(|p| p.stuck.clone()).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
    use kcp_crds::v1alpha1::KafkaConsumerProxyStatus;

    use super::super::{Outcome, compute};
    use super::*;
    use crate::lag::LagSnapshot;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("in range")
    }

    fn read(stuck: usize, seconds: i64) -> LagObservation {
        LagObservation::Fresh {
            snapshot: LagSnapshot {
                total: 40,
                seconds: Some(seconds),
                stuck: (0..stuck.min(StuckPartition::MAX))
                    .map(|p| StuckPartition {
                        topic: "orders".into(),
                        partition: i32::try_from(p).expect("small"),
                        offset: Some(18_234),
                        since: Time(t(0)),
                        record: Some("record tried 17 times, last 503".into()),
                    })
                    .collect(),
                stuck_count: stuck,
                ..LagSnapshot::default()
            },
            read_at: t(360),
        }
    }

    fn status(
        lag: &LagObservation,
        previous: Option<&KafkaConsumerProxyStatus>,
    ) -> KafkaConsumerProxyStatus {
        compute(&Input {
            generation: Some(1),
            selector: "kafkaproxy.io/instance=orders".into(),
            outcome: Outcome::Applied { suspended: false },
            deployment: None,
            lag,
            previous,
            now: t(360),
        })
    }

    fn stuck_condition(s: &KafkaConsumerProxyStatus) -> (&str, &str, &str) {
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == PARTITIONS_STUCK)
            .expect("PartitionsStuck");
        (&c.status, &c.reason, &c.message)
    }

    #[test]
    fn a_stuck_partition_is_named_and_listed_and_behind_reads_as_a_duration() {
        let s = status(&read(1, 252), None);
        assert_eq!(
            stuck_condition(&s),
            (
                "True",
                "PartitionsStuck",
                "orders/0 stuck at offset 18234 for 6m (record tried 17 times, last 503)"
            )
        );
        assert_eq!(s.stuck.len(), 1);
        let lag = s.lag.as_ref().expect("lag");
        assert_eq!(
            (lag.seconds, lag.behind.as_deref()),
            (Some(252), Some("4m12s"))
        );
    }

    #[test]
    fn the_list_is_bounded_and_the_message_counts_the_rest() {
        let s = status(&read(25, 0), None);
        assert_eq!(s.stuck.len(), StuckPartition::MAX);
        assert!(
            stuck_condition(&s).2.ends_with("; and 22 more"),
            "{:?}",
            stuck_condition(&s)
        );
    }

    #[test]
    fn it_clears_when_nothing_is_stuck_and_is_unknown_when_kafka_is_not_read() {
        let stuck = status(&read(1, 30), None);
        let moving = status(&read(0, 30), Some(&stuck));
        assert_eq!(stuck_condition(&moving).0, "False");
        assert_eq!(stuck_condition(&moving).1, "PartitionsMoving");
        assert!(moving.stuck.is_empty());
        let pending = status(&LagObservation::Pending, Some(&stuck));
        assert_eq!(pending.stuck, stuck.stuck, "kept while no read ended");
        assert_eq!(stuck_condition(&pending).0, "True");
        let failed = status(
            &LagObservation::Failed {
                message: "down".into(),
                at: t(360),
            },
            Some(&stuck),
        );
        assert_eq!(stuck_condition(&failed).0, "Unknown");
        assert!(failed.stuck.is_empty());
    }
}
