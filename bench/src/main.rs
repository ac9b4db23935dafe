//! kcp-bench: see the library docs. Thin: parse flags, run.

use std::process::ExitCode;

use clap::Parser;
use kcp_bench::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::SidecarChild { config }) => kcp_bench::sidecar::run_child(config),
        Some(Command::ForwarderChild { job }) => kcp_bench::forwarder::run_child(job),
        Some(Command::OperatorChild { args }) => kcp_bench::operator::run_child(args),
        None => kcp_bench::run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcp-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
