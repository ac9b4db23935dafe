//! The self-contained demo behind `kcp-sidecar demo`: needs nothing but this binary.
//!
//! Starts an embedded Kafka (librdkafka's mock cluster), a sample HTTP app in this process that
//! fails some first attempts with 500 (they succeed when retried) and rejects every Nth record
//! with 422 (dead-lettered), produces keyed records, and runs the real [`Pipeline`] (the
//! production code path) until every record is finished, drawing a one-line progress display on
//! stderr. Then it checks, independently of the pipeline's own counters, that every produced
//! record was accepted by the app or is in the dead-letter topic (read back from Kafka), that
//! the committed offsets reached the end of every partition, and that each key's records reached
//! the app in production order (`partition` and `key` ordering). [`DemoReport::passed`] is the
//! verdict; the binary exits non-zero when it is false.
//!
//! `--format cloudevents-binary` (or `-structured`) sends each record as a CloudEvent, and the
//! app checks that every request is one. `--avro` writes the records in Avro through a schema
//! registry stand-in ([`RegistryStandIn`]) and has the sidecar decode them to JSON;
//! `--undecodable-every N` makes every Nth of them name a schema the registry does not have,
//! which the sidecar dead-letters without sending ([`formats`]).

mod app;
pub mod formats;
mod registry;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    io::{IsTerminal, Write},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use kcp_crds::{SidecarConfig, v1alpha1::Ordering};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders},
    mocking::MockCluster,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{Pipeline, admin::Admin, stats::StatsSnapshot};

pub use app::{AppLog, SampleApp};
pub use registry::RegistryStandIn;

use self::formats::{Encoding, INDEX_HEADER};
use kcp_crds::config::Format;

const TOPIC: &str = "orders";
const DLQ_TOPIC: &str = "orders-dlq";
const GROUP: &str = "kcp-demo";
/// Gives up (and fails) when records are still unfinished after this long.
const GIVE_UP: Duration = Duration::from_secs(120);

/// `kcp-sidecar demo` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoOptions {
    /// Records to produce.
    #[arg(long, default_value_t = 5000)]
    pub records: usize,
    /// Delivery ordering: partition, key or unordered.
    #[arg(long, default_value = "key", value_parser = parse_ordering)]
    pub ordering: Ordering,
    /// Concurrent HTTP requests (delivery.maxInFlight).
    #[arg(long, default_value_t = 32)]
    pub max_in_flight: u32,
    /// Partitions of the demo topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Distinct record keys.
    #[arg(long, default_value_t = 100)]
    pub keys: usize,
    /// Fraction of first attempts the app fails with 500 (retried, then accepted).
    #[arg(long, default_value_t = 0.1)]
    pub fail_rate: f64,
    /// The app rejects every Nth record with 422 (dead-lettered); 0 = never.
    #[arg(long, default_value_t = 250)]
    pub reject_every: usize,
    /// Also serve the admin endpoint (/metrics, /status, /healthz, /readyz) on this address
    /// while the demo runs (default 127.0.0.1:9090 when given without a value).
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:9090")]
    pub admin: Option<SocketAddr>,
    /// Request format: raw, cloudevents-binary or cloudevents-structured (endpoint.format).
    #[arg(long, default_value = "raw", value_parser = parse_format)]
    pub format: Format,
    /// Write the records in Avro, with their schema in a schema registry stand-in, and have the
    /// sidecar decode them to JSON (endpoint.decode: avro).
    #[arg(long)]
    pub avro: bool,
    /// With --avro: every Nth record names a schema id the registry does not have (the sidecar
    /// dead-letters it without sending it); 0 = never.
    #[arg(long, default_value_t = 0)]
    pub undecodable_every: usize,
    /// Deliver in batches of up to N records (delivery.batch, maxWait 5ms); 0 = one record per
    /// request. Not with a cloudevents format.
    #[arg(long, default_value_t = 0)]
    pub batch: u32,
    /// No progress display (tests).
    #[arg(skip)]
    pub quiet: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            records: 5000,
            ordering: Ordering::Key,
            max_in_flight: 32,
            partitions: 6,
            keys: 100,
            fail_rate: 0.1,
            reject_every: 250,
            admin: None,
            format: Format::Raw,
            avro: false,
            undecodable_every: 0,
            batch: 0,
            quiet: false,
        }
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s {
        "raw" => Ok(Format::Raw),
        "cloudevents-binary" => Ok(Format::CloudeventsBinary),
        "cloudevents-structured" => Ok(Format::CloudeventsStructured),
        other => Err(format!(
            "unknown format {other:?}: use raw, cloudevents-binary or cloudevents-structured"
        )),
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Raw => "raw",
        Format::CloudeventsBinary => "cloudevents-binary",
        Format::CloudeventsStructured => "cloudevents-structured",
    }
}

