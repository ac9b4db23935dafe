//! Apply: the only code that writes a resource's objects: its children (server-side apply),
//! its status (server-side apply on the status subresource) and its Events.
//!
//! Every apply uses the one field manager [`crate::FIELD_MANAGER`] with `force`, so fields we
//! own that someone changed by hand are taken back. Children carry a controller owner
//! reference (set by `build`), so Kubernetes garbage-collects them with the resource.
//!
//! No-op detection: a child is written only when `drift::covers` says the observed object
//! lacks something we want (see `drift` for why one subset check catches both our changes and
//! hand edits). The status is written only when it differs from the previous one (the caller
//! compares). Each write sent is counted in `kcp_operator_api_writes_total`.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::ObjectReference;
use kcp_crds::{KafkaConsumerProxy, KafkaConsumerProxyStatus};
use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use tracing::{debug, warn};

use super::drift;
use crate::{Error, FIELD_MANAGER, metrics::Metrics};

/// `resource` label values of `kcp_operator_api_writes_total`.
pub const DEPLOYMENTS: &str = "deployments";
pub const CONFIGMAPS: &str = "configmaps";
pub const STATUS: &str = "kafkaconsumerproxies/status";
pub const EVENTS: &str = "events";

/// Longest Event note the API server accepts.
const MAX_NOTE_BYTES: usize = 1024;

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Makes the child `desired` exist as desired: returns `observed` untouched when it already
/// holds every desired field, else server-side applies `desired` and returns the result.
pub async fn ensure<K>(
    api: &Api<K>,
    desired: &K,
    observed: Option<K>,
    metrics: &Metrics,
    resource: &'static str,
) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let kind = kind_name(resource);
    let name = desired.meta().name.clone().unwrap_or_default();
    if let Some(observed) = observed {
        let o = serde_json::to_value(&observed).expect("invariant: objects serialize");
        let d = serde_json::to_value(desired).expect("invariant: objects serialize");
        if drift::covers(&o, &d) {
            debug!(kind, %name, "Child up to date, not applying");
            return Ok(observed);
        }
    }
    metrics.api_write(resource);
    api.patch(&name, &apply_params(), &Patch::Apply(desired))
        .await
        .map_err(|e| Error::from_apply(kind, &name, e))
}

fn kind_name(resource: &str) -> &'static str {
    match resource {
        DEPLOYMENTS => "Deployment",
        CONFIGMAPS => "ConfigMap",
        _ => "object",
    }
}

/// Server-side applies `status` to the status subresource.
pub async fn write_status(
    api: &Api<KafkaConsumerProxy>,
    name: &str,
    status: &KafkaConsumerProxyStatus,
    metrics: &Metrics,
) -> Result<(), Error> {
    let patch = json!({
        "apiVersion": KafkaConsumerProxy::api_version(&()),
        "kind": KafkaConsumerProxy::kind(&()),
        "status": status,
    });
    metrics.api_write(STATUS);
    api.patch_status(name, &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(Error::WriteStatus)?;
    Ok(())
}

/// Publishes a Warning Event on the resource. Best-effort: a failure is logged, not returned,
/// so it never blocks the reconcile.
pub async fn warn_event(
    recorder: &Recorder,
    regarding: &ObjectReference,
    reason: &str,
    note: &str,
    metrics: &Metrics,
) {
    let mut note = note.to_owned();
    if note.len() > MAX_NOTE_BYTES {
        let mut cut = MAX_NOTE_BYTES - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    metrics.api_write(EVENTS);
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        warn!(error = %e, reason, "Could not publish Event");
    }
}
