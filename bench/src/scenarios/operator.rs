//! Operator scenario: the operator with [`RESOURCES`] resources (1,000; `--operator-resources`
//! for a small cluster): its resident memory, the time to reconcile them all, the API writes of
//! a no-op reconcile, and the time to notice a spec change under that load. Needs a cluster
//! (`KUBECONFIG`) with the CRD installed; without one it reports "not measured (no cluster)",
//! and any failure becomes a "not measured: <why>" line, never a panic.
//!
//! Steps: connect with the kubeconfig; check the CRD (`kcp_operator::run::check_crd`); create
//! a scratch namespace `kcp-bench-<pid>`; start the operator as a child watching only it
//! ([`crate::operator`]); create the resources, [`limits::WRITE_CONCURRENCY`] at once
//! ([`objects::resources`]: no pods, Kafka on a closed port); wait until each one's
//! `status.observedGeneration` is its generation (the time to reconcile all, from the first
//! create) and the operator is quiet; read `VmRSS`; annotate every resource (a change of
//! metadata only, which the controller's watch turns into one reconcile each, with the lag
//! still memoized) and count the `kcp_operator_api_writes_total` those reconciles add; once
//! quiet again, change one resource's `spec.sidecar.image` and time until its status observed
//! the new generation, and until its Deployment runs the new image; read `VmHWM` (the peak of
//! the whole run). Always: stop the child, delete the namespace. Each wait's bound grows with
//! the count ([`limits::Budget`]).
//!
//! The pure parts ([`objects`], [`counters`], [`limits`], [`bounded`], [`figures`]) are
//! unit-tested; the cluster part (here and in `wait`) needs one.

pub mod bounded;
pub mod counters;
pub mod figures;
pub mod limits;
pub mod objects;
mod wait;

use std::{
    ffi::OsString,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kcp_crds::KafkaConsumerProxy;
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::DeserializeGuard,
};

pub use counters::Counters;
pub use figures::{OperatorFigures, OperatorResult, SpecChange};
use limits::{Budget, MEMORY_LIMIT_MIB, RECONCILE_ALL_LIMIT, WRITE_CONCURRENCY};
use objects::{resource_name, resources, touch_patch};

use crate::{operator::OperatorProc, scenarios::Verdict};

/// Resources the operator reconciles by default (the figure); `--operator-resources`
/// (`KCP_BENCH_OPERATOR_RESOURCES`) sets another count, `--quick` uses 100.
pub const RESOURCES: usize = 1000;

/// The labels of the operator's pods as `manifests/operator` installs them.
pub const INSTALLED_OPERATOR_PODS: &str =
    "app.kubernetes.io/name=kafka-consumer-proxy-operator,app.kubernetes.io/component=operator";

