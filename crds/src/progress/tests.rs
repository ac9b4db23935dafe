use proptest::{collection::vec, prelude::*};

use super::*;

fn progress(
    committed: i64,
    highest: i64,
    unfinished: &[(i64, RecordState)],
    clean: bool,
) -> Progress {
    Progress {
        committed,
        highest,
        unfinished: unfinished.iter().copied().collect(),
        clean,
        ..Progress::default()
    }
}

fn failing(attempts: u32, first_failure_ms: u64, crashes: u32) -> RecordState {
    RecordState {
        attempts,
        first_failure_ms: Some(first_failure_ms),
        crashes,
        in_flight: crashes % 2 == 1,
        last: Some(Failure::Status(503)),
    }
}

/// Version-1 metadata made of raw bytes, to hand `decode` what `encode` would never write.
fn raw(bytes: &[u8]) -> String {
    format!("{PREFIX_V1}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The same in the current version.
fn raw2(bytes: &[u8]) -> String {
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn round_trip(p: &Progress) -> Progress {
    let (text, overflow) = p.encode(DEFAULT_MAX_LEN);
    assert_eq!(overflow, Overflow::default(), "{p:?} fits");
    assert!(text.len() <= DEFAULT_MAX_LEN);
    Progress::decode(&text, p.committed).expect("what encode writes decodes")
}

#[test]
fn nothing_dispatched_round_trips_as_five_bytes() {
    let p = progress(42, 41, &[], false);
    // Flags, span, dead-letter count, notes, entries.
    assert_eq!(p.encode(DEFAULT_MAX_LEN).0, "kcp2:AAAAAAA");
    assert_eq!(round_trip(&p), p);
    assert!(!p.is_finished(41) && !p.is_finished(42));
}

#[test]
fn one_unfinished_record_at_committed_round_trips() {
    let p = progress(100, 100, &[(100, RecordState::default())], true);
    let q = round_trip(&p);
    assert_eq!(q, p);
    assert!(!q.is_finished(100));
    assert_eq!(q.state(100), Some(RecordState::default()));
}

#[test]
fn many_entries_with_states_and_the_clean_flag_round_trip() {
    let entries = [
        (1_000, failing(3, 1_700_000_000_000, 0)),
        (1_001, RecordState::default()),
        (1_005, failing(u32::MAX, u64::MAX, u32::MAX)),
        (1_006, failing(1, 0, 2)),
        (
            9_999,
            RecordState {
                attempts: 0,
                first_failure_ms: None,
                crashes: 7,
                in_flight: true,
                last: Some(Failure::Timeout),
            },
        ),
    ];
    for clean in [false, true] {
        let p = progress(1_000, 12_000, &entries, clean);
        let q = round_trip(&p);
        assert_eq!(q, p);
        assert_eq!(q.clean, clean);
        assert_eq!(q.state(1_005), Some(failing(u32::MAX, u64::MAX, u32::MAX)));
    }
}

#[test]
fn finished_means_in_range_and_not_listed() {
    let p = progress(
        10,
        20,
        &[(10, RecordState::default()), (13, failing(2, 5, 1))],
        false,
    );
    assert!(!p.is_finished(9), "below committed: not ours to claim");
    assert!(!p.is_finished(10), "committed is unfinished");
    assert!(
        p.is_finished(11) && p.is_finished(12),
        "gap between unfinished records"
    );
    assert!(!p.is_finished(13));
    assert!((14..=20).all(|o| p.is_finished(o)));
    assert!(!p.is_finished(21), "above highest: never dispatched");
    assert_eq!(p.state(13), Some(failing(2, 5, 1)));
    assert_eq!(p.state(11), None);
    assert_eq!(p.state(21), None);
}

#[test]
fn ten_thousand_unfinished_keep_the_lowest_that_fit_and_claim_nothing_above() {
    let c = 5_000_000_000;
    let entries: Vec<(i64, RecordState)> = (0..10_000u32)
        .map(|i| {
            (
                c + 2 * i64::from(i),
                failing(1 + i % 5, 1_760_000_000_000 + u64::from(i), i % 2),
            )
        })
        .collect();
    let p = progress(c, c + 30_000, &entries, false);
    let (text, overflow) = p.encode(DEFAULT_MAX_LEN);
    assert!(text.len() <= DEFAULT_MAX_LEN);
    assert!(
        text.len() > DEFAULT_MAX_LEN - 16,
        "fills the budget: {} bytes",
        text.len()
    );
    let q = Progress::decode(&text, c).expect("decodes");
    let listed = q.unfinished.len();
    assert!(listed > 100, "{listed} entries listed");
    assert_eq!(listed + overflow.records_dropped, entries.len());
    assert!(
        q.unfinished
            .iter()
            .map(|(&o, &s)| (o, s))
            .eq(entries[..listed].iter().copied())
    );
    let first_left_out = entries[listed].0;
    assert_eq!(q.highest, first_left_out - 1);
    // No wrong skip: nothing from the first entry left out upwards is claimed finished.
    assert!((first_left_out..=p.highest + 1).all(|o| !q.is_finished(o)));
    // Below it, the finished gaps are still skipped.
    assert!(q.is_finished(c + 1) && q.is_finished(first_left_out - 1));
}

#[test]
fn a_blocked_key_with_a_hundred_thousand_finished_above_it_takes_a_few_bytes() {
    let c = 7_000_000;
    let p = progress(
        c,
        c + 100_000,
        &[(c, failing(12, 1_760_000_000_000, 1))],
        false,
    );
    let (text, overflow) = p.encode(DEFAULT_MAX_LEN);
    assert_eq!(overflow, Overflow::default());
    assert!(text.len() <= 32, "{text}");
    let q = Progress::decode(&text, c).expect("decodes");
    assert_eq!(q, p);
    assert!(!q.is_finished(c));
    assert!((c + 1..=c + 100_000).all(|o| q.is_finished(o)));
    assert!(!q.is_finished(c + 100_001));
}

#[test]
fn too_small_a_limit_claims_nothing() {
    let p = progress(
        10,
        20,
        &[(10, RecordState::default()), (12, RecordState::default())],
        true,
    );
    // Five header bytes are seven base64 characters.
    for max_len in 0..PREFIX.len() + 7 {
        assert_eq!(
            p.encode(max_len),
            (
                String::new(),
                Overflow {
                    records_dropped: 2,
                    notes_dropped: 0
                }
            )
        );
    }
    // The header alone: no entry, and the claim ends below the first unfinished record.
    let (text, overflow) = p.encode(PREFIX.len() + 7);
    assert_eq!(
        overflow,
        Overflow {
            records_dropped: 2,
            notes_dropped: 0
        }
    );
    let q = Progress::decode(&text, 10).expect("decodes");
    assert_eq!(q, progress(10, 9, &[], true));
}

#[test]
fn inconsistent_values_encode_without_claiming_more() {
    // Entries outside committed..=highest and highest far below committed.
    let p = progress(
        10,
        3,
        &[(5, RecordState::default()), (11, RecordState::default())],
        false,
    );
    let (text, overflow) = p.encode(DEFAULT_MAX_LEN);
    assert_eq!(
        overflow,
        Overflow {
            records_dropped: 2,
            notes_dropped: 0
        }
    );
    assert_eq!(
        Progress::decode(&text, 10),
        Some(progress(10, 9, &[], false))
    );
}

#[test]
fn decode_rejects_what_is_not_ours() {
    for text in [
        "",
        "kcp1:",
        "kcp2:AAAA",
        "kcp3:AAAAAAA",
        "KCP1:AAAA",
        "AAAA",
        "{\"app\":1}",
        " kcp1:AAAA",
    ] {
        assert_eq!(Progress::decode(text, 0), None, "{text:?}");
    }
}

#[test]
fn decode_rejects_bad_base64() {
    for text in [
        "kcp1:A",
        "kcp1:AAA=",
        "kcp1:AA==",
        "kcp1:AA+A",
        "kcp1:AA/A",
        "kcp1:AA A",
        "kcp1:AAAA\n",
        "kcp1:AAB",
        "kcp1:ÄÄÄÄ",
    ] {
        assert_eq!(Progress::decode(text, 0), None, "{text:?}");
    }
    assert!(
        Progress::decode("kcp1:AAAA", 0).is_some(),
        "the valid form of the same length"
    );
}

#[test]
fn decode_rejects_truncated_and_trailing_bytes() {
    // flags, span 10, two entries: (delta 0, 1 attempt, failed at 4, 0 crashes), (delta 2, 0,
    // none, 1 crash not in flight: crashes * 2 + in_flight = 2).
    let bytes = [1, 10, 2, 0, 1, 5, 0, 2, 0, 0, 2];
    let q = Progress::decode(&raw(&bytes), 50).expect("the whole decodes");
    assert_eq!(
        q,
        progress(
            50,
            59,
            &[
                (
                    50,
                    RecordState {
                        last: None,
                        ..failing(1, 4, 0)
                    },
                ),
                (
                    53,
                    RecordState {
                        crashes: 1,
                        ..RecordState::default()
                    }
                )
            ],
            true
        )
    );
    for len in 0..bytes.len() {
        assert_eq!(
            Progress::decode(&raw(&bytes[..len]), 50),
            None,
            "cut at {len}"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(Progress::decode(&raw(&longer), 50), None);
}

#[test]
fn decode_rejects_entries_that_do_not_increase_or_leave_the_range() {
    // A delta of u64::MAX would wrap to the previous offset with 64-bit arithmetic.
    let wrap = [
        0x80 | 0x7f,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0x01,
    ];
    let mut backwards = vec![0, 100, 2, 5, 0, 0, 0];
    backwards.extend(wrap);
    backwards.extend([0, 0, 0]);
    assert_eq!(Progress::decode(&raw(&backwards), 0), None);
    // Above highest: span 3 is committed..=committed + 2; an entry at committed + 3.
    assert_eq!(Progress::decode(&raw(&[0, 3, 1, 3, 0, 0, 0]), 0), None);
    assert!(Progress::decode(&raw(&[0, 3, 1, 2, 0, 0, 0]), 0).is_some());
    // Two entries where the second passes highest.
    assert_eq!(
        Progress::decode(&raw(&[0, 3, 2, 1, 0, 0, 0, 1, 0, 0, 0]), 0),
        None
    );
    assert!(Progress::decode(&raw(&[0, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0]), 0).is_some());
    // Offsets past i64::MAX: highest itself, then an entry.
    assert_eq!(Progress::decode(&raw(&[0, 2, 0]), i64::MAX), None);
    assert!(Progress::decode(&raw(&[0, 1, 1, 0, 0, 0, 0]), i64::MAX).is_some());
    // An entry below committed cannot be written; nor can highest < committed - 1.
    assert_eq!(
        Progress::decode(&raw(&[0, 0, 1, 0, 0, 0, 0]), 10),
        None,
        "entry above highest = c - 1"
    );
}

#[test]
fn decode_rejects_unknown_flags_and_bad_varints() {
    for flags in [2u8, 3, 0x80, 0xff] {
        assert_eq!(
            Progress::decode(&raw(&[flags, 0, 0]), 0),
            None,
            "flags {flags:#x}"
        );
    }
    // Non-shortest varint, an eleven-byte varint, a count too large for the bytes left.
    assert_eq!(Progress::decode(&raw(&[0, 0x80, 0x00, 0]), 0), None);
    let mut long = vec![0];
    long.extend([0x80; 10]);
    long.extend([0x00, 0]);
    assert_eq!(Progress::decode(&raw(&long), 0), None);
    assert_eq!(
        Progress::decode(
            &raw(&[0, 0x7f, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0, 0]),
            0
        ),
        None
    );
    // Fields that do not fit their type: attempts 2^32, first_failure_ms 2^64 (stored + 1).
    assert_eq!(
        Progress::decode(&raw(&[0, 1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0]), 0),
        None
    );
    let mut ms = vec![0, 1, 1, 0, 0];
    ms.extend([0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]);
    ms.push(0);
    assert_eq!(
        Progress::decode(&raw(&ms), 0),
        None,
        "first_failure_ms + 1 = 2^64 + 1"
    );
    ms[5] = 0x80;
    let max = Progress::decode(&raw(&ms), 0).expect("first_failure_ms + 1 = 2^64");
    assert_eq!(
        max.state(0).and_then(|s| s.first_failure_ms),
        Some(u64::MAX)
    );
}

fn failure() -> impl Strategy<Value = Option<Failure>> {
    prop_oneof![
        Just(None),
        Just(Some(Failure::Timeout)),
        Just(Some(Failure::Unreachable)),
        Just(Some(Failure::Error)),
        (100u16..600).prop_map(|s| Some(Failure::Status(s))),
    ]
}

fn state() -> impl Strategy<Value = RecordState> {
    (
        any::<u32>(),
        any::<Option<u64>>(),
        any::<u32>(),
        any::<bool>(),
        failure(),
    )
        .prop_map(
            |(attempts, first_failure_ms, crashes, in_flight, last)| RecordState {
                attempts,
                first_failure_ms,
                crashes,
                in_flight,
                last,
            },
        )
}

fn outage() -> impl Strategy<Value = Option<OutageNote>> {
    prop_oneof![
        Just(None),
        (1u128..8, any::<u64>()).prop_map(|(code, since_ms)| Some(OutageNote {
            class: OutageClass::from_code(code).expect("a known code"),
            since_ms,
        })),
    ]
}

fn note(committed: i64) -> impl Strategy<Value = DeadLetterNote> {
    (
        prop_oneof![Just(committed), any::<i64>()],
        any::<u64>(),
        0u128..7,
        any::<u32>(),
        failure(),
    )
        .prop_map(|(offset, at_ms, kind, attempts, last)| DeadLetterNote {
            offset,
            at_ms,
            kind: DeadLetterKind::from_code(kind).expect("a known code"),
            attempts,
            last,
        })
}

/// A consistent `Progress`: entries strictly increasing from committed, highest at or above the
/// last one, near the ends of the offset range too.
fn valid() -> impl Strategy<Value = Progress> {
    let committed = prop_oneof![
        0i64..1_000,
        (i64::MIN + 1)..=i64::MAX,
        (i64::MAX - 100)..=i64::MAX
    ];
    let gap = prop_oneof![4 => 0u64..3, 1 => any::<u64>()];
    (
        committed,
        vec((gap.clone(), state()), 0..40),
        gap,
        any::<bool>(),
        prop_oneof![Just(0u64), any::<u64>()],
    )
        .prop_flat_map(|(committed, entries, extra, clean, dead_lettered)| {
            let notes = vec(note(committed), 0..=MAX_NOTES);
            (
                Just((committed, entries, extra, clean, dead_lettered)),
                notes,
                outage(),
            )
        })
        .prop_map(
            |((committed, entries, extra, clean, dead_lettered), notes, outage)| {
                let mut unfinished = BTreeMap::new();
                let mut next = Some(committed);
                for (gap, s) in entries {
                    let Some(offset) = next.and_then(|n| n.checked_add_unsigned(gap)) else {
                        break;
                    };
                    unfinished.insert(offset, s);
                    next = offset.checked_add(1);
                }
                let last = unfinished
                    .keys()
                    .next_back()
                    .copied()
                    .unwrap_or(committed - 1);
                let highest = last.checked_add_unsigned(extra).unwrap_or(i64::MAX);
                Progress {
                    committed,
                    highest,
                    unfinished,
                    clean,
                    dead_lettered,
                    notes,
                    outage,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn decode_never_panics_on_any_string(text in any::<String>(), committed in any::<i64>()) {
        let _ = Progress::decode(&text, committed);
        let _ = Progress::decode(&format!("{PREFIX}{text}"), committed);
    }

    /// Whatever decodes is consistent and is exactly what `encode` writes for it.
    #[test]
    fn what_decodes_is_consistent_and_canonical(
        bytes in vec(prop_oneof![3 => 0u8..4, 1 => any::<u8>()], 0..40),
        committed in prop_oneof![0i64..100, any::<i64>()],
    ) {
        let text = raw2(&bytes);
        if let Some(p) = Progress::decode(&text, committed) {
            prop_assert!(p.highest >= p.committed - 1);
            prop_assert!(p.unfinished.keys().all(|&o| (p.committed..=p.highest).contains(&o)));
            prop_assert_eq!(p.encode(usize::MAX), (text, Overflow::default()));
        }
    }

    /// The same for a valid encoding with one byte changed: close to valid, so it often decodes.
    #[test]
    fn a_changed_byte_decodes_to_nothing_or_to_its_own_encoding(
        p in valid(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let (text, _) = p.encode(usize::MAX);
        let mut bytes = URL_SAFE_NO_PAD
            .decode(&text[PREFIX.len()..])
            .expect("encode writes base64");
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let text = raw2(&bytes);
        if let Some(q) = Progress::decode(&text, p.committed) {
            prop_assert!(q.unfinished.keys().all(|&o| (q.committed..=q.highest).contains(&o)));
            prop_assert_eq!(q.encode(usize::MAX), (text, Overflow::default()));
        }
    }

    #[test]
    fn valid_progress_round_trips(p in valid()) {
        let (text, overflow) = p.encode(usize::MAX);
        prop_assert_eq!(overflow, Overflow::default());
        prop_assert_eq!(Progress::decode(&text, p.committed), Some(p));
    }

    /// Under any limit: within it, a prefix of the entries, and no record claimed finished that
    /// was not.
    #[test]
    fn a_limit_only_ever_claims_less(p in valid(), max_len in 0usize..200) {
        let (text, overflow) = p.encode(max_len);
        prop_assert!(text.len() <= max_len);
        let Some(q) = Progress::decode(&text, p.committed) else {
            prop_assert!(text.is_empty());
            prop_assert_eq!(overflow.records_dropped, p.unfinished.len());
            prop_assert_eq!(overflow.notes_dropped, p.notes.len());
            return Ok(());
        };
        prop_assert_eq!(q.committed, p.committed);
        prop_assert_eq!(q.clean, p.clean);
        prop_assert_eq!(q.dead_lettered, p.dead_lettered, "the count always fits first");
        if q.notes.is_empty() {
            prop_assert_eq!(overflow.notes_dropped, p.notes.len());
        } else {
            prop_assert_eq!(&q.notes, &p.notes);
            prop_assert_eq!(overflow.notes_dropped, 0);
        }
        prop_assert!(q.highest <= p.highest);
        let kept: BTreeMap<i64, RecordState> = p.unfinished.range(..=q.highest).map(|(&o, &s)| (o, s)).collect();
        prop_assert_eq!(&q.unfinished, &kept);
        prop_assert_eq!(overflow.records_dropped, p.unfinished.len() - kept.len());
        if let Some((&first_left_out, _)) = p.unfinished.range(q.highest..).find(|(o, _)| !kept.contains_key(o)) {
            prop_assert_eq!(q.highest, first_left_out - 1);
        }
        prop_assert!(p.unfinished.keys().all(|&o| !q.is_finished(o)));
    }

    #[test]
    fn encode_never_panics_nor_overclaims_on_inconsistent_values(
        committed in any::<i64>(),
        highest in any::<i64>(),
        offsets in vec(prop_oneof![any::<i64>(), -5i64..5], 0..10),
        max_len in prop_oneof![0usize..64, Just(usize::MAX)],
    ) {
        let p = Progress {
            committed,
            highest,
            unfinished: offsets.into_iter().map(|o| (o, RecordState::default())).collect(),
            ..Progress::default()
        };
        let (text, overflow) = p.encode(max_len);
        prop_assert!(text.len() <= max_len);
        if let Some(q) = Progress::decode(&text, committed) {
            prop_assert!(q.highest <= p.highest.max(committed.saturating_sub(1)));
            let kept: BTreeMap<i64, RecordState> = p.unfinished.range(committed..).take_while(|(o, _)| **o <= q.highest).map(|(&o, &s)| (o, s)).collect();
            prop_assert_eq!(&q.unfinished, &kept);
            prop_assert_eq!(overflow.records_dropped, p.unfinished.len() - kept.len());
        }
    }
}

fn dead(offset: i64, kind: DeadLetterKind) -> DeadLetterNote {
    DeadLetterNote {
        offset,
        at_ms: 1_764_000_000_000 + offset as u64,
        kind,
        attempts: 5,
        last: Some(Failure::Status(503)),
    }
}

#[test]
fn dead_letter_count_and_newest_notes_round_trip() {
    let mut p = progress(500, 520, &[(500, failing(17, 1_700_000_000_000, 0))], false);
    for (offset, kind) in [
        (400, DeadLetterKind::Refused),
        (450, DeadLetterKind::RetriesExhausted),
        (510, DeadLetterKind::CrashLoop),
        (515, DeadLetterKind::SidecarError),
    ] {
        p.note_dead_letter(dead(offset, kind));
    }
    assert_eq!(p.dead_lettered, 4);
    assert_eq!(
        p.notes.iter().map(|n| n.offset).collect::<Vec<_>>(),
        [450, 510, 515],
        "the newest {MAX_NOTES}, oldest first"
    );
    let q = round_trip(&p);
    assert_eq!(q, p);
    assert_eq!(
        q.state(500).and_then(|s| s.last),
        Some(Failure::Status(503))
    );
}

#[test]
fn notes_give_way_before_entries_and_the_count_before_nothing() {
    let mut p = progress(0, 9, &[(3, failing(2, 5, 0))], false);
    p.note_dead_letter(dead(1, DeadLetterKind::Refused));
    let (all, _) = p.encode(DEFAULT_MAX_LEN);
    let without_notes = Progress {
        notes: vec![],
        ..p.clone()
    };
    let (short, _) = without_notes.encode(DEFAULT_MAX_LEN);
    assert!(short.len() < all.len());
    // Room for the entry and the count, not for the note.
    let (text, overflow) = p.encode(short.len());
    assert_eq!(overflow.notes_dropped, 1);
    assert_eq!(overflow.records_dropped, 0);
    let q = Progress::decode(&text, 0).expect("decodes");
    assert_eq!((q.dead_lettered, q.notes.len(), q.highest), (1, 0, 9));
}

#[test]
fn version_one_strings_are_still_read() {
    // flags clean, span 3, one entry at committed: 2 attempts, failed at 4, one crash in flight.
    let q = Progress::decode(&raw(&[1, 3, 1, 0, 2, 5, 3]), 10).expect("a v1 string");
    assert_eq!(q.highest, 12);
    assert!(q.clean);
    assert_eq!((q.dead_lettered, q.notes.len()), (0, 0));
    assert_eq!(
        q.state(10),
        Some(RecordState {
            attempts: 2,
            first_failure_ms: Some(4),
            crashes: 1,
            in_flight: true,
            last: None,
        })
    );
}

#[test]
fn unknown_codes_and_too_many_notes_are_not_ours() {
    // flags, span 1, count 1, one note (offset +0, at 0, kind 2, 1 attempt, last 503 = [0xf7, 3]),
    // no entries.
    let good = [0, 1, 1, 1, 0, 0, 2, 1, 0xf7, 3, 0];
    let q = Progress::decode(&raw2(&good), 7).expect("valid");
    assert_eq!(q.notes[0].last, Some(Failure::Status(503)));
    assert_eq!(q.notes[0].kind, DeadLetterKind::Refused);
    let mut kind = good;
    kind[6] = 9;
    assert_eq!(Progress::decode(&raw2(&kind), 7), None, "unknown kind");
    let mut last = good;
    last[8] = 4;
    last[9] = 0;
    assert_eq!(
        Progress::decode(&raw2(&last[..10]), 7),
        None,
        "failure code 4 is no writer's"
    );
    let mut many = vec![0, 1, 1, 4];
    for _ in 0..4 {
        many.extend([0, 0, 2, 1, 0]);
    }
    many.push(0);
    assert_eq!(
        Progress::decode(&raw2(&many), 7),
        None,
        "more than MAX_NOTES"
    );
}

#[test]
fn an_endpoint_outage_round_trips_and_is_not_a_version_one_flag() {
    let p = Progress {
        outage: Some(OutageNote {
            class: OutageClass::NotFound,
            since_ms: 1_764_000_000_000,
        }),
        ..progress(10, 12, &[(11, RecordState::default())], false)
    };
    assert_eq!(round_trip(&p), p);
    // flags outage, span 1, class 9 (unknown), since 0, dead 0, notes 0, entries 0.
    assert_eq!(Progress::decode(&raw2(&[2, 1, 9, 0, 0, 0, 0]), 0), None);
    assert!(Progress::decode(&raw2(&[2, 1, 3, 0, 0, 0, 0]), 0).is_some());
    assert_eq!(
        Progress::decode(&raw(&[2, 1, 0]), 0),
        None,
        "v1 had no such flag"
    );
}
