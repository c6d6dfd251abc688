//! `cargo xtask demo`: Sluice's main job on the local cluster, start to finish.
//!
//! Brings the cluster up, installs the CRDs, starts the controller, applies
//! `examples/canary.yaml` (or `examples/bluegreen.yaml`), changes its image, and prints each stage as the
//! controller takes it, promoting the indefinite pause as a person would. The cluster stays up
//! afterwards, with the rollout in it, to look around. `cargo xtask demo traffic` walks a Gateway
//! API canary through a real Traefik instead (see `demo_traffic`).

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Namespace};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use sluice_api::{PauseReason, Rollout, RolloutPhase, vocab::POD_TEMPLATE_HASH_LABEL};
use sluice_testkit::{
    binaries, cluster, crds, gobuild,
    manifests::{image_patch, status},
    namespace, paths,
    process::{LogMode, Process, free_port},
};

const NAMESPACE: &str = "sluice-demo";

/// Which example the demo walks through.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum Scenario {
    /// `examples/canary.yaml`: steps, weights, a timed and an indefinite pause.
    #[default]
    Canary,
    /// `examples/bluegreen.yaml`: preview, promotion, the active switch, the scale-down delay.
    Bluegreen,
    /// A Gateway API canary through a real Traefik under load: the share of requests that reach
    /// the new version, second by second.
    Traffic,
}

/// Runs the demo; fails if the rollout does not finish within five minutes.
pub async fn run(scenario: Scenario) -> Result<()> {
    let (example, rollout, new_image) = match scenario {
        Scenario::Canary => (
            "examples/canary.yaml",
            "guestbook",
            "ghcr.io/example/guestbook:1.1",
        ),
        Scenario::Bluegreen => (
            "examples/bluegreen.yaml",
            "checkout",
            "ghcr.io/example/checkout:2.4.0",
        ),
        Scenario::Traffic => return crate::demo_traffic::run().await,
    };
    let started = Instant::now();
    let (client, mut controller) = prepare(NAMESPACE, "sluice.log").await?;
    let kubectl = gobuild::kubectl()?;

    println!("==> kubectl apply -n {NAMESPACE} -f {example}");
    gobuild::run(
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(paths::kubeconfig())
            .args(["apply", "-n", NAMESPACE, "-f"])
            .arg(paths::repo_root().join(example)),
    )?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NAMESPACE);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let first = follow(rollout, &rollouts, &sets, &mut controller, |r| {
        status(r).phase == Some(RolloutPhase::Healthy) && status(r).stable_rs.is_some()
    })
    .await?;
    let old = status(&first).stable_rs.unwrap_or_default();

    println!("\n==> a new version: the image becomes {new_image}");
    // What `kubectl sluice set image <rollout> <container>=…` writes.
    rollouts
        .patch(rollout, &PatchParams::default(), &image_patch(new_image))
        .await
        .context("changing the image")?;
    let done = follow(rollout, &rollouts, &sets, &mut controller, |r| {
        status(r).phase == Some(RolloutPhase::Healthy)
            && status(r).stable_rs.as_deref().is_some_and(|s| s != old)
    })
    .await?;
    controller.terminate(None);

    println!(
        "\n==> done in {:.0?}: {rollout} runs {new_image} on ReplicaSet {rollout}-{}, phase Healthy.",
        started.elapsed(),
        status(&done).stable_rs.unwrap_or_default()
    );
    println!("The cluster is still up; look around, then stop it:");
    println!("  export KUBECONFIG={}", paths::kubeconfig().display());
    println!("  {} -n {NAMESPACE} get rollout,rs,svc", kubectl.display());
    println!("  cargo xtask cluster down");
    Ok(())
}

/// Prints the rollout each time what a person watches changes, promotes indefinite pauses, and
/// returns once `done` holds.
async fn follow(
    name: &str,
    rollouts: &Api<Rollout>,
    sets: &Api<ReplicaSet>,
    controller: &mut Process,
    done: impl Fn(&Rollout) -> bool,
) -> Result<Rollout> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(rollouts.clone(), config).applied_objects());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = String::new();
    let started = Instant::now();
    // The step last promoted: a watch event may still show the pause just lifted, and a second
    // promote would skip the next pause.
    let mut promoted: Option<i32> = None;
    loop {
        controller.check()?;
        let next = tokio::time::timeout(Duration::from_secs(1), stream.try_next()).await;
        let rollout = match next {
            Err(_) if Instant::now() > deadline => bail!("the rollout did not finish in 5 minutes"),
            Err(_) => continue,
            Ok(next) => next
                .context("watching the rollout")?
                .context("the watch ended")?,
        };
        let line = describe(&rollout, &replicas(sets).await?);
        if line != last {
            println!("  [{:>5.1}s] {line}", started.elapsed().as_secs_f64());
            last = line;
        }
        if done(&rollout) {
            return Ok(rollout);
        }
        let reasons: Vec<PauseReason> = status(&rollout)
            .pause_conditions
            .iter()
            .map(|c| c.reason)
            .collect();
        let waits_for_promote = (reasons.contains(&PauseReason::CanaryPauseStep)
            && step_is_indefinite_pause(&rollout))
            || (reasons.contains(&PauseReason::BlueGreenPause)
                && rollout
                    .spec
                    .blue_green()
                    .is_some_and(|b| !b.auto_promotes()));
        let step = status(&rollout)
            .current_step_index
            .or(status(&rollout).blue_green.as_ref().map(|_| -1));
        if waits_for_promote && promoted != step {
            promoted = step;
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("  -> paused until promoted; promoting (as `kubectl sluice promote {name}`)");
            rollouts
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": { "pauseConditions": null } })),
                )
                .await
                .context("promoting")?;
        }
    }
}

