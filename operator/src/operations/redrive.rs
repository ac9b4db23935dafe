//! Redrive: produces a proxy's dead letters back to the partition they came from, so they take
//! the normal delivery path again (ordering, retries, dead-lettering by the sidecar).
//!
//! Rooms:
//! - `decide`: pure. Which dead letter is redriven (`since`, `until`, `reasonContains`, the
//!   proxy's topics and group, the loop guard) and the record it becomes;
//! - `pace`: pure. When a step's i-th record may be produced; how far retention moved a
//!   position;
//! - this module: the run's shape ([`plan`], [`StepOutcome`], [`RedriveError`]);
//! - `step`: the Kafka shell that reads, decides, produces and advances ([`step()`]), with
//!   `record` converting headers between rdkafka and `decide`.
//!
//! Blocking code, the only code that talks to Kafka for a redrive: the caller runs [`plan`] and
//! each [`step()`] in `tokio::task::spawn_blocking`, and writes the [`RedriveProgress`] after
//! every step (it is the status's `redrive`). The reading consumer is only ever `assign`ed
//! explicit offsets: it never joins a group and never commits (librdkafka requires a
//! `group.id` for `assign`; it gets `<group>.kcp-redrive`, never the proxy's, with auto-commit
//! off, so a prefixed ACL on the proxy's group covers it).
//!
//! Guarantees, each with the test that shows it:
//! - **At least once, per step.** A step advances `progress` (positions and counts) only
//!   after the broker acknowledged every record it produced (`acks=all`, idempotent producer).
//!   A failed produce returns [`RedriveError::Produce`] with `progress` untouched; a crash
//!   before the caller saved `progress` repeats that step's records, at most the step's
//!   `max_records`, and never skips one. Tests: `redrive_mock_cluster.rs`
//!   `a_lost_step_is_repeated_never_skipped`, `a_failed_produce_leaves_the_progress_untouched`.
//! - **The end is fixed at plan time.** [`plan`] takes each dead-letter partition's high
//!   watermark as its end; records dead-lettered later, including redriven records that fail
//!   again, wait for another redrive. This bounds the run and is a second loop guard. Test:
//!   `a_record_dead_lettered_after_the_plan_is_left_for_another_redrive`.
//! - **The loop guard.** A redriven record carries `kcp-redrive-count: N+1`; the sidecar keeps
//!   it when the record fails again, and a dead letter at `maxRedrives` is counted in
//!   `loopGuarded`, not produced. Tests: `decide` unit tests
//!   (`the_loop_guard_stops_a_record_redriven_max_redrives_times`) and
//!   `redrives_exactly_the_selected_dead_letters_once_each`.
//! - **The rate.** The i-th record a step produces is not produced before the step's start +
//!   i / `ratePerSecond`: a step of d seconds produces at most d × rate + 1 records. Test:
//!   `a_step_produces_at_most_its_duration_times_the_rate_plus_one`.
//! - **`maxRecords`.** No step produces past it; once reached, every step answers
//!   [`StepState::LimitReached`] without producing. Test: `max_records_stops_the_redrive`.
//! - **Order.** Dead letters of one dead-letter partition are produced in their order, by an
//!   idempotent producer: redriven records of one source partition keep their dead-letter
//!   order. Test: `a_lost_step_is_repeated_never_skipped` (per-partition order).
//!
//! - **Only the proxy's dead letters.** A dead letter whose `kcp-dlq-group` is not the proxy's
//!   group, or whose original topic is not one of its topics, is filtered: the default
//!   dead-letter topic `<topic>-dlq` is shared by every proxy of that topic. Tests: `decide`'s
//!   `a_dead_letter_of_another_topic_or_group_is_filtered`, and
//!   `redrives_exactly_the_selected_dead_letters_once_each`.
//!
//! Gaps: offsets are not contiguous (compaction, transaction markers); a position moves to the
//! last record read + 1, and is done when a record at or past its end arrives or the consumer
//! reaches the partition's end (`enable.partition.eof`; after a quiet second, the watermarks
//! are read again as a fallback). Test:
//! `offsets_that_never_arrive_before_the_end_do_not_hold_the_redrive`. Dead letters deleted by
//! retention before a step read them are jumped over and reported in
//! [`StepOutcome::expired`], not in `read` (`pace`'s
//! `expired_dead_letters_are_jumped_over_and_counted`; the mock cluster cannot delete
//! records). A dead-letter topic that does not exist has no partitions: the plan is empty and
//! the redrive succeeds with every count 0 (the proxy has not dead-lettered anything yet).
//! Test: `a_missing_dead_letter_topic_plans_nothing_and_the_redrive_succeeds_with_zero`.
//!
//! What a redrive does not change: the key and value (a null key or value stays null), the
//! original headers and their order (the `kcp-dlq-*` ones and earlier redrive headers are
//! dropped). The redriven record's timestamp is the time of the redrive. Every consumer group
//! of the source topic receives the redriven record, not only the proxy's: another reader can
//! recognise it by `kcp-redriven-from`. Dead letters stay in their topic after a redrive: a
//! later redrive over the same time sends them again (with the same `kcp-redrive-count`, as
//! the copy in the dead-letter topic never changes), so bound a new one with `since`.

