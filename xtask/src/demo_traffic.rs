//! `cargo xtask demo traffic`: a canary through Gateway API with real requests, second by second.
//!
//! Brings the cluster up, starts Sluice, a real Traefik (built from its Go module) with a Gateway
//! in the demo namespace, and the test kit's pod player answering on the pods' IPs; creates the
//! Services `web-stable` and `web-canary`, an HTTPRoute `web` on the Gateway, and a Rollout `web`
//! routed by `trafficRouting.plugins["argoproj-labs/gatewayAPI"].httpRoute`. Then a background
//! load runs through Traefik while the image changes, and every second one line shows the step,
//! the weight in the status, the weight in the HTTPRoute, the share of the last second's
//! requests that reached the new version, and the failed requests (which must stay 0). Ends
//! when the rollout is Healthy, with a summary of the share measured at each weight.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Service};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::{Value, json};
use sluice_api::{Rollout, RolloutPhase};
use sluice_testkit::{
    gobuild,
    manifests::{image_patch, service, status},
    paths,
    pods::PodPlayer,
    traefik::{self, Tally, Traefik},
    wait,
};

use crate::demo::{prepare, replicas};

const NAMESPACE: &str = "sluice-demo-traffic";
const V1: &str = "registry.local/web:v1";
const V2: &str = "registry.local/web:v2";
const REPLICAS: i32 = 5;

/// The load: a batch of this many requests (8 in flight) ...
const BATCH: usize = 8;
/// ... every this often, about 200 requests a second at most.
const PACE: Duration = Duration::from_millis(40);

