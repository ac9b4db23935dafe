use std::collections::BTreeMap;

use kcp_crds::progress::{DeadLetterKind, DeadLetterNote, RecordState};

use super::*;

fn now(committed: Option<i64>, low: i64, high: i64) -> PartitionNow {
    PartitionNow {
        topic: "orders".into(),
        partition: 2,
        committed,
        metadata: String::new(),
        low,
        high,
    }
}

fn progress(committed: i64, highest: i64, unfinished: &[i64], dead_lettered: u64) -> String {
    Progress {
        committed,
        highest,
        unfinished: unfinished
            .iter()
            .map(|&o| (o, RecordState::default()))
            .collect::<BTreeMap<_, _>>(),
        clean: false,
        dead_lettered,
        notes: vec![DeadLetterNote {
            offset: committed - 1,
            at_ms: 5,
            kind: DeadLetterKind::Refused,
            attempts: 1,
            last: None,
        }],
        outage: None,
    }
    .encode(DEFAULT_MAX_LEN)
    .0
}

fn to(c: Option<Commit>) -> Option<(Option<i64>, i64)> {
    c.map(|c| (c.moved.from, c.moved.to))
}

#[test]
fn rewind_never_moves_ahead() {
    let p = now(Some(50), 0, 100);
    assert_eq!(to(seek(&p, 10, Direction::Back)), Some((Some(50), 10)));
    assert_eq!(to(seek(&p, 50, Direction::Back)), None);
    assert_eq!(to(seek(&p, 70, Direction::Back)), None);
}

#[test]
fn fast_forward_never_moves_back() {
    let p = now(Some(50), 0, 100);
    assert_eq!(to(seek(&p, 70, Direction::Ahead)), Some((Some(50), 70)));
    assert_eq!(to(seek(&p, 50, Direction::Ahead)), None);
    assert_eq!(to(seek(&p, 10, Direction::Ahead)), None);
}

#[test]
fn a_partition_without_a_commit_always_gets_one() {
    let p = now(None, 0, 100);
    assert_eq!(to(seek(&p, 30, Direction::Back)), Some((None, 30)));
    assert_eq!(to(seek(&p, 30, Direction::Ahead)), Some((None, 30)));
}

#[test]
fn targets_are_clamped_to_what_the_partition_holds() {
    let p = now(Some(50), 20, 100);
    assert_eq!(to(seek(&p, 3, Direction::Back)), Some((Some(50), 20)));
    assert_eq!(to(seek(&p, 400, Direction::Ahead)), Some((Some(50), 100)));
}

#[test]
fn moves_keep_the_dead_letter_count() {
    let mut p = now(Some(50), 0, 100);
    p.metadata = progress(50, 60, &[55], 7);
    let c = seek(&p, 10, Direction::Back).expect("moves back");
    let after = Progress::decode(&c.metadata, 10).expect("metadata readable at the new offset");
    assert_eq!(after.dead_lettered, 7);
    assert_eq!(after.notes.len(), 1);
    // A rewind claims nothing finished: everything from 10 is delivered again.
    assert!(!after.is_finished(10) && !after.is_finished(55) && !after.is_finished(56));
}

#[test]
fn skip_moves_past_the_record_the_group_waits_for() {
    let p = now(Some(41), 0, 100);
    assert_eq!(
        skip(&p, 41),
        Skip::Move(Commit {
            moved: OffsetMove {
                topic: "orders".into(),
                partition: 2,
                from: Some(41),
                to: 42
            },
            metadata: String::new(),
        })
    );
}

#[test]
fn skip_keeps_what_is_finished_above() {
    // Key order: 41 stuck, 42 and 43 delivered, 44 unfinished, 45 delivered, up to 45 taken.
    let mut p = now(Some(41), 0, 100);
    p.metadata = progress(41, 45, &[41, 44], 2);
    let Skip::Move(c) = skip(&p, 41) else {
        panic!("expected a move, got {:?}", skip(&p, 41));
    };
    assert_eq!((c.moved.from, c.moved.to), (Some(41), 44));
    let after = Progress::decode(&c.metadata, 44).expect("readable");
    assert!(!after.is_finished(44), "44 is still to deliver");
    assert!(after.is_finished(45), "45 stays finished");
    assert_eq!(after.dead_lettered, 2);
}

#[test]
fn skip_refuses_to_skip_more_than_one_record() {
    let p = now(Some(41), 0, 100);
    match skip(&p, 45) {
        Skip::Refused(why) => {
            assert!(why.contains("records from 41 to 44"), "{why}");
            assert!(why.contains("skip offset 41 first"), "{why}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(skip(&p, 40), Skip::AlreadyPast { committed: 41 });
    assert!(matches!(skip(&now(None, 10, 100), 12), Skip::Refused(_)));
    assert!(matches!(skip(&now(None, 10, 100), 10), Skip::Move(_)));
    assert!(matches!(
        skip(&now(Some(100), 10, 100), 100),
        Skip::Refused(_)
    ));
}
