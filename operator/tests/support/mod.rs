//! A small in-memory Kubernetes API server behind `tower_test::mock::pair`, for reconcile tests.
//!
//! It stores objects by URL path, answers GET (404 when absent), server-side apply PATCH (the
//! applied object replaces the stored one, plus what a real server adds: uid, resourceVersion,
//! generation, some defaults, canonical quantities), status PATCH, and Event POST. Every
//! request is recorded so tests can assert exactly which calls were made. Failures can be
//! injected per (method, path).

#![allow(dead_code, clippy::unwrap_used)]

pub mod shape;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use http::{Request, Response};
use kcp_crds::KafkaConsumerProxy;
use kcp_crds::v1alpha1::{DeadLetterStatus, PartitionLag};
use kcp_operator::{
    Error,
    lag::{Credentials, LagError, LagReader, LagSnapshot, LagSource, LagTarget, ReadLimits},
    metrics::Metrics,
    reconcile::{Context, build::BuildOptions, reconcile},
};
use kube::{
    Client,
    client::Body,
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
    },
};
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub raw_body: Vec<u8>,
    pub body: Option<Value>,
}

impl Call {
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }

    /// `(group, resource, verb)` in RBAC terms.
    pub fn rbac(&self) -> (String, String, String) {
        let parts: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest.to_vec()),
            ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest.to_vec()),
            _ => panic!("unexpected path {}", self.path),
        };
        let rest = match rest.as_slice() {
            ["namespaces", _ns, rest @ ..] => rest.to_vec(),
            other => other.to_vec(),
        };
        let (resource, named) = match rest.as_slice() {
            [resource] => ((*resource).to_owned(), false),
            [resource, _name] => ((*resource).to_owned(), true),
            [resource, _name, sub] => (format!("{resource}/{sub}"), true),
            _ => panic!("unexpected path {}", self.path),
        };
        let verb = match (self.method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) if self.query.get("watch").is_some_and(|w| w == "true") => "watch",
            ("GET", false) => "list",
            ("PATCH", _) => "patch",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("DELETE", _) => "delete",
            (m, _) => panic!("unexpected method {m}"),
        };
        (group, resource, verb.to_owned())
    }
}

/// The in-memory API server.
#[derive(Default)]
pub struct FakeApi {
    objects: Mutex<HashMap<String, Value>>,
    calls: Mutex<Vec<Call>>,
    failures: Mutex<HashMap<(String, String), (u16, String)>>,
    version: Mutex<u64>,
    /// Pod and container fields this server's schema does not declare.
    undeclared: Mutex<Vec<String>>,
}

pub const KCP_PATH: &str =
    "/apis/kafkaproxy.io/v1alpha1/namespaces/shop/kafkaconsumerproxies/orders";
pub const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/orders";
pub const CONFIGMAP_PATH: &str = "/api/v1/namespaces/shop/configmaps/orders-kcp-config";
pub const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

pub fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/shop/secrets/{name}")
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

