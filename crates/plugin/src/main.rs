//! The kubectl plugin: `kubectl sluice …` when this binary is on PATH. Parses the command line,
//! runs the command on a single-threaded runtime, and turns an error into one line on stderr
//! and exit code 1.

use std::process::ExitCode;

use anyhow::Context as _;
use kubectl_sluice::{self as cli, Cli};

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        // The messages carry their causes already.
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
