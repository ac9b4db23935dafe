//! `kubectl-kcp`: parse the command line, run it, map the outcome to an exit code. All logic
//! is in the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, error::ErrorKind};
use kubectl_kcp::{Error, cli::Cli, run::run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let subcommand = cli.command.name();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    match runtime.block_on(run(cli, &mut out, &mut err)) {
        Ok(code) => ExitCode::from(code),
        // A refused command line looks like clap's own errors (exit code 2), with its usage.
        Err(Error::Usage(u)) => {
            let mut cmd = Cli::command();
            cmd.build();
            match cmd.find_subcommand_mut(subcommand) {
                Some(sub) => sub.error(ErrorKind::ArgumentConflict, u.0).exit(),
                None => cmd.error(ErrorKind::ArgumentConflict, u.0).exit(),
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
