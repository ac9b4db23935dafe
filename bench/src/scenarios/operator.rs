//! Operator scenario: the operator's resident memory with 100 resources, and the API writes of
//! a no-op reconcile, read from its own metrics. Needs a cluster (`KUBECONFIG`) with the CRD
//! installed; without one it reports "not measured (no cluster)", and any failure becomes a
//! "not measured: <why>" line, never a panic.
//!
//! Steps: connect with the kubeconfig; check the CRD (`kcp_operator::run::check_crd`); create
//! a scratch namespace `kcp-bench-<pid>`; start the operator as a child watching only it
//! ([`crate::operator`]); create [`RESOURCES`] resources ([`resources`]: no pods, Kafka on a
//! closed port); wait until each one's `status.observedGeneration` is its generation and the
//! operator is quiet; read `VmRSS`/`VmHWM`; then annotate every resource (a change of metadata
//! only, which the controller's watch turns into one reconcile each, with the lag still
//! memoized) and count the `kcp_operator_api_writes_total` those reconciles add. Always: stop
//! the child, delete the namespace.
//!
//! The pure parts ([`resources`], [`Counters`]) are unit-tested; the cluster part needs one.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kcp_crds::{KafkaConsumerProxy, KafkaConsumerProxySpec};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::DeserializeGuard,
};
use serde::Serialize;
use serde_json::json;

use crate::{operator::OperatorProc, prom, scenarios::Verdict};

/// Resources the operator reconciles (the figure).
pub const RESOURCES: usize = 100;

/// Where the resources' Kafka is: a closed port on the operator's host, so each lag probe fails
/// fast (`KafkaReachable=False`) and nothing else is needed in the cluster.
pub const UNREACHABLE_KAFKA: &str = "127.0.0.1:9";

/// The annotation the bench sets to trigger a reconcile without changing the spec.
pub const TOUCH_ANNOTATION: &str = "kcp-bench/touch";

/// The labels of the operator's pods as `manifests/operator` installs them.
pub const INSTALLED_OPERATOR_PODS: &str =
    "app.kubernetes.io/name=kafka-consumer-proxy-operator,app.kubernetes.io/component=operator";

/// The label on the scratch namespace (`kubectl delete ns -l app.kubernetes.io/created-by=kcp-bench`).
pub const CREATED_BY: (&str, &str) = ("app.kubernetes.io/created-by", "kcp-bench");

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);
const QUIET_FOR: Duration = Duration::from_secs(3);
const QUIET_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on everything between starting the operator and stopping it, so cleanup always runs.
const DRIVE_TIMEOUT: Duration = Duration::from_secs(480);

/// The scenario's outcome, as it appears in the report.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum OperatorResult {
    /// `--scenario` did not ask for it.
    NotSelected,
    /// `KUBECONFIG` is not set.
    NoCluster,
    /// A cluster was given but the scenario could not run; `reason` says why and what to do.
    NotMeasured {
        reason: String,
    },
    Measured(OperatorFigures),
}

impl OperatorResult {
    /// Whether a cluster was given and the scenario failed (the report keeps the scratch
    /// directory, with the operator's log, for diagnosis).
    pub fn is_error(&self) -> bool {
        matches!(self, Self::NotMeasured { .. })
    }
}

/// What the operator scenario measured.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorFigures {
    /// The scratch namespace (deleted at the end).
    pub namespace: String,
    /// The operator's flags.
    pub operator_flags: Vec<String>,
    pub resources: usize,
    /// From the first create until every resource's status observed its generation.
    pub seconds_to_reconcile_all: f64,
    /// Reconciles and API writes from start until the operator was quiet (informative).
    pub initial_reconciles: u64,
    pub initial_api_writes: u64,
    /// `VmRSS` once all resources are reconciled and the operator is quiet.
    pub rss_mib: f64,
    /// `VmHWM`: the peak so far, including the initial reconciles.
    pub peak_rss_mib: f64,
    /// Reconciles finished after annotating every resource.
    pub noop_reconciles: u64,
    /// `kcp_operator_api_writes_total` added by them, summed over `resource`.
    pub noop_api_writes: u64,
    /// The same by label set (`resource="..."`), only those that moved.
    pub noop_api_writes_by_resource: BTreeMap<String, u64>,
    pub api_writes_per_noop_reconcile: f64,
    /// Target 0.
    pub verdict_writes: Verdict,
    /// Anything that makes the figures less clean (the operator never went quiet, cleanup
    /// failed).
    pub notes: Vec<String>,
}

