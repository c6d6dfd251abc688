//! Carries out a [`Plan`]: thin and idempotent. The client counts every request in the metrics,
//! so the cost of each step can be read off `/metrics`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::{Pod, Service},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use sluice_analysis::args::{RolloutValues, run_spec};
use sluice_api::{
    AnalysisRun, AnalysisRunSpec, Experiment, PodTemplateMetadata, Rollout, RolloutStatus,
    vocab::{
        EPHEMERAL_ANNOTATION, INSTANCE_ID_LABEL, MANAGED_BY_ROLLOUTS_ANNOTATION,
        POD_TEMPLATE_HASH_LABEL, ROLLOUT_TYPE_LABEL, SPENT_LABEL, STEP_INDEX_LABEL,
        TERMINATED_BY_CONTROLLER, TERMINATED_LABEL,
    },
};
use sluice_plan::{
    Action, Plan,
    analysis::{NewRun, RunKind},
    replicasets::collision,
};

use crate::error::{Error, is_already_exists, is_conflict, is_not_found};

/// How long a status change that only moves the pod counts may wait to be written: the counts
/// change as each pod is created, becomes ready, then available, and each was a status write of
/// its own; now they go out with the next change that matters (a step, a phase, a condition), or
/// after this at the latest.
pub const COUNTS_AT_MOST: Duration = Duration::from_secs(5);

/// The rollouts whose count-only status change waits, and since when.
#[derive(Debug, Default)]
pub struct LaggingCounts(Mutex<HashMap<(String, String), Instant>>);

impl LaggingCounts {
    /// How long the write of `new` over `old` may still wait: `Some` only when the two differ in
    /// nothing but the pod counts and the first wait for this rollout began less than
    /// [`COUNTS_AT_MOST`] ago. `None` means write now.
    pub fn wait(&self, rollout: &Rollout, new: &RolloutStatus, now: Instant) -> Option<Duration> {
        let old = rollout.status.as_ref()?;
        let weights_follow_pods = rollout
            .spec
            .canary()
            .is_some_and(|canary| canary.traffic_routing.is_none());
        if old == new || !only_counts_differ(old, new, weights_follow_pods) {
            return None;
        }
        let key = (rollout.namespace().unwrap_or_default(), rollout.name_any());
        let mut waiting = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let since = *waiting.entry(key).or_insert(now);
        COUNTS_AT_MOST
            .checked_sub(now.duration_since(since))
            .filter(|left| !left.is_zero())
    }

    /// The rollout's status was written (or had nothing to write): nothing waits any more.
    pub fn written(&self, namespace: &str, name: &str) {
        let mut waiting = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.remove(&(namespace.to_owned(), name.to_owned()));
    }
}

/// Whether two statuses differ only in what follows the pod counts as pods come up: the counts
/// (`replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`, `HPAReplicas`), the
/// phase's message while the phase stays (`more replicas need to be updated`, `updated replicas
/// are still becoming available`, …), the update time of a condition that says the same
/// (`Progressing` is touched whenever a pod moves), `Progressing` going from "new ReplicaSet
/// created" to "ReplicaSet updated" with the same message, and, when `weights_follow_pods` (a
/// canary without a router, whose weights are the canary's share of the available pods), the
/// two weights in `status.canary.weights`. A step, a phase, a condition's status or message,
/// a pause, an abort, a router's weight: anything else is a change that matters.
pub fn only_counts_differ(
    old: &RolloutStatus,
    new: &RolloutStatus,
    weights_follow_pods: bool,
) -> bool {
    let mut minor = RolloutStatus {
        replicas: old.replicas,
        updated_replicas: old.updated_replicas,
        ready_replicas: old.ready_replicas,
        available_replicas: old.available_replicas,
        hpa_replicas: old.hpa_replicas,
        ..new.clone()
    };
    if minor.phase == old.phase && old.phase == Some(sluice_api::RolloutPhase::Progressing) {
        minor.message.clone_from(&old.message);
    }
    for condition in &mut minor.conditions {
        if let Some(was) = old
            .conditions
            .iter()
            .find(|was| says_the_same(was, condition))
        {
            condition.last_update_time = was.last_update_time.clone();
            condition.reason.clone_from(&was.reason);
        }
    }
    if weights_follow_pods {
        let was = old.canary.as_ref().and_then(|c| c.weights.as_ref());
        let now = minor.canary.as_mut().and_then(|c| c.weights.as_mut());
        if let (Some(was), Some(now)) = (was, now) {
            now.canary.weight = was.canary.weight;
            now.stable.weight = was.stable.weight;
        }
    }
    &minor == old
}

