//! Reconcile: orchestration only. validate → read Secrets and children → build → apply
//! (ConfigMap, then Deployment) → lag (the lag reader's latest figures; never waits for
//! Kafka) → status. Each step's logic lives in its own module; this
//! one decides the order and what an error means for the status and the requeue.
//!
//! Requeue by error kind (see [`error_policy`]): success resyncs after the lag refresh
//! interval; an invalid spec waits for a change of the resource; a missing Secret or a name
//! conflict is checked again every minute (Secrets are not watched); transient API failures
//! retry with per-object exponential backoff (5 s doubling to 5 min).

pub mod apply;
pub mod build;
pub mod drift;
pub mod secrets;
pub mod status;
pub mod template;
#[doc(hidden)]
pub mod testing;
pub mod validate;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kcp_crds::KafkaConsumerProxy;
use kube::{
    Api, Client, Resource, ResourceExt,
    core::{DeserializeGuard, ObjectMeta, error_boundary::InvalidObject},
    runtime::{controller::Action, events::Recorder},
};
use tracing::{info, warn};

use crate::{
    Error, ErrorKind,
    lag::{LagObservation, LagReader, ResourceKey, error_chain},
    metrics::{CategoryLabel, Figures, Metrics},
};
use build::{BuildOptions, config_map_name, deployment_name, selector_string};
use status::{KAFKA_REACHABLE, Outcome, READY, Reason};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The lag reader: reconciles read its cache, never Kafka.
    pub lag: LagReader,
    pub build: BuildOptions,
    /// Resync period on success; also how often lag is refreshed.
    pub lag_refresh: Duration,
    /// Consecutive transient failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        lag: LagReader,
        build: BuildOptions,
        lag_refresh: Duration,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            lag,
            build,
            lag_refresh,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

/// `namespace/name/uid`: identifies one incarnation of a resource.
fn object_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    )
}

/// Reconciles one resource. Never panics on bad input: a malformed object is reported as a
/// Warning Event and left alone.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<KafkaConsumerProxy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let started = Instant::now();
    let result = match &obj.0 {
        Ok(kcp) => reconcile_kcp(kcp, &ctx).await,
        Err(invalid) => Err(report_malformed(&obj, invalid, &ctx).await),
    };
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&object_key(obj.meta()));
    }
    result
}

/// What to do after a failed reconcile (see the module docs).
pub fn error_policy(
    obj: Arc<DeserializeGuard<KafkaConsumerProxy>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let category = err.category();
    ctx.metrics
        .reconcile_failures
        .get_or_create(&CategoryLabel { category })
        .inc();
    let resource = format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    );
    match err.kind() {
        ErrorKind::InvalidInput => {
            info!(%resource, category, error = %error_chain(err), "Waiting for the user to fix the resource");
            err.recheck_after()
                .map_or_else(Action::await_change, Action::requeue)
        }
        ErrorKind::Transient => {
            let failures = ctx
                .failures
                .lock()
                .map(|mut f| {
                    let n = f.entry(object_key(obj.meta())).or_insert(0);
                    *n = n.saturating_add(1);
                    *n
                })
                .unwrap_or(1);
            let delay = backoff(failures);
            warn!(%resource, category, failures, retry_in = ?delay, error = %error_chain(err), "Reconcile failed");
            Action::requeue(delay)
        }
    }
}

/// Delay before retry number `failures` (1-based): 5 s, 10 s, 20 s, ... at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 * 2u64.pow(exp)).min(Duration::from_secs(300))
}

/// What a successful convergence observed.
struct Converged {
    deployment: Deployment,
    lag: LagObservation,
    outcome: Outcome,
}

