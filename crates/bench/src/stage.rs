//! What every scenario does around its measurement: a fresh namespace with the contender
//! started, Rollouts created and waited for (on watches, never polling lists), the controller
//! sampled, and the namespace removed afterwards.

use std::{
    pin::pin,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Namespace};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use sluice_api::{Rollout, RolloutPhase};
use sluice_testkit::{
    manifests, manifests::observed as status_current, namespace, process::Sample,
};

use crate::{Run, audit, contender::Running};

/// A fresh namespace `bench-<what>-<contender>-…`, its Rollouts, and the contender started
/// (every namespace watched, at the run's client limit), logging to `<log>.log`.
pub(crate) async fn stage(
    run: &Run<'_>,
    what: &str,
    log: &str,
) -> Result<(TempNamespace, Api<Rollout>, Running)> {
    let ns = TempNamespace::create(&run.client, &format!("bench-{what}-{}", run.contender)).await?;
    let rollouts: Api<Rollout> = Api::namespaced(run.client.clone(), &ns.name);
    let controller = run.contender.start_with(
        run.binary,
        &run.log_dir.join(format!("{log}.log")),
        run.qps,
        run.burst,
    )?;
    Ok((ns, rollouts, controller))
}

/// How long a scenario lets the contender finish its writes after its Rollouts became Healthy,
/// before it measures a change: Argo Rollouts v1.9.1 writes a Rollout's status a few more times
/// then, and can lose a spec change that lands among those writes (see `wait_nudging`).
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// The Rollout counts of a scenario: the sizes, tiny ones with `--quick`, or `--size`.
pub(crate) fn sizes(run: &Run<'_>, full: &[usize], quick: &[usize]) -> Vec<usize> {
    match run.size {
        Some(n) => vec![n],
        None if run.quick => quick.to_vec(),
        None => full.to_vec(),
    }
}

/// How long an idle window lasts.
pub(crate) fn idle_window(run: &Run<'_>) -> Duration {
    if run.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(300)
    }
}

#[allow(clippy::cast_precision_loss)]
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The `q` quantile of some values (nearest rank).
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
    sorted.get(rank).copied().unwrap_or(0.0)
}

/// Creates Rollouts `r-0`…`r-{n-1}` of 1 replica and waits until all are Healthy.
pub(crate) async fn populate(
    rollouts: &Api<Rollout>,
    n: usize,
    steps: Value,
    controller: &mut Running,
) -> Result<()> {
    populate_with(rollouts, n, 1, steps, controller).await
}

/// Creates Rollouts `r-0`…`r-{n-1}` of `replicas` pods each and waits until all are Healthy.
pub(crate) async fn populate_with(
    rollouts: &Api<Rollout>,
    n: usize,
    replicas: i32,
    steps: Value,
    controller: &mut Running,
) -> Result<()> {
    for_each(n, |i| {
        let (rollouts, steps) = (rollouts.clone(), steps.clone());
        async move {
            rollouts
                .create(
                    &PostParams::default(),
                    &rollout(&format!("r-{i}"), replicas, steps, "v0"),
                )
                .await
                .map(drop)
                .context("creating a Rollout")
        }
    })
    .await?;
    #[allow(clippy::cast_precision_loss)]
    let limit = Duration::from_secs_f64(120.0 + n as f64 * 0.2);
    wait_all(
        rollouts,
        n,
        |r| {
            status_current(r)
                && r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy)
        },
        limit,
        controller,
    )
    .await
    .map(drop)
}