impl FakeApi {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A client whose every request this fake answers.
    pub fn client(self: &Arc<Self>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                send.send_response(fake.handle(request).await);
            }
        });
        Client::new(service, "default")
    }

    pub fn put(&self, path: &str, mut object: Value) {
        self.stamp(&mut object);
        self.objects.lock().unwrap().insert(path.to_owned(), object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        self.objects.lock().unwrap().remove(path);
    }

    /// Changes a stored object as a person with kubectl would (new resourceVersion).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut objects = self.objects.lock().unwrap();
        let object = objects.get_mut(path).expect("object to edit exists");
        f(object);
        let mut v = self.version.lock().unwrap();
        *v += 1;
        object["metadata"]["resourceVersion"] = json!(v.to_string());
    }

    /// Makes the next requests with this method and path fail with `code`.
    pub fn fail(&self, method: &str, path: &str, code: u16, reason: &str) {
        self.failures
            .lock()
            .unwrap()
            .insert((method.into(), path.into()), (code, reason.into()));
    }

    /// Makes this server's pod schema lack `field` (a pod-spec or container key): an applied
    /// Deployment holding it is refused the way a real API server refuses it.
    pub fn undeclare(&self, field: &str) {
        self.undeclared.lock().unwrap().push(field.to_owned());
    }

    pub fn clear_failures(&self) {
        self.failures.lock().unwrap().clear();
    }

    /// Calls recorded since the last `take_calls`.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// What the Deployment controller would report once every pod is up.
    pub fn mark_deployment_available(&self, path: &str) {
        self.edit(path, |d| {
            let replicas = d["spec"]["replicas"].clone();
            let generation = d["metadata"]["generation"].clone();
            d["status"] = json!({
                "observedGeneration": generation,
                "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": replicas, "availableReplicas": replicas
            });
        });
    }

    fn stamp(&self, object: &mut Value) {
        let mut v = self.version.lock().unwrap();
        *v += 1;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(v.to_string());
        if meta.get("uid").is_none() {
            meta["uid"] = json!(format!("uid-{v}"));
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let query: BTreeMap<String, String> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let raw_body = request.into_body().collect_bytes().await.unwrap().to_vec();
        let body = serde_json::from_slice::<Value>(&raw_body).ok();
        self.calls.lock().unwrap().push(Call {
            method: method.clone(),
            path: path.clone(),
            query,
            content_type: content_type.clone(),
            raw_body,
            body: body.clone(),
        });

        if let Some((code, reason)) = self
            .failures
            .lock()
            .unwrap()
            .get(&(method.clone(), path.clone()))
            .cloned()
        {
            return respond(code, &status_json(code, &reason, "injected failure"));
        }

        match (method.as_str(), body) {
            ("GET", _) => match self.get(&path) {
                Some(o) => respond(200, &o),
                None => respond(404, &status_json(404, "NotFound", "not found")),
            },
            ("PATCH", Some(patch)) if path.ends_with("/status") => {
                let object_path = path.trim_end_matches("/status");
                let mut objects = self.objects.lock().unwrap();
                let Some(object) = objects.get_mut(object_path) else {
                    return respond(404, &status_json(404, "NotFound", "not found"));
                };
                object["status"] = patch["status"].clone();
                let mut v = self.version.lock().unwrap();
                *v += 1;
                object["metadata"]["resourceVersion"] = json!(v.to_string());
                respond(200, object)
            }
            ("PATCH", Some(patch))
                if content_type.as_deref() == Some("application/merge-patch+json") =>
            {
                let Some(mut object) = self.get(&path) else {
                    return respond(404, &status_json(404, "NotFound", "not found"));
                };
                let expected = &patch["metadata"]["resourceVersion"];
                if !expected.is_null() && *expected != object["metadata"]["resourceVersion"] {
                    return respond(
                        409,
                        &status_json(409, "Conflict", "the object has been modified"),
                    );
                }
                merge_patch(&mut object, &patch);
                self.put(&path, object);
                respond(200, &self.get(&path).unwrap())
            }
            ("PATCH", Some(applied)) => {
                if let Some(refusal) = self.refusal(&applied) {
                    return respond(500, &refusal);
                }
                let previous = self.get(&path);
                let mut object = applied;
                server_side_additions(&mut object, previous.as_ref());
                self.put(&path, object.clone());
                respond(200, &self.get(&path).unwrap_or(object))
            }
            ("POST", Some(created)) => {
                let name = created["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let object_path = format!("{path}/{name}");
                if self.get(&object_path).is_some() {
                    return respond(409, &status_json(409, "AlreadyExists", "already exists"));
                }
                self.put(&object_path, created);
                respond(201, &self.get(&object_path).unwrap())
            }
            ("PUT", Some(replacement)) => {
                let Some(stored) = self.get(&path) else {
                    return respond(404, &status_json(404, "NotFound", "not found"));
                };
                if replacement["metadata"]["resourceVersion"]
                    != stored["metadata"]["resourceVersion"]
                {
                    return respond(
                        409,
                        &status_json(409, "Conflict", "the object has been modified"),
                    );
                }
                self.put(&path, replacement);
                respond(200, &self.get(&path).unwrap())
            }
            _ => respond(
                405,
                &status_json(405, "MethodNotAllowed", "not supported by the fake"),
            ),
        }
    }
}

impl FakeApi {
    /// The response of a real API server (v1.33; kubernetes/kubernetes#122480, #139253) to a
    /// server-side apply holding fields its schema does not declare: structured-merge-diff's
    /// conversion error, which is not a `metav1.Status` error and so comes back as a 500 with
    /// no reason, for any `fieldValidation`.
    fn refusal(&self, applied: &Value) -> Option<Value> {
        if applied["kind"] != "Deployment" {
            return None;
        }
        let undeclared = self.undeclared.lock().unwrap().clone();
        let pod = &applied["spec"]["template"]["spec"];
        let mut errors = Vec::new();
        for key in pod.as_object().into_iter().flat_map(|m| m.keys()) {
            if undeclared.contains(key) {
                errors.push(format!(
                    ".spec.template.spec.{key}: field not declared in schema"
                ));
            }
        }
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_array().into_iter().flatten() {
                for key in c.as_object().into_iter().flat_map(|m| m.keys()) {
                    if undeclared.contains(key) {
                        errors.push(format!(
                            ".spec.template.spec.{list}[name=\"{}\"].{key}: field not declared in schema",
                            c["name"].as_str().unwrap_or_default()
                        ));
                    }
                }
            }
        }
        let detail = match errors.len() {
            0 => return None,
            1 => errors.remove(0),
            _ => format!("errors:\n  {}", errors.join("\n  ")),
        };
        Some(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!(
                "failed to create typed patch object ({}/{}; apps/v1, Kind=Deployment): {detail}",
                applied["metadata"]["namespace"].as_str().unwrap_or_default(),
                applied["metadata"]["name"].as_str().unwrap_or_default(),
            ),
            "code": 500
        }))
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in fields {
        if v.is_null() {
            target.as_object_mut().unwrap().remove(k);
        } else {
            merge_patch(&mut target[k.as_str()], v);
        }
    }
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// What a real API server adds to an applied object: kept uid and status, generation bumped
/// on spec change, and the shape it stores ([`shape::server_shape`]: defaults, dropped zero
/// values, canonical quantities).
fn server_side_additions(object: &mut Value, previous: Option<&Value>) {
    shape::server_shape(object);
    if let Some(prev) = previous {
        object["metadata"]["uid"] = prev["metadata"]["uid"].clone();
        if let Some(status) = prev.get("status") {
            object["status"] = status.clone();
        }
    }
    if object["kind"] == "Deployment" {
        let generation = match previous {
            Some(p) if p["spec"] == object["spec"] => p["metadata"]["generation"].clone(),
            Some(p) => json!(p["metadata"]["generation"].as_i64().unwrap_or(0) + 1),
            None => json!(1),
        };
        object["metadata"]["generation"] = generation;
    }
}

