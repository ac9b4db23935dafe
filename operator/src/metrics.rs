//! Prometheus metrics of the operator, all prefixed `kcp_operator_`.
//!
//! One [`Metrics`] for the process, registered into one registry served on `/metrics` by
//! `admin`. Labels are bounded: an error category, a resource kind; never an object name,
//! except the per-resource figures ([`resources`]), labelled with the namespace and name of each
//! `KafkaConsumerProxy` (one series per resource and figure, dropped after its deletion).

pub mod resources;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};
pub use resources::{Figures, Resources};

/// Label of a failed reconcile: `Error::category()`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: &'static str,
}

/// Label of an API write: the resource written (`deployments`, `configmaps`,
/// `kafkaconsumerproxies/status`, `events`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: &'static str,
}

/// Every metric of the operator.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that ended in an error, by category.
    pub reconcile_failures: Family<CategoryLabel, Counter>,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
    /// Duration of lag reads, from asked for to done (waiting for a slot included).
    pub lag_probe_duration: Histogram,
    /// Lag probes that failed (Kafka unreachable, timeout, auth).
    pub lag_probe_failures: Counter,
    /// Lag reads waiting for a slot of their cluster.
    pub lag_reads_waiting: Gauge,
    /// Lag reads holding a slot of their cluster (talking to Kafka).
    pub lag_reads_running: Gauge,
    /// Writes sent to the API server by reconciles, by resource. A no-op reconcile adds zero.
    /// Lease renewals are not here (see `lease_writes`), so the sum is reconcile work only.
    pub api_writes: Family<ResourceLabel, Counter>,
    /// Writes to the leader-election Lease (a renewal every retry period while leading).
    pub lease_writes: Counter,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Every resource's lag, stuck partitions, dead letters and readiness ([`resources`]).
    pub resources: Resources,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        Self {
            reconciles: Counter::default(),
            reconcile_failures: Family::default(),
            reconcile_duration: Histogram::new(buckets),
            lag_probe_duration: Histogram::new(buckets),
            lag_probe_failures: Counter::default(),
            lag_reads_waiting: Gauge::default(),
            lag_reads_running: Gauge::default(),
            api_writes: Family::default(),
            lease_writes: Counter::default(),
            leader: Gauge::default(),
            resources: Resources::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the `kcp_operator` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("kcp_operator");
        r.register("reconciles", "Reconciles started", m.reconciles.clone());
        r.register(
            "reconcile_failures",
            "Reconciles that failed, by error category",
            m.reconcile_failures.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Duration of one reconcile",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        r.register_with_unit(
            "lag_probe_duration",
            "Duration of one lag read of a resource, waiting for a slot of its cluster included",
            Unit::Seconds,
            m.lag_probe_duration.clone(),
        );
        r.register(
            "lag_probe_failures",
            "Lag probes that failed",
            m.lag_probe_failures.clone(),
        );
        r.register(
            "lag_reads_waiting",
            "Lag reads waiting for one of the read slots of their Kafka cluster",
            m.lag_reads_waiting.clone(),
        );
        r.register(
            "lag_reads_running",
            "Lag reads holding a read slot of their Kafka cluster",
            m.lag_reads_running.clone(),
        );
        r.register(
            "api_writes",
            "Writes sent to the Kubernetes API server by reconciles, by resource",
            m.api_writes.clone(),
        );
        r.register(
            "lease_writes",
            "Writes to the leader-election Lease",
            m.lease_writes.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        r.register_collector(Box::new(m.resources.clone()));
        m
    }

    /// Counts one write to `resource`.
    pub fn api_write(&self, resource: &'static str) {
        self.api_writes
            .get_or_create(&ResourceLabel { resource })
            .inc();
    }

    /// Writes to `resource` so far.
    pub fn api_writes_to(&self, resource: &'static str) -> u64 {
        self.api_writes
            .get(&ResourceLabel { resource })
            .map_or(0, |c| c.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_carry_prefix_and_units() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.api_write("deployments");
        m.reconcile_failures
            .get_or_create(&CategoryLabel {
                category: "invalid_spec",
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for name in [
            "kcp_operator_reconciles_total",
            "kcp_operator_reconcile_failures_total{category=\"invalid_spec\"} 1",
            "kcp_operator_reconcile_duration_seconds_bucket",
            "kcp_operator_lag_probe_duration_seconds_count",
            "kcp_operator_lag_probe_failures_total",
            "kcp_operator_lag_reads_waiting",
            "kcp_operator_lag_reads_running",
            "kcp_operator_api_writes_total{resource=\"deployments\"} 1",
            "kcp_operator_lease_writes_total",
            "kcp_operator_leader",
        ] {
            assert!(text.contains(name), "missing {name} in:\n{text}");
        }
        assert_eq!(m.api_writes_to("deployments"), 1);
        assert_eq!(m.api_writes_to("configmaps"), 0);
    }
}
