//! What a partition's commit knows above its committed offset, kept in the commit's metadata.
//!
//! Pure and synchronous: no Kafka client, no clock, no I/O. `commit` asks a [`Progress`] for the
//! metadata string to send with an offset ([`Progress::encode`]); whoever is assigned the
//! partition next reads it back with the committed offset ([`Progress::decode`]) and skips the
//! records it claims finished, so a finished record is not delivered again after a crash or a
//! rebalance, and keeps each unfinished record's retry state and crash count.
//!
//! Guarantee: a decoded `Progress` never claims finished a record the writer did not know
//! finished. When not everything fits in the broker's limit, [`Progress::encode`] keeps the
//! lowest unfinished entries and lowers `highest` below the first one left out: the records
//! above are delivered again, never skipped. Anything [`Progress::decode`] does not fully
//! understand (another client's string, another version, a truncated or inconsistent one) yields
//! `None`, and then nothing is skipped.
//!
//! Format: [`PREFIX`], then URL-safe base64 without padding of: a flags byte (bit 0: clean), the
//! LEB128 varint `highest - committed + 1`, the varint count of entries, and per entry the
//! varints `offset - committed` (first entry) or `offset - previous - 1` (the others),
//! `attempts`, `first_failure_ms + 1` (0 for none) and `crashes * 2 + in_flight`. Entries are relative to the
//! committed offset the string is stored with: it means nothing next to another offset.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// Marks metadata written by this codec, version 1. Anything else is not ours to read.
pub const PREFIX: &str = "kcp1:";

/// Broker default offset.metadata.max.bytes is 4096; what we write stays below this by default.
pub const DEFAULT_MAX_LEN: usize = 3800;

/// Flags bit 0: the commit was a graceful handover.
const CLEAN: u8 = 1;
/// A LEB128 varint of at most 70 bits; every field fits in 65 (`first_failure_ms + 1`).
const MAX_VARINT_LEN: usize = 10;
/// The fewest bytes an entry takes (four one-byte varints): bounds a claimed count.
const MIN_ENTRY_LEN: usize = 4;

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
}

/// A partition's progress at a commit: what is finished at or above the committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

