//! The sidecar binary: parse flags, read the config, init logging, run the pipeline.
//!
//! Thin by design; all logic is in the library. Exit codes: 0 after a graceful shutdown (first
//! SIGTERM/SIGINT: drain, commit, leave the group), 64 for an invalid config (every problem is
//! printed, or a setting the sidecar cannot use: an unparsable endpoint URL, missing SASL
//! credentials),
//! 66 when the config file cannot be read, 1 when the pipeline fails, 130 on a second
//! signal (exit at once; nothing committed passes an unfinished record, so nothing is lost).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use kcp_crds::{
    SidecarConfig,
    config::{CONFIG_PATH_ENV, LogFormat, POD_NAME_ENV},
};
use kcp_sidecar::{Pipeline, PipelineError};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

const EX_USAGE: u8 = 64;
const EX_NOINPUT: u8 = 66;
const EXIT_SECOND_SIGNAL: i32 = 130;

/// Consumes Kafka and delivers each record to an HTTP endpoint.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Path of the JSON config rendered by the operator.
    #[arg(long, env = CONFIG_PATH_ENV, default_value = "/etc/kcp/config/config.json")]
    config: PathBuf,
    /// Pod name, used as `group.instance.id` (static membership) when set.
    #[arg(long, env = POD_NAME_ENV)]
    pod_name: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read config {}: {e}", args.config.display());
            return ExitCode::from(EX_NOINPUT);
        }
    };
    let config = match SidecarConfig::parse(&text) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_tracing(&config);
    match run(config, args.pod_name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let invalid = e
                .downcast_ref::<PipelineError>()
                .is_some_and(PipelineError::is_invalid_input);
            error!(error = format!("{e:#}"), "Sidecar failed");
            if invalid {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_tracing(config: &SidecarConfig) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(config.log.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

#[tokio::main]
async fn run(config: SidecarConfig, pod_name: Option<String>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    Pipeline::new(config)
        .pod_name(pod_name)
        .run(shutdown)
        .await
        .context("running the pipeline")
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("Cannot install signal handlers; only a kill stops the sidecar");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    info!("Signal received; draining (send another to exit at once)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    warn!("Second signal; exiting without draining");
    std::process::exit(EXIT_SECOND_SIGNAL);
}
