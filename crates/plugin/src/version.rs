//! `version`: the plugin's version, for bug reports.

use std::process::ExitCode;

use super::print;

/// Prints `kubectl-sluice <version>`.
pub fn run() -> ExitCode {
    print(concat!("kubectl-sluice ", env!("CARGO_PKG_VERSION"), "\n"));
    ExitCode::SUCCESS
}
