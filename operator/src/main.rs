//! `kcp-operator`: parse flags, start logging, run. All logic is in the library.

use std::process::ExitCode;

use clap::Parser;
use kcp_operator::{cli::Args, run, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = telemetry::init(args.log_format) {
        eprintln!("kcp-operator: {e:#}");
        return ExitCode::FAILURE;
    }
    match run::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcp-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
