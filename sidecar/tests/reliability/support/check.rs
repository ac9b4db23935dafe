//! The independent check: what the producer's ledger says was written against what the sink
//! received (accepted) and what the dead-letter topic holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    pub order_violations: Vec<String>,
}

impl Report {
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

/// `dead`: (original partition, original offset, value digest) of each dead-letter record.
pub fn check(
    produced: &BTreeMap<(i32, i64), Produced>,
    hits: &[Hit],
    dead: &[(i32, i64, u64)],
    order: Order,
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
        }
    }
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
