//! The Sluice controller process: reads its flags, sets up logging, connects to the cluster, and
//! runs the Rollout controller and the metrics/health server until SIGTERM or SIGINT.
//!
//! Shutdown: the first signal marks the process not ready and tells both tasks to stop; the
//! controller finishes the reconciles in flight and the server the requests in flight, and the
//! process exits 0. A second signal exits at once. If either task fails, the other is stopped the
//! same way and the process exits 1.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use sluice::{
    metrics::Metrics,
    rollout,
    server::{Health, Server},
    telemetry::{self, LogFormat},
};
use tokio::{sync::watch, task::JoinError};
use tracing::{error, info, warn};

const EXAMPLES: &str = "\
Examples:
  # Run against the current kubectl context, watching every namespace
  sluice

  # Watch one namespace of a given context, with debug logs from Sluice only
  sluice --context staging --namespace shop --log-level info,sluice=debug

Endpoints on --metrics-addr: /metrics (OpenMetrics), /healthz (liveness), /readyz (readiness).";

/// A progressive-delivery controller for Kubernetes that runs Argo Rollouts manifests unchanged.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, after_help = EXAMPLES)]
struct Args {
    /// Kubeconfig file(s) to use; without it, the default kubeconfig or the in-cluster config.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<String>,

    /// Kubeconfig context to use instead of the current one.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,

    /// Watch Rollouts in this namespace only; all namespaces when absent.
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    namespace: Option<String>,

    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8090")]
    metrics_addr: SocketAddr,

    /// Log filter, an EnvFilter directive such as `info` or `info,sluice=debug` (RUST_LOG wins).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,

    /// Log format: `auto` writes JSON lines unless stderr is a terminal.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Auto)]
    log_format: LogFormat,

    /// How many Rollouts are reconciled at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = telemetry::try_init(args.log_format, &args.log_level) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "sluice failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Handlers first, so that a signal arriving during startup is not fatal.
    let mut signals = Signals::new()?;
    let client = client(args.kubeconfig.as_deref(), args.context.clone()).await?;
    let server = Server::bind(args.metrics_addr).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        context = args.context.as_deref().unwrap_or("<current>"),
        metrics_addr = %server.local_addr(),
        concurrency = args.concurrency,
        "starting sluice"
    );

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop, stopped) = watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            // An error means the sender is gone, which is a stop too.
            let _ = stopped.wait_for(|&stop| stop).await;
        }
    };
    let config = rollout::Config {
        namespace: args.namespace,
        concurrency: args.concurrency,
    };
    let mut tasks = vec![
        (
            "metrics server",
            tokio::spawn(server.run(metrics.clone(), health.clone(), until_stopped())),
        ),
        (
            "rollout controller",
            tokio::spawn(rollout::run(
                client,
                config,
                metrics,
                health.clone(),
                until_stopped(),
            )),
        ),
    ];

    // Run until a signal arrives or a task ends, which before a stop is a failure even if clean.
    let mut failed = false;
    let first_to_end = futures::future::select_all(tasks.iter_mut().map(|(_, task)| task));
    let ended = tokio::select! {
        signal = signals.recv() => Err(signal),
        (result, index, _) = first_to_end => Ok((index, result)),
    };
    match ended {
        Err(signal) => info!(signal, "shutting down: finishing the work in flight"),
        Ok((index, result)) => {
            let (which, _) = tasks.remove(index);
            report(which, result, "stopped unexpectedly");
            error!(task = which, "{which} ended before shutdown; stopping");
            failed = true;
        }
    }
    health.set_ready(false);
    let _ = stop.send(true);

    // Drain: wait for the other tasks, unless a second signal asks to exit now.
    let drain = async {
        let mut failed = false;
        for (which, task) in tasks {
            failed |= report(which, task.await, "failed while stopping");
        }
        failed
    };
    tokio::select! {
        drain_failed = drain => failed |= drain_failed,
        signal = signals.recv() => {
            warn!(signal, "second signal: exiting without waiting for the work in flight");
            failed = true;
        }
    }
    if failed {
        anyhow::bail!("stopped after a failure; see the errors above");
    }
    info!("stopped");
    Ok(())
}

/// Logs how a task ended; returns whether that was a failure.
fn report(which: &str, result: Result<anyhow::Result<()>, JoinError>, context: &str) -> bool {
    match result {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            error!(task = which, error = format!("{e:#}"), "{which} {context}");
            true
        }
        Err(e) => {
            error!(task = which, error = %e, "{which} panicked");
            true
        }
    }
}

/// A client from `--kubeconfig` (a path list like `KUBECONFIG`, merged in order) and `--context`,
/// else from the default kubeconfig or the in-cluster service account.
async fn client(kubeconfig: Option<&str>, context: Option<String>) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig.filter(|paths| !paths.is_empty()) {
        Some(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in std::env::split_paths(paths).filter(|p| !p.as_os_str().is_empty()) {
                let file = read_kubeconfig(&path)?;
                merged = Some(match merged {
                    Some(first) => first
                        .merge(file)
                        .with_context(|| format!("merging kubeconfig {}", path.display()))?,
                    None => file,
                });
            }
            let merged = merged.context("--kubeconfig names no file")?;
            kube::Config::from_custom_kubeconfig(merged, &options)
                .await
                .with_context(|| format!("loading the Kubernetes configuration from {paths}"))?
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("loading the default kubeconfig (~/.kube/config) for --context")?,
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, \
             or run in a cluster with a service account",
        )?,
    };
    kube::Client::try_from(config).context("creating the Kubernetes client")
}

fn read_kubeconfig(path: &std::path::Path) -> anyhow::Result<Kubeconfig> {
    let path = PathBuf::from(path);
    Kubeconfig::read_from(&path).with_context(|| format!("reading kubeconfig {}", path.display()))
}

/// SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
