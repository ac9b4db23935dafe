//! Apply: the only code that writes a resource's objects: its children (server-side apply),
//! its status (server-side apply on the status subresource) and its Events.
//!
//! Every apply uses the one field manager [`crate::FIELD_MANAGER`] with `force`, so fields we
//! own that someone changed by hand are taken back. Children carry a controller owner
//! reference (set by `build`), so Kubernetes garbage-collects them with the resource.
//!
//! Children are read and applied as JSON (`DynamicObject`), not as the pinned k8s-openapi
//! types: the Deployment may carry pod fields those types do not know (see `template`), which
//! a typed read would drop, so drift would see them missing on every resync. Children are
//! applied with `fieldValidation=Strict`; a field the API server's schema lacks is refused
//! whatever the directive (server-side apply converts the object to its typed form first),
//! and `Error::from_apply` makes that refusal the user's to fix.
//!
//! No-op detection: a child is written only when `drift::covers` says the observed object
//! lacks something we want (see `drift` for why one subset check catches both our changes and
//! hand edits). The status is written only when it differs from the previous one (the caller
//! compares). Each write sent is counted in `kcp_operator_api_writes_total`.

use k8s_openapi::api::core::v1::ObjectReference;
use kcp_crds::{KafkaConsumerProxy, KafkaConsumerProxyStatus};
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
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

/// Children: also strict, so the API server refuses what it does not know instead of dropping it.
fn child_apply_params() -> PatchParams {
    apply_params().validation_strict()
}

/// The namespaced API of child kind `K`, read and written as JSON.
pub fn child_api<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

/// Makes the child `desired` (its apply body) exist as desired: returns `observed` untouched
/// when it already holds every desired field, else server-side applies `desired` and returns
/// the result.
pub async fn ensure(
    api: &Api<DynamicObject>,
    desired: &Value,
    observed: Option<DynamicObject>,
    metrics: &Metrics,
    resource: &'static str,
) -> Result<DynamicObject, Error> {
    let kind = kind_name(resource);
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    if let Some(observed) = observed {
        let o = serde_json::to_value(&observed).expect("invariant: objects serialize");
        if drift::covers(&o, desired) {
            debug!(kind, %name, "Child up to date, not applying");
            return Ok(observed);
        }
    }
    metrics.api_write(resource);
    api.patch(name, &child_apply_params(), &Patch::Apply(desired))
        .await
        .map_err(|e| Error::from_apply(kind, name, e))
}

/// A child read as JSON, as its typed form (fields the pinned types lack are dropped).
pub fn typed<K: DeserializeOwned>(
    object: &DynamicObject,
    resource: &'static str,
) -> Result<K, Error> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| Error::ReadChild {
            kind: kind_name(resource),
            name: object.metadata.name.clone().unwrap_or_default(),
            source: kube::Error::SerdeError(e),
        })
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
