//! The timestamp of the oldest record a group has not committed, per lagging partition: how far
//! behind it is in time.
//!
//! Kafka has no request for "the timestamp of offset N"; the only way is to fetch the record.
//! The group's offsets client (never subscribed, so never a member) is assigned each lagging
//! partition at its committed offset (or its earliest record when the group never committed)
//! and polled until each partition gave one record or the time is up; then unassigned. Cheap
//! by configuration ([`configure`]): one record batch per partition per fetch, at most 1 MiB per
//! fetch response (a first batch larger than that still comes whole: KIP-74), at most 8 MiB
//! queued. (With `queued.min.messages=1`, which looks cheaper, librdkafka fetched so few
//! partitions at a time that 1,000 partitions on a broker 10 ms away were not all read in 5 s;
//! with the default and the 8 MiB bound they are read in about 1 s:
//! `two_thousand_partitions_are_read_whole_and_listed_bounded`.)
//!
//! A committed offset below the earliest retained record (deleted by retention) resumes at the
//! earliest one (`auto.offset.reset=earliest`): that is then the oldest record not consumed. A
//! partition that gives nothing in time (only transaction markers or aborted records past the
//! offset, a slow leader) is not in the answer: its age is unknown.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

use super::clients::Lease;
use crate::lag::LagError;

/// Most partitions peeked in one read (the most lagging); the others' age is unknown.
pub const MAX_PEEKED: usize = 1_000;

/// What the oldest uncommitted record of a partition says of its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oldest {
    /// Its timestamp (producer's create time, or the broker's log-append time), in ms since
    /// the Unix epoch.
    At(i64),
    /// It carries no timestamp (a producer of a message format before Kafka 0.10).
    NoTimestamp,
}

/// The client settings that keep a peek small. Harmless to the offsets client's other use.
pub(super) fn configure(cfg: &mut ClientConfig) {
    cfg.set("fetch.message.max.bytes", "1")
        // librdkafka requires fetch.max.bytes >= message.max.bytes (a producer setting).
        .set("message.max.bytes", "1000")
        .set("fetch.max.bytes", "1048576")
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
}

/// The oldest record at or after each `(partition, position)`, within `timeout`. Partitions
/// that gave nothing in time are absent.
pub(super) fn oldest(
    lease: &Lease,
    positions: &[((String, i32), i64)],
    timeout: Duration,
) -> Result<HashMap<(String, i32), Oldest>, LagError> {
    let mut found = HashMap::new();
    if positions.is_empty() {
        return Ok(found);
    }
    let _one_at_a_time = lease.busy.lock().map_err(|_| LagError::Task)?;
    let consumer: &BaseConsumer = &lease.consumer;
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for ((t, p), o) in positions {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))
            .map_err(LagError::Peek)?;
    }
    consumer.assign(&tpl).map_err(LagError::Peek)?;
    let wanted: HashMap<(&str, i32), i64> = positions
        .iter()
        .map(|((t, p), o)| ((t.as_str(), *p), *o))
        .collect();
    let deadline = Instant::now() + timeout;
    while found.len() < wanted.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Errors are per partition or transient (a leader moving): the partition stays
        // unanswered and its age unknown.
        if let Some(Ok(m)) = consumer.poll(left.min(Duration::from_millis(100))) {
            let key = (m.topic().to_owned(), m.partition());
            // A record of an earlier peek's assignment, or a second one: not the answer.
            let asked = wanted.get(&(m.topic(), m.partition()));
            if asked.is_some_and(|&o| m.offset() >= o) && !found.contains_key(&key) {
                let at = m.timestamp().to_millis().filter(|&ms| ms >= 0);
                found.insert(key, at.map_or(Oldest::NoTimestamp, Oldest::At));
            }
        }
    }
    consumer.unassign().map_err(LagError::Peek)?;
    Ok(found)
}

/// How far behind a partition is: `now - oldest`, 0 for a timestamp in the future (a producer
/// clock ahead of the operator's), `None` when unknown.
pub fn seconds_behind(oldest: Option<Oldest>, now_ms: i64) -> Option<i64> {
    match oldest? {
        Oldest::At(ms) => Some(now_ms.saturating_sub(ms).max(0) / 1000),
        Oldest::NoTimestamp => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_whole_never_negative_and_unknown_without_a_time() {
        assert_eq!(seconds_behind(Some(Oldest::At(1_000)), 250_999), Some(249));
        assert_eq!(
            seconds_behind(Some(Oldest::At(900_000)), 250_000),
            Some(0),
            "a producer clock ahead of ours"
        );
        assert_eq!(seconds_behind(Some(Oldest::NoTimestamp), 1), None);
        assert_eq!(seconds_behind(None, 1), None);
    }
}
