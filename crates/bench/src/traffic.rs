//! The `traffic` scenario: a canary routed by Traefik's weighted TraefikService, native in both
//! contenders (`trafficRouting.traefik.weightedTraefikServiceName`; Argo Rollouts started with
//! `--traefik-api-group traefik.io`, see `contender`). Several rollouts one after the other, each
//! through five weight steps with a 1 s pause after each: the time from the image change to
//! Healthy, the API requests per rollout and per weight step, and the latency from a step's start
//! (the status's step index changing to it) to the TraefikService carrying its weight, both seen
//! by watches.
//!
//! A latency below zero says the router carried the weight before the status named the step (a
//! controller that writes the router first and its status after, in one pass).

use std::{
    collections::BTreeMap,
    pin::pin,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use sluice_api::{Rollout, RolloutPhase};
use sluice_testkit::{manifests, wait};

use crate::{
    Figure, Run, audit,
    contender::{self, Running},
    stage::{SETTLE, percentile, set_image, stage},
};

/// The canary weight of each setWeight step; a 1 s pause follows each.
const WEIGHTS: [i64; 5] = [10, 20, 40, 60, 80];

/// Pods of the Rollout.
const REPLICAS: i32 = 5;

/// The TraefikService the Rollout names, and the Rollout.
const NAME: &str = "app";

/// Rollouts (image changes) measured: a few with `--quick`, else `--trials` but at least 10.
pub(crate) async fn run(run: &Run<'_>) -> Result<Vec<Figure>> {
    let rollouts_n = if run.quick { 3 } else { run.trials.max(10) };
    let (ns, rollouts, mut controller) = stage(run, "traffic", "traffic").await?;
    let services: Api<DynamicObject> =
        Api::namespaced_with(run.client.clone(), &ns.name, &traefik_services());
    create_objects(run, &ns.name, &services).await?;
    rollouts
        .create(&PostParams::default(), &routed_rollout()?)
        .await
        .context("creating the Rollout")?;
    wait::rollout_healthy(&rollouts, NAME, Duration::from_secs(120)).await?;

    let mut wall = figure("image change to Healthy, 5 weight steps", "s");
    let mut requests = figure("API requests per rollout", "");
    let mut per_step = figure("API requests per weight step (rollout / 5)", "");
    let mut router_writes = figure("TraefikService writes per rollout", "");
    let mut cpu = figure("controller CPU per rollout", "s");
    let mut latencies = figure("step start to TraefikService weight", "ms");
    let mut missed = 0usize;
    let mut last = audit::Counts::new();
    for trial in 1..=rollouts_n {
        tokio::time::sleep(SETTLE).await;
        let before = controller.sample()?;
        let mark = audit::mark()?;
        let started = Instant::now();
        let seen = one_rollout(&rollouts, &services, trial, &mut controller).await?;
        wall.values.push(started.elapsed().as_secs_f64());
        cpu.values.push(controller.sample()?.cpu - before.cpu);
        for (i, weight) in WEIGHTS.iter().enumerate() {
            let index = i32::try_from(2 * i)?;
            match (seen.steps.get(&index), seen.weights.get(weight)) {
                (Some(start), Some(carried)) => latencies.values.push(signed_ms(*start, *carried)),
                _ => missed += 1,
            }
        }
        let counts = audit::count_since(mark, run.contender.user_agent())?;
        #[allow(clippy::cast_precision_loss)]
        {
            let total = counts.values().sum::<u64>() as f64;
            requests.values.push(total);
            per_step.values.push(total / WEIGHTS.len() as f64);
            router_writes.values.push(
                counts
                    .iter()
                    .filter(|(k, _)| audit::is_write(k) && k.ends_with(" traefikservices"))
                    .map(|(_, n)| *n as f64)
                    .sum(),
            );
        }
        last = counts;
    }
    println!("  {}: requests of the last rollout:", run.contender);
    for (key, n) in &last {
        println!("    {n:>4}  {key}");
    }
    contender::stop(controller);
    ns.delete_and_wait().await?;
    let p50 = percentile(&latencies.values, 0.5);
    let p99 = percentile(&latencies.values, 0.99);
    #[allow(clippy::cast_precision_loss)]
    Ok(vec![
        wall,
        requests,
        per_step,
        router_writes,
        cpu,
        latencies,
        Figure::one("  p50 of it".into(), "ms", p50),
        Figure::one("  p99 of it".into(), "ms", p99),
        Figure::one(
            "weight steps never seen on the TraefikService".into(),
            "",
            missed as f64,
        ),
    ])
}

fn figure(name: &str, unit: &'static str) -> Figure {
    Figure {
        name: name.into(),
        unit,
        values: vec![],
    }
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(after) => after.as_secs_f64() * 1000.0,
        None => -(from - to).as_secs_f64() * 1000.0,
    }
}

/// When each step index first appeared in the status, and each canary weight first on the
/// TraefikService, during one rollout.
struct Seen {
    steps: BTreeMap<i32, Instant>,
    weights: BTreeMap<i64, Instant>,
}

