//! One step of a redrive: read dead letters from the progress's positions, [`decide`] each,
//! produce the chosen ones at the spec's rate, wait until the broker acknowledged every one,
//! and only then advance the progress. The Kafka shell around `decide`.
//!
//! Blocking (it sleeps to keep the rate); the caller runs it in `spawn_blocking`. One reading
//! consumer per dead-letter topic (so a partition-end event, which names only a partition
//! number, is unambiguous), one idempotent producer per step.

use std::{
    collections::{BTreeSet, HashMap},
    thread,
    time::{Duration, Instant},
};

use futures::executor::block_on;
use kcp_crds::v1alpha1::{RedrivePosition, RedriveProgress, RedriveSpec};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::BorrowedMessage,
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
};
use tracing::debug;

use super::{
    RedriveError, SOURCE_HINT, StepOutcome, StepState, all_done,
    decide::{DeadLetter, Decision, Filtered, Header, Owner, decide},
    left, list_offsets,
    pace::{paced, skip_expired},
    partitions_of, reader_config,
    record::{kafka_headers, read_headers},
};

/// How long the broker has to acknowledge a redriven record (librdkafka's
/// `message.timeout.ms`): a step lasts at most its deadline plus this.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a metadata request during a step may take (whatever is left of the deadline:
/// the record waiting for it is already read).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest single poll: a step looks at its deadline at least this often.
const POLL: Duration = Duration::from_millis(100);
/// After this long without a record, a step re-reads the watermarks of its open positions.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Reads on from `progress`'s positions, produces the dead letters [`decide`] picks to their
/// original partition, and advances `progress` (positions and counts) once every record
/// produced is acknowledged. Stops at `deadline`, after `max_records` dead letters read, or at
/// `spec.maxRecords` redriven in all; keeps `spec.ratePerSecond` (see the module docs of
/// `redrive`). On `Err`, `progress` is unchanged and the same step can be tried again.
///
/// Reading and producing end by `deadline`; waiting for acknowledgements can add up to
/// `ACK_TIMEOUT` (30 s), and a source topic's metadata (read once per step) up to 10 s.
pub fn step(
    base: &ClientConfig,
    spec: &RedriveSpec,
    owner: &Owner,
    progress: &mut RedriveProgress,
    max_records: usize,
    deadline: Instant,
) -> Result<StepOutcome, RedriveError> {
    let start = Instant::now();
    let remaining = spec
        .max_records
        .map(|m| m.saturating_sub(progress.redriven).max(0));
    let outcome = |state| StepOutcome {
        state,
        redriven: 0,
        expired: 0,
    };
    if all_done(progress) {
        return Ok(outcome(StepState::Done));
    }
    if remaining == Some(0) {
        return Ok(outcome(StepState::LimitReached));
    }
    if max_records == 0 || start >= deadline {
        return Ok(outcome(StepState::More));
    }

    let producer = producer(base)?;
    let mut run = Run {
        spec,
        owner,
        deadline,
        start,
        max_read: max_records,
        remaining,
        positions: progress.partitions.clone(),
        read: 0,
        redriven: 0,
        filtered: 0,
        loop_guarded: 0,
        expired: 0,
        stopped: false,
        producer: &producer,
        deliveries: Vec::new(),
        source_partitions: HashMap::new(),
    };
    let mut seen = BTreeSet::new();
    let topics: Vec<String> = progress
        .partitions
        .iter()
        .filter(|p| p.next < p.end && seen.insert(p.topic.as_str()))
        .map(|p| p.topic.clone())
        .collect();
    for topic in &topics {
        if run.stopped {
            break;
        }
        run.read_topic(base, topic)?;
    }
    run.await_acknowledgements()?;

    // Every record produced is acknowledged: the step counts.
    progress.partitions = run.positions;
    progress.read += run.read;
    progress.redriven += run.redriven;
    progress.filtered += run.filtered;
    progress.loop_guarded += run.loop_guarded;
    let state = if all_done(progress) {
        StepState::Done
    } else if remaining == Some(run.redriven) {
        StepState::LimitReached
    } else {
        StepState::More
    };
    debug!(
        read = run.read,
        redriven = run.redriven,
        expired = run.expired,
        ?state,
        "Redrive step acknowledged"
    );
    Ok(StepOutcome {
        state,
        redriven: run.redriven,
        expired: run.expired,
    })
}