fn step_is_indefinite_pause(rollout: &Rollout) -> bool {
    let index = status(rollout).current_step_index.unwrap_or(0);
    let step = rollout
        .spec
        .canary()
        .and_then(|c| c.steps.get(usize::try_from(index).unwrap_or(usize::MAX)));
    let value = step.map(|s| serde_json::to_value(s).unwrap_or_default());
    value.is_some_and(|v| v.get("pause").is_some_and(|p| p.get("duration").is_none()))
}

/// One line: phase, step and weights (canary) or what each Service selects (blue/green), and
/// pods per version.
fn describe(rollout: &Rollout, replicas: &BTreeMap<String, (i32, i32)>) -> String {
    let s = status(rollout);
    let bg = s.blue_green.clone().unwrap_or_default();
    let role = |hash: &str| {
        if rollout.spec.blue_green().is_some() {
            let active = bg.active_selector.as_deref() == Some(hash);
            let preview = bg.preview_selector.as_deref() == Some(hash);
            match (active, preview) {
                (true, true) => "active+preview",
                (true, false) => "active",
                (false, true) => "preview",
                (false, false) if s.current_pod_hash.as_deref() == Some(hash) => "new",
                (false, false) => "old",
            }
        } else if s.stable_rs.as_deref() == Some(hash) {
            "stable"
        } else {
            "canary"
        }
    };
    let pods = replicas
        .iter()
        .filter(|(_, (spec, _))| *spec > 0)
        .map(|(hash, (spec, ready))| format!("{} {hash} {ready}/{spec}", role(hash)))
        .collect::<Vec<_>>()
        .join(", ");
    let phase = s.phase.map_or("-".into(), |p| format!("{p:?}"));
    match rollout.spec.canary() {
        Some(canary) => {
            let weight = s
                .canary
                .as_ref()
                .and_then(|c| c.weights.as_ref())
                .map_or(0, |w| w.canary.weight);
            format!(
                "{phase:<11} step {}/{}  canary weight {weight:>3}%  pods: {pods}",
                s.current_step_index.unwrap_or(0),
                canary.steps.len()
            )
        }
        None => format!("{phase:<11} pods: {pods}"),
    }
}

/// Replicas (spec, available) of each ReplicaSet of the rollout, by pod-template-hash.
pub(crate) async fn replicas(sets: &Api<ReplicaSet>) -> Result<BTreeMap<String, (i32, i32)>> {
    let list = sets
        .list(&ListParams::default().labels(POD_TEMPLATE_HASH_LABEL))
        .await
        .context("listing ReplicaSets")?;
    Ok(list
        .items
        .iter()
        .map(|rs| {
            (
                rs.labels()[POD_TEMPLATE_HASH_LABEL].clone(),
                (
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                    rs.status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0),
                ),
            )
        })
        .collect())
}

/// What every demo starts with: the cluster up, Sluice's CRDs installed, the controller built
/// and started for `namespace` (its log in `target/demo/<log>`), and `namespace` created afresh.
pub(crate) async fn prepare(namespace: &str, log: &str) -> Result<(Client, Process)> {
    cluster::up(&cluster::UpOptions::default()).await?;
    let client = cluster::ready(&paths::kubeconfig()).await?;
    crds::install(&client, "sluice-xtask").await?;
    println!("\n==> building and starting the controller (sluice --namespace {namespace})");
    let controller = start_controller(namespace, log)?;
    fresh_namespace(&client, namespace).await?;
    Ok((client, controller))
}

/// Deletes the demo namespace of an earlier run, waits until it is gone, and creates it anew.
async fn fresh_namespace(client: &Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        println!("==> deleting the namespace {name} of an earlier run");
        namespace::delete_and_wait(
            client,
            name,
            Duration::from_secs(60),
            Duration::from_millis(250),
        )
        .await?;
    }
    namespace::create(client, name, json!({}))
        .await
        .context("creating the demo namespace")
}

/// Builds the `sluice` binary (debug, incremental) and starts it for `namespace`, its log in
/// `target/demo/<log>`.
fn start_controller(namespace: &str, log: &str) -> Result<Process> {
    let binary = binaries::build("sluice", "sluice", false)?;
    let dir = paths::repo_root().join("target/demo");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join(log);
    let port = free_port()?;
    let (controller, _) = Process::spawn(
        Command::new(binary)
            .arg("--kubeconfig")
            .arg(paths::kubeconfig())
            .args(["--namespace", namespace, "--log-format", "json"])
            .arg(format!("--metrics-addr=127.0.0.1:{port}")),
        &log,
        LogMode::Truncate,
    )?;
    println!(
        "    log: {}, metrics: http://127.0.0.1:{port}/metrics",
        log.display()
    );
    Ok(controller)
}