/// Prints, for a wait that timed out, what the Rollouts not in `done` and their ReplicaSets
/// look like: the first thing anyone asks when a contender got stuck.
async fn describe_unready(rollouts: &Api<Rollout>, done: &std::collections::HashSet<String>) {
    let Ok(list) = rollouts.list(&ListParams::default()).await else {
        return;
    };
    for r in list
        .items
        .iter()
        .filter(|r| !done.contains(r.metadata.name.as_deref().unwrap_or_default()))
    {
        let name = r.metadata.name.as_deref().unwrap_or_default();
        eprintln!(
            "==> not ready: Rollout {name}, generation {:?}, status {}",
            r.metadata.generation,
            serde_json::to_string(&r.status).unwrap_or_default()
        );
    }
    let namespace = list
        .items
        .first()
        .and_then(|r| r.metadata.namespace.clone())
        .unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(rollouts.clone().into_client(), &namespace);
    if let Ok(sets) = sets.list(&ListParams::default()).await {
        for rs in sets.items {
            let status = rs.status.unwrap_or_default();
            eprintln!(
                "==>   ReplicaSet {}: spec {:?}, ready {:?}, available {:?}, annotations {:?}",
                rs.metadata.name.unwrap_or_default(),
                rs.spec.and_then(|s| s.replicas),
                status.ready_replicas,
                status.available_replicas,
                rs.metadata.annotations.unwrap_or_default()
            );
        }
    }
}

/// Waits, on a watch of the namespace (no polling lists: the harness must not load the machine
/// it measures), until `n` Rollouts satisfy `ok`; samples the controller twice a second and
/// returns its peak RSS.
pub(crate) async fn wait_all(
    rollouts: &Api<Rollout>,
    n: usize,
    ok: impl Fn(&Rollout) -> bool,
    limit: Duration,
    controller: &mut Running,
) -> Result<u64> {
    wait_nudging(rollouts, n, ok, limit, controller, None)
        .await
        .map(|(peak, _)| peak)
}

/// `wait_all`, and with `nudge_after`, a Rollout whose spec change its controller has not
/// observed for that long gets an annotation, so that the controller sees a fresh copy of it.
/// Returns the peak RSS and how many nudges it took.
///
/// Argo Rollouts v1.9.1 can lose a spec change: when its own status write races the change, it
/// writes the older Rollout back into its informer, and nothing tells it otherwise until its next
/// resync (argoproj/argo-rollouts#4073). A user would see a Rollout that never starts.
pub(crate) async fn wait_nudging(
    rollouts: &Api<Rollout>,
    n: usize,
    ok: impl Fn(&Rollout) -> bool,
    limit: Duration,
    controller: &mut Running,
    nudge_after: Option<Duration>,
) -> Result<(u64, u32)> {
    let deadline = Instant::now() + limit;
    let mut done = std::collections::HashSet::new();
    // Since when each Rollout's status has been behind its spec, as last seen.
    let mut behind: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    let mut nudges = 0;
    let mut peak = controller.sample()?.rss;
    if n == 0 {
        return Ok((peak, nudges));
    }
    let mut stream = pin!(watcher(rollouts.clone(), watcher::Config::default()).applied_objects());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            next = stream.try_next() => {
                let r = next?.context("the Rollout watch ended")?;
                let name = r.metadata.name.clone().unwrap_or_default();
                if status_current(&r) {
                    behind.remove(&name);
                } else {
                    behind.entry(name.clone()).or_insert_with(Instant::now);
                }
                if ok(&r) {
                    done.insert(name);
                } else {
                    done.remove(&name);
                }
                if done.len() >= n {
                    return Ok((peak.max(controller.sample()?.rss), nudges));
                }
            }
            _ = tick.tick() => {
                peak = peak.max(controller.sample()?.rss);
                if Instant::now() > deadline {
                    describe_unready(rollouts, &done).await;
                    bail!("only {} of {n} Rollouts ready after {limit:?}", done.len());
                }
                let Some(after) = nudge_after else { continue };
                for (name, since) in &mut behind {
                    if since.elapsed() < after {
                        continue;
                    }
                    eprintln!("==> nudging Rollout {name}: its spec change not observed for {after:?}");
                    nudges += 1;
                    *since = Instant::now();
                    let patch = json!({ "metadata": { "annotations": {
                        "bench.sluice.dev/nudged": nudges.to_string()
                    } } });
                    rollouts
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .with_context(|| format!("nudging Rollout {name}"))?;
                }
            }
        }
    }
}

