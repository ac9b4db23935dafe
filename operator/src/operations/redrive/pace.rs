//! The two bits of arithmetic a redrive step runs on: when the next record may be produced
//! ([`paced`]), and how far retention moved a position ([`skip_expired`]).
//!
//! Pure. No client, no clock of its own: `step` passes the instants.

use std::time::{Duration, Instant};

use kcp_crds::v1alpha1::RedrivePosition;

/// When the `i`-th record of a step (from 0) may be produced at `rate` per second: `start` +
/// i / rate. A step of d seconds thus produces at most d × rate + 1 records.
pub fn paced(start: Instant, i: i64, rate: i32) -> Instant {
    let rate = u128::from(rate.max(1).unsigned_abs());
    let i = u128::from(i.max(0).unsigned_abs());
    let nanos = u64::try_from(i * 1_000_000_000 / rate).unwrap_or(u64::MAX);
    start + Duration::from_nanos(nanos)
}

/// Moves `position` past the dead letters retention deleted (`low`: the partition's low
/// watermark now); returns how many were jumped over.
pub fn skip_expired(position: &mut RedrivePosition, low: i64) -> i64 {
    let to = low.min(position.end);
    if to <= position.next {
        return 0;
    }
    let expired = to - position.next;
    position.next = to;
    expired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_i_th_record_waits_for_i_over_the_rate() {
        let t0 = Instant::now();
        assert_eq!(paced(t0, 0, 5), t0);
        assert_eq!(paced(t0, 1, 5), t0 + Duration::from_millis(200));
        assert_eq!(paced(t0, 5, 5), t0 + Duration::from_secs(1));
        assert_eq!(paced(t0, 3, 10_000), t0 + Duration::from_micros(300));
        // In one second at rate 5, records 0..=4 fit before the deadline: 5 ≤ 5 + 1.
        let fit = (0..100)
            .filter(|&i| paced(t0, i, 5) < t0 + Duration::from_secs(1))
            .count();
        assert_eq!(fit, 5);
    }

    #[test]
    fn expired_dead_letters_are_jumped_over_and_counted() {
        let mut p = RedrivePosition {
            topic: "orders-dlq".into(),
            partition: 0,
            next: 10,
            end: 20,
        };
        assert_eq!(skip_expired(&mut p, 4), 0, "nothing expired past next");
        assert_eq!(p.next, 10);
        assert_eq!(skip_expired(&mut p, 13), 3);
        assert_eq!(p.next, 13);
        assert_eq!(
            skip_expired(&mut p, 50),
            7,
            "everything below the end expired: only up to the end counts"
        );
        assert_eq!(p.next, 20);
    }
}
