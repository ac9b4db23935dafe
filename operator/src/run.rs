//! Startup and shutdown: connect, serve /healthz /readyz /metrics, check the CRD is installed,
//! win the leader election, run the controller until SIGTERM (or lost leadership), release.
//!
//! The controller watches `KafkaConsumerProxy` through `DeserializeGuard`, so an object that
//! does not parse reaches `reconcile` as an error value (reported, Event) instead of breaking
//! the watch for every other object; it owns Deployments and ConfigMaps (watched by the
//! `managed-by` label), so a change or deletion of a child reconciles its owner. The lag reader
//! runs beside it: a read whose figures changed asks for a reconcile of its resource.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kcp_crds::{
    CRD_PATH, KafkaConsumerProxy, OPERATION_CRD_PATH, v1alpha1::KafkaConsumerProxyOperation,
};
use kube::{
    Api, Client, CustomResourceExt,
    api::ListParams,
    core::DeserializeGuard,
    runtime::{
        Controller, controller,
        events::{Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::{
    FIELD_MANAGER,
    admin::{self, AdminState},
    cli::Args,
    lag::{KafkaLagSource, KafkaLimits, LagReader, ReadLimits},
    leader::{Elector, Held, LeaseSettings},
    metrics::Metrics,
    operations::{
        self,
        controller::{OpContext, OpLimits},
    },
    reconcile::{self, Context, build::BuildOptions, build::managed_by_selector},
};

/// Why the operator cannot start without the CRD, and how to fix it.
pub fn crd_missing_message() -> String {
    format!(
        "the CustomResourceDefinition {} is not installed; install it with \
         `kubectl apply -f {CRD_PATH}` (or everything with `kubectl apply -k manifests/`), then restart the operator",
        KafkaConsumerProxy::crd_name()
    )
}

/// Fails with install instructions when the API server does not know the resource.
pub async fn check_crd(api: &Api<DeserializeGuard<KafkaConsumerProxy>>) -> anyhow::Result<()> {
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(anyhow::anyhow!(crd_missing_message())),
        Err(e) => Err(anyhow::Error::new(e).context("listing KafkaConsumerProxy resources")),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves when `rx` holds `true`.
async fn until_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("kcp-operator-{}", std::process::id()))
}

/// Runs the operator until SIGTERM. Errors: cannot connect, CRD missing, leadership lost.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let admin_state = Arc::new(AdminState {
        registry,
        ready: false.into(),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        termination_signal().await;
        info!("Shutdown requested");
        let _ = shutdown_tx.send(true);
    });
    // Bound here, not in the task: a taken port must stop the operator with a clear error
    // instead of leaving it running with no probes or metrics (and never ready).
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "binding the probe and metrics address {} (--metrics-addr, KCP_METRICS_ADDR)",
                args.metrics_addr
            )
        })?;
    let admin_task = tokio::spawn(admin::serve(
        listener,
        admin_state.clone(),
        until_true(shutdown_rx.clone()),
    ));

    let kcps: Api<DeserializeGuard<KafkaConsumerProxy>> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = check_crd(&kcps).await {
        error!(error = %format!("{e:#}"), "Cannot start");
        return Err(e);
    }
    admin_state
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let (lost_tx, lost_rx) = watch::channel(false);
    let mut leadership = None;
    if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let mut elector = Elector::new(
            Api::namespaced(client.clone(), &namespace),
            LeaseSettings::new(&args.lease_name, &identity),
            metrics.clone(),
        );
        let mut shutdown = shutdown_rx.clone();
        if !elector.acquire(&mut shutdown).await {
            info!("Shut down before becoming leader");
            return Ok(());
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let hold = tokio::spawn(async move {
            let held = elector.hold(stop_rx.map(|_| ())).await;
            if held == Held::Lost {
                let _ = lost_tx.send(true);
            }
            held
        });
        leadership = Some((stop_tx, hold));
    }

    let deadline = args.lag_probe_timeout.as_std();
    let source = KafkaLagSource::new(KafkaLimits {
        call_timeout: deadline.min(Duration::from_secs(5)),
        ..KafkaLimits::default()
    });
    let lag_refresh = args.lag_refresh_interval.as_std();
    // Reconciles come at least every lag refresh; a resource not seen for three is gone.
    metrics.resources.set_ttl(lag_refresh * 3);
    let (lag_reader, lag_updates) = LagReader::new(
        Arc::new(source),
        lag_refresh,
        ReadLimits {
            deadline,
            stuck_after: args.stuck_after.as_std(),
            ..ReadLimits::default()
        },
        metrics.clone(),
    );
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(identity.clone()),
            },
        ),
        metrics.clone(),
        lag_reader,
        BuildOptions {
            default_sidecar_image: args.sidecar_image.clone(),
        },
        lag_refresh,
    ));

    let children = watcher::Config::default().labels(&managed_by_selector());
    let (deployments, config_maps): (Api<Deployment>, Api<ConfigMap>) = match &args.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (stop_controller_tx, stop_controller_rx) = futures::channel::oneshot::channel::<()>();
    let stop_reasons = (shutdown_rx.clone(), lost_rx.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = until_true(stop_reasons.0) => {}
            () = until_true(stop_reasons.1) => warn!("Lost leadership; stopping the controller"),
        }
        let _ = stop_controller_tx.send(());
    });

    let operations = operations_controller(
        &client,
        &args,
        Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(identity.clone()),
            },
        ),
        (shutdown_rx.clone(), lost_rx.clone()),
    )
    .await;

    info!(
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        "Starting controller"
    );
    Controller::new(kcps, watcher::Config::default())
        .owns(deployments, children.clone())
        .owns(config_maps, children)
        // A lag read that found new figures asks for a reconcile, which writes them.
        .reconcile_on(lag_updates.map(|key| ObjectRef::new(&key.name).within(&key.namespace)))
        .with_config(
            controller::Config::default()
                .concurrency(args.concurrency)
                .debounce(Duration::from_millis(500)),
        )
        .graceful_shutdown_on(stop_controller_rx.map(|_| ()))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(object = %obj, "Reconciled"),
                // Already logged by `error_policy`.
                Err(controller::Error::ReconcilerFailed(_, obj)) => {
                    debug!(object = %obj, "Reconcile failed")
                }
                Err(controller::Error::ObjectNotFound(obj)) => {
                    debug!(object = %obj, "Object gone before reconcile")
                }
                Err(controller::Error::QueueError(e)) => warn!(error = %e, "Watch error; retrying"),
                Err(e) => error!(error = %e, "Controller error"),
            }
        })
        .await;
    info!("Controller stopped");
    if let Some(operations) = operations {
        let _ = operations.await;
    }

    let lost = *lost_rx.borrow();
    if let Some((stop_tx, hold)) = leadership {
        let _ = stop_tx.send(());
        let _ = hold.await;
    }
    admin_task.abort();
    if lost {
        anyhow::bail!(
            "lost leadership of the Lease; exiting so a fresh start can rejoin the election"
        );
    }
    Ok(())
}