fn parse_ordering(s: &str) -> Result<Ordering, String> {
    match s {
        "partition" => Ok(Ordering::Partition),
        "key" => Ok(Ordering::Key),
        "unordered" => Ok(Ordering::Unordered),
        other => Err(format!(
            "unknown ordering {other:?}: use partition, key or unordered"
        )),
    }
}

/// What the demo found.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub options: DemoOptions,
    pub produced: usize,
    /// Distinct records the app accepted (2xx).
    pub accepted: usize,
    /// Records the app accepted more than once (allowed by at-least-once; none expected here).
    pub duplicates: usize,
    /// Records the app rejected with 422 (expected in the dead-letter topic).
    pub rejected: usize,
    /// First attempts the app failed with 500.
    pub failed_first_attempts: usize,
    /// Records written so that they cannot be decoded (expected in the dead-letter topic).
    pub undecodable: usize,
    /// Requests that were not CloudEvents although `--format` asked for them (must be 0).
    pub not_cloudevents: usize,
    /// Distinct records found in the dead-letter topic.
    pub dead_lettered: usize,
    /// Record indexes neither accepted nor dead-lettered (must be empty).
    pub missing: Vec<usize>,
    /// Partitions whose committed offset did not reach their end (must be empty).
    pub uncommitted: Vec<String>,
    /// Keys whose records reached the app out of production order (`None` = not checked).
    pub order_violations: Option<Vec<String>>,
    pub elapsed: Duration,
    pub stats: StatsSnapshot,
}