mod decide;
mod pace;
mod record;
mod step;

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use kcp_crds::v1alpha1::{RedrivePosition, RedriveProgress};
use rdkafka::{
    ClientConfig, Offset,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    types::RDKafkaRespErr,
};

pub use decide::{
    DEAD_LETTER_HEADER_PREFIX, DeadLetter, Decision, Filtered, Header, LoopGuard, Owner,
    REDRIVE_COUNT_HEADER, REDRIVEN_FROM_HEADER, decide,
};
pub use step::step;

use crate::{ErrorKind, lag::ListOffsetsError};

/// Whether the redrive goes on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Some positions have not reached their end: call [`step()`] again.
    More,
    /// Every position reached its end.
    Done,
    /// `maxRecords` records were redriven; the rest stays in the dead-letter topics.
    LimitReached,
}

/// What one [`step()`] did, beyond the counts it added to the progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    pub state: StepState,
    /// Records this step produced (every one acknowledged).
    pub redriven: i64,
    /// Dead letters deleted by retention before this step could read them: the positions
    /// jumped over them, and they are not in `read` ("N dead letters expired before they were
    /// redriven").
    pub expired: i64,
}

impl StepOutcome {
    /// Whether the redrive is over (`Done` or `LimitReached`).
    pub fn finished(&self) -> bool {
        self.state != StepState::More
    }
}

/// Why a plan or a step failed. A step that fails leaves the progress as it was: the next try
/// resumes from the last acknowledged step.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// librdkafka refused the client configuration.
    #[error("creating the redrive's Kafka {client}")]
    CreateClient {
        client: &'static str,
        #[source]
        source: KafkaError,
    },
    /// A metadata request failed (cluster unreachable, timeout).
    #[error("reading the metadata of topic {topic}; the next try starts over")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// The broker answered a topic's metadata with an error.
    #[error("topic {topic}: {code:?}; {hint}")]
    Topic {
        topic: String,
        code: RDKafkaRespErr,
        hint: &'static str,
    },
    /// Reading the watermarks of dead-letter partitions failed.
    #[error(
        "reading the watermarks of {partitions} dead-letter partition(s); the next try starts over"
    )]
    Watermarks {
        partitions: usize,
        #[source]
        source: KafkaError,
    },
    /// The broker gave no watermark for a partition it was asked about.
    #[error("no watermark for {topic}/{partition}; the next try starts over")]
    NoWatermark { topic: String, partition: i32 },
    /// Assigning the dead-letter partitions to the reading consumer failed.
    #[error("assigning {topic} to the redrive's consumer")]
    Assign {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// Reading a dead-letter topic failed, and the step read nothing.
    #[error(
        "reading {topic}: nothing read this step; the next try resumes where the last acknowledged step ended"
    )]
    Consume {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// A redriven record was not acknowledged.
    #[error(
        "producing dead letter {from} to {topic}/{partition}; the next try resumes from the last acknowledged step (records of this step may be produced twice)"
    )]
    Produce {
        topic: String,
        partition: i32,
        from: String,
        // Boxed: librdkafka's error is large, and this variant would make every result so.
        #[source]
        source: Box<KafkaError>,
    },
}

impl RedriveError {
    /// Who has to act: authorization errors need a grant; the rest may pass by itself.
    pub fn kind(&self) -> ErrorKind {
        let denied = |e: &KafkaError| {
            matches!(
                e.rdkafka_error_code(),
                Some(
                    rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
                        | rdkafka::types::RDKafkaErrorCode::ClusterAuthorizationFailed
                        | rdkafka::types::RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                )
            )
        };
        match self {
            Self::CreateClient { .. } | Self::Topic { .. } => ErrorKind::InvalidInput,
            Self::Consume { source, .. } if denied(source) => ErrorKind::InvalidInput,
            Self::Produce { source, .. } if denied(source) => ErrorKind::InvalidInput,
            _ => ErrorKind::Transient,
        }
    }

