//! Waiting on observable state with a deadline: a future in a test, or a Rollout seen by a watch.

use std::{fmt::Debug, pin::pin, time::Duration};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use sluice_api::{Rollout, RolloutPhase};

/// Awaits `fut`, failing the test with `what` when it takes longer than `seconds`.
pub async fn wait<T, E: Debug>(
    fut: impl Future<Output = Result<T, E>>,
    seconds: u64,
    what: &str,
) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), fut).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("waiting for {what}: {e:?}"),
        Err(_) => panic!("timed out after {seconds} s waiting for {what}"),
    }
}

/// Waits (on a watch, no polling) until the Rollout `name` satisfies `done`, and returns it.
pub async fn rollout(
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

/// Waits (on a watch) until the Rollout is Healthy for its current generation and its stable
/// ReplicaSet is the current one.
pub async fn rollout_healthy(rollouts: &Api<Rollout>, name: &str, limit: Duration) -> Result<()> {
    rollout(rollouts, name, limit, |r| {
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
