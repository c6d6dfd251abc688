//! The scenarios: each runs one contender on fresh namespaces and returns its figures.

use std::{
    pin::pin,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use sluice::api::{Rollout, RolloutPhase};

use super::{Figure, Run, audit};

/// The scenarios `cargo xtask bench` knows.
pub const NAMES: [&str; 1] = ["canary-steps"];

/// Runs scenario `name` for one contender.
pub async fn run(name: &str, run: &Run<'_>) -> Result<Vec<Figure>> {
    match name {
        "canary-steps" => canary_steps(run).await,
        other => bail!("unknown scenario {other}"),
    }
}

/// A 5-step canary with zero-length pauses on 5 replicas: wall time from the image change to
/// Healthy, and the API requests the controller made for it, by verb and resource.
async fn canary_steps(run: &Run<'_>) -> Result<Vec<Figure>> {
    let ns = TempNamespace::create(&run.client, &format!("bench-steps-{}", run.contender)).await?;
    let mut controller = run
        .contender
        .start(run.binary, &run.log_dir.join("controller.log"))?;
    let rollouts: Api<Rollout> = Api::namespaced(run.client.clone(), &ns.name);
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
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = pin!(watcher(rollouts.clone(), config).applied_objects());
    let done = async {
        while let Some(r) = stream.try_next().await? {
            let Some(s) = r.status.as_ref() else { continue };
            let current = s.observed_generation == r.metadata.generation.map(|g| g.to_string());
            if current
                && s.phase == Some(RolloutPhase::Healthy)
                && s.stable_rs.is_some()
                && s.stable_rs == s.current_pod_hash
            {
                return Ok(());
            }
        }
        bail!("the watch of {name} ended")
    };
    tokio::time::timeout(limit, done)
        .await
        .with_context(|| format!("{name} not Healthy within {limit:?}"))?
}

/// A namespace for one scenario run, deleted afterwards.
struct TempNamespace {
    client: Client,
    name: String,
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
}
