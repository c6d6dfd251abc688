//! Developer commands for Sluice (`cargo xtask …`): the local cluster, CRDs, the demo and the tests.

mod bench;
mod cluster;
mod crds;
mod demo;
mod gobuild;
mod paths;

use std::process::Command;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Developer commands for Sluice.
#[derive(Parser)]
#[command(name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The local Kubernetes control plane (built from Go modules, nodes played by kwok).
    Cluster {
        #[command(subcommand)]
        action: ClusterCmd,
    },
    /// Writes crds/*.yaml from the API types; with --check, fails when they drifted.
    Crds {
        /// Compare instead of writing.
        #[arg(long)]
        check: bool,
    },
    /// Sluice's main job on the local cluster: starts it, installs the CRDs, runs the controller
    /// and walks an example rollout (canary by default, or bluegreen) to Healthy.
    Demo {
        /// The example to walk through.
        #[arg(value_enum, default_value_t)]
        scenario: demo::Scenario,
    },
    /// Benchmarks Sluice against Argo Rollouts v1.9.1 on the local cluster.
    Bench(bench::BenchArgs),
    /// Runs the whole test suite: starts the local cluster, then `cargo test --workspace`.
    Test {
        /// Extra arguments for `cargo test` (for example a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Builds (first time only) and starts the cluster; writes target/cluster/kubeconfig.
    Up(cluster::UpOptions),
    /// Stops every process `up` started.
    Down,
    /// Shows the processes, their memory, and the apiserver's health.
    Status,
    /// Builds every Go binary into the shared cache without starting anything.
    Build,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Cluster { action } => match action {
            ClusterCmd::Up(options) => cluster::up(&options).await,
            ClusterCmd::Down => cluster::down(),
            // Down exits 3 without a backtrace, as `systemctl status` does for a stopped unit.
            ClusterCmd::Status => {
                if !cluster::status().await? {
                    std::process::exit(3);
                }
                Ok(())
            }
            ClusterCmd::Build => cluster::build(),
        },
        Cmd::Crds { check } => crds::run(check),
        Cmd::Demo { scenario } => demo::run(scenario).await,
        Cmd::Bench(args) => bench::run(&args).await,
        Cmd::Test { args } => test(&args).await,
    }
}

async fn test(args: &[String]) -> Result<()> {
    // The chart's tests run the real Helm; `cluster up` links it beside kubectl once built.
    gobuild::HELM.ensure_built()?;
    cluster::up(&cluster::UpOptions::default()).await?;
    gobuild::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(paths::repo_root())
            .env("KUBECONFIG", paths::kubeconfig())
            .args(["test", "--workspace"])
            .args(args),
    )
}
