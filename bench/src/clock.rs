//! One monotonic clock for the whole bench process, and the record payload that carries it.
//!
//! The producer (or the bare HTTP client) writes the send time into the first 8 bytes of every
//! value; the sink reads it back when the request arrives. Both run in this process, so a
//! process-wide `Instant` reference is a shared monotonic clock with nanosecond resolution (no
//! wall-clock steps, no cross-process skew). The sidecar only copies the bytes through.

use std::{sync::OnceLock, time::Instant};

use bytes::Bytes;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process (monotonic). Never 0 after the first call,
/// so 0 in a payload means "no timestamp".
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
}

/// A `size`-byte value whose first 8 bytes are `sent_ns` (little endian), the rest filler.
pub fn payload(size: usize, sent_ns: u64) -> Vec<u8> {
    let mut v = vec![b'x'; size.max(8)];
    v[..8].copy_from_slice(&sent_ns.to_le_bytes());
    v
}

/// A payload without a timestamp, shared cheaply between requests.
pub fn untimed_payload(size: usize) -> Bytes {
    Bytes::from(payload(size, 0))
}

/// The send time written by [`payload`], if the value carries one.
pub fn sent_ns(value: &[u8]) -> Option<u64> {
    let head: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(head)).filter(|&ns| ns != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_the_send_time() {
        let t = now_ns();
        let p = payload(1024, t);
        assert_eq!(p.len(), 1024);
        assert_eq!(sent_ns(&p), Some(t));
        assert_eq!(sent_ns(&untimed_payload(1024)), None);
        assert_eq!(sent_ns(b"short"), None);
    }
}
