//! The `analysis` scenario: AnalysisRuns measuring against a real Prometheus (built from its
//! module like the cluster, started here on a free port and querying itself), then many
//! completed runs left in the cluster, which must cost memory only, never CPU.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use sluice_api::AnalysisRun;
use sluice_testkit::{gobuild, prometheus::Server};

use super::{
    Figure, Run, contender,
    stage::{idle_window, mib, sizes, stage, watch_window},
};

/// Runs measuring at once in the first part, and completed runs kept in the second.
const ACTIVE: (usize, usize) = (500, 10);
const COMPLETED: (usize, usize) = (5_000, 20);

/// Active runs measuring every 10 s for a window: the controller's CPU and RSS and the queries
/// Prometheus answered; then completed runs: RSS, and CPU over an idle window.
pub async fn run(run: &Run<'_>) -> Result<Vec<Figure>> {
    let prometheus = Prometheus::start()?;
    let active = sizes(run, &[ACTIVE.0], &[ACTIVE.1])[0];
    let completed = if run.quick { COMPLETED.1 } else { COMPLETED.0 };
    let (ns, _, mut controller) = stage(run, "analysis", "analysis").await?;
    let runs: Api<AnalysisRun> = Api::namespaced(run.client.clone(), &ns.name);
    let mut figures = Vec::new();

    // Part 1: runs measuring every 10 s until terminated.
    let queries_before = prometheus.queries().await?;
    for i in 0..active {
        create(&runs, &format!("active-{i}"), &prometheus.url(), true).await?;
    }
    let window = idle_window(run);
    let (before, after, peak, requests) = watch_window(run, &mut controller, window).await?;
    let queries = prometheus.queries().await? - queries_before;
    figures.push(Figure::one(
        format!("CPU, {active} runs measuring for {window:.0?}"),
        "s",
        after.cpu - before.cpu,
    ));
    figures.push(Figure::one(
        format!("peak RSS, {active} runs measuring"),
        "MiB",
        mib(peak),
    ));
    figures.push(Figure::one(
        format!("Prometheus queries, {active} runs for {window:.0?}"),
        "",
        queries,
    ));
    #[allow(clippy::cast_precision_loss)]
    figures.push(Figure::one(
        format!("API requests, {active} runs for {window:.0?}"),
        "",
        requests.values().sum::<u64>() as f64,
    ));
    for i in 0..active {
        let patch = json!({ "spec": { "terminate": true } });
        runs.patch(
            &format!("active-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .context("terminating a run")?;
    }

    // Part 2: runs of one measurement each, left completed in the cluster.
    for i in 0..completed {
        create(&runs, &format!("done-{i}"), &prometheus.url(), false).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(1_800);
    loop {
        let list = runs.list(&ListParams::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.phase.is_completed()))
            .count();
        if done == list.items.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{done} of {} runs completed after 30 minutes",
                list.items.len()
            );
        }
        controller.sample()?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (before, after, rss, requests) = watch_window(run, &mut controller, window).await?;
    let total = completed + active;
    figures.push(Figure::one(
        format!("RSS with {total} completed runs"),
        "MiB",
        mib(rss),
    ));
    figures.push(Figure::one(
        format!("CPU over {window:.0?} with {total} completed runs"),
        "s",
        after.cpu - before.cpu,
    ));
    #[allow(clippy::cast_precision_loss)]
    figures.push(Figure::one(
        format!("API requests over {window:.0?} with {total} completed runs"),
        "",
        requests.values().sum::<u64>() as f64,
    ));
    contender::stop(controller);
    ns.delete_and_wait().await?;
    Ok(figures)
}

/// An AnalysisRun with one Prometheus metric: every 10 s until terminated (`repeat`), or once.
async fn create(runs: &Api<AnalysisRun>, name: &str, address: &str, repeat: bool) -> Result<()> {
    let mut metric = json!({
        "name": "up",
        "successCondition": "result[0] == 1",
        "provider": { "prometheus": { "address": address, "query": "vector(1)" } }
    });
    if repeat {
        metric["interval"] = "10s".into();
    }
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": { "name": name },
        "spec": { "metrics": [metric] }
    }))?;
    runs.create(&PostParams::default(), &run)
        .await
        .with_context(|| format!("creating AnalysisRun {name}"))?;
    Ok(())
}

/// Prometheus (built from its module) on a free port of 127.0.0.1, scraping nothing; killed and
/// its directory removed on drop.
struct Prometheus {
    server: Server,
}

impl Prometheus {
    fn start() -> Result<Self> {
        let binary = gobuild::PROMETHEUS.ensure_built()?.join("prometheus");
        let config = "global:\n  scrape_interval: 15s\n";
        let server = Server::start(&binary, config, "bench-prometheus")?;
        Ok(Self { server })
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// Instant queries Prometheus has answered so far, from its own `/metrics`; waits (up to
    /// 30 s) for it to answer at all.
    async fn queries(&self) -> Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            match self.metrics_text() {
                Ok(text) => break text,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => bail!("Prometheus did not answer on {}: {e}", self.url()),
            }
        };
        Ok(text
            .lines()
            .filter(|l| l.starts_with("prometheus_http_requests_total{"))
            .filter(|l| l.contains(r#"handler="/api/v1/query""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// `GET /metrics` over plain HTTP/1.0 (the body up to the connection's end).
    fn metrics_text(&self) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.server.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other("not 200 OK"));
        }
        Ok(response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default())
    }
}
