//! How long to wait before trying a record again.
//!
//! Pure: no clock reads, no randomness of its own (the caller passes a uniform sample in
//! `[0, 1)` and, for `Retry-After` dates, the current time), so every bound is unit-tested.
//! Capped exponential backoff with full jitter: the n-th wait is uniform in
//! `[0, min(maxBackoff, initialBackoff * multiplier^(n-1))]`. A `Retry-After` reply overrides
//! the computed wait (bounded by [`RETRY_AFTER_CEILING`]), with a floor and jitter of its own:
//! see [`Backoff::next`].

use std::time::{Duration, SystemTime};

use kcp_crds::config::RetryConfig;

/// The longest `Retry-After` honoured; a larger value waits this long.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(15 * 60);

/// Capped exponential backoff with full jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Self {
            initial,
            max: max.max(initial),
            multiplier: if multiplier.is_finite() && multiplier >= 1.0 {
                multiplier
            } else {
                1.0
            },
        }
    }

    pub fn from_config(retry: &RetryConfig) -> Self {
        Self::new(
            retry.initial_backoff.as_std(),
            retry.max_backoff.as_std(),
            retry.multiplier,
        )
    }

    /// The longest wait after `failures` failures (1-based): the exponential, capped at max.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(1024) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The wait after `failures` failures, with full jitter: `unit` is uniform in `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        self.ceiling(failures).mul_f64(clamp_unit(unit))
    }

    /// The wait when `onExhausted: block` keeps retrying: always `maxBackoff`.
    pub fn blocked(&self) -> Duration {
        self.max
    }

    /// The wait before the next try: `Retry-After` when the app sent one, else jittered backoff.
    ///
    /// `Retry-After` is a minimum: the wait is `max(Retry-After, initialBackoff)` (at most
    /// [`RETRY_AFTER_CEILING`]) plus up to `initialBackoff` of jitter. The floor keeps
    /// `Retry-After: 0` or a date in the past from retrying at once, over and over (every
    /// lane of a busy app at the same time); the jitter keeps records told the same time from
    /// all coming back at the same instant.
    pub fn next(&self, failures: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        match retry_after {
            Some(after) => after
                .min(RETRY_AFTER_CEILING)
                .max(self.initial)
                .saturating_add(self.initial.mul_f64(clamp_unit(unit))),
            None => self.delay(failures, unit),
        }
    }
}

/// A jitter sample forced into `[0, 1]` (NaN counts as 0).
fn clamp_unit(unit: f64) -> f64 {
    if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Parses a `Retry-After` value: delta-seconds (`120`) or an HTTP date, relative to `now`.
/// A date in the past means "now" (zero). Anything else is ignored (`None`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds larger than u64 are "very long": the ceiling applies later.
        return Some(
            value
                .parse::<u64>()
                .map_or(RETRY_AFTER_CEILING, Duration::from_secs),
        );
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A uniform sample in `[0, 1)` for [`Backoff::delay`].
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceiling_grows_exponentially_then_caps() {
        let b = Backoff::new(ms(100), ms(1000), 2.0);
        assert_eq!(b.ceiling(1), ms(100));
        assert_eq!(b.ceiling(2), ms(200));
        assert_eq!(b.ceiling(4), ms(800));
        assert_eq!(b.ceiling(5), ms(1000));
        assert_eq!(b.ceiling(u32::MAX), ms(1000));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_ceiling() {
        let b = Backoff::new(ms(100), ms(1000), 2.0);
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), ms(200));
        assert!(b.delay(3, 0.999_999) <= ms(400));
        assert_eq!(b.delay(3, 7.0), ms(400), "unit is clamped to 1");
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
        for _ in 0..1000 {
            let d = b.delay(10, jitter());
            assert!(d <= ms(1000), "{d:?} above the cap");
        }
    }

    #[test]
    fn multiplier_one_is_constant_and_bad_multipliers_are_safe() {
        let b = Backoff::new(ms(50), ms(500), 1.0);
        assert_eq!(b.ceiling(9), ms(50));
        let b = Backoff::new(ms(50), ms(500), f64::INFINITY);
        assert_eq!(b.ceiling(3), ms(50));
        let b = Backoff::new(ms(50), ms(10), 2.0);
        assert_eq!(b.blocked(), ms(50), "max is never below initial");
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(RETRY_AFTER_CEILING)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("valid date");
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
    }

    #[test]
    fn retry_after_overrides_backoff_up_to_the_ceiling() {
        let b = Backoff::new(ms(100), ms(1000), 2.0);
        assert_eq!(
            b.next(1, Some(Duration::from_secs(5)), 0.5),
            Duration::from_secs(5) + ms(50),
            "plus up to initialBackoff of jitter"
        );
        assert_eq!(
            b.next(1, Some(Duration::from_secs(1 << 40)), 0.5),
            RETRY_AFTER_CEILING + ms(50)
        );
        assert_eq!(b.next(2, None, 0.5), ms(100));
    }

    /// `Retry-After: 0` (or a date in the past) must not retry at once, and many records told
    /// the same wait must not all retry at the same instant.
    #[test]
    fn retry_after_has_a_floor_and_jitter() {
        let b = Backoff::new(ms(100), ms(1000), 2.0);
        for unit in [0.0, 0.5, 0.999] {
            let wait = b.next(1, Some(Duration::ZERO), unit);
            assert!(
                wait >= ms(100),
                "unit {unit}: {wait:?} below initialBackoff"
            );
            assert!(wait <= ms(200), "unit {unit}: {wait:?}");
        }
        assert_ne!(
            b.next(1, Some(Duration::ZERO), 0.0),
            b.next(1, Some(Duration::ZERO), 0.9),
            "jittered"
        );
        let five = Duration::from_secs(5);
        assert_ne!(b.next(1, Some(five), 0.0), b.next(1, Some(five), 0.9));
        assert!(
            b.next(1, Some(five), 0.9) >= five,
            "Retry-After is a minimum"
        );
    }
}