impl DemoReport {
    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.missing.is_empty()
            && self.not_cloudevents == 0
            && self.uncommitted.is_empty()
            && self.order_violations.as_ref().is_none_or(Vec::is_empty)
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "FAIL" }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let s = &self.stats;
        writeln!(f, "── kcp-sidecar demo: summary ──")?;
        writeln!(
            f,
            "  setup      {} records, {} keys, {} partitions, ordering={}, maxInFlight={}, failRate={}, rejectEvery={}, format={}{}",
            self.produced,
            o.keys,
            o.partitions,
            ordering_name(o.ordering),
            o.max_in_flight,
            o.fail_rate,
            o.reject_every,
            format_name(o.format),
            if o.avro {
                format!(
                    ", avro via the registry stand-in, undecodableEvery={}",
                    o.undecodable_every
                )
            } else {
                String::new()
            }
        )?;
        if o.batch > 0 {
            writeln!(
                f,
                "  batches    up to {} records per request (delivery.batch, maxWait 5ms)",
                o.batch
            )?;
        }
        writeln!(
            f,
            "  pipeline   delivered={} retried={} dead-lettered={} skipped={} commits={} in {:.1}s ({:.0} records/s)",
            s.delivered,
            s.retried,
            s.dead_lettered,
            s.skipped,
            s.commits,
            self.elapsed.as_secs_f64(),
            self.produced as f64 / self.elapsed.as_secs_f64().max(0.001)
        )?;
        writeln!(
            f,
            "  app        accepted {} distinct records ({} duplicates), failed {} first attempts with 500, rejected {} with 422",
            self.accepted, self.duplicates, self.failed_first_attempts, self.rejected
        )?;
        if o.avro {
            writeln!(
                f,
                "  decoding   Avro records reached the app as JSON; {} written with an unknown schema id were dead-lettered by the sidecar, never sent",
                self.undecodable
            )?;
        }
        if o.format != Format::Raw {
            writeln!(
                f,
                "  [{}] every request was a CloudEvent ({}){}",
                mark(self.not_cloudevents == 0),
                format_name(o.format),
                if self.not_cloudevents == 0 {
                    String::new()
                } else {
                    format!(": {} were NOT", self.not_cloudevents)
                }
            )?;
        }
        writeln!(
            f,
            "  [{}] every record accounted for: {} accepted + {} in {DLQ_TOPIC} = {} of {} produced{}",
            mark(self.missing.is_empty()),
            self.accepted,
            self.dead_lettered,
            self.produced - self.missing.len(),
            self.produced,
            if self.missing.is_empty() {
                String::new()
            } else {
                format!(
                    "; MISSING {} (first: {:?})",
                    self.missing.len(),
                    &self.missing[..self.missing.len().min(10)]
                )
            }
        )?;
        writeln!(
            f,
            "  [{}] committed offsets reached the end of every partition{}",
            mark(self.uncommitted.is_empty()),
            if self.uncommitted.is_empty() {
                String::new()
            } else {
                format!(": NOT {}", self.uncommitted.join(", "))
            }
        )?;
        match &self.order_violations {
            None => writeln!(
                f,
                "  [n/a ] per-key order: not promised with ordering=unordered"
            )?,
            Some(v) if v.is_empty() => writeln!(
                f,
                "  [ok  ] per-key order: every key's records reached the app in production order ({} keys)",
                o.keys.min(self.produced)
            )?,
            Some(v) => writeln!(
                f,
                "  [FAIL] per-key order: {} keys out of order (first: {})",
                v.len(),
                v[..v.len().min(3)].join("; ")
            )?,
        }
        write!(
            f,
            "  result     {}",
            if self.passed() { "PASSED" } else { "FAILED" }
        )
    }
}

fn ordering_name(o: Ordering) -> &'static str {
    match o {
        Ordering::Partition => "partition",
        Ordering::Key => "key",
        Ordering::Unordered => "unordered",
    }
}

/// The sidecar config the demo runs with: the production defaults, short retry backoffs;
/// `registry_url` with `--avro`.
pub fn demo_config(
    bootstrap: &str,
    app_url: &str,
    registry_url: Option<&str>,
    o: &DemoOptions,
) -> SidecarConfig {
    let mut v = json!({
        "kafka": {
            "bootstrapServers": bootstrap,
            "topics": [TOPIC],
            "groupId": GROUP,
            "initialOffset": "earliest",
            "clientConfig": {"statistics.interval.ms": "500"}
        },
        "endpoint": {
            "url": app_url,
            "connectTimeout": "1s",
            "requestTimeout": "5s",
            "slowRequestThreshold": "1s",
            "retryOn": ["5xx", "408", "429"]
        },
        "delivery": {
            "ordering": ordering_name(o.ordering),
            "maxInFlight": o.max_in_flight,
            "guarantee": "atLeastOnce",
            "commitInterval": "200ms",
            "drainTimeout": "10s",
            "retry": {"maxAttempts": 5, "initialBackoff": "50ms", "maxBackoff": "1s", "multiplier": 2.0},
            "onExhausted": "deadLetter",
            "deadLetterTopic": DLQ_TOPIC
        },
        "log": {"level": "warn", "format": "plain"}
    });
    if o.format != Format::Raw {
        v["endpoint"]["format"] = json!(format_name(o.format));
        v["endpoint"]["cloudEvents"] = json!({"type": "io.kafkaproxy.demo.order"});
    }
    if o.batch > 0 {
        v["delivery"]["batch"] =
            json!({"maxRecords": o.batch, "maxBytes": 1_048_576, "maxWait": "5ms"});
    }
    if let Some(url) = registry_url {
        v["kafka"]["schemaRegistry"] = json!({
            "url": url, "requestTimeout": "5s", "maxSchemas": 100, "errorTtl": "30s"
        });
        v["endpoint"]["decode"] = json!("avro");
    }
    SidecarConfig::parse(&v.to_string()).expect("invariant: the demo config is valid")
}

