//! What a real API server admits: the refusal table (`crds/tests/cases/refusals.yaml`, format
//! in its README), the shipped examples, and a server-side dry-run create as `kubectl apply`
//! sends it (`fieldValidation=Strict`, so an unknown field is an error, not a warning).
//!
//! The table and the JSON-pointer edits are checked here without a cluster too, so a broken
//! case fails in plain `cargo test` instead of on the first cluster run.

use std::{collections::BTreeSet, path::PathBuf};

use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, TypeMeta},
    discovery::{self, Scope},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MANAGER, repo};

pub const REFUSALS: &str = "crds/tests/cases/refusals.yaml";

/// `crds/tests/cases/refusals.yaml`.
#[derive(Debug, Deserialize)]
pub struct Table {
    /// A resource the API server admits.
    pub good: Value,
    pub cases: Vec<Case>,
}

/// One change to `good` that the API server must refuse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// JSON pointer -> value; null removes the field. In file order.
    #[serde(default)]
    pub set: serde_yaml::Mapping,
    /// The path the API server names in its error.
    pub field: String,
    /// A piece of the message, when given.
    #[serde(default)]
    pub message: Option<String>,
    /// The run-time check this refusal used to be (documentation only).
    #[serde(default)]
    pub moved_from: Option<String>,
}

/// Reads the table as it is now (it is edited while the tests are written).
pub fn refusals() -> Table {
    let path = repo().join(REFUSALS);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{REFUSALS}: {e}"))
}

impl Case {
    /// `good` with this case's changes.
    pub fn object(&self, good: &Value) -> Result<Value, String> {
        let mut object = good.clone();
        for (pointer, value) in &self.set {
            let pointer = pointer
                .as_str()
                .ok_or_else(|| format!("set key {pointer:?} is not a string"))?;
            let value: Value = serde_json::to_value(value).map_err(|e| e.to_string())?;
            set_pointer(&mut object, pointer, (!value.is_null()).then_some(value))?;
        }
        Ok(object)
    }
}

/// Sets (or with `None` removes) the value at JSON pointer `pointer` (RFC 6901), creating
/// missing objects on the way. Removing what is not there is an error: the case would not
/// change anything.
pub fn set_pointer(doc: &mut Value, pointer: &str, value: Option<Value>) -> Result<(), String> {
    let tokens: Vec<String> = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("{pointer:?}: a JSON pointer starts with '/'"))?
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = tokens
        .split_last()
        .expect("invariant: split yields one token");
    let mut here = doc;
    for token in parents {
        here = match here {
            Value::Object(map) => {
                if value.is_none() && !map.contains_key(token) {
                    return Err(format!("{pointer:?}: nothing to remove at {token:?}"));
                }
                map.entry(token.clone()).or_insert_with(|| json!({}))
            }
            Value::Array(items) => {
                let i = index(token, items.len(), pointer)?;
                items
                    .get_mut(i)
                    .ok_or_else(|| format!("{pointer:?}: no item {i}"))?
            }
            other => return Err(format!("{pointer:?}: {token:?} is inside {other}")),
        };
    }
    match (here, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(last.clone(), v);
        }
        (Value::Object(map), None) => {
            map.remove(last)
                .ok_or_else(|| format!("{pointer:?}: nothing to remove"))?;
        }
        (Value::Array(items), Some(v)) if last == "-" => items.push(v),
        (Value::Array(items), Some(v)) => {
            let i = index(last, items.len(), pointer)?;
            *items
                .get_mut(i)
                .ok_or_else(|| format!("{pointer:?}: no item {i}"))? = v;
        }
        (Value::Array(items), None) => {
            let i = index(last, items.len(), pointer)?;
            if i >= items.len() {
                return Err(format!("{pointer:?}: no item {i} to remove"));
            }
            items.remove(i);
        }
        (other, _) => return Err(format!("{pointer:?}: cannot set a field of {other}")),
    }
    Ok(())
}

fn index(token: &str, len: usize, pointer: &str) -> Result<usize, String> {
    token
        .parse::<usize>()
        .map_err(|_| format!("{pointer:?}: {token:?} is not an index of a list of {len}"))
}

