//! The scenarios: each runs one contender on fresh namespaces and returns its figures.

use std::{
    pin::pin,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Namespace, Service},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use sluice_api::{PauseReason, Rollout, RolloutPhase};

use super::{Figure, Run, audit};

/// The scenarios `cargo xtask bench` knows.
pub const NAMES: [&str; 7] = [
    "idle",
    "cold-start",
    "reaction",
    "canary-steps",
    "storm",
    "analysis",
    "soak",
];

/// Runs scenario `name` for one contender.
pub async fn run(name: &str, run: &Run<'_>) -> Result<Vec<Figure>> {
    match name {
        "idle" => idle(run).await,
        "cold-start" => cold_start(run).await,
        "reaction" => reaction(run).await,
        "canary-steps" => canary_steps(run).await,
        "storm" => storm(run).await,
        "analysis" => super::analysis::run(run).await,
        "soak" => soak(run).await,
        other => bail!("unknown scenario {other}"),
    }
}

/// A fresh namespace `bench-<what>-<contender>-…`, its Rollouts, and the contender started
/// (every namespace watched), logging to `<log>.log`.
pub(super) async fn stage(
    run: &Run<'_>,
    what: &str,
    log: &str,
) -> Result<(TempNamespace, Api<Rollout>, super::contender::Running)> {
    let ns = TempNamespace::create(&run.client, &format!("bench-{what}-{}", run.contender)).await?;
    let rollouts: Api<Rollout> = Api::namespaced(run.client.clone(), &ns.name);
    let controller = run
        .contender
        .start(run.binary, &run.log_dir.join(format!("{log}.log")))?;
    Ok((ns, rollouts, controller))
}

/// How long a scenario lets the contender finish its writes after its Rollouts became Healthy,
/// before it measures a change: Argo Rollouts v1.9.1 writes a Rollout's status a few more times
/// then, and can lose a spec change that lands among those writes (see `wait_nudging`).
const SETTLE: Duration = Duration::from_secs(2);

/// The Rollout counts of a scenario: the sizes, tiny ones with `--quick`, or `--size`.
pub(super) fn sizes(run: &Run<'_>, full: &[usize], quick: &[usize]) -> Vec<usize> {
    match run.size {
        Some(n) => vec![n],
        None if run.quick => quick.to_vec(),
        None => full.to_vec(),
    }
}

/// How long an idle window lasts.
pub(super) fn idle_window(run: &Run<'_>) -> Duration {
    if run.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(300)
    }
}

#[allow(clippy::cast_precision_loss)]
pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// N Rollouts of 1 replica, Healthy: the controller's RSS after settling, its CPU seconds over an
/// idle window, and its API requests per minute in that window.
async fn idle(run: &Run<'_>) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for n in sizes(run, &[0, 1_000, 10_000], &[0, 10]) {
        let (ns, rollouts, mut controller) = stage(run, "idle", &format!("idle-{n}")).await?;
        populate(&rollouts, n, json!([]), &mut controller).await?;
        // Settle, then measure a quiet window.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let window = idle_window(run);
        let (before, after, peak, counts) = watch_window(run, &mut controller, window).await?;
        #[allow(clippy::cast_precision_loss)]
        let per_minute = counts.values().sum::<u64>() as f64 / (window.as_secs_f64() / 60.0);
        figures.push(Figure::one(
            format!("RSS with {n} Rollouts"),
            "MiB",
            mib(peak),
        ));
        figures.push(Figure::one(
            format!("CPU over {:.0?} idle, {n} Rollouts", window),
            "s",
            after.cpu - before.cpu,
        ));
        figures.push(Figure::one(
            format!("API requests/min idle, {n} Rollouts"),
            "",
            per_minute,
        ));
        controller.stop();
        ns.delete_and_wait().await?;
    }
    Ok(figures)
}