/// Runs the demo; `Err` only when it could not run at all (the checks are in the report).
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoReport> {
    if options.partitions < 1 || options.keys < 1 || options.records < 1 {
        bail!("--records, --partitions and --keys must be at least 1");
    }
    if !(0.0..=1.0).contains(&options.fail_rate) {
        bail!("--fail-rate must be between 0 and 1");
    }
    if options.batch > 1000 {
        bail!("--batch must be at most 1000 (delivery.batch.maxRecords)");
    }
    if options.batch > 0 && options.format != Format::Raw {
        bail!("--batch needs --format raw: a batch is one JSON array (docs/batch.md)");
    }
    let mut out = Progress::new(options.quiet);
    out.line(&format!(
        "kcp-sidecar demo: embedded Kafka, a sample app, {} records; the real pipeline delivers them",
        options.records
    ));
    // Dropping the mock cluster stops it: it lives until the end of this function.
    let mock = MockCluster::new(1).context("starting the embedded Kafka (mock cluster)")?;
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic(TOPIC, options.partitions, 1)
        .context("creating the demo topic")?;
    mock.create_topic(DLQ_TOPIC, options.partitions, 1)
        .context("creating the dead-letter topic")?;
    let app = SampleApp::start(options.fail_rate, options.reject_every)
        .await
        .context("starting the sample app")?;
    let registry = if options.avro {
        Some(
            RegistryStandIn::start()
                .await
                .context("starting the schema registry stand-in")?,
        )
    } else {
        None
    };
    let encoding = match &registry {
        Some(r) => Encoding::avro(r, options.undecodable_every)?,
        None => Encoding::json(),
    };
    produce(&bootstrap, &options, &encoding).await?;
    let undecodable = (0..options.records)
        .filter(|i| encoding.is_undecodable(*i))
        .count();
    out.line(&format!(
        "produced {} records to {TOPIC} ({} partitions, {} keys); app at {}",
        options.records,
        options.partitions,
        options.keys,
        app.url()
    ));

    if let Some(r) = &registry {
        out.line(&format!(
            "schema registry stand-in at {} (subject {}); the sidecar decodes Avro to JSON",
            r.url(),
            formats::SUBJECT
        ));
    }
    let registry_url = registry.as_ref().map(RegistryStandIn::url);
    let config = demo_config(&bootstrap, &app.url(), registry_url.as_deref(), &options);
    let pipeline = Pipeline::new(config);
    let stats = pipeline.stats();
    let stop_admin = CancellationToken::new();
    let _admin_guard = stop_admin.clone().drop_guard();
    if let Some(addr) = options.admin {
        let admin = Admin::new(Arc::clone(&stats))
            .bind(addr)
            .await
            .with_context(|| format!("binding the admin endpoint to {addr}"))?;
        out.line(&format!(
            "admin endpoint: curl http://{}/metrics  (also /status, /healthz, /readyz)",
            admin.local_addr()
        ));
        tokio::spawn(admin.serve(stop_admin.clone()));
    }
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(shutdown.clone()));
    let total = options.records as u64;
    let mut finished_in_time = true;
    loop {
        let s = stats.snapshot();
        let done = s.delivered + s.dead_lettered + s.skipped;
        out.progress(&s, total, started.elapsed());
        if done >= total {
            break;
        }
        if task.is_finished() {
            break;
        }
        if started.elapsed() > GIVE_UP {
            finished_in_time = false;
            break;
        }
        tokio::time::sleep(out.interval()).await;
    }
    shutdown.cancel();
    task.await
        .context("the pipeline task panicked")?
        .context("running the pipeline")?;
    let elapsed = started.elapsed();
    let snapshot = stats.snapshot();
    out.progress(&snapshot, total, elapsed);
    out.end();
    if !finished_in_time {
        out.line("gave up waiting: some records were never finished");
    }

    let log = app.log();
    let dlq = {
        let b = bootstrap.clone();
        let (partitions, expected) = (options.partitions, log.rejected.len() + undecodable);
        tokio::task::spawn_blocking(move || read_dead_letters(&b, partitions, expected))
            .await
            .context("the dead-letter reader panicked")??
    };
    let uncommitted = {
        let (b, partitions) = (bootstrap.clone(), options.partitions);
        tokio::task::spawn_blocking(move || uncommitted(&b, partitions))
            .await
            .context("the offset reader panicked")??
    };
    let accepted: BTreeSet<usize> = log.accepted.iter().copied().collect();
    let missing: Vec<usize> = (0..options.records)
        .filter(|i| !accepted.contains(i) && !dlq.contains(i))
        .collect();
    let order_violations =
        (options.ordering != Ordering::Unordered).then(|| order_violations(&log, options.keys));
    let report = DemoReport {
        produced: options.records,
        accepted: accepted.len(),
        duplicates: log.accepted.len() - accepted.len(),
        rejected: log.rejected.len(),
        failed_first_attempts: log.failed,
        undecodable,
        not_cloudevents: if options.format == Format::Raw {
            0
        } else {
            log.not_cloudevents
        },
        dead_lettered: dlq.len(),
        missing,
        uncommitted,
        order_violations,
        elapsed,
        stats: snapshot,
        options,
    };
    if !report.options.quiet {
        eprintln!("{report}");
    }
    drop(mock);
    Ok(report)
}

