//! The Kubernetes side against a mocked API server (`tower-test` + `kube::Client::new`): which
//! requests each command sends, and what the user reads when the proxy or a CRD is missing,
//! when a name is taken, and while `--wait` follows an operation.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use clap::Parser;
use http::{Request, Response};
use k8s_openapi::jiff::Timestamp;
use kube::{Client, client::Body};
use kubectl_kcp::{
    Error,
    cli::Cli,
    kube::Kube,
    objects::{Action, operation, plan},
    run::execute,
};
use serde_json::{Value, json};

const PROXIES: &str = "/apis/kafkaproxy.io/v1alpha1/namespaces/shop/kafkaconsumerproxies";
const PROXY: &str = "/apis/kafkaproxy.io/v1alpha1/namespaces/shop/kafkaconsumerproxies/orders";
const OPERATIONS: &str =
    "/apis/kafkaproxy.io/v1alpha1/namespaces/shop/kafkaconsumerproxyoperations";

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Option<Value>,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// A client whose requests `answer` answers with a status code and a body; every request is
/// recorded.
fn fake(answer: impl Fn(&Call) -> (u16, String) + Send + Sync + 'static) -> (Kube, Calls) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let call = Call {
                method: request.method().to_string(),
                path: request.uri().path().to_owned(),
                query: request.uri().query().unwrap_or_default().to_owned(),
                content_type: request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_owned()),
                body: serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap())
                    .ok(),
            };
            let (code, body) = answer(&call);
            recorded.lock().unwrap().push(call);
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(body.into_bytes()))
                    .unwrap(),
            );
        }
    });
    (Kube::new(Client::new(service, "default"), "shop"), calls)
}

fn not_found(what: &str) -> (u16, String) {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404,
    });
    (404, status.to_string())
}

fn ok(v: Value) -> (u16, String) {
    (200, v.to_string())
}

fn proxy(paused: bool) -> Value {
    let mut p: Value = serde_json::from_str(include_str!("fixtures/proxy.json")).unwrap();
    p["spec"]["paused"] = json!(paused);
    p
}

fn now() -> Timestamp {
    "2026-03-01T10:15:30Z".parse().unwrap()
}

fn action(args: &[&str]) -> Action {
    let cli =
        Cli::try_parse_from(std::iter::once("kubectl-kcp").chain(args.iter().copied())).unwrap();
    plan(&cli.command, now()).unwrap()
}

/// Runs `args` against `kube`: the exit code or the error's message, and what was printed.
async fn run(kube: &Kube, args: &[&str]) -> (Result<u8, String>, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = execute(kube, action(args), now(), &mut out, &mut err)
        .await
        .map_err(|e: Error| e.to_string());
    (result, String::from_utf8(out).unwrap())
}

fn sent(calls: &Calls) -> Vec<(String, String)> {
    calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.method.clone(), c.path.clone()))
        .collect()
}

#[tokio::test]
async fn a_missing_proxy_and_a_missing_crd_are_told_apart() {
    let (kube, calls) = fake(|c| match c.path.as_str() {
        PROXY => not_found("kafkaconsumerproxies.kafkaproxy.io \"orders\""),
        _ => ok(
            json!({ "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyList",
                        "metadata": { "resourceVersion": "1" }, "items": [] }),
        ),
    });
    let (result, _) = run(&kube, &["status", "orders"]).await;
    assert_eq!(
        result.unwrap_err(),
        "KafkaConsumerProxy \"orders\" not found in namespace \"shop\"; list them with `kubectl get kcp -n shop`, or pass -n NAMESPACE"
    );
    assert_eq!(
        sent(&calls),
        [("GET".into(), PROXY.into()), ("GET".into(), PROXIES.into())]
    );

    let (kube, _) = fake(|_| not_found("the server could not find the requested resource"));
    let (result, _) = run(&kube, &["pause", "orders"]).await;
    assert_eq!(
        result.unwrap_err(),
        "the CustomResourceDefinition kafkaconsumerproxies.kafkaproxy.io is not installed in this cluster; install the CRDs with `kubectl apply -f manifests/crds/`"
    );
}

#[tokio::test]
async fn pause_sends_a_merge_patch_with_the_field_manager() {
    let (kube, calls) = fake(|c| match c.method.as_str() {
        "GET" => ok(proxy(false)),
        _ => ok(proxy(true)),
    });
    let (result, out) = run(&kube, &["pause", "orders"]).await;
    assert_eq!(result, Ok(0));
    assert_eq!(
        sent(&calls),
        [("GET".into(), PROXY.into()), ("PATCH".into(), PROXY.into())]
    );
    let patch = calls.lock().unwrap()[1].clone();
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert!(
        patch.query.contains("fieldManager=kubectl-kcp"),
        "{}",
        patch.query
    );
    assert_eq!(patch.body, Some(json!({ "spec": { "paused": true } })));
    assert!(
        out.contains("Paused KafkaConsumerProxy shop/orders"),
        "{out}"
    );
    assert!(out.contains("within about a minute"), "{out}");
}

#[tokio::test]
async fn resume_of_a_running_proxy_sends_nothing() {
    let (kube, calls) = fake(|_| ok(proxy(false)));
    let (result, out) = run(&kube, &["resume", "orders"]).await;
    assert_eq!(result, Ok(0));
    assert_eq!(sent(&calls), [("GET".into(), PROXY.into())]);
    assert!(out.contains("is not paused"), "{out}");
}

fn op_with(name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyOperation",
        "metadata": { "name": name, "namespace": "shop", "resourceVersion": "7" },
        "spec": { "proxy": "orders", "rewind": { "toEarliest": true } },
        "status": status,
    })
}

