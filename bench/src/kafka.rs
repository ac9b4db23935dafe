//! Everything on the Kafka side of the bench: the broker (librdkafka's mock cluster on loopback,
//! or any broker named by `KAFKA_BOOTSTRAP_SERVERS`), topic creation, the preload producer, the
//! fixed-rate producer for latency, and the Kafka limit (a bare consumer that reads without
//! forwarding, with the sidecar's own fetch settings).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    mocking::MockCluster,
    producer::{
        BaseProducer, BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext,
    },
    types::RDKafkaErrorCode,
};

use crate::clock::{now_ns, payload, sent_ns};

/// What librdkafka's mock broker keeps of a partition: older message sets are deleted past
/// 5 MiB (`mpart->max_size` in `rdkafka_mock.c`). Preloads stay under it.
pub const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;
/// The preload producer's default `batch.size`: the Java client's default (librdkafka's is
/// 1,000,000), the most common producer in front of a consumer like ours.
pub const DEFAULT_BATCH_BYTES: u32 = 16_384;

/// Where the records live for this run.
pub enum Broker {
    /// librdkafka's in-process mock cluster (one broker on a loopback port).
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// A broker the user runs; topics get unique names per run.
    External(String),
}

impl Broker {
    /// The mock cluster, unless `KAFKA_BOOTSTRAP_SERVERS` names a broker.
    pub fn start() -> anyhow::Result<Self> {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(bs) if !bs.trim().is_empty() => Ok(Self::External(bs)),
            _ => Ok(Self::Mock(
                MockCluster::new(1).context("starting the mock cluster")?,
            )),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Self::Mock(m) => m.bootstrap_servers(),
            Self::External(bs) => bs.clone(),
        }
    }

    pub fn is_mock(&self) -> bool {
        matches!(self, Self::Mock(_))
    }

    /// How many records of `value_size` bytes one partition keeps without deleting any
    /// (`None`: no limit known). Leaves 20% headroom for batch and record overhead.
    pub fn records_per_partition(&self, value_size: usize) -> Option<u64> {
        self.is_mock()
            .then(|| MOCK_PARTITION_BYTES * 4 / 5 / (value_size as u64 + 64))
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Mock(m) => format!(
                "librdkafka mock cluster, 1 broker at {}",
                m.bootstrap_servers()
            ),
            Self::External(bs) => format!("KAFKA_BOOTSTRAP_SERVERS={bs}"),
        }
    }

    /// Creates `name` with `partitions` partitions (replication 1).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        match self {
            Self::Mock(m) => m
                .create_topic(name, partitions, 1)
                .with_context(|| format!("creating topic {name} on the mock cluster")),
            Self::External(bs) => {
                let admin: AdminClient<DefaultClientContext> =
                    ClientConfig::new().set("bootstrap.servers", bs).create()?;
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                for r in admin.create_topics([&topic], &opts).await? {
                    if let Err((t, code)) = r {
                        bail!("creating topic {t}: {code}");
                    }
                }
                Ok(())
            }
        }
    }
}

/// Counts delivery failures so a preload that lost records is reported, not measured.
#[derive(Default)]
struct CountingCtx {
    failed: AtomicU64,
}

impl ClientContext for CountingCtx {}

impl ProducerContext for CountingCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Relaxed);
        }
    }
}

fn producer(
    bootstrap: &str,
    linger_ms: &str,
    batch_bytes: u32,
) -> anyhow::Result<BaseProducer<CountingCtx>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", linger_ms)
        .set("batch.num.messages", "10000")
        .set("batch.size", batch_bytes.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "false")
        .create_with_context(CountingCtx::default())?)
}

/// Sends one record, waiting for queue space when librdkafka's queue is full.
fn send(
    p: &BaseProducer<CountingCtx>,
    topic: &str,
    partition: i32,
    key: &str,
    value: &[u8],
) -> anyhow::Result<()> {
    loop {
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(key)
            .payload(value);
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e).context("producing"),
        }
    }
}

fn finish(p: &BaseProducer<CountingCtx>, what: &str) -> anyhow::Result<()> {
    p.flush(Duration::from_secs(120))
        .with_context(|| format!("flushing {what}"))?;
    let failed = p.context().failed.load(Relaxed);
    if failed > 0 {
        bail!("{what}: {failed} records were not acknowledged by the broker");
    }
    Ok(())
}

