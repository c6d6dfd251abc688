//! The scenarios: each runs one contender on fresh namespaces and returns its figures.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use sluice_api::{Rollout, RolloutPhase};
use sluice_testkit::{manifests::observed as status_current, wait};

use crate::{
    Figure, Run, audit, contender,
    stage::{
        SETTLE, TempNamespace, for_each, idle_window, mib, populate, populate_with, rollout,
        set_image, sizes, stage, wait_all, watch_window,
    },
};

/// The scenarios `cargo xtask bench` knows.
pub const NAMES: [&str; 9] = [
    "idle",
    "cold-start",
    "reaction",
    "canary-steps",
    "storm",
    "analysis",
    "soak",
    "traffic",
    "dashboard",
];

/// The contenders scenario `name` runs among those asked for: all of them, except that Argo
/// Rollouts has no dashboard to measure here (see [`crate::dashboard`]).
pub fn contenders(name: &str, asked: &[crate::Contender]) -> Vec<crate::Contender> {
    asked
        .iter()
        .copied()
        .filter(|c| {
            let skip = name == "dashboard" && *c == crate::Contender::Argo;
            if skip {
                eprintln!(
                    "==> dashboard: Argo Rollouts' page needs a Node build of its ui/; Sluice only"
                );
            }
            !skip
        })
        .collect()
}

/// Runs scenario `name` for one contender.
pub async fn run(name: &str, run: &Run<'_>) -> Result<Vec<Figure>> {
    match name {
        "idle" => idle(run).await,
        "cold-start" => cold_start(run).await,
        "reaction" => crate::reaction::run(run).await,
        "canary-steps" => canary_steps(run).await,
        "storm" => storm(run).await,
        "analysis" => super::analysis::run(run).await,
        "soak" => crate::soak::run(run).await,
        "traffic" => crate::traffic::run(run).await,
        "dashboard" => crate::dashboard::run(run).await,
        other => bail!("unknown scenario {other}"),
    }
}

/// N Rollouts of 1 replica, Healthy: the controller's RSS after settling, its CPU seconds over an
/// idle window, and its API requests per minute in that window.
async fn idle(run: &Run<'_>) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for n in sizes(run, &[0, 1_000, 10_000, HUGE], &[0, 10]) {
        if n >= HUGE && run.contender == crate::Contender::Argo {
            // At 40 requests a second and about four writes per Rollout to settle, Argo would
            // take hours to fill 100,000, and its 10,000 point already holds 1.1 GiB.
            eprintln!("==> idle: {n} Rollouts for Sluice only (Argo Rollouts stops at 10,000)");
            continue;
        }
        let (ns, rollouts, mut controller) = if n >= HUGE {
            // No pods (the API server and kwok hold 100,000 Rollouts and ReplicaSets here, not
            // 100,000 pods as well), and a client limit that lets the controller fill them in
            // minutes: the figures are taken once all is idle, where the limit plays no part.
            let ns = TempNamespace::create(&run.client, &format!("bench-idle-{}", run.contender))
                .await?;
            let rollouts: Api<Rollout> = Api::namespaced(run.client.clone(), &ns.name);
            let log = run.log_dir.join(format!("idle-{n}.log"));
            let controller = run.contender.start_with(run.binary, &log, 2_000, 4_000)?;
            (ns, rollouts, controller)
        } else {
            stage(run, "idle", &format!("idle-{n}")).await?
        };
        let replicas = if n >= HUGE { 0 } else { 1 };
        populate_with(&rollouts, n, replicas, json!([]), &mut controller).await?;
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
        contender::stop(controller);
        if n >= HUGE {
            // The garbage collector takes its time over 100,000 Rollouts and ReplicaSets: the
            // next measurement waits for them to be gone before it starts (`TempNamespace`),
            // and the figures need not (the cluster may be stopped instead).
            ns.delete().await;
        } else {
            ns.delete_and_wait().await?;
        }
    }
    Ok(figures)
}

/// The idle point that runs without pods, for Sluice only.
const HUGE: usize = 100_000;

/// The controller started with N Healthy Rollouts present whose spec changed while it was down:
/// time until every status is current again, and the peak RSS meanwhile.
async fn cold_start(run: &Run<'_>) -> Result<Vec<Figure>> {
    let n = sizes(run, &[1_000], &[10])[0];
    let (ns, rollouts, mut controller) = stage(run, "cold", "cold-populate").await?;
    populate(&rollouts, n, json!([]), &mut controller).await?;
    contender::stop(controller);
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
    contender::stop(controller);
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
    println!("  {}: requests in the storm:", run.contender);
    for (key, count) in &counts {
        println!("    {count:>6}  {key}");
    }
    contender::stop(controller);
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
    wait::rollout_healthy(&rollouts, "app", Duration::from_secs(120)).await?;

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
        wait::rollout_healthy(&rollouts, "app", Duration::from_secs(120)).await?;
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
    contender::stop(controller);
    ns.delete().await;
    Ok(vec![wall, writes, requests, cpu, rss])
}