/// Keys whose accepted records are not in production order.
fn order_violations(log: &AppLog, keys: usize) -> Vec<String> {
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    let mut bad: BTreeMap<usize, String> = BTreeMap::new();
    for &i in &log.accepted {
        let key = i % keys;
        if let Some(&prev) = last.get(&key)
            && prev >= i
            && !bad.contains_key(&key)
        {
            bad.insert(key, format!("key-{key}: record {i} after {prev}"));
        }
        last.insert(key, i);
    }
    bad.into_values().collect()
}

/// Record `i` has key `key-{i % keys}` and carries `i` in its value ([`formats`]).
async fn produce(bootstrap: &str, o: &DemoOptions, encoding: &Encoding) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .context("creating the demo producer")?;
    let records = (0..o.records)
        .map(|i| {
            let key = format!("key-{}", i % o.keys);
            let (value, headers) = encoding.record(i, &key)?;
            let mut kafka_headers = OwnedHeaders::new();
            for (name, v) in &headers {
                kafka_headers = kafka_headers.insert(Header {
                    key: name,
                    value: Some(v.as_bytes()),
                });
            }
            Ok((key, value, kafka_headers))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Sent concurrently; the idempotent producer keeps per-partition order.
    let sends = records.iter().map(|(key, value, headers)| {
        producer.send(
            FutureRecord::to(TOPIC)
                .key(key.as_str())
                .payload(value.as_slice())
                .headers(headers.clone()),
            Duration::from_secs(10),
        )
    });
    for result in futures::future::join_all(sends).await {
        result
            .map_err(|(e, _)| e)
            .context("producing a demo record")?;
    }
    Ok(())
}

/// Reads the dead-letter topic from the beginning: the record indexes found there.
fn read_dead_letters(
    bootstrap: &str,
    partitions: i32,
    expected: usize,
) -> anyhow::Result<BTreeSet<usize>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kcp-demo-dlq-reader")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the dead-letter reader")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(DLQ_TOPIC, p, Offset::Beginning)
            .context("assigning the dead-letter topic")?;
    }
    consumer
        .assign(&tpl)
        .context("assigning the dead-letter topic")?;
    let mut found = BTreeSet::new();
    let mut messages = 0;
    // Reads everything there is: until `expected` were found and nothing more came for a while.
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages += 1;
                quiet_since = Instant::now();
                if let Some(i) = demo_index(&m) {
                    found.insert(i);
                }
            }
            Some(Err(e)) => bail!("reading the dead-letter topic: {e}"),
            None => {}
        }
        let idle = quiet_since.elapsed();
        if (messages >= expected && idle > Duration::from_millis(500))
            || idle > Duration::from_secs(5)
        {
            break;
        }
    }
    Ok(found)
}

