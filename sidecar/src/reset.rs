//! Where a partition starts, and what happens when its position is out of range.
//!
//! The consumer runs with `auto.offset.reset=earliest` (`consumer.rs`): librdkafka resumes a
//! partition whose position is out of range (retention deleted the records, the topic was
//! truncated or recreated) at the earliest retained record, never at the end, which would skip
//! records still in the log. `kafka.initialOffset` applies only to a partition the group never
//! committed on: at assignment ([`start_offsets`]), `latest` sets such partitions to the end.
//!
//! librdkafka tells of an out-of-range reset only in a log line. [`Resets`] keeps the offset
//! it was at ([`parse_reset`] reads the line) until the partition's next record arrives, which
//! says where it resumed: the sidecar then logs at ERROR how many records were removed before
//! they were delivered and counts the reset in `kcp_offset_resets_total`.
//!
//! Pure, except for [`Resets`]' lock.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
};

use kcp_crds::v1alpha1::InitialOffset;
use rdkafka::Offset;

use crate::record::Tp;

/// Where each newly assigned partition starts: `committed` holds the group's committed offset
/// per partition (`None` when it has none). A partition with a commit resumes there; one
/// without starts at the end with `latest`, and at the earliest record otherwise (librdkafka's
/// reset policy, so nothing is set for it).
pub fn start_offsets(committed: &[(Tp, Option<i64>)], initial: InitialOffset) -> Vec<(Tp, Offset)> {
    match initial {
        InitialOffset::Earliest => Vec::new(),
        InitialOffset::Latest => committed
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(tp, _)| (tp.clone(), Offset::End))
            .collect(),
    }
}

/// A librdkafka log line about an out-of-range reset: the partition and the offset it was at.
/// librdkafka writes `[thrd:<name>]: <topic> [<partition>]: offset reset (at offset <n>
/// (leader epoch <e>), broker <b>) to ...` (the thread prefix with `log.thread.name`). The
/// facility and level it arrives with vary (`OFFSET` at WARNING, or a debug line), so only the
/// text is read. A partition with no committed offset is reset "at offset INVALID": not matched.
pub fn parse_reset(message: &str) -> Option<(Tp, i64)> {
    let message = match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ")?.1,
        None => message,
    };
    let (head, rest) = message.split_once(": offset reset (at offset ")?;
    let (topic, partition) = head.strip_suffix(']')?.rsplit_once(" [")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((
        Tp::new(topic, partition.parse().ok()?),
        digits.parse().ok()?,
    ))
}

/// What the first record after an out-of-range reset showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// The offset the partition was at.
    pub was: i64,
    /// The offset it resumed at (the earliest retained record).
    pub at: i64,
    /// Records between the two that were never delivered (0 when the log moved backwards).
    pub removed: i64,
}

/// Out-of-range resets waiting for their partition's next record. Asked once per record, so
/// the common case (none pending) reads one atomic and takes no lock.
#[derive(Debug, Default)]
pub struct Resets {
    pending: Mutex<HashMap<Tp, i64>>,
    count: AtomicUsize,
}

impl Resets {
    /// librdkafka reset `tp`, which was at offset `was`.
    pub fn reported(&self, tp: Tp, was: i64) {
        let mut pending = self.lock();
        pending.insert(tp, was);
        self.count.store(pending.len(), Relaxed);
    }

    /// The record at `offset` arrived on `tp`: if a reset was pending there, what it did.
    pub fn resumed(&self, tp: &Tp, offset: i64) -> Option<Resumed> {
        if self.count.load(Relaxed) == 0 {
            return None;
        }
        let mut pending = self.lock();
        let was = pending.remove(tp);
        self.count.store(pending.len(), Relaxed);
        let was = was?;
        Some(Resumed {
            was,
            at: offset,
            removed: (offset - was).max(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Tp, i64>> {
        self.pending
            .lock()
            .expect("invariant: resets lock never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        Tp::new("orders", p)
    }

    #[test]
    fn latest_applies_only_to_partitions_without_a_commit() {
        let committed = [(tp(0), Some(5)), (tp(1), None)];
        assert_eq!(
            start_offsets(&committed, InitialOffset::Latest),
            vec![(tp(1), Offset::End)]
        );
        assert!(start_offsets(&committed, InitialOffset::Earliest).is_empty());
    }

    #[test]
    fn librdkafkas_reset_line_names_the_partition_and_where_it_was() {
        let line = "my.topic-1 [3]: offset reset (at offset 5 (leader epoch -1), broker 1) to offset BEGINNING (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(parse_reset(line), Some((Tp::new("my.topic-1", 3), 5)));
        // As it arrives with `log.thread.name` (librdkafka's default).
        assert_eq!(
            parse_reset(&format!("[thrd:main]: {line}")),
            Some((Tp::new("my.topic-1", 3), 5))
        );
        assert_eq!(
            parse_reset("[thrd:main]: orders [0]: offset reset (at offset INVALID, broker 1)"),
            None
        );
        assert_eq!(parse_reset("something else"), None);
    }

    #[test]
    fn the_next_record_says_how_many_were_removed() {
        let r = Resets::default();
        r.reported(tp(0), 5);
        assert_eq!(r.resumed(&tp(1), 1000), None, "another partition");
        assert_eq!(
            r.resumed(&tp(0), 1000),
            Some(Resumed {
                was: 5,
                at: 1000,
                removed: 995
            })
        );
        assert_eq!(r.resumed(&tp(0), 1001), None, "reported once");
        // A truncated or recreated topic: the log moved backwards, nothing skipped.
        r.reported(tp(0), 700);
        assert_eq!(r.resumed(&tp(0), 0).map(|x| x.removed), Some(0));
    }
}
