//! Per-resource figures on the operator's `/metrics`: lag in records and seconds, stuck
//! partitions, dead letters and readiness of every `KafkaConsumerProxy`, labelled `namespace`
//! and `name` only, so Prometheus, dashboards and autoscalers see every consumer, even at zero
//! replicas (the figures are read from Kafka, not from pods).
//!
//! Each reconcile sets its resource's figures from the status it computed ([`Figures::of`]).
//! A resource that is no longer reconciled (deleted) drops out once its figures are older than
//! the time to live: reconciles come at least every lag refresh interval, and the operator sets
//! the time to live to three of them.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kcp_crds::v1alpha1::KafkaConsumerProxyStatus;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::gauge::ConstGauge,
};

/// What one resource's series say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub lag_records: Option<i64>,
    pub lag_seconds: Option<i64>,
    pub stuck_partitions: i64,
    pub dead_lettered: Option<i64>,
    pub ready: bool,
}

impl Figures {
    /// The figures of `status`; `stuck` is the number of stuck partitions in all (the status
    /// lists at most 20).
    pub fn of(status: &KafkaConsumerProxyStatus, stuck: usize) -> Self {
        Self {
            lag_records: status.lag.as_ref().map(|l| l.total),
            lag_seconds: status.lag.as_ref().and_then(|l| l.seconds),
            stuck_partitions: i64::try_from(stuck).unwrap_or(i64::MAX),
            dead_lettered: status.dead_letter.as_ref().map(|d| d.count),
            ready: status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
        }
    }
}

#[derive(Debug)]
struct State {
    ttl: Duration,
    figures: BTreeMap<(String, String), (Figures, Instant)>,
}

/// The collector of every resource's figures. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Resources(Arc<Mutex<State>>);

impl Default for Resources {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(State {
            ttl: Duration::from_secs(600),
            figures: BTreeMap::new(),
        })))
    }
}

impl Resources {
    /// Figures older than `ttl` are no longer exported.
    pub fn set_ttl(&self, ttl: Duration) {
        if let Ok(mut s) = self.0.lock() {
            s.ttl = ttl;
        }
    }

    /// Sets the figures of `namespace/name`.
    pub fn set(&self, namespace: &str, name: &str, figures: Figures) {
        if let Ok(mut s) = self.0.lock() {
            s.figures.insert(
                (namespace.to_owned(), name.to_owned()),
                (figures, Instant::now()),
            );
        }
    }

    /// The figures exported now, dropping those past their time to live.
    fn current(&self) -> Vec<((String, String), Figures)> {
        let Ok(mut s) = self.0.lock() else {
            return Vec::new();
        };
        let ttl = s.ttl;
        s.figures.retain(|_, (_, at)| at.elapsed() <= ttl);
        s.figures
            .iter()
            .map(|(k, (f, _))| (k.clone(), *f))
            .collect()
    }
}

type Pick = fn(&Figures) -> Option<i64>;

const SERIES: [(&str, &str, Pick); 5] = [
    (
        "resource_lag_records",
        "Records the resource's consumer group has not committed, over every partition",
        |f| f.lag_records,
    ),
    (
        "resource_lag_seconds",
        "Age in seconds of the oldest record the group has not committed (0 when caught up)",
        |f| f.lag_seconds,
    ),
    (
        "resource_stuck_partitions",
        "Partitions whose committed offset has not moved for the stuck window while they have lag",
        |f| Some(f.stuck_partitions),
    ),
    (
        "resource_dead_lettered_records",
        "Records the resource's consumer group dead-lettered (from its commits)",
        |f| f.dead_lettered,
    ),
    ("resource_ready", "1 when the resource is Ready", |f| {
        Some(i64::from(f.ready))
    }),
];

impl Collector for Resources {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let current = self.current();
        for (name, help, pick) in SERIES {
            let g = ConstGauge::new(0i64);
            let mut d = e.encode_descriptor(name, help, None, g.metric_type())?;
            for ((namespace, resource), f) in &current {
                if let Some(v) = pick(f) {
                    let labels = [
                        ("namespace", namespace.as_str()),
                        ("name", resource.as_str()),
                    ];
                    ConstGauge::new(v).encode(d.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
