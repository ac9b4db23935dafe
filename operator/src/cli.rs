//! Command-line flags; every flag also reads an environment variable.

use std::net::SocketAddr;

use clap::{ArgAction, Parser};
use kcp_crds::Duration;

use crate::telemetry::LogFormat;

/// Sidecar image used when a resource does not set `spec.sidecar.image`.
pub const DEFAULT_SIDECAR_IMAGE: &str = concat!(
    "ghcr.io/kafka-consumer-proxy/kcp-sidecar:",
    env!("CARGO_PKG_VERSION")
);

/// The kafka-consumer-proxy operator.
#[derive(Debug, Clone, Parser)]
#[command(name = "kcp-operator", version, about)]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "KCP_NAMESPACE")]
    pub namespace: Option<String>,

    /// Sidecar image for resources that do not set spec.sidecar.image.
    #[arg(long, env = "KCP_SIDECAR_IMAGE", default_value = DEFAULT_SIDECAR_IMAGE)]
    pub sidecar_image: String,

    /// How often lag is read from Kafka and each resource is resynced (e.g. 30s, 1m).
    #[arg(long, env = "KCP_LAG_REFRESH_INTERVAL", default_value = "30s")]
    pub lag_refresh_interval: Duration,

    /// How long a partition's committed offset must stay put while it has records to consume
    /// before the resource reports it stuck (`PartitionsStuck`). Judged at each lag read, so
    /// at least one lag refresh interval in practice.
    #[arg(long, env = "KCP_STUCK_AFTER", default_value = "5m")]
    pub stuck_after: Duration,

    /// Longest time one lag probe may spend talking to Kafka.
    #[arg(long, env = "KCP_LAG_PROBE_TIMEOUT", default_value = "15s")]
    pub lag_probe_timeout: Duration,

    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = "KCP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log output: json or plain.
    #[arg(long, env = "KCP_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// Resources reconciled at once.
    #[arg(long, env = "KCP_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,

    /// Take part in leader election (turn off only when running a single replica).
    #[arg(long, env = "KCP_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "KCP_LEASE_NAME",
        default_value = "kafka-consumer-proxy-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: POD_NAMESPACE, else the client's default namespace).
    #[arg(long, env = "KCP_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease and in Events (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_typed_durations() {
        let args = Args::try_parse_from(["kcp-operator"]).expect("defaults parse");
        assert_eq!(args.lag_refresh_interval, Duration::from_secs(30));
        assert_eq!(args.stuck_after, Duration::from_secs(300));
        assert!(args.leader_election);
        assert_eq!(args.namespace, None);
        let args = Args::try_parse_from([
            "kcp-operator",
            "--lag-refresh-interval=1m30s",
            "--leader-election=false",
            "--namespace=shop",
            "--log-format=plain",
        ])
        .expect("parses");
        assert_eq!(args.lag_refresh_interval, Duration::from_secs(90));
        assert!(!args.leader_election);
        assert_eq!(args.log_format, LogFormat::Plain);
        assert!(Args::try_parse_from(["kcp-operator", "--lag-refresh-interval=30"]).is_err());
    }
}