/// Every document of `manifests/examples/*.yaml`, with the file it came from.
pub fn examples() -> Vec<(String, Value)> {
    let dir: PathBuf = repo().join("manifests/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap();
            if !value.is_null() {
                out.push((name.clone(), value));
            }
        }
    }
    out
}

/// Creates `object` in `namespace` as a server-side dry run, the way `kubectl apply` creates a
/// new object (strict field validation). `Ok` means the API server would admit it.
pub async fn dry_run_create(
    client: &Client,
    namespace: &str,
    object: &Value,
) -> Result<(), kube::Error> {
    let mut object = object.clone();
    object["metadata"]["namespace"] = json!(namespace);
    let types = TypeMeta {
        api_version: object["apiVersion"].as_str().unwrap_or_default().to_owned(),
        kind: object["kind"].as_str().unwrap_or_default().to_owned(),
    };
    let gvk = GroupVersionKind::try_from(&types).expect("apiVersion and kind");
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let url = format!(
        "{}?dryRun=All&fieldValidation=Strict&fieldManager={MANAGER}",
        api.resource_url()
    );
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&object).expect("JSON serializes"))
        .expect("a valid request");
    client.request::<Value>(request).await.map(|_| ())
}

/// Why a refusal does not match the case; `None` when it does.
pub fn refusal_mismatch(case: &Case, result: &Result<(), kube::Error>) -> Option<String> {
    let status = match result {
        Ok(()) => return Some("admitted".to_owned()),
        Err(kube::Error::Api(status)) => status,
        Err(e) => return Some(format!("not an API refusal: {e}")),
    };
    let mut wrong = Vec::new();
    if status.code != 422 && status.code != 400 {
        wrong.push(format!("HTTP {} (want 422 or 400)", status.code));
    }
    if !status.message.contains(&case.field) {
        wrong.push(format!("does not name {:?}", case.field));
    }
    if let Some(m) = &case.message
        && !status.message.contains(m.as_str())
    {
        wrong.push(format!("does not say {m:?}"));
    }
    (!wrong.is_empty())
        .then(|| format!("{}; the server said: {}", wrong.join(", "), status.message))
}

#[test]
fn json_pointer_edits_set_create_and_remove() {
    let mut doc = json!({"spec": {"kafka": {"topics": ["a", "b"]}, "endpoint": {"port": 8080}}});
    set_pointer(&mut doc, "/spec/kafka/topics/1", Some(json!("c"))).unwrap();
    set_pointer(&mut doc, "/spec/kafka/topics/-", Some(json!("d"))).unwrap();
    set_pointer(&mut doc, "/spec/endpoint/port", None).unwrap();
    set_pointer(
        &mut doc,
        "/spec/kafka/auth/sasl",
        Some(json!({"mechanism": "PLAIN"})),
    )
    .unwrap();
    set_pointer(&mut doc, "/spec/kafka/clientConfig/a~1b", Some(json!("1"))).unwrap();
    assert_eq!(
        doc,
        json!({"spec": {
            "kafka": {"topics": ["a", "c", "d"], "auth": {"sasl": {"mechanism": "PLAIN"}},
                      "clientConfig": {"a/b": "1"}},
            "endpoint": {}
        }})
    );
    assert!(set_pointer(&mut doc, "/spec/endpoint/port", None).is_err());
    assert!(set_pointer(&mut doc, "/spec/nothing/here", None).is_err());
    assert!(set_pointer(&mut doc, "spec/replicas", Some(json!(1))).is_err());
    assert!(set_pointer(&mut doc, "/spec/kafka/topics/9", Some(json!("x"))).is_err());
    assert!(set_pointer(&mut doc, "/spec/kafka/topics/x", Some(json!("x"))).is_err());
}