/// A demo record's index: its `demo-index` header (kept by the dead-letter copy).
fn demo_index(m: &impl Message) -> Option<usize> {
    use rdkafka::message::Headers;
    m.headers()?
        .iter()
        .find(|h| h.key == INDEX_HEADER)
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

/// Partitions whose committed offset (group `kcp-demo`) is short of the partition's end.
fn uncommitted(bootstrap: &str, partitions: i32) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the offset reader")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(TOPIC, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .context("reading committed offsets")?;
    let mut short = Vec::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .context("reading partition ends")?;
        let at = match committed.find_partition(TOPIC, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        let ok = match at {
            Some(o) => o >= high,
            None => high == 0,
        };
        if !ok {
            short.push(format!(
                "{TOPIC}/{p} at {} of {high}",
                at.map_or("none".into(), |o| o.to_string())
            ));
        }
    }
    Ok(short)
}

/// The progress display: one line redrawn on a TTY, a line per second otherwise.
struct Progress {
    quiet: bool,
    tty: bool,
    last_line: Instant,
    drawn: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
            last_line: Instant::now() - Duration::from_secs(10),
            drawn: false,
        }
    }

    fn interval(&self) -> Duration {
        if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(250)
        }
    }

    fn line(&mut self, text: &str) {
        if !self.quiet {
            self.end();
            eprintln!("{text}");
        }
    }

    fn progress(&mut self, s: &StatsSnapshot, total: u64, elapsed: Duration) {
        if self.quiet {
            return;
        }
        if !self.tty && self.last_line.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_line = Instant::now();
        let done = s.delivered + s.dead_lettered + s.skipped;
        let lag: Option<i64> = s
            .partitions
            .values()
            .map(|p| p.lag)
            .try_fold(0i64, |acc, l| l.map(|l| acc + l));
        let lag = match lag {
            Some(l) if !s.partitions.is_empty() => l.to_string(),
            _ => "?".into(),
        };
        let rate = s.delivered as f64 / elapsed.as_secs_f64().max(0.001);
        let state = if !s.joined {
            "  (joining the consumer group)"
        } else if !s.gate_open {
            "  (waiting for the app)"
        } else {
            ""
        };
        let text = format!(
            "{:5.1}s  {done}/{total} finished  delivered {}  retries {}  dead-lettered {}  in flight {}  lag {lag}  {rate:.0}/s{state}",
            elapsed.as_secs_f64(),
            s.delivered,
            s.retried,
            s.dead_lettered,
            s.in_flight,
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
    }

    fn end(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_check_flags_a_key_delivered_out_of_order() {
        // 3 keys: record i has key i % 3. Key 1 sees 4 before 1.
        let log = AppLog {
            accepted: vec![0, 2, 4, 3, 1, 5],
            ..AppLog::default()
        };
        assert_eq!(
            order_violations(&log, 3),
            vec!["key-1: record 1 after 4".to_owned()]
        );
        let in_order = AppLog {
            accepted: vec![0, 1, 2, 3, 4, 5],
            ..AppLog::default()
        };
        assert!(order_violations(&in_order, 3).is_empty());
    }

    #[test]
    fn a_missing_record_fails_the_demo() {
        let mut report = DemoReport {
            options: DemoOptions::default(),
            produced: 3,
            accepted: 3,
            duplicates: 0,
            rejected: 0,
            failed_first_attempts: 0,
            undecodable: 0,
            not_cloudevents: 0,
            dead_lettered: 0,
            missing: vec![],
            uncommitted: vec![],
            order_violations: Some(vec![]),
            elapsed: Duration::from_secs(1),
            stats: StatsSnapshot::default(),
        };
        assert!(report.passed());
        report.missing = vec![2];
        assert!(!report.passed());
        assert!(report.to_string().contains("MISSING 1"));
    }
}