/// The idempotent producer of one step.
fn producer(base: &ClientConfig) -> Result<FutureProducer, RedriveError> {
    let mut cfg = base.clone();
    // Consumer-only settings of `base` would make librdkafka warn.
    for consumer_only in ["group.id", "enable.auto.commit", "auto.offset.reset"] {
        cfg.remove(consumer_only);
    }
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", ACK_TIMEOUT.as_millis().to_string())
        .set_log_level(RDKafkaLogLevel::Warning);
    cfg.create().map_err(|source| RedriveError::CreateClient {
        client: "producer",
        source,
    })
}

/// A produced record waiting for its acknowledgement.
struct Pending {
    delivery: DeliveryFuture,
    topic: String,
    partition: i32,
    from: String,
}

/// One step's tentative state: nothing here reaches the progress before every record produced
/// is acknowledged.
struct Run<'a> {
    spec: &'a RedriveSpec,
    owner: &'a Owner,
    deadline: Instant,
    start: Instant,
    max_read: usize,
    /// Records the whole redrive may still produce (`maxRecords`), at the step's start.
    remaining: Option<i64>,
    positions: Vec<RedrivePosition>,
    read: i64,
    redriven: i64,
    filtered: i64,
    loop_guarded: i64,
    expired: i64,
    /// Reading stopped before every position was done (deadline, `max_read`, `maxRecords`).
    stopped: bool,
    producer: &'a FutureProducer,
    deliveries: Vec<Pending>,
    /// The partitions of each source topic met so far (`None`: the topic does not exist).
    source_partitions: HashMap<String, Option<Vec<i32>>>,
}