/// The `n` resources of a run, in `namespace`: distinct names, no pods (`replicas: 0`), a
/// remote endpoint (no pod template needed), Kafka on [`UNREACHABLE_KAFKA`]. Built from the
/// CRD's own types, so serde fills every default the operator would see.
pub fn resources(namespace: &str, n: usize) -> anyhow::Result<Vec<KafkaConsumerProxy>> {
    (0..n)
        .map(|i| {
            let spec: KafkaConsumerProxySpec = serde_json::from_value(json!({
                "kafka": {
                    "bootstrapServers": UNREACHABLE_KAFKA,
                    "topics": [format!("kcp-bench-{i:03}")],
                },
                "endpoint": { "url": "http://127.0.0.1:9/records" },
                "replicas": 0,
            }))
            .context("bench resource spec")?;
            let mut kcp = KafkaConsumerProxy::new(&format!("bench-{i:03}"), spec);
            kcp.metadata.namespace = Some(namespace.to_owned());
            Ok(kcp)
        })
        .collect()
}

/// The operator's counters at one moment, from its `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// `kcp_operator_reconciles_total`: reconciles started.
    pub started: u64,
    /// `kcp_operator_reconcile_duration_seconds_count`: reconciles finished.
    pub finished: u64,
    /// `kcp_operator_api_writes_total` by label set.
    pub writes: BTreeMap<String, u64>,
}

impl Counters {
    pub fn parse(text: &str) -> Result<Self, prom::PromError> {
        Ok(Self {
            started: prom::counter_sum(text, "kcp_operator_reconciles_total")? as u64,
            finished: prom::counter_sum(text, "kcp_operator_reconcile_duration_seconds_count")?
                as u64,
            writes: prom::counter_samples(text, "kcp_operator_api_writes_total")?
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect(),
        })
    }

    pub fn total_writes(&self) -> u64 {
        self.writes.values().sum()
    }

    /// No reconcile in flight.
    pub fn idle(&self) -> bool {
        self.started == self.finished
    }

    /// Writes added since `before`, by label set; only those that moved.
    pub fn writes_since(&self, before: &Self) -> BTreeMap<String, u64> {
        self.writes
            .iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.writes.get(k).copied().unwrap_or(0));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// Runs the scenario with `KUBECONFIG` = `kubeconfig`; the operator child is `exe`, its log goes
/// to `workdir`. Never fails: errors become [`OperatorResult::NotMeasured`].
pub async fn run(kubeconfig: Option<OsString>, exe: &Path, workdir: &Path) -> OperatorResult {
    let Some(kubeconfig) = kubeconfig else {
        return OperatorResult::NoCluster;
    };
    match measure(&kubeconfig, exe, workdir).await {
        Ok(f) => OperatorResult::Measured(f),
        Err(e) => OperatorResult::NotMeasured {
            reason: format!("{e:#}"),
        },
    }
}

/// A client for the current context of the kubeconfig file(s) in `kubeconfig` (a `KUBECONFIG`
/// value: paths joined like `PATH`), with a short connect timeout so a dead cluster fails fast.
pub async fn connect(kubeconfig: &OsString) -> anyhow::Result<(Client, String)> {
    let paths: Vec<_> = std::env::split_paths(kubeconfig)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    if paths.is_empty() {
        bail!("KUBECONFIG is set but names no file");
    }
    let mut merged = Kubeconfig::default();
    for p in &paths {
        let next = Kubeconfig::read_from(p)
            .with_context(|| format!("reading the kubeconfig {}", p.display()))?;
        merged = merged.merge(next).context("merging the KUBECONFIG files")?;
    }
    let mut config = Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default())
        .await
        .context("loading the current context of KUBECONFIG")?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(Duration::from_secs(30));
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).context("building a Kubernetes client")?;
    Ok((client, server))
}