/// Whether a condition says what `was` said: same type, status and message, and the same reason
/// or, for `Progressing`, the step from "new ReplicaSet created" to "ReplicaSet updated" (the
/// reconcile after the one that created the set says the latter, with nothing new to tell).
fn says_the_same(was: &sluice_api::RolloutCondition, now: &sluice_api::RolloutCondition) -> bool {
    use sluice_api::vocab::reason::{NEW_REPLICA_SET_CREATED, REPLICA_SET_UPDATED};
    let progressing = [NEW_REPLICA_SET_CREATED, REPLICA_SET_UPDATED];
    was.type_ == now.type_
        && was.status == now.status
        && was.message == now.message
        && (was.reason == now.reason
            || (was.type_ == sluice_api::RolloutConditionType::Progressing
                && progressing.contains(&was.reason.as_str())
                && progressing.contains(&now.reason.as_str())))
}

/// The field manager of every Sluice write.
pub const FIELD_MANAGER: &str = "sluice";

/// Makes the plan's changes to the rollout's ReplicaSets and Services.
pub async fn apply_actions(client: &Client, rollout: &Rollout, plan: &Plan) -> Result<(), Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let patch_params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    for action in &plan.actions {
        match action {
            Action::CreateReplicaSet(rs) => {
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PostParams::default()
                };
                let name = rs.name_any();
                let result = sets.create(&params, rs).await;
                match result {
                    Ok(_) => {}
                    // Created by a previous reconcile whose status write did not land (nothing to
                    // do), or another set holds the name: a hash collision, never a success.
                    Err(e) if is_already_exists(&e) => {
                        let existing = sets.get(&name).await.map_err(|source| {
                            write_error(format!("reading ReplicaSet {name}"), source)
                        })?;
                        if let Some(why) = collision(&existing, rs) {
                            return Err(Error::Collision(why));
                        }
                    }
                    Err(source) => return Err(Error::CreateReplicaSet { name, source }),
                }
            }
            Action::ScaleReplicaSet { name, to, .. } => {
                let patch = json!({ "spec": { "replicas": to } });
                let result = sets.patch(name, &patch_params, &Patch::Merge(&patch)).await;
                result.map_err(|source| {
                    write_error(format!("scaling ReplicaSet {name} to {to}"), source)
                })?;
            }
            Action::ScaleWorkload { name, to, .. } => {
                // Only `spec.replicas`, the field the scaleDown policy is about.
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
                let patch = json!({ "spec": { "replicas": to } });
                let result = deployments
                    .patch(name, &patch_params, &Patch::Merge(&patch))
                    .await;
                result.map_err(|source| {
                    write_error(
                        format!("scaling Deployment {name} to {to} (workloadRef)"),
                        source,
                    )
                })?;
            }
            Action::DeleteReplicaSet { name } => {
                let result = sets.delete(name, &DeleteParams::background()).await;
                match result {
                    Err(e) if is_not_found(&e) => {}
                    other => other.map(drop).map_err(|source| {
                        write_error(format!("deleting ReplicaSet {name}"), source)
                    })?,
                }
            }
            Action::AnnotateReplicaSet { name, key, value } => {
                let patch = json!({ "metadata": { "annotations": { *key: value } } });
                let result = sets.patch(name, &patch_params, &Patch::Merge(&patch)).await;
                result.map_err(|source| {
                    write_error(format!("annotating ReplicaSet {name}"), source)
                })?;
            }
            Action::UnannotateReplicaSet { name, key } => {
                let patch = json!({ "metadata": { "annotations": { *key: null } } });
                let result = sets.patch(name, &patch_params, &Patch::Merge(&patch)).await;
                result.map_err(|source| {
                    write_error(
                        format!("removing an annotation of ReplicaSet {name}"),
                        source,
                    )
                })?;
            }
            Action::EvictPod { name } => {
                // Eviction, not deletion: the application's PodDisruptionBudgets have a say.
                let result = pods.evict(name, &EvictParams::default()).await;
                match result {
                    Err(e) if is_not_found(&e) => {}
                    // A budget refused it (429): the next reconcile tries again.
                    Err(kube::Error::Api(status)) if status.code == 429 => {}
                    other => other
                        .map(drop)
                        .map_err(|source| write_error(format!("evicting pod {name}"), source))?,
                }
            }
            Action::CreateAnalysisRun(run) => create_run(client, rollout, run).await?,
            Action::TerminateAnalysisRun { name } => {
                let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
                // Marked as the controller's doing: such a run is never evidence of a pass.
                let patch = json!({
                    "metadata": { "labels": { TERMINATED_LABEL: TERMINATED_BY_CONTROLLER } },
                    "spec": { "terminate": true },
                });
                let result = runs.patch(name, &patch_params, &Patch::Merge(&patch)).await;
                match result {
                    Err(e) if is_not_found(&e) => {}
                    other => other.map(drop).map_err(|source| {
                        write_error(format!("terminating AnalysisRun {name}"), source)
                    })?,
                }
            }
            Action::SpendAnalysisRun { name } => {
                let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
                let patch = json!({ "metadata": { "labels": { SPENT_LABEL: "true" } } });
                let result = runs.patch(name, &patch_params, &Patch::Merge(&patch)).await;
                match result {
                    Err(e) if is_not_found(&e) => {}
                    other => other.map(drop).map_err(|source| {
                        write_error(format!("marking AnalysisRun {name} spent"), source)
                    })?,
                }
            }
            Action::DeleteAnalysisRun { name } => {
                let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
                let result = runs.delete(name, &DeleteParams::background()).await;
                match result {
                    Err(e) if is_not_found(&e) => {}
                    other => other.map(drop).map_err(|source| {
                        write_error(format!("deleting AnalysisRun {name}"), source)
                    })?,
                }
            }
            Action::CreateExperiment(experiment) => {
                create_experiment(client, rollout, experiment).await?;
            }
            Action::TerminateExperiment { name } => {
                // Marked as the controller's doing: such an experiment is never a pass.
                let patch = json!({
                    "metadata": { "labels": { TERMINATED_LABEL: TERMINATED_BY_CONTROLLER } },
                    "spec": { "terminate": true },
                });
                patch_experiment(client, &namespace, name, &patch, "terminating").await?;
            }
            Action::SpendExperiment { name } => {
                let patch = json!({ "metadata": { "labels": { SPENT_LABEL: "true" } } });
                patch_experiment(client, &namespace, name, &patch, "marking spent").await?;
            }
            Action::SetPodMetadata {
                name,
                hash,
                wanted,
                previous,
            } => {
                set_pod_metadata(&sets, &pods, &patch_params, name, hash, wanted, previous).await?;
            }
            Action::PointService { service, hash } => {
                // A merge patch adds one key to the selector and leaves the keys the user (or Helm,
                // or Argo CD) wrote alone; the selector map is atomic for server-side apply.
                let patch = json!({
                    "metadata": { "annotations": { MANAGED_BY_ROLLOUTS_ANNOTATION: rollout.name_any() } },
                    "spec": { "selector": { POD_TEMPLATE_HASH_LABEL: hash } },
                });
                let result = services
                    .patch(service, &patch_params, &Patch::Merge(&patch))
                    .await;
                result.map_err(|source| {
                    write_error(format!("pointing Service {service} at {hash}"), source)
                })?;
            }
        }
    }
    Ok(())
}

