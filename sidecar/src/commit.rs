//! The only code that commits offsets.
//!
//! Guarantee: never commits past an unfinished record. Every offset committed here comes from
//! [`OffsetTracker::to_commit`], which never passes the lowest unfinished offset of a partition.
//! Commits happen every `commitInterval` ([`commit_async`], from the poll thread), synchronously
//! when partitions are revoked (after their in-flight records finished or `drainTimeout`
//! passed) and at shutdown ([`commit_sync`]). A synchronous commit's acknowledgement is recorded
//! in the tracker and [`Stats`]; librdkafka does not report the outcome of a manual asynchronous
//! commit, so the periodic one only records what it sent, and the synchronous commits compare
//! against acknowledged offsets (a lost periodic commit is sent again). A failed commit is logged
//! and retried by the next one: it can only cause redelivery, never loss.

use std::{
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext},
    error::{KafkaError, KafkaResult},
};
use tracing::{debug, warn};

use crate::{
    consumer::tps_of,
    offsets::{NextOffset, OffsetTracker, Since, ToCommit},
    record::Tp,
    stats::Stats,
};

/// Why a synchronous commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("committing offsets {offsets}")]
    Commit {
        offsets: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "committing offsets {offsets}: no answer from Kafka within {timeout:?} (no group coordinator?)"
    )]
    Timeout { offsets: String, timeout: Duration },
}

/// How long a synchronous commit waits for Kafka's answer (revoke, shutdown). Without a group
/// coordinator, librdkafka's synchronous commit waits until one is found, which would hold a
/// revoke or a shutdown past its deadline and stop the poll loop (liveness fails).
pub const SYNC_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The commit's partition list: each offset with what it carries in its metadata
/// (`progress.rs`), within the length the broker took last (`Stats::metadata_max_len`). What
/// does not fit is left out (counted): those records are delivered again, never skipped.
fn list(offsets: &[ToCommit<Tp>], stats: &Stats) -> TopicPartitionList {
    let max_len = stats.metadata_max_len();
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for c in offsets {
        tpl.add_partition_offset(&c.key.topic, c.key.partition, Offset::Offset(c.next.get()))
            .expect("invariant: a non-negative offset is always accepted");
        let (metadata, overflow) = c.progress.encode(max_len);
        if overflow.records_dropped > 0 {
            stats.metadata_overflow();
        }
        if !metadata.is_empty()
            && let Some(mut e) = tpl.find_partition(&c.key.topic, c.key.partition)
        {
            e.set_metadata(metadata);
        }
    }
    tpl
}

fn describe(offsets: &[ToCommit<Tp>]) -> String {
    offsets
        .iter()
        .map(|c| format!("{}@{}", c.key, c.next))
        .collect::<Vec<_>>()
        .join(",")
}

fn pending(
    tracker: &Mutex<OffsetTracker<Tp>>,
    only: Option<&[Tp]>,
    since: Since,
    clean: bool,
) -> Vec<ToCommit<Tp>> {
    tracker
        .lock()
        .expect("invariant: tracker lock never poisoned")
        .to_commit(only, since, clean)
}

/// A broker that stores less metadata than we sent refuses the whole commit: send less from
/// then on (half, down to none), so a commit never stalls on it.
fn refused_metadata(source: &KafkaError, stats: &Stats) {
    if source.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::OffsetMetadataTooLarge)
    {
        let now = stats.shrink_metadata_max_len();
        warn!(
            max_len = now,
            "The broker refused the commit's metadata as too large; sending at most max_len bytes from now on (records finished above the committed offset may be delivered again after a handover)"
        );
    }
}

/// Commits what moved since the last commit, without waiting: the periodic commit
/// ([`Since::Requested`]: what was not sent yet), and the commits made while a drain holds the
/// poll thread ([`Since::Acknowledged`]: Kafka's answers are not served meanwhile, so what is not
/// acknowledged is sent again).
pub fn commit_async<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Mutex<OffsetTracker<Tp>>,
    stats: &Stats,
    since: Since,
) {
    let offsets = pending(tracker, None, since, false);
    if offsets.is_empty() {
        return;
    }
    debug!(offsets = %describe(&offsets), "Committing");
    match consumer.commit(&list(&offsets, stats), CommitMode::Async) {
        Ok(()) => {
            // The answer comes to `commit_done`; a lost one is re-sent by the synchronous
            // commit at revoke/shutdown.
            let mut t = tracker
                .lock()
                .expect("invariant: tracker lock never poisoned");
            for c in &offsets {
                t.requested(c);
                stats.set_commit_requested(&c.key, c.next.get());
            }
        }
        Err(e) => {
            Stats::incr(&stats.commit_failures);
            warn!(error = %e, offsets = %describe(&offsets), "Commit failed; retrying at the next interval");
        }
    }
}

