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
    offsets::{NextOffset, OffsetTracker, Since},
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

fn list(offsets: &[(Tp, NextOffset)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, next) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(next.get()))
            .expect("invariant: a non-negative offset is always accepted");
    }
    tpl
}

fn describe(offsets: &[(Tp, NextOffset)]) -> String {
    offsets
        .iter()
        .map(|(tp, n)| format!("{tp}@{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn pending(
    tracker: &Mutex<OffsetTracker<Tp>>,
    only: Option<&[Tp]>,
    since: Since,
) -> Vec<(Tp, NextOffset)> {
    tracker
        .lock()
        .expect("invariant: tracker lock never poisoned")
        .to_commit(only, since)
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
    let offsets = pending(tracker, None, since);
    if offsets.is_empty() {
        return;
    }
    debug!(offsets = %describe(&offsets), "Committing");
    match consumer.commit(&list(&offsets), CommitMode::Async) {
        Ok(()) => {
            // librdkafka does not report the outcome of a manual asynchronous commit to the
            // application; a lost one is re-sent by the synchronous commit at revoke/shutdown.
            let mut t = tracker
                .lock()
                .expect("invariant: tracker lock never poisoned");
            for (tp, next) in &offsets {
                t.requested(tp, *next);
                stats.set_commit_requested(tp, next.get());
            }
        }
        Err(e) => {
            Stats::incr(&stats.commit_failures);
            warn!(error = %e, offsets = %describe(&offsets), "Commit failed; retrying at the next interval");
        }
    }
}

/// Commits what moved for `only` (all partitions when `None`) and waits for Kafka's answer.
pub fn commit_sync<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Mutex<OffsetTracker<Tp>>,
    only: Option<&[Tp]>,
    stats: &Stats,
) -> Result<usize, CommitError> {
    let offsets = pending(tracker, only, Since::Acknowledged);
    if offsets.is_empty() {
        return Ok(0);
    }
    match consumer.commit(&list(&offsets), CommitMode::Sync) {
        Ok(()) => {
            debug!(offsets = %describe(&offsets), "Committed");
            record(tracker, stats, &offsets);
            Ok(offsets.len())
        }
        Err(source) => {
            Stats::incr(&stats.commit_failures);
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
) -> Result<usize, CommitError> {
    let offsets = pending(tracker, only, Since::Acknowledged);
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
            let result = c.commit(&list(&o), CommitMode::Sync);
            if result.is_ok() {
                record(&t, &s, &o);
            }
            // The caller may have stopped waiting; the acknowledgement is recorded anyway.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "Could not start a commit thread; committing on this one, unbounded");
        return commit_sync(consumer.as_ref(), tracker, only, stats);
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => {
            debug!(offsets = %describe(&offsets), "Committed");
            Ok(offsets.len())
        }
        Ok(Err(source)) => {
            Stats::incr(&stats.commit_failures);
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

fn record(tracker: &Mutex<OffsetTracker<Tp>>, stats: &Stats, offsets: &[(Tp, NextOffset)]) {
    Stats::incr(&stats.commits);
    let mut t = tracker
        .lock()
        .expect("invariant: tracker lock never poisoned");
    for (tp, next) in offsets {
        t.committed(tp, *next);
        stats.set_committed(tp, next.get());
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
                record(tracker, stats, &acked);
            }
        }
        // Nothing to commit is not a failure.
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            Stats::incr(&stats.commit_failures);
            warn!(error = %e, "Commit failed; retrying at the next interval");
            let mut t = tracker
                .lock()
                .expect("invariant: tracker lock never poisoned");
            for tp in tps_of(offsets) {
                t.request_failed(&tp);
            }
        }
    }
}