/// Creates the Experiment of an experiment step. One of that name this rollout controls is this
/// one, created by an earlier attempt whose status write did not land; one it does not control
/// is a collision the user must clear.
async fn create_experiment(
    client: &Client,
    rollout: &Rollout,
    experiment: &Experiment,
) -> Result<(), Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &namespace);
    let name = experiment.name_any();
    let mut experiment = experiment.clone();
    // The rollout's controller instance runs its experiments.
    if let Some(id) = rollout.labels().get(INSTANCE_ID_LABEL) {
        experiment
            .labels_mut()
            .insert(INSTANCE_ID_LABEL.to_string(), id.clone());
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    // As for runs: a name held by an Experiment this rollout does not own (a leftover of a
    // rollout of the same name, deleted and created again) is a collision, and the next free
    // `.N` name is tried; the plan finds its experiment by owner, version and step. One this
    // rollout owns under the name is this experiment, created by an earlier attempt.
    let uid = rollout.uid().unwrap_or_default();
    let mut taken = Vec::new();
    for candidate in collision_names(&name).take(RUN_NAME_ATTEMPTS) {
        experiment.metadata.name = Some(candidate.clone());
        match experiments.create(&params, &experiment).await {
            Ok(_) => return Ok(()),
            Err(e) if is_already_exists(&e) => {
                let existing = experiments.get(&candidate).await.map_err(|source| {
                    write_error(format!("reading Experiment {candidate}"), source)
                })?;
                if controlled_by(existing.owner_references(), &uid) {
                    return Ok(());
                }
                taken.push(candidate);
            }
            Err(source) => {
                return Err(write_error(
                    format!("creating Experiment {candidate}"),
                    source,
                ));
            }
        }
    }
    Err(Error::Collision(format!(
        "the Experiment names {} are taken by Experiments Rollout {} does not own",
        taken.join(", "),
        rollout.name_any()
    )))
}

