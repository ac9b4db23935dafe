//! The harness: a broker process, sidecar processes, a recording sink, a producer with its own
//! ledger, and the checker.

pub mod broker;
pub mod check;
pub mod sidecar;
pub mod sink;

use std::{
    hash::{DefaultHasher, Hasher},
    io::Write,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use broker::{Broker, Ledger, Msg};
use sink::Sink;

/// Set to `1` for the long mode (many episodes, more records).
pub const LONG_ENV: &str = "KCP_RELIABILITY_LONG";
/// Set to replay a run: the seed every randomized test starts from.
pub const SEED_ENV: &str = "KCP_RELIABILITY_SEED";

pub fn long() -> bool {
    std::env::var(LONG_ENV).is_ok_and(|v| v == "1")
}

/// Set to `1` to assert that no finished record is delivered again (the kill, SIGTERM, rebalance,
/// rollout and drain-hook tests). Off until the sidecar carries the offsets finished above the
/// committed one in its commits.
pub const STRICT_REPLAYS_ENV: &str = "KCP_RELIABILITY_STRICT_REPLAYS";

pub fn strict_replays() -> bool {
    std::env::var(STRICT_REPLAYS_ENV).is_ok_and(|v| v == "1")
}

/// The value of `short` or `long` depending on the mode.
pub fn pick<T>(short: T, long_: T) -> T {
    if long() { long_ } else { short }
}

/// A seeded RNG; the seed is printed so a failure can be replayed with `KCP_RELIABILITY_SEED`.
pub fn rng(test: &str) -> (u64, StdRng) {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed} (replay with {SEED_ENV}={seed})");
    (seed, StdRng::seed_from_u64(seed))
}

/// A 64-bit digest of a body (SipHash with fixed keys: stable within the test process).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// A name no other test (or earlier run against a real broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A sidecar config for the suite: short backoffs and intervals, admin on an ephemeral port.
pub fn config(bootstrap: &str, topic: &str, group: &str, url: &str, ordering: &str) -> Value {
    json!({
        "kafka": {
            "bootstrapServers": bootstrap,
            "topics": [topic],
            "groupId": group,
            "initialOffset": "earliest",
            "clientConfig": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
        },
        "endpoint": {
            "url": url,
            "connectTimeout": "1s",
            "requestTimeout": "2s",
            "retryOn": ["5xx", "408", "429"]
        },
        "delivery": {
            "ordering": ordering,
            "maxInFlight": 8,
            "guarantee": "atLeastOnce",
            "commitInterval": "100ms",
            "drainTimeout": "10s",
            "retry": {"maxAttempts": 5, "initialBackoff": "10ms", "maxBackoff": "100ms", "multiplier": 2.0},
            "onExhausted": "deadLetter"
        },
        "admin": {"listen": "127.0.0.1:0"},
        "log": {"level": "info", "format": "plain"}
    })
}

/// Keyed records: `keys` keys, each record's value `<key>#<seq>#<padding>`; sequence numbers per
/// key continue from `next_seq`. Values whose seq is listed by `poison` are refused by the app.
pub fn keyed(
    rng: &mut StdRng,
    keys: usize,
    n: usize,
    next_seq: &mut Vec<u64>,
    poison: impl Fn(u64) -> bool,
) -> Vec<Msg> {
    next_seq.resize(keys, 0);
    (0..n)
        .map(|_| {
            let k = rng.random_range(0..keys);
            let seq = next_seq[k];
            next_seq[k] += 1;
            let key = format!("k{k}");
            let poisoned = poison(seq);
            let pad: String = (0..rng.random_range(0..64))
                .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                .collect();
            let tag = if poisoned { "poison" } else { "good" };
            Msg {
                value: Some(format!("{key}#{seq}#{tag}#{pad}").into_bytes()),
                key: Some(key.into_bytes()),
                headers: vec![],
                seq,
                poison: poisoned,
            }
        })
        .collect()
}

