//! The Kafka side of a lag read: the only code in the operator that calls librdkafka.
//!
//! One read is a handful of requests, whatever the number of partitions:
//! 1. metadata, one request per topic (source and dead-letter), through the cluster client. A
//!    dead-letter topic that does not exist or may not be described is reported in the snapshot
//!    ([`DeadLetterCheck`]), not as a failed read; a source topic the user may not describe
//!    fails the read;
//! 2. the group's committed offsets of every source partition in one OffsetFetch
//!    (`rd_kafka_committed` with the whole list), through the group's offsets client;
//!    Each committed offset comes with the metadata the sidecar wrote (`kcp_crds::progress`):
//!    why the record there is not finishing, and what the group dead-lettered ([`commits`]);
//! 3. the high watermarks of every partition, then the low watermarks of those that need one
//!    (no committed offset, dead-letter topics), each in one call: `offsets_for_times` with the
//!    special timestamps −1 (latest) and −2 (earliest), which librdkafka sends as one
//!    ListOffsets request per partition leader. (`fetch_watermarks`, one partition and two
//!    round trips per call, could not read a topic of a few thousand partitions in 15 s.)
//! 4. the timestamp of the oldest uncommitted record of each lagging partition, by fetching
//!    it ([`peek`]): the lag in seconds.
//!
//! The calls block, so a read runs on a blocking thread; each call's timeout is the time left
//! until the read's deadline, at most `call_timeout`. How many reads run at once is the
//! reader's business ([`super::reader`]); which clients exist is [`clients`]'s.

mod clients;
mod commits;
mod peek;

pub use commits::{merge_notes, record_state};
pub use peek::{MAX_PEEKED, Oldest, seconds_behind};

/// The connection settings of `target` with `credentials`, without a group: the base every
/// client of the operator's operations starts from (`operations`).
pub fn base_client_config(
    target: &LagTarget,
    credentials: &Credentials,
    call_timeout: std::time::Duration,
) -> rdkafka::ClientConfig {
    clients::client_config(target, credentials, call_timeout, None)
}

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};
use kcp_crds::v1alpha1::{DeadLetterStatus, PartitionLag};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaRespErr,
};

use super::{Credentials, DeadLetterCheck, LagError, LagSnapshot, LagSource, LagTarget};
use clients::Clients;

/// Bounds of the librdkafka side.
#[derive(Debug, Clone, Copy)]
pub struct KafkaLimits {
    /// Longest single librdkafka call (also the connection setup timeout).
    pub call_timeout: Duration,
    /// Cached clients unused for this long are dropped.
    pub idle_eviction: Duration,
}

impl Default for KafkaLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            idle_eviction: Duration::from_secs(600),
        }
    }
}

/// Reads lag from Kafka with shared, cached clients.
#[derive(Clone)]
pub struct KafkaLagSource {
    clients: Arc<Clients>,
    limits: KafkaLimits,
}

impl KafkaLagSource {
    pub fn new(limits: KafkaLimits) -> Self {
        Self {
            clients: Arc::new(Clients::new(limits.call_timeout, limits.idle_eviction)),
            limits,
        }
    }

    /// librdkafka clients cached now (cluster and offsets clients).
    pub fn cached_clients(&self) -> usize {
        self.clients.len()
    }
}

