//! The scenarios and what they share: the plan (counts and repeats), the run context (broker,
//! sink, scratch directory) and one helper that runs the sidecar child over a preloaded topic.

pub mod batch;
pub mod capacity;
pub mod flow;
pub mod latency;
pub mod operator;
pub mod outage;
pub mod parallel;
pub mod resources;
pub mod throughput;

use std::{cell::Cell, path::PathBuf, time::Duration};

use anyhow::bail;
use kcp_crds::{config::BatchConfig, v1alpha1::Ordering};
use serde::Serialize;

use crate::{
    forwarder::{self, ForwarderProc},
    kafka::Broker,
    sidecar::{self, Flow, Setup, SidecarProc},
    sink::{Counts, Delay, Sink},
};

/// Counts and repeats for one run of the bench.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub quick: bool,
    pub repeat: u32,
    pub value_size: usize,
    /// The preload producer's `batch.size`.
    pub preload_batch_bytes: u32,
    pub throughput_records: u64,
    pub throughput_max_in_flight: Vec<u32>,
    pub throughput_partitions: Vec<i32>,
    pub throughput_keys_per_partition: u32,
    pub latency_rate: u32,
    pub latency_secs: f64,
    pub backlog: u64,
    pub parallel_records: u64,
    pub parallel_keys: Vec<u32>,
    pub parallel_max_in_flight: u32,
    pub parallel_max_sleep_us: u32,
    pub parallel_repeat: u32,
    /// A throughput run (sidecar or bare consumer) stops after this many seconds even if records
    /// remain; its rate is then over what was delivered.
    pub throughput_cap_secs: u64,
    /// The backlog drain stops after this many seconds even if records remain.
    pub backlog_cap_secs: u64,
    /// Extra librdkafka properties for the sidecar and the bare consumer (`--kafka-setting`).
    pub kafka_settings: Vec<(String, String)>,
    /// Resources of the operator scenario (`--operator-resources`).
    pub operator_resources: usize,
    /// Capacity and outage scenarios: the app model's service time per request.
    pub app_service_ms: u64,
    /// Capacity scenario: the app model's phases, the fixed `maxInFlight` values swept, and the
    /// adaptive limit's ceiling.
    pub capacity_phases: Vec<capacity::Phase>,
    pub capacity_sweep: Vec<u32>,
    pub capacity_adaptive_max_in_flight: u32,
    /// Outage scenario: seconds of normal service before, of 503 answers, and after.
    pub outage_before_secs: f64,
    pub outage_secs: f64,
    pub outage_after_secs: f64,
    /// Batch scenario: records per run (as throughput), partitions, maxInFlight, the
    /// `maxRecords` values swept (beside an unbatched run), the sink's fixed cost per request
    /// (µs) and the time cap of one run (s).
    pub batch_records: u64,
    pub batch_partitions: i32,
    pub batch_max_in_flight: u32,
    pub batch_max_records: Vec<u32>,
    pub batch_sink_cost_us: u64,
    pub batch_cap_secs: u64,
}