/// Changes the image to `v<trial>` and follows the Rollout and the TraefikService on watches
/// until the Rollout is Healthy on the new version.
async fn one_rollout(
    rollouts: &Api<Rollout>,
    services: &Api<DynamicObject>,
    trial: usize,
    controller: &mut Running,
) -> Result<Seen> {
    let by_name = || watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    let mut rollout_events = pin!(watcher(rollouts.clone(), by_name()).applied_objects());
    let mut service_events = pin!(watcher(services.clone(), by_name()).applied_objects());
    // The objects as they are, and both watches open, before the change.
    let first = rollout_events
        .try_next()
        .await?
        .context("the Rollout watch ended")?;
    let old_hash = manifests::status(&first).current_pod_hash;
    service_events
        .try_next()
        .await?
        .context("the TraefikService watch ended")?;
    for _ in 0..2 {
        let settle = Duration::from_millis(200);
        let _ = tokio::time::timeout(settle, rollout_events.try_next()).await;
        let _ = tokio::time::timeout(settle, service_events.try_next()).await;
    }
    let mut last_index = manifests::status(&first).current_step_index;
    let mut last_weight = None;
    let mut seen = Seen {
        steps: BTreeMap::new(),
        weights: BTreeMap::new(),
    };
    set_image(rollouts, NAME, &format!("v{trial}")).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            next = rollout_events.try_next() => {
                let r = next?.context("the Rollout watch ended")?;
                let now = Instant::now();
                let s = manifests::status(&r);
                if s.current_step_index != last_index {
                    last_index = s.current_step_index;
                    if let Some(index) = last_index {
                        seen.steps.entry(index).or_insert(now);
                    }
                }
                if manifests::observed(&r)
                    && s.phase == Some(RolloutPhase::Healthy)
                    && s.stable_rs.is_some()
                    && s.stable_rs == s.current_pod_hash
                    && s.current_pod_hash != old_hash
                {
                    return Ok(seen);
                }
            }
            next = service_events.try_next() => {
                let service = next?.context("the TraefikService watch ended")?;
                let now = Instant::now();
                let weights = canary_weight(&service.data);
                if weights.is_some() && weights != last_weight {
                    last_weight = weights;
                    if let Some(weight) = weights {
                        seen.weights.entry(weight).or_insert(now);
                    }
                }
            }
            _ = tick.tick() => {
                controller.check()?;
            }
            () = tokio::time::sleep_until(deadline) => {
                bail!(
                    "rollout {trial} not Healthy within 2 minutes; steps seen {:?}, weights {:?}",
                    seen.steps.keys().collect::<Vec<_>>(),
                    seen.weights.keys().collect::<Vec<_>>()
                );
            }
        }
    }
}

/// The canary's weight in a TraefikService whose two entries add up to 100 (both written).
fn canary_weight(service: &Value) -> Option<i64> {
    let entries = service.pointer("/spec/weighted/services")?.as_array()?;
    let weight = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["weight"].as_i64())
    };
    let (canary, stable) = (weight("web-canary")?, weight("web-stable")?);
    (canary + stable == 100).then_some(canary)
}

fn traefik_services() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "traefik.io",
        "v1alpha1",
        "TraefikService",
    ))
}

/// The Services `web-stable` and `web-canary`, and the weighted TraefikService over them
/// without weights (as Argo's guide writes it, so that Argo CD does not see the controller's
/// writes as drift).
async fn create_objects(
    run: &Run<'_>,
    namespace: &str,
    services: &Api<DynamicObject>,
) -> Result<()> {
    let kube_services: Api<Service> = Api::namespaced(run.client.clone(), namespace);
    for name in ["web-stable", "web-canary"] {
        kube_services
            .create(
                &PostParams::default(),
                &serde_json::from_value(manifests::service(name, NAME, None))?,
            )
            .await
            .with_context(|| format!("creating Service {name}"))?;
    }
    let weighted = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
        "metadata": { "name": NAME },
        "spec": { "weighted": { "services": [
            { "name": "web-stable", "port": 80 },
            { "name": "web-canary", "port": 80 },
        ] } },
    });
    services
        .create(&PostParams::default(), &serde_json::from_value(weighted)?)
        .await
        .context("creating the TraefikService")?;
    Ok(())
}

/// The Rollout: five weight steps with a 1 s pause after each, through the TraefikService; the
/// old pods scaled down 1 s after the promotion (Argo's default with a router is 30 s).
fn routed_rollout() -> Result<Rollout> {
    let steps: Vec<Value> = WEIGHTS
        .iter()
        .flat_map(|w| {
            [
                json!({ "setWeight": w }),
                json!({ "pause": { "duration": "1s" } }),
            ]
        })
        .collect();
    let strategy = json!({ "canary": {
        "canaryService": "web-canary", "stableService": "web-stable",
        "trafficRouting": { "traefik": { "weightedTraefikServiceName": NAME } },
        "scaleDownDelaySeconds": 1,
        "steps": steps,
    } });
    Ok(serde_json::from_value(manifests::rollout(
        NAME,
        REPLICAS,
        "example/app:v0",
        strategy,
    ))?)
}
