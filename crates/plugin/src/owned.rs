//! The objects a rollout owns, grouped by revision: its ReplicaSets with their roles (stable,
//! canary, active, preview) and pods, and its AnalysisRuns with their measurement counts. Pure,
//! like the rest of the model in `info.rs`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    api::{apps::v1::ReplicaSet, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use serde::Serialize;
use sluice_api::{
    AnalysisPhase, AnalysisRun, RolloutStatus,
    vocab::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION},
};

use super::info::{Objects, Role, canary_running};

/// One revision of the rollout and what belongs to it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    /// The revision number.
    pub revision: i64,
    /// Its ReplicaSets (one, normally).
    pub replica_sets: Vec<ReplicaSetInfo>,
    /// Its AnalysisRuns, oldest first.
    pub analysis_runs: Vec<AnalysisRunInfo>,
}

/// The state of a ReplicaSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SetStatus {
    /// All its pods are available.
    Healthy,
    /// Pods are starting or stopping.
    Progressing,
    /// Scaled to zero.
    ScaledDown,
}

/// A ReplicaSet of the rollout.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetInfo {
    /// Its name.
    pub name: String,
    /// Its pod template hash.
    pub hash: String,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Its state.
    pub status: SetStatus,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Available pods.
    pub available: i32,
    /// Its container images.
    pub images: Vec<String>,
    /// Its pods, oldest first.
    pub pods: Vec<PodInfo>,
}

/// A pod of the rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Its status as kubectl words it (`Running`, `ContainerCreating`, `CrashLoopBackOff`, …).
    pub status: String,
    /// Ready containers out of all, e.g. `1/1`.
    pub ready: String,
    /// Container restarts.
    pub restarts: i32,
}

/// An AnalysisRun of the rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunInfo {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Its phase.
    pub phase: AnalysisPhase,
    /// Counts of measurements by outcome.
    pub counts: RunCounts,
}

/// Measurements of a run by outcome, summed over its metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Successful measurements.
    pub successful: i32,
    /// Failed measurements.
    pub failed: i32,
    /// Inconclusive measurements.
    pub inconclusive: i32,
    /// Measurements that errored.
    pub error: i32,
}

/// When the object was created.
pub(super) fn created(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

pub(crate) fn owned_by(owners: &Option<Vec<OwnerReference>>, uid: &str) -> bool {
    owners.iter().flatten().any(|o| o.uid == uid)
}

fn revision_of(meta: &ObjectMeta) -> Option<i64> {
    meta.annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)?
        .parse()
        .ok()
}

fn hash_of(meta: &ObjectMeta) -> Option<&String> {
    meta.labels.as_ref()?.get(POD_TEMPLATE_HASH_LABEL)
}

/// The revisions, newest first, with their sets, pods and runs.
pub(super) fn revisions(objects: &Objects, status: &RolloutStatus) -> Vec<RevisionInfo> {
    let ro = &objects.rollout;
    let uid = ro.metadata.uid.clone().unwrap_or_default();
    let blue_green = status.blue_green.clone().unwrap_or_default();
    let mut by_revision: BTreeMap<i64, RevisionInfo> = BTreeMap::new();
    let mut revision_of_hash: BTreeMap<String, i64> = BTreeMap::new();
    for rs in objects
        .replica_sets
        .iter()
        .filter(|rs| owned_by(&rs.metadata.owner_references, &uid))
    {
        let hash = hash_of(&rs.metadata).cloned().unwrap_or_default();
        let revision = revision_of(&rs.metadata).unwrap_or(0);
        revision_of_hash.insert(hash.clone(), revision);
        let mut roles = Vec::new();
        let is = |h: &Option<String>| h.as_deref() == Some(hash.as_str());
        if is(&status.stable_rs) {
            roles.push(Role::Stable);
        }
        if ro.spec.canary().is_some() && is(&status.current_pod_hash) && canary_running(status) {
            roles.push(Role::Canary);
        }
        if ro.spec.blue_green().is_some() {
            if is(&blue_green.active_selector) {
                roles.push(Role::Active);
            } else if is(&blue_green.preview_selector) {
                roles.push(Role::Preview);
            }
        }
        let set = replica_set_info(rs, &objects.pods, roles);
        by_revision
            .entry(revision)
            .or_insert_with(|| empty_revision(revision))
            .replica_sets
            .push(set);
    }
    let mut runs: Vec<&AnalysisRun> = objects
        .analysis_runs
        .iter()
        .filter(|r| owned_by(&r.metadata.owner_references, &uid))
        .collect();
    runs.sort_by(|a, b| {
        (created(&a.metadata), &a.metadata.name).cmp(&(created(&b.metadata), &b.metadata.name))
    });
    for run in runs {
        let revision = revision_of(&run.metadata)
            .or_else(|| hash_of(&run.metadata).and_then(|h| revision_of_hash.get(h).copied()))
            .unwrap_or(0);
        by_revision
            .entry(revision)
            .or_insert_with(|| empty_revision(revision))
            .analysis_runs
            .push(run_info(run));
    }
    let mut revisions: Vec<RevisionInfo> = by_revision.into_values().rev().collect();
    for r in &mut revisions {
        r.replica_sets.sort_by(|a, b| a.name.cmp(&b.name));
    }
    revisions
}

