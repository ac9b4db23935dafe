use proptest::prelude::*;

use super::*;

#[test]
fn next_offset_after_adds_one_and_at_does_not() {
    assert_eq!(NextOffset::after(41).get(), 42);
    assert_eq!(NextOffset::at(41).get(), 41);
    assert_eq!(NextOffset::after(i64::MAX).get(), i64::MAX);
}

#[test]
fn nothing_dispatched_means_nothing_to_commit() {
    let mut t = OffsetTracker::new();
    t.assign("p0");
    assert_eq!(t.committable(&"p0"), None);
    assert!(t.to_commit(None, false).is_empty());
}

#[test]
fn commit_stops_at_lowest_unfinished_across_gaps() {
    let mut t = OffsetTracker::new();
    let e = t.assign("p0");
    for o in [10, 13, 20] {
        assert!(matches!(t.dispatched(&"p0", o), Dispatched::Tracked(_)));
    }
    assert!(t.finished(&"p0", e, 13));
    assert_eq!(t.committable(&"p0"), Some(NextOffset::at(10)));
    assert!(t.finished(&"p0", e, 10));
    assert_eq!(t.committable(&"p0"), Some(NextOffset::at(20)));
    assert!(t.finished(&"p0", e, 20));
    // Offset 21 may not exist (compaction): the commit is still highest + 1.
    assert_eq!(t.committable(&"p0"), Some(NextOffset::after(20)));
}

#[test]
fn stale_epoch_and_unknown_partitions_change_nothing() {
    let mut t = OffsetTracker::new();
    let old = t.assign("p0");
    t.dispatched(&"p0", 5);
    let new = t.assign("p0");
    assert_ne!(old, new);
    t.dispatched(&"p0", 5);
    assert!(!t.finished(&"p0", old, 5));
    assert_eq!(t.committable(&"p0"), Some(NextOffset::at(5)));
    assert_eq!(t.dispatched(&"p9", 1), Dispatched::NotAssigned);
    assert!(!t.finished(&"p9", new, 1));
}

#[test]
fn a_refetched_unfinished_offset_is_not_tracked_twice() {
    let mut t = OffsetTracker::new();
    t.assign("p0");
    assert!(matches!(t.dispatched(&"p0", 7), Dispatched::Tracked(_)));
    assert_eq!(t.dispatched(&"p0", 7), Dispatched::AlreadyUnfinished);
}

#[test]
fn to_commit_skips_what_was_already_committed() {
    let mut t = OffsetTracker::new();
    let e = t.assign("p0");
    t.assign("p1");
    t.dispatched(&"p0", 1);
    t.finished(&"p0", e, 1);
    let due = t.to_commit(None, false);
    assert_eq!(
        due.iter().map(|c| (c.key, c.next)).collect::<Vec<_>>(),
        vec![("p0", NextOffset::after(1))]
    );
    assert_eq!(
        t.to_commit(None, false),
        due,
        "not acknowledged: the next commit sends it again"
    );
    t.committed(&"p0", due[0].next, &due[0].progress);
    assert!(t.to_commit(None, false).is_empty());
    assert_eq!(t.last_committed(&"p0"), Some(NextOffset::after(1)));
    assert!(t.to_commit(Some(&["p1"]), false).is_empty());
}

#[test]
fn revoke_reports_unfinished_and_forgets() {
    let mut t = OffsetTracker::new();
    t.assign("p0");
    t.dispatched(&"p0", 1);
    t.dispatched(&"p0", 2);
    assert_eq!(t.revoke(&"p0"), 2);
    assert_eq!(t.committable(&"p0"), None);
}

