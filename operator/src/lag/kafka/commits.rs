//! What the group's commits say beyond their offsets: the metadata the sidecar writes with
//! each commit (`kcp_crds::progress`), read back for the status. Pure, but for reading the
//! string out of librdkafka's list ([`Commit::read`]) and the clock ([`now_ms`]).
//!
//! - **Why a partition does not move**: the commit lists the record at the committed offset
//!   with its attempts, last failure and the crashes it was in flight during
//!   ([`record_state`]).
//! - **What the group dead-lettered**: each partition's commit counts the records dead-lettered
//!   from it, over every owner, and names the newest three ([`dead_letters`]).
//! - **An endpoint outage**: a sidecar whose breaker is open says so in every commit it makes
//!   ([`outage`]).
//!
//! Metadata another client wrote, or none (a broker that keeps none), reads as nothing: no why,
//! and 0 dead letters for that partition.

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    time::{SystemTime, UNIX_EPOCH},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kcp_crds::{
    progress::{DeadLetterNote, Progress},
    v1alpha1::{DeadLetterStatus, DeadLetteredRecord, PartitionLag},
};
use rdkafka::topic_partition_list::TopicPartitionListElem;

use crate::lag::{OutageSeen, Position};

/// One partition's commit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Commit {
    pub offset: i64,
    /// What the sidecar wrote with it, if it was a sidecar's and could be read.
    pub progress: Option<Progress>,
}

impl Commit {
    /// Reads the metadata of `e`, committed at `offset`.
    pub(super) fn read(offset: i64, e: &TopicPartitionListElem<'_>) -> Self {
        // rdkafka 0.39 panics on metadata that is not UTF-8 (another client's bytes).
        let text = catch_unwind(AssertUnwindSafe(|| e.metadata().to_owned())).ok();
        Self {
            offset,
            progress: text.and_then(|t| Progress::decode(&t, offset)),
        }
    }
}