/// An API server where the operation goes Pending -> Running -> `end`.
fn operation_server(end: Value) -> (Kube, Calls) {
    const NAME: &str = "orders-rewind-20260301-101530";
    fake(move |c| match (c.method.as_str(), c.path.as_str()) {
        ("GET", PROXY) => ok(proxy(false)),
        ("POST", OPERATIONS) => (201, c.body.clone().unwrap().to_string()),
        ("GET", OPERATIONS) if c.query.contains("watch=true") => {
            let events = [
                json!({ "phase": "Running", "message": "stopping the pods" }),
                json!({ "phase": "Running", "message": "stopping the pods" }),
                end.clone(),
            ];
            let lines: Vec<String> = events
                .iter()
                .map(|s| {
                    json!({ "type": "MODIFIED", "object": op_with(NAME, s.clone()) }).to_string()
                })
                .collect();
            (200, lines.join("\n") + "\n")
        }
        ("GET", OPERATIONS) => ok(json!({
            "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyOperationList",
            "metadata": { "resourceVersion": "7" },
            "items": [op_with(NAME, json!({ "phase": "Pending", "message": "waiting for another operation" }))],
        })),
        _ => not_found("path"),
    })
}

#[tokio::test]
async fn rewind_creates_the_operation_and_waits_until_it_succeeded() {
    let (kube, calls) = operation_server(json!({
        "phase": "Succeeded", "message": "moved 1 partition",
        "moves": [{ "topic": "orders", "partition": 0, "from": 1000, "to": 0 }],
    }));
    let (result, out) = run(&kube, &["rewind", "orders", "--to-earliest", "--wait"]).await;
    assert_eq!(result, Ok(0), "{out}");

    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("GET", PROXY)
    );
    assert_eq!(
        (calls[1].method.as_str(), calls[1].path.as_str()),
        ("POST", OPERATIONS)
    );
    assert!(
        calls[1].query.contains("fieldManager=kubectl-kcp"),
        "{}",
        calls[1].query
    );
    let Action::Operate { op, .. } = action(&["rewind", "orders", "--to-earliest"]) else {
        panic!("not an operation")
    };
    assert_eq!(
        calls[1].body,
        Some(serde_json::to_value(operation("shop", "orders", &op, now())).unwrap())
    );
    assert!(
        calls[2..].iter().all(|c| c
            .query
            .contains("metadata.name%3Dorders-rewind-20260301-101530")),
        "follows only its operation: {calls:?}"
    );

    let phases: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once("Z ").map(|(_, rest)| rest))
        .collect();
    assert_eq!(
        phases,
        [
            "Pending: waiting for another operation",
            "Running: stopping the pods",
            "Succeeded: moved 1 partition",
        ],
        "one line per change:\n{out}"
    );
    assert!(
        out.contains("Created KafkaConsumerProxyOperation shop/orders-rewind-20260301-101530"),
        "{out}"
    );
    assert!(
        out.contains("orders/0: committed offset 1000 -> 0"),
        "{out}"
    );
}

#[tokio::test]
async fn a_failed_operation_exits_1() {
    let (kube, _) =
        operation_server(json!({ "phase": "Failed", "message": "the proxy was deleted" }));
    let (result, out) = run(&kube, &["rewind", "orders", "--to-earliest", "--wait"]).await;
    assert_eq!(result, Ok(1), "{out}");
    assert!(out.contains("Failed: the proxy was deleted"), "{out}");
}

#[tokio::test]
async fn a_taken_name_and_a_missing_operation_crd() {
    let (kube, _) = fake(|c| match c.method.as_str() {
        "GET" => ok(proxy(false)),
        _ => (
            409,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "AlreadyExists", "message": "exists", "code": 409 })
            .to_string(),
        ),
    });
    let (result, _) = run(
        &kube,
        &[
            "skip",
            "orders",
            "--topic",
            "orders",
            "--partition",
            "0",
            "--offset",
            "1000",
        ],
    )
    .await;
    assert_eq!(
        result.unwrap_err(),
        "an operation named \"orders-skip-20260301-101530\" already exists in namespace \"shop\" (one per proxy and kind per second); run the command again"
    );

    let (kube, _) = fake(|c| match c.method.as_str() {
        "GET" => ok(proxy(false)),
        _ => not_found("the server could not find the requested resource"),
    });
    let (result, _) = run(&kube, &["redrive", "orders"]).await;
    assert!(result.unwrap_err().starts_with(
        "the CustomResourceDefinition kafkaconsumerproxyoperations.kafkaproxy.io is not installed"
    ));
}

#[tokio::test]
async fn a_topic_that_is_not_the_proxys_is_refused_before_anything_is_created() {
    let (kube, calls) = fake(|_| ok(proxy(false)));
    let (result, _) = run(
        &kube,
        &["rewind", "orders", "--to-earliest", "--topic", "order"],
    )
    .await;
    assert_eq!(
        result.unwrap_err(),
        "topic \"order\" is not one of orders's topics (orders, payments)"
    );
    assert_eq!(sent(&calls), [("GET".into(), PROXY.into())], "no POST");
}

#[tokio::test]
async fn status_without_the_operation_crd_still_shows_the_proxy() {
    let (kube, _) = fake(|c| match c.path.as_str() {
        PROXY => ok(proxy(false)),
        _ => not_found("the server could not find the requested resource"),
    });
    let (result, out) = run(&kube, &["status", "orders"]).await;
    assert_eq!(result, Ok(0));
    assert!(out.contains("2868 records"), "{out}");
    assert!(
        out.contains("kafkaconsumerproxyoperations.kafkaproxy.io is not installed"),
        "{out}"
    );
}
