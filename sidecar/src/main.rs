//! The sidecar binary: parse flags, read the config, init logging, run the pipeline and the
//! admin server (probes, metrics, status). `kcp-sidecar demo` runs the self-contained demo
//! instead (`kcp_sidecar::demo`).
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
    config::{CONFIG_PATH_ENV, DRAIN_HOOK_ENV, GROUP_INSTANCE_ID_ENV, LogFormat, POD_NAME_ENV},
};
use kcp_sidecar::{
    PipelineError,
    consumer::Identity,
    control::CONTROL_PATH_ENV,
    demo,
    serve::{Options, runtime, serve},
    telemetry,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
    /// Pod name: the consumer's client id becomes `kcp-sidecar-<pod name>`.
    #[arg(long, env = POD_NAME_ENV)]
    pod_name: Option<String>,
    /// A stable `group.instance.id` (static membership), for a stable identity only (a
    /// StatefulSet): a static member keeps its partitions for `session.timeout.ms` after it
    /// stops. Never a Deployment's pod name.
    #[arg(long, env = GROUP_INSTANCE_ID_ENV)]
    group_instance_id: Option<String>,
    /// The app containers call `/drain` from their preStop hook (set by the operator): after
    /// its shutdown the sidecar waits briefly to answer that call.
    #[arg(long, env = DRAIN_HOOK_ENV, default_value_t = false)]
    drain_hook: bool,
    /// The control file the operator mounts (`/etc/kcp/control/control.json`):
    /// `{"paused": true}` stops taking records, keeping the partitions; read every 2 s. Never
    /// paused without it.
    #[arg(long, env = CONTROL_PATH_ENV)]
    control: Option<PathBuf>,
    /// Log format, overriding the config's `log.format`: json or plain.
    #[arg(long, env = "KCP_LOG_FORMAT", value_parser = telemetry::parse_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Self-contained demo: embedded Kafka, a sample app, the real pipeline, and a check that
    /// every record was delivered or dead-lettered.
    Demo(demo::DemoOptions),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Demo(options)) = args.command {
        // Quiet by default: the progress line and summary are the output (RUST_LOG overrides).
        telemetry::init(args.log_format.unwrap_or(LogFormat::Plain), "error");
        return match runtime().map(|rt| rt.block_on(demo::run(options))) {
            Ok(Ok(report)) if report.passed() => ExitCode::SUCCESS,
            Ok(Ok(_)) => ExitCode::FAILURE,
            Ok(Err(e)) => {
                eprintln!("demo failed: {e:#}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
    telemetry::init(
        args.log_format.unwrap_or(config.log.format),
        config.log.level.as_str(),
    );
    let result = runtime().context("starting the runtime").and_then(|rt| {
        rt.block_on(run(
            config,
            Options {
                identity: Identity {
                    pod_name: args.pod_name,
                    group_instance_id: args.group_instance_id,
                },
                control: args.control,
            },
            args.drain_hook,
        ))
    });
    match result {
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

async fn run(config: SidecarConfig, options: Options, drain_hook: bool) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // Installed before the pipeline starts (and so before anything is logged): from then on a
    // SIGTERM always drains.
    let signals = Signals::install().context("installing signal handlers")?;
    tokio::spawn(watch_signals(signals, shutdown.clone()));
    serve(config, options, drain_hook, shutdown, |_| {})
        .await
        .context("running the pipeline")
}

/// SIGTERM and SIGINT streams.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! { _ = self.term.recv() => {}, _ = self.int.recv() => {} }
    }
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once.
async fn watch_signals(mut signals: Signals, shutdown: CancellationToken) {
    signals.next().await;
    info!("Signal received; draining (send another to exit at once)");
    shutdown.cancel();
    signals.next().await;
    warn!("Second signal; exiting without draining");
    std::process::exit(EXIT_SECOND_SIGNAL);
}
