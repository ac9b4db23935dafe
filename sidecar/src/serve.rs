//! The production process around a [`Pipeline`]: the runtime's shape and the admin server that
//! lives exactly as long as the pipeline, drain included.
//!
//! `main.rs` and the benchmark's sidecar child both call [`serve`] inside [`runtime`], so what
//! the benchmark measures is what runs in pods. Owns no signal handling: the caller decides
//! what cancels `shutdown` (SIGTERM in the binary, stdin EOF in the benchmark).

use std::{path::PathBuf, sync::Arc, time::Duration};

use kcp_crds::SidecarConfig;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::{
    Pipeline, PipelineError, Stats,
    admin::{Admin, DEFAULT_HEALTH_THRESHOLD},
};

/// Tokio worker threads: HTTP requests are I/O-bound and the poll loop has its own thread.
pub const WORKER_THREADS: usize = 2;

/// The multi-thread runtime the sidecar runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("kcp-worker")
        .enable_all()
        .build()
}

/// This process's settings from its flags and environment, beside the config file.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Who the consumer is in its group.
    pub identity: crate::consumer::Identity,
    /// The control file that pauses and resumes consumption (`control.rs`); never paused
    /// without one.
    pub control: Option<PathBuf>,
}

/// How long the sidecar waits after its shutdown for the app's `preStop` hook to collect its
/// answer (`/drain`), when the pod has the hook: the kubelet calls it and signals the sidecar at
/// about the same moment, so the call normally arrives long before this.
pub const HOOK_LINGER: Duration = Duration::from_secs(5);

/// Runs the pipeline with its admin server until `shutdown` is cancelled and the drain and
/// final commit are done. `on_stats` receives the stats handle before consuming starts. With
/// `drain_hook` (the app containers call `/drain` from `preStop`), waits up to [`HOOK_LINGER`]
/// after the shutdown for that call to be answered.
pub async fn serve(
    config: SidecarConfig,
    options: Options,
    drain_hook: bool,
    shutdown: CancellationToken,
    on_stats: impl FnOnce(Arc<Stats>),
) -> Result<(), PipelineError> {
    let listen = config.admin.listen;
    let drain_timeout = config.delivery.drain_timeout.as_std();
    // A revoke blocks the poll loop for up to drainTimeout: liveness must not kill a drain.
    let health_threshold = DEFAULT_HEALTH_THRESHOLD
        .max(config.delivery.drain_timeout.as_std() + Duration::from_secs(10));
    let mut pipeline = Pipeline::new(config).identity(options.identity);
    if let Some(path) = options.control {
        pipeline = pipeline.control(path);
    }
    on_stats(pipeline.stats());
    // Probes and metrics stay up until the pipeline has drained and committed. A port that cannot
    // be bound does not stop consumption (nothing is lost by it); the probes fail, so it shows.
    let admin_stop = CancellationToken::new();
    let stats = pipeline.stats();
    let admin = Admin::new(pipeline.stats())
        .health_threshold(health_threshold)
        .drain_timeout(drain_timeout);
    let admin_task = match admin.bind(listen).await {
        Ok(admin) => Some(tokio::spawn(admin.serve(admin_stop.clone()))),
        Err(e) => {
            error!(%listen, error = %e, "Cannot bind the admin server; probes, metrics and status are unavailable");
            None
        }
    };
    let result = pipeline.run(shutdown).await;
    if drain_hook && admin_task.is_some() {
        let linger = tokio::time::Instant::now() + HOOK_LINGER;
        while !stats.shutdown.hook_answered() && tokio::time::Instant::now() < linger {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    admin_stop.cancel();
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    result
}
