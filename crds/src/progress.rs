//! What a partition's commit knows above its committed offset, kept in the commit's metadata.
//!
//! Pure and synchronous: no Kafka client, no clock, no I/O. The sidecar's `commit` asks a
//! [`Progress`] for the metadata string to send with an offset ([`Progress::encode`]); whoever is
//! assigned the partition next reads it back with the committed offset ([`Progress::decode`]) and
//! skips the records it claims finished, so a finished record is not delivered again after a
//! crash or a rebalance, and keeps each unfinished record's retry state and crash count. The
//! operator reads the same string (with the group's committed offsets) for the resource's status:
//! why the record at the committed offset is not finishing, how many records the group
//! dead-lettered, and the last few of them.
//!
//! Guarantee: a decoded `Progress` never claims finished a record the writer did not know
//! finished. When not everything fits in the broker's limit, [`Progress::encode`] keeps the
//! lowest unfinished entries and lowers `highest` below the first one left out: the records
//! above are delivered again, never skipped. Anything [`Progress::decode`] does not fully
//! understand (another client's string, an unknown version, a truncated or inconsistent one)
//! yields `None`, and then nothing is skipped.
//!
//! Format: [`PREFIX`], then URL-safe base64 without padding of: a flags byte (bit 0: clean, bit
//! 1: an endpoint outage on), the LEB128 varint `highest - committed + 1`, with bit 1 the
//! varints outage class code and `since_ms`, the varint `dead_lettered`, the varint count of
//! dead-letter notes and per note the varints zigzag(`offset - committed`), `at_ms`, kind code,
//! `attempts` and last-failure code ([`notes`]); then the varint count of entries, and per
//! entry the varints `offset - committed` (first entry) or `offset - previous - 1` (the others),
//! `attempts`, `first_failure_ms + 1` (0 for none), `crashes * 2 + in_flight` and the last-failure
//! code. Offsets are relative to the committed offset the string is stored with: it means
//! nothing next to another offset. Version 1 ([`PREFIX_V1`]) had no dead-letter fields and no
//! last-failure codes; it is still read.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

mod notes;
mod wire;

pub use notes::{DeadLetterKind, DeadLetterNote, Failure, OutageClass, OutageNote};
use wire::{Reader, put_varint, unzigzag, varint_len, zigzag};

/// Marks metadata written by this codec, version 2. Anything else is not ours to read.
pub const PREFIX: &str = "kcp2:";

/// Version 1: read, never written.
pub const PREFIX_V1: &str = "kcp1:";

/// Broker default offset.metadata.max.bytes is 4096; what we write stays below this by default.
pub const DEFAULT_MAX_LEN: usize = 3800;

/// Most dead-letter notes a partition's commit keeps (the newest).
pub const MAX_NOTES: usize = 3;

/// Flags bit 0: the commit was a graceful handover.
const CLEAN: u8 = 1;
/// Flags bit 1: the writer's endpoint was out (version 2 only).
const OUTAGE: u8 = 2;
/// The fewest bytes an entry takes (one-byte varints): bounds a claimed count.
const MIN_ENTRY_LEN: [usize; 2] = [4, 5];
/// The fewest bytes a dead-letter note takes.
const MIN_NOTE_LEN: usize = 5;

/// What the sidecar keeps about one unfinished record across owners of its partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordState {
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the first failed attempt ended (milliseconds since the Unix epoch), if one did.
    pub first_failure_ms: Option<u64>,
    /// How many owners of the partition stopped without a clean handover while this record was
    /// in flight.
    pub crashes: u32,
    /// A request with it was in progress when the commit was made: if its owner then stops
    /// without a clean handover, that counts as a crash with it in flight.
    pub in_flight: bool,
    /// How the last failed attempt failed.
    pub last: Option<Failure>,
}

/// A partition's progress at a commit: what is finished at or above the committed offset, and
/// what the group dead-lettered on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The committed offset: the lowest unfinished offset, where a consumer resumes.
    pub committed: i64,
    /// The highest offset dispatched (`committed - 1` when none is). Every record in
    /// `committed..=highest` that is not in `unfinished` is finished.
    pub highest: i64,
    /// The offsets in `committed..=highest` not finished, each with its state.
    pub unfinished: BTreeMap<i64, RecordState>,
    /// Written by a graceful handover (a revoke or shutdown commit after a drain). After an
    /// unclean one the previous owner may have crashed.
    pub clean: bool,
    /// Records of this partition the group dead-lettered, summed over its owners since the
    /// count was first written (a string that cannot be read starts it over at 0).
    pub dead_lettered: u64,
    /// The newest dead-lettered records, oldest first, at most [`MAX_NOTES`].
    pub notes: Vec<DeadLetterNote>,
    /// The endpoint outage the writer saw going on when it committed, if any.
    pub outage: Option<OutageNote>,
}

