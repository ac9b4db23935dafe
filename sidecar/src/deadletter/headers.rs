//! What a dead-letter record says about its original: the failure history ([`FailureLog`]) and
//! the `kcp-dlq-*` headers built from it ([`dead_letter_headers`]).
//!
//! Pure. No client; `deadletter` produces what this builds.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::record::Record;

/// How the last failed attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastFailure {
    Status(u16),
    Error(String),
}

/// The failure history of one record, carried into its dead-letter headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureLog {
    pub attempts: u32,
    pub last: LastFailure,
    pub first_at: SystemTime,
    pub last_at: SystemTime,
}

impl FailureLog {
    /// Records a failed attempt.
    pub fn record(log: &mut Option<Self>, attempts: u32, last: LastFailure, now: SystemTime) {
        match log {
            Some(l) => {
                l.attempts = attempts;
                l.last = last;
                l.last_at = now;
            }
            None => {
                *log = Some(Self {
                    attempts,
                    last,
                    first_at: now,
                    last_at: now,
                })
            }
        }
    }
}

/// `t` in ms since the epoch (0 before it, `i64::MAX` past the year 292 million).
pub fn epoch_millis(t: SystemTime) -> i64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The dead-letter record's headers: the original ones, then the `kcp-dlq-*` ones. Pure.
pub fn dead_letter_headers(
    record: &Record,
    failure: &FailureLog,
    reason: &str,
    group: &str,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut h: Vec<(String, Option<Vec<u8>>)> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec())))
        .collect();
    let mut add = |k: &str, v: String| h.push((k.to_owned(), Some(v.into_bytes())));
    add("kcp-dlq-original-topic", record.tp.topic.to_string());
    add(
        "kcp-dlq-original-partition",
        record.tp.partition.to_string(),
    );
    add("kcp-dlq-original-offset", record.offset.to_string());
    if let Some(ts) = record.timestamp {
        add("kcp-dlq-original-timestamp", ts.to_string());
    }
    add("kcp-dlq-attempts", failure.attempts.to_string());
    match &failure.last {
        LastFailure::Status(s) => add("kcp-dlq-last-status", s.to_string()),
        LastFailure::Error(e) => add("kcp-dlq-last-error", e.clone()),
    }
    add(
        "kcp-dlq-first-failure",
        epoch_millis(failure.first_at).to_string(),
    );
    add(
        "kcp-dlq-last-failure",
        epoch_millis(failure.last_at).to_string(),
    );
    add("kcp-dlq-group", group.to_owned());
    add("kcp-dlq-reason", reason.to_owned());
    if record.unreadable_headers > 0 {
        add(
            "kcp-dlq-headers-unreadable",
            record.unreadable_headers.to_string(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::record::Tp;

    #[test]
    fn headers_keep_the_originals_and_add_the_failure() {
        let record = Record {
            tp: Tp::new("orders", 2),
            offset: 17,
            timestamp: Some(1234),
            key: None,
            value: Bytes::new(),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"\xff"))),
                ("n".into(), None),
            ],
            unreadable_headers: 2,
        };
        let t0 = UNIX_EPOCH + Duration::from_millis(5000);
        let mut log = None;
        FailureLog::record(&mut log, 1, LastFailure::Error("timeout".into()), t0);
        FailureLog::record(
            &mut log,
            2,
            LastFailure::Status(503),
            t0 + Duration::from_millis(7),
        );
        let log = log.expect("recorded");
        let h = dead_letter_headers(&record, &log, "retries exhausted: status 503", "grp");
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
                .map(|v| String::from_utf8(v).expect("utf8"))
        };
        assert_eq!(h[0], ("a".to_owned(), Some(vec![0xff])));
        assert_eq!(h[1], ("n".to_owned(), None));
        assert_eq!(get("kcp-dlq-original-topic").as_deref(), Some("orders"));
        assert_eq!(get("kcp-dlq-original-partition").as_deref(), Some("2"));
        assert_eq!(get("kcp-dlq-original-offset").as_deref(), Some("17"));
        assert_eq!(get("kcp-dlq-original-timestamp").as_deref(), Some("1234"));
        assert_eq!(get("kcp-dlq-attempts").as_deref(), Some("2"));
        assert_eq!(get("kcp-dlq-last-status").as_deref(), Some("503"));
        assert_eq!(get("kcp-dlq-last-error"), None);
        assert_eq!(get("kcp-dlq-first-failure").as_deref(), Some("5000"));
        assert_eq!(get("kcp-dlq-last-failure").as_deref(), Some("5007"));
        assert_eq!(get("kcp-dlq-group").as_deref(), Some("grp"));
        assert_eq!(
            get("kcp-dlq-reason").as_deref(),
            Some("retries exhausted: status 503")
        );
        assert_eq!(get("kcp-dlq-headers-unreadable").as_deref(), Some("2"));
    }

    #[test]
    fn epoch_millis_clamps_instead_of_wrapping() {
        assert_eq!(epoch_millis(UNIX_EPOCH + Duration::from_millis(42)), 42);
        assert_eq!(epoch_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