/// Runs the traffic demo; fails if the rollout does not finish within five minutes or a single
/// request fails.
pub async fn run() -> Result<()> {
    let started = Instant::now();
    println!("==> Traefik, built from its Go module (first time only)");
    gobuild::TRAEFIK.ensure_built()?;
    let (client, mut controller) = prepare(NAMESPACE, "sluice-traffic.log").await?;
    let routes = httproutes(&client);
    create_objects(&client, &routes).await?;

    println!("==> starting the pod player (answers on each Ready pod's IP) and Traefik");
    let pods = PodPlayer::start(NAMESPACE, "app=web");
    let traefik = Arc::new(Traefik::start(NAMESPACE).await);
    println!(
        "    Traefik: {} (Gateway {}/{}), log {}",
        traefik.url(),
        NAMESPACE,
        traefik::GATEWAY,
        traefik.log().display()
    );
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NAMESPACE);
    rollouts
        .create(&PostParams::default(), &web_rollout()?)
        .await
        .context("creating the Rollout")?;
    println!(
        "==> Rollout web: {REPLICAS} pods of {V1}, steps {}",
        steps_text()
    );
    wait::rollout_healthy(&rollouts, "web", Duration::from_secs(120)).await?;
    pods.wait_serving(usize::try_from(REPLICAS)?, Duration::from_secs(60))
        .await;
    traefik
        .wait_until("/", &[], 40, Duration::from_secs(60), "v1 answering", |t| {
            t.failures == 0 && t.by_image.get(V1) == Some(&t.sent)
        })
        .await;
    println!("    v1 Healthy and answering through Traefik");

    println!(
        "\n==> load through Traefik (up to {BATCH} requests every {PACE:?}); the image becomes {V2}"
    );
    let load = Load::start(traefik.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changed = Instant::now();
    rollouts
        .patch("web", &Default::default(), &image_patch(V2))
        .await
        .context("changing the image")?;
    println!(
        "  {:>7} {:<16} {:>6} {:>6} {:>9} {:>9} {:>6}  pods",
        "time", "step", "status", "route", "v2 share", "requests", "failed"
    );
    let mut summary = Summary::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    load.take();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut healthy_after = None;
    loop {
        tick.tick().await;
        controller.check()?;
        let window = load.take();
        let rollout = rollouts.get("web").await.context("reading the Rollout")?;
        let route = route_weight(&routes).await?;
        let sets = replicas(&Api::<ReplicaSet>::namespaced(client.clone(), NAMESPACE)).await?;
        let s = status(&rollout);
        let complete = s.phase == Some(RolloutPhase::Healthy)
            && s.stable_rs.is_some()
            && s.stable_rs == s.current_pod_hash;
        // What v2 should get: the route's canary weight until the stable Service is v2.
        let expected = if s.stable_rs.is_some() && s.stable_rs == s.current_pod_hash {
            100
        } else {
            route
        };
        summary.add(expected, &window);
        println!(
            "  {:>6.1}s {:<16} {:>5}% {:>5}% {:>8.1}% {:>9} {:>6}  {}",
            changed.elapsed().as_secs_f64(),
            step_label(&rollout),
            s.canary
                .as_ref()
                .and_then(|c| c.weights.as_ref())
                .map_or(0, |w| w.canary.weight),
            route,
            100.0 * window.image_share(V2),
            window.sent,
            window.failures,
            pods_text(&rollout, &sets),
        );
        if let Some(e) = &window.first_error {
            println!("           first failure: {e}");
        }
        // One more second once Healthy: every request on the new version.
        if complete {
            if healthy_after.is_some() {
                break;
            }
            healthy_after = Some(changed.elapsed());
        }
        if Instant::now() > deadline {
            bail!("the rollout did not finish in 5 minutes");
        }
    }
    let healthy_after = healthy_after.unwrap_or_default();
    let all = load.finish().await;
    controller.terminate(None);
    drop(pods);

    println!(
        "\n==> done: v2 Healthy {:.1}s after the image change ({:.0?} in all)",
        healthy_after.as_secs_f64(),
        started.elapsed()
    );
    println!(
        "    {} requests through Traefik during the rollout, {} failed; v1 answered {}, v2 {}",
        all.sent,
        all.failures,
        all.by_image.get(V1).copied().unwrap_or(0),
        all.by_image.get(V2).copied().unwrap_or(0)
    );
    summary.print();
    println!("The cluster is still up; look around, then stop it:");
    println!("  export KUBECONFIG={}", paths::kubeconfig().display());
    println!("  kubectl -n {NAMESPACE} get rollout,rs,svc,httproute");
    if all.failures > 0 {
        bail!(
            "{} of {} requests failed; the first: {}",
            all.failures,
            all.sent,
            all.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// The steps of the demo's Rollout.
fn steps() -> Value {
    json!([
        { "setWeight": 10 }, { "pause": { "duration": "5s" } },
        { "setWeight": 30 }, { "pause": { "duration": "5s" } },
        { "setWeight": 60 }, { "pause": { "duration": "5s" } },
    ])
}

/// The steps as a person reads them: `setWeight 10, pause 5s, …`.
fn steps_text() -> String {
    steps()
        .as_array()
        .into_iter()
        .flatten()
        .map(step_text)
        .collect::<Vec<_>>()
        .join(", ")
}

fn step_text(step: &Value) -> String {
    if let Some(weight) = step.get("setWeight") {
        return format!("setWeight {weight}");
    }
    match step.pointer("/pause/duration").and_then(Value::as_str) {
        Some(duration) => format!("pause {duration}"),
        None => "pause".into(),
    }
}

/// `3/6 pause 5s`: the status's step index and that step, or `6/6 done`.
fn step_label(rollout: &Rollout) -> String {
    let index = status(rollout).current_step_index.unwrap_or(0);
    let steps = steps();
    let all = steps.as_array().map_or(0, Vec::len);
    let step = usize::try_from(index)
        .ok()
        .and_then(|i| steps.get(i))
        .map_or_else(|| "done".to_string(), step_text);
    format!("{index}/{all} {step}")
}

/// `v1 5/5, v2 1/1`: available and desired pods of each version with any.
fn pods_text(rollout: &Rollout, sets: &BTreeMap<String, (i32, i32)>) -> String {
    let s = status(rollout);
    sets.iter()
        .filter(|(_, (spec, available))| *spec > 0 || *available > 0)
        .map(|(hash, (spec, available))| {
            let version = if s.current_pod_hash.as_deref() == Some(hash.as_str()) {
                "v2"
            } else {
                "v1"
            };
            format!("{version} {available}/{spec}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Services, the HTTPRoute on Traefik's Gateway (all to `web-stable`).
async fn create_objects(client: &Client, routes: &Api<DynamicObject>) -> Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    for name in ["web-stable", "web-canary"] {
        let mut manifest = service(name, "web", Some(8080));
        manifest["spec"]["ports"][0]["name"] = "http".into();
        services
            .create(&PostParams::default(), &serde_json::from_value(manifest)?)
            .await
            .with_context(|| format!("creating Service {name}"))?;
    }
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "web" },
        "spec": {
            "parentRefs": [{ "name": traefik::GATEWAY }],
            "rules": [{ "backendRefs": [
                { "name": "web-stable", "port": 80, "weight": 100 },
                { "name": "web-canary", "port": 80, "weight": 0 },
            ] }],
        },
    });
    routes
        .create(&PostParams::default(), &serde_json::from_value(route)?)
        .await
        .context("creating the HTTPRoute")?;
    println!(
        "==> Services web-stable, web-canary; HTTPRoute web on Gateway {}",
        traefik::GATEWAY
    );
    Ok(())
}

/// The Rollout `web`: pods answering on 8080, its canary routed through the HTTPRoute `web`.
fn web_rollout() -> Result<Rollout> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": REPLICAS,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "web", "image": V1,
                    "ports": [{ "name": "http", "containerPort": 8080 }],
                }] },
            },
            "strategy": { "canary": {
                "canaryService": "web-canary", "stableService": "web-stable",
                "trafficRouting": {
                    "plugins": { "argoproj-labs/gatewayAPI": { "httpRoute": "web" } },
                },
                "scaleDownDelaySeconds": 3,
                "steps": steps(),
            } },
        },
    }))?)
}

