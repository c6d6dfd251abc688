//! The Sluice controller process: reads its flags, sets up logging, connects to the cluster, and
//! runs the Rollout controller, the AnalysisRun controller, the notification worker (leader only)
//! and the metrics/health server until SIGTERM or SIGINT.
//!
//! Shutdown: the first signal marks the process not ready and tells both tasks to stop; the
//! controller finishes the reconciles in flight and the server the requests in flight, and the
//! process exits 0. A second signal exits at once. If either task fails, the other is stopped the
//! same way and the process exits 1.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use sluice::{
    analysis,
    client::{self, ClientOptions},
    events::Recorder,
    experiment,
    leader::{LeaderElection, Leadership},
    metrics::Metrics,
    notify::Notifier,
    rollout,
    runtime::Scope,
    server::{Health, Server},
    telemetry::{self, LogFormat},
};
use sluice_analysis::limits::AnalysisLimits;
use tokio::{sync::watch, task::JoinError};
use tracing::{error, info, warn};

const EXAMPLES: &str = "\
Examples:
  # Run against the current kubectl context, watching every namespace
  sluice

  # Watch one namespace of a given context, with debug logs from Sluice only
  sluice --context staging --namespace shop --log-level info,sluice=debug

  # One of several replicas: reconcile only while holding the Lease sluice/sluice-controller
  sluice --leader-elect --leader-election-namespace sluice

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

    /// Handle only Rollouts labelled argo-rollouts.argoproj.io/controller-instance-id=ID; without
    /// it, only Rollouts without that label.
    #[arg(long, value_name = "ID")]
    instance_id: Option<String>,

    /// Sustained Kubernetes API requests per second (0: unlimited).
    #[arg(long, value_name = "QPS", default_value_t = 50.0)]
    qps: f64,

    /// Kubernetes API requests allowed at once above --qps.
    #[arg(long, value_name = "N", default_value_t = 100)]
    burst: u32,

    /// Events recorded per second, a budget of their own as the kubelet's: an Event never holds
    /// back a write that moves a rollout, nor takes its share of --qps (0: unlimited).
    #[arg(long, value_name = "QPS", default_value_t = 50.0)]
    event_qps: f64,

    /// Events allowed at once above --event-qps.
    #[arg(long, value_name = "N", default_value_t = 100)]
    event_burst: u32,

    /// Reconcile only while holding a Lease, so that several replicas can run for availability.
    #[arg(long)]
    leader_elect: bool,

    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long, value_name = "NAMESPACE", requires = "leader_elect")]
    leader_election_namespace: Option<String>,

    /// Name of the leader Lease.
    #[arg(long, value_name = "NAME", default_value = "sluice-controller")]
    leader_election_lease: String,

    /// How long the Lease holds without renewal, e.g. `15s`.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_seconds)]
    leader_election_lease_duration: Duration,

    /// How long before the Lease expires the leader renews it, e.g. `5s`.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_seconds)]
    leader_election_grace: Duration,

    /// The most bytes read of a metric server's answer (web, Prometheus); a larger answer is an
    /// Error measurement.
    #[arg(long, value_name = "BYTES", default_value_t = AnalysisLimits::default().max_response_bytes)]
    analysis_max_response_bytes: usize,

    /// Hosts web metrics may call (comma-separated; `*.example.com` for a domain's subdomains);
    /// without it, any host, as in Argo Rollouts.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    web_metric_allowed_hosts: Option<Vec<String>>,
}

/// Parses `15s`, `2m` or a number of seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 15s or 2m"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{text:?}: use s or m, as in 15s or 2m")),
    }
}

