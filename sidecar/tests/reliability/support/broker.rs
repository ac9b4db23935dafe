//! The Kafka the suite talks to: `kcp-mock-kafka` in its own process (so a sidecar can be killed
//! while the broker keeps its data), or a real broker when `KAFKA_BOOTSTRAP_SERVERS` is set
//! (fault injection is then unavailable and those cases are skipped, saying so).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};

use super::{digest, unique};

pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

struct Mock {
    child: Child,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
}

pub struct Broker {
    mock: Option<Mock>,
    pub bootstrap: String,
}

impl Broker {
    /// A mock cluster of `brokers` brokers, or the real broker of `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn start(brokers: i32) -> Self {
        if let Ok(bootstrap) = std::env::var(BOOTSTRAP_ENV)
            && !bootstrap.is_empty()
        {
            return Self {
                mock: None,
                bootstrap,
            };
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_kcp-mock-kafka"))
            .args(["--brokers", &brokers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kcp-mock-kafka starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut bootstrap = String::new();
        stdout
            .read_line(&mut bootstrap)
            .expect("kcp-mock-kafka prints its bootstrap servers");
        let bootstrap = bootstrap.trim().to_owned();
        assert!(!bootstrap.is_empty(), "kcp-mock-kafka printed no bootstrap");
        Self {
            mock: Some(Mock {
                child,
                io: Mutex::new((stdin, stdout)),
            }),
            bootstrap,
        }
    }

    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// Sends a control command to the mock; panics when it is refused. No-op (false) against a
    /// real broker.
    pub fn control(&self, command: &str) -> bool {
        let Some(mock) = &self.mock else {
            return false;
        };
        let mut io = mock.io.lock().expect("mock io lock");
        writeln!(io.0, "{command}").expect("write to kcp-mock-kafka");
        io.0.flush().expect("flush to kcp-mock-kafka");
        let mut reply = String::new();
        io.1.read_line(&mut reply).expect("kcp-mock-kafka answers");
        assert_eq!(reply.trim(), "ok", "mock refused {command:?}");
        eprintln!("mock: {command}");
        true
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        if self.control(&format!("topic {name} {partitions}")) {
            return;
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for r in admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topics")
        {
            r.expect("topic created");
        }
    }

    pub fn producer(&self, ledger: &Ledger) -> Producer {
        Producer {
            inner: ClientConfig::new()
                .set("bootstrap.servers", &self.bootstrap)
                .set("linger.ms", "2")
                .set("enable.idempotence", "true")
                .set("message.max.bytes", "4000000")
                .create()
                .expect("producer"),
            ledger: ledger.clone(),
        }
    }

    /// The group's committed offset of each partition `0..partitions` (None = none).
    pub async fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let (b, g, t) = (self.bootstrap.clone(), group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || committed(&b, &g, &t, partitions))
            .await
            .expect("offset reader thread")
    }

    /// (low, high) watermarks of each partition `0..partitions`: the log start (moved by
    /// retention) and the end.
    pub async fn watermarks(&self, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
        let (b, t) = (self.bootstrap.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer = consumer(&b, &unique("watermarks"));
            (0..partitions)
                .map(|p| {
                    consumer
                        .fetch_watermarks(&t, p, Duration::from_secs(10))
                        .expect("watermarks")
                })
                .collect()
        })
        .await
        .expect("watermark reader thread")
    }

    /// Commits `next` for `partition` of `topic` as `group`, as an earlier run would have.
    pub async fn commit(&self, group: &str, topic: &str, partition: i32, next: i64) {
        let (b, g, t) = (self.bootstrap.clone(), group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&t, partition, Offset::Offset(next))
                .expect("valid offset");
            consumer(&b, &g)
                .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
                .expect("commit accepted");
        })
        .await
        .expect("committing thread");
    }

    /// Every record of `topic` up to its high watermarks.
    pub async fn read_all(&self, topic: &str, partitions: i32) -> Vec<OwnedMessage> {
        let (b, t) = (self.bootstrap.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || read_all(&b, &t, partitions))
            .await
            .expect("reader thread")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(m) = &mut self.mock {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

/// What was produced, by (partition, offset).
#[derive(Clone, Debug)]
pub struct Produced {
    pub key: Option<Vec<u8>>,
    /// Sequence number within the key (records of one key are produced in this order).
    pub seq: u64,
    pub digest: u64,
    pub len: usize,
    /// The app refuses this record (4xx): it must end in the dead-letter topic.
    pub poison: bool,
}

/// The producer's independent record of every acknowledged record.
pub type Ledger = Arc<Mutex<BTreeMap<(i32, i64), Produced>>>;

/// A record to produce.
#[derive(Clone, Debug, Default)]
pub struct Msg {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub seq: u64,
    pub poison: bool,
}

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    ledger: Ledger,
}

impl Producer {
    /// Produces `msgs` (concurrently; the idempotent producer keeps per-partition order) and
    /// records each acknowledged one in the ledger. Partitions are chosen by key.
    pub async fn send(&self, topic: &str, msgs: &[Msg]) {
        let sends = msgs.iter().map(|m| {
            let headers = m.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k.as_str(),
                    value: v.as_deref(),
                })
            });
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
            if let Some(v) = &m.value {
                r = r.payload(&v[..]);
            }
            if let Some(k) = &m.key {
                r = r.key(&k[..]);
            }
            self.inner.send(r, Duration::from_secs(30))
        });
        let results = futures::future::join_all(sends).await;
        let mut ledger = self.ledger.lock().expect("ledger lock");
        for (m, res) in msgs.iter().zip(results) {
            let delivery = res.map_err(|(e, _)| e).expect("record produced");
            let value = m.value.as_deref().unwrap_or_default();
            ledger.insert(
                (delivery.partition, delivery.offset),
                Produced {
                    key: m.key.clone(),
                    seq: m.seq,
                    digest: digest(value),
                    len: value.len(),
                    poison: m.poison,
                },
            );
        }
    }
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "4000000")
        .create()
        .expect("consumer")
}

fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer = consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(got) => {
                return (0..partitions)
                    .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    })
                    .collect();
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot read committed offsets: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<OwnedMessage> {
    let consumer = consumer(bootstrap, &unique("reader"));
    let mut tpl = TopicPartitionList::new();
    let mut high = Vec::new();
    for p in 0..partitions {
        let (_, h) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or((0, 0));
        high.push(h);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("valid offset");
    }
    let total: i64 = high.iter().sum();
    let mut out = Vec::new();
    if total == 0 {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < total {
        assert!(
            Instant::now() < deadline,
            "read {} of {total} records of {topic}",
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

/// (original partition, original offset, value digest, reason) of a dead-letter record.
pub fn dead_letter_coordinates(m: &OwnedMessage) -> (i32, i64, u64, String) {
    let p = header(m, "kcp-dlq-original-partition")
        .and_then(|v| v.parse().ok())
        .expect("kcp-dlq-original-partition");
    let o = header(m, "kcp-dlq-original-offset")
        .and_then(|v| v.parse().ok())
        .expect("kcp-dlq-original-offset");
    let reason = header(m, "kcp-dlq-reason").unwrap_or_default();
    (p, o, digest(m.payload().unwrap_or_default()), reason)
}
