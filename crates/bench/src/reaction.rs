//! The `reaction` scenario: how fast a contender acts on one change (an image change, a
//! blue/green promote) with and without other Rollouts present, seen by watches.

use std::{
    pin::pin,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Service};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use sluice_api::{PauseReason, Rollout};
use sluice_testkit::wait;

use crate::{
    Figure, Run,
    contender::{self, Running},
    stage::{percentile, populate, rollout, set_image, sizes, stage},
};

/// One Rollout's image changed, with 0 and with 1,000 other Rollouts present: latency from the
/// patch to the new ReplicaSet, seen by a watch.
pub(crate) async fn run(run: &Run<'_>) -> Result<Vec<Figure>> {
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
        wait::rollout_healthy(&rollouts, "target", Duration::from_secs(120)).await?;
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
        contender::stop(controller);
        ns.delete_and_wait().await?;
    }
    Ok(figures)
}

/// A blue/green Rollout `bg` waiting for promotion at each trial: the latency from the promote
/// (the status patch `kubectl promote` makes) to the active Service's selector naming the new
/// version, seen by a watch of the Service; and whether the contender got stuck on the way.
async fn promotion_latencies(
    run: &Run<'_>,
    namespace: &str,
    trials: usize,
    controller: &mut Running,
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
    wait::rollout_healthy(&rollouts, "bg", Duration::from_secs(120)).await?;
    let selected = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get("rollouts-pod-template-hash").cloned())
    };
    let mut latencies = Vec::new();
    for trial in 1..=trials {
        set_image(&rollouts, "bg", &format!("v{trial}")).await?;
        let paused = wait::rollout(&rollouts, "bg", Duration::from_secs(30), |r| {
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
        if wait::rollout_healthy(&rollouts, "bg", Duration::from_secs(60))
            .await
            .is_err()
        {
            return Ok((latencies, 1));
        }
    }
    Ok((latencies, 0))
}