/// What [`Progress::encode`] had to leave out to fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Unfinished entries not listed: the highest ones, plus any outside
    /// `committed..=highest` (a consistent `Progress` has none).
    pub records_dropped: usize,
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

    /// The metadata string, at most `max_len` bytes. When everything does not fit, keeps the
    /// lowest unfinished entries that fit and lowers `highest` to just below the first entry
    /// left out, so nothing above it is claimed finished (those records are delivered again,
    /// never skipped wrongly); says how many entries were left out. Never fails: with `max_len`
    /// too small even for the header, returns an empty string (no claim at all) and an
    /// [`Overflow`] counting every entry.
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
        let dropped = |listed: usize| Overflow {
            records_dropped: self.unfinished.len() - listed,
        };
        let chars = max_len.saturating_sub(PREFIX.len());
        // The most bytes whose unpadded base64 (ceil(4n / 3) characters) fits in `chars`.
        let budget = chars / 4 * 3 + chars % 4 * 3 / 4;

        // With `k` entries listed the claim ends just below entry `k` (or at `top` with all).
        let span = |k: usize| {
            let claim = entries.get(k).map_or(top, |&(offset, _)| offset - 1);
            u128::try_from(claim - c + 1).expect("invariant: the claim ends at or above c - 1")
        };
        let header = |k: usize| 1 + varint_len(span(k)) + varint_len(k as u128);
        let mut listed = 0;
        let mut body = 0;
        if header(0) > budget {
            return (String::new(), dropped(0));
        }
        while listed < entries.len() {
            let len = entry_len(&entries, c, listed);
            if header(listed + 1) + body + len > budget {
                break;
            }
            body += len;
            listed += 1;
        }

        let mut bytes = Vec::with_capacity(header(listed) + body);
        bytes.push(if self.clean { CLEAN } else { 0 });
        put_varint(&mut bytes, span(listed));
        put_varint(&mut bytes, listed as u128);
        for (i, &(_, state)) in entries[..listed].iter().enumerate() {
            put_varint(&mut bytes, delta(&entries, c, i));
            put_varint(&mut bytes, u128::from(state.attempts));
            put_varint(
                &mut bytes,
                state.first_failure_ms.map_or(0, |ms| u128::from(ms) + 1),
            );
            put_varint(&mut bytes, crash_field(&state));
        }
        debug_assert_eq!(bytes.len(), header(listed) + body);
        let text = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
        (text, dropped(listed))
    }

    /// Parses a metadata string read with a committed offset. `None` for an empty string,
    /// another prefix (another client's metadata, another version), or anything malformed or
    /// inconsistent (an entry below `committed` or above `highest`, highest < committed - 1,
    /// offsets overflowing, trailing bytes, absurd counts): then nothing is skipped. Never
    /// panics on any input.
    pub fn decode(text: &str, committed: i64) -> Option<Progress> {
        // Rejects padding, characters outside the URL-safe alphabet and non-zero trailing bits,
        // so a string that decodes is the one `encode` writes for its value.
        let bytes = URL_SAFE_NO_PAD.decode(text.strip_prefix(PREFIX)?).ok()?;
        let mut r = Reader(&bytes);
        let flags = r.byte()?;
        if flags & !CLEAN != 0 {
            return None;
        }
        let c = i128::from(committed);
        let span = u64::try_from(r.varint()?).ok()?;
        // Unsigned, so highest >= committed - 1; must still be an offset.
        let highest = i64::try_from(c + i128::from(span) - 1).ok()?;
        let count = r.varint()?;
        if count > (r.remaining() / MIN_ENTRY_LEN) as u128 {
            return None;
        }
        let mut unfinished = BTreeMap::new();
        // The lowest offset the next entry may have: entries strictly increase from committed.
        let mut next = c;
        for _ in 0..count {
            let offset = next + i128::from(u64::try_from(r.varint()?).ok()?);
            if offset > i128::from(highest) {
                return None;
            }
            let attempts = u32::try_from(r.varint()?).ok()?;
            let first_failure_ms = match r.varint()? {
                0 => None,
                ms => Some(u64::try_from(ms - 1).ok()?),
            };
            let field = r.varint()?;
            let crashes = u32::try_from(field >> 1).ok()?;
            let state = RecordState {
                attempts,
                first_failure_ms,
                crashes,
                in_flight: field & 1 == 1,
            };
            unfinished.insert(i64::try_from(offset).ok()?, state);
            next = offset + 1;
        }
        if r.remaining() != 0 {
            return None;
        }
        Some(Progress {
            committed,
            highest,
            unfinished,
            clean: flags & CLEAN != 0,
        })
    }
}

/// Entry `i`'s offset as written: from `committed` for the first, from after the previous one
/// for the others (entries strictly increase, so it is never negative).
fn delta(entries: &[(i128, RecordState)], c: i128, i: usize) -> u128 {
    let from = if i == 0 { c } else { entries[i - 1].0 + 1 };
    u128::try_from(entries[i].0 - from).expect("invariant: entries increase from committed")
}

/// Bytes entry `i` takes.
fn entry_len(entries: &[(i128, RecordState)], c: i128, i: usize) -> usize {
    let state = entries[i].1;
    varint_len(delta(entries, c, i))
        + varint_len(u128::from(state.attempts))
        + varint_len(state.first_failure_ms.map_or(0, |ms| u128::from(ms) + 1))
        + varint_len(crash_field(&state))
}

/// `crashes * 2 + in_flight`: one varint for both.
fn crash_field(state: &RecordState) -> u128 {
    u128::from(state.crashes) * 2 + u128::from(state.in_flight)
}

/// Bytes of `v` as a LEB128 varint (every field is below 2^65, so at most 10).
fn varint_len(v: u128) -> usize {
    (128 - v.leading_zeros() as usize).div_ceil(7).max(1)
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads the decoded bytes front to back; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.0.len()
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A LEB128 varint of at most [`MAX_VARINT_LEN`] bytes in its shortest form (no trailing
    /// zero group), so every value has exactly one encoding.
    fn varint(&mut self) -> Option<u128> {
        let mut v = 0u128;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte()?;
            v |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return (i == 0 || b != 0).then_some(v);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