/// What every scenario uses.
pub struct Ctx<'a> {
    pub broker: &'a Broker,
    pub bootstrap: String,
    pub sink: &'a Sink,
    pub workdir: PathBuf,
    pub plan: &'a Plan,
    /// The program every sidecar child runs (a pinned copy of this one).
    pub child_exe: PathBuf,
    runs: Cell<u32>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        broker: &'a Broker,
        sink: &'a Sink,
        workdir: PathBuf,
        plan: &'a Plan,
        child_exe: PathBuf,
    ) -> Self {
        Self {
            broker,
            bootstrap: broker.bootstrap(),
            sink,
            workdir,
            plan,
            child_exe,
            runs: Cell::new(0),
        }
    }

    /// A fresh name (topics and groups are never reused within or across runs).
    pub fn unique(&self, what: &str) -> String {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        format!("kcp-bench-{}-{what}-{n}", std::process::id())
    }

    /// Creates a fresh topic and returns its name.
    pub async fn topic(&self, what: &str, partitions: i32) -> anyhow::Result<String> {
        let name = self.unique(what);
        self.broker.create_topic(&name, partitions).await?;
        Ok(name)
    }

    /// librdkafka properties for low-latency runs. The mock broker holds an empty fetch for the
    /// whole `fetch.wait.max.ms` (500 ms by default) and does not answer early when a record
    /// arrives, unlike a real broker; without this, latency would measure the mock, not the
    /// sidecar. Applied to the bare consumer and the sidecar alike.
    pub fn latency_overrides(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if self.broker.is_mock() {
            v.push(("fetch.wait.max.ms".into(), "1".into()));
        }
        v.extend(self.plan.kafka_settings.iter().cloned());
        v
    }

    /// Starts a sidecar child on `topic` with the delivery settings of `flow` and waits until
    /// it holds all `partitions`.
    pub async fn start_sidecar(
        &self,
        topic: &str,
        partitions: i32,
        ordering: Ordering,
        max_in_flight: u32,
        client_config: Vec<(String, String)>,
        flow: Flow,
    ) -> anyhow::Result<SidecarProc> {
        let mut setup = self.setup(topic, ordering, max_in_flight, None);
        setup.client_config.extend(client_config);
        setup.flow = flow;
        self.spawn_sidecar(&setup, partitions).await
    }

    /// The sidecar's settings for a run on `topic`: a fresh group, the plan's librdkafka
    /// properties, the default [`Flow`] and `batch` as `delivery.batch`.
    pub fn setup(
        &self,
        topic: &str,
        ordering: Ordering,
        max_in_flight: u32,
        batch: Option<BatchConfig>,
    ) -> Setup {
        Setup {
            topic: topic.into(),
            group: self.unique("group"),
            ordering,
            max_in_flight,
            client_config: self.plan.kafka_settings.clone(),
            flow: Flow::default(),
            batch,
        }
    }

    /// Starts a sidecar child with `setup` and waits until it holds all `partitions`.
    pub async fn spawn_sidecar(
        &self,
        setup: &Setup,
        partitions: i32,
    ) -> anyhow::Result<SidecarProc> {
        let group = &setup.group;
        let config = sidecar::config(&self.bootstrap, &self.sink.url(), setup)?;
        let mut child = SidecarProc::spawn(&self.child_exe, &config, &self.workdir, group).await?;
        let joined = child
            .wait_joined(partitions as usize, Duration::from_secs(60))
            .await?;
        eprintln!(
            "  sidecar pid {} joined {group} in {joined:.1?}",
            child.pid()
        );
        Ok(child)
    }

    /// Runs a sidecar over `records` already in `topic` for at most `cap` after it joined, and
    /// returns what the sink (reset to `delay` first) saw from the first request to the last
    /// answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn drain_with_sidecar(
        &self,
        topic: &str,
        partitions: i32,
        records: u64,
        ordering: Ordering,
        max_in_flight: u32,
        delay: Delay,
        cap: Duration,
    ) -> anyhow::Result<Drain> {
        let setup = self.setup(topic, ordering, max_in_flight, None);
        self.drain_setup(&setup, partitions, records, delay, cap)
            .await
    }

    /// [`Self::drain_with_sidecar`] with the sidecar's settings given whole.
    pub async fn drain_setup(
        &self,
        setup: &Setup,
        partitions: i32,
        records: u64,
        delay: Delay,
        cap: Duration,
    ) -> anyhow::Result<Drain> {
        self.sink.reset(delay, false);
        let child = self.spawn_sidecar(setup, partitions).await?;
        let mut counts = self.sink.wait_done(records, cap).await;
        if counts.done < records {
            // Capped: the rate is over the whole capped window, not up to the last answer.
            counts.last_done_ns = crate::clock::now_ns();
        }
        let cpu = child.sample().map(|s| s.cpu);
        child.stop(Duration::from_secs(30)).await?;
        if counts.done == 0 {
            bail!("sidecar delivered nothing within {cap:?}");
        }
        Ok(Drain {
            counts,
            expected: records,
            cpu,
        })
    }

    /// Runs the bare forwarder ([`crate::forwarder`]) over `records` already in `topic` with
    /// `concurrency` requests in flight, for at most `cap` after it started; as
    /// [`Self::drain_with_sidecar`].
    pub async fn drain_with_forwarder(
        &self,
        topic: &str,
        partitions: i32,
        records: u64,
        concurrency: u32,
        cap: Duration,
    ) -> anyhow::Result<Drain> {
        self.sink.reset(Delay::None, false);
        let job = forwarder::Job {
            bootstrap: self.bootstrap.clone(),
            topic: topic.into(),
            partitions,
            records,
            url: self.sink.url(),
            concurrency,
            overrides: self.plan.kafka_settings.clone(),
        };
        let label = self.unique("forwarder");
        let child = ForwarderProc::spawn(&self.child_exe, &job, &self.workdir, &label).await?;
        let mut counts = self.sink.wait_done(records, cap).await;
        if counts.done < records {
            counts.last_done_ns = crate::clock::now_ns();
        }
        let cpu = child.sample().map(|s| s.cpu);
        child.stop(Duration::from_secs(30)).await?;
        if counts.done == 0 {
            bail!("bare forwarder delivered nothing within {cap:?}");
        }
        Ok(Drain {
            counts,
            expected: records,
            cpu,
        })
    }
}

/// What a sidecar run over a preloaded topic delivered.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    pub counts: Counts,
    pub expected: u64,
    /// CPU (user + system) of the sidecar or forwarder child over its whole life up to the last
    /// answer: starting, joining or connecting, and idle waits included.
    pub cpu: Option<Duration>,
}

impl Drain {
    /// CPU seconds per 10,000 records delivered.
    pub fn cpu_per_10k(&self) -> Option<f64> {
        forwarder::cpu_per_10k(self.cpu, self.counts.done)
    }

    /// Whether the time cap ended the run before every record was delivered.
    pub fn capped(&self) -> bool {
        self.counts.done < self.expected
    }
}

/// Whether a figure meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Met,
    Missed,
    NotMeasured,
    /// The issue sets no target for this figure.
    NoTarget,
}

impl Verdict {
    pub fn at_most(value: Option<f64>, limit: f64) -> Self {
        match value {
            Some(v) if v <= limit => Self::Met,
            Some(_) => Self::Missed,
            None => Self::NotMeasured,
        }
    }

    pub fn at_least(value: Option<f64>, limit: f64) -> Self {
        match value {
            Some(v) if v >= limit => Self::Met,
            Some(_) => Self::Missed,
            None => Self::NotMeasured,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "**missed**",
            Self::NotMeasured => "not measured",
            Self::NoTarget => "—",
        }
    }
}