/// What to preload into a topic.
#[derive(Clone, Debug)]
pub struct Preload {
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    /// Distinct keys per partition, assigned round robin (`p<partition>-k<n>`).
    pub keys_per_partition: u32,
    pub value_size: usize,
    /// The producer's `batch.size`: a consumer fetches whole batches, so this sets how much
    /// one partition's fetch holds at least.
    pub batch_bytes: u32,
}

impl Preload {
    /// Record `i` goes to partition `i % partitions`, at index `i / partitions` there.
    pub fn key_of(&self, i: u64) -> (i32, String) {
        let p = (i % self.partitions as u64) as i32;
        let k = (i / self.partitions as u64) % u64::from(self.keys_per_partition.max(1));
        (p, format!("p{p}-k{k}"))
    }
}

/// Produces the records (batched, `linger.ms` 5, `acks` 1) and waits for every acknowledgement.
pub fn preload(bootstrap: &str, spec: &Preload) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let p = producer(bootstrap, "5", spec.batch_bytes)?;
    let value = payload(spec.value_size, 0);
    for i in 0..spec.records {
        let (partition, key) = spec.key_of(i);
        send(&p, &spec.topic, partition, &key, &value)?;
        if i % 1024 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    finish(&p, &format!("preload of {}", spec.topic))?;
    let mut kept = 0;
    for partition in 0..spec.partitions {
        let (low, high) =
            p.client()
                .fetch_watermarks(&spec.topic, partition, Duration::from_secs(10))?;
        kept += high - low;
    }
    if kept != spec.records as i64 {
        bail!(
            "preload of {}: the broker keeps {kept} of {} records (the mock broker deletes past {} MiB per partition)",
            spec.topic,
            spec.records,
            MOCK_PARTITION_BYTES / 1024 / 1024
        );
    }
    Ok(started.elapsed())
}

/// Produces `rate` records per second for `duration` from a thread of its own (`linger.ms` 0,
/// one request per record), each value carrying its send time. One untimed record goes first
/// and is acknowledged before the clock starts, so connection and metadata setup are not
/// measured. Returns how many records it produced, the untimed one included.
pub fn produce_at_rate(
    bootstrap: String,
    topic: String,
    partitions: i32,
    rate: u32,
    duration: Duration,
    value_size: usize,
) -> std::thread::JoinHandle<anyhow::Result<u64>> {
    std::thread::spawn(move || {
        let p = producer(&bootstrap, "0", DEFAULT_BATCH_BYTES)?;
        send(&p, &topic, 0, "warm-up", &payload(value_size, 0))?;
        p.flush(Duration::from_secs(30)).context("warm-up record")?;
        let total = timed_records(rate, duration);
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let start = Instant::now();
        for i in 0..total {
            let due = start + period.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let partition = (i % partitions as u64) as i32;
            let key = format!("k{}", i % 64);
            send(&p, &topic, partition, &key, &payload(value_size, now_ns()))?;
            p.poll(Duration::ZERO);
        }
        finish(&p, &format!("fixed-rate producer on {topic}"))?;
        Ok(total + 1)
    })
}

/// Timed records sent at `rate` per second for `duration`.
pub fn timed_records(rate: u32, duration: Duration) -> u64 {
    (f64::from(rate) * duration.as_secs_f64()).round() as u64
}

/// Which fetch settings a bare consumer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchSettings {
    /// The sidecar's `CONSUMER_DEFAULTS` (a fair Kafka limit for the sidecar).
    Sidecar,
    /// librdkafka's own defaults (what Kafka can do here).
    Librdkafka,
}

fn bare_consumer(
    bootstrap: &str,
    settings: FetchSettings,
    overrides: &[(String, String)],
) -> anyhow::Result<BaseConsumer> {
    let mut c = ClientConfig::new();
    if settings == FetchSettings::Sidecar {
        for (k, v) in kcp_sidecar::consumer::CONSUMER_DEFAULTS {
            c.set(*k, *v);
        }
    }
    for (k, v) in overrides {
        c.set(k, v);
    }
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "kcp-bench-bare")
        .set("client.id", "kcp-bench-bare")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    Ok(c.create()?)
}

/// A bare consumer assigned every partition of `topic` at `offset` (no group membership).
pub fn assigned_consumer(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    offset: Offset,
    overrides: &[(String, String)],
) -> anyhow::Result<BaseConsumer> {
    let c = bare_consumer(bootstrap, FetchSettings::Sidecar, overrides)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, offset)?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

/// Polls (discarding) for `time`, so the consumer is connected and in its steady fetch loop.
pub fn settle(c: &BaseConsumer, time: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + time;
    while Instant::now() < until {
        if let Some(Err(e)) = c.poll(Duration::from_millis(50)) {
            bail!("bare consumer: {e}");
        }
    }
    Ok(())
}

