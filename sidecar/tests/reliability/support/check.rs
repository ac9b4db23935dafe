//! The independent check: what the producer's ledger says was written against what the sink
//! received (accepted) and what the dead-letter topic holds.
//!
//! Duplicates (extra acceptances of a record) are split in two. A **finished replay** is an
//! acceptance of a record an earlier acceptance of which was *finished* before it arrived: its
//! response had been written, and the sidecar incarnation that sent it was not killed within
//! [`KILL_SLACK`] of that (a graceful stop, a revoke or no stop at all finish every answered
//! request). Every other extra acceptance is an **in-flight duplicate**: the earlier request had
//! no answer yet, or its answer was still on its way when the sidecar got `kill -9`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use super::{broker::Produced, sink::Hit};

/// Which order must hold among first deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Per partition, by offset.
    Partition,
    /// Per partition and key, by offset.
    Key,
    None,
}

/// (partition, key): where order must hold.
type Lane = (i32, Option<Vec<u8>>);

/// A response written less than this before a `kill -9` counts as in flight: it may still have
/// been in the sidecar's socket buffer, unread, when the process died.
pub const KILL_SLACK: Duration = Duration::from_millis(20);

/// A sidecar incarnation ended by `kill -9`: the sink's epoch while it ran, and the instant
/// right before the signal ([`super::sink::Sink::note_kill`]).
#[derive(Clone, Copy, Debug)]
pub struct Kill {
    pub epoch: u32,
    pub at: Instant,
}

/// A finished record accepted again.
#[derive(Clone, Copy, Debug)]
pub struct Replay {
    pub coord: (i32, i64),
    /// The epoch of the finished acceptance it repeats.
    pub epoch: u32,
    /// The epoch of this acceptance (when the record came back).
    pub again_epoch: u32,
    /// How long before its incarnation's `kill -9` that acceptance was answered; `None` when
    /// that incarnation was not killed.
    pub before_kill: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub produced: usize,
    /// Records accepted (2xx) at least once.
    pub delivered: usize,
    /// Records in the dead-letter topic (distinct).
    pub dead_lettered: usize,
    /// Produced, neither accepted nor dead-lettered.
    pub lost: Vec<(i32, i64)>,
    /// Accepted or dead-lettered with a body that differs from what was produced.
    pub corrupted: Vec<(i32, i64)>,
    /// Dead-lettered although the app would have accepted it.
    pub wrongly_dead_lettered: Vec<(i32, i64)>,
    /// Extra acceptances (sum over records of accepted − 1).
    pub duplicates: usize,
    /// The most times one record was accepted beyond the first.
    pub max_duplicates_per_record: usize,
    /// Extra acceptances of finished records (see the module doc); goal 0.
    pub finished_replayed: usize,
    /// The other extra acceptances: `duplicates − finished_replayed`.
    pub inflight_duplicates: usize,
    /// Each finished replay.
    pub finished_replays: Vec<Replay>,
    /// In-flight duplicates by the epoch of the acceptance they repeat (the incarnation that
    /// had the record in flight); epochs without any are absent.
    pub inflight_by_epoch: BTreeMap<u32, usize>,
    /// Of those, the ones whose repeated acceptance had no response written at all: requests
    /// still open when their incarnation ended (at most `maxInFlight` per kill). The rest were
    /// answered within [`KILL_SLACK`] of a kill.
    pub unanswered_by_epoch: BTreeMap<u32, usize>,
    pub order_violations: Vec<String>,
}

impl Report {
    /// The most in-flight duplicates attributed to one epoch.
    pub fn inflight_max(&self) -> usize {
        self.inflight_by_epoch.values().copied().max().unwrap_or(0)
    }

    /// Finished replays by the epoch of the acceptance they repeat.
    pub fn finished_by_epoch(&self) -> BTreeMap<u32, usize> {
        let mut m = BTreeMap::new();
        for r in &self.finished_replays {
            *m.entry(r.epoch).or_default() += 1;
        }
        m
    }

    /// Panics with the finished replays when there are any and `KCP_RELIABILITY_STRICT_REPLAYS`
    /// is `1`: for the classes that still replay finished records (rebalances, kill -9 within a
    /// commit interval), see docs/reliability.md.
    pub fn assert_no_finished_replays_if_strict(&self, what: &str) {
        if super::strict_replays() {
            self.assert_no_finished_replays(what);
        }
    }

