//! Command line: which scenarios, how many repeats, where the JSON goes.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Benchmarks the sidecar against the HTTP and Kafka limits measured in the same run, on one
/// machine with no network: prints a markdown table and writes JSON.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Short smoke run of every scenario with small counts.
    #[arg(long, env = "KCP_BENCH_QUICK")]
    pub quick: bool,
    /// Run only these scenarios (repeatable); all when not given.
    #[arg(
        long = "scenario",
        value_enum,
        env = "KCP_BENCH_SCENARIO",
        value_delimiter = ','
    )]
    pub scenarios: Vec<Scenario>,
    /// Repeats of the throughput, batch and latency figures (median and min–max over them).
    /// Default: 1 with --quick, 2 otherwise (to keep a full run near 10 minutes).
    #[arg(long, env = "KCP_BENCH_REPEAT", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: Option<u32>,
    /// Repeats of the parallel-consumer table (its partition mode takes ~25 s a run). Default: 1.
    #[arg(long, env = "KCP_BENCH_PARALLEL_REPEAT", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub parallel_repeat: Option<u32>,
    /// Records per throughput and batch run. Default: 2,000 with --quick, 20,000 otherwise.
    #[arg(long, env = "KCP_BENCH_RECORDS")]
    pub records: Option<u64>,
    /// Seconds after which one throughput or batch run stops even if records remain (its rate
    /// is then over what was delivered). Default: 3 with --quick, 4 otherwise (batch: 15, its
    /// unbatched rows pay 2 ms per request).
    #[arg(long, env = "KCP_BENCH_RUN_CAP_SECS")]
    pub run_cap_secs: Option<u64>,
    /// Seconds after which the backlog drain stops even if records remain.
    /// Default: 15 with --quick, 60 otherwise.
    #[arg(long, env = "KCP_BENCH_BACKLOG_CAP_SECS")]
    pub backlog_cap_secs: Option<u64>,
    /// Throughput: only these maxInFlight values (default 1,16,64).
    #[arg(long, env = "KCP_BENCH_MAX_IN_FLIGHT", value_delimiter = ',')]
    pub max_in_flight: Vec<u32>,
    /// Throughput: only these partition counts (default 1,8).
    #[arg(long, env = "KCP_BENCH_PARTITIONS", value_delimiter = ',', value_parser = clap::value_parser!(i32).range(1..=64))]
    pub partitions: Vec<i32>,
    /// Backlog drained for the memory and CPU figures. Default: 20,000 with --quick, 1,000,000 otherwise.
    #[arg(long, env = "KCP_BENCH_BACKLOG")]
    pub backlog: Option<u64>,
    /// Request rate of the latency scenario, per second.
    #[arg(long, env = "KCP_BENCH_LATENCY_RATE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20000))]
    pub latency_rate: u32,
    /// A librdkafka property for the sidecar (`kafka.clientConfig`) and the bare consumer alike,
    /// `KEY=VALUE` (repeatable); for experiments. None by default.
    #[arg(long = "kafka-setting", env = "KCP_BENCH_KAFKA_SETTING", value_parser = parse_setting)]
    pub kafka_settings: Vec<(String, String)>,
    /// The preload producer's `batch.size` in bytes. A consumer fetches whole batches, so with
    /// many partitions behind, memory grows with it (1,000,000 is librdkafka's default).
    #[arg(long, env = "KCP_BENCH_PRELOAD_BATCH_BYTES", default_value_t = crate::kafka::DEFAULT_BATCH_BYTES, value_parser = clap::value_parser!(u32).range(1024..=1_000_000))]
    pub preload_batch_bytes: u32,
    /// Resources the operator scenario creates (it needs a cluster: KUBECONFIG). Lower it for a
    /// small cluster. Default: 100 with --quick, 1,000 otherwise.
    #[arg(long, env = "KCP_BENCH_OPERATOR_RESOURCES", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub operator_resources: Option<u32>,
    /// Capacity scenario: seconds per phase of the app's capacity (8, 32, then 4 workers).
    /// Default: 1.5 with --quick, 4 otherwise.
    #[arg(long, env = "KCP_BENCH_CAPACITY_PHASE_SECS", value_parser = parse_secs)]
    pub capacity_phase_secs: Option<f64>,
    /// Capacity scenario: the fixed maxInFlight values swept against the adaptive limit.
    /// Default: 1,8,32 with --quick, 1,2,4,8,16,32,64 otherwise.
    #[arg(long, env = "KCP_BENCH_CAPACITY_SWEEP", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub capacity_sweep: Vec<u32>,
    /// Outage scenario: seconds the app answers 503. Default: 5 with --quick, 30 otherwise.
    #[arg(long, env = "KCP_BENCH_OUTAGE_SECS", value_parser = parse_secs)]
    pub outage_secs: Option<f64>,
    /// Keep the scratch directory (each sidecar child's config and log) after a successful run.
    #[arg(long, env = "KCP_BENCH_KEEP_SCRATCH")]
    pub keep_scratch: bool,
    /// Where the JSON results go.
    #[arg(
        long,
        env = "KCP_BENCH_OUT",
        default_value = "bench-results/latest.json"
    )]
    pub out: PathBuf,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (0.1..=3600.0).contains(&x) => Ok(x),
        _ => Err(format!("expected seconds from 0.1 to 3600, got {s:?}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs the sidecar pipeline as `kcp-sidecar` does (used by the bench on itself).
    #[command(hide = true, name = "sidecar-child")]
    SidecarChild {
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs the bare forwarder over a preloaded topic; the job is JSON (used by the bench on
    /// itself).
    #[command(hide = true, name = "forwarder-child")]
    ForwarderChild { job: String },
    /// Runs the operator as `kcp-operator` does, with these operator flags after `--` (used by
    /// the bench on itself).
    #[command(hide = true, name = "operator-child")]
    OperatorChild {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Records/s by maxInFlight × ordering × partitions, against the HTTP and Kafka limits.
    Throughput,
    /// Records/s with batch delivery (unbatched, maxRecords 1, 10, 100) against a sink with a
    /// fixed cost per request, beside the unbatched limit.
    Batch,
    /// Added latency p50/p99 at a fixed rate.
    Latency,
    /// The sidecar's resident memory (idle, draining a backlog) and CPU per 10,000 records.
    Resources,
    /// Seconds to drain 10,000 records with a 0–5 ms random sink, per ordering mode.
    Parallel,
    /// An app whose capacity changes (8, 32, then 4 workers of 5 ms): adaptive concurrency
    /// against a sweep of fixed maxInFlight, per phase.
    Capacity,
    /// An app that answers 503 for 30 s, then recovers: records dead-lettered and the time back
    /// to full speed.
    Outage,
    /// The operator with 1,000 resources: memory, time to reconcile all, writes per no-op
    /// reconcile, time to notice a spec change (needs KUBECONFIG).
    Operator,
}
