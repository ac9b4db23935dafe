//! The lag reader: the one service between reconciles and Kafka.
//!
//! A reconcile calls [`LagReader::observe`], which returns at once: the latest figures of that
//! resource (`Pending` until its first read ends) and, when they were asked for at least 90 %
//! of a refresh interval ago and no read of the resource is running, it starts one. It never
//! waits for Kafka.
//!
//! Reads run in background tasks. At most `per_cluster` run at once against one cluster (its
//! set of bootstrap servers); the others wait their turn. Each read, waiting included, ends by
//! its deadline; a read that outlives it is reported as failed but keeps its slot until its
//! work really ends, so a dead cluster never has more than `per_cluster` reads on it. A read
//! whose result differs from the last one (figures, or the error) sends the resource's key on
//! [`Updates`]; the controller reconciles it and writes them. So a slow or unreachable cluster
//! delays the reads of that cluster only: never a reconcile, never another cluster's reads.
//!
//! Kept per resource: the target's fingerprint (a change voids the figures), the last
//! observation, when a read was last asked for, whether one runs. A resource not reconciled
//! for 10 refresh intervals is forgotten.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::channel::mpsc;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, oneshot, watch};
use tracing::{debug, info, warn};

use kcp_crds::v1alpha1::StuckPartition;

use super::{
    Credentials, LagError, LagObservation, LagSnapshot, LagSource, LagTarget, error_chain,
    stuck::StuckWindow,
};
use crate::metrics::Metrics;

/// One incarnation of a resource: namespace, name, uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ResourceKey {
    pub fn of(meta: &ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Resources whose figures changed: reconcile them.
pub type Updates = mpsc::UnboundedReceiver<ResourceKey>;

/// Bounds of the reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Longest read, waiting for a slot included.
    pub deadline: Duration,
    /// Reads running at once against one cluster.
    pub per_cluster: usize,
    /// How long a partition's committed offset must stay put, with lag, to be stuck
    /// (`stuck.rs`).
    pub stuck_after: Duration,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(15),
            per_cluster: 4,
            stuck_after: Duration::from_secs(300),
        }
    }
}

/// Past the deadline, how long to wait for the source's own error (more precise than ours).
const GRACE: Duration = Duration::from_secs(2);

/// The lag reader service. Cheap to share: reconciles hold it in their context.
pub struct LagReader {
    shared: Arc<Shared>,
}

struct Shared {
    source: Arc<dyn LagSource>,
    refresh: Duration,
    limits: ReadLimits,
    metrics: Arc<Metrics>,
    updates: mpsc::UnboundedSender<ResourceKey>,
    state: Mutex<State>,
    /// Reads asked for and not yet reported.
    outstanding: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    readings: HashMap<ResourceKey, Reading>,
    clusters: HashMap<String, Arc<Semaphore>>,
    next_generation: u64,
}

struct Reading {
    fingerprint: [u8; 32],
    cluster: String,
    /// Tells this target's reads from those of a target the resource had before.
    generation: u64,
    observation: LagObservation,
    /// Which partitions did not move, over the reads of this target.
    stuck: StuckWindow,
    asked_at: Option<Instant>,
    running: bool,
    seen_at: Instant,
}

impl LagReader {
    /// A reader refreshing each resource's figures about once per `refresh`, and the stream of
    /// resources to reconcile because their figures changed.
    pub fn new(
        source: Arc<dyn LagSource>,
        refresh: Duration,
        limits: ReadLimits,
        metrics: Arc<Metrics>,
    ) -> (Self, Updates) {
        let (updates, rx) = mpsc::unbounded();
        let shared = Shared {
            source,
            refresh,
            limits,
            metrics,
            updates,
            state: Mutex::new(State::default()),
            outstanding: watch::Sender::new(0),
        };
        let reader = Self {
            shared: Arc::new(shared),
        };
        (reader, rx)
    }

