//! Rewind, fast-forward and skip against Kafka. Blocking: the caller runs [`run`] on a blocking
//! thread, once the proxy's pods are gone.
//!
//! How it changes a group's offsets safely: it **joins the group** with the proxy's topics and
//! goes on only when it is given every partition of them, i.e. when it is the group's only
//! member. Then no sidecar can commit in between, and its commits are a member's, which every
//! Kafka implementation accepts (a commit from outside the group is refused while the group
//! has members, and Kafka's admin API needs an empty group: joining checks that and holds it
//! in one step). A sidecar still in the group (a pod not gone yet, a pod started meanwhile)
//! keeps some partitions: then nothing is committed and [`SeekError::Busy`] says so; the
//! caller tries again. It commits every move in one request, reads the offsets back, and
//! leaves the group. Tests: `operator/tests/operations_mock_cluster.rs`.

use std::time::{Duration, Instant};

use kcp_crds::v1alpha1::{OffsetMove, SkippedRecord};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
};

mod describe;
mod plan;
use describe::describe;
pub use plan::{Commit, Direction, PartitionNow, Skip, seek, skip};

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Rewind or fast-forward the selected partitions.
    Seek {
        direction: Direction,
        target: Target,
        topic: Option<String>,
        partitions: Option<Vec<i32>>,
    },
    /// Skip the record at `offset`.
    Skip {
        topic: String,
        partition: i32,
        offset: i64,
        reason: Option<String>,
    },
}

/// Where a seek goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    Offset(i64),
    Earliest,
    Latest,
}

/// What a run changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub moves: Vec<OffsetMove>,
    pub skipped: Option<SkippedRecord>,
    /// Why nothing moved, when nothing did.
    pub unchanged: Option<String>,
}

/// Why a run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SeekError {
    /// Other members hold partitions: nothing was committed; try again when they are gone.
    #[error(
        "the consumer group {group} still has other members ({assigned} of {total} partitions \
         were given to the operator): the proxy's pods have not all left yet; nothing was \
         changed, the operator tries again"
    )]
    Busy {
        group: String,
        assigned: usize,
        total: usize,
    },
    /// The request cannot be done as asked; trying again will not help.
    #[error("{0}")]
    Refused(String),
    /// Kafka failed; trying again may finish.
    #[error("{0}")]
    Kafka(String),
}

impl SeekError {
    /// Whether trying again may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, SeekError::Refused(_))
    }
}

fn kafka(what: &str) -> impl Fn(rdkafka::error::KafkaError) -> SeekError + '_ {
    move |e| SeekError::Kafka(format!("{what}: {e}"))
}

/// Joins `group` on `topics`, does `request`, leaves. `join_timeout` bounds the wait for the
/// group to give the operator every partition; `call_timeout` each Kafka call.
pub fn run(
    base: &ClientConfig,
    group: &str,
    topics: &[String],
    request: &Request,
    join_timeout: Duration,
    call_timeout: Duration,
) -> Result<Done, SeekError> {
    let consumer: BaseConsumer = member_config(base, group)
        .create()
        .map_err(kafka("creating the operator's Kafka client"))?;
    let all = partitions(&consumer, topics, call_timeout)?;
    let selected = select(&all, topics, request)?;
    join(&consumer, group, topics, all.len(), join_timeout)?;
    let result = (|| {
        let now = read_now(&consumer, &selected, call_timeout)?;
        let (commits, skipped, unchanged) =
            decide(base, group, &consumer, &now, request, call_timeout)?;
        if !commits.is_empty() {
            commit(&consumer, &commits, call_timeout)?;
        }
        Ok(Done {
            moves: commits.into_iter().map(|c| c.moved).collect(),
            skipped,
            unchanged,
        })
    })();
    consumer.unsubscribe();
    result
}

fn member_config(base: &ClientConfig, group: &str) -> ClientConfig {
    let mut cfg = base.clone();
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // The sidecar's strategy, so that joining a group with members is a plain rebalance.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // It holds the group for seconds: if the operator dies meanwhile, the sidecars wait
        // at most this long for the group to forget it (6 s: brokers' default minimum).
        .set("session.timeout.ms", "6000");
    cfg
}

/// Every partition of `topics`, sorted.
fn partitions(
    consumer: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32)>, SeekError> {
    let mut all = Vec::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(kafka(&format!("reading the metadata of topic {topic}")))?;
        let t = md.topics().first().filter(|t| t.error().is_none());
        let Some(t) = t.filter(|t| !t.partitions().is_empty()) else {
            return Err(SeekError::Kafka(format!(
                "topic {topic} has no partitions or does not exist on the cluster"
            )));
        };
        all.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
    }
    all.sort();
    Ok(all)
}

/// The partitions the request names, checked against the proxy's.
fn select(
    all: &[(String, i32)],
    topics: &[String],
    request: &Request,
) -> Result<Vec<(String, i32)>, SeekError> {
    let (topic, partitions) = match request {
        Request::Seek {
            topic, partitions, ..
        } => (topic.clone(), partitions.clone()),
        Request::Skip {
            topic, partition, ..
        } => (Some(topic.clone()), Some(vec![*partition])),
    };
    if let Some(t) = &topic
        && !topics.contains(t)
    {
        return Err(SeekError::Refused(format!(
            "topic {t} is not one of the proxy's topics ({})",
            topics.join(", ")
        )));
    }
    let of_topic = |t: &str| all.iter().filter(|(x, _)| x == t).count();
    let mut out = Vec::new();
    for (t, p) in all {
        if topic.as_ref().is_some_and(|x| x != t) {
            continue;
        }
        if partitions.as_ref().is_some_and(|ps| !ps.contains(p)) {
            continue;
        }
        out.push((t.clone(), *p));
    }
    if let (Some(t), Some(ps)) = (&topic, &partitions)
        && let Some(p) = ps.iter().find(|p| !out.iter().any(|(_, x)| x == *p))
    {
        return Err(SeekError::Refused(format!(
            "topic {t} has no partition {p} (it has {})",
            of_topic(t)
        )));
    }
    Ok(out)
}

