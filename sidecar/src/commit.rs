//! The only code that commits offsets.
//!
//! Guarantee: never commits past an unfinished record. Every offset committed here comes from
//! [`OffsetTracker::to_commit`], which never passes the lowest unfinished offset of a partition.
//! Every commit is synchronous and taken in one turn ([`Window::turn`]): the committer thread
//! ([`committer`]) commits every `commitInterval` and whenever half of `maxUncommitted` ended
//! records wait ([`window`]); revoke and shutdown commit their partitions after the drain
//! ([`commit_sync_within`]). An acknowledgement is recorded in the tracker and [`Stats`]; a
//! failed commit is logged and retried by the next one: it can only cause redelivery, never
//! loss.

pub mod committer;
pub mod window;

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
    offsets::{OffsetTracker, ToCommit},
    record::Tp,
    stats::Stats,
};

pub use window::{Slot, Window};

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
    clean: bool,
) -> Vec<ToCommit<Tp>> {
    tracker
        .lock()
        .expect("invariant: tracker lock never poisoned")
        .to_commit(only, clean)
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

/// Commits what moved for `only` (all partitions when `None`) and waits for Kafka's answer, in
/// the commit turn ([`Window::turn`]). A commit of every partition frees the window's places of
/// the records ended before it ([`Window::durable`]). `clean`: a graceful handover (revoke,
/// shutdown) after the drain, see `offsets/carry.rs`.
pub fn commit_sync<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Mutex<OffsetTracker<Tp>>,
    only: Option<&[Tp]>,
    stats: &Stats,
    clean: bool,
    window: &Window,
) -> Result<usize, CommitError> {
    let (offsets, result) = commit_in_turn(consumer, tracker, only, stats, clean, window);
    match result {
        Ok(()) => Ok(offsets.len()),
        Err(source) => Err(failed(&offsets, source, stats)),
    }
}

/// One commit in the turn: the window's mark, the snapshot, the commit and its answer.
fn commit_in_turn<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Mutex<OffsetTracker<Tp>>,
    only: Option<&[Tp]>,
    stats: &Stats,
    clean: bool,
    window: &Window,
) -> (Vec<ToCommit<Tp>>, KafkaResult<()>) {
    let _turn = window.turn();
    // Before the snapshot: every record ended by now is in it (`window.rs`).
    let mark = window.mark();
    let offsets = pending(tracker, only, clean);
    if offsets.is_empty() {
        if only.is_none() {
            // Every partition's progress is acknowledged already.
            window.durable(mark);
        }
        return (offsets, Ok(()));
    }
    for c in &offsets {
        stats.set_commit_requested(&c.key, c.next.get());
    }
    let result = consumer.commit(&list(&offsets, stats), CommitMode::Sync);
    if result.is_ok() {
        debug!(offsets = %describe(&offsets), "Committed");
        record(tracker, stats, &offsets);
        if only.is_none() {
            window.durable(mark);
        }
    }
    (offsets, result)
}

fn failed(offsets: &[ToCommit<Tp>], source: KafkaError, stats: &Stats) -> CommitError {
    Stats::incr(&stats.commit_failures);
    refused_metadata(&source, stats);
    CommitError::Commit {
        offsets: describe(offsets),
        source,
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
    window: &Arc<Window>,
) -> Result<usize, CommitError> {
    let (tx, rx) = mpsc::channel();
    let (c, t, s, w) = (
        Arc::clone(consumer),
        Arc::clone(tracker),
        Arc::clone(stats),
        Arc::clone(window),
    );
    let o = only.map(<[Tp]>::to_vec);
    let spawned = std::thread::Builder::new()
        .name("kcp-commit".into())
        .spawn(move || {
            let answer = commit_in_turn(c.as_ref(), &t, o.as_deref(), &s, clean, &w);
            // Released before the answer is sent: the shutdown closes the consumer right after
            // it, and only the last handle leaves the group.
            drop(c);
            // The caller may have stopped waiting; the acknowledgement is recorded anyway.
            let _ = tx.send(answer);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "Could not start a commit thread; committing on this one, unbounded");
        return commit_sync(consumer.as_ref(), tracker, only, stats, clean, window);
    }
    match rx.recv_timeout(timeout) {
        Ok((offsets, Ok(()))) => Ok(offsets.len()),
        Ok((offsets, Err(source))) => Err(failed(&offsets, source, stats)),
        Err(_) => {
            Stats::incr(&stats.commit_failures);
            Err(CommitError::Timeout {
                offsets: only.map_or_else(
                    || "every partition".into(),
                    |tps| {
                        tps.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                ),
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
        t.committed(&c.key, c.next, &c.progress);
        stats.set_committed(&c.key, c.next.get());
    }
}

/// Kafka's answer to a commit, from the consumer's commit callback. Every commit is
/// synchronous and its caller records the answer; this only logs it.
pub fn commit_done(result: &KafkaResult<()>, offsets: &TopicPartitionList) {
    debug!(?result, offsets = offsets.count(), "Commit answered");
}

impl CommitError {
    /// What Kafka said, for a log line.
    pub fn source_message(&self) -> String {
        std::error::Error::source(self)
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}
