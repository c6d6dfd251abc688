//! `version [--short]`: the plugin's version, for bug reports and for scripts that check it.
//! Shaped as Argo's: `kubectl-sluice: vX.Y.Z`, then (without `--short`) indented build
//! details; Sluice's are the platform only (no Go toolchain or commit to report).

use std::process::ExitCode;

use clap::Args;

use super::print;

/// `version`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kubectl sluice version\n\n  # The version alone, for scripts\n  kubectl sluice version --short"
)]
pub struct VersionArgs {
    /// Print the version line only.
    #[arg(long)]
    pub short: bool,
}

/// What `version` prints. Pure.
pub fn text(args: &VersionArgs) -> String {
    let mut out = concat!("kubectl-sluice: v", env!("CARGO_PKG_VERSION"), "\n").to_string();
    if !args.short {
        out.push_str(&format!(
            "  Platform: {}/{}\n",
            std::env::consts::OS,
            std::env::consts::ARCH
        ));
    }
    out
}

/// Prints the version.
pub fn run(args: &VersionArgs) -> ExitCode {
    print(&text(args));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_is_the_version_line_alone_as_argo_prints_it() {
        assert_eq!(
            text(&VersionArgs { short: true }),
            concat!("kubectl-sluice: v", env!("CARGO_PKG_VERSION"), "\n")
        );
        let full = text(&VersionArgs { short: false });
        assert!(
            full.starts_with(&text(&VersionArgs { short: true })),
            "{full}"
        );
        assert!(full.contains("  Platform: "), "{full}");
    }
}