/// Subscribes and waits to be given all `total` partitions.
fn join(
    consumer: &BaseConsumer,
    group: &str,
    topics: &[String],
    total: usize,
    timeout: Duration,
) -> Result<(), SeekError> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(kafka(&format!("joining the consumer group {group}")))?;
    let start = Instant::now();
    let mut assigned = 0;
    while start.elapsed() < timeout {
        // Polling runs the group protocol; any record it hands over is ignored.
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            tracing::debug!(group, error = %e, "Poll while joining");
        }
        assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if assigned == total {
            return Ok(());
        }
    }
    Err(SeekError::Busy {
        group: group.to_owned(),
        assigned,
        total,
    })
}

/// The group's committed offsets and the partitions' bounds.
fn read_now(
    consumer: &BaseConsumer,
    selected: &[(String, i32)],
    timeout: Duration,
) -> Result<Vec<PartitionNow>, SeekError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in selected {
        tpl.add_partition(t, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(kafka("reading the group's committed offsets"))?;
    let mut out = Vec::new();
    for (t, p) in selected {
        let elem = committed.find_partition(t, *p);
        let (offset, metadata) = elem
            .map(|e| (e.offset(), e.metadata().to_owned()))
            .unwrap_or((Offset::Invalid, String::new()));
        let (low, high) = consumer
            .fetch_watermarks(t, *p, timeout)
            .map_err(kafka(&format!("reading the bounds of {t}/{p}")))?;
        out.push(PartitionNow {
            topic: t.clone(),
            partition: *p,
            committed: match offset {
                Offset::Offset(o) => Some(o),
                _ => None,
            },
            metadata,
            low,
            high,
        });
    }
    Ok(out)
}

type Decided = (Vec<Commit>, Option<SkippedRecord>, Option<String>);

fn decide(
    base: &ClientConfig,
    group: &str,
    consumer: &BaseConsumer,
    now: &[PartitionNow],
    request: &Request,
    timeout: Duration,
) -> Result<Decided, SeekError> {
    match request {
        Request::Seek {
            direction, target, ..
        } => {
            let targets = resolve(consumer, now, *target, timeout)?;
            let commits: Vec<Commit> = now
                .iter()
                .zip(targets)
                .filter_map(|(p, t)| seek(p, t, *direction))
                .collect();
            let unchanged = commits.is_empty().then(|| {
                let way = match direction {
                    Direction::Back => "before",
                    Direction::Ahead => "past",
                };
                format!("every partition asked is already at or {way} the point asked")
            });
            Ok((commits, None, unchanged))
        }
        Request::Skip { offset, reason, .. } => {
            let p = now.first().ok_or_else(|| {
                SeekError::Refused("the partition to skip was not found".to_owned())
            })?;
            match skip(p, *offset) {
                Skip::Move(c) => {
                    let skipped = describe(base, group, p, *offset, reason.clone(), timeout);
                    Ok((vec![c], Some(skipped), None))
                }
                Skip::AlreadyPast { committed } => Ok((
                    vec![],
                    None,
                    Some(format!(
                        "the group is already past {}/{} offset {offset} (committed {committed}): \
                         nothing to skip",
                        p.topic, p.partition
                    )),
                )),
                Skip::Refused(why) => Err(SeekError::Refused(why)),
            }
        }
    }
}

/// Each partition's target offset.
fn resolve(
    consumer: &BaseConsumer,
    now: &[PartitionNow],
    target: Target,
    timeout: Duration,
) -> Result<Vec<i64>, SeekError> {
    let ms = match target {
        Target::Offset(o) => return Ok(vec![o; now.len()]),
        Target::Earliest => return Ok(now.iter().map(|p| p.low).collect()),
        Target::Latest => return Ok(now.iter().map(|p| p.high).collect()),
        Target::Time(ms) => ms,
    };
    let mut tpl = TopicPartitionList::new();
    for p in now {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(ms))
            .map_err(kafka("building the time lookup"))?;
    }
    let found = consumer
        .offsets_for_times(tpl, timeout)
        .map_err(kafka("looking up the offsets of the time asked"))?;
    Ok(now
        .iter()
        .map(|p| {
            match found
                .find_partition(&p.topic, p.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) if o >= 0 => o,
                // No record at or after the time: the partition's end.
                _ => p.high,
            }
        })
        .collect())
}

/// Commits every move in one request and reads the offsets back.
fn commit(consumer: &BaseConsumer, commits: &[Commit], timeout: Duration) -> Result<(), SeekError> {
    let mut tpl = TopicPartitionList::new();
    for c in commits {
        let m = &c.moved;
        tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.to))
            .map_err(kafka("building the commit"))?;
        if let Some(mut e) = tpl.find_partition(&m.topic, m.partition) {
            e.set_metadata(c.metadata.clone());
        }
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(kafka(
        "committing the new offsets (the next try commits them again)",
    ))?;
    let back = consumer
        .committed_offsets(tpl.clone(), timeout)
        .map_err(kafka("reading the new offsets back"))?;
    let wrong: Vec<String> = commits
        .iter()
        .filter(|c| {
            back.find_partition(&c.moved.topic, c.moved.partition)
                .map(|e| e.offset())
                != Some(Offset::Offset(c.moved.to))
        })
        .map(|c| format!("{}/{}", c.moved.topic, c.moved.partition))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(SeekError::Kafka(format!(
            "the commit did not take on {} (the next try commits again)",
            wrong.join(", ")
        )))
    }
}