/// Strictly increasing offsets with random gaps (compaction) and a random sequence of steps:
/// `(true, _)` dispatches the next offset, `(false, i)` finishes the `i`-th unfinished one.
fn scenario() -> impl Strategy<Value = (Vec<i64>, Vec<(bool, usize)>)> {
    let offsets = prop::collection::vec(1i64..5, 1..60).prop_map(|gaps| {
        gaps.iter()
            .scan(-1i64, |acc, g| {
                *acc += g;
                Some(*acc)
            })
            .collect::<Vec<_>>()
    });
    let steps = prop::collection::vec((any::<bool>(), any::<usize>()), 0..200);
    (offsets, steps)
}

/// The property: the committable offset never passes an unfinished dispatched offset, nor the
/// highest dispatched + 1.
fn check(
    t: &OffsetTracker<u8>,
    offsets: &[i64],
    dispatched: usize,
    unfinished: &[i64],
) -> Result<(), TestCaseError> {
    match t.committable(&0) {
        None => prop_assert_eq!(dispatched, 0),
        Some(next) => {
            for &o in unfinished {
                prop_assert!(next.get() <= o, "commit {} passes unfinished {}", next, o);
            }
            prop_assert!(next.get() <= offsets[dispatched - 1] + 1);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn commit_never_passes_an_unfinished_record((offsets, steps) in scenario()) {
        let mut t = OffsetTracker::new();
        let e = t.assign(0u8);
        let mut dispatched = 0usize;
        let mut unfinished: Vec<i64> = Vec::new();
        let step = |t: &mut OffsetTracker<u8>, dispatch: bool, pick: usize, dispatched: &mut usize, unfinished: &mut Vec<i64>| -> Result<(), TestCaseError> {
            if (dispatch || unfinished.is_empty()) && *dispatched < offsets.len() {
                prop_assert!(matches!(t.dispatched(&0, offsets[*dispatched]), Dispatched::Tracked(_)));
                unfinished.push(offsets[*dispatched]);
                *dispatched += 1;
            } else if !unfinished.is_empty() {
                let o = unfinished.swap_remove(pick % unfinished.len());
                prop_assert!(t.finished(&0, e, o));
            }
            check(t, &offsets, *dispatched, unfinished)
        };
        for (dispatch, pick) in steps {
            step(&mut t, dispatch, pick, &mut dispatched, &mut unfinished)?;
        }
        // Drain: dispatch the rest, finish everything (in a scrambled order via swap_remove).
        let mut pick = 7usize;
        while dispatched < offsets.len() || !unfinished.is_empty() {
            pick = pick.wrapping_mul(31).wrapping_add(3);
            step(&mut t, false, pick, &mut dispatched, &mut unfinished)?;
        }
        let highest = *offsets.last().expect("invariant: at least one offset");
        prop_assert_eq!(t.committable(&0), Some(NextOffset::after(highest)));
        prop_assert_eq!(t.unfinished(&0), 0);
    }
}

/// After log truncation or a recreated topic the partition's offsets start again below what was
/// dispatched. The old `highest` must not let a commit jump over records of the new log.
#[test]
fn a_backward_move_forgets_the_old_log_and_never_commits_past_the_new_one() {
    let mut t = OffsetTracker::new();
    let old = t.assign("p0");
    for o in 100..=105 {
        assert_eq!(t.dispatched(&"p0", o), Dispatched::Tracked(old));
    }
    for o in 100..=104 {
        assert!(t.finished(&"p0", old, o));
    }
    // 105 is still in flight when the log restarts at 3.
    let Dispatched::Tracked(new) = t.dispatched(&"p0", 3) else {
        panic!("a backward move is tracked");
    };
    assert_ne!(new, old, "a backward move starts a new epoch");
    assert_eq!(t.committable(&"p0"), Some(NextOffset::at(3)));
    assert!(
        !t.finished(&"p0", old, 105),
        "the old log's completion is ignored"
    );
    assert_eq!(t.committable(&"p0"), Some(NextOffset::at(3)));
    assert!(t.finished(&"p0", new, 3));
    assert_eq!(
        t.committable(&"p0"),
        Some(NextOffset::after(3)),
        "commit follows the new log, not the old highest (105)"
    );
}

mod carry;
