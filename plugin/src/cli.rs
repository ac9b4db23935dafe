//! The command line: clap types only.
//!
//! Pure. What the flags mean together (exactly one `--to-*`, `--to-offset` needs partitions, ...)
//! is checked by `objects::plan`, which turns a [`Command`] into the object or patch to send.
//! Only the connection flags have an `env` fallback: an environment variable that silently
//! rewinds a consumer group would be a trap.

use clap::{Args, Parser, Subcommand};

use crate::dlq::Coordinates;

/// Operate KafkaConsumerProxy resources: status, pause and resume, rewind, fast-forward, skip a
/// record, redrive dead letters, read the dead-letter topics.
///
/// The operator does the work: rewind, fast-forward, skip and redrive each create one
/// KafkaConsumerProxyOperation, which the operator runs once and reports on in its status.
#[derive(Parser, Debug)]
#[command(name = "kubectl-kcp", bin_name = "kubectl kcp", version)]
pub struct Cli {
    /// Namespace of the proxy (default: the kubeconfig context's namespace).
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "KUBECTL_KCP_NAMESPACE",
        display_order = 100
    )]
    pub namespace: Option<String>,

    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, env = "KUBECTL_KCP_CONTEXT", display_order = 101)]
    pub context: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// One screen: readiness, replicas, lag, stuck partitions, dead letters, operations.
    Status(ProxyArg),
    /// Stop taking records; pods keep running and keep their partitions (sets spec.paused).
    Pause(ProxyArg),
    /// Take records again after `pause` (clears spec.paused).
    Resume(ProxyArg),
    /// Move the group back so records are delivered again (creates an operation).
    Rewind(SeekArgs),
    /// Move the group ahead; the records in between are never delivered (creates an operation).
    FastForward(SeekArgs),
    /// Move past one record the group is waiting on (creates an operation).
    Skip(SkipArgs),
    /// Produce dead letters back to their source partitions (creates an operation).
    Redrive(RedriveArgs),
    /// List the newest dead-lettered records, or show one in full (reads Kafka).
    Dlq(DlqArgs),
}

#[derive(Args, Debug)]
pub struct ProxyArg {
    /// Name of the KafkaConsumerProxy.
    pub name: String,
}

/// What to do with the created operation.
#[derive(Args, Debug, Clone, Copy)]
pub struct RunArgs {
    /// Print the operation as YAML instead of creating it (nothing is sent).
    #[arg(long)]
    pub dry_run: bool,

    /// Follow the operation until it Succeeded (exit 0) or Failed (exit 1).
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
}

/// `rewind` and `fast-forward`.
#[derive(Args, Debug)]
pub struct SeekArgs {
    /// Name of the KafkaConsumerProxy.
    pub name: String,

    /// The first record at or after this time: RFC 3339 (2026-11-29T10:00:00Z) or a duration
    /// ago (10m, 2h, 1d).
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,

    /// This offset of each --partition of --topic.
    #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,

    /// The oldest record still kept (rewind only).
    #[arg(long)]
    pub to_earliest: bool,

    /// The end: only records produced from now on (fast-forward only).
    #[arg(long)]
    pub to_latest: bool,

    /// Only this topic of the proxy (default: all of them).
    #[arg(long)]
    pub topic: Option<String>,

    /// Only these partitions of --topic (repeat it, or 0,1,2; default: all).
    #[arg(
        long = "partition",
        value_name = "PARTITION",
        value_delimiter = ',',
        value_parser = clap::value_parser!(i32).range(0..)
    )]
    pub partitions: Vec<i32>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct SkipArgs {
    /// Name of the KafkaConsumerProxy.
    pub name: String,

    /// Topic of the record to skip.
    #[arg(long)]
    pub topic: Option<String>,

    /// Partition of the record to skip.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,

    /// Offset of the record to skip: the partition's committed offset (see `status`).
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: Option<i64>,

    /// Why; kept in the operation's status and Event.
    #[arg(long)]
    pub reason: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// Name of the KafkaConsumerProxy.
    pub name: String,

    /// Only records dead-lettered at or after this time (RFC 3339 or a duration ago: 2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only records dead-lettered before this time (RFC 3339 or a duration ago).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only records whose dead-letter reason contains this text, e.g. "status 503".
    #[arg(long, value_name = "TEXT")]
    pub reason_contains: Option<String>,

    /// Records produced per second at most [default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub rate: Option<i32>,

    /// Leave out records already redriven this many times [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=100))]
    pub max_redrives: Option<i32>,

    /// Stop after redriving this many records [default: no limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub max_records: Option<i64>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct DlqArgs {
    /// Name of the KafkaConsumerProxy.
    pub name: String,

    /// The newest this many records (the last this many of each dead-letter partition are read).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,

    /// Print one dead-letter record in full: headers, key and value.
    #[arg(long, value_name = "TOPIC/PARTITION/OFFSET")]
    pub show: Option<Coordinates>,

    /// With --show: the whole value, not its first 4 KiB.
    #[arg(long)]
    pub full: bool,

    /// Kafka to read from instead of spec.kafka.bootstrapServers (in-cluster addresses are
    /// often unreachable from a laptop; e.g. a port-forward).
    #[arg(long, value_name = "HOST:PORT", env = "KUBECTL_KCP_BOOTSTRAP_SERVER")]
    pub bootstrap_server: Option<String>,

    /// A librdkafka property for the reading client, e.g. security.protocol=SASL_SSL
    /// (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_kafka_config)]
    pub kafka_config: Vec<(String, String)>,
}

/// Properties that would make the reading client join or commit for a group.
const GROUP_KEYS: &[&str] = &[
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "auto.commit.enable",
    "enable.auto.offset.store",
];

/// `key=value` (the value may contain `=`); refuses group and commit settings.
fn parse_kafka_config(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write it as key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("{s:?}: write it as key=value"));
    }
    if GROUP_KEYS.contains(&key) {
        return Err(format!(
            "{key} cannot be set: kubectl-kcp never commits and joins no consumer group"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

impl Command {
    /// The subcommand's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status(_) => "status",
            Command::Pause(_) => "pause",
            Command::Resume(_) => "resume",
            Command::Rewind(_) => "rewind",
            Command::FastForward(_) => "fast-forward",
            Command::Skip(_) => "skip",
            Command::Redrive(_) => "redrive",
            Command::Dlq(_) => "dlq",
        }
    }
}
