//! Which offset of each partition is safe to commit.
//!
//! Pure and synchronous: no Kafka client, no clock, no I/O. The shells (`pipeline`, `deliver`,
//! `commit`) tell an [`OffsetTracker`] what was dispatched and what finished, and ask it what
//! may be committed. Guarantee: the committable offset of a partition is the lowest offset still
//! unfinished, or the highest dispatched offset + 1 when none is; so a commit never passes a
//! record that is neither delivered, skipped nor safely dead-lettered.
//!
//! Offsets are not contiguous (compaction, transaction markers): nothing here assumes that
//! `offset + 1` exists. The "+1" lives in one place, [`NextOffset::after`].

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    hash::Hash,
};

use crate::progress::{Progress, RecordState};

mod carry;
pub use carry::ToCommit;

/// The offset a consumer resumes from: what Kafka stores as a group's committed offset.
///
/// Built only by [`NextOffset::after`] (the record after a finished one) or
/// [`NextOffset::at`] (an unfinished record, to be consumed again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextOffset(i64);

impl NextOffset {
    /// Resume after `offset`: every record up to and including `offset` is finished.
    pub fn after(offset: i64) -> Self {
        Self(offset.saturating_add(1))
    }

    /// Resume at `offset`: this record is not finished and must be consumed again.
    pub fn at(offset: i64) -> Self {
        Self(offset)
    }

    /// The raw offset to hand to Kafka.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for NextOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One assignment of a partition. Completions from an earlier assignment (a partition revoked and
/// assigned again) carry an old epoch and are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

/// What [`OffsetTracker::dispatched`] did with an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatched {
    /// Now tracked as unfinished: deliver it, and report its completion with this epoch.
    Tracked(Epoch),
    /// The previous owner finished it (its commit said so, `progress`): counted as finished,
    /// not delivered again.
    AlreadyFinished,
    /// The same offset is already unfinished (a re-fetch): do not deliver it twice.
    AlreadyUnfinished,
    /// The partition is not assigned: drop the record.
    NotAssigned,
}

#[derive(Debug)]
struct PartitionOffsets {
    epoch: Epoch,
    unfinished: BTreeSet<i64>,
    highest: Option<i64>,
    committed: Option<NextOffset>,
    /// What the last acknowledged commit said above its offset (`carry.rs`).
    committed_progress: Option<Progress>,
    /// Retry state and crash counts of unfinished records (`carry.rs`).
    states: BTreeMap<i64, RecordState>,
    /// Timestamps (ms) of unfinished records that have one: how old the record at the
    /// committable offset is (`kcp_partition_lag_seconds`).
    times: HashMap<i64, i64>,
    /// What the group's committed metadata said when the partition was assigned.
    inherited: Option<Progress>,
    /// The group's dead-letter count and newest notes on this partition, carried on from the
    /// previous owner (only those two fields are used).
    dead_letters: Progress,
}

impl PartitionOffsets {
    fn committable(&self) -> Option<NextOffset> {
        match self.unfinished.first() {
            Some(&lowest) => Some(NextOffset::at(lowest)),
            None => self.highest.map(NextOffset::after),
        }
    }
}

/// Per-partition record of dispatched and unfinished offsets. `K` names a partition.
#[derive(Debug)]
pub struct OffsetTracker<K> {
    partitions: HashMap<K, PartitionOffsets>,
    next_epoch: u64,
    /// The endpoint outage going on, carried in every commit (`carry.rs`).
    outage: Option<crate::progress::OutageNote>,
}

impl<K> Default for OffsetTracker<K> {
    fn default() -> Self {
        Self {
            partitions: HashMap::new(),
            next_epoch: 0,
            outage: None,
        }
    }
}

