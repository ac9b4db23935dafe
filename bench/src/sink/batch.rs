//! Batch requests (`delivery.batch`, docs/batch.md): how many records one request carries.
//!
//! A batch is a `POST` with the header `kcp-batch: <n>` and a JSON array of `n` entries as its
//! body; any other request carries one record (raw body, its offset in `kcp-offset`). The sink
//! counts records, not requests, so a run's rate is records/s either way.
//!
//! Pure.

use serde::de::IgnoredAny;

/// The header that marks a batch and gives its number of entries.
pub const BATCH_HEADER: &str = "kcp-batch";

/// Records one request carries: 1 without a `kcp-batch` header; with one, its count. Should the
/// header not be a number, the entries of the body's JSON array are counted instead (1 if the
/// body is not an array), so a malformed header still counts what arrived.
pub fn records_in(kcp_batch: Option<&[u8]>, body: &[u8]) -> u64 {
    let Some(header) = kcp_batch else {
        return 1;
    };
    std::str::from_utf8(header)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| entries(body).unwrap_or(1))
}

/// The number of entries of a JSON array body; `None` when the body is not one.
pub fn entries(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Vec<IgnoredAny>>(body)
        .ok()
        .map(|v| v.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"[
        {"id": "orders/3/1042", "topic": "orders", "partition": 3, "offset": 1042,
         "attempt": 1, "key": "user-7", "headers": [], "value": "{\"amount\":12}"},
        {"id": "orders/3/1043", "topic": "orders", "partition": 3, "offset": 1043,
         "attempt": 1, "valueBase64": "AAE="}
    ]"#;

    #[test]
    fn a_request_without_the_header_is_one_record() {
        assert_eq!(records_in(None, b"raw bytes"), 1);
        assert_eq!(records_in(None, BODY), 1);
    }

    #[test]
    fn a_batch_counts_what_its_header_says() {
        assert_eq!(records_in(Some(b"2"), BODY), 2);
        assert_eq!(records_in(Some(b" 100 "), b"[]"), 100);
    }

    #[test]
    fn a_malformed_header_counts_the_entries_of_the_body() {
        assert_eq!(records_in(Some(b"two"), BODY), 2);
        assert_eq!(records_in(Some(b""), b"[]"), 0);
        assert_eq!(records_in(Some(b"x"), b"not json"), 1);
        assert_eq!(records_in(Some(&[0xff]), b"{\"a\": 1}"), 1);
    }

    #[test]
    fn entries_of_an_array() {
        assert_eq!(entries(BODY), Some(2));
        assert_eq!(entries(b"[]"), Some(0));
        assert_eq!(entries(b"{}"), None);
    }
}