/// What [`Progress::encode`] had to leave out to fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Unfinished entries not listed: the highest ones, plus any outside
    /// `committed..=highest` (a consistent `Progress` has none).
    pub records_dropped: usize,
    /// Dead-letter notes left out (all of them, when the limit is that small).
    pub notes_dropped: usize,
}

impl Progress {
    /// Whether the record at `offset` is known finished: committed <= offset <= highest and
    /// not unfinished.
    pub fn is_finished(&self, offset: i64) -> bool {
        (self.committed..=self.highest).contains(&offset) && !self.unfinished.contains_key(&offset)
    }

    /// The state kept for an unfinished `offset`.
    pub fn state(&self, offset: i64) -> Option<RecordState> {
        self.unfinished.get(&offset).copied()
    }

    /// Records a dead-lettered record: counted, and kept among the newest notes.
    pub fn note_dead_letter(&mut self, note: DeadLetterNote) {
        self.dead_lettered = self.dead_lettered.saturating_add(1);
        self.notes.push(note);
        let extra = self.notes.len().saturating_sub(MAX_NOTES);
        self.notes.drain(..extra);
    }

    /// The metadata string, at most `max_len` bytes. When everything does not fit, keeps the
    /// lowest unfinished entries that fit and lowers `highest` to just below the first entry
    /// left out, so nothing above it is claimed finished (those records are delivered again,
    /// never skipped wrongly); says how many entries were left out. The dead-letter count always
    /// goes first; its notes are left out before any entry. Never fails: with `max_len` too small
    /// even for the header, returns an empty string (no claim at all) and an [`Overflow`]
    /// counting every entry.
    pub fn encode(&self, max_len: usize) -> (String, Overflow) {
        let c = i128::from(self.committed);
        // Claim nothing below `committed - 1` nor a span a u64 cannot hold; lowering `highest`
        // only claims less. Entries outside the claim are left out (a consistent value has none).
        let top = i128::from(self.highest).clamp(c - 1, c + i128::from(u64::MAX) - 1);
        let entries: Vec<(i128, RecordState)> = self
            .unfinished
            .range(self.committed..)
            .map(|(&offset, &state)| (i128::from(offset), state))
            .take_while(|&(offset, _)| offset <= top)
            .collect();
        let notes = &self.notes[self.notes.len().saturating_sub(MAX_NOTES)..];
        let chars = max_len.saturating_sub(PREFIX.len());
        // The most bytes whose unpadded base64 (ceil(4n / 3) characters) fits in `chars`.
        let budget = chars / 4 * 3 + chars % 4 * 3 / 4;

        // With `k` entries listed the claim ends just below entry `k` (or at `top` with all).
        let span = |k: usize| {
            let claim = entries.get(k).map_or(top, |&(offset, _)| offset - 1);
            u128::try_from(claim - c + 1).expect("invariant: the claim ends at or above c - 1")
        };
        let mut extras = self.extras(notes, c);
        let header = |k: usize, extras: &[u8]| {
            1 + varint_len(span(k)) + extras.len() + varint_len(k as u128)
        };
        let mut notes_dropped = self.notes.len() - notes.len();
        if header(0, &extras) > budget {
            notes_dropped = self.notes.len();
            extras = self.extras(&[], c);
        }
        let overflow = |listed: usize| Overflow {
            records_dropped: self.unfinished.len() - listed,
            notes_dropped,
        };
        if header(0, &extras) > budget {
            return (
                String::new(),
                Overflow {
                    notes_dropped: self.notes.len(),
                    ..overflow(0)
                },
            );
        }
        let mut listed = 0;
        let mut body = 0;
        while listed < entries.len() {
            let len = entry_len(&entries, c, listed);
            if header(listed + 1, &extras) + body + len > budget {
                break;
            }
            body += len;
            listed += 1;
        }

        let mut bytes = Vec::with_capacity(header(listed, &extras) + body);
        let outage = if self.outage.is_some() { OUTAGE } else { 0 };
        bytes.push(if self.clean { CLEAN } else { 0 } | outage);
        put_varint(&mut bytes, span(listed));
        bytes.extend_from_slice(&extras);
        put_varint(&mut bytes, listed as u128);
        for (i, &(_, state)) in entries[..listed].iter().enumerate() {
            for field in entry_fields(&entries, c, i, &state) {
                put_varint(&mut bytes, field);
            }
        }
        debug_assert_eq!(bytes.len(), header(listed, &extras) + body);
        let text = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
        (text, overflow(listed))
    }

