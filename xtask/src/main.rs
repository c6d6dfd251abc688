//! Developer commands for Sluice (`cargo xtask …`): the local cluster, Argo CD beside it, CRDs,
//! the demo, the benchmarks and the tests. A thin command line: the cluster, the Go builds and the launchers
//! live in `sluice-testkit`, the benchmarks in `sluice-bench`.

mod crds;
mod demo;
mod demo_traffic;
mod test;

use std::process::Command;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sluice_testkit::{argocd, cluster, gobuild, paths, preflight};

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
    /// and walks an example rollout (canary by default, or bluegreen) to Healthy; `traffic`
    /// walks a Gateway API canary through a real Traefik under load, second by second.
    Demo {
        /// The example to walk through.
        #[arg(value_enum, default_value_t)]
        scenario: demo::Scenario,
    },
    /// Argo CD on the local cluster (built from its Go module, run as local processes), for the
    /// tests that run Sluice under it.
    Argocd {
        #[command(subcommand)]
        action: ArgocdCmd,
    },
    /// Benchmarks Sluice against Argo Rollouts v1.9.1 on the local cluster.
    Bench(sluice_bench::BenchArgs),
    /// Runs the whole test suite: starts the local cluster and Argo CD, then every test binary of
    /// the workspace, a few at once (with arguments: `cargo test --workspace ARGS`).
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
    /// Stops every process `up` started (and Argo CD's, if it runs).
    Down,
    /// Shows the processes, their memory, and the apiserver's health.
    Status,
    /// Builds every Go binary into the shared cache without starting anything.
    Build,
}

#[derive(Subcommand)]
enum ArgocdCmd {
    /// Builds Argo CD (first time only), installs it on the running cluster and starts it.
    Up,
    /// Stops every process `up` started.
    Down,
}

#[tokio::main]
async fn main() -> Result<()> {
    let command = Cli::parse().command;
    // Everything but the CRD generator runs Go programs: say what is missing before building.
    let needs_tools = !matches!(
        command,
        Cmd::Crds { .. }
            | Cmd::Cluster {
                action: ClusterCmd::Down | ClusterCmd::Status
            }
            | Cmd::Argocd {
                action: ArgocdCmd::Down
            }
    );
    // Argo CD (the tests run it) needs git and redis-server too: one report of everything missing.
    let needs_argocd = matches!(
        command,
        Cmd::Test { .. }
            | Cmd::Argocd {
                action: ArgocdCmd::Up
            }
    );
    if needs_tools {
        let mut tools = preflight::ALL.to_vec();
        if needs_argocd {
            tools.extend_from_slice(preflight::ARGOCD);
        }
        preflight::check(&tools)?;
    }
    match command {
        Cmd::Cluster { action } => match action {
            ClusterCmd::Up(options) => cluster::up(&options).await,
            // Argo CD first: its processes talk to the cluster.
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
        Cmd::Argocd { action } => match action {
            ArgocdCmd::Up => argocd::up().await,
            ArgocdCmd::Down => argocd::down(),
        },
        Cmd::Bench(args) => sluice_bench::run(&args).await,
        Cmd::Test { args } => test(&args).await,
    }
}

async fn test(args: &[String]) -> Result<()> {
    preflight::check(preflight::TESTS)?;
    // The chart's tests run the real Helm (`cluster up` links it beside kubectl once built), the
    // analysis tests a real Prometheus, the Argo CD tests Argo CD, the traffic tests a real
    // Traefik: all built from their modules like the cluster, before any test waits on them.
    gobuild::HELM.ensure_built()?;
    gobuild::TRAEFIK.ensure_built()?;
    let prometheus = gobuild::PROMETHEUS.binary("prometheus")?;
    gobuild::PROMETHEUS.ensure_built()?;
    gobuild::ARGOCD.ensure_built()?;
    // The graphite and influxdb providers' tests run the real servers: graphite-web from PyPI
    // in a cached virtual environment, influxd (with Flux) built from its module.
    let graphite = sluice_testkit::graphite::ensure_installed()?;
    let influxd = gobuild::INFLUXDB.binary("influxd")?;
    gobuild::INFLUXDB.ensure_built()?;
    cluster::up(&cluster::UpOptions::default()).await?;
    argocd::up().await?;
    let env = [
        ("KUBECONFIG", paths::kubeconfig().display().to_string()),
        ("SLUICE_TEST_PROMETHEUS", prometheus.display().to_string()),
        ("SLUICE_TEST_GRAPHITE", graphite.display().to_string()),
        ("SLUICE_TEST_INFLUXD", influxd.display().to_string()),
        // Four tests at once per binary, not one per core: the cluster tests spend most of
        // their time waiting on controllers.
        (
            "RUST_TEST_THREADS",
            std::env::var("RUST_TEST_THREADS").unwrap_or_else(|_| "4".into()),
        ),
    ];
    if args.is_empty() {
        // The whole suite: its binaries side by side (see test.rs), SLUICE_TEST_LANES at once.
        let lanes = std::env::var("SLUICE_TEST_LANES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        return test::run_all(&env, lanes);
    }
    // A chosen part (a filter, one --test): cargo's own runner, every failure reported.
    gobuild::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(paths::repo_root())
            .envs(env)
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(args),
    )
}