async fn reconcile_kcp(kcp: &KafkaConsumerProxy, ctx: &Context) -> Result<Action, Error> {
    let name = kcp.name_any();
    let namespace = kcp.namespace().unwrap_or_default();
    let previous = kcp.status.as_ref();

    let (outcome, deployment, lag, failure) = match converge(kcp, ctx).await {
        Ok(c) => (c.outcome, Some(c.deployment), c.lag, None),
        Err(e) if e.kind() == ErrorKind::InvalidInput => (
            Outcome::Blocked {
                reason: e.reason().unwrap_or(Reason::InvalidSpec),
                message: error_chain(&e),
            },
            None,
            LagObservation::NotProbed,
            Some(e),
        ),
        Err(e) => return Err(e),
    };

    let new_status = status::compute(&status::Input {
        generation: kcp.meta().generation,
        selector: selector_string(&name),
        outcome,
        deployment: deployment.as_ref(),
        lag: &lag,
        previous,
        now: crate::now_seconds(),
    });
    let stuck = match &lag {
        LagObservation::Fresh { snapshot, .. } => snapshot.stuck_count,
        _ => new_status.stuck.len(),
    };
    ctx.metrics
        .resources
        .set(&namespace, &name, Figures::of(&new_status, stuck));
    if previous != Some(&new_status) {
        let api: Api<KafkaConsumerProxy> = Api::namespaced(ctx.client.clone(), &namespace);
        apply::write_status(&api, &name, &new_status, &ctx.metrics).await?;
        publish_transitions(kcp, previous, &new_status, ctx).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(Action::requeue(ctx.lag_refresh)),
    }
}

async fn converge(kcp: &KafkaConsumerProxy, ctx: &Context) -> Result<Converged, Error> {
    let mut v = validate::validate(kcp)?;
    let secrets = secrets::resolve(
        &ctx.client,
        &v.namespace,
        &v.name,
        v.spec.kafka.auth.as_ref(),
        v.spec.kafka.schema_registry.as_ref(),
    )
    .await?;
    v.secrets_hash = secrets.fingerprint;
    v.quiesced_for = crate::operations::quiesce::holder(&ctx.client, kcp).await?;

    // Read and applied as JSON: a typed read would drop pod fields the pinned types lack.
    let config_maps = apply::child_api::<ConfigMap>(&ctx.client, &v.namespace);
    let deployments = apply::child_api::<Deployment>(&ctx.client, &v.namespace);
    let cm_name = config_map_name(&v.name);
    let dep_name = deployment_name(&v.name);
    let read_error = |kind, name: &str| {
        let name = name.to_owned();
        move |source| Error::ReadChild { kind, name, source }
    };
    let observed_cm = config_maps
        .get_opt(&cm_name)
        .await
        .map_err(read_error("ConfigMap", &cm_name))?;
    let observed_dep = deployments
        .get_opt(&dep_name)
        .await
        .map_err(read_error("Deployment", &dep_name))?;
    ensure_controlled(
        observed_cm.as_ref().map(|o| &o.metadata),
        &v.owner.uid,
        "ConfigMap",
        &cm_name,
    )?;
    ensure_controlled(
        observed_dep.as_ref().map(|o| &o.metadata),
        &v.owner.uid,
        "Deployment",
        &dep_name,
    )?;

    let children = build::build(&v, &ctx.build);
    // Apply order: the ConfigMap first. The Deployment's pods mount it and their template
    // carries its hash; pods started before it exists would wait in ContainerCreating, and a
    // config change must be in place before the rollout it triggers starts new pods.
    apply::ensure(
        &config_maps,
        &children.config_map_body(),
        observed_cm,
        &ctx.metrics,
        apply::CONFIGMAPS,
    )
    .await?;
    let deployment = apply::ensure(
        &deployments,
        &children.deployment_body(),
        observed_dep,
        &ctx.metrics,
        apply::DEPLOYMENTS,
    )
    .await
    .map_err(|e| e.naming_template_fields(v.spec.template.as_ref()))?;
    let deployment: Deployment = apply::typed(&deployment, apply::DEPLOYMENTS)?;

    let target = v.lag_target();
    // The latest figures the reader has; never waits for Kafka.
    let lag = ctx
        .lag
        .observe(&ResourceKey::of(kcp.meta()), target, secrets.credentials);
    let outcome = if let Some(operation) = &v.quiesced_for {
        Outcome::Stopped {
            operation: operation.clone(),
        }
    } else if v.spec.paused && !v.spec.suspend {
        Outcome::Paused
    } else {
        Outcome::Applied {
            suspended: v.spec.suspend,
        }
    };
    Ok(Converged {
        deployment,
        lag,
        outcome,
    })
}