    /// The dead-letter count and `notes`, as written after the span.
    fn extras(&self, notes: &[DeadLetterNote], c: i128) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(o) = &self.outage {
            put_varint(&mut out, o.class.code());
            put_varint(&mut out, u128::from(o.since_ms));
        }
        put_varint(&mut out, u128::from(self.dead_lettered));
        put_varint(&mut out, notes.len() as u128);
        for n in notes {
            put_varint(&mut out, zigzag(i128::from(n.offset) - c));
            put_varint(&mut out, u128::from(n.at_ms));
            put_varint(&mut out, n.kind.code());
            put_varint(&mut out, u128::from(n.attempts));
            put_varint(&mut out, Failure::code(n.last));
        }
        out
    }

    /// Parses a metadata string read with a committed offset. `None` for an empty string,
    /// another prefix (another client's metadata, another version), or anything malformed or
    /// inconsistent (an entry below `committed` or above `highest`, highest < committed - 1,
    /// offsets overflowing, unknown codes, trailing bytes, absurd counts): then nothing is
    /// skipped. Never panics on any input.
    pub fn decode(text: &str, committed: i64) -> Option<Progress> {
        let (v2, encoded) = match text.strip_prefix(PREFIX) {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix(PREFIX_V1)?),
        };
        // Rejects padding, characters outside the URL-safe alphabet and non-zero trailing bits,
        // so a string that decodes is the one `encode` writes for its value.
        let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        let mut r = Reader(&bytes);
        let flags = r.byte()?;
        let known = if v2 { CLEAN | OUTAGE } else { CLEAN };
        if flags & !known != 0 {
            return None;
        }
        let c = i128::from(committed);
        let span: u64 = r.int()?;
        // Unsigned, so highest >= committed - 1; must still be an offset.
        let highest = i64::try_from(c + i128::from(span) - 1).ok()?;
        let mut progress = Progress {
            committed,
            highest,
            clean: flags & CLEAN != 0,
            ..Progress::default()
        };
        if flags & OUTAGE != 0 {
            progress.outage = Some(OutageNote {
                class: OutageClass::from_code(r.varint()?)?,
                since_ms: r.int()?,
            });
        }
        if v2 {
            progress.dead_lettered = r.int()?;
            let count: usize = r.int()?;
            if count > MAX_NOTES || count > r.remaining() / MIN_NOTE_LEN {
                return None;
            }
            for _ in 0..count {
                progress.notes.push(DeadLetterNote {
                    offset: i64::try_from(c + unzigzag(r.varint()?)).ok()?,
                    at_ms: r.int()?,
                    kind: DeadLetterKind::from_code(r.varint()?)?,
                    attempts: r.int()?,
                    last: Failure::from_code(r.varint()?).ok()?,
                });
            }
        }
        let count = r.varint()?;
        if count > (r.remaining() / MIN_ENTRY_LEN[usize::from(v2)]) as u128 {
            return None;
        }
        // The lowest offset the next entry may have: entries strictly increase from committed.
        let mut next = c;
        for _ in 0..count {
            let offset = next + i128::from(r.int::<u64>()?);
            if offset > i128::from(highest) {
                return None;
            }
            let attempts = r.int()?;
            let first_failure_ms = match r.varint()? {
                0 => None,
                ms => Some(u64::try_from(ms - 1).ok()?),
            };
            let field = r.varint()?;
            let last = if v2 {
                Failure::from_code(r.varint()?).ok()?
            } else {
                None
            };
            let state = RecordState {
                attempts,
                first_failure_ms,
                crashes: u32::try_from(field >> 1).ok()?,
                in_flight: field & 1 == 1,
                last,
            };
            progress
                .unfinished
                .insert(i64::try_from(offset).ok()?, state);
            next = offset + 1;
        }
        (r.remaining() == 0).then_some(progress)
    }
}

/// Entry `i`'s varints as written.
fn entry_fields(
    entries: &[(i128, RecordState)],
    c: i128,
    i: usize,
    state: &RecordState,
) -> [u128; 5] {
    // The offset: from `committed` for the first, from after the previous one for the others
    // (entries strictly increase, so it is never negative).
    let from = if i == 0 { c } else { entries[i - 1].0 + 1 };
    [
        u128::try_from(entries[i].0 - from).expect("invariant: entries increase from committed"),
        u128::from(state.attempts),
        state.first_failure_ms.map_or(0, |ms| u128::from(ms) + 1),
        // `crashes * 2 + in_flight`: one varint for both.
        u128::from(state.crashes) * 2 + u128::from(state.in_flight),
        Failure::code(state.last),
    ]
}

/// Bytes entry `i` takes.
fn entry_len(entries: &[(i128, RecordState)], c: i128, i: usize) -> usize {
    entry_fields(entries, c, i, &entries[i].1)
        .iter()
        .map(|&f| varint_len(f))
        .sum()
}

#[cfg(test)]
mod tests;
