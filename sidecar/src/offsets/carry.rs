//! What a commit carries above its offset, so the next owner of a partition neither delivers a
//! finished record again nor starts a record's retries over.
//!
//! The committed offset is the lowest unfinished record; records finished above it (other keys,
//! other lanes) used to be delivered again after every crash and rebalance. Each commit now
//! carries a [`Progress`] in Kafka's offset metadata (`progress.rs` encodes it): the highest
//! record dispatched, and each record still unfinished below it with its retry state. Everything
//! else in that range is finished. The next owner reads it at assignment
//! ([`OffsetTracker::assign_with`]) and counts listed-finished records as finished on arrival
//! ([`Dispatched::AlreadyFinished`](super::Dispatched)), never sending them.
//!
//! A commit is due when its offset moved *or* what it carries changed (records finished above a
//! record that does not finish, a retry counted). What the previous owner said of records this
//! owner has not received yet is carried on, so a second handover loses nothing.
//!
//! **Crashes.** A commit made by a graceful handover (a revoke or the shutdown, after the
//! drain) is marked clean; the periodic ones are not. An assignment whose last commit is not
//! clean follows a crash (or a lost session): every record that commit listed as *in flight* (a
//! request with it was in progress, [`OffsetTracker::in_flight`]) was in flight during that
//! crash, and its crash count goes up by one ([`after_handover`]). Records only waiting behind
//! it are not counted: they were never sent.

use std::hash::Hash;

use super::{NextOffset, OffsetTracker, PartitionOffsets};
use crate::progress::{DeadLetterNote, Failure, OutageNote, Progress, RecordState};

/// One partition's commit: where to resume, and what is known above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToCommit<K> {
    pub key: K,
    pub next: NextOffset,
    pub progress: Progress,
}

/// The progress a new owner starts from: after an unclean commit (the owner crashed), each
/// listed unfinished record was in flight or waiting during that crash.
pub(super) fn after_handover(mut inherited: Progress) -> Progress {
    for state in inherited.unfinished.values_mut() {
        if state.in_flight && !inherited.clean {
            state.crashes = state.crashes.saturating_add(1);
        }
        // In flight with the previous owner, not with this one.
        state.in_flight = false;
    }
    inherited
}

impl PartitionOffsets {
    /// Where to resume and what is known above it, or `None` before anything was dispatched.
    fn progress(&self, clean: bool, outage: Option<OutageNote>) -> Option<(NextOffset, Progress)> {
        let next = self.committable()?;
        let mut highest = self.highest?;
        let mut unfinished: std::collections::BTreeMap<i64, RecordState> = self
            .unfinished
            .iter()
            .map(|o| (*o, self.states.get(o).copied().unwrap_or_default()))
            .collect();
        if let Some(inherited) = &self.inherited
            && inherited.highest > highest
        {
            // Not received yet by this owner: what the previous one knew still holds.
            unfinished.extend(inherited.unfinished.range(highest + 1..));
            highest = inherited.highest;
        }
        Some((
            next,
            Progress {
                committed: next.get(),
                highest,
                unfinished,
                clean,
                dead_lettered: self.dead_letters.dead_lettered,
                notes: self.dead_letters.notes.clone(),
                outage,
            },
        ))
    }
}

impl<K: Eq + Hash + Clone> OffsetTracker<K> {
    /// Partitions whose commit is due: the offset moved past the last commit Kafka
    /// acknowledged, or what the commit carries changed. `only` restricts the answer to some
    /// partitions; `clean` marks a graceful handover (revoke, shutdown).
    pub fn to_commit(&self, only: Option<&[K]>, clean: bool) -> Vec<ToCommit<K>> {
        let wanted = |k: &K| only.is_none_or(|keys| keys.contains(k));
        self.partitions
            .iter()
            .filter(|(k, _)| wanted(k))
            .filter_map(|(k, p)| {
                let (next, progress) = p.progress(clean, self.outage)?;
                let due = match p.committed {
                    None => true,
                    Some(c) => {
                        next > c || (next == c && p.committed_progress.as_ref() != Some(&progress))
                    }
                };
                due.then(|| ToCommit {
                    key: k.clone(),
                    next,
                    progress,
                })
            })
            .collect()
    }

    /// The endpoint outage going on (`outage.rs`), or `None`: every partition's next commit
    /// says so, for the operator's status.
    pub fn set_outage(&mut self, outage: Option<OutageNote>) {
        self.outage = outage;
    }

    /// Records that Kafka acknowledged a commit of `next` for `key`, carrying `progress`.
    pub fn committed(&mut self, key: &K, next: NextOffset, progress: &Progress) {
        if let Some(p) = self.partitions.get_mut(key)
            && p.committed.is_none_or(|c| next >= c)
        {
            p.committed_progress = Some(progress.clone());
            p.committed = Some(next);
        }
    }

    /// Records a failed attempt of an unfinished record: its attempt count, first failure and
    /// how the last one failed travel with the next commit, so a new owner goes on counting
    /// and the operator can say why the partition does not move.
    pub fn attempted(
        &mut self,
        key: &K,
        epoch: super::Epoch,
        offset: i64,
        attempts: u32,
        first_failure_ms: u64,
        last: Option<Failure>,
    ) {
        if let Some(p) = self.partitions.get_mut(key)
            && p.epoch == epoch
            && p.unfinished.contains(&offset)
        {
            let s = p.states.entry(offset).or_default();
            s.attempts = attempts;
            s.first_failure_ms.get_or_insert(first_failure_ms);
            s.last = last;
        }
    }

    /// Records that an unfinished record of this assignment was dead-lettered (before it is
    /// marked finished): the partition's next commit counts it and names it among the newest.
    pub fn dead_lettered(&mut self, key: &K, epoch: super::Epoch, note: DeadLetterNote) {
        if let Some(p) = self.partitions.get_mut(key)
            && p.epoch == epoch
            && p.unfinished.contains(&note.offset)
        {
            p.dead_letters.note_dead_letter(note);
        }
    }

    /// A request with an unfinished record starts (`true`) or ends: the commits meanwhile say
    /// it is in flight, so a crash now counts against it.
    pub fn in_flight(&mut self, key: &K, epoch: super::Epoch, offset: i64, in_flight: bool) {
        if let Some(p) = self.partitions.get_mut(key)
            && p.epoch == epoch
            && p.unfinished.contains(&offset)
        {
            let state = p.states.entry(offset).or_default();
            state.in_flight = in_flight;
            // Most records succeed at once: keep only states worth carrying.
            if *state == RecordState::default() {
                p.states.remove(&offset);
            }
        }
    }

    /// What is known of an unfinished record from earlier owners or attempts.
    pub fn state(&self, key: &K, offset: i64) -> Option<RecordState> {
        self.partitions.get(key)?.states.get(&offset).copied()
    }
}
