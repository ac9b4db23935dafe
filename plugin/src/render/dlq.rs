//! Dead letters on the screen: the listing read from Kafka, the fallback listing from the
//! proxy's status, and one record in full.
//!
//! Pure. Text that is not UTF-8 is shown as base64, and says so.

use std::fmt::Write as _;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use kcp_crds::v1alpha1::DeadLetteredRecord;

use super::{row, table};
use crate::{
    dlq::DeadLetter,
    when::{rfc3339, rfc3339_millis},
};

/// Bytes of a key or value shown without `--full`.
pub const SHOWN_BYTES: usize = 4096;

/// Dead letters read from Kafka, in the order given: both coordinates, attempts, time, reason.
pub fn listing(records: &[DeadLetter]) -> String {
    let mut rows = vec![row([
        "DEAD LETTER",
        "ORIGINAL",
        "ATTEMPTS",
        "TIME",
        "REASON",
    ])];
    rows.extend(records.iter().map(|r| {
        vec![
            r.coordinates(),
            r.original().unwrap_or_else(|| "-".into()),
            r.attempts().unwrap_or_else(|| "-".into()),
            r.time_ms().map_or_else(|| "-".into(), rfc3339_millis),
            r.reason().unwrap_or_else(|| "-".into()),
        ]
    }));
    table(&rows, "")
}

/// The recent dead letters the proxy's status keeps (original coordinates only).
pub fn from_status(recent: &[DeadLetteredRecord]) -> String {
    table(&status_rows(recent), "")
}

pub(super) fn status_rows(recent: &[DeadLetteredRecord]) -> Vec<Vec<String>> {
    let mut rows = vec![row(["TIME", "ORIGINAL", "REASON"])];
    rows.extend(recent.iter().map(|d| {
        vec![
            rfc3339(d.at.0),
            format!("{}/{}/{}", d.topic, d.partition, d.offset),
            d.reason.clone(),
        ]
    }));
    rows
}

/// One dead letter in full: coordinates, every header, the key and the value (the first
/// [`SHOWN_BYTES`] unless `full`).
pub fn record(r: &DeadLetter, full: bool) -> String {
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<14}{value}");
    };
    field("Dead letter:", r.coordinates());
    field(
        "Original:",
        r.original()
            .unwrap_or_else(|| "- (no kcp-dlq-original-* headers)".into()),
    );
    if let Some(a) = r.attempts() {
        field("Attempts:", a);
    }
    if let Some(reason) = r.reason() {
        field("Reason:", reason);
    }
    if let Some(t) = r.time_ms() {
        field("Time:", rfc3339_millis(t));
    }
    if let Some(t) = r.timestamp {
        field(
            "Timestamp:",
            format!("{} (the record's)", rfc3339_millis(t)),
        );
    }
    let _ = writeln!(out, "Headers ({}):", r.headers.len());
    for (k, v) in &r.headers {
        let text = match v.as_deref() {
            None => "(null)".to_owned(),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => s.to_owned(),
                Err(_) => format!("{} (base64: not UTF-8)", STANDARD.encode(bytes)),
            },
        };
        let _ = writeln!(out, "  {k}: {text}");
    }
    bytes(&mut out, "Key", r.key.as_deref(), full);
    bytes(&mut out, "Value", r.value.as_deref(), full);
    out
}

/// `Label (N bytes):` then the content on its own lines: text, or base64 with a note.
fn bytes(out: &mut String, label: &str, content: Option<&[u8]>, full: bool) {
    let Some(b) = content else {
        let _ = writeln!(out, "{label}: (null)");
        return;
    };
    let cut = if full {
        b.len()
    } else {
        b.len().min(SHOWN_BYTES)
    };
    let shown = match std::str::from_utf8(b) {
        Ok(text) => {
            // Whole characters only.
            let end = (0..=cut)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            let _ = writeln!(out, "{label} ({} bytes):\n{}", b.len(), &text[..end]);
            end
        }
        Err(_) => {
            let _ = writeln!(
                out,
                "{label} ({} bytes, base64: not UTF-8):\n{}",
                b.len(),
                STANDARD.encode(&b[..cut])
            );
            cut
        }
    };
    if shown < b.len() {
        let _ = writeln!(
            out,
            "(truncated at {shown} of {} bytes; --full shows all)",
            b.len()
        );
    }
}