    /// A bounded label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::CreateClient { .. } => "redrive_client",
            Self::Metadata { .. } | Self::Topic { .. } => "redrive_metadata",
            Self::Watermarks { .. } | Self::NoWatermark { .. } => "redrive_watermarks",
            Self::Assign { .. } | Self::Consume { .. } => "redrive_consume",
            Self::Produce { .. } => "redrive_produce",
        }
    }
}

/// Where a redrive of `dead_letter_topics` starts and ends: per partition, `next` = its low
/// watermark and `end` = its high watermark now. A topic that does not exist (the proxy never
/// dead-lettered anything) has no partitions, so a redrive of nothing succeeds with counts 0.
/// Blocking; at most about `timeout`.
pub fn plan(
    base: &ClientConfig,
    dead_letter_topics: &[String],
    timeout: Duration,
) -> Result<Vec<RedrivePosition>, RedriveError> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer =
        reader_config(base, None)
            .create()
            .map_err(|source| RedriveError::CreateClient {
                client: "consumer",
                source,
            })?;
    let mut partitions = Vec::new();
    let mut seen = BTreeSet::new();
    for topic in dead_letter_topics.iter().filter(|t| seen.insert(*t)) {
        let ids = partitions_of(&consumer, topic, left(deadline), DEAD_LETTER_HINT)?;
        partitions.extend(
            ids.unwrap_or_default()
                .into_iter()
                .map(|p| (topic.clone(), p)),
        );
    }
    let low = list_offsets(&consumer, &partitions, Offset::Beginning, left(deadline))?;
    let high = list_offsets(&consumer, &partitions, Offset::End, left(deadline))?;
    partitions
        .into_iter()
        .map(|(topic, partition)| {
            let key = (topic.clone(), partition);
            let missing = || RedriveError::NoWatermark {
                topic: topic.clone(),
                partition,
            };
            let next = *low.get(&key).ok_or_else(missing)?;
            let end = *high.get(&key).ok_or_else(missing)?;
            Ok(RedrivePosition {
                topic,
                partition,
                next,
                end: end.max(next),
            })
        })
        .collect()
}

/// Whether every position reached its end.
pub fn all_done(progress: &RedriveProgress) -> bool {
    progress.partitions.iter().all(|p| p.next >= p.end)
}

const DEAD_LETTER_HINT: &str =
    "grant the proxy's Kafka user Describe and Read on the dead-letter topic";
const SOURCE_HINT: &str = "grant the proxy's Kafka user Describe and Write on the source topic";

/// What is left of `deadline`, at least 1 ms (librdkafka reads 0 as "do not wait").
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// The reading consumer's configuration: `base` plus what keeps it out of every group's way.
/// With `group` (needed for `assign`), its throwaway group id.
fn reader_config(base: &ClientConfig, group: Option<&str>) -> ClientConfig {
    let mut cfg = base.clone();
    cfg.set("allow.auto.create.topics", "false")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // A step reads a bounded number of records: no need to queue 64 MiB ahead.
        .set("queued.max.messages.kbytes", "16384")
        .set_log_level(RDKafkaLogLevel::Warning);
    match group {
        Some(g) => cfg.set("group.id", format!("{g}.kcp-redrive")),
        None => cfg.remove("group.id"),
    };
    cfg
}

/// The partition ids of `topic`, sorted; `None` when it does not exist.
fn partitions_of(
    client: &BaseConsumer,
    topic: &str,
    timeout: Duration,
    hint: &'static str,
) -> Result<Option<Vec<i32>>, RedriveError> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| RedriveError::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            Ok(Some(ids))
        }
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(None),
        Some(code) => Err(RedriveError::Topic {
            topic: topic.to_owned(),
            code,
            hint,
        }),
    }
}

/// The low (`Offset::Beginning`) or high (`Offset::End`) watermark of each partition, in one
/// ListOffsets request per leader (`lag`'s).
fn list_offsets(
    client: &BaseConsumer,
    partitions: &[(String, i32)],
    at: Offset,
    timeout: Duration,
) -> Result<HashMap<(String, i32), i64>, RedriveError> {
    crate::lag::list_offsets(client, partitions, at, timeout).map_err(|e| {
        let source = match e {
            ListOffsetsError::Call(source) | ListOffsetsError::Partition { source, .. } => source,
        };
        RedriveError::Watermarks {
            partitions: partitions.len(),
            source,
        }
    })
}