/// Lag figures the stub reports, or the error it fails with.
pub struct StubLag {
    pub result: Mutex<Result<LagSnapshot, String>>,
    pub probes: Mutex<Vec<(LagTarget, Credentials)>>,
}

impl StubLag {
    pub fn new(total: i64) -> Arc<Self> {
        Arc::new(Self {
            result: Mutex::new(Ok(snapshot(total))),
            probes: Mutex::new(Vec::new()),
        })
    }
}

pub fn snapshot(total: i64) -> LagSnapshot {
    LagSnapshot {
        partitions: vec![PartitionLag {
            topic: "orders".into(),
            partition: 0,
            committed_offset: Some(100),
            high_watermark: 100 + total,
            lag: total,
            lag_seconds: Some(total * 10),
        }],
        partition_count: 1,
        total,
        dead_letter: DeadLetterStatus {
            topics: vec!["orders-dlq".into()],
            count: 3,
            ..DeadLetterStatus::default()
        },
        seconds: Some(total * 10),
        ..LagSnapshot::default()
    }
}

impl LagSource for StubLagHandle {
    fn read(
        &self,
        target: LagTarget,
        credentials: Credentials,
        _deadline: std::time::Instant,
    ) -> BoxFuture<'static, Result<LagSnapshot, LagError>> {
        self.0.probes.lock().unwrap().push((target, credentials));
        let result = self.0.result.lock().unwrap().clone();
        async move { result.map_err(|_| LagError::Timeout(Duration::from_secs(15))) }.boxed()
    }
}

/// `Arc<StubLag>` as a `LagSource`.
pub struct StubLagHandle(pub Arc<StubLag>);

/// The resync period the tests expect on success.
pub const REFRESH: Duration = Duration::from_secs(30);

/// A reconcile context wired to the fake and the stub. With `refresh` zero every reconcile
/// asks for a lag read (which the next reconcile sees).
pub fn context(
    fake: &Arc<FakeApi>,
    lag: &Arc<StubLag>,
    refresh: Duration,
) -> (Arc<Context>, Arc<Metrics>) {
    let client = fake.client();
    let metrics = Arc::new(Metrics::default());
    let ctx = Context::new(
        client.clone(),
        Recorder::new(
            client,
            Reporter {
                controller: "kafka-consumer-proxy-operator".into(),
                instance: Some("test".into()),
            },
        ),
        metrics.clone(),
        LagReader::new(
            Arc::new(StubLagHandle(lag.clone())),
            refresh,
            ReadLimits::default(),
            metrics.clone(),
        )
        .0,
        BuildOptions {
            default_sidecar_image: "kcp-sidecar:test".into(),
        },
        REFRESH,
    );
    (Arc::new(ctx), metrics)
}

/// What the controller does for a resource it has not read lag for yet: reconcile (the reader
/// starts a read, the status has no figures yet), let the read end, and reconcile again as the
/// reader then asks (the status gets the figures). Later reconciles of a test then see no read
/// still running.
pub async fn reconcile_and_read_lag(fake: &FakeApi, ctx: &Arc<Context>) -> Result<Action, Error> {
    let current = || -> Arc<DeserializeGuard<KafkaConsumerProxy>> {
        Arc::new(serde_json::from_value(fake.get(KCP_PATH).unwrap()).unwrap())
    };
    reconcile(current(), ctx.clone()).await?;
    ctx.lag.idle().await;
    reconcile(current(), ctx.clone()).await
}
