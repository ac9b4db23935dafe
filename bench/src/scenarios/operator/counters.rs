//! The operator's counters at one moment, read from its `/metrics`.
//!
//! Pure: text in, counts out. The scenario scrapes ([`crate::operator::OperatorProc::scrape`]);
//! this module only reads what came back and answers "is it idle?" and "what did a round add?".

use std::collections::BTreeMap;

use crate::prom;

/// The operator's counters at one moment, from its `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// `kcp_operator_reconciles_total`: reconciles started.
    pub started: u64,
    /// `kcp_operator_reconcile_duration_seconds_count`: reconciles finished.
    pub finished: u64,
    /// `kcp_operator_api_writes_total` by label set.
    pub writes: BTreeMap<String, u64>,
}

impl Counters {
    pub fn parse(text: &str) -> Result<Self, prom::PromError> {
        Ok(Self {
            started: prom::counter_sum(text, "kcp_operator_reconciles_total")? as u64,
            finished: prom::counter_sum(text, "kcp_operator_reconcile_duration_seconds_count")?
                as u64,
            writes: prom::counter_samples(text, "kcp_operator_api_writes_total")?
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect(),
        })
    }

    pub fn total_writes(&self) -> u64 {
        self.writes.values().sum()
    }

    /// No reconcile in flight.
    pub fn idle(&self) -> bool {
        self.started == self.finished
    }

    /// Writes added since `before`, by label set; only those that moved.
    pub fn writes_since(&self, before: &Self) -> BTreeMap<String, u64> {
        self.writes
            .iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.writes.get(k).copied().unwrap_or(0));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE kcp_operator_reconciles counter
kcp_operator_reconciles_total 230
# TYPE kcp_operator_reconcile_duration_seconds histogram
kcp_operator_reconcile_duration_seconds_count 230
# TYPE kcp_operator_api_writes counter
kcp_operator_api_writes_total{resource=\"configmaps\"} 100
kcp_operator_api_writes_total{resource=\"kafkaconsumerproxies/status\"} 230
# EOF
";

    #[test]
    fn counters_give_the_writes_a_round_added() {
        let before = Counters::parse(BEFORE).expect("parses");
        assert_eq!((before.started, before.finished), (230, 230));
        assert!(before.idle());
        assert_eq!(before.total_writes(), 330);
        let text = BEFORE
            .replace("reconciles_total 230", "reconciles_total 331")
            .replace("seconds_count 230", "seconds_count 330")
            .replace("status\"} 230", "status\"} 233")
            + "kcp_operator_api_writes_total{resource=\"events\"} 1\n";
        let after = Counters::parse(&text).expect("parses");
        assert!(!after.idle(), "one reconcile still running");
        let d = after.writes_since(&before);
        assert_eq!(
            d,
            BTreeMap::from([
                ("resource=\"events\"".to_owned(), 1),
                ("resource=\"kafkaconsumerproxies/status\"".to_owned(), 3),
            ])
        );
        // A process without the operator's metrics is an error, not zero writes.
        assert!(Counters::parse("# EOF\n").is_err());
    }
}