fn main() -> ExitCode {
    // The same binary evaluates conditions in child processes, within their own limits; a
    // worker needs no async runtime (and its threads), so it is told apart first.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == analysis::evaluator::WORKER_ARG)
    {
        return analysis::evaluator::worker_main();
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(controller_main()),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The controller process, once it is known not to be a worker.
async fn controller_main() -> ExitCode {
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
    let metrics = Arc::new(Metrics::new());
    let client = client::client(&ClientOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        qps: args.qps,
        burst: args.burst,
        metrics: Some(metrics.clone()),
    })
    .await?;
    // One recorder for every controller (one aggregation of Events per object), on a client of
    // its own whose limit is the Events' budget.
    let recorder = Recorder::new(
        client::client(&ClientOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            qps: args.event_qps,
            burst: args.event_burst,
            metrics: Some(metrics.clone()),
        })
        .await
        .context("creating the Kubernetes client for Events")?,
    );
    let server = Server::bind(args.metrics_addr).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        context = args.context.as_deref().unwrap_or("<current>"),
        metrics_addr = %server.local_addr(),
        concurrency = args.concurrency,
        "starting sluice"
    );

    let health = Arc::new(Health::default());
    let (stop, stopped) = watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            // An error means the sender is gone, which is a stop too.
            let _ = stopped.wait_for(|&stop| stop).await;
        }
    };
    // Both controllers handle the same objects: one scope.
    let scope = Scope {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        instance_id: args.instance_id.clone(),
    };
    let config = scope.clone();
    let mut tasks = vec![(
        "metrics server",
        tokio::spawn(server.run(metrics.clone(), health.clone(), until_stopped())),
    )];

    // With leader election, wait for the Lease first (a healthy standby meanwhile).
    let mut leadership: Option<Leadership> = None;
    if args.leader_elect {
        health.set_ready(true);
        let election = LeaderElection {
            namespace: args
                .leader_election_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into()),
            lease: args.leader_election_lease.clone(),
            identity: LeaderElection::default_identity(),
            duration: args.leader_election_lease_duration,
            grace: args.leader_election_grace,
        };
        let signal = async {
            let signal = signals.recv().await;
            info!(signal, "shutting down before becoming the leader");
        };
        // The Lease's own client: every renewal bounded by a timeout (a hanging one would hold a
        // Lease that expires meanwhile), and never held back by the reconciles' rate limit.
        let mut lease_config =
            sluice_kube::config(args.kubeconfig.as_deref(), args.context.clone())
                .await
                .context("loading the kubeconfig for leader election")?;
        let timeout = Some(election.look_timeout());
        (lease_config.read_timeout, lease_config.write_timeout) = (timeout, timeout);
        lease_config.connect_timeout = timeout;
        let lease_client = kube::Client::try_from(lease_config)
            .context("creating the Kubernetes client for leader election")?;
        match election.acquire(lease_client, signal).await? {
            Some(held) => {
                // Ready again once the leader's caches are filled.
                health.set_ready(false);
                leadership = Some(held);
            }
            None => {
                let _ = stop.send(true);
                for (which, task) in tasks {
                    report(which, task.await, "failed while stopping");
                }
                // The same last line as a leader's stop: scripts and tests wait for it.
                info!("stopped");
                return Ok(());
            }
        }
    }
    tasks.push((
        "experiment controller",
        tokio::spawn(experiment::run(
            client.clone(),
            recorder.clone(),
            scope.clone(),
            metrics.clone(),
            until_stopped(),
        )),
    ));
    let analysis_config = analysis::controller::Config {
        scope,
        limits: AnalysisLimits {
            max_response_bytes: args.analysis_max_response_bytes,
            web_allowed_hosts: args.web_metric_allowed_hosts.clone(),
            ..AnalysisLimits::default()
        },
    };
    tasks.push((
        "analysis controller",
        tokio::spawn(analysis::controller::run(
            client.clone(),
            recorder.clone(),
            analysis_config,
            metrics.clone(),
            until_stopped(),
        )),
    ));
    // Notifications: only the leader gets here, so only the leader sends. The worker delivers
    // until the rollout controller (which holds the only Notifier) has stopped and its queue is
    // empty, within its own grace.
    let (notifier, worker) = Notifier::new(
        client.clone(),
        recorder.clone(),
        analysis::providers::default_namespace(),
        metrics.clone(),
    )?;
    tasks.push(("notifications", tokio::spawn(worker.run(until_stopped()))));
    tasks.push((
        "rollout controller",
        tokio::spawn(rollout::run(
            client,
            recorder,
            config,
            metrics,
            health.clone(),
            notifier,
            until_stopped(),
        )),
    ));

    // Run until a signal arrives, a task ends (before a stop, a failure even if clean), or the
    // Lease is lost (another process may reconcile now: stop at once).
    let mut failed = false;
    let first_to_end = futures::future::select_all(tasks.iter_mut().map(|(_, task)| task));
    let lost = async {
        match leadership.as_mut() {
            Some(held) => held.lost().await,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        signal = signals.recv() => Err(Ok(signal)),
        why = lost => Err(Err(why)),
        (result, index, _) = first_to_end => Ok((index, result)),
    };
    match ended {
        Err(Ok(signal)) => info!(signal, "shutting down: finishing the work in flight"),
        Err(Err(why)) => {
            // Another process may be the leader already: the writes in flight are cut, not
            // finished, and the Lease is not ours to release.
            error!(
                reason = why,
                "lost the leader Lease; stopping at once so that only the new leader writes"
            );
            health.set_ready(false);
            for (_, task) in &tasks {
                task.abort();
            }
            anyhow::bail!("lost the leader Lease: {why}");
        }
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
    // The reconciles are done: hand the Lease over now rather than after it expires.
    if let Some(held) = leadership {
        held.release().await;
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
