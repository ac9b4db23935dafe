//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! reconcile at once. kube-runtime 5 has no elector; this follows client-go's leaderelection:
//!
//! - read the Lease; absent → create it holding it (409 = someone else won);
//! - held by us → renew (`renewTime`); held by nobody → take it;
//! - held by another → take it only when its record has not changed for a whole
//!   `leaseDurationSeconds` *as measured by our own clock* since we first saw that record
//!   (no trust in other nodes' clocks);
//! - every write is an update carrying the `resourceVersion` we read, so of two replicas
//!   racing only one succeeds (409 Conflict for the other).
//!
//! The leader renews every `retry_period`; if it cannot renew for `renew_deadline` (shorter
//! than the lease duration) or finds another holder, it reports the loss and the process
//! stops reconciling and exits, to be restarted as a candidate. On graceful shutdown it
//! releases the Lease (empty holder, 1 s duration) so a standby takes over at once.
//! `decide` is pure and unit-tested; the rest is the thin API shell.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Lease timings and identity.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub identity: String,
    /// How long a holder's claim lasts without renewal (client-go default 15 s).
    pub lease_duration: Duration,
    /// The leader gives up when it could not renew for this long (default 10 s).
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew (default 2 s).
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    TakeOver,
    /// Someone else holds a live claim.
    Wait,
}

/// A Lease record and when (our clock) we first saw it with exactly this content.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub record: LeaseSpec,
    pub since: Instant,
}

/// Decides from the current record, what we saw of it before, and our identity. Pure.
pub fn decide(
    current: Option<&LeaseSpec>,
    observed: Option<&Observed>,
    me: &str,
    now: Instant,
) -> Decision {
    let Some(spec) = current else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let duration = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15),
            );
            match observed {
                Some(o) if o.record == *spec && now.duration_since(o.since) >= duration => {
                    Decision::TakeOver
                }
                _ => Decision::Wait,
            }
        }
    }
}

/// How holding the Lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Released on request (graceful shutdown).
    Released,
    /// Another replica holds it now, or renewal failed for `renew_deadline`.
    Lost,
}

/// Takes part in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
    metrics: Arc<Metrics>,
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    pub fn new(api: Api<Lease>, settings: LeaseSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            api,
            settings,
            observed: None,
            metrics,
        }
    }

    fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) {
        if let Some(spec) = spec
            && self.observed.as_ref().is_none_or(|o| o.record != *spec)
        {
            self.observed = Some(Observed {
                record: spec.clone(),
                since: now,
            });
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(15)
    }

    /// One attempt; `Ok(true)` when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let current = self.api.get_opt(&self.settings.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.clone());
        self.observe(spec.as_ref(), now);
        let decision = decide(
            spec.as_ref(),
            self.observed.as_ref(),
            &self.settings.identity,
            now,
        );
        let me = self.settings.identity.clone();
        let written = match (decision, current) {
            (Decision::Wait, _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me),
                        lease_duration_seconds: Some(self.duration_seconds()),
                        acquire_time: Some(micro_now()),
                        renew_time: Some(micro_now()),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.metrics.lease_writes.inc();
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Renew | Decision::TakeOver, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if decision == Decision::TakeOver {
                    spec.holder_identity = Some(me);
                    spec.acquire_time = Some(micro_now());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(self.duration_seconds());
                spec.renew_time = Some(micro_now());
                self.metrics.lease_writes.inc();
                // `replace` sends the resourceVersion we read: a concurrent writer makes it 409.
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await
            }
            (Decision::Renew | Decision::TakeOver, None) => return Ok(false),
        };
        match written {
            Ok(lease) => {
                self.observe(lease.spec.as_ref(), Instant::now());
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads (`true`) or `shutdown` turns true (`false`).
    pub async fn acquire(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        info!(lease = %self.settings.name, identity = %self.settings.identity, "Waiting to become leader");
        loop {
            if *shutdown.borrow() {
                return false;
            }
            let attempt =
                tokio::time::timeout(self.settings.renew_deadline, self.try_acquire_or_renew());
            match attempt.await {
                Ok(Ok(true)) => {
                    self.metrics.leader.set(1);
                    info!(lease = %self.settings.name, "Became leader");
                    return true;
                }
                Ok(Ok(false)) => debug!("Lease held by another replica"),
                Ok(Err(e)) => warn!(error = %e, "Could not read or write the Lease"),
                Err(_) => warn!("Lease request timed out"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Renews the Lease until `stop` resolves (then releases it) or leadership is lost.
    pub async fn hold(mut self, stop: impl Future<Output = ()>) -> Held {
        tokio::pin!(stop);
        let mut last_renewal = Instant::now();
        let held = loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period) => {}
                () = &mut stop => {
                    self.release().await;
                    break Held::Released;
                }
            }
            let attempt =
                tokio::time::timeout(self.settings.renew_deadline, self.try_acquire_or_renew());
            match attempt.await {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) => {
                    warn!("Another replica holds the Lease");
                    break Held::Lost;
                }
                Ok(Err(e)) => warn!(error = %e, "Could not renew the Lease"),
                Err(_) => warn!("Lease renewal timed out"),
            }
            if last_renewal.elapsed() > self.settings.renew_deadline {
                warn!(deadline = ?self.settings.renew_deadline, "Could not renew the Lease in time");
                break Held::Lost;
            }
        };
        self.metrics.leader.set(0);
        held
    }

    /// Gives the Lease up if we still hold it, so a standby need not wait for expiry.
    async fn release(&mut self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(micro_now());
            self.metrics.lease_writes.inc();
            self.api
                .replace(&self.settings.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.settings.renew_deadline, result).await {
            Ok(Ok(())) => info!("Released the Lease"),
            Ok(Err(e)) => warn!(error = %e, "Could not release the Lease"),
            Err(_) => warn!("Releasing the Lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(who: &str, renewed_secs: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                Timestamp::from_second(1_800_000_000 + renewed_secs).expect("ts"),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_is_created_and_our_own_is_renewed() {
        let now = Instant::now();
        assert_eq!(decide(None, None, "a", now), Decision::Create);
        assert_eq!(
            decide(Some(&held_by("a", 0)), None, "a", now),
            Decision::Renew
        );
        let free = LeaseSpec {
            holder_identity: None,
            ..held_by("x", 0)
        };
        assert_eq!(decide(Some(&free), None, "a", now), Decision::TakeOver);
    }

    #[test]
    fn another_holders_claim_expires_only_by_our_clock_and_only_if_unchanged() {
        let t0 = Instant::now();
        let spec = held_by("b", 0);
        let seen = Observed {
            record: spec.clone(),
            since: t0,
        };
        assert_eq!(decide(Some(&spec), Some(&seen), "a", t0), Decision::Wait);
        assert_eq!(
            decide(Some(&spec), Some(&seen), "a", t0 + Duration::from_secs(14)),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&spec), Some(&seen), "a", t0 + Duration::from_secs(15)),
            Decision::TakeOver
        );
        // The holder renewed since we first looked: its claim is live again.
        let renewed = held_by("b", 10);
        assert_eq!(
            decide(
                Some(&renewed),
                Some(&seen),
                "a",
                t0 + Duration::from_secs(60)
            ),
            Decision::Wait
        );
        // Never seen before: wait a full duration, whatever its renewTime says.
        assert_eq!(decide(Some(&spec), None, "a", t0), Decision::Wait);
    }
}