/// A child name taken by an object we do not control is the user's to resolve; applying with
/// force would silently take it over.
fn ensure_controlled(
    observed: Option<&ObjectMeta>,
    owner_uid: &str,
    kind: &'static str,
    name: &str,
) -> Result<(), Error> {
    let Some(meta) = observed else {
        return Ok(());
    };
    let controlled = meta
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == owner_uid);
    if controlled {
        Ok(())
    } else {
        Err(Error::OwnershipConflict {
            kind,
            name: name.to_owned(),
        })
    }
}

/// Warning Events when the resource turns Stalled on a user error (new reason or message), or
/// Kafka becomes unreachable. Called only after the status changed, so not repeated per resync.
async fn publish_transitions(
    kcp: &KafkaConsumerProxy,
    previous: Option<&kcp_crds::KafkaConsumerProxyStatus>,
    new: &kcp_crds::KafkaConsumerProxyStatus,
    ctx: &Context,
) {
    let find = |s: Option<&kcp_crds::KafkaConsumerProxyStatus>, t: &str| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == t).cloned())
    };
    let reference = kcp.object_ref(&());
    let stalled = find(Some(new), status::STALLED);
    let ready = find(Some(new), READY);
    if let (Some(stalled), Some(ready)) = (&stalled, &ready)
        && stalled.status == "True"
    {
        let before = find(previous, READY);
        let changed = before.is_none_or(|b| b.reason != ready.reason || b.message != ready.message);
        if changed {
            apply::warn_event(
                &ctx.recorder,
                &reference,
                &ready.reason,
                &ready.message,
                &ctx.metrics,
            )
            .await;
        }
    }
    if let Some(kafka) = find(Some(new), KAFKA_REACHABLE)
        && kafka.status == "False"
        && find(previous, KAFKA_REACHABLE).is_none_or(|b| b.status != "False")
    {
        apply::warn_event(
            &ctx.recorder,
            &reference,
            &kafka.reason,
            &kafka.message,
            &ctx.metrics,
        )
        .await;
    }
}

/// A resource that does not parse: log it and tell its owner with an Event. No status write:
/// our typed status cannot be merged into an object we cannot read, and the watch goes on.
async fn report_malformed(
    obj: &DeserializeGuard<KafkaConsumerProxy>,
    invalid: &InvalidObject,
    ctx: &Context,
) -> Error {
    let err = Error::MalformedObject(invalid.error.clone());
    warn!(
        namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
        name = obj.meta().name.as_deref().unwrap_or_default(),
        error = %invalid.error,
        "Resource cannot be parsed"
    );
    apply::warn_event(
        &ctx.recorder,
        &obj.object_ref(&()),
        Reason::InvalidSpec.as_str(),
        &err.to_string(),
        &ctx.metrics,
    )
    .await;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn only_children_we_control_may_be_applied() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let owned = |uid: &str, controller| ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                uid: uid.into(),
                controller: Some(controller),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        };
        assert!(ensure_controlled(None, "u", "Deployment", "d").is_ok());
        assert!(ensure_controlled(Some(&owned("u", true)), "u", "Deployment", "d").is_ok());
        assert!(ensure_controlled(Some(&owned("other", true)), "u", "Deployment", "d").is_err());
        assert!(ensure_controlled(Some(&owned("u", false)), "u", "Deployment", "d").is_err());
        assert!(ensure_controlled(Some(&ObjectMeta::default()), "u", "Deployment", "d").is_err());
    }
}