/// Commits what moved for `only` (all partitions when `None`) and waits for Kafka's answer.
/// `clean`: a graceful handover (revoke, shutdown) after the drain, see `offsets/carry.rs`.
pub fn commit_sync<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Mutex<OffsetTracker<Tp>>,
    only: Option<&[Tp]>,
    stats: &Stats,
    clean: bool,
) -> Result<usize, CommitError> {
    let offsets = pending(tracker, only, Since::Acknowledged, clean);
    if offsets.is_empty() {
        return Ok(0);
    }
    match consumer.commit(&list(&offsets, stats), CommitMode::Sync) {
        Ok(()) => {
            debug!(offsets = %describe(&offsets), "Committed");
            record(tracker, stats, &offsets);
            Ok(offsets.len())
        }
        Err(source) => {
            Stats::incr(&stats.commit_failures);
            refused_metadata(&source, stats);
            Err(CommitError::Commit {
                offsets: describe(&offsets),
                source,
            })
        }
    }
}

/// [`commit_sync`] that waits at most `timeout` for Kafka's answer. The commit runs on a thread
/// of its own, which records the acknowledgement whenever it comes; past `timeout` the caller
/// goes on without it ([`CommitError::Timeout`]): the records are redelivered, never lost.
pub fn commit_sync_within<C: ConsumerContext + 'static>(
    consumer: &Arc<BaseConsumer<C>>,
    tracker: &Arc<Mutex<OffsetTracker<Tp>>>,
    only: Option<&[Tp]>,
    stats: &Arc<Stats>,
    timeout: Duration,
    clean: bool,
) -> Result<usize, CommitError> {
    let offsets = pending(tracker, only, Since::Acknowledged, clean);
    if offsets.is_empty() {
        return Ok(0);
    }
    let (tx, rx) = mpsc::channel();
    let (c, t, s, o) = (
        Arc::clone(consumer),
        Arc::clone(tracker),
        Arc::clone(stats),
        offsets.clone(),
    );
    let spawned = std::thread::Builder::new()
        .name("kcp-commit".into())
        .spawn(move || {
            let result = c.commit(&list(&o, &s), CommitMode::Sync);
            // Released before the answer is sent: the shutdown closes the consumer right after
            // it, and only the last handle leaves the group.
            drop(c);
            if result.is_ok() {
                record(&t, &s, &o);
            }
            // The caller may have stopped waiting; the acknowledgement is recorded anyway.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "Could not start a commit thread; committing on this one, unbounded");
        return commit_sync(consumer.as_ref(), tracker, only, stats, clean);
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => {
            debug!(offsets = %describe(&offsets), "Committed");
            Ok(offsets.len())
        }
        Ok(Err(source)) => {
            Stats::incr(&stats.commit_failures);
            refused_metadata(&source, stats);
            Err(CommitError::Commit {
                offsets: describe(&offsets),
                source,
            })
        }
        Err(_) => {
            Stats::incr(&stats.commit_failures);
            Err(CommitError::Timeout {
                offsets: describe(&offsets),
                timeout,
            })
        }
    }
}

fn record(tracker: &Mutex<OffsetTracker<Tp>>, stats: &Stats, offsets: &[ToCommit<Tp>]) {
    Stats::incr(&stats.commits);
    let mut t = tracker
        .lock()
        .expect("invariant: tracker lock never poisoned");
    for c in offsets {
        t.committed(&c.key, c.next, Some(&c.progress));
        stats.set_committed(&c.key, c.next.get());
    }
}

/// Records Kafka's answer to an asynchronous commit (the consumer's commit callback).
pub fn commit_done(
    tracker: &Mutex<OffsetTracker<Tp>>,
    stats: &Stats,
    result: &KafkaResult<()>,
    offsets: &TopicPartitionList,
) {
    debug!(?result, offsets = offsets.count(), "Commit answered");
    match result {
        Ok(()) => {
            let acked: Vec<(Tp, NextOffset)> = tps_of(offsets)
                .into_iter()
                .zip(offsets.elements())
                .filter_map(|(tp, e)| match e.offset() {
                    Offset::Offset(o) => Some((tp, NextOffset::at(o))),
                    _ => None,
                })
                .collect();
            if !acked.is_empty() {
                Stats::incr(&stats.commits);
                let mut t = tracker
                    .lock()
                    .expect("invariant: tracker lock never poisoned");
                for (tp, next) in &acked {
                    // The answer names the offset; the tracker knows what the request carried.
                    t.committed(tp, *next, None);
                    stats.set_committed(tp, next.get());
                }
            }
        }
        // Nothing to commit is not a failure.
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            Stats::incr(&stats.commit_failures);
            warn!(error = %e, "Commit failed; retrying at the next interval");
            refused_metadata(e, stats);
            let mut t = tracker
                .lock()
                .expect("invariant: tracker lock never poisoned");
            for tp in tps_of(offsets) {
                t.request_failed(&tp);
            }
        }
    }
}