impl LagSource for KafkaLagSource {
    fn read(
        &self,
        target: LagTarget,
        credentials: Credentials,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<LagSnapshot, LagError>> {
        let clients = self.clients.clone();
        let limits = self.limits;
        async move {
            tokio::task::spawn_blocking(move || {
                read_blocking(&clients, &target, &credentials, limits, deadline)
            })
            .await
            .map_err(|_| LagError::Task)?
        }
        .boxed()
    }
}

fn read_blocking(
    clients: &Clients,
    target: &LagTarget,
    credentials: &Credentials,
    limits: KafkaLimits,
    deadline: Instant,
) -> Result<LagSnapshot, LagError> {
    let cluster = clients.cluster(target, credentials)?;
    let result = read_lag(clients, &cluster, target, credentials, limits, deadline);
    if result.is_err() {
        // The next read starts with new clients.
        clients.forget(target, credentials, &cluster);
    }
    result
}

fn read_lag(
    clients: &Clients,
    cluster: &BaseConsumer,
    target: &LagTarget,
    credentials: &Credentials,
    limits: KafkaLimits,
    deadline: Instant,
) -> Result<LagSnapshot, LagError> {
    let budget = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LagError::DeadlinePassed);
        }
        Ok(left.min(limits.call_timeout))
    };

    // 1. Metadata. A dead-letter topic that is missing or may not be described is noted, not
    //    an error: it counts 0 and the `DeadLetterTopicsReady` condition names it.
    let mut missing_topics = Vec::new();
    let mut dead_letter_check = DeadLetterCheck::default();
    let mut source = Vec::new();
    let mut dead_letter = Vec::new();
    for topic in unique(&target.topics) {
        match partitions_of(cluster, topic, budget()?)? {
            Found::Partitions(ids) => source.extend(ids.into_iter().map(|p| (topic.clone(), p))),
            Found::Missing => missing_topics.push(topic.clone()),
            Found::Unauthorized => {
                return Err(LagError::Topic {
                    topic: topic.clone(),
                    code: RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                });
            }
        }
    }
    for topic in unique(&target.dead_letter_topics) {
        match partitions_of(cluster, topic, budget()?)? {
            Found::Partitions(ids) => {
                dead_letter.extend(ids.into_iter().map(|p| (topic.clone(), p)))
            }
            Found::Missing => dead_letter_check.missing.push(topic.clone()),
            Found::Unauthorized => dead_letter_check.unauthorized.push(topic.clone()),
        }
    }

    // 2. Committed offsets, before the watermarks: a commit made in between can then only
    //    make the lag look larger, never negative.
    let group = if source.is_empty() {
        None
    } else {
        Some(clients.offsets(target, credentials)?)
    };
    let commits = match &group {
        None => HashMap::new(),
        Some(lease) => committed(&lease.consumer, &target.group_id, &source, budget()?)?,
    };
    let committed: HashMap<(String, i32), i64> = commits
        .iter()
        .map(|(tp, c)| (tp.clone(), c.offset))
        .collect();

    // 3. Watermarks: high of every partition, low where needed.
    let all: Vec<_> = source.iter().chain(&dead_letter).cloned().collect();
    let high = list_offsets(cluster, &all, Offset::End, budget()?).map_err(lag_error(all.len()))?;
    let need_low: Vec<_> = source
        .iter()
        .filter(|tp| !committed.contains_key(*tp))
        .chain(&dead_letter)
        .cloned()
        .collect();
    let low = list_offsets(cluster, &need_low, Offset::Beginning, budget()?)
        .map_err(lag_error(need_low.len()))?;

    let watermark = |map: &HashMap<(String, i32), i64>, tp: &(String, i32)| {
        map.get(tp).copied().ok_or_else(|| LagError::NoWatermark {
            topic: tp.0.clone(),
            partition: tp.1,
        })
    };
    let mut partitions = Vec::with_capacity(source.len());
    for tp in &source {
        let high_watermark = watermark(&high, tp)?;
        let committed_offset = committed.get(tp).copied();
        let lag = match committed_offset {
            Some(c) => high_watermark - c,
            None => high_watermark - watermark(&low, tp)?,
        };
        partitions.push(PartitionLag {
            topic: tp.0.clone(),
            partition: tp.1,
            committed_offset,
            high_watermark,
            lag: lag.max(0),
            lag_seconds: (lag <= 0).then_some(0),
        });
    }

    // 4. How old the oldest uncommitted record of each lagging partition is.
    let mut lagging: Vec<&PartitionLag> = partitions.iter().filter(|p| p.lag > 0).collect();
    lagging.sort_by_key(|p| std::cmp::Reverse(p.lag));
    lagging.truncate(MAX_PEEKED);
    let positions: Vec<((String, i32), i64)> = lagging
        .iter()
        .map(|p| {
            let tp = (p.topic.clone(), p.partition);
            let at = p
                .committed_offset
                .map_or_else(|| watermark(&low, &tp), Ok)?;
            Ok((tp, at))
        })
        .collect::<Result<_, LagError>>()?;
    let oldest = match &group {
        Some(lease) if !positions.is_empty() => peek::oldest(lease, &positions, budget()?)?,
        _ => HashMap::new(),
    };
    let now_ms = commits::now_ms();
    for p in partitions.iter_mut().filter(|p| p.lag > 0) {
        let found = oldest.get(&(p.topic.clone(), p.partition)).copied();
        p.lag_seconds = seconds_behind(found, now_ms);
    }

    let mut in_topics = 0;
    for tp in &dead_letter {
        in_topics += (watermark(&high, tp)? - watermark(&low, tp)?).max(0);
    }
    let dead = commits::dead_letters(&commits);
    let outage = commits::outage(&commits);
    let positions = commits::positions(&partitions, &commits);
    let mut snapshot = LagSnapshot::new(
        partitions,
        DeadLetterStatus {
            topics: target.dead_letter_topics.clone(),
            count: dead.count,
            in_topics: Some(in_topics),
            recent: dead.recent,
        },
        missing_topics,
        dead_letter_check,
    );
    snapshot.positions = positions;
    snapshot.outage = outage;
    Ok(snapshot)
}