/// Waits until every produced record was accepted or dead-lettered (`dlq`: topic and
/// partitions, read every second), or `limit` passed. Returns the dead-letter coordinates.
pub async fn settle(
    broker: &Broker,
    sink: &Sink,
    ledger: &Ledger,
    dlq: Option<(&str, i32)>,
    limit: Duration,
) -> Vec<(i32, i64, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        let dead: Vec<(i32, i64, u64)> = match dlq {
            Some((t, n)) => broker
                .read_all(t, n)
                .await
                .iter()
                .map(|m| {
                    let (p, o, d, _) = broker::dead_letter_coordinates(m);
                    (p, o, d)
                })
                .collect(),
            None => vec![],
        };
        let accepted: std::collections::HashSet<(i32, i64)> = sink
            .hits()
            .iter()
            .filter(|h| h.accepted)
            .map(|h| (h.partition, h.offset))
            .collect();
        let missing = ledger
            .lock()
            .expect("ledger lock")
            .keys()
            .filter(|c| !accepted.contains(c) && !dead.iter().any(|(p, o, _)| (*p, *o) == **c))
            .count();
        if missing == 0 || Instant::now() > deadline {
            if missing > 0 {
                eprintln!("settle: {missing} records still missing after {limit:?}");
            }
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(if dlq.is_some() {
            1000
        } else {
            100
        }))
        .await;
    }
}

/// Largest gap between consecutive arrivals at the sink in `[from, to)`: the pause a
/// membership change caused (a reported figure, never asserted).
pub fn largest_gap(hits: &[sink::Hit], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = hits
        .iter()
        .map(|h| h.at)
        .filter(|t| *t >= from && *t < to)
        .collect();
    times.sort();
    let mut prev = from;
    let mut max = Duration::ZERO;
    for t in times {
        max = max.max(t - prev);
        prev = t;
    }
    max.max(to.saturating_duration_since(prev))
}

/// The sidecar's count of commits whose metadata could not carry all it should (records finished
/// above the committed offset may then be delivered again).
pub const OVERFLOWS_METRIC: &str = "kcp_commit_metadata_overflows_total";

/// [`OVERFLOWS_METRIC`] summed over sidecar incarnations, each read right before it is stopped
/// or killed (an overflow in the shutdown commit itself is not seen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflows {
    /// The test does not read it (`-` in the table).
    #[default]
    NotRead,
    /// No sidecar exposed it (`n/a`).
    Absent,
    Counted(u64),
}

impl Overflows {
    /// Adds what `sidecar` counted so far.
    pub async fn read(&mut self, sidecar: &sidecar::Sidecar) {
        let seen = sidecar.metric_sum(OVERFLOWS_METRIC).await.map(|v| v as u64);
        *self = match (*self, seen) {
            (Self::Counted(n), seen) => Self::Counted(n + seen.unwrap_or(0)),
            (_, Some(v)) => Self::Counted(v),
            (_, None) => Self::Absent,
        };
    }
}

impl std::fmt::Display for Overflows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRead => f.write_str("-"),
            Self::Absent => f.write_str("n/a"),
            Self::Counted(n) => write!(f, "{n}"),
        }
    }
}

/// One row of the results table: printed, and appended to
/// `$CARGO_TARGET_TMPDIR/reliability-table.md`.
pub struct Row<'a> {
    pub class: &'a str,
    pub episodes: usize,
    pub records: usize,
    pub lost: usize,
    pub dup_max: usize,
    pub dup_mean: f64,
    /// [`check::Report::finished_replayed`]: extra acceptances of finished records.
    pub finished_replayed: usize,
    /// [`check::Report::inflight_max`]: the most in-flight duplicates in one episode.
    pub inflight_max: usize,
    pub overflows: Overflows,
    pub notes: String,
}

impl<'a> Row<'a> {
    /// The row of a class whose figures all come from one [`check::Report`] over `episodes`
    /// episodes (duplicates averaged per episode).
    pub fn of(
        class: &'a str,
        episodes: usize,
        r: &check::Report,
        overflows: Overflows,
        notes: String,
    ) -> Self {
        Self {
            class,
            episodes,
            records: r.produced,
            lost: r.lost.len(),
            dup_max: r.max_duplicates_per_record,
            dup_mean: r.duplicates as f64 / episodes.max(1) as f64,
            finished_replayed: r.finished_replayed,
            inflight_max: r.inflight_max(),
            overflows,
            notes,
        }
    }
}

pub fn report(row: &Row<'_>) {
    let line = format!(
        "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
        row.class,
        row.episodes,
        row.records,
        row.lost,
        row.dup_max,
        row.dup_mean,
        row.finished_replayed,
        row.inflight_max,
        row.overflows,
        row.notes
    );
    eprintln!("RELIABILITY {line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-table.md");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}
