//! Which partitions are stuck: a committed offset that does not move while there are records
//! to consume, for a whole window.
//!
//! Pure: positions and a time in, stuck partitions out. Burrow (LinkedIn's lag checker) is the
//! reference: it calls a partition STALL when its committed offset does not change over its
//! window of commits while lag is non-zero. Here the window is a duration (`--stuck-after`, 5
//! minutes by default) over the operator's lag reads (every `--lag-refresh-interval`): a
//! partition is stuck once every read for at least the window saw the same committed offset
//! (or no commit at all) with lag above 0. It stops being stuck at the first read where the
//! offset moved or the lag is 0. A slow consumer that commits at least once per window is not
//! stuck, however far behind; a partition with nothing to consume never is.
//!
//! Kept in the operator's memory per resource: an operator restart (or a leader change) starts
//! every window over, so a stuck partition shows again one window after the restart.

use std::{collections::HashMap, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kcp_crds::v1alpha1::StuckPartition;

use super::Position;

/// The stuck window of one resource's group.
#[derive(Debug, Clone)]
pub struct StuckWindow {
    window: Duration,
    seen: HashMap<(String, i32), Seen>,
}

#[derive(Debug, Clone)]
struct Seen {
    committed: Option<i64>,
    since: Timestamp,
}

impl StuckWindow {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: HashMap::new(),
        }
    }

    /// Takes a read made at `now`; returns every stuck partition, the longest stuck first
    /// (then by topic and partition).
    pub fn observe(&mut self, positions: &[Position], now: Timestamp) -> Vec<StuckPartition> {
        let mut stuck = Vec::new();
        let mut seen = HashMap::with_capacity(positions.len());
        for p in positions.iter().filter(|p| p.lag > 0) {
            let key = (p.topic.clone(), p.partition);
            let since = match self.seen.remove(&key) {
                Some(s) if s.committed == p.committed => s.since,
                _ => now,
            };
            let held = now.duration_since(since);
            if held.as_secs() >= 0 && held.unsigned_abs() >= self.window {
                stuck.push(StuckPartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: p.committed,
                    since: Time(since),
                    record: p.record.clone(),
                });
            }
            seen.insert(
                key,
                Seen {
                    committed: p.committed,
                    since,
                },
            );
        }
        // Partitions caught up, or gone, start over.
        self.seen = seen;
        stuck.sort_by(|a, b| {
            (a.since.0, &a.topic, a.partition).cmp(&(b.since.0, &b.topic, b.partition))
        });
        stuck
    }
}

/// `secs` for people: `45s`, `6m`, `4m12s`, `2h3m`, `3d4h`.
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m, sec) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, sec) => format!("{m}m{sec}s"),
        (0, h, 0, _) => format!("{h}h"),
        (0, h, m, _) => format!("{h}h{m}m"),
        (d, 0, _, _) => format!("{d}d"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

/// The `PartitionsStuck` condition's message: each stuck partition (the first three), as
/// `orders/3 stuck at offset 18234 for 6m (record tried 17 times, last 503)`.
pub fn message(stuck: &[StuckPartition], count: usize, now: Timestamp) -> String {
    let mut parts: Vec<String> = stuck
        .iter()
        .take(3)
        .map(|s| {
            let at = s.offset.map_or_else(
                || "without a commit".to_owned(),
                |o| format!("at offset {o}"),
            );
            let held = human(now.duration_since(s.since.0).as_secs());
            let why = s
                .record
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("{}/{} stuck {at} for {held}{why}", s.topic, s.partition)
        })
        .collect();
    if count > parts.len() {
        parts.push(format!("and {} more", count - parts.len()));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_764_000_000 + secs).expect("in range")
    }

    fn pos(partition: i32, committed: Option<i64>, lag: i64) -> Position {
        Position {
            topic: "orders".into(),
            partition,
            committed,
            lag,
            record: (partition == 3).then(|| "record tried 17 times, last 503".into()),
        }
    }

    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn stuck_after_a_whole_window_at_one_offset_with_lag() {
        let mut w = StuckWindow::new(WINDOW);
        assert!(w.observe(&[pos(3, Some(18_234), 5)], at(0)).is_empty());
        assert!(w.observe(&[pos(3, Some(18_234), 9)], at(299)).is_empty());
        let stuck = w.observe(&[pos(3, Some(18_234), 12)], at(360));
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].since, Time(at(0)));
        assert_eq!(stuck[0].offset, Some(18_234));
        assert_eq!(
            message(&stuck, 1, at(360)),
            "orders/3 stuck at offset 18234 for 6m (record tried 17 times, last 503)"
        );
    }

    #[test]
    fn a_moving_offset_or_no_lag_starts_the_window_over() {
        let mut w = StuckWindow::new(WINDOW);
        w.observe(&[pos(1, Some(10), 5)], at(0));
        // Slow but moving: never stuck.
        assert!(w.observe(&[pos(1, Some(11), 500)], at(200)).is_empty());
        assert!(w.observe(&[pos(1, Some(11), 900)], at(450)).is_empty());
        assert_eq!(w.observe(&[pos(1, Some(11), 900)], at(500)).len(), 1);
        // The record finishes: the offset moves, the condition clears at once.
        assert!(w.observe(&[pos(1, Some(12), 899)], at(530)).is_empty());
        // Caught up, then records again at the same offset: a new window.
        w.observe(&[pos(1, Some(12), 0)], at(560));
        assert!(w.observe(&[pos(1, Some(12), 1)], at(600)).is_empty());
        assert!(w.observe(&[pos(1, Some(12), 1)], at(899)).is_empty());
        assert_eq!(w.observe(&[pos(1, Some(12), 1)], at(900)).len(), 1);
    }

    #[test]
    fn never_committed_with_lag_is_stuck_too_and_the_message_is_bounded() {
        let mut w = StuckWindow::new(WINDOW);
        let all: Vec<Position> = (0..5).map(|p| pos(p, None, 7)).collect();
        w.observe(&all, at(0));
        let stuck = w.observe(&all, at(301));
        assert_eq!(stuck.len(), 5);
        assert_eq!(
            message(&stuck, 5, at(301)),
            "orders/0 stuck without a commit for 5m1s; orders/1 stuck without a commit for 5m1s; \
             orders/2 stuck without a commit for 5m1s; and 2 more"
        );
    }

    #[test]
    fn human_durations() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (360, "6m"),
            (252, "4m12s"),
            (7_200, "2h"),
            (7_380, "2h3m"),
            (86_400, "1d"),
            (273_600, "3d4h"),
            (-5, "0s"),
        ];
        for (secs, text) in cases {
            assert_eq!(human(secs), text, "{secs}");
        }
    }
}
