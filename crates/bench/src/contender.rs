//! The two contenders, Sluice and Argo Rollouts: how each is built, which CRDs it brings, how it
//! runs out of the cluster against the local control plane, and how its process is measured.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Result;
use sluice_testkit::{
    binaries, crds, gobuild, paths,
    process::{LogMode, Process, free_port},
};

/// A controller under measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Contender {
    /// Sluice, built from this checkout (in release mode for measured runs).
    Sluice,
    /// Argo Rollouts v1.9.1, built from its Go module.
    Argo,
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Contender::Sluice => "sluice",
            Contender::Argo => "argo",
        })
    }
}

impl Contender {
    /// Builds the contender's binary (first time only for Argo; incremental for Sluice). Sluice
    /// is built in release mode when `release`; a quick run, which only checks that every figure
    /// comes out, takes the debug build the tests already made instead of minutes of LTO.
    pub fn build(self, release: bool) -> Result<PathBuf> {
        match self {
            Contender::Sluice => binaries::build("sluice", "sluice", release),
            Contender::Argo => {
                gobuild::ARGO_ROLLOUTS.ensure_built()?;
                gobuild::ARGO_ROLLOUTS.binary("rollouts-controller")
            }
        }
    }

    /// Installs the contender's own CRDs (both use the `argoproj.io` names, so one replaces the
    /// other) and waits until they are Established.
    pub async fn install_crds(self, client: &kube::Client) -> Result<()> {
        match self {
            Contender::Sluice => crds::install(client, "sluice-xtask").await,
            Contender::Argo => {
                let dir = gobuild::module_dir("github.com/argoproj/argo-rollouts", "v1.9.1")?
                    .join("manifests/crds");
                for name in [
                    "rollout-crd.yaml",
                    "analysis-run-crd.yaml",
                    "analysis-template-crd.yaml",
                    "cluster-analysis-template-crd.yaml",
                    "experiment-crd.yaml",
                ] {
                    gobuild::run(
                        Command::new(gobuild::kubectl()?)
                            .arg("--kubeconfig")
                            .arg(paths::kubeconfig())
                            .args(["apply", "--server-side", "--force-conflicts", "-f"])
                            .arg(dir.join(name))
                            .stdout(Stdio::null()),
                    )?;
                }
                gobuild::run(
                    Command::new(gobuild::kubectl()?)
                        .arg("--kubeconfig")
                        .arg(paths::kubeconfig())
                        .args([
                            "wait",
                            "--for=condition=Established",
                            "--timeout=60s",
                            "crd/rollouts.argoproj.io",
                            "crd/analysisruns.argoproj.io",
                        ])
                        .stdout(Stdio::null()),
                )
            }
        }
    }

    /// The start of the `User-Agent` the contender's requests carry in the audit log.
    pub fn user_agent(self) -> &'static str {
        match self {
            Contender::Sluice => "sluice/",
            Contender::Argo => "rollouts-controller/",
        }
    }

    /// Starts the controller, watching every namespace, with its defaults but for the client's
    /// rate limit: both get [`QPS`] and [`BURST`] (Argo's defaults are 40 and 80) for each of
    /// their budgets (each clientset of Argo's; Sluice's work and its Events), so a figure bound
    /// by requests compares the requests, not the limits.
    pub fn start(self, binary: &Path, log: &Path) -> Result<Running> {
        self.start_with(binary, log, QPS, BURST)
    }

    /// Starts the controller as [`Contender::start`] does, with another client rate limit.
    pub fn start_with(self, binary: &Path, log: &Path, qps: u32, burst: u32) -> Result<Running> {
        let kubeconfig = paths::kubeconfig();
        // `warn` keeps logging out of the figures; `BENCH_LOG_LEVEL=info` (or `debug`) is for
        // finding out why a contender did what it did, in `target/bench/<contender>.log`.
        let level = std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
        let mut cmd = Command::new(binary);
        match self {
            Contender::Sluice => {
                cmd.arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .arg(format!("--metrics-addr=127.0.0.1:{}", free_port()?))
                    .args(["--log-format", "json", "--log-level", &level])
                    .arg(format!("--qps={qps}"))
                    .arg(format!("--burst={burst}"))
                    // Events have a budget of their own, as each of Argo's clientsets has.
                    .arg(format!("--event-qps={qps}"))
                    .arg(format!("--event-burst={burst}"));
            }
            Contender::Argo => {
                cmd.arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .arg(format!("--metricsPort={}", free_port()?))
                    .arg(format!("--healthzPort={}", free_port()?))
                    .args(["--leader-elect=false", "--loglevel", &level])
                    .arg(format!("--qps={qps}"))
                    .arg(format!("--burst={burst}"))
                    // Traefik v3 serves its CRDs under traefik.io only; Argo Rollouts v1.9.1
                    // defaults to v2's traefik.containo.us (the `traffic` scenario needs this).
                    .args([
                        "--traefik-api-group=traefik.io",
                        "--traefik-api-version=traefik.io/v1alpha1",
                    ]);
            }
        }
        let (running, _) = Process::spawn(&mut cmd, log, LogMode::Truncate)?;
        Ok(running)
    }
}

/// The client rate limit both contenders get: Sluice's default.
pub const QPS: u32 = 50;
/// The burst above [`QPS`] both contenders get: Sluice's default.
pub const BURST: u32 = 100;

/// A running contender: its process, sampled for RSS and CPU.
pub type Running = Process;

/// Stops a contender (SIGTERM, then SIGKILL after 10 s).
pub fn stop(mut running: Running) {
    running.terminate(Some(Duration::from_secs(10)));
}
