//! What the cluster tests share: the install of the shipped manifests, a fresh test namespace,
//! the operator run in-process with its metrics reachable, `kubectl`, and waiting.
//!
//! Every test works in its own fixed namespace (`kcp-e2e-*`), which [`fresh_namespace`] creates
//! when missing and empties of `KafkaConsumerProxy` resources (and so, by garbage collection,
//! of their children) left by an earlier failed run. Namespaces are not deleted here:
//! `.ci/cluster-tests` deletes them when every test passed.

#![allow(clippy::unwrap_used)]

pub mod admission;
pub mod no_op;

use std::{future::Future, net::SocketAddr, path::PathBuf, process::Output, time::Duration};

use clap::Parser;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace, Pod},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kcp_crds::KafkaConsumerProxy;
use kcp_operator::{
    cli::Args,
    reconcile::build::managed_by_selector,
    run,
    telemetry::{self, LogFormat},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::OnceCell,
};

/// Field manager of what the tests write.
pub const MANAGER: &str = "kcp-e2e";
/// Where `kubectl apply -k manifests/` installs the operator.
pub const OPERATOR_NAMESPACE: &str = "kcp-system";
pub const OPERATOR_DEPLOYMENT: &str = "kcp-operator";
/// The sidecar image of the in-process operator. It need not exist: no test waits for a pod
/// to run (pods that must be ready are avoided with `replicas: 0`).
pub const SIDECAR_IMAGE: &str = "ghcr.io/kafka-consumer-proxy/kcp-sidecar:e2e";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("a cluster to talk to: set KUBECONFIG (see CONTRIBUTING.md)")
}

/// Polls `check` every 500 ms until it returns `Some`, for at most 2 minutes (a slow CI
/// cluster pulls, schedules and terminates pods at its own pace).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..240 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Runs `kubectl ARGS` (the current KUBECONFIG context) and returns what it did.
pub async fn kubectl(args: &[&str]) -> Output {
    tokio::process::Command::new("kubectl")
        .args(args)
        .current_dir(repo())
        .output()
        .await
        .expect("kubectl runs (the cluster tests need it on PATH)")
}

/// stdout of `kubectl ARGS`; panics with its output when it fails.
pub async fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args).await;
    assert!(
        out.status.success(),
        "kubectl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply -k manifests/`: the CRD and the operator, as a user installs them.
pub async fn apply_manifests() -> String {
    kubectl_ok(&["apply", "-k", "manifests/"]).await
}

/// Scales the installed operator to 0 and waits until its pods are gone. The shipped
/// kustomization installs an operator that watches every namespace; the tests run their own
/// operator in-process, and two operators would fight over the same resources.
pub async fn stop_installed_operator(client: &Client) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    deployments
        .patch(
            OPERATOR_DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let selector =
        "app.kubernetes.io/name=kafka-consumer-proxy-operator,app.kubernetes.io/component=operator";
    eventually("the installed operator's pods to be gone", || async {
        let d = deployments.get(OPERATOR_DEPLOYMENT).await.unwrap();
        let s = d.status.as_ref()?;
        let scaled_down =
            s.observed_generation >= d.metadata.generation && s.replicas.unwrap_or(0) == 0;
        let left = pods
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        (scaled_down && left.items.is_empty()).then_some(())
    })
    .await;
}

/// Waits until the API server serves both CRDs.
pub async fn crd_established(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "kafkaconsumerproxies.kafkaproxy.io",
        "kafkaconsumerproxyoperations.kafkaproxy.io",
    ] {
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("the CRD {name} to be established within 60 s"))
        .unwrap();
    }
}

/// Installs the shipped manifests once per test run, then stops the installed operator.
pub async fn install(client: &Client) {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            apply_manifests().await;
            stop_installed_operator(client).await;
            crd_established(client).await;
        })
        .await;
}

/// Makes `namespace` exist with no `KafkaConsumerProxy` (nor their children) in it.
pub async fn fresh_namespace(client: &Client, namespace: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(
        "an earlier run's namespace to finish terminating",
        || async {
            let ns = namespaces.get_opt(namespace).await.unwrap();
            ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_none())
                .then_some(())
        },
    )
    .await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {namespace}: {e}"),
    }
    delete_all_kcps(client, namespace).await;
}

/// Deletes every `KafkaConsumerProxy` in `namespace` and waits until they and their
/// Deployments and ConfigMaps are gone. (The children's owner references do not block the
/// owner's deletion, so foreground deletion would not wait for them; a new resource of the same
/// name would meet the old children and report `OwnershipConflict`.)
pub async fn delete_all_kcps(client: &Client, namespace: &str) {
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    kcps.delete_collection(&DeleteParams::background(), &ListParams::default())
        .await
        .unwrap();
    let children = ListParams::default().labels(&managed_by_selector());
    eventually("the resources and their children to be deleted", || async {
        let gone = kcps
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            && deployments.list(&children).await.unwrap().items.is_empty()
            && config_maps.list(&children).await.unwrap().items.is_empty();
        gone.then_some(())
    })
    .await;
}