/// The label on the scratch namespace (`kubectl delete ns -l app.kubernetes.io/created-by=kcp-bench`).
pub const CREATED_BY: (&str, &str) = ("app.kubernetes.io/created-by", "kcp-bench");

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the scenario with `KUBECONFIG` = `kubeconfig` and `resources` resources; the operator
/// child is `exe`, its log goes to `workdir`. Never fails: errors become
/// [`OperatorResult::NotMeasured`].
pub async fn run(
    kubeconfig: Option<OsString>,
    resources: usize,
    exe: &Path,
    workdir: &Path,
) -> OperatorResult {
    let Some(kubeconfig) = kubeconfig else {
        return OperatorResult::NoCluster;
    };
    match measure(&kubeconfig, resources, exe, workdir).await {
        Ok(f) => OperatorResult::Measured(Box::new(f)),
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
    n: usize,
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

    let result = with_namespace(&client, kubeconfig, &namespace, n, exe, workdir).await;

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
    n: usize,
    exe: &Path,
    workdir: &Path,
) -> anyhow::Result<OperatorFigures> {
    let budget = Budget::for_resources(n);
    let mut op = OperatorProc::spawn(exe, kubeconfig, namespace, workdir)?;
    eprintln!(
        "  operator: child pid {} (log {})",
        op.pid(),
        op.log().display()
    );
    let result = tokio::time::timeout(budget.drive, drive(client, &mut op, namespace, n, budget))
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the scenario did not finish within {:?} (operator log: {})",
                budget.drive,
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
    n: usize,
    budget: Budget,
) -> anyhow::Result<OperatorFigures> {
    op.wait_ready(budget.ready).await?;
    let flags = crate::operator::child_args(
        namespace,
        "127.0.0.1:0".parse().expect("invariant: literal address"),
    )
    .into_iter()
    .filter(|f| !f.starts_with("--metrics-addr"))
    .collect();
    let api: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);

    let started = Instant::now();
    let ns = namespace.to_owned();
    let creates = api.clone();
    bounded::for_each(resources(namespace, n)?, WRITE_CONCURRENCY, move |kcp| {
        let (api, ns) = (creates.clone(), ns.clone());
        async move {
            api.create(&PostParams::default(), &kcp)
                .await
                .with_context(|| format!("creating KafkaConsumerProxy {ns}/{}", kcp.name_any()))?;
            Ok(())
        }
    })
    .await?;
    let seconds_to_create_all = started.elapsed().as_secs_f64();
    eprintln!(
        "  operator: created {n} resources in {seconds_to_create_all:.1} s; waiting for their status"
    );
    wait::observed(&api, op, n, started, budget.reconcile_all).await?;
    let seconds_to_reconcile_all = started.elapsed().as_secs_f64();
    eprintln!("  operator: all {n} reconciled in {seconds_to_reconcile_all:.1} s");

    let mut notes = Vec::new();
    let (initial, note) = wait::quiet(op, None, budget.quiet).await?;
    notes.extend(note.map(|note| format!("before the no-op round: {note}")));
    let rss_kib = op
        .sample()
        .context("reading /proc/<pid>/status of the operator child")?
        .rss_kib;

    let ns = namespace.to_owned();
    let touches = api.clone();
    bounded::for_each(0..n, WRITE_CONCURRENCY, move |i| {
        let (api, ns) = (touches.clone(), ns.clone());
        async move {
            let name = resource_name(i);
            api.patch(&name, &PatchParams::default(), &Patch::Merge(touch_patch()))
                .await
                .with_context(|| format!("annotating {ns}/{name}"))?;
            Ok(())
        }
    })
    .await?;
    eprintln!("  operator: annotated {n} resources; waiting for their reconciles");
    let (after, note) = wait::quiet(op, Some(initial.finished + n as u64), budget.quiet).await?;
    notes.extend(note.map(|note| format!("no-op round: {note}")));
    let noop_reconciles = after.finished.saturating_sub(initial.finished);
    let by_resource = after.writes_since(&initial);
    let noop_api_writes: u64 = by_resource.values().sum();
    let per = noop_api_writes as f64 / noop_reconciles.max(1) as f64;

    let changed = resource_name(n / 2);
    let spec_change = match wait::notice(client, &api, namespace, &changed, budget.notice).await {
        Ok(c) => c,
        Err(e) => {
            notes.push(format!("spec change: {e:#}"));
            SpecChange::new(changed, None, None, None, budget.notice)
        }
    };
    match spec_change.seconds_to_observed {
        Some(s) => eprintln!("  operator: noticed the spec change in {s:.2} s"),
        None => eprintln!("  operator: did not notice the spec change"),
    }
    let peak_kib = op
        .sample()
        .context("reading /proc/<pid>/status of the operator child")?
        .hwm_kib;

    let rss_mib = rss_kib as f64 / 1024.0;
    let peak_rss_mib = peak_kib as f64 / 1024.0;
    let (verdict_memory, verdict_peak_memory) =
        OperatorFigures::memory_verdicts(rss_mib, peak_rss_mib);
    Ok(OperatorFigures {
        namespace: namespace.to_owned(),
        operator_flags: flags,
        resources: n,
        write_concurrency: WRITE_CONCURRENCY,
        seconds_to_create_all,
        seconds_to_reconcile_all,
        reconcile_all_limit_seconds: RECONCILE_ALL_LIMIT.as_secs_f64(),
        verdict_reconcile_all: Verdict::at_most(
            Some(seconds_to_reconcile_all),
            RECONCILE_ALL_LIMIT.as_secs_f64(),
        ),
        initial_reconciles: initial.finished,
        initial_api_writes: initial.total_writes(),
        rss_mib,
        peak_rss_mib,
        memory_limit_mib: MEMORY_LIMIT_MIB,
        verdict_memory,
        verdict_peak_memory,
        noop_reconciles,
        noop_api_writes,
        noop_api_writes_by_resource: by_resource,
        api_writes_per_noop_reconcile: per,
        verdict_writes: OperatorFigures::writes_verdict(per, noop_reconciles, n),
        spec_change,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let exe = Path::new("/nonexistent");
        let started = Instant::now();
        let result = run(Some(path.clone().into()), RESOURCES, exe, &dir).await;
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

        let missing = run(Some("/nonexistent/kubeconfig".into()), RESOURCES, exe, &dir).await;
        match missing {
            OperatorResult::NotMeasured { reason } => {
                assert!(reason.contains("/nonexistent/kubeconfig"), "{reason}")
            }
            other => panic!("expected not measured, got {other:?}"),
        }
        assert!(matches!(
            run(None, RESOURCES, exe, &dir).await,
            OperatorResult::NoCluster
        ));
    }
}