async fn measure(
    kubeconfig: &OsString,
    exe: &Path,
    workdir: &Path,
) -> anyhow::Result<OperatorFigures> {
    let (client, server) = connect(kubeconfig).await?;
    let all: Api<DeserializeGuard<KafkaConsumerProxy>> = Api::all(client.clone());
    match tokio::time::timeout(CHECK_TIMEOUT, kcp_operator::run::check_crd(&all)).await {
        Err(_) => bail!("the cluster at {server} did not answer within {CHECK_TIMEOUT:?}"),
        Ok(Err(e)) => {
            // A missing CRD says how to install it (`kubectl apply -k manifests/`); anything else
            // (refused, TLS, auth, RBAC) keeps the client's own words.
            return Err(e.context(format!(
                "checking for the KafkaConsumerProxy CRD on the cluster at {server}"
            )));
        }
        Ok(Ok(())) => {}
    }

    // An operator installed in the cluster watches every namespace: it would reconcile the
    // bench's resources too, and each of its status writes would trigger a reconcile in ours.
    let mut notes = Vec::new();
    let pods: Api<Pod> = Api::all(client.clone());
    match pods
        .list(&ListParams::default().labels(INSTALLED_OPERATOR_PODS))
        .await
    {
        Ok(list) => {
            let running: Vec<String> = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
                .collect();
            if !running.is_empty() {
                bail!(
                    "an operator already runs in the cluster at {server} (pods {}); it would reconcile the bench's resources too. \
                     Scale it to zero (`kubectl -n kcp-system scale deployment/kcp-operator --replicas=0`) or install only the CRD \
                     (`kubectl apply -k manifests/crds/`), then run again",
                    running.join(", ")
                );
            }
        }
        Err(e) => notes.push(format!(
            "could not check for an operator installed in the cluster ({e}); one running would distort these figures"
        )),
    }

    let namespace = format!("kcp-bench-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            labels: Some([(CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating the scratch namespace {namespace}"))?;
    eprintln!("  operator: scratch namespace {namespace} on {server}");

    let result = with_namespace(&client, kubeconfig, &namespace, exe, workdir).await;

    // Cleanup on every path. The child is already stopped: deleting the namespace under a
    // running operator would only make it log.
    let deleted = tokio::time::timeout(
        CHECK_TIMEOUT,
        namespaces.delete(&namespace, &DeleteParams::background()),
    )
    .await;
    let cleanup_error = match deleted {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("deleting namespace {namespace}: {e}")),
        Err(_) => Some(format!(
            "deleting namespace {namespace}: no answer within {CHECK_TIMEOUT:?}"
        )),
    };
    match (result, cleanup_error) {
        (Ok(mut f), cleanup_error) => {
            notes.append(&mut f.notes);
            notes.extend(cleanup_error.map(|e| format!("{e}; delete it by hand")));
            f.notes = notes;
            Ok(f)
        }
        (Err(e), Some(c)) => Err(e.context(format!("{c}; delete it by hand"))),
        (Err(e), None) => Err(e),
    }
}

/// Starts the operator, measures, stops it (on every path).
async fn with_namespace(
    client: &Client,
    kubeconfig: &OsString,
    namespace: &str,
    exe: &Path,
    workdir: &Path,
) -> anyhow::Result<OperatorFigures> {
    let mut op = OperatorProc::spawn(exe, kubeconfig, namespace, workdir)?;
    eprintln!(
        "  operator: child pid {} (log {})",
        op.pid(),
        op.log().display()
    );
    let result = tokio::time::timeout(DRIVE_TIMEOUT, drive(client, &mut op, namespace))
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the scenario did not finish within {DRIVE_TIMEOUT:?} (operator log: {})",
                op.log().display()
            ))
        });
    let stopped = op.stop(Duration::from_secs(10)).await;
    match (result, stopped) {
        (Ok(mut f), Err(e)) => {
            f.notes.push(format!("{e:#}"));
            Ok(f)
        }
        (r, _) => r,
    }
}

