//! `cargo xtask demo`: Sluice's main job on the local cluster, start to finish.
//!
//! Brings the cluster up, installs the CRDs, starts the controller, applies
//! `examples/canary.yaml`, changes its image, and prints each step of the canary as the
//! controller takes it, promoting the indefinite pause as a person would. The cluster stays up
//! afterwards, with the rollout in it, to look around.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Namespace};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use sluice::api::{POD_TEMPLATE_HASH_LABEL, PauseReason, Rollout, RolloutPhase, RolloutStatus};

use crate::{cluster, crds, gobuild, paths};

const NAMESPACE: &str = "sluice-demo";
const ROLLOUT: &str = "guestbook";
const NEW_IMAGE: &str = "ghcr.io/example/guestbook:1.1";

/// Runs the demo; fails if the canary does not finish within five minutes.
pub async fn run() -> Result<()> {
    let started = Instant::now();
    cluster::up(&cluster::UpOptions::default()).await?;
    let client = cluster::ready(&paths::kubeconfig()).await?;
    crds::install(&client).await?;
    let kubectl = gobuild::kubectl()?;

    println!("\n==> building and starting the controller (sluice --namespace {NAMESPACE})");
    let mut controller = Controller::start()?;
    fresh_namespace(&client).await?;

    println!("==> kubectl apply -n {NAMESPACE} -f examples/canary.yaml");
    gobuild::run(
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(paths::kubeconfig())
            .args(["apply", "-n", NAMESPACE, "-f"])
            .arg(paths::repo_root().join("examples/canary.yaml")),
    )?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NAMESPACE);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let first = follow(&rollouts, &sets, &mut controller, |r| {
        status(r).phase == Some(RolloutPhase::Healthy) && status(r).stable_rs.is_some()
    })
    .await?;
    let old = status(&first).stable_rs.unwrap_or_default();

    println!("\n==> a new version: the image becomes {NEW_IMAGE}");
    // What `kubectl sluice set image guestbook guestbook=…` writes.
    let patch = serde_json::from_value(json!([{
        "op": "replace",
        "path": "/spec/template/spec/containers/0/image",
        "value": NEW_IMAGE
    }]))?;
    rollouts
        .patch(ROLLOUT, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .context("changing the image")?;
    let done = follow(&rollouts, &sets, &mut controller, |r| {
        status(r).phase == Some(RolloutPhase::Healthy)
            && status(r).stable_rs.as_deref().is_some_and(|s| s != old)
    })
    .await?;
    controller.stop();

    println!(
        "\n==> done in {:.0?}: {ROLLOUT} runs {NEW_IMAGE} on ReplicaSet {ROLLOUT}-{}, phase Healthy.",
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
    rollouts: &Api<Rollout>,
    sets: &Api<ReplicaSet>,
    controller: &mut Controller,
    done: impl Fn(&Rollout) -> bool,
) -> Result<Rollout> {
    let config = watcher::Config::default().fields(&format!("metadata.name={ROLLOUT}"));
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
        let waits_for_promote = status(&rollout)
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::CanaryPauseStep)
            && step_is_indefinite_pause(&rollout);
        let step = status(&rollout).current_step_index;
        if waits_for_promote && promoted != step {
            promoted = step;
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!(
                "  -> paused until promoted; promoting (as `kubectl sluice promote {ROLLOUT}`)"
            );
            rollouts
                .patch_status(
                    ROLLOUT,
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

/// One line: phase, step, weights and pods per version.
fn describe(rollout: &Rollout, replicas: &BTreeMap<String, (i32, i32)>) -> String {
    let s = status(rollout);
    let steps = rollout.spec.canary().map_or(0, |c| c.steps.len());
    let weight = s
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map_or(0, |w| w.canary.weight);
    let pods = replicas
        .iter()
        .filter(|(_, (spec, _))| *spec > 0)
        .map(|(hash, (spec, ready))| {
            let role = if s.stable_rs.as_deref() == Some(hash.as_str()) {
                "stable"
            } else {
                "canary"
            };
            format!("{role} {hash} {ready}/{spec}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{:<11} step {}/{steps}  canary weight {weight:>3}%  pods: {pods}",
        s.phase.map_or("-".into(), |p| format!("{p:?}")),
        s.current_step_index.unwrap_or(0),
    )
}

/// Replicas (spec, available) of each ReplicaSet of the rollout, by pod-template-hash.
async fn replicas(sets: &Api<ReplicaSet>) -> Result<BTreeMap<String, (i32, i32)>> {
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

fn status(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

/// Deletes the demo namespace of an earlier run, waits until it is gone, and creates it anew.
async fn fresh_namespace(client: &Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(NAMESPACE).await?.is_some() {
        println!("==> deleting the namespace {NAMESPACE} of an earlier run");
        namespaces
            .delete(NAMESPACE, &DeleteParams::background())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while namespaces.get_opt(NAMESPACE).await?.is_some() {
            if Instant::now() > deadline {
                bail!("namespace {NAMESPACE} still terminating after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .context("creating the demo namespace")?;
    Ok(())
}

/// The controller process of the demo.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    /// Builds the `sluice` binary (debug, incremental) and starts it for the demo namespace.
    fn start() -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        gobuild::run(
            Command::new(cargo)
                .current_dir(paths::repo_root())
                .args(["build", "--quiet", "--bin", "sluice"]),
        )?;
        let dir = paths::repo_root().join("target/demo");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("sluice.log");
        let file = std::fs::File::create(&log)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(paths::repo_root().join("target/debug/sluice"))
            .arg("--kubeconfig")
            .arg(paths::kubeconfig())
            .args(["--namespace", NAMESPACE, "--log-format", "json"])
            .arg(format!("--metrics-addr=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting target/debug/sluice")?;
        println!(
            "    log: {}, metrics: http://127.0.0.1:{port}/metrics",
            log.display()
        );
        Ok(Self { child, log })
    }

    /// Fails when the controller has exited.
    fn check(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the controller exited ({status}); see {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Stops the controller with SIGTERM, as Kubernetes would.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
