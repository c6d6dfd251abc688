//! The two contenders, Sluice and Argo Rollouts: how each is built, which CRDs it brings, how it
//! runs out of the cluster against the local control plane, and how its process is measured.

use std::{
    fmt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{crds, gobuild, paths};

/// A controller under measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Contender {
    /// Sluice, built in release mode from this checkout.
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
    /// Builds the contender's binary (first time only for Argo; incremental for Sluice).
    pub fn build(self) -> Result<PathBuf> {
        match self {
            Contender::Sluice => {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                gobuild::run(Command::new(cargo).current_dir(paths::repo_root()).args([
                    "build",
                    "--release",
                    "--quiet",
                    "--bin",
                    "sluice",
                ]))?;
                Ok(paths::repo_root().join("target/release/sluice"))
            }
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
            Contender::Sluice => crds::install(client).await,
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

    /// Starts the controller, watching every namespace, with its defaults.
    pub fn start(self, binary: &PathBuf, log: &PathBuf) -> Result<Running> {
        let free_port = || -> Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
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
                    .args(["--log-format", "json", "--log-level", &level]);
            }
            Contender::Argo => {
                cmd.arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .arg(format!("--metricsPort={}", free_port()?))
                    .arg(format!("--healthzPort={}", free_port()?))
                    .args(["--leader-elect=false", "--loglevel", &level]);
            }
        }
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Running {
            child,
            log: log.clone(),
        })
    }
}

/// A running contender.
pub struct Running {
    child: Child,
    log: PathBuf,
}

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Resident memory, bytes.
    pub rss: u64,
    /// User + system CPU time so far, seconds.
    pub cpu: f64,
}

impl Running {
    /// Resident memory and CPU time from `/proc`; fails when the process has exited.
    pub fn sample(&mut self) -> Result<Sample> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the controller exited ({status}); see {}",
                self.log.display()
            );
        }
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
        Ok(Sample {
            rss: rss_kib * 1024,
            cpu: (ticks(11) + ticks(12)) / clock_ticks_per_second(),
        })
    }

    /// Stops the process (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `sysconf(_SC_CLK_TCK)`, read once with `getconf` (100 on Linux unless configured otherwise).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