async fn drive(
    client: &Client,
    op: &mut OperatorProc,
    namespace: &str,
) -> anyhow::Result<OperatorFigures> {
    op.wait_ready(READY_TIMEOUT).await?;
    let flags = crate::operator::child_args(
        namespace,
        "127.0.0.1:0".parse().expect("invariant: literal address"),
    )
    .into_iter()
    .filter(|f| !f.starts_with("--metrics-addr"))
    .collect();
    let api: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    for kcp in resources(namespace, RESOURCES)? {
        api.create(&PostParams::default(), &kcp)
            .await
            .with_context(|| {
                format!("creating KafkaConsumerProxy {namespace}/{}", kcp.name_any())
            })?;
    }
    eprintln!("  operator: created {RESOURCES} resources; waiting for their status");
    wait_observed(&api, op).await?;
    let seconds_to_reconcile_all = started.elapsed().as_secs_f64();

    let mut notes = Vec::new();
    let initial = match wait_quiet(op, None).await? {
        (c, None) => c,
        (c, Some(note)) => {
            notes.push(format!("before the no-op round: {note}"));
            c
        }
    };
    let mem = op
        .sample()
        .context("reading /proc/<pid>/status of the operator child")?;

    let touch = PatchParams::default();
    let patch = json!({ "metadata": { "annotations": { TOUCH_ANNOTATION: "1" } } });
    for kcp in api
        .list(&ListParams::default())
        .await
        .context("listing the resources")?
        .items
    {
        api.patch(&kcp.name_any(), &touch, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("annotating {namespace}/{}", kcp.name_any()))?;
    }
    eprintln!("  operator: annotated {RESOURCES} resources; waiting for their reconciles");
    let (after, note) = wait_quiet(op, Some(initial.finished + RESOURCES as u64)).await?;
    if let Some(note) = note {
        notes.push(format!("no-op round: {note}"));
    }
    let noop_reconciles = after.finished.saturating_sub(initial.finished);
    let by_resource = after.writes_since(&initial);
    let noop_api_writes: u64 = by_resource.values().sum();
    let per = noop_api_writes as f64 / noop_reconciles.max(1) as f64;
    Ok(OperatorFigures {
        namespace: namespace.to_owned(),
        operator_flags: flags,
        resources: RESOURCES,
        seconds_to_reconcile_all,
        initial_reconciles: initial.finished,
        initial_api_writes: initial.total_writes(),
        rss_mib: mem.rss_kib as f64 / 1024.0,
        peak_rss_mib: mem.hwm_kib as f64 / 1024.0,
        noop_reconciles,
        noop_api_writes,
        noop_api_writes_by_resource: by_resource,
        api_writes_per_noop_reconcile: per,
        verdict_writes: if noop_reconciles >= RESOURCES as u64 {
            Verdict::at_most(Some(per), 0.0)
        } else {
            Verdict::NotMeasured
        },
        notes,
    })
}

