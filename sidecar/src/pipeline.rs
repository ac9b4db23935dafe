//! Wires the stages together and runs them: the one code path every binary, demo and test uses.
//!
//! [`Pipeline::run`] builds the HTTP forwarder, the dead-letter producer and the consumer, starts
//! the poll loop on its own OS thread (`kcp-poll`; the rebalance callback blocks that thread,
//! never the async runtime), and returns once the pipeline has drained and committed after the
//! shutdown token fires. Records are worked by tasks on the caller's tokio runtime. The
//! observability handle ([`Stats`]) is available before and during the run.
//!
//! Shutdown sequence (graceful, `shutdown` cancelled): stop taking records, let the records
//! already dispatched finish while they make progress, then discard those not yet started, let
//! in-flight requests finish (all within `drainTimeout`, then abort them), commit synchronously,
//! close the consumer (leave the group) and return. Abort
//! (`abort_on` token, or dropping the run future): stop at once, commit nothing more, close.

mod membership;
mod poll;
mod rebalance;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use kcp_crds::SidecarConfig;
use rdkafka::consumer::BaseConsumer;
use tokio::{runtime::Handle, sync::oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::{ConsumerCtx, ConsumerError},
    control::Watch,
    deadletter::{DeadLetter, DeadLetterError},
    deliver::Deliverer,
    dispatch::{
        Batching, Budget, Buffer, Dispatcher, Job, PartitionState, Process, Recover, Waker, Work,
    },
    forward::{Forwarder, TargetError},
    gate::Prober,
    offsets::OffsetTracker,
    record::Tp,
    stats::Stats,
    telemetry::Throttle,
};