/// The table the cluster test reads is well formed: unique names, and every case changes the
/// `good` resource in a way that applies. (`field` may be empty: a rule on the whole object
/// names no field.)
#[test]
fn refusal_table_parses_and_every_case_changes_the_good_resource() {
    let table = refusals();
    assert_eq!(table.good["kind"], "KafkaConsumerProxy", "{REFUSALS}: good");
    assert!(!table.cases.is_empty(), "{REFUSALS}: no cases");
    let mut names = BTreeSet::new();
    let mut broken = Vec::new();
    for case in &table.cases {
        if !names.insert(case.name.as_str()) {
            broken.push(format!("{}: name used twice", case.name));
        }
        match case.object(&table.good) {
            Ok(object) if object == table.good => {
                broken.push(format!("{}: set changes nothing", case.name));
            }
            Ok(_) => {}
            Err(e) => broken.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(broken.is_empty(), "{REFUSALS}:\n{}", broken.join("\n"));
}

fn case(field: &str, message: Option<&str>) -> Case {
    Case {
        name: "test".into(),
        set: serde_yaml::Mapping::new(),
        field: field.into(),
        message: message.map(str::to_owned),
        moved_from: None,
    }
}

fn refusal(code: u16, message: &str) -> Result<(), kube::Error> {
    Err(kube::Error::Api(
        kube::core::Status::failure(message, "Invalid")
            .with_code(code)
            .boxed(),
    ))
}

#[test]
fn a_case_passes_only_on_a_refusal_that_names_its_field_and_message() {
    let topics = case("spec.kafka.topics", None);
    let invalid = "KafkaConsumerProxy.kafkaproxy.io \"orders\" is invalid: spec.kafka.topics: \
                   Invalid value: 0: spec.kafka.topics in body should have at least 1 items";
    assert_eq!(refusal_mismatch(&topics, &refusal(422, invalid)), None);
    let unknown = "strict decoding error: unknown field \"spec.kafka.topicz\"";
    assert_eq!(
        refusal_mismatch(&case("spec.kafka.topicz", None), &refusal(400, unknown)),
        None
    );
    assert!(refusal_mismatch(&topics, &Ok(())).is_some_and(|w| w.contains("admitted")));
    assert!(refusal_mismatch(&topics, &refusal(409, invalid)).is_some_and(|w| w.contains("409")));
    assert!(refusal_mismatch(&case("spec.endpoint", None), &refusal(422, invalid)).is_some());
    let with_message = case("spec.kafka.topics", Some("at most 64"));
    assert!(
        refusal_mismatch(&with_message, &refusal(422, invalid))
            .is_some_and(|w| w.contains("at most 64") && w.contains(invalid))
    );
}

/// The dry run is the request `kubectl apply` sends for a new object, in the test namespace.
#[tokio::test]
async fn dry_run_create_sends_a_strict_dry_run_in_the_test_namespace() {
    use http::{Request, Response};
    use http_body_util::BodyExt;
    use kube::client::Body;

    let respond = |code: u16, body: Value| {
        Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
            .expect("a response")
    };
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let (discovery, send) = handle.next_request().await.expect("a discovery request");
        assert_eq!(discovery.uri().path(), "/apis/kafkaproxy.io/v1alpha1");
        send.send_response(respond(
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1",
                   "groupVersion": "kafkaproxy.io/v1alpha1",
                   "resources": [{"name": "kafkaconsumerproxies", "namespaced": true,
                                  "kind": "KafkaConsumerProxy", "singularName": "kafkaconsumerproxy",
                                  "verbs": ["create", "get", "list", "patch"]}]}),
        ));
        let (create, send) = handle.next_request().await.expect("a create request");
        let method = create.method().clone();
        let uri = create.uri().to_string();
        let body = create.into_body().collect().await.expect("body").to_bytes();
        send.send_response(respond(
            422,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                   "reason": "Invalid", "message": "spec.kafka.topics: Required value"}),
        ));
        (
            method,
            uri,
            serde_json::from_slice::<Value>(&body).expect("JSON body"),
        )
    });
    let client = Client::new(service, "default");
    let object = json!({"apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxy",
                        "metadata": {"name": "orders", "namespace": "default"}, "spec": {}});
    let result = dry_run_create(&client, "kcp-e2e-test", &object).await;
    let (method, uri, body) = server.await.expect("the fake server ran");
    assert_eq!(method, http::Method::POST);
    assert_eq!(
        uri,
        "/apis/kafkaproxy.io/v1alpha1/namespaces/kcp-e2e-test/kafkaconsumerproxies?dryRun=All&fieldValidation=Strict&fieldManager=kcp-e2e"
    );
    assert_eq!(body["metadata"]["namespace"], "kcp-e2e-test");
    assert_eq!(
        refusal_mismatch(&case("spec.kafka.topics", None), &result),
        None
    );
}