fn httproutes(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    Api::namespaced_with(client.clone(), NAMESPACE, &resource)
}

/// The weight of `web-canary` in the HTTPRoute's first rule.
async fn route_weight(routes: &Api<DynamicObject>) -> Result<i64> {
    let route = routes.get("web").await.context("reading the HTTPRoute")?;
    let refs = route.data["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(refs
        .iter()
        .find(|r| r["name"] == "web-canary")
        .and_then(|r| r["weight"].as_i64())
        .unwrap_or(0))
}

/// Requests sent through Traefik in the background, tallied per window.
struct Load {
    stop: Arc<AtomicBool>,
    window: Arc<Mutex<Tally>>,
    all: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(traefik: Arc<Traefik>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let window = Arc::new(Mutex::new(Tally::default()));
        let all = Arc::new(Mutex::new(Tally::default()));
        let (s, w, a) = (stop.clone(), window.clone(), all.clone());
        let task = tokio::spawn(async move {
            let mut pace = tokio::time::interval(PACE);
            while !s.load(Ordering::Relaxed) {
                pace.tick().await;
                let batch = traefik.send(BATCH, "/", &[]).await;
                merge(&mut w.lock().unwrap_or_else(|e| e.into_inner()), &batch);
                merge(&mut a.lock().unwrap_or_else(|e| e.into_inner()), &batch);
            }
        });
        Self {
            stop,
            window,
            all,
            task,
        }
    }

    /// The requests since the last call.
    fn take(&self) -> Tally {
        std::mem::take(&mut self.window.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops the load; every request it sent.
    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.all.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn merge(into: &mut Tally, batch: &Tally) {
    into.sent += batch.sent;
    into.failures += batch.failures;
    if into.first_error.is_none() {
        into.first_error.clone_from(&batch.first_error);
    }
    for (image, n) in &batch.by_image {
        *into.by_image.entry(image.clone()).or_default() += n;
    }
}

/// The requests of the seconds in which v2's expected share had not changed for a whole second
/// before (Traefik takes up a route change within about a second), by that share.
#[derive(Default)]
struct Summary {
    /// The expected share of the last two windows.
    recent: Vec<i64>,
    /// Per expected share, in order of appearance: seconds and requests.
    rows: Vec<(i64, usize, Tally)>,
}

impl Summary {
    fn add(&mut self, expected: i64, window: &Tally) {
        self.recent.push(expected);
        let n = self.recent.len();
        let steady = n >= 3 && self.recent[n - 3..].iter().all(|e| *e == expected);
        if !steady {
            return;
        }
        match self.rows.last_mut() {
            Some((e, seconds, tally)) if *e == expected => {
                *seconds += 1;
                merge(tally, window);
            }
            _ => self.rows.push((expected, 1, window.clone())),
        }
    }

    fn print(&self) {
        println!("    steady seconds (the route unchanged for a second before):");
        println!(
            "    {:>9} {:>8} {:>9} {:>9} {:>13} {:>7}",
            "v2 weight", "seconds", "requests", "v2 share", "expected ±4σ", "failed"
        );
        for (expected, seconds, tally) in &self.rows {
            #[allow(clippy::cast_precision_loss)]
            let p = *expected as f64 / 100.0;
            #[allow(clippy::cast_precision_loss)]
            let sigma = (p * (1.0 - p) / tally.sent.max(1) as f64).sqrt();
            println!(
                "    {:>8}% {:>8} {:>9} {:>8.1}% {:>6.1} ± {:<4.1} {:>7}",
                expected,
                seconds,
                tally.sent,
                100.0 * tally.image_share(V2),
                100.0 * p,
                400.0 * sigma,
                tally.failures
            );
        }
    }
}
