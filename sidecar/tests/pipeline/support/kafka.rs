//! The Kafka the tests talk to: librdkafka's in-process mock cluster, or a real broker when
//! `KAFKA_BOOTSTRAP_SERVERS` is set (topic and group names are unique per test either way).

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders, OwnedMessage},
    mocking::MockCluster,
    producer::{DefaultProducerContext, FutureProducer, FutureRecord},
};

/// Set to run the suite against a real broker instead of the mock cluster.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

pub struct TestKafka {
    // Dropping the mock cluster stops it: keep it for the test's lifetime.
    _mock: Option<MockCluster<'static, DefaultProducerContext>>,
    pub bootstrap: String,
}

/// A record to produce.
#[derive(Clone, Debug, Default)]
pub struct Rec {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Rec {
    pub fn new(partition: i32, key: Option<&str>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            partition,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.into(),
            headers: vec![],
        }
    }
}

/// A name no other test (or earlier run against a real broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestKafka {
    pub fn start(brokers: i32) -> Self {
        match std::env::var(BOOTSTRAP_ENV) {
            Ok(bootstrap) if !bootstrap.is_empty() => Self {
                _mock: None,
                bootstrap,
            },
            _ => {
                let mock = MockCluster::new(brokers).expect("mock cluster starts");
                let bootstrap = mock.bootstrap_servers();
                Self {
                    _mock: Some(mock),
                    bootstrap,
                }
            }
        }
    }

    /// The mock cluster, for fault injection; `None` against a real broker.
    pub fn mock(&self) -> Option<&MockCluster<'static, DefaultProducerContext>> {
        self._mock.as_ref()
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        match &self._mock {
            Some(mock) => mock
                .create_topic(name, partitions, 1)
                .expect("mock topic created"),
            None => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &self.bootstrap)
                    .create()
                    .expect("admin client");
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let results = admin
                    .create_topics([&topic], &AdminOptions::new())
                    .await
                    .expect("create topics");
                for r in results {
                    r.expect("topic created");
                }
            }
        }
    }

    pub async fn produce(&self, topic: &str, records: &[Rec]) {
        self.producer().produce(topic, records).await;
    }

    /// A producer that can move to another task.
    pub fn producer(&self) -> TestProducer {
        TestProducer {
            bootstrap: self.bootstrap.clone(),
        }
    }

    /// The group's committed offsets for partitions `0..partitions` of `topic` (None = none).
    pub async fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        self.committed_with_metadata(group, topic, partitions)
            .await
            .into_iter()
            .map(|c| c.map(|(o, _)| o))
            .collect()
    }

    /// [`TestKafka::committed`] with each commit's metadata string.
    pub async fn committed_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Vec<Option<(i64, String)>> {
        let (b, g, t) = (self.bootstrap.clone(), group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || committed(&b, &g, &t, partitions))
            .await
            .expect("offset reader thread")
    }

    /// Reads `n` records of `topic` from the beginning (all partitions `0..partitions`).
    pub async fn read(&self, topic: &str, partitions: i32, n: usize) -> Vec<OwnedMessage> {
        let (b, t) = (self.bootstrap.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || read(&b, &t, partitions, n))
            .await
            .expect("reader thread")
    }
}

/// Produces test records; `Send`, unlike the mock cluster.
#[derive(Clone)]
pub struct TestProducer {
    bootstrap: String,
}

impl TestProducer {
    pub async fn produce(&self, topic: &str, records: &[Rec]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "1")
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        let sends = records.iter().map(|r| {
            let headers = r.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k.as_str(),
                    value: Some(v.as_slice()),
                })
            });
            let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .partition(r.partition)
                .payload(&r.value[..])
                .headers(headers);
            if let Some(k) = &r.key {
                fr = fr.key(&k[..]);
            }
            producer.send(fr, Duration::from_secs(10))
        });
        // Sent concurrently; the idempotent producer keeps per-partition order.
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| e).expect("record produced");
        }
    }
}

fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<(i64, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(got) => {
                return (0..partitions)
                    .map(|p| match got.find_partition(topic, p) {
                        Some(e) => match e.offset() {
                            Offset::Offset(o) => Some((o, e.metadata().to_owned())),
                            _ => None,
                        },
                        None => None,
                    })
                    .collect();
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("committed offsets not readable yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot read committed offsets: {e}"),
        }
    }
}

fn read(bootstrap: &str, topic: &str, partitions: i32, n: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("valid offset");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} records from {topic}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.expect("consume").detach());
        }
    }
    out
}

/// A header of a consumed record, as text.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
