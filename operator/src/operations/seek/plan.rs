//! What a rewind, fast-forward or skip commits: pure, from what the group committed and where
//! each partition starts and ends.
//!
//! Guarantees, each with its test below:
//! - a rewind only moves a partition back, a fast-forward only ahead; a partition already on
//!   the other side of the point asked is left alone (`rewind_never_moves_ahead`,
//!   `fast_forward_never_moves_back`);
//! - a target outside a partition's records is clamped to its start or end
//!   (`targets_are_clamped_to_what_the_partition_holds`);
//! - a skip moves past exactly one record: only when it is the record the group waits for (the
//!   committed offset), and then past every record above it the group's progress already
//!   claims finished, keeping the claims above (`skip_keeps_what_is_finished_above`); a skip
//!   of a record the group is not at is refused with what to do instead
//!   (`skip_refuses_to_skip_more_than_one_record`);
//! - the dead-letter count and notes in the commit's metadata survive every move
//!   (`moves_keep_the_dead_letter_count`).

use kcp_crds::{
    progress::{DEFAULT_MAX_LEN, Progress},
    v1alpha1::OffsetMove,
};

/// Which way a seek may move a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Back,
    Ahead,
}

/// What the group and the partition hold now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionNow {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
    /// The committed offset's metadata (the sidecar's progress; empty when none).
    pub metadata: String,
    /// The oldest offset still kept.
    pub low: i64,
    /// The offset the next produced record gets.
    pub high: i64,
}

/// One commit to make: the move, and the metadata to commit with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub moved: OffsetMove,
    pub metadata: String,
}

/// The commit moving `now` to `target` in `direction`, if it moves.
pub fn seek(now: &PartitionNow, target: i64, direction: Direction) -> Option<Commit> {
    let to = target.clamp(now.low, now.high.max(now.low));
    let moves = match (now.committed, direction) {
        (None, _) => true,
        (Some(c), Direction::Back) => to < c,
        (Some(c), Direction::Ahead) => to > c,
    };
    moves.then(|| Commit {
        moved: OffsetMove {
            topic: now.topic.clone(),
            partition: now.partition,
            from: now.committed,
            to,
        },
        metadata: carried(now, to, None),
    })
}

/// What a skip of `offset` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Commit this: the group moves past the record.
    Move(Commit),
    /// The group is already past the record: nothing to do.
    AlreadyPast { committed: i64 },
    /// Skipping it would skip other records too; the message says what to do instead.
    Refused(String),
}

/// Plans the skip of the record at `offset` of `now`'s partition.
pub fn skip(now: &PartitionNow, offset: i64) -> Skip {
    let committed = match now.committed {
        Some(c) => c,
        // No commit yet: the group starts at the partition's start, so only that record is next.
        None if offset == now.low => now.low,
        None => {
            return Skip::Refused(format!(
                "the group has no committed offset on {}/{}: it starts at its oldest record ({}), \
                 not at {offset}; skip offset {} or fast-forward to {}",
                now.topic,
                now.partition,
                now.low,
                now.low,
                offset + 1
            ));
        }
    };
    if committed > offset {
        return Skip::AlreadyPast { committed };
    }
    if committed < offset {
        return Skip::Refused(format!(
            "{}/{} is at offset {committed}, not {offset}: skipping {offset} would also skip the \
             records from {committed} to {}; skip offset {committed} first, or fast-forward with \
             toOffset {}",
            now.topic,
            now.partition,
            offset - 1,
            offset + 1
        ));
    }
    if offset >= now.high {
        return Skip::Refused(format!(
            "{}/{} has no record at offset {offset} yet (its end is {}): nothing waits there",
            now.topic, now.partition, now.high
        ));
    }
    let progress = now
        .committed
        .and_then(|c| Progress::decode(&now.metadata, c));
    // Past the skipped record and every record above it already finished.
    let mut to = offset + 1;
    if let Some(p) = &progress {
        while to <= p.highest && p.is_finished(to) {
            to += 1;
        }
    }
    Skip::Move(Commit {
        moved: OffsetMove {
            topic: now.topic.clone(),
            partition: now.partition,
            from: now.committed,
            to,
        },
        metadata: carried(now, to, progress),
    })
}

/// The metadata to commit with `to`: the dead-letter count and notes of the current progress,
/// and, for a skip (`above` given), the claims above `to`.
fn carried(now: &PartitionNow, to: i64, above: Option<Progress>) -> String {
    let Some(old) = above.or_else(|| {
        now.committed
            .and_then(|c| Progress::decode(&now.metadata, c))
    }) else {
        return String::new();
    };
    let keep_claims = old.highest >= to && now.committed.is_some_and(|c| c <= to);
    let next = Progress {
        committed: to,
        highest: if keep_claims { old.highest } else { to - 1 },
        unfinished: if keep_claims {
            old.unfinished.range(to..).map(|(k, v)| (*k, *v)).collect()
        } else {
            Default::default()
        },
        // Written while no member runs: nothing is in flight.
        clean: true,
        dead_lettered: old.dead_lettered,
        notes: old.notes,
        outage: None,
    };
    next.encode(DEFAULT_MAX_LEN).0
}

#[cfg(test)]
mod tests;
