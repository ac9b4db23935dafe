//! The only code that talks to Kafka: reads dead-letter records for `kubectl kcp dlq`.
//!
//! Reads only. The client joins no consumer group and commits nothing: partitions are
//! `assign`ed at explicit offsets (never `subscribe`), and `enable.auto.commit` and
//! `enable.auto.offset.store` are off. librdkafka's `assign` insists on a `group.id`, so each
//! run uses a fresh random `kubectl-kcp-<hex>` one ([`KafkaAccess::new`]) that never joins
//! and never commits (`cli`
//! refuses group and commit settings in `--kafka-config`). Blocking (librdkafka's calls
//! block): call it from `spawn_blocking`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError as RdKafkaError,
    message::{BorrowedMessage, Headers},
};

use crate::dlq::{Coordinates, DeadLetter, newest, start_offset};

/// Where Kafka is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaAccess {
    pub bootstrap_servers: String,
    /// librdkafka properties from `--kafka-config` (SASL, TLS, ...).
    pub config: Vec<(String, String)>,
    /// The `group.id` `assign` insists on; never joined, never committed for.
    pub group_id: String,
}

impl KafkaAccess {
    /// Access with a fresh random group id, `kubectl-kcp-<16 hex digits>`.
    pub fn new(bootstrap_servers: String, config: Vec<(String, String)>) -> Self {
        Self {
            bootstrap_servers,
            config,
            group_id: format!("kubectl-kcp-{:016x}", rand::random::<u64>()),
        }
    }
}

/// How long to wait.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the first answer from Kafka; after it, Kafka counts as unreachable.
    pub connect: Duration,
    /// For reading the records, per topic; what came in by then is returned.
    pub read: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(20),
        }
    }
}

/// Why Kafka could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka at {bootstrap_servers} did not answer within {}s ({reason})", .waited.as_secs())]
    Unreachable {
        bootstrap_servers: String,
        waited: Duration,
        reason: String,
    },
    #[error("creating the Kafka client: {0}; check --kafka-config")]
    CreateClient(String),
    #[error("reading {what}: {reason}")]
    Read { what: String, reason: String },
}

/// The newest dead letters, and what could not be read.
#[derive(Debug, Clone, Default)]
pub struct NewestRead {
    /// Newest first, at most the limit asked.
    pub records: Vec<DeadLetter>,
    /// Dead-letter topics that do not exist (nothing was dead-lettered there yet).
    pub missing_topics: Vec<String>,
    /// Partitions not read to their end within [`Limits::read`], with the last error seen.
    pub incomplete: Vec<String>,
}

/// A partition's number, low and high watermarks.
type Watermarks = (i32, i64, i64);

fn consumer(access: &KafkaAccess) -> Result<BaseConsumer, KafkaError> {
    let mut config = ClientConfig::new();
    for (k, v) in &access.config {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", &access.bootstrap_servers)
        .set("client.id", "kubectl-kcp")
        .set("group.id", &access.group_id)
        .set("enable.auto.commit", "false")
        // Where to start if retention deleted a start offset between reading it and fetching.
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    config
        .create()
        .map_err(|e| KafkaError::CreateClient(e.to_string()))
}

/// Partitions of `topic` with their low and high watermarks; `None` when the topic does not
/// exist. The first call on a client says whether Kafka answers at all.
fn partitions(
    consumer: &BaseConsumer,
    access: &KafkaAccess,
    topic: &str,
    limits: Limits,
) -> Result<Option<Vec<Watermarks>>, KafkaError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), limits.connect)
        .map_err(|e| KafkaError::Unreachable {
            bootstrap_servers: access.bootstrap_servers.clone(),
            waited: limits.connect,
            reason: e.to_string(),
        })?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), limits.connect)
            .map_err(|e| KafkaError::Read {
                what: format!("the offsets of {topic}/{}", p.id()),
                reason: e.to_string(),
            })?;
        out.push((p.id(), low, high));
    }
    out.sort_unstable();
    Ok(Some(out))
}

/// The `limit` newest dead letters over `topics`: the last `limit` records of each partition,
/// merged newest first (by `kcp-dlq-last-failure`, else the record's timestamp).
pub fn read_newest(
    access: &KafkaAccess,
    topics: &[String],
    limit: u16,
    limits: Limits,
) -> Result<NewestRead, KafkaError> {
    let consumer = consumer(access)?;
    let mut read = NewestRead::default();
    let mut records = Vec::new();
    for topic in topics {
        let Some(parts) = partitions(&consumer, access, topic, limits)? else {
            read.missing_topics.push(topic.clone());
            continue;
        };
        // Partition -> its high watermark, for the partitions with records to read.
        let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for (p, low, high) in parts {
            let start = start_offset(low, high, limit);
            if start < high {
                pending.insert(p, high);
                tpl.add_partition_offset(topic, p, Offset::Offset(start))
                    .map_err(|e| read_error(topic, e))?;
            }
        }
        if pending.is_empty() {
            continue;
        }
        // One topic at a time: an end-of-partition event names only the partition number.
        consumer.assign(&tpl).map_err(|e| read_error(topic, e))?;
        let deadline = Instant::now() + limits.read;
        let mut last_error = None;
        while !pending.is_empty() && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(m)) => {
                    if pending
                        .get(&m.partition())
                        .is_some_and(|high| m.offset() >= high - 1)
                    {
                        pending.remove(&m.partition());
                    }
                    records.push(dead_letter(&m));
                }
                Some(Err(RdKafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(e)) => last_error = Some(e.to_string()),
            }
        }
        let why = last_error.map(|e| format!(" ({e})")).unwrap_or_default();
        read.incomplete
            .extend(pending.keys().map(|p| format!("{topic}/{p}{why}")));
    }
    consumer.unassign().map_err(|e| KafkaError::Read {
        what: "the dead-letter topics".into(),
        reason: e.to_string(),
    })?;
    read.records = newest(records, usize::from(limit));
    Ok(read)
}

/// The record at `at`; `None` when there is none (past the end, deleted by retention, or
/// compacted away).
pub fn read_one(
    access: &KafkaAccess,
    at: &Coordinates,
    limits: Limits,
) -> Result<Option<DeadLetter>, KafkaError> {
    let consumer = consumer(access)?;
    let Some(parts) = partitions(&consumer, access, &at.topic, limits)? else {
        return Ok(None);
    };
    let Some(&(_, low, high)) = parts.iter().find(|(p, ..)| *p == at.partition) else {
        return Ok(None);
    };
    if at.offset < low || at.offset >= high {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&at.topic, at.partition, Offset::Offset(at.offset))
        .map_err(|e| read_error(&at.topic, e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| read_error(&at.topic, e))?;
    let deadline = Instant::now() + limits.read;
    let mut last_error = String::from("no answer");
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) if m.offset() == at.offset => return Ok(Some(dead_letter(&m))),
            // The next record there is past it: that offset was compacted away.
            Some(Ok(_)) | Some(Err(RdKafkaError::PartitionEOF(_))) => return Ok(None),
            Some(Err(e)) => last_error = e.to_string(),
        }
    }
    Err(KafkaError::Read {
        what: at.to_string(),
        reason: format!("not read within {}s: {last_error}", limits.read.as_secs()),
    })
}

fn read_error(topic: &str, e: RdKafkaError) -> KafkaError {
    KafkaError::Read {
        what: topic.to_owned(),
        reason: e.to_string(),
    }
}

fn dead_letter(m: &BorrowedMessage<'_>) -> DeadLetter {
    DeadLetter {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