impl Run<'_> {
    /// Reads `topic`'s open positions until each is done or the step stops.
    fn read_topic(&mut self, base: &ClientConfig, topic: &str) -> Result<(), RedriveError> {
        let consumer: BaseConsumer = reader_config(base, Some(&self.owner.group))
            .create()
            .map_err(|source| RedriveError::CreateClient {
                client: "consumer",
                source,
            })?;
        let open: Vec<usize> = self.open_of(topic);
        let tps: Vec<(String, i32)> = open
            .iter()
            .map(|&i| (topic.to_owned(), self.positions[i].partition))
            .collect();
        let low = list_offsets(&consumer, &tps, Offset::Beginning, left(self.deadline))?;
        for &i in &open {
            let p = &mut self.positions[i];
            if let Some(&l) = low.get(&(topic.to_owned(), p.partition)) {
                self.expired += skip_expired(p, l);
            }
        }
        let open = self.open_of(topic);
        if open.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(open.len());
        let mut by_partition = HashMap::with_capacity(open.len());
        for &i in &open {
            let p = &self.positions[i];
            by_partition.insert(p.partition, i);
            tpl.add_partition_offset(topic, p.partition, Offset::Offset(p.next))
                .map_err(|source| assign_error(topic, source))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|source| assign_error(topic, source))?;

        let read_before = self.read;
        let open_before = open.len();
        let mut last_error = None;
        let mut quiet_since = Instant::now();
        while !self.stopped && !self.open_of(topic).is_empty() {
            let now = Instant::now();
            if now >= self.deadline || self.read_this_step() >= self.max_read {
                self.stopped = true;
                break;
            }
            match consumer.poll(POLL.min(self.deadline - now)) {
                None => {
                    if quiet_since.elapsed() >= IDLE_RECHECK {
                        self.recheck(&consumer, topic);
                        quiet_since = Instant::now();
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // The consumer reached the partition's end: every offset below the end
                    // fixed at plan time was read or never will be (compaction, markers, a
                    // truncated log).
                    if let Some(&i) = by_partition.get(&partition) {
                        let p = &mut self.positions[i];
                        p.next = p.next.max(p.end);
                    }
                }
                Some(Err(e)) => {
                    if consume_error_is_final(&e) {
                        return Err(RedriveError::Consume {
                            topic: topic.to_owned(),
                            source: e,
                        });
                    }
                    debug!(topic, error = %e, "Redrive consumer error");
                    // The throwaway group's coordinator may be refused (no ACL on it): it is
                    // never used, so that is no reason a step read nothing.
                    if e.rdkafka_error_code() != Some(RDKafkaErrorCode::GroupAuthorizationFailed) {
                        last_error = Some(e);
                    }
                }
                Some(Ok(m)) => {
                    quiet_since = Instant::now();
                    if let Some(&i) = by_partition.get(&m.partition())
                        && m.topic() == topic
                    {
                        self.take(&consumer, i, &m)?;
                    }
                }
            }
        }
        let moved = self.read > read_before || self.open_of(topic).len() < open_before;
        match last_error {
            Some(source) if !moved => Err(RedriveError::Consume {
                topic: topic.to_owned(),
                source,
            }),
            _ => Ok(()),
        }
    }

    /// Indexes of `topic`'s positions not at their end.
    fn open_of(&self, topic: &str) -> Vec<usize> {
        self.positions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.topic == topic && p.next < p.end)
            .map(|(i, _)| i)
            .collect()
    }

    fn read_this_step(&self) -> usize {
        usize::try_from(self.read).unwrap_or(usize::MAX)
    }

    /// After a quiet while: a position whose records below its end all expired, or that is at
    /// or past the partition's end (a truncated log), is done. A fallback to the consumer's
    /// end-of-partition event: a failed read changes nothing, and the step goes on.
    fn recheck(&mut self, consumer: &BaseConsumer, topic: &str) {
        let open = self.open_of(topic);
        let tps: Vec<(String, i32)> = open
            .iter()
            .map(|&i| (topic.to_owned(), self.positions[i].partition))
            .collect();
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        if timeout < IDLE_RECHECK {
            return;
        }
        let read = list_offsets(consumer, &tps, Offset::Beginning, timeout).and_then(|low| {
            let high = list_offsets(consumer, &tps, Offset::End, left(self.deadline))?;
            Ok((low, high))
        });
        let (low, high) = match read {
            Ok(watermarks) => watermarks,
            Err(e) => {
                debug!(topic, error = %e, "Redrive watermarks not read");
                return;
            }
        };
        for i in open {
            let p = &mut self.positions[i];
            let key = (topic.to_owned(), p.partition);
            if let Some(&l) = low.get(&key) {
                self.expired += skip_expired(p, l);
            }
            if high.get(&key).is_some_and(|&h| h <= p.next) {
                p.next = p.end;
            }
        }
    }

    /// Handles the record `m` of position `i`: decides it, produces it if chosen, and moves the
    /// position past it, unless the step stops before it (then it is not counted).
    fn take(
        &mut self,
        consumer: &BaseConsumer,
        i: usize,
        m: &BorrowedMessage<'_>,
    ) -> Result<(), RedriveError> {
        let (next, end) = (self.positions[i].next, self.positions[i].end);
        let offset = m.offset();
        if next >= end || offset < next {
            return Ok(());
        }
        if offset >= end {
            // Dead-lettered after the plan: left for another redrive.
            self.positions[i].next = end;
            return Ok(());
        }
        let (headers, unreadable_headers) = read_headers(m);
        let letter = DeadLetter {
            topic: m.topic(),
            partition: m.partition(),
            offset,
            timestamp_ms: m.timestamp().to_millis(),
            headers: &headers,
            unreadable_headers,
        };
        let mut decision = decide(&letter, self.spec, self.owner);
        if let Decision::Redrive {
            topic, partition, ..
        } = &decision
            && !self.partition_exists(consumer, topic, *partition)?
        {
            decision = Decision::Filtered(Filtered::NoSuchPartition {
                topic: topic.clone(),
                partition: *partition,
            });
        }
        let from = format!("{}/{}/{offset}", m.topic(), m.partition());
        match decision {
            Decision::Redrive {
                topic,
                partition,
                headers,
            } => {
                let at = paced(self.start, self.redriven, self.spec.rate_per_second);
                if at >= self.deadline {
                    self.stopped = true;
                    return Ok(());
                }
                thread::sleep(at.saturating_duration_since(Instant::now()));
                self.produce(m, topic, partition, &headers, from)?;
                self.redriven += 1;
            }
            Decision::Filtered(why) => {
                debug!(%from, %why, "Dead letter not selected");
                self.filtered += 1;
            }
            Decision::LoopGuarded(why) => {
                debug!(%from, %why, "Dead letter stopped by the loop guard");
                self.loop_guarded += 1;
            }
        }
        self.read += 1;
        self.positions[i].next = offset + 1;
        if self.remaining == Some(self.redriven) {
            self.stopped = true;
        }
        Ok(())
    }

    /// Whether `topic` has `partition` (metadata read once per topic and step).
    fn partition_exists(
        &mut self,
        consumer: &BaseConsumer,
        topic: &str,
        partition: i32,
    ) -> Result<bool, RedriveError> {
        if !self.source_partitions.contains_key(topic) {
            let ids = partitions_of(consumer, topic, CALL_TIMEOUT, SOURCE_HINT)?;
            self.source_partitions.insert(topic.to_owned(), ids);
        }
        Ok(self
            .source_partitions
            .get(topic)
            .and_then(Option::as_ref)
            .is_some_and(|ids| ids.binary_search(&partition).is_ok()))
    }

    /// Enqueues the redriven copy of `m`: same key and value, `headers`, to `topic`/`partition`.
    fn produce(
        &mut self,
        m: &BorrowedMessage<'_>,
        topic: String,
        partition: i32,
        headers: &[Header],
        from: String,
    ) -> Result<(), RedriveError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(partition)
            .headers(kafka_headers(headers));
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        let give_up = Instant::now() + ACK_TIMEOUT;
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.deliveries.push(Pending {
                        delivery,
                        topic: topic.clone(),
                        partition,
                        from,
                    });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < give_up =>
                {
                    record = back;
                    thread::sleep(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(RedriveError::Produce {
                        topic,
                        partition,
                        from,
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    /// Waits for the broker's answer to every record produced (each within [`ACK_TIMEOUT`]);
    /// the first failure is the step's error.
    fn await_acknowledgements(&mut self) -> Result<(), RedriveError> {
        for p in self.deliveries.drain(..) {
            let failed = match block_on(p.delivery) {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e,
                Err(_canceled) => KafkaError::Canceled,
            };
            return Err(RedriveError::Produce {
                topic: p.topic,
                partition: p.partition,
                from: p.from,
                source: Box::new(failed),
            });
        }
        Ok(())
    }
}

fn assign_error(topic: &str, source: KafkaError) -> RedriveError {
    RedriveError::Assign {
        topic: topic.to_owned(),
        source,
    }
}

/// Whether a consumer error stops the step: a fatal one, or a refusal to read the topic. Others
/// (a leader moving, the throwaway group's coordinator being refused: it is never used) pass.
fn consume_error_is_final(e: &KafkaError) -> bool {
    match e {
        KafkaError::MessageConsumptionFatal(_) => true,
        KafkaError::MessageConsumption(code) => matches!(
            code,
            RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::UnknownTopicOrPartition
        ),
        _ => false,
    }
}