    /// Panics with the finished replays when there are any: a graceful handover (SIGTERM, the
    /// drain hook, a rollout) replays nothing finished.
    pub fn assert_no_finished_replays(&self, what: &str) {
        {
            assert!(
                self.finished_replayed == 0,
                "{what}: {} acceptances of finished records (partition, offset): {:?}",
                self.finished_replayed,
                self.finished_replays
                    .iter()
                    .map(|r| r.coord)
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Panics with the whole report unless nothing was lost, corrupted, wrongly dead-lettered or
    /// reordered.
    pub fn assert_ok(&self, what: &str) {
        assert!(
            self.lost.is_empty()
                && self.corrupted.is_empty()
                && self.wrongly_dead_lettered.is_empty()
                && self.order_violations.is_empty(),
            "{what}: {self:#?}"
        );
    }
}

/// `dead`: (original partition, original offset, value digest) of each dead-letter record. No
/// sidecar was killed: every answered request was finished.
pub fn check(
    produced: &BTreeMap<(i32, i64), Produced>,
    hits: &[Hit],
    dead: &[(i32, i64, u64)],
    order: Order,
) -> Report {
    check_after_kills(produced, hits, dead, order, &[])
}

/// [`check`] when the incarnations `kills` lists were ended by `kill -9`.
pub fn check_after_kills(
    produced: &BTreeMap<(i32, i64), Produced>,
    hits: &[Hit],
    dead: &[(i32, i64, u64)],
    order: Order,
    kills: &[Kill],
) -> Report {
    let mut r = Report {
        produced: produced.len(),
        ..Report::default()
    };
    let mut accepted: HashMap<(i32, i64), Vec<&Hit>> = HashMap::new();
    for h in hits.iter().filter(|h| h.accepted) {
        accepted.entry((h.partition, h.offset)).or_default().push(h);
    }
    let dead_set: BTreeSet<(i32, i64)> = dead.iter().map(|(p, o, _)| (*p, *o)).collect();
    for (p, o, d) in dead {
        match produced.get(&(*p, *o)) {
            Some(rec) if rec.digest != *d => r.corrupted.push((*p, *o)),
            Some(rec) if !rec.poison => r.wrongly_dead_lettered.push((*p, *o)),
            _ => {}
        }
    }
    for (coord, rec) in produced {
        let got = accepted.get(coord);
        if got.is_none() && !dead_set.contains(coord) {
            r.lost.push(*coord);
        }
        if let Some(hs) = got {
            if hs
                .iter()
                .any(|h| h.digest != rec.digest || h.len != rec.len)
            {
                r.corrupted.push(*coord);
            }
            r.duplicates += hs.len() - 1;
            r.max_duplicates_per_record = r.max_duplicates_per_record.max(hs.len() - 1);
            split_duplicates(&mut r, *coord, hs, kills);
        }
    }
    r.finished_replayed = r.finished_replays.len();
    r.inflight_duplicates = r.duplicates - r.finished_replayed;
    r.delivered = accepted.keys().filter(|c| produced.contains_key(c)).count();
    r.dead_lettered = dead_set.len();
    if order != Order::None {
        // Lane → offsets in offset order with the arrival index of their first acceptance.
        // Key lanes are ordered by the producer's sequence number, partition lanes by offset.
        let mut lanes: BTreeMap<Lane, Vec<(i64, i64, usize)>> = BTreeMap::new();
        for (&(p, o), rec) in produced {
            let Some(first) = accepted
                .get(&(p, o))
                .and_then(|hs| hs.iter().map(|h| h.index).min())
            else {
                continue;
            };
            let (lane, rank) = match order {
                Order::Key => ((p, rec.key.clone()), rec.seq as i64),
                _ => ((p, None), o),
            };
            lanes.entry(lane).or_default().push((rank, o, first));
        }
        for ((p, key), mut list) in lanes {
            list.sort();
            for w in list.windows(2) {
                if w[1].2 < w[0].2 {
                    r.order_violations.push(format!(
                        "partition {p} key {:?}: offset {} first accepted after offset {}",
                        key.as_deref().map(String::from_utf8_lossy),
                        w[0].1,
                        w[1].1
                    ));
                }
            }
        }
    }
    r
}

/// Classifies each acceptance of one record after its first (`hs` in arrival order).
fn split_duplicates(r: &mut Report, coord: (i32, i64), hs: &[&Hit], kills: &[Kill]) {
    // When the sidecar had finished an acceptance: answered, and not lost to a kill.
    let finished_at = |h: &Hit| {
        let answered = h.answered_at?;
        match kills.iter().find(|k| k.epoch == h.epoch) {
            Some(k) if answered + KILL_SLACK > k.at => None,
            _ => Some(answered),
        }
    };
    for (i, h) in hs.iter().enumerate().skip(1) {
        let finished = hs[..i]
            .iter()
            .filter_map(|e| Some((e, finished_at(e)?)))
            .filter(|(_, t)| *t <= h.at)
            .max_by_key(|(_, t)| *t);
        match finished {
            Some((e, t)) => r.finished_replays.push(Replay {
                coord,
                epoch: e.epoch,
                again_epoch: h.epoch,
                before_kill: kills
                    .iter()
                    .find(|k| k.epoch == e.epoch)
                    .map(|k| k.at.saturating_duration_since(t)),
            }),
            None => {
                let repeated = hs[i - 1];
                *r.inflight_by_epoch.entry(repeated.epoch).or_default() += 1;
                if repeated.answered_at.is_none() {
                    *r.unanswered_by_epoch.entry(repeated.epoch).or_default() += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn produced() -> BTreeMap<(i32, i64), Produced> {
        BTreeMap::from([(
            (0, 7),
            Produced {
                key: None,
                seq: 0,
                digest: 1,
                len: 0,
                poison: false,
            },
        )])
    }

    /// An acceptance of 0/7 by `epoch`, arriving at `t0 + at` ms, answered at `t0 + answered` ms.
    fn hit(t0: Instant, index: usize, epoch: u32, at: u64, answered: Option<u64>) -> Hit {
        let ms = |m| t0 + Duration::from_millis(m);
        Hit {
            index,
            at: ms(at),
            epoch,
            partition: 0,
            offset: 7,
            attempt: 1,
            key: None,
            digest: 1,
            len: 0,
            headers: http::HeaderMap::new(),
            poison: false,
            accepted: true,
            answered_at: answered.map(ms),
        }
    }

    fn split(hits: &[Hit], kill_at: Option<u64>, t0: Instant) -> Report {
        let kills: Vec<Kill> = kill_at
            .map(|k| Kill {
                epoch: 0,
                at: t0 + Duration::from_millis(k),
            })
            .into_iter()
            .collect();
        check_after_kills(&produced(), hits, &[], Order::Partition, &kills)
    }

    #[test]
    fn an_answer_well_before_the_kill_was_finished() {
        let t0 = Instant::now();
        let hits = [hit(t0, 0, 0, 0, Some(5)), hit(t0, 1, 1, 1000, Some(1005))];
        let r = split(&hits, Some(100), t0);
        assert_eq!(
            (r.duplicates, r.finished_replayed, r.inflight_duplicates),
            (1, 1, 0)
        );
        assert_eq!(
            r.finished_replays[0].before_kill,
            Some(Duration::from_millis(95))
        );
    }

    #[test]
    fn an_answer_within_the_slack_or_none_is_in_flight() {
        let t0 = Instant::now();
        for (answered, unanswered) in [(Some(90), 0), (None, 1)] {
            let hits = [hit(t0, 0, 0, 0, answered), hit(t0, 1, 1, 1000, Some(1005))];
            let r = split(&hits, Some(100), t0);
            assert_eq!((r.finished_replayed, r.inflight_duplicates), (0, 1));
            assert_eq!(r.inflight_by_epoch, BTreeMap::from([(0, 1)]));
            assert_eq!(
                r.unanswered_by_epoch.get(&0).copied().unwrap_or(0),
                unanswered
            );
        }
    }

    #[test]
    fn without_a_kill_every_answer_is_finished_but_not_before_it_was_written() {
        let t0 = Instant::now();
        let later = [hit(t0, 0, 0, 0, Some(5)), hit(t0, 1, 0, 10, Some(15))];
        assert_eq!(split(&later, None, t0).finished_replayed, 1);
        // The second request arrived while the first was still unanswered.
        let concurrent = [hit(t0, 0, 0, 0, Some(50)), hit(t0, 1, 0, 10, Some(15))];
        let r = split(&concurrent, None, t0);
        assert_eq!((r.finished_replayed, r.inflight_duplicates), (0, 1));
    }
}