/// A resource whose app is nginx on port 8080 and whose brokers do not exist.
pub fn example(namespace: &str, name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "kafkaproxy.io/v1alpha1",
        "kind": "KafkaConsumerProxy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "kafka": {"bootstrapServers": "kafka.invalid:9092", "topics": ["orders"]},
            "endpoint": {"port": 8080, "path": "/events"},
            "replicas": replicas,
            "template": {"spec": {"containers": [{
                "name": "app", "image": "nginxinc/nginx-unprivileged:1.27",
                "ports": [{"containerPort": 8080}]
            }]}}
        }
    })
}

/// Server-side applies `object` as the tests' field manager.
pub async fn apply(kcps: &Api<KafkaConsumerProxy>, object: &Value) -> KafkaConsumerProxy {
    let name = object["metadata"]["name"].as_str().unwrap();
    kcps.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap()
}

/// The condition `type_` of `kcp`'s status, if any.
pub fn condition(kcp: &KafkaConsumerProxy, type_: &str) -> Option<Condition> {
    kcp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Reconciles started, and finished (the count of the reconcile-duration histogram, observed
/// after the status write).
pub const RECONCILES_STARTED: &str = "kcp_operator_reconciles_total";
pub const RECONCILES_DONE: &str = "kcp_operator_reconcile_duration_seconds_count";
/// Writes sent to the API server (children, status, Events), by resource.
pub const API_WRITES: &str = "kcp_operator_api_writes_total";

/// The sum of every sample of metric `name` (all label sets) in Prometheus text, 0 when absent.
pub fn sum_samples(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The operator, run in-process for one namespace, without leader election. Stops on drop.
pub struct Operator {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: SocketAddr,
}

impl Operator {
    /// Starts the operator on `namespace`, refreshing lag (and resyncing) every `lag_refresh`.
    pub async fn start(namespace: &str, lag_refresh: &str) -> Self {
        // A port that was free a moment ago, so the test can read the operator's metrics.
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let args = Args::try_parse_from([
            "kcp-operator",
            "--namespace",
            namespace,
            "--leader-election=false",
            &format!("--metrics-addr={metrics}"),
            &format!("--lag-refresh-interval={lag_refresh}"),
            "--lag-probe-timeout=3s",
            &format!("--sidecar-image={SIDECAR_IMAGE}"),
        ])
        .unwrap();
        // Its log, on stderr, only when asked for: `RUST_LOG=kcp_operator=debug .ci/cluster-tests`.
        if std::env::var_os("RUST_LOG").is_some() {
            let _already_installed = telemetry::init(LogFormat::Plain);
        }
        let task = tokio::spawn(async move {
            let result = run::run(args).await;
            if let Err(e) = &result {
                eprintln!("the in-process operator stopped: {e:#}");
            }
            result
        });
        let operator = Self { task, metrics };
        eventually("the operator to serve its metrics", || async {
            operator.try_metrics().await
        })
        .await;
        operator
    }

    async fn try_metrics(&self) -> Option<String> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        Some(body.to_owned())
    }

    /// The sum of every sample of metric `name` (all label sets), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        assert!(
            !self.task.is_finished(),
            "the in-process operator stopped (its error is printed above)"
        );
        let text = self
            .try_metrics()
            .await
            .expect("the operator serves /metrics");
        sum_samples(&text, name)
    }

    /// Reconciles that have finished (the count of the reconcile-duration histogram).
    pub async fn reconciles_done(&self) -> f64 {
        self.metric(RECONCILES_DONE).await
    }

    /// Waits until no reconcile is running and returns how many have finished.
    pub async fn idle(&self) -> f64 {
        eventually("the operator to finish its reconciles", || async {
            let started = self.metric(RECONCILES_STARTED).await;
            let done = self.reconciles_done().await;
            (started == done).then_some(done)
        })
        .await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The metrics the tests wait on and count are the operator's, under these names.
#[test]
fn the_metrics_the_tests_read_exist_and_add_up() {
    use kcp_operator::metrics::Metrics;
    let mut registry = prometheus_client::registry::Registry::default();
    let m = Metrics::register(&mut registry);
    m.reconciles.inc();
    m.reconciles.inc();
    m.reconcile_duration.observe(0.2);
    m.api_write("deployments");
    m.api_write("configmaps");
    m.api_write("configmaps");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert_eq!(sum_samples(&text, RECONCILES_STARTED), 2.0, "{text}");
    assert_eq!(sum_samples(&text, RECONCILES_DONE), 1.0, "{text}");
    assert_eq!(sum_samples(&text, API_WRITES), 3.0, "{text}");
    assert_eq!(sum_samples(&text, "kcp_operator_nothing"), 0.0);
}