/// `items` without repeats, in their first order.
fn unique(items: &[String]) -> Vec<&String> {
    let mut seen = BTreeSet::new();
    items.iter().filter(|t| seen.insert(*t)).collect()
}

/// What the metadata of one topic says.
enum Found {
    /// Its partition ids, sorted.
    Partitions(Vec<i32>),
    /// The topic does not exist.
    Missing,
    /// The client's user may not describe it (whether it exists is not told).
    Unauthorized,
}

/// The partitions of `topic`, or why there are none.
fn partitions_of(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Found, LagError> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| LagError::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Found::Missing);
    };
    match t.error() {
        None => {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            Ok(Found::Partitions(ids))
        }
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(Found::Missing),
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) => {
            Ok(Found::Unauthorized)
        }
        Some(code) => Err(LagError::Topic {
            topic: topic.to_owned(),
            code,
        }),
    }
}

/// The group's committed offsets of `partitions` with their metadata, in one OffsetFetch;
/// absent where it never committed.
fn committed(
    consumer: &BaseConsumer,
    group: &str,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<HashMap<(String, i32), commits::Commit>, LagError> {
    let group_error = |source| LagError::Committed {
        group: group.to_owned(),
        source,
    };
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    let offsets = consumer
        .committed_offsets(tpl, timeout)
        .map_err(group_error)?;
    let mut out = HashMap::with_capacity(partitions.len());
    for e in offsets.elements() {
        e.error().map_err(group_error)?;
        if let Offset::Offset(n) = e.offset()
            && n >= 0
        {
            out.insert(
                (e.topic().to_owned(), e.partition()),
                commits::Commit::read(n, &e),
            );
        }
    }
    Ok(out)
}

/// Why [`list_offsets`] failed: the request, or one partition's answer.
#[derive(Debug)]
pub enum ListOffsetsError {
    Call(rdkafka::error::KafkaError),
    Partition {
        topic: String,
        partition: i32,
        source: rdkafka::error::KafkaError,
    },
}

/// The high (`Offset::End`) or low (`Offset::Beginning`) watermark of each partition: one
/// ListOffsets request per partition leader. A partition the broker did not answer for is left
/// out (the caller reports it as missing). Shared by the lag reads and redrive.
pub fn list_offsets(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
    at: Offset,
    timeout: Duration,
) -> Result<HashMap<(String, i32), i64>, ListOffsetsError> {
    if partitions.is_empty() {
        return Ok(HashMap::new());
    }
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (t, p) in partitions {
        tpl.add_partition_offset(t, *p, at)
            .map_err(ListOffsetsError::Call)?;
    }
    let answered = consumer
        .offsets_for_times(tpl, timeout)
        .map_err(ListOffsetsError::Call)?;
    let mut out = HashMap::with_capacity(partitions.len());
    for e in answered.elements() {
        e.error().map_err(|source| ListOffsetsError::Partition {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            source,
        })?;
        if let Offset::Offset(n) = e.offset()
            && n >= 0
        {
            out.insert((e.topic().to_owned(), e.partition()), n);
        }
    }
    Ok(out)
}

/// [`list_offsets`]'s failure as a lag read's.
fn lag_error(partitions: usize) -> impl Fn(ListOffsetsError) -> LagError {
    move |e| match e {
        ListOffsetsError::Call(source) => LagError::Watermarks { partitions, source },
        ListOffsetsError::Partition {
            topic,
            partition,
            source,
        } => LagError::Partition {
            topic,
            partition,
            source,
        },
    }
}