/// Records read and the time from the first to the last.
#[derive(Clone, Copy, Debug)]
pub struct Drained {
    pub records: u64,
    pub window: Duration,
    /// Whether every expected record was read before the cap.
    pub complete: bool,
}

impl Drained {
    pub fn rate(&self) -> f64 {
        let w = self.window.as_secs_f64();
        if w > 0.0 {
            self.records as f64 / w
        } else {
            0.0
        }
    }
}

/// The Kafka limit: a bare consumer reads `expected` records of `topic` from the beginning,
/// touching each value and forwarding nothing, for at most `cap` after the first record.
pub fn drain_bare(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: u64,
    settings: FetchSettings,
    overrides: &[(String, String)],
    cap: Duration,
) -> anyhow::Result<Drained> {
    let c = Arc::new(bare_consumer(bootstrap, settings, overrides)?);
    // With the sidecar's settings, read as the sidecar does: one queue per partition, split
    // before the assignment (its queue limits are per partition then), taken in rounds.
    let queues = if settings == FetchSettings::Sidecar {
        (0..partitions)
            .map(|p| {
                c.split_partition_queue(topic, p)
                    .with_context(|| format!("splitting the queue of {topic}/{p}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    // Connecting may take a while; the cap runs from the first record.
    let mut t = Tally {
        n: 0,
        bytes: 0,
        first: None,
        last: Instant::now(),
        deadline: Instant::now() + cap + Duration::from_secs(30),
        cap,
    };
    while t.n < expected && Instant::now() < t.deadline {
        let mut round = 0;
        for q in &queues {
            while let Some(r) = q.poll(Duration::ZERO) {
                t.take(&r.map_err(|e| anyhow::anyhow!("bare consumer: {e}"))?);
                round += 1;
            }
        }
        // Serves events; waits for records only when the partition queues had none.
        let wait = if round == 0 {
            Duration::from_millis(if queues.is_empty() { 100 } else { 1 })
        } else {
            Duration::ZERO
        };
        match c.poll(wait) {
            Some(Ok(m)) => t.take(&m),
            Some(Err(e)) => bail!("bare consumer: {e}"),
            None => {}
        }
    }
    drop(queues);
    let Tally {
        n,
        bytes,
        first,
        last,
        ..
    } = t;
    if n == 0 {
        bail!("bare consumer read nothing of {expected} records");
    }
    tracing::debug!(n, bytes, "Bare consumer done");
    let complete = n >= expected;
    // Capped: the rate is over the whole capped window, not up to the last record.
    let end = if complete { last } else { Instant::now() };
    Ok(Drained {
        records: n,
        window: first.map_or(Duration::ZERO, |f| end - f),
        complete,
    })
}

/// What a bare drain has read so far.
struct Tally {
    n: u64,
    bytes: usize,
    first: Option<Instant>,
    last: Instant,
    deadline: Instant,
    cap: Duration,
}

impl Tally {
    fn take(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        self.last = Instant::now();
        if self.first.is_none() {
            self.first = Some(self.last);
            self.deadline = self.last + self.cap;
        }
        self.bytes += m.payload_len();
        self.n += 1;
    }
}

/// Kafka transit at a fixed rate: produce-time-to-poll-time as a bare consumer sees it (ns,
/// sorted). The consumer is assigned at the end of the topic and fetching before the producer
/// starts.
pub fn transit_latency(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: u32,
    duration: Duration,
    value_size: usize,
    overrides: &[(String, String)],
) -> anyhow::Result<Vec<u64>> {
    let c = assigned_consumer(bootstrap, topic, partitions, Offset::End, overrides)?;
    settle(&c, Duration::from_secs(1))?;
    let producer = produce_at_rate(
        bootstrap.into(),
        topic.into(),
        partitions,
        rate,
        duration,
        value_size,
    );
    let expected = timed_records(rate, duration);
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    let mut lat = Vec::with_capacity(expected as usize);
    while (lat.len() as u64) < expected && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = now_ns();
                if let Some(sent) = m.payload().and_then(sent_ns) {
                    lat.push(now.saturating_sub(sent));
                }
            }
            Some(Err(e)) => bail!("bare consumer: {e}"),
            None => {}
        }
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("fixed-rate producer panicked"))??;
    if (lat.len() as u64) < expected {
        bail!(
            "bare consumer saw {} of {expected} records before the timeout",
            lat.len()
        );
    }
    lat.sort_unstable();
    Ok(lat)
}
