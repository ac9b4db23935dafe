//! Handovers: what one owner finished, the next never delivers; what it did not finish, the
//! next always delivers. The progress travels as Kafka stores it: the metadata string.

use proptest::prelude::*;

use super::super::{Dispatched, NextOffset, OffsetTracker, ToCommit};
use crate::progress::{DEFAULT_MAX_LEN, DeadLetterKind, DeadLetterNote, Failure, Progress};

/// The commit of `key` as Kafka would hand it to the next owner: offset and metadata string,
/// parsed again.
fn handover(c: &ToCommit<&'static str>, max_len: usize) -> Option<Progress> {
    let (text, _) = c.progress.encode(max_len);
    Progress::decode(&text, c.next.get())
}

fn commit_of(t: &OffsetTracker<&'static str>, clean: bool) -> ToCommit<&'static str> {
    t.to_commit(None, clean).pop().expect("a commit is due")
}

#[test]
fn records_finished_above_a_blocked_one_are_not_delivered_again() {
    let mut a = OffsetTracker::new();
    let e = a.assign("p0");
    for o in 0..=10 {
        a.dispatched(&"p0", o);
        if o != 3 {
            a.finished(&"p0", e, o);
        }
    }
    let c = commit_of(&a, false);
    assert_eq!(c.next, NextOffset::at(3));

    let mut b = OffsetTracker::new();
    let e = b.assign_with("p0", handover(&c, DEFAULT_MAX_LEN));
    assert!(matches!(b.dispatched(&"p0", 3), Dispatched::Tracked(_)));
    for o in 4..=10 {
        assert_eq!(b.dispatched(&"p0", o), Dispatched::AlreadyFinished, "{o}");
    }
    // Past what the previous owner saw: delivered as usual.
    assert!(matches!(b.dispatched(&"p0", 11), Dispatched::Tracked(_)));
    b.finished(&"p0", e, 3);
    assert_eq!(b.committable(&"p0"), Some(NextOffset::at(11)));
}

#[test]
fn a_change_above_an_unmoved_offset_is_committed() {
    let mut t = OffsetTracker::new();
    let e = t.assign("p0");
    t.dispatched(&"p0", 0);
    t.dispatched(&"p0", 1);
    let first = commit_of(&t, false);
    t.committed(&"p0", first.next, &first.progress);
    assert!(t.to_commit(None, false).is_empty());
    // Record 1 finishes while 0 does not: the offset stays, what it carries changes.
    t.finished(&"p0", e, 1);
    let second = commit_of(&t, false);
    assert_eq!(second.next, first.next);
    assert_ne!(second.progress, first.progress);
}

#[test]
fn attempts_and_crashes_survive_the_handover() {
    let mut a = OffsetTracker::new();
    let e = a.assign("p0");
    a.dispatched(&"p0", 5);
    a.dispatched(&"p0", 6);
    a.attempted(&"p0", e, 5, 2, 1_000, Some(Failure::Status(503)));
    a.in_flight(&"p0", e, 5, true);
    let unclean = commit_of(&a, false);
    let clean = commit_of(&a, true);

    let mut b = OffsetTracker::new();
    b.assign_with("p0", handover(&clean, DEFAULT_MAX_LEN));
    b.dispatched(&"p0", 5);
    let s = b.state(&"p0", 5).expect("state carried");
    assert_eq!(
        (s.attempts, s.first_failure_ms, s.crashes, s.last),
        (2, Some(1_000), 0, Some(Failure::Status(503)))
    );

    // After a crash (the last commit was a periodic one), it was in flight during it.
    let mut c = OffsetTracker::new();
    let ec = c.assign_with("p0", handover(&unclean, DEFAULT_MAX_LEN));
    c.dispatched(&"p0", 5);
    c.dispatched(&"p0", 6);
    assert_eq!(c.state(&"p0", 5).expect("state").crashes, 1);
    // Record 6 was waiting, never sent: a crash does not count against it.
    assert_eq!(c.state(&"p0", 6).unwrap_or_default().crashes, 0);
    // ... and again, once it is in flight with this owner too: the count goes on.
    c.in_flight(&"p0", ec, 5, true);
    let again = commit_of(&c, false);
    let mut d = OffsetTracker::new();
    d.assign_with("p0", handover(&again, DEFAULT_MAX_LEN));
    d.dispatched(&"p0", 5);
    assert_eq!(d.state(&"p0", 5).expect("state").crashes, 2);
}

#[test]
fn what_the_previous_owner_knew_beyond_this_one_is_carried_on() {
    let mut a = OffsetTracker::new();
    let e = a.assign("p0");
    for o in 0..=10 {
        a.dispatched(&"p0", o);
        if o != 3 && o != 7 {
            a.finished(&"p0", e, o);
        }
    }
    let mut b = OffsetTracker::new();
    b.assign_with("p0", handover(&commit_of(&a, false), DEFAULT_MAX_LEN));
    // B crashes after receiving only record 3.
    b.dispatched(&"p0", 3);
    let mut c = OffsetTracker::new();
    c.assign_with("p0", handover(&commit_of(&b, false), DEFAULT_MAX_LEN));
    assert!(matches!(c.dispatched(&"p0", 3), Dispatched::Tracked(_)));
    for o in [4, 5, 6, 8, 9, 10] {
        assert_eq!(c.dispatched(&"p0", o), Dispatched::AlreadyFinished, "{o}");
    }
    assert!(matches!(c.dispatched(&"p0", 7), Dispatched::Tracked(_)));
}

proptest! {
    /// Any history, any handover point, any metadata room: the next owner delivers every
    /// record the first had not finished, and none it had finished unless the metadata had no
    /// room to say so.
    #[test]
    fn a_handover_never_skips_an_unfinished_record_nor_replays_a_listed_finished_one(
        finish in prop::collection::vec(any::<bool>(), 1..300),
        clean in any::<bool>(),
        max_len in prop::sample::select(vec![0usize, 16, 64, DEFAULT_MAX_LEN]),
    ) {
        let mut a = OffsetTracker::new();
        let e = a.assign("p0");
        // Offsets with gaps (compaction): 0, 2, 4, ...
        let offsets: Vec<i64> = (0..finish.len() as i64).map(|i| i * 2).collect();
        for (&o, &done) in offsets.iter().zip(&finish) {
            a.dispatched(&"p0", o);
            if done {
                a.finished(&"p0", e, o);
            }
        }
        let c = commit_of(&a, clean);
        let (text, overflow) = c.progress.encode(max_len);
        prop_assert!(text.len() <= max_len);
        let mut b = OffsetTracker::new();
        b.assign_with("p0", Progress::decode(&text, c.next.get()));
        let mut replayed = 0;
        for (&o, &done) in offsets.iter().zip(&finish) {
            if o < c.next.get() {
                continue;
            }
            match b.dispatched(&"p0", o) {
                Dispatched::AlreadyFinished => prop_assert!(done, "{} skipped, not finished", o),
                Dispatched::Tracked(_) => replayed += usize::from(done),
                other => prop_assert!(false, "{:?}", other),
            }
        }
        if max_len == DEFAULT_MAX_LEN && overflow.records_dropped == 0 {
            prop_assert_eq!(replayed, 0);
        }
    }
}

#[test]
fn an_unchanged_unfinished_partition_is_not_committed_again() {
    let mut t = OffsetTracker::new();
    let e = t.assign("p0");
    t.dispatched(&"p0", 0);
    t.attempted(&"p0", e, 0, 1, 5, Some(Failure::Timeout));
    let c = t.to_commit(None, false);
    assert_eq!(c.len(), 1);
    t.committed(&"p0", c[0].next, &c[0].progress);
    assert!(t.to_commit(None, false).is_empty());
}

#[test]
fn a_late_answer_to_an_earlier_commit_does_not_undo_a_clean_commit() {
    let mut t = OffsetTracker::new();
    let e = t.assign("p0");
    t.dispatched(&"p0", 0);
    let periodic = t.to_commit(None, false).remove(0);
    t.finished(&"p0", e, 0);
    let clean = commit_of(&t, true);
    t.committed(&"p0", clean.next, &clean.progress);
    // An answer to the earlier commit arrives after the shutdown's clean commit.
    t.committed(&"p0", periodic.next, &periodic.progress);
    assert!(
        t.to_commit(None, true).is_empty(),
        "nothing left to commit at the handover"
    );
}

fn note(offset: i64) -> DeadLetterNote {
    DeadLetterNote {
        offset,
        at_ms: 1_000 + offset as u64,
        kind: DeadLetterKind::RetriesExhausted,
        attempts: 5,
        last: Some(Failure::Status(503)),
    }
}

#[test]
fn the_dead_letter_count_goes_on_across_owners_and_a_log_reset() {
    let mut a = OffsetTracker::new();
    let e = a.assign("p0");
    for o in 0..3 {
        a.dispatched(&"p0", o);
    }
    let before = commit_of(&a, false);
    a.dead_lettered(&"p0", e, note(1));
    a.finished(&"p0", e, 1);
    let c = commit_of(&a, false);
    assert_eq!(c.next, before.next, "record 0 is still unfinished");
    assert_ne!(
        c.progress, before.progress,
        "a dead letter makes a commit due"
    );
    assert_eq!(c.progress.dead_lettered, 1);
    // A stale note (another epoch, or a record not unfinished) counts nothing.
    a.dead_lettered(&"p0", e, note(1));
    a.dead_lettered(&"p0", e, note(99));
    assert_eq!(commit_of(&a, false).progress.dead_lettered, 1);

    let mut b = OffsetTracker::new();
    let eb = b.assign_with("p0", handover(&c, DEFAULT_MAX_LEN));
    for o in [0, 2, 3] {
        b.dispatched(&"p0", o);
    }
    b.dead_lettered(&"p0", eb, note(3));
    let c = commit_of(&b, false);
    assert_eq!(c.progress.dead_lettered, 2);
    assert_eq!(
        c.progress
            .notes
            .iter()
            .map(|n| n.offset)
            .collect::<Vec<_>>(),
        [1, 3]
    );
    // The log moves backwards (a recreated topic): what the group dead-lettered stays counted.
    b.dispatched(&"p0", 0);
    assert_eq!(commit_of(&b, false).progress.dead_lettered, 2);
}