/// A merge patch of one of the rollout's Experiments; one already gone needs nothing.
async fn patch_experiment(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
    doing: &str,
) -> Result<(), Error> {
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match experiments.patch(name, &params, &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(source) => Err(write_error(format!("{doing} Experiment {name}"), source)),
    }
}

/// Creates an AnalysisRun: its templates are read now (a run keeps the metrics it started
/// with), merged, and given the rollout's arguments. A template or argument that cannot be
/// resolved still creates the run, in phase Error with the reason, so the rollout reports it
/// as any failed analysis, and a person sees why on the run.
async fn create_run(client: &Client, rollout: &Rollout, run: &NewRun) -> Result<(), Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let merged =
        crate::analysis::templates::read_merged(client, &namespace, &run.analysis.templates)
            .await?;
    let rollout_json = serde_json::to_value(rollout).unwrap_or_default();
    let values = RolloutValues {
        rollout: &rollout_json,
        stable_hash: run.stable_hash.as_deref(),
        latest_hash: Some(&run.hash),
    };
    let resolved = merged.and_then(|template| run_spec(&template, &run.analysis, values));
    let (spec, error) = match resolved {
        Ok(spec) => (spec, None),
        Err(e) => (AnalysisRunSpec::default(), Some(e.to_string())),
    };

    let mut labels = BTreeMap::from([
        (POD_TEMPLATE_HASH_LABEL.to_string(), run.hash.clone()),
        (ROLLOUT_TYPE_LABEL.to_string(), run.kind.label().to_string()),
    ]);
    if let RunKind::Step(index) = run.kind {
        labels.insert(STEP_INDEX_LABEL.into(), index.to_string());
    }
    // The rollout's controller instance measures its runs.
    if let Some(id) = rollout.labels().get(INSTANCE_ID_LABEL) {
        labels.insert(INSTANCE_ID_LABEL.to_string(), id.clone());
    }
    let mut annotations = BTreeMap::new();
    if let Some(extra) = run.analysis.analysis_run_metadata.as_ref() {
        labels.extend(extra.labels.clone());
        annotations.extend(extra.annotations.clone());
    }
    let mut object = AnalysisRun {
        metadata: ObjectMeta {
            name: Some(run.name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let uid = rollout.uid().unwrap_or_default();
    // A name held by a run this rollout does not own (a leftover of a rollout of the same name,
    // deleted and created again) is a collision: the next free `.N` name is tried, as Argo Rollouts
    // does; the plan finds the run by its labels. A run this rollout owns under the name is this
    // run, created by an earlier attempt whose status write did not land.
    let mut taken = Vec::new();
    for name in collision_names(&run.name).take(RUN_NAME_ATTEMPTS) {
        object.metadata.name = Some(name.clone());
        let result = runs.create(&params, &object).await;
        match result {
            Ok(_) => {
                if let Some(message) = error {
                    report_unrunnable(&runs, &name, &message).await?;
                }
                return Ok(());
            }
            Err(e) if is_already_exists(&e) => {
                let existing = runs
                    .get(&name)
                    .await
                    .map_err(|source| write_error(format!("reading AnalysisRun {name}"), source))?;
                if controlled_by(existing.owner_references(), &uid) {
                    return Ok(());
                }
                taken.push(name);
            }
            Err(source) => {
                return Err(write_error(format!("creating AnalysisRun {name}"), source));
            }
        }
    }
    Err(Error::Collision(format!(
        "the AnalysisRun names {} are taken by runs Rollout {} does not own",
        taken.join(", "),
        rollout.name_any()
    )))
}

/// How many names a new AnalysisRun (or Experiment) tries before its creation fails as a
/// collision.
const RUN_NAME_ATTEMPTS: usize = 10;

/// `name`, then `name.2`, `name.3`, …: the names a new AnalysisRun or Experiment tries in turn.
fn collision_names(name: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(name.to_string()).chain((2..).map(move |n| format!("{name}.{n}")))
}

/// Whether the owner references name `uid` as the controller.
fn controlled_by(
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    uid: &str,
) -> bool {
    owners
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Puts a run whose templates or arguments cannot be resolved in phase Error, with the reason.
pub(crate) async fn report_unrunnable(
    runs: &Api<AnalysisRun>,
    name: &str,
    message: &str,
) -> Result<(), Error> {
    let patch = json!({ "status": { "phase": "Error", "message": message } });
    let result = runs
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    result.map_err(|source| {
        write_error(
            format!("reporting why AnalysisRun {name} cannot run"),
            source,
        )
    })?;
    Ok(())
}

/// Moves a version's ephemeral metadata: the pod template first (so pods created meanwhile get
/// it), then each pod, then the record on the ReplicaSet, so a failure half-way is retried whole.
#[allow(clippy::too_many_arguments)]
async fn set_pod_metadata(
    sets: &Api<ReplicaSet>,
    pods: &Api<Pod>,
    params: &PatchParams,
    name: &str,
    hash: &str,
    wanted: &PodTemplateMetadata,
    previous: &PodTemplateMetadata,
) -> Result<(), Error> {
    let change = |wanted: &BTreeMap<String, String>, previous: &BTreeMap<String, String>| {
        let mut map = serde_json::Map::new();
        for key in previous.keys().filter(|k| !wanted.contains_key(*k)) {
            map.insert(key.clone(), serde_json::Value::Null);
        }
        for (key, value) in wanted {
            map.insert(key.clone(), value.clone().into());
        }
        serde_json::Value::Object(map)
    };
    let meta = json!({
        "labels": change(&wanted.labels, &previous.labels),
        "annotations": change(&wanted.annotations, &previous.annotations),
    });
    let patch = json!({ "spec": { "template": { "metadata": meta } } });
    let result = sets.patch(name, params, &Patch::Merge(&patch)).await;
    result.map_err(|source| {
        write_error(
            format!("setting the pod template metadata of ReplicaSet {name}"),
            source,
        )
    })?;

    let selector = ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}"));
    let listed = pods.list_metadata(&selector).await;
    let listed = listed
        .map_err(|source| write_error(format!("listing the pods of ReplicaSet {name}"), source))?;
    let patch = json!({ "metadata": meta });
    for pod in listed.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let done = wanted.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && wanted
                .annotations
                .iter()
                .all(|(k, v)| annotations.get(k) == Some(v))
            && previous
                .labels
                .keys()
                .all(|k| wanted.labels.contains_key(k) || !labels.contains_key(k))
            && previous
                .annotations
                .keys()
                .all(|k| wanted.annotations.contains_key(k) || !annotations.contains_key(k));
        if done {
            continue;
        }
        let pod_name = pod.name_any();
        let result = pods.patch(&pod_name, params, &Patch::Merge(&patch)).await;
        match result {
            Err(e) if is_not_found(&e) => {}
            other => other.map(drop).map_err(|source| {
                write_error(format!("setting the metadata of pod {pod_name}"), source)
            })?,
        }
    }

    let record = serde_json::to_string(wanted).unwrap_or_default();
    let patch = json!({ "metadata": { "annotations": { EPHEMERAL_ANNOTATION: record } } });
    let result = sets.patch(name, params, &Patch::Merge(&patch)).await;
    result.map_err(|source| {
        write_error(
            format!("recording the pod metadata of ReplicaSet {name}"),
            source,
        )
    })?;
    Ok(())
}

/// Replaces the rollout's status with `status` when it changed; a concurrent change (a promote,
/// an abort) makes the write fail with a conflict, and the next reconcile plans with it.
/// Returns whether the write made a new version (a write the API server found to change nothing
/// keeps the version, and no watch event follows it).
pub async fn write_status(
    client: &Client,
    rollout: &Rollout,
    status: &RolloutStatus,
) -> Result<bool, Error> {
    if rollout.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let api: Api<Rollout> =
        Api::namespaced(client.clone(), &rollout.namespace().unwrap_or_default());
    let mut updated = rollout.clone();
    updated.status = Some(status.clone());
    updated.meta_mut().managed_fields = None;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let result = api
        .replace_status(&rollout.name_any(), &params, &updated)
        .await;
    match result {
        Ok(written) => Ok(written.resource_version() != rollout.resource_version()),
        Err(e) if is_conflict(&e) => Err(Error::Conflict(rollout.name_any())),
        Err(source) => Err(write_error(
            format!("writing the status of Rollout {}", rollout.name_any()),
            source,
        )),
    }
}

fn write_error(action: String, source: kube::Error) -> Error {
    Error::Write { action, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(available: i32, step: i32) -> Rollout {
        let mut rollout = Rollout::new("web", sluice_api::RolloutSpec::default());
        rollout.metadata.namespace = Some("shop".into());
        rollout.status = Some(RolloutStatus {
            replicas: Some(5),
            available_replicas: Some(available),
            current_step_index: Some(step),
            ..RolloutStatus::default()
        });
        rollout
    }

    fn condition(status: &str, message: &str, at: &str) -> sluice_api::RolloutCondition {
        serde_json::from_value(serde_json::json!({
            "type": "Progressing", "status": status, "reason": "ReplicaSetUpdated",
            "message": message, "lastUpdateTime": at, "lastTransitionTime": "2026-01-01T00:00:00Z",
        }))
        .expect("a condition")
    }

    #[test]
    fn the_messages_and_update_times_that_follow_the_counts_are_minor_and_nothing_else_is() {
        let old = RolloutStatus {
            phase: Some(sluice_api::RolloutPhase::Progressing),
            message: Some("more replicas need to be updated".into()),
            conditions: vec![condition(
                "True",
                "ReplicaSet web-2 is progressing",
                "2026-01-01T00:00:01Z",
            )],
            ..RolloutStatus::default()
        };
        let new = RolloutStatus {
            available_replicas: Some(2),
            message: Some("updated replicas are still becoming available".into()),
            conditions: vec![condition(
                "True",
                "ReplicaSet web-2 is progressing",
                "2026-01-01T00:00:09Z",
            )],
            ..old.clone()
        };
        assert!(only_counts_differ(&old, &new, true));
        let reworded = RolloutStatus {
            conditions: vec![condition(
                "True",
                "ReplicaSet web-3 is progressing",
                "2026-01-01T00:00:09Z",
            )],
            ..new.clone()
        };
        assert!(
            !only_counts_differ(&old, &reworded, true),
            "a condition saying something new"
        );
        let flipped = RolloutStatus {
            conditions: vec![condition(
                "False",
                "ReplicaSet web-2 is progressing",
                "2026-01-01T00:00:09Z",
            )],
            ..new.clone()
        };
        assert!(
            !only_counts_differ(&old, &flipped, true),
            "a condition's status"
        );
        let mut created = old.clone();
        created.conditions[0].reason = "NewReplicaSetCreated".into();
        assert!(
            only_counts_differ(&created, &new, true),
            "the reconcile after the set's creation says it is updated, nothing new"
        );
        let weighed = |canary: i32| {
            serde_json::from_value::<sluice_api::CanaryStatus>(serde_json::json!({
                "weights": {
                    "canary": { "weight": canary, "podTemplateHash": "web-2" },
                    "stable": { "weight": 100 - canary, "podTemplateHash": "web-1" },
                }
            }))
            .expect("a canary status")
        };
        let share = |canary: i32| RolloutStatus {
            canary: Some(weighed(canary)),
            ..new.clone()
        };
        assert!(
            only_counts_differ(&share(20), &share(40), true),
            "without a router the weights are the pods' shares"
        );
        assert!(
            !only_counts_differ(&share(20), &share(40), false),
            "a router's weight is news"
        );
        let paused = RolloutStatus {
            phase: Some(sluice_api::RolloutPhase::Paused),
            ..new
        };
        assert!(
            !only_counts_differ(&old, &paused, true),
            "a phase, its message with it"
        );
    }

    #[test]
    fn a_count_only_change_waits_at_most_a_while_and_any_other_change_never_waits() {
        let lagging = LaggingCounts::default();
        let t0 = Instant::now();
        let old = at(3, 1);
        let counts = at(4, 1).status.unwrap_or_default();
        assert_eq!(lagging.wait(&old, &counts, t0), Some(COUNTS_AT_MOST));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            lagging.wait(&old, &counts, later),
            Some(COUNTS_AT_MOST - Duration::from_secs(2)),
            "the wait is counted from the first one"
        );
        assert_eq!(
            lagging.wait(&old, &counts, t0 + COUNTS_AT_MOST),
            None,
            "then it is due"
        );
        let step = at(4, 2).status.unwrap_or_default();
        assert_eq!(
            lagging.wait(&old, &step, t0),
            None,
            "a step is written at once"
        );
        let mut phase = counts.clone();
        phase.phase = Some(sluice_api::RolloutPhase::Healthy);
        assert_eq!(lagging.wait(&old, &phase, t0), None, "so is a phase");
        assert_eq!(
            lagging.wait(&old, &old.status.clone().unwrap_or_default(), t0),
            None
        );
        lagging.written("shop", "web");
        assert_eq!(
            lagging.wait(&old, &counts, later),
            Some(COUNTS_AT_MOST),
            "a new wait"
        );
    }
}