/// Runs `f(i)` for `i` in `0..n`, 32 at a time.
pub(crate) async fn for_each<F, Fut>(n: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter((0..n).map(f))
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// A canary Rollout of `replicas` pods with `steps`, its template tagged `version`.
pub(crate) fn rollout(name: &str, replicas: i32, steps: Value, version: &str) -> Rollout {
    let image = format!("example/app:{version}");
    serde_json::from_value(manifests::canary(name, replicas, &image, steps))
        .expect("a valid Rollout")
}

pub(crate) async fn set_image(rollouts: &Api<Rollout>, name: &str, version: &str) -> Result<()> {
    let patch = manifests::image_patch(&format!("example/app:{version}"));
    rollouts
        .patch(name, &PatchParams::default(), &patch)
        .await
        .context("changing the image")?;
    Ok(())
}

/// Watches the controller for `window`, sampling it every second: its sample before and after,
/// its peak RSS, and the API requests it made meanwhile (by verb and resource).
pub(crate) async fn watch_window(
    run: &Run<'_>,
    controller: &mut Running,
    window: Duration,
) -> Result<(Sample, Sample, u64, audit::Counts)> {
    let before = controller.sample()?;
    let mark = audit::mark()?;
    let mut peak = before.rss;
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(controller.sample()?.rss);
    }
    let after = controller.sample()?;
    let counts = audit::count_since(mark, run.contender.user_agent())?;
    Ok((before, after, peak, counts))
}

/// A namespace for one scenario run, deleted afterwards.
pub(crate) struct TempNamespace {
    client: Client,
    pub(crate) name: String,
}

impl TempNamespace {
    /// A fresh namespace `<prefix>-…`, created once no namespace of an earlier measurement is
    /// still being deleted.
    pub(crate) async fn create(client: &Client, prefix: &str) -> Result<Self> {
        wait_for_leftovers(client, LEFTOVERS_AT_MOST).await?;
        let name = namespace::unique_name(prefix);
        namespace::create(client, &name, json!({})).await?;
        Ok(Self {
            client: client.clone(),
            name,
        })
    }

    pub(crate) async fn delete(self) {
        let _ = Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::background())
            .await;
    }

    /// Deletes the namespace and waits until it is gone, so the next measurement starts clean.
    pub(crate) async fn delete_and_wait(self) -> Result<()> {
        let limit = Duration::from_secs(900);
        namespace::delete_and_wait(&self.client, &self.name, limit, Duration::from_secs(5)).await
    }
}

/// How long a measurement waits for the namespaces of earlier ones to be gone: the garbage
/// collector takes its time over 100,000 Rollouts and their ReplicaSets.
const LEFTOVERS_AT_MOST: Duration = Duration::from_secs(3_600);

/// Waits until no `bench-…` namespace is being deleted, so that a measurement never starts
/// beside the garbage collector's work on an earlier one (Argo Rollouts, started beside
/// 100,000 Rollouts being deleted, reconciled them instead of its own and failed its idle run).
async fn wait_for_leftovers(client: &Client, limit: Duration) -> Result<()> {
    let namespaces = Api::<Namespace>::all(client.clone());
    let started = Instant::now();
    let mut said = false;
    loop {
        let leftovers: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .context("listing namespaces")?
            .items
            .into_iter()
            .filter(|ns| ns.metadata.deletion_timestamp.is_some())
            .filter_map(|ns| ns.metadata.name)
            .filter(|name| name.starts_with("bench-"))
            .collect();
        if leftovers.is_empty() {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!(
                "namespaces of earlier measurements still being deleted after {limit:?}: {}",
                leftovers.join(", ")
            );
        }
        if !said {
            eprintln!(
                "==> waiting for {} to be deleted before the next measurement",
                leftovers.join(", ")
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
