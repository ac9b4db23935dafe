//! The reconcile of one `KafkaConsumerProxyOperation`: orchestration and status only. What each
//! kind does lives in `offsets_flow` (rewind, fast-forward, skip) and `redrive_flow`.
//!
//! An operation runs once: a finished one (`Succeeded`, `Failed`) is never looked at again,
//! and its spec cannot change (CRD rule). Every step writes the status before the next, so an
//! operator restart resumes where the status says. A failure that trying again may fix counts
//! in `status.failures`, and the operation fails after [`OpLimits::max_failures`]; one that
//! cannot be fixed by trying again fails at once, with what to do in its message.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kcp_crds::{
    KafkaConsumerProxy,
    v1alpha1::{KafkaConsumerProxyOperation, OperationStatus, Phase},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
    },
};
use rdkafka::ClientConfig;
use serde_json::json;
use tracing::{info, warn};

use crate::{
    Error,
    lag::{base_client_config, error_chain},
    reconcile::{backoff, secrets, validate},
};

use super::{offsets_flow, redrive_flow};

/// Bounds of the operations' work.
#[derive(Clone, Copy, Debug)]
pub struct OpLimits {
    /// How long a seek waits to be given every partition of the group.
    pub join_timeout: Duration,
    /// Each Kafka call.
    pub call_timeout: Duration,
    /// How often a waiting operation looks again.
    pub poll: Duration,
    /// Failures before an operation fails.
    pub max_failures: i32,
    /// How long the proxy's pods may take to leave the group.
    pub stop_timeout: Duration,
    /// How long one redrive step runs before the status is written.
    pub redrive_step: Duration,
}

impl Default for OpLimits {
    fn default() -> Self {
        Self {
            join_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
            poll: Duration::from_secs(2),
            max_failures: 5,
            stop_timeout: Duration::from_secs(600),
            redrive_step: Duration::from_secs(5),
        }
    }
}

/// What every operation's reconcile shares.
pub struct OpContext {
    pub client: Client,
    pub recorder: Recorder,
    pub limits: OpLimits,
}

/// The operation being reconciled, its proxy, and the status being written.
pub(super) struct Run<'a> {
    pub op: &'a KafkaConsumerProxyOperation,
    pub ctx: &'a OpContext,
    pub proxies: Api<KafkaConsumerProxy>,
    pub kcp: KafkaConsumerProxy,
    pub status: OperationStatus,
}

impl Run<'_> {
    pub fn name(&self) -> String {
        self.op.name_any()
    }

    /// Sets the phase and message; `startedAt` on the first step.
    pub fn set(&mut self, phase: Phase, message: impl Into<String>) {
        self.status.phase = Some(phase);
        self.status.message = Some(message.into());
        // The clock of `stop_timeout`: waiting for another operation does not count.
        if self.status.started_at.is_none() && phase != Phase::Pending {
            self.status.started_at = Some(Time(crate::now_seconds()));
        }
        if phase.finished() {
            self.status.finished_at = Some(Time(crate::now_seconds()));
        }
    }

    /// A failure trying again may fix: counted; the operation fails at the limit.
    pub fn failed_try(&mut self, message: String) -> Action {
        self.status.failures += 1;
        let n = self.status.failures;
        if n >= self.ctx.limits.max_failures {
            self.set(
                Phase::Failed,
                format!("{message} (failed {n} times; create a new operation to try again)"),
            );
            Action::await_change()
        } else {
            let phase = self.status.phase.unwrap_or(Phase::Pending);
            self.set(phase, format!("{message}; trying again (failure {n})"));
            Action::requeue(backoff(n as u32))
        }
    }

    /// The Kafka connection of the proxy: its bootstrap servers, security and credentials.
    pub async fn kafka(&self) -> Result<(ClientConfig, validate::Validated), String> {
        let v = validate::validate(&self.kcp)
            .map_err(|e| format!("the KafkaConsumerProxy is invalid: {e}"))?;
        let secrets = secrets::resolve(
            &self.ctx.client,
            &v.namespace,
            &v.name,
            v.spec.kafka.auth.as_ref(),
            v.spec.kafka.schema_registry.as_ref(),
        )
        .await
        .map_err(|e| format!("reading the proxy's Kafka credentials: {}", error_chain(&e)))?;
        let target = v.lag_target();
        let base = base_client_config(&target, &secrets.credentials, self.ctx.limits.call_timeout);
        Ok((base, v))
    }

    /// A Normal Event on the operation and its proxy.
    pub async fn event(&self, reason: &str, note: &str) {
        for regarding in [self.op.object_ref(&()), self.kcp.object_ref(&())] {
            let event = Event {
                type_: EventType::Normal,
                reason: reason.to_owned(),
                note: Some(note.chars().take(1000).collect()),
                action: "Operation".to_owned(),
                secondary: None,
            };
            if let Err(e) = self.ctx.recorder.publish(&event, &regarding).await {
                warn!(error = %e, reason, "Could not publish Event");
            }
        }
    }
}

/// Reconciles one operation (see the module docs).
pub async fn reconcile(
    op: Arc<KafkaConsumerProxyOperation>,
    ctx: Arc<OpContext>,
) -> Result<Action, Error> {
    let before = op.status.clone().unwrap_or_default();
    if before.phase.is_some_and(Phase::finished) {
        return Ok(Action::await_change());
    }
    let namespace = op.namespace().unwrap_or_default();
    let ops: Api<KafkaConsumerProxyOperation> = Api::namespaced(ctx.client.clone(), &namespace);
    let proxies: Api<KafkaConsumerProxy> = Api::namespaced(ctx.client.clone(), &namespace);
    let kcp = proxies
        .get_opt(&op.spec.proxy)
        .await
        .map_err(|source| Error::ReadChild {
            kind: "KafkaConsumerProxy",
            name: op.spec.proxy.clone(),
            source,
        })?;
    let Some(kcp) = kcp else {
        let mut status = before.clone();
        status.phase = Some(Phase::Failed);
        status.message = Some(format!(
            "the KafkaConsumerProxy {} does not exist in namespace {namespace}: create the \
             operation next to its proxy",
            op.spec.proxy
        ));
        status.finished_at = Some(Time(crate::now_seconds()));
        write_status(&ops, &op.name_any(), &status).await?;
        return Ok(Action::await_change());
    };
    let mut run = Run {
        op: &op,
        ctx: &ctx,
        proxies,
        kcp,
        status: before.clone(),
    };
    let action = if op.spec.redrive.is_some() {
        redrive_flow::step(&mut run).await?
    } else {
        offsets_flow::step(&mut run, &ops).await?
    };
    if run.status != before {
        write_status(&ops, &run.name(), &run.status).await?;
        if let Some(phase) = run.status.phase.filter(|p| p.finished()) {
            let message = run.status.message.clone().unwrap_or_default();
            info!(operation = %run.name(), ?phase, %message, "Operation finished");
        }
    }
    Ok(action)
}

/// Writes the whole status (a merge patch of every field it has).
pub(super) async fn write_status(
    ops: &Api<KafkaConsumerProxyOperation>,
    name: &str,
    status: &OperationStatus,
) -> Result<(), Error> {
    ops.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .map(drop)
    .map_err(Error::WriteStatus)
}

/// What to do after a failed reconcile: an API error, retried with backoff.
pub fn error_policy(
    op: Arc<KafkaConsumerProxyOperation>,
    err: &Error,
    _ctx: Arc<OpContext>,
) -> Action {
    warn!(operation = %op.name_any(), error = %error_chain(err), "Operation reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