impl<K: Eq + Hash + Clone> OffsetTracker<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking `key` afresh (forgetting any earlier state) and returns its epoch.
    pub fn assign(&mut self, key: K) -> Epoch {
        self.assign_with(key, None)
    }

    /// [`OffsetTracker::assign`], knowing what the group's last commit said above its offset:
    /// records it lists as finished are not delivered again, and the state of its unfinished
    /// ones carries on (`carry.rs`).
    pub fn assign_with(&mut self, key: K, inherited: Option<Progress>) -> Epoch {
        self.next_epoch += 1;
        let epoch = Epoch(self.next_epoch);
        let dead_letters = inherited
            .as_ref()
            .map_or_else(Progress::default, |p| Progress {
                dead_lettered: p.dead_lettered,
                notes: p.notes.clone(),
                ..Progress::default()
            });
        self.partitions.insert(
            key,
            PartitionOffsets {
                epoch,
                unfinished: BTreeSet::new(),
                highest: None,
                committed: None,
                committed_progress: None,
                states: BTreeMap::new(),
                times: HashMap::new(),
                inherited: inherited.map(carry::after_handover),
                dead_letters,
            },
        );
        epoch
    }

    /// Stops tracking `key`; returns how many of its records were still unfinished.
    pub fn revoke(&mut self, key: &K) -> usize {
        self.partitions
            .remove(key)
            .map_or(0, |p| p.unfinished.len())
    }

    /// The current epoch of `key`, if assigned.
    pub fn epoch(&self, key: &K) -> Option<Epoch> {
        self.partitions.get(key).map(|p| p.epoch)
    }

    /// Records that `offset` was handed out for delivery. Offsets arrive in increasing order
    /// within one log. An offset below the highest dispatched that is not unfinished means the
    /// partition's log moved backwards (truncated, recreated, or resumed at its earliest
    /// retained record after an out-of-range position): everything tracked before belongs to
    /// the old log and is forgotten, and a new epoch starts, so neither the old `highest` nor
    /// an old record's completion can move the commit past a record of the new log.
    pub fn dispatched(&mut self, key: &K, offset: i64) -> Dispatched {
        self.dispatched_at(key, offset, None)
    }

    /// [`OffsetTracker::dispatched`], knowing the record's timestamp (ms since the epoch).
    pub fn dispatched_at(&mut self, key: &K, offset: i64, timestamp: Option<i64>) -> Dispatched {
        let Some(p) = self.partitions.get_mut(key) else {
            return Dispatched::NotAssigned;
        };
        if p.unfinished.contains(&offset) {
            return Dispatched::AlreadyUnfinished;
        }
        if p.highest.is_some_and(|h| offset < h) {
            self.next_epoch += 1;
            p.epoch = Epoch(self.next_epoch);
            p.unfinished.clear();
            p.states.clear();
            p.times.clear();
            p.highest = None;
            // The group's committed offset is in the old log; the next commit must be sent
            // even if it is lower. What the old commit said of the old log means nothing now.
            p.committed = None;
            p.committed_progress = None;
            p.inherited = None;
        }
        p.highest = Some(p.highest.map_or(offset, |h| h.max(offset)));
        if let Some(inherited) = &p.inherited {
            if inherited.is_finished(offset) {
                return Dispatched::AlreadyFinished;
            }
            if let Some(state) = inherited.state(offset) {
                p.states.insert(offset, state);
            }
        }
        p.unfinished.insert(offset);
        if let Some(ts) = timestamp {
            p.times.insert(offset, ts);
        }
        Dispatched::Tracked(p.epoch)
    }

    /// Records that `offset` is finished (delivered, skipped or dead-lettered). Returns false when
    /// it was not unfinished in this epoch (stale completion), which changes nothing.
    pub fn finished(&mut self, key: &K, epoch: Epoch, offset: i64) -> bool {
        match self.partitions.get_mut(key) {
            Some(p) if p.epoch == epoch => {
                p.states.remove(&offset);
                p.times.remove(&offset);
                p.unfinished.remove(&offset)
            }
            _ => false,
        }
    }

    /// The offset that may be committed for `key` now, if anything was dispatched.
    pub fn committable(&self, key: &K) -> Option<NextOffset> {
        self.partitions
            .get(key)
            .and_then(PartitionOffsets::committable)
    }

    /// How many records of `key` are unfinished.
    pub fn unfinished(&self, key: &K) -> usize {
        self.partitions.get(key).map_or(0, |p| p.unfinished.len())
    }

    /// The timestamp of the lowest unfinished record of `key` (where its next commit stands),
    /// if there is one and it has a timestamp.
    pub fn oldest_unfinished_timestamp(&self, key: &K) -> Option<i64> {
        let p = self.partitions.get(key)?;
        p.times.get(p.unfinished.first()?).copied()
    }

    /// Records of `key` the group dead-lettered, over every owner (`carry.rs`).
    pub fn dead_letter_count(&self, key: &K) -> Option<u64> {
        self.partitions
            .get(key)
            .map(|p| p.dead_letters.dead_lettered)
    }

    /// The last acknowledged commit of `key`.
    pub fn last_committed(&self, key: &K) -> Option<NextOffset> {
        self.partitions.get(key).and_then(|p| p.committed)
    }
}

#[cfg(test)]
mod tests;