/// Starts the operations controller (`operations`), stopped by the same signals as the main
/// one. Without the `KafkaConsumerProxyOperation` CRD, operations are off: a warning says how
/// to install it, and the proxies are reconciled as before.
async fn operations_controller(
    client: &Client,
    args: &Args,
    recorder: Recorder,
    stop: (watch::Receiver<bool>, watch::Receiver<bool>),
) -> Option<tokio::task::JoinHandle<()>> {
    let ops: Api<KafkaConsumerProxyOperation> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match ops.list(&ListParams::default().limit(1)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            warn!(
                "The CustomResourceDefinition {} is not installed: operations (rewind, skip, \
                 redrive) are off. Install it with `kubectl apply -f {OPERATION_CRD_PATH}`, then \
                 restart the operator",
                KafkaConsumerProxyOperation::crd_name()
            );
            return None;
        }
        Err(e) => warn!(error = %e, "Listing operations failed; the controller retries"),
    }
    let ctx = Arc::new(OpContext {
        client: client.clone(),
        recorder,
        limits: OpLimits::default(),
    });
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            () = until_true(stop.0) => {}
            () = until_true(stop.1) => {}
        }
        let _ = stop_tx.send(());
    });
    info!("Starting the operations controller");
    Some(tokio::spawn(
        Controller::new(ops, watcher::Config::default())
            .graceful_shutdown_on(stop_rx.map(|_| ()))
            .run(
                operations::controller::reconcile,
                operations::controller::error_policy,
                ctx,
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    debug!(error = %e, "Operation reconcile ended with an error");
                }
            }),
    ))
}