/// The controller started with N Healthy Rollouts present whose spec changed while it was down:
/// time until every status is current again, and the peak RSS meanwhile.
async fn cold_start(run: &Run<'_>) -> Result<Vec<Figure>> {
    let n = sizes(run, &[1_000], &[10])[0];
    let (ns, rollouts, mut controller) = stage(run, "cold", "cold-populate").await?;
    populate(&rollouts, n, json!([]), &mut controller).await?;
    controller.stop();
    // A spec change that needs no new ReplicaSet: only the status must catch up.
    for_each(n, |i| {
        let rollouts = rollouts.clone();
        async move {
            let patch = json!({ "spec": { "revisionHistoryLimit": 9 } });
            rollouts
                .patch(
                    &format!("r-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map(drop)
                .context("changing a spec")
        }
    })
    .await?;
    let started = Instant::now();
    let mut controller = run
        .contender
        .start(run.binary, &run.log_dir.join("cold-start.log"))?;
    let peak = wait_all(
        &rollouts,
        n,
        |r| {
            status_current(r)
                && r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy)
        },
        Duration::from_secs(600),
        &mut controller,
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    controller.stop();
    ns.delete_and_wait().await?;
    Ok(vec![
        Figure::one(
            format!("{n} Rollouts reconciled after a start"),
            "s",
            elapsed,
        ),
        Figure::one(
            format!("peak RSS during the start, {n} Rollouts"),
            "MiB",
            mib(peak),
        ),
    ])
}

/// One Rollout's image changed, with 0 and with 1,000 other Rollouts present: latency from the
/// patch to the new ReplicaSet, seen by a watch.
async fn reaction(run: &Run<'_>) -> Result<Vec<Figure>> {
    let trials = if run.quick { 3 } else { run.trials.max(50) };
    let mut figures = Vec::new();
    for others in sizes(run, &[0, 1_000], &[0, 10]) {
        let (ns, rollouts, mut controller) =
            stage(run, "react", &format!("reaction-{others}")).await?;
        populate(&rollouts, others, json!([]), &mut controller).await?;
        let steps = json!([{ "setWeight": 50 }, { "pause": {} }]);
        rollouts
            .create(&PostParams::default(), &rollout("target", 2, steps, "v0"))
            .await
            .context("creating the target Rollout")?;
        wait_healthy(&rollouts, "target", Duration::from_secs(120)).await?;
        let sets: Api<ReplicaSet> = Api::namespaced(run.client.clone(), &ns.name);
        let mut latencies = Vec::new();
        let mut lost = 0u32;
        for trial in 1..=trials {
            let version = format!("v{trial}");
            let config = watcher::Config::default().labels("app=target");
            let mut created = pin!(watcher(sets.clone(), config).applied_objects());
            // Skip the ReplicaSets that exist: the watch's initial list.
            let known = sets
                .list(&ListParams::default().labels("app=target"))
                .await?
                .items
                .into_iter()
                .filter_map(|rs| rs.metadata.name)
                .collect::<Vec<_>>();
            let started = Instant::now();
            set_image(&rollouts, "target", &version).await?;
            let seen = async {
                while let Some(rs) = created.try_next().await? {
                    if !known.contains(&rs.metadata.name.clone().unwrap_or_default()) {
                        return Ok(started.elapsed());
                    }
                }
                bail!("the ReplicaSet watch ended")
            };
            // A contender that never creates it lost the change (Argo Rollouts v1.9.1 can, see
            // `wait_nudging`): count it; the next trial's change brings it a fresh copy.
            match tokio::time::timeout(Duration::from_secs(30), seen).await {
                Ok(latency) => latencies.push(latency?.as_secs_f64() * 1000.0),
                Err(_) => lost += 1,
            }
            controller.sample()?;
        }
        let p99 = percentile(&latencies, 0.99);
        figures.push(Figure {
            name: format!("image change to new ReplicaSet, {others} others"),
            unit: "ms",
            values: latencies,
        });
        figures.push(Figure::one(
            format!("  p99 of it, {others} others"),
            "ms",
            p99,
        ));
        figures.push(Figure::one(
            format!("canary updates stuck (no new ReplicaSet in 30 s), {others} others"),
            "",
            f64::from(lost),
        ));
        let (switches, missed) =
            promotion_latencies(run, &ns.name, trials, &mut controller).await?;
        if !switches.is_empty() {
            let p99 = percentile(&switches, 0.99);
            figures.push(Figure {
                name: format!("blue/green promote to active switch, {others} others"),
                unit: "ms",
                values: switches,
            });
            figures.push(Figure::one(
                format!("  p99 of it, {others} others"),
                "ms",
                p99,
            ));
        }
        #[allow(clippy::cast_precision_loss)]
        figures.push(Figure::one(
            format!("blue/green updates stuck (no pause or no switch in 30 s), {others} others"),
            "",
            missed as f64,
        ));
        controller.stop();
        ns.delete_and_wait().await?;
    }
    Ok(figures)
}

/// The `q` quantile of some values (nearest rank).
fn percentile(values: &[f64], q: f64) -> f64 {
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

/// A blue/green Rollout `bg` waiting for promotion at each trial: the latency from the promote
/// (the status patch `kubectl promote` makes) to the active Service's selector naming the new
/// version, seen by a watch of the Service; and whether the contender got stuck on the way.
async fn promotion_latencies(
    run: &Run<'_>,
    namespace: &str,
    trials: usize,
    controller: &mut super::contender::Running,
) -> Result<(Vec<f64>, usize)> {
    let services: Api<Service> = Api::namespaced(run.client.clone(), namespace);
    for name in ["bg-active", "bg-preview"] {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "selector": { "app": "bg" }, "ports": [{ "port": 80 }] }
        }))?;
        services
            .create(&PostParams::default(), &service)
            .await
            .with_context(|| format!("creating Service {name}"))?;
    }
    let rollouts: Api<Rollout> = Api::namespaced(run.client.clone(), namespace);
    let mut bg = rollout("bg", 2, json!([]), "v0");
    let strategy = json!({ "blueGreen": {
        "activeService": "bg-active", "previewService": "bg-preview",
        "autoPromotionEnabled": false,
        // Not 0: with 0, Argo Rollouts v1.9.1 never scales the old set down and reconciles the
        // Rollout in a hot loop (about 20 times a second) that misses the next update until it is
        // restarted (argo-rollouts#1992, still open). Sluice takes 0 as "at once".
        "scaleDownDelaySeconds": 1
    } });
    bg.spec.strategy = Some(serde_json::from_value(strategy)?);
    rollouts
        .create(&PostParams::default(), &bg)
        .await
        .context("creating the blue/green Rollout")?;
    wait_healthy(&rollouts, "bg", Duration::from_secs(120)).await?;
    let selected = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get("rollouts-pod-template-hash").cloned())
    };
    let mut latencies = Vec::new();
    for trial in 1..=trials {
        set_image(&rollouts, "bg", &format!("v{trial}")).await?;
        let paused = wait_for(&rollouts, "bg", Duration::from_secs(30), |r| {
            r.status.as_ref().is_some_and(|s| {
                s.pause_conditions
                    .iter()
                    .any(|c| c.reason == PauseReason::BlueGreenPause)
                    && s.current_pod_hash.is_some()
                    && s.observed_generation == r.metadata.generation.map(|g| g.to_string())
            })
        })
        .await;
        // A contender that never gets there is stuck (seen with Argo Rollouts v1.9.1 at
        // `scaleDownDelaySeconds: 0`, see above): count it and stop, since every later trial
        // would wait on the same stuck Rollout.
        let Ok(paused) = paused else {
            return Ok((latencies, 1));
        };
        let new = paused
            .status
            .and_then(|s| s.current_pod_hash)
            .unwrap_or_default();
        // A person promotes a moment after the pause, not within milliseconds of it; Argo
        // Rollouts v1.9.1 can lose a promote that lands right after its own pause write (it
        // stays paused until restarted), which would measure nothing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let config = watcher::Config::default().fields("metadata.name=bg-active");
        let mut watch = pin!(watcher(services.clone(), config).applied_objects());
        // The initial list: the Service as it is, before the promote.
        watch.try_next().await?;
        let started = Instant::now();
        rollouts
            .patch_status(
                "bg",
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": { "pauseConditions": null } })),
            )
            .await
            .context("promoting")?;
        let switched = async {
            while let Some(service) = watch.try_next().await? {
                if selected(&service).as_deref() == Some(new.as_str()) {
                    return Ok(started.elapsed());
                }
            }
            bail!("the Service watch ended")
        };
        let Ok(latency) = tokio::time::timeout(Duration::from_secs(30), switched).await else {
            return Ok((latencies, 1));
        };
        latencies.push(latency?.as_secs_f64() * 1000.0);
        controller.sample()?;
        if wait_healthy(&rollouts, "bg", Duration::from_secs(60))
            .await
            .is_err()
        {
            return Ok((latencies, 1));
        }
    }
    Ok((latencies, 0))
}