/// What the last commit said of the record at the committed offset, in a few words: `record
/// tried 17 times, last 503`. `None` when it said nothing (not a sidecar's commit, or the
/// record had neither failed nor been in flight).
pub fn record_state(progress: Option<&Progress>) -> Option<String> {
    let p = progress?;
    let s = p.state(p.committed)?;
    let mut parts = Vec::new();
    if s.attempts > 0 {
        let tried = match s.attempts {
            1 => "record tried once".to_owned(),
            n => format!("record tried {n} times"),
        };
        parts.push(match s.last {
            Some(last) => format!("{tried}, last {last}"),
            None => tried,
        });
    } else if s.in_flight {
        parts.push("record in flight, no answer yet".to_owned());
    }
    if s.crashes > 0 {
        parts.push(format!(
            "in flight during {} sidecar crash{}",
            s.crashes,
            if s.crashes == 1 { "" } else { "es" }
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The group's dead-letter figures over its partitions.
pub(super) struct DeadLetters {
    pub count: i64,
    pub recent: Vec<DeadLetteredRecord>,
}

pub(super) fn dead_letters(commits: &HashMap<(String, i32), Commit>) -> DeadLetters {
    let mut count = 0i64;
    let mut notes = Vec::new();
    for ((topic, partition), c) in commits {
        if let Some(p) = &c.progress {
            count = count.saturating_add(i64::try_from(p.dead_lettered).unwrap_or(i64::MAX));
            notes.extend(p.notes.iter().map(|n| (topic.clone(), *partition, *n)));
        }
    }
    DeadLetters {
        count,
        recent: merge_notes(notes),
    }
}

/// The newest [`DeadLetterStatus::MAX_RECENT`] of every partition's notes, newest first (ties:
/// by topic, partition, offset, so equal inputs give one list).
pub fn merge_notes(mut notes: Vec<(String, i32, DeadLetterNote)>) -> Vec<DeadLetteredRecord> {
    notes.sort_by(|a, b| {
        b.2.at_ms
            .cmp(&a.2.at_ms)
            .then_with(|| (&a.0, a.1, a.2.offset).cmp(&(&b.0, b.1, b.2.offset)))
    });
    notes.truncate(DeadLetterStatus::MAX_RECENT);
    notes
        .into_iter()
        .map(|(topic, partition, n)| DeadLetteredRecord {
            idempotency_key: format!("{topic}/{partition}/{}", n.offset),
            topic,
            partition,
            offset: n.offset,
            reason: n.reason(),
            at: Time(
                Timestamp::from_millisecond(i64::try_from(n.at_ms).unwrap_or(i64::MAX))
                    .unwrap_or(Timestamp::MAX),
            ),
        })
        .collect()
}

/// Every partition's position, for the stuck window (`stuck.rs`).
pub(super) fn positions(
    partitions: &[PartitionLag],
    commits: &HashMap<(String, i32), Commit>,
) -> Vec<Position> {
    partitions
        .iter()
        .map(|p| {
            let commit = commits.get(&(p.topic.clone(), p.partition));
            Position {
                topic: p.topic.clone(),
                partition: p.partition,
                committed: p.committed_offset,
                lag: p.lag,
                record: record_state(commit.and_then(|c| c.progress.as_ref())),
            }
        })
        .collect()
}

/// The endpoint outage the group's last commits report, if any: the earliest start among
/// them, and the partitions whose commit says so (sorted).
pub(super) fn outage(commits: &HashMap<(String, i32), Commit>) -> Option<OutageSeen> {
    let mut seen: Option<OutageSeen> = None;
    let mut with: Vec<&(String, i32)> = commits
        .iter()
        .filter(|(_, c)| c.progress.as_ref().is_some_and(|p| p.outage.is_some()))
        .map(|(tp, _)| tp)
        .collect();
    with.sort();
    for tp in with {
        let Some(note) = commits[tp].progress.as_ref().and_then(|p| p.outage) else {
            continue;
        };
        let s = seen.get_or_insert(OutageSeen {
            class: note.class.as_str(),
            since_ms: note.since_ms,
            partitions: Vec::new(),
        });
        if note.since_ms < s.since_ms {
            s.since_ms = note.since_ms;
            s.class = note.class.as_str();
        }
        s.partitions.push(format!("{}/{}", tp.0, tp.1));
    }
    seen
}

pub(super) fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use kcp_crds::progress::{DeadLetterKind, Failure, RecordState};

    use super::*;

    fn stuck_at(committed: i64, state: RecordState) -> Progress {
        Progress {
            committed,
            highest: committed + 10,
            unfinished: [(committed, state)].into(),
            ..Progress::default()
        }
    }

    #[test]
    fn the_record_at_the_committed_offset_says_why() {
        let retried = RecordState {
            attempts: 17,
            last: Some(Failure::Status(503)),
            ..RecordState::default()
        };
        assert_eq!(
            record_state(Some(&stuck_at(18_234, retried))).as_deref(),
            Some("record tried 17 times, last 503")
        );
        let crashed = RecordState {
            in_flight: true,
            crashes: 2,
            ..RecordState::default()
        };
        assert_eq!(
            record_state(Some(&stuck_at(5, crashed))).as_deref(),
            Some("record in flight, no answer yet, in flight during 2 sidecar crashes")
        );
        assert_eq!(
            record_state(Some(&stuck_at(5, RecordState::default()))),
            None,
            "waiting, nothing to say"
        );
        assert_eq!(record_state(None), None);
        let elsewhere = Progress {
            committed: 4,
            ..stuck_at(5, retried)
        };
        assert_eq!(
            record_state(Some(&elsewhere)),
            None,
            "only the record at the committed offset"
        );
    }

    fn note(offset: i64, at_ms: u64) -> DeadLetterNote {
        DeadLetterNote {
            offset,
            at_ms,
            kind: DeadLetterKind::Refused,
            attempts: 1,
            last: Some(Failure::Status(422)),
        }
    }

    #[test]
    fn dead_letters_sum_partitions_and_list_the_newest_first_within_the_bound() {
        let mut commits = HashMap::new();
        for partition in 0..5 {
            let mut p = Progress {
                committed: 100,
                highest: 99,
                ..Progress::default()
            };
            for i in 0..4 {
                p.note_dead_letter(note(
                    10 * i,
                    1_000 * u64::try_from(partition + i).unwrap_or(0),
                ));
            }
            commits.insert(
                ("orders".to_owned(), i32::try_from(partition).unwrap_or(0)),
                Commit {
                    offset: 100,
                    progress: Some(p),
                },
            );
        }
        commits.insert(
            ("orders".to_owned(), 9),
            Commit {
                offset: 3,
                progress: None,
            },
        );
        let d = dead_letters(&commits);
        assert_eq!(d.count, 20, "4 per partition, none from a foreign commit");
        assert_eq!(d.recent.len(), DeadLetterStatus::MAX_RECENT);
        assert!(
            d.recent.windows(2).all(|w| w[0].at >= w[1].at),
            "newest first"
        );
        let first = &d.recent[0];
        assert_eq!((first.partition, first.offset), (4, 30));
        assert_eq!(first.idempotency_key, "orders/4/30");
        assert_eq!(
            first.reason,
            "refused by the app after 1 attempt (last 422)"
        );
        assert_eq!(first.at.0.as_millisecond(), 7_000);
    }

    #[test]
    fn an_outage_is_reported_with_its_earliest_start_and_partitions() {
        use kcp_crds::progress::{OutageClass, OutageNote};
        let commit = |outage: Option<(OutageClass, u64)>| Commit {
            offset: 5,
            progress: Some(Progress {
                committed: 5,
                highest: 4,
                outage: outage.map(|(class, since_ms)| OutageNote { class, since_ms }),
                ..Progress::default()
            }),
        };
        let mut commits = HashMap::new();
        assert_eq!(outage(&commits), None);
        commits.insert(
            ("orders".to_owned(), 2),
            commit(Some((OutageClass::ServerError, 900))),
        );
        commits.insert(
            ("orders".to_owned(), 0),
            commit(Some((OutageClass::NotFound, 500))),
        );
        commits.insert(("orders".to_owned(), 1), commit(None));
        let o = outage(&commits).expect("reported");
        assert_eq!((o.class, o.since_ms), ("404", 500), "the earliest start");
        assert_eq!(o.partitions, ["orders/0", "orders/2"]);
    }
}