/// The summary of a ReplicaSet with its roles and the pods (among `pods`) it owns, oldest
/// first: a rollout's and an experiment's trees show their sets alike.
pub(crate) fn replica_set_info(rs: &ReplicaSet, pods: &[Pod], roles: Vec<Role>) -> ReplicaSetInfo {
    let spec = rs.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let available = rs
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
    let mut pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| owned_by(&p.metadata.owner_references, &rs_uid))
        .collect();
    pods.sort_by(|a, b| {
        (created(&a.metadata), &a.metadata.name).cmp(&(created(&b.metadata), &b.metadata.name))
    });
    let images = spec
        .template
        .and_then(|t| t.spec)
        .map(|s| s.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default();
    ReplicaSetInfo {
        name: rs.metadata.name.clone().unwrap_or_default(),
        hash: hash_of(&rs.metadata).cloned().unwrap_or_default(),
        created: created(&rs.metadata),
        roles,
        status: match replicas {
            0 => SetStatus::ScaledDown,
            n if available >= n => SetStatus::Healthy,
            _ => SetStatus::Progressing,
        },
        replicas,
        available,
        images,
        pods: pods.into_iter().map(pod_info).collect(),
    }
}

fn empty_revision(revision: i64) -> RevisionInfo {
    RevisionInfo {
        revision,
        replica_sets: Vec::new(),
        analysis_runs: Vec::new(),
    }
}

/// The summary of an AnalysisRun.
pub fn run_info(run: &AnalysisRun) -> AnalysisRunInfo {
    let status = run.status.clone().unwrap_or_default();
    let mut counts = RunCounts::default();
    for m in &status.metric_results {
        counts.successful += m.successful.unwrap_or(0);
        counts.failed += m.failed.unwrap_or(0);
        counts.inconclusive += m.inconclusive.unwrap_or(0);
        counts.error += m.error.unwrap_or(0);
    }
    AnalysisRunInfo {
        name: run.metadata.name.clone().unwrap_or_default(),
        created: created(&run.metadata),
        phase: status.phase,
        counts,
    }
}

/// A pod's status in kubectl's words, its ready containers and its restarts.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .or_else(|| status.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let mut restarts = 0;
    let mut initializing = false;
    let init_total = spec.init_containers.as_ref().map_or(0, Vec::len);
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += c.restart_count;
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = format!(
                "Init:{}",
                t.reason
                    .clone()
                    .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code))
            );
        } else if c.started == Some(true) && c.ready {
            // A sidecar (restartable init container) that runs beside the main containers.
            continue;
        } else if let Some(w) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{init_total}");
        }
        initializing = true;
        break;
    }
    let mut ready = 0;
    if !initializing {
        restarts = 0;
        let mut running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            restarts += c.restart_count;
            let state = c.state.clone().unwrap_or_default();
            if let Some(w) = state
                .waiting
                .and_then(|w| w.reason)
                .filter(|r| !r.is_empty())
            {
                reason = w;
            } else if let Some(t) = state.terminated {
                reason = t
                    .reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code));
            } else if c.ready && state.running.is_some() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = "Running".into();
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        created: created(&pod.metadata),
        status: reason,
        ready: format!("{ready}/{}", spec.containers.len()),
        restarts,
    }
}