/// Waits (on a watch) until the rollout satisfies `done`, and returns it.
async fn wait_for(
    rollouts: &Api<Rollout>,
    name: &str,
    limit: Duration,
    done: impl Fn(&Rollout) -> bool,
) -> Result<Rollout> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = pin!(watcher(rollouts.clone(), config).applied_objects());
    let found = async {
        while let Some(r) = stream.try_next().await? {
            if done(&r) {
                return Ok(r);
            }
        }
        bail!("the watch of {name} ended")
    };
    tokio::time::timeout(limit, found)
        .await
        .with_context(|| format!("{name}: not there within {limit:?}"))?
}

/// N Rollouts changed at once: time until all are Healthy again, peak RSS, CPU seconds, API
/// requests.
async fn storm(run: &Run<'_>) -> Result<Vec<Figure>> {
    let n = sizes(run, &[1_000], &[10])[0];
    let (ns, rollouts, mut controller) = stage(run, "storm", "storm").await?;
    let steps = json!([{ "setWeight": 50 }, { "pause": { "duration": "0s" } }]);
    populate(&rollouts, n, steps, &mut controller).await?;
    tokio::time::sleep(SETTLE).await;
    let before = controller.sample()?;
    let mark = audit::mark()?;
    let started = Instant::now();
    for_each(n, |i| {
        let rollouts = rollouts.clone();
        async move { set_image(&rollouts, &format!("r-{i}"), "v1").await }
    })
    .await?;
    let peak = wait_all(
        &rollouts,
        n,
        |r| {
            status_current(r)
                && r.status.as_ref().is_some_and(|s| {
                    s.phase == Some(RolloutPhase::Healthy)
                        && s.stable_rs.is_some()
                        && s.stable_rs == s.current_pod_hash
                })
        },
        Duration::from_secs(900),
        &mut controller,
    )
    .await?
    .max(before.rss);
    let elapsed = started.elapsed().as_secs_f64();
    let after = controller.sample()?;
    let counts = audit::count_since(mark, run.contender.user_agent())?;
    controller.stop();
    ns.delete_and_wait().await?;
    #[allow(clippy::cast_precision_loss)]
    let requests = counts.values().sum::<u64>() as f64;
    Ok(vec![
        Figure::one(
            format!("{n} Rollouts changed at once, to Healthy"),
            "s",
            elapsed,
        ),
        Figure::one(
            format!("peak RSS in the storm, {n} Rollouts"),
            "MiB",
            mib(peak),
        ),
        Figure::one(
            format!("CPU in the storm, {n} Rollouts"),
            "s",
            after.cpu - before.cpu,
        ),
        Figure::one(
            format!("API requests in the storm, {n} Rollouts"),
            "",
            requests,
        ),
    ])
}