/// Waits until every resource's status observed its generation.
async fn wait_observed(api: &Api<KafkaConsumerProxy>, op: &mut OperatorProc) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        op.check_alive()?;
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing the resources")?;
        let done = list
            .items
            .iter()
            .filter(|k| {
                k.metadata.generation.is_some()
                    && k.status.as_ref().and_then(|s| s.observed_generation)
                        == k.metadata.generation
            })
            .count();
        if done >= RESOURCES {
            return Ok(());
        }
        if started.elapsed() > RECONCILE_TIMEOUT {
            bail!(
                "after {RECONCILE_TIMEOUT:?} only {done} of {RESOURCES} resources had a status for their generation; operator log {}: {}",
                op.log().display(),
                op.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the operator has finished at least `min_finished` reconciles (when given), none
/// is in flight, and its counters did not move for [`QUIET_FOR`]. After [`QUIET_TIMEOUT`] it
/// returns the counters anyway with a note (an operator that never goes quiet is itself a
/// finding), unless `min_finished` was not reached, which is an error.
async fn wait_quiet(
    op: &mut OperatorProc,
    min_finished: Option<u64>,
) -> anyhow::Result<(Counters, Option<String>)> {
    let started = Instant::now();
    let mut last: Option<(Counters, Instant)> = None;
    loop {
        op.check_alive()?;
        let text = op.scrape().await?;
        let now = Counters::parse(&text).context("reading the operator's /metrics")?;
        let enough = min_finished.is_none_or(|m| now.finished >= m);
        let since = match &last {
            Some((c, at)) if *c == now => *at,
            _ => Instant::now(),
        };
        if enough && now.idle() && since.elapsed() >= QUIET_FOR {
            return Ok((now, None));
        }
        if started.elapsed() > QUIET_TIMEOUT {
            if !enough {
                bail!(
                    "the operator finished {} reconciles, not {} within {QUIET_TIMEOUT:?} (log: {})",
                    now.finished,
                    min_finished.unwrap_or_default(),
                    op.log().display()
                );
            }
            let note = format!(
                "the operator was still busy after {QUIET_TIMEOUT:?} ({} reconciles started, {} finished, {} API writes so far)",
                now.started,
                now.finished,
                now.total_writes()
            );
            return Ok((now, Some(note)));
        }
        last = Some((now, since));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The CRD's admission as `crds/tests/schema.rs` checks it: the same file, so both agree.
#[cfg(test)]
#[path = "../../../crds/tests/admission/mod.rs"]
mod admission;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// What the API server would say to `obj`: empty when admitted.
    fn admit(obj: &Value) -> Vec<String> {
        admission::ApiServer::new().admit(obj, None)
    }

    #[test]
    fn builds_distinct_resources_the_api_server_admits() {
        let all = resources("kcp-bench-1", RESOURCES).expect("builds");
        assert_eq!(all.len(), RESOURCES);
        let names: BTreeSet<String> = all.iter().map(|k| k.name_any()).collect();
        assert_eq!(names.len(), RESOURCES, "names are distinct");
        for kcp in [&all[0], &all[RESOURCES - 1]] {
            let v = serde_json::to_value(kcp).expect("serializes");
            assert_eq!(v["apiVersion"], "kafkaproxy.io/v1alpha1");
            assert_eq!(v["kind"], "KafkaConsumerProxy");
            assert_eq!(v["metadata"]["namespace"], "kcp-bench-1");
            assert_eq!(v["spec"]["kafka"]["bootstrapServers"], UNREACHABLE_KAFKA);
            assert_eq!(v["spec"]["replicas"], 0);
            assert!(v.get("status").is_none_or(Value::is_null));
            let errors = admit(&v);
            assert!(errors.is_empty(), "{}: {errors:?}", kcp.name_any());
        }
        // The check above can refuse: a resource without topics is not admitted.
        let mut bad = serde_json::to_value(&all[0]).expect("serializes");
        bad["spec"]["kafka"]["topics"] = json!([]);
        assert!(!admit(&bad).is_empty());
    }

    #[test]
    fn every_resource_passes_the_operators_own_validation() {
        for kcp in resources("ns", 3).expect("builds") {
            let mut kcp = kcp;
            kcp.metadata.uid = Some("uid".into());
            kcp_operator::reconcile::validate::validate(&kcp).expect("operator accepts it");
        }
    }

    const BEFORE: &str = "\
# TYPE kcp_operator_reconciles counter
kcp_operator_reconciles_total 230
# TYPE kcp_operator_reconcile_duration_seconds histogram
kcp_operator_reconcile_duration_seconds_count 230
# TYPE kcp_operator_api_writes counter
kcp_operator_api_writes_total{resource=\"configmaps\"} 100
kcp_operator_api_writes_total{resource=\"kafkaconsumerproxies/status\"} 230
# EOF
";

    #[test]
    fn counters_give_the_writes_a_round_added() {
        let before = Counters::parse(BEFORE).expect("parses");
        assert_eq!((before.started, before.finished), (230, 230));
        assert!(before.idle());
        assert_eq!(before.total_writes(), 330);
        let text = BEFORE
            .replace("reconciles_total 230", "reconciles_total 331")
            .replace("seconds_count 230", "seconds_count 330")
            .replace("status\"} 230", "status\"} 233")
            + "kcp_operator_api_writes_total{resource=\"events\"} 1\n";
        let after = Counters::parse(&text).expect("parses");
        assert!(!after.idle(), "one reconcile still running");
        let d = after.writes_since(&before);
        assert_eq!(
            d,
            BTreeMap::from([
                ("resource=\"events\"".to_owned(), 1),
                ("resource=\"kafkaconsumerproxies/status\"".to_owned(), 3),
            ])
        );
        // A process without the operator's metrics is an error, not zero writes.
        assert!(Counters::parse("# EOF\n").is_err());
    }

    /// A kubeconfig naming a closed port: the scenario reports why, within seconds.
    #[tokio::test]
    async fn a_dead_cluster_is_reported_not_measured_quickly() {
        let dir = std::env::temp_dir().join(format!("kcp-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: dead\n\
             clusters: [{name: dead, cluster: {server: 'https://127.0.0.1:1'}}]\n\
             users: [{name: u, user: {token: t}}]\n\
             contexts: [{name: dead, context: {cluster: dead, user: u}}]\n",
        )
        .expect("write kubeconfig");
        let started = Instant::now();
        let result = run(Some(path.clone().into()), Path::new("/nonexistent"), &dir).await;
        let took = started.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            OperatorResult::NotMeasured { reason } => {
                assert!(reason.contains("https://127.0.0.1:1"), "{reason}");
                assert!(reason.contains("KafkaConsumerProxy CRD"), "{reason}");
            }
            other => panic!("expected not measured, got {other:?}"),
        }
        assert!(took < Duration::from_secs(10), "took {took:?}");

        let missing = run(
            Some("/nonexistent/kubeconfig".into()),
            Path::new("/nonexistent"),
            &dir,
        )
        .await;
        match missing {
            OperatorResult::NotMeasured { reason } => {
                assert!(reason.contains("/nonexistent/kubeconfig"), "{reason}")
            }
            other => panic!("expected not measured, got {other:?}"),
        }
        assert!(matches!(
            run(None, Path::new("/nonexistent"), &dir).await,
            OperatorResult::NoCluster
        ));
    }
}