    /// The latest figures of `key` for `target`, and a read started in the background when
    /// they are due for a refresh. Never waits; must run inside a Tokio runtime.
    pub fn observe(
        &self,
        key: &ResourceKey,
        target: LagTarget,
        credentials: Credentials,
    ) -> LagObservation {
        let fingerprint = fingerprint(&target, &credentials);
        let now = Instant::now();
        let Ok(mut state) = self.shared.state.lock() else {
            return LagObservation::Pending;
        };
        let state = &mut *state;
        let forget_after = self.shared.refresh.max(Duration::from_secs(1)) * 10;
        let known = state.readings.len();
        state
            .readings
            .retain(|_, r| now.duration_since(r.seen_at) < forget_after);
        let mut forgot = state.readings.len() < known;
        let cluster = target.cluster();
        let stale_target = state
            .readings
            .get(key)
            .is_none_or(|r| r.fingerprint != fingerprint);
        if stale_target {
            // New resource or new target: figures of the old one are void, and a read of it
            // still running reports to nobody.
            state.next_generation += 1;
            let reading = Reading {
                fingerprint,
                cluster: cluster.clone(),
                generation: state.next_generation,
                observation: LagObservation::Pending,
                stuck: StuckWindow::new(self.shared.limits.stuck_after),
                asked_at: None,
                running: false,
                seen_at: now,
            };
            forgot |= state.readings.insert(key.clone(), reading).is_some();
        }
        let per_cluster = self.shared.limits.per_cluster.max(1);
        if forgot {
            // Drop the slots of clusters no resource reads any more (and none is running).
            let used: HashSet<&String> = state.readings.values().map(|r| &r.cluster).collect();
            state
                .clusters
                .retain(|c, slots| slots.available_permits() < per_cluster || used.contains(c));
        }
        let Some(reading) = state.readings.get_mut(key) else {
            return LagObservation::Pending;
        };
        reading.seen_at = now;
        let refresh_after = self.shared.refresh.mul_f64(0.9);
        let due = !reading.running
            && reading
                .asked_at
                .is_none_or(|at| now.duration_since(at) >= refresh_after);
        let observation = reading.observation.clone();
        if due {
            reading.asked_at = Some(now);
            reading.running = true;
            let generation = reading.generation;
            let slots = state
                .clusters
                .entry(cluster)
                .or_insert_with(|| Arc::new(Semaphore::new(per_cluster)))
                .clone();
            self.shared.outstanding.send_modify(|n| *n += 1);
            let shared = self.shared.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = shared.read(target, credentials, slots).await;
                shared.complete(&key, generation, started, result);
                shared.outstanding.send_modify(|n| *n = n.saturating_sub(1));
            });
        }
        observation
    }

    /// Resolves once every read asked for so far has reported (for tests).
    pub async fn idle(&self) {
        let mut rx = self.shared.outstanding.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

impl Shared {
    async fn read(
        &self,
        target: LagTarget,
        credentials: Credentials,
        slots: Arc<Semaphore>,
    ) -> Result<LagSnapshot, LagError> {
        let deadline = tokio::time::Instant::now() + self.limits.deadline;
        self.metrics.lag_reads_waiting.inc();
        let slot = tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await;
        self.metrics.lag_reads_waiting.dec();
        let slot = match slot {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(LagError::Task),
            Err(_) => {
                let running = self
                    .limits
                    .per_cluster
                    .max(1)
                    .saturating_sub(slots.available_permits());
                return Err(LagError::NoSlot {
                    deadline: self.limits.deadline,
                    running,
                });
            }
        };
        self.metrics.lag_reads_running.inc();
        let work = self.source.read(target, credentials, deadline.into_std());
        let running = self.metrics.lag_reads_running.clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let result = work.await;
            // The slot frees only when the work really ended, even if we gave up on it.
            drop(slot);
            running.dec();
            let _ = tx.send(result);
        });
        match tokio::time::timeout_at(deadline + GRACE, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LagError::Task),
            Err(_) => Err(LagError::Timeout(self.limits.deadline)),
        }
    }

    fn complete(
        &self,
        key: &ResourceKey,
        generation: u64,
        started: Instant,
        result: Result<LagSnapshot, LagError>,
    ) {
        self.metrics
            .lag_probe_duration
            .observe(started.elapsed().as_secs_f64());
        let now = crate::now_seconds();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some(reading) = state
            .readings
            .get_mut(key)
            .filter(|r| r.generation == generation)
        else {
            return;
        };
        let observation = match result {
            Ok(mut snapshot) => {
                let mut stuck = reading.stuck.observe(&snapshot.positions, now);
                snapshot.positions = Vec::new();
                snapshot.stuck_count = stuck.len();
                stuck.truncate(StuckPartition::MAX);
                snapshot.stuck = stuck;
                LagObservation::Fresh {
                    snapshot,
                    read_at: now,
                }
            }
            Err(e) => {
                self.metrics.lag_probe_failures.inc();
                LagObservation::Failed {
                    message: error_chain(&e),
                    at: now,
                }
            }
        };
        reading.running = false;
        let was_failing = matches!(reading.observation, LagObservation::Failed { .. });
        match &observation {
            LagObservation::Failed { message, .. } if was_failing => {
                debug!(resource = %key, error = %message, "Still cannot read lag from Kafka");
            }
            LagObservation::Failed { message, .. } => {
                warn!(resource = %key, error = %message, "Could not read lag from Kafka");
            }
            _ if was_failing => info!(resource = %key, "Reading lag from Kafka again"),
            _ => {}
        }
        let changed = !same_figures(&reading.observation, &observation);
        reading.observation = observation;
        drop(state);
        if changed {
            // Fails only when the controller stopped listening; its resync covers it.
            let _ = self.updates.unbounded_send(key.clone());
        }
    }
}

/// Whether `b` tells nothing new after `a` (read times aside).
fn same_figures(a: &LagObservation, b: &LagObservation) -> bool {
    match (a, b) {
        (LagObservation::Fresh { snapshot: x, .. }, LagObservation::Fresh { snapshot: y, .. }) => {
            x == y
        }
        (LagObservation::Failed { message: x, .. }, LagObservation::Failed { message: y, .. }) => {
            x == y
        }
        _ => false,
    }
}

/// Hash of everything a read depends on: a change means the figures are void.
fn fingerprint(t: &LagTarget, c: &Credentials) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(&t.bootstrap_servers);
    field(&t.group_id);
    field(t.protocol.as_str());
    field(t.sasl_mechanism.map_or("", |m| m.as_str()));
    let (user, password) = c.sasl.clone().unwrap_or_default();
    field(&user);
    field(&password);
    for pem in [&c.tls_ca, &c.tls_cert, &c.tls_key] {
        field(pem.as_deref().unwrap_or("\0none"));
    }
    for topic in &t.topics {
        field(topic);
    }
    field("\0dead-letter");
    for topic in &t.dead_letter_topics {
        field(topic);
    }
    h.finalize().into()
}

#[cfg(test)]
#[path = "reader/tests.rs"]
mod tests;