/// Records with unreadable header names are logged at most once per this period.
const UNREADABLE_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Why the pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("building the HTTP forwarder")]
    Forwarder(#[source] TargetError),
    #[error("building the schema registry client")]
    SchemaRegistry(#[source] crate::decode::registry::RegistryError),
    #[error("building the dead-letter producer")]
    DeadLetter(#[source] DeadLetterError),
    #[error("starting the consumer")]
    Consumer(#[source] ConsumerError),
    #[error("starting the poll thread")]
    Thread(#[source] std::io::Error),
    #[error("the poll thread died")]
    PollThread,
}

impl PipelineError {
    /// Whether a user must change the config (as opposed to a transient failure).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::Forwarder(_)
                | Self::SchemaRegistry(_)
                | Self::Consumer(ConsumerError::MissingCredential(_))
        )
    }
}

type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A configured pipeline, ready to [`run`](Pipeline::run).
pub struct Pipeline {
    config: SidecarConfig,
    identity: crate::consumer::Identity,
    /// The control file (`control.rs`); never paused without one.
    control: Option<PathBuf>,
    abort: CancellationToken,
    stats: Arc<Stats>,
    env: Env,
}

impl Pipeline {
    pub fn new(config: SidecarConfig) -> Self {
        Self {
            config,
            identity: Default::default(),
            control: None,
            abort: CancellationToken::new(),
            stats: Arc::new(Stats::default()),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// Who the consumer is in its group: the pod name (client id), and a stable
    /// `group.instance.id` only when there is one.
    pub fn identity(mut self, identity: crate::consumer::Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Pauses and resumes by request as the control file at `path` says (`control.rs`): read
    /// before the first record is taken, then every 2 s until the shutdown.
    pub fn control(mut self, path: impl Into<PathBuf>) -> Self {
        self.control = Some(path.into());
        self
    }

    /// Stops at once when `token` fires: no drain, no further commit (a second signal, a crash
    /// in a test). Nothing committed before passes an unfinished record either way.
    pub fn abort_on(mut self, token: CancellationToken) -> Self {
        self.abort = token;
        self
    }

    /// Where SASL credentials are read from (the process environment by default).
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// The observability handle: counters, gauges and per-partition state.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Runs until `shutdown` fires and the pipeline has drained and committed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PipelineError> {
        // Dropping this future (instead of cancelling `shutdown`) aborts the poll thread.
        let abort_guard = self.abort.clone().drop_guard();
        let config = self.config;
        let env = Arc::clone(&self.env);
        let env_fn = move |k: &str| env(k);
        let stats = self.stats;
        let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
        let d = &config.delivery;
        let decoder = crate::decode::Decoder::from_config(&config, &env_fn)
            .map_err(PipelineError::SchemaRegistry)?
            .map(Arc::new);
        let forwarder =
            Forwarder::from_config(&config, decoder).map_err(PipelineError::Forwarder)?;
        let dead_letter = DeadLetter::new(&config, &env_fn).map_err(PipelineError::DeadLetter)?;
        // App readiness: the poll loop fetches only while the gate is open (`gate.rs`).
        let prober = Prober::from_config(&config.endpoint).map_err(PipelineError::Forwarder)?;
        let gate_stop = CancellationToken::new();
        let _gate_guard = gate_stop.clone().drop_guard();
        {
            let stats = Arc::clone(&stats);
            let stop = gate_stop.clone();
            tokio::spawn(async move { prober.run(&stats.gate, stop).await });
        }
        if let Some(path) = self.control {
            // Read before the poll thread starts: a sidecar started paused takes nothing.
            let mut watch = Watch::new(path);
            watch.read_now(&stats.gate).await;
            let (stats, shutdown, stop) = (Arc::clone(&stats), shutdown.clone(), gate_stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = watch.run(&stats.gate, shutdown) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
        {
            // The shutdown's deadline counts from the signal, whatever the poll thread is doing
            // (a revoke can hold it for drainTimeout): `shutdown.rs`.
            let (stats, shutdown, stop) = (Arc::clone(&stats), shutdown.clone(), gate_stop.clone());
            let drain_timeout = d.drain_timeout.as_std();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        stats.shutdown.begin(drain_timeout);
                        // The app waits in its preStop hook for this shutdown: finish against it.
                        stats.gate.release_hold();
                    }
                    _ = stop.cancelled() => {}
                }
            });
        }
        let deliverer = Arc::new(Deliverer::new(
            &config,
            forwarder,
            dead_letter,
            Arc::clone(&tracker),
            Arc::clone(&stats),
        ));
        let window = Arc::clone(&deliverer.window);
        let process: Process = {
            let deliverer = Arc::clone(&deliverer);
            Arc::new(move |job: Arc<Job>| {
                let d = Arc::clone(&deliverer);
                Box::pin(async move { d.process(&job).await })
            })
        };
        let batch = d.batch.as_ref().map(|b| {
            let deliverer = Arc::clone(&deliverer);
            Batching {
                max_records: b.max_records as usize,
                max_bytes: b.max_bytes as usize,
                max_wait: b.max_wait.as_std(),
                max_in_flight: d.max_in_flight as usize,
                process: Arc::new(move |jobs: Vec<Arc<Job>>| {
                    let d = Arc::clone(&deliverer);
                    Box::pin(async move { d.process_batch(&jobs).await })
                }),
            }
        });
        // Buffers hold enough records to fill batches: a partition's as for `maxRecords`
        // requests; all partitions' room for every request in flight to carry a full batch
        // (within the window, at most 10,000 records), twice over. The byte bounds stay.
        let batch_records = d.batch.as_ref().map_or(1, |b| b.max_records);
        let flow = d.max_in_flight.max(batch_records);
        let mut total = Budget::total_for_max_in_flight(flow);
        if batch_records > 1 {
            let in_flight = (d.max_in_flight as usize).saturating_mul(batch_records as usize);
            let window = d.window().map_or(usize::MAX, |w| w as usize);
            let room = in_flight.min(window).saturating_mul(2).min(10_000);
            total.max_records = total.max_records.max(room);
        }
        let recover: Recover = Arc::new(move |job: Arc<Job>, panic: String| {
            let d = Arc::clone(&deliverer);
            Box::pin(async move { d.recover(&job, &panic).await })
        });
        let shared = Arc::new(Shared {
            dispatcher: Dispatcher::new(
                d.ordering,
                Work {
                    process,
                    recover,
                    batch,
                },
                Handle::current(),
                Arc::clone(&stats),
            ),
            budget: Budget::for_max_in_flight(flow),
            total: Arc::new(Buffer::new(total)),
            drain_timeout: d.drain_timeout.as_std(),
            commit_interval: d.commit_interval.as_std(),
            window: Arc::clone(&window),
            guarantee: d.guarantee,
            initial_offset: config.kafka.initial_offset,
            unready_timeout: config.endpoint.unready_timeout.as_std(),
            resets: Arc::default(),
            ahead: Mutex::default(),
            revoked_queues: Mutex::default(),
            tracker,
            partitions: Mutex::new(Default::default()),
            queues: Mutex::new(Default::default()),
            consumer: OnceLock::new(),
            stats: Arc::clone(&stats),
            unreadable_log: Throttle::new(UNREADABLE_LOG_PERIOD),
            stop: CancellationToken::new(),
            abort: self.abort.clone(),
        });
        let consumer_config = crate::consumer::consumer_config(&config, &self.identity, &env_fn)
            .map_err(PipelineError::Consumer)?;
        let topics = config.kafka.topics.clone();
        let (done_tx, done_rx) = oneshot::channel();
        let abort = self.abort.clone();
        std::thread::Builder::new()
            .name("kcp-poll".into())
            .spawn(move || {
                let result = poll::run(consumer_config, topics, shared, shutdown, abort);
                // The receiver is gone only if the run future was dropped: nothing to tell.
                let _ = done_tx.send(result);
            })
            .map_err(PipelineError::Thread)?;
        let result = done_rx.await.map_err(|_| PipelineError::PollThread);
        // Committed and left (or stopped by an error): `/drain` answers now.
        stats.shutdown.finish();
        let result = result?;
        abort_guard.disarm();
        result
    }
}

/// Runs a pipeline for `config` until `shutdown` fires and it has drained.
pub async fn run(config: SidecarConfig, shutdown: CancellationToken) -> Result<(), PipelineError> {
    Pipeline::new(config).run(shutdown).await
}

/// State shared by the poll thread, its rebalance callbacks and the record tasks.
pub(crate) struct Shared {
    pub dispatcher: Arc<Dispatcher>,
    /// Each partition's buffer budget.
    pub budget: Budget,
    /// Every partition's buffers together.
    pub total: Arc<Buffer>,
    pub drain_timeout: Duration,
    pub commit_interval: Duration,
    /// Records sent and not yet committed (`commit/window.rs`), shared with the deliverer.
    pub window: Arc<crate::commit::Window>,
    pub guarantee: kcp_crds::v1alpha1::Guarantee,
    /// How long the app may be unready before the replica leaves the group (`membership.rs`).
    pub unready_timeout: Duration,
    /// Where a partition the group never committed on starts (`reset.rs`).
    pub initial_offset: kcp_crds::v1alpha1::InitialOffset,
    /// Queues of revoked partitions, drained by the poll loop once their fetching stopped
    /// (`poll::drain_revoked`), so their prefetched records and fetch buffers are released.
    pub revoked_queues: Mutex<Vec<poll::PartitionFetch>>,
    /// At most once: records taken this round, sent once the commit past them is acknowledged
    /// (`poll::commit_ahead`). Only the poll thread uses it.
    pub ahead: Mutex<Vec<crate::dispatch::Job>>,
    /// Out-of-range resets librdkafka reported, waiting for their partition's next record.
    pub resets: Arc<crate::reset::Resets>,
    pub tracker: Arc<Mutex<OffsetTracker<Tp>>>,
    pub partitions: Mutex<std::collections::HashMap<Tp, Arc<PartitionState>>>,
    /// Each assigned partition's own librdkafka queue (only the poll thread uses them).
    pub queues: Mutex<std::collections::HashMap<Tp, poll::PartitionFetch>>,
    /// The consumer, for splitting partition queues in the assign callback (set by the poll
    /// thread; weak, since the consumer holds this struct), and the poll thread's waker.
    pub consumer: OnceLock<(Weak<BaseConsumer<ConsumerCtx>>, Waker)>,
    pub stats: Arc<Stats>,
    /// At most one WARN per period about records with unreadable header names.
    pub unreadable_log: Throttle,
    /// Parent of every partition's stop token: fired at shutdown.
    pub stop: CancellationToken,
    /// Parent of every partition's abort token: fired on abort.
    pub abort: CancellationToken,
}

impl Shared {
    pub fn partition(&self, tp: &Tp) -> Option<Arc<PartitionState>> {
        self.lock_partitions().get(tp).cloned()
    }

    pub fn lock_queues(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Tp, poll::PartitionFetch>> {
        self.queues
            .lock()
            .expect("invariant: queues lock never poisoned")
    }

    /// Called once by the poll thread when it has created the consumer.
    pub fn attach(&self, consumer: &Arc<BaseConsumer<ConsumerCtx>>, waker: Waker) {
        let _ = self.consumer.set((Arc::downgrade(consumer), waker));
    }

    pub fn lock_ahead(&self) -> std::sync::MutexGuard<'_, Vec<crate::dispatch::Job>> {
        self.ahead
            .lock()
            .expect("invariant: at-most-once batch lock never poisoned")
    }

    pub fn lock_partitions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Tp, Arc<PartitionState>>> {
        self.partitions
            .lock()
            .expect("invariant: partitions lock never poisoned")
    }
}