/// Creates Rollouts `r-0`…`r-{n-1}` of 1 replica and waits until all are Healthy.
async fn populate(
    rollouts: &Api<Rollout>,
    n: usize,
    steps: Value,
    controller: &mut super::contender::Running,
) -> Result<()> {
    for_each(n, |i| {
        let (rollouts, steps) = (rollouts.clone(), steps.clone());
        async move {
            rollouts
                .create(
                    &PostParams::default(),
                    &rollout(&format!("r-{i}"), 1, steps, "v0"),
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
async fn wait_all(
    rollouts: &Api<Rollout>,
    n: usize,
    ok: impl Fn(&Rollout) -> bool,
    limit: Duration,
    controller: &mut super::contender::Running,
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
async fn wait_nudging(
    rollouts: &Api<Rollout>,
    n: usize,
    ok: impl Fn(&Rollout) -> bool,
    limit: Duration,
    controller: &mut super::contender::Running,
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
async fn for_each<F, Fut>(n: usize, f: F) -> Result<()>
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

/// Whether the controller has written a status for the Rollout's latest spec.
fn status_current(r: &Rollout) -> bool {
    r.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == r.metadata.generation.map(|g| g.to_string()))
}

/// Rollouts of 100 Rollouts, one after the other, for `--duration` (30 minutes by default, 20 s
/// with `--quick`): RSS sampled every 10 s, its first and last value and the slope of a least-
/// squares line through the samples (MiB per hour), how many rollouts were done, and how many
/// times a Rollout whose spec change went unobserved for a minute had to be nudged.
async fn soak(run: &Run<'_>) -> Result<Vec<Figure>> {
    let n = sizes(run, &[100], &[5])[0];
    let duration = run.duration.unwrap_or(if run.quick {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(1_800)
    });
    let (ns, rollouts, mut controller) = stage(run, "soak", "soak").await?;
    let steps = json!([{ "setWeight": 50 }, { "pause": { "duration": "0s" } }]);
    populate(&rollouts, n, steps, &mut controller).await?;
    let started = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut next_sample = Instant::now();
    let mut round = 0usize;
    let mut nudges = 0;
    while started.elapsed() < duration {
        round += 1;
        let version = format!("v{round}");
        for_each(n, |i| {
            let (rollouts, version) = (rollouts.clone(), version.clone());
            async move { set_image(&rollouts, &format!("r-{i}"), &version).await }
        })
        .await?;
        let image = format!("example/app:{version}");
        let (_, nudged) = wait_nudging(
            &rollouts,
            n,
            |r| {
                status_current(r)
                    && r.spec
                        .template
                        .as_ref()
                        .and_then(|t| t.spec.as_ref())
                        .and_then(|s| s.containers[0].image.as_deref())
                        == Some(image.as_str())
                    && r.status.as_ref().is_some_and(|s| {
                        s.phase == Some(RolloutPhase::Healthy) && s.stable_rs == s.current_pod_hash
                    })
            },
            Duration::from_secs(600),
            &mut controller,
            Some(Duration::from_secs(60)),
        )
        .await?;
        nudges += nudged;
        if Instant::now() >= next_sample {
            samples.push((
                started.elapsed().as_secs_f64(),
                mib(controller.sample()?.rss),
            ));
            next_sample += Duration::from_secs(10);
        }
    }
    samples.push((
        started.elapsed().as_secs_f64(),
        mib(controller.sample()?.rss),
    ));
    controller.stop();
    ns.delete_and_wait().await?;
    let first = samples.first().map_or(0.0, |s| s.1);
    let last = samples.last().map_or(0.0, |s| s.1);
    #[allow(clippy::cast_precision_loss)]
    Ok(vec![
        Figure {
            name: format!("RSS every 10 s, {n} Rollouts rolling for {duration:.0?}"),
            unit: "MiB",
            values: samples.iter().map(|s| s.1).collect(),
        },
        Figure::one("  RSS at the start".into(), "MiB", first),
        Figure::one("  RSS at the end".into(), "MiB", last),
        Figure::one("  RSS slope".into(), "MiB/h", slope(&samples) * 3_600.0),
        Figure::one(
            format!("rollouts done in {duration:.0?}"),
            "",
            (round * n) as f64,
        ),
        Figure::one(
            "  rollouts stuck until nudged".into(),
            "",
            f64::from(nudges),
        ),
    ])
}

/// The slope of the least-squares line through `(x, y)` points; 0 with fewer than two.
#[allow(clippy::cast_precision_loss)]
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// A 5-step canary with zero-length pauses on 5 replicas: wall time from the image change to
/// Healthy, and the API requests the controller made for it, by verb and resource.
async fn canary_steps(run: &Run<'_>) -> Result<Vec<Figure>> {
    let (ns, rollouts, mut controller) = stage(run, "steps", "canary-steps").await?;
    let steps = json!([
        { "setWeight": 20 },
        { "pause": { "duration": "0s" } },
        { "setWeight": 60 },
        { "pause": { "duration": "0s" } },
        { "setWeight": 80 },
    ]);
    rollouts
        .create(&PostParams::default(), &rollout("app", 5, steps, "v0"))
        .await
        .context("creating the Rollout")?;
    wait_healthy(&rollouts, "app", Duration::from_secs(120)).await?;

    let mut wall = Figure {
        name: "image change to Healthy".into(),
        unit: "s",
        values: vec![],
    };
    let mut writes = Figure {
        name: "API writes per rollout".into(),
        unit: "",
        values: vec![],
    };
    let mut requests = Figure {
        name: "API requests per rollout".into(),
        unit: "",
        values: vec![],
    };
    let mut cpu = Figure {
        name: "controller CPU per rollout".into(),
        unit: "s",
        values: vec![],
    };
    let mut rss = Figure {
        name: "controller RSS after the rollout".into(),
        unit: "MiB",
        values: vec![],
    };
    let mut last = audit::Counts::new();
    tokio::time::sleep(SETTLE).await;
    for trial in 1..=run.trials {
        let before = controller.sample()?;
        let mark = audit::mark()?;
        let started = Instant::now();
        set_image(&rollouts, "app", &format!("v{trial}")).await?;
        wait_healthy(&rollouts, "app", Duration::from_secs(120)).await?;
        wall.values.push(started.elapsed().as_secs_f64());
        let after = controller.sample()?;
        cpu.values.push(after.cpu - before.cpu);
        #[allow(clippy::cast_precision_loss)]
        rss.values.push(after.rss as f64 / (1024.0 * 1024.0));
        // Let the controller settle its last status writes before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let counts = audit::count_since(mark, run.contender.user_agent())?;
        let total: u64 = counts.values().sum();
        let written: u64 = counts
            .iter()
            .filter(|(k, _)| audit::is_write(k))
            .map(|(_, n)| n)
            .sum();
        #[allow(clippy::cast_precision_loss)]
        {
            writes.values.push(written as f64);
            requests.values.push(total as f64);
        }
        last = counts;
    }
    println!("  {}: requests of the last trial:", run.contender);
    for (key, n) in &last {
        println!("    {n:>4}  {key}");
    }
    controller.stop();
    ns.delete().await;
    Ok(vec![wall, writes, requests, cpu, rss])
}

/// A canary Rollout of `replicas` pods with `steps`, its template tagged `version`.
fn rollout(name: &str, replicas: i32, steps: Value, version: &str) -> Rollout {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": format!("example/app:{version}") }] }
            },
            "strategy": { "canary": { "steps": steps } }
        }
    }))
    .expect("a valid Rollout")
}

async fn set_image(rollouts: &Api<Rollout>, name: &str, version: &str) -> Result<()> {
    let patch = serde_json::from_value(json!([{
        "op": "replace",
        "path": "/spec/template/spec/containers/0/image",
        "value": format!("example/app:{version}")
    }]))?;
    rollouts
        .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .context("changing the image")?;
    Ok(())
}

/// Waits (on a watch) until the rollout is Healthy for its current generation and the stable
/// set is the current one.
async fn wait_healthy(rollouts: &Api<Rollout>, name: &str, limit: Duration) -> Result<()> {
    wait_for(rollouts, name, limit, |r| {
        r.status.as_ref().is_some_and(|s| {
            s.observed_generation == r.metadata.generation.map(|g| g.to_string())
                && s.phase == Some(RolloutPhase::Healthy)
                && s.stable_rs.is_some()
                && s.stable_rs == s.current_pod_hash
        })
    })
    .await
    .map(drop)
    .with_context(|| format!("{name} not Healthy"))
}

/// Watches the controller for `window`, sampling it every second: its sample before and after,
/// its peak RSS, and the API requests it made meanwhile (by verb and resource).
pub(super) async fn watch_window(
    run: &Run<'_>,
    controller: &mut super::contender::Running,
    window: Duration,
) -> Result<(
    super::contender::Sample,
    super::contender::Sample,
    u64,
    audit::Counts,
)> {
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
pub(super) struct TempNamespace {
    client: Client,
    pub(super) name: String,
}

impl TempNamespace {
    async fn create(client: &Client, prefix: &str) -> Result<Self> {
        let name = format!(
            "{prefix}-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        );
        let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            client: client.clone(),
            name,
        })
    }

    async fn delete(self) {
        let _ = Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::background())
            .await;
    }

    /// Deletes the namespace and waits until it is gone, so the next measurement starts clean.
    pub(super) async fn delete_and_wait(self) -> Result<()> {
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let name = self.name.clone();
        self.delete().await;
        let deadline = Instant::now() + Duration::from_secs(900);
        while namespaces.get_opt(&name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("namespace {name} still terminating after 15 minutes");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }
}
