//! Logging setup and log rate limiting.
//!
//! [`init`] installs the `tracing` subscriber: JSON (one object per line) or plain text on
//! stderr, level from the config unless `RUST_LOG` is set. [`Throttle`] lets a hot path log a
//! warning at most once per period, reporting how many were suppressed in between (slow
//! requests). Levels: ERROR = data loss or action needed, WARN = degraded but handled, INFO =
//! lifecycle (assignments, gate changes, shutdown), DEBUG/TRACE = per-record events.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use kcp_crds::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (no-op when one is already installed).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// Parses a `--log-format` value.
pub fn parse_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "json" => Ok(LogFormat::Json),
        "plain" | "text" => Ok(LogFormat::Plain),
        other => Err(format!("unknown log format {other:?}: use json or plain")),
    }
}

/// At most one event per `period`; counts what it suppressed.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last allowed event)` when this event may be logged now.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .expect("invariant: throttle lock never poisoned");
        match *last {
            Some(t) if now.saturating_duration_since(t) < self.period => {
                self.suppressed.fetch_add(1, Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_allows_one_per_period_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow_at(t0), Some(0));
        assert_eq!(t.allow_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(t.allow_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn log_format_flag_values() {
        assert_eq!(parse_format("json"), Ok(LogFormat::Json));
        assert_eq!(parse_format("plain"), Ok(LogFormat::Plain));
        assert!(parse_format("xml").is_err());
    }
}
