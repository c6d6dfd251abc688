//! What the plugin shows about a rollout, computed purely from the objects read from the cluster:
//! its health, step, weights, images, and (from `owned.rs`) the tree of revisions, ReplicaSets,
//! pods and AnalysisRuns, with its Experiments (modelled as `experiment.rs` models them) under
//! the revisions they were made for. The tree, the table and `-o json|yaml` all print this one
//! model.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use serde::Serialize;
use sluice_api::{
    AnalysisRun, ConditionStatus, Experiment, Rollout, RolloutConditionType, RolloutPhase,
    RolloutStatus,
    vocab::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, reason},
};

pub use super::owned::{
    AnalysisRunInfo, PodInfo, ReplicaSetInfo, RevisionInfo, RunCounts, SetStatus, pod_info,
    run_info,
};
use super::{
    experiment::ExperimentInfo,
    owned::{created, owned_by, revisions},
};

/// A rollout and the objects it owns, as read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// The Rollout.
    pub rollout: Rollout,
    /// ReplicaSets (those owned neither by the rollout nor by one of its Experiments are
    /// ignored).
    pub replica_sets: Vec<ReplicaSet>,
    /// Pods (those not owned by one of those ReplicaSets are ignored).
    pub pods: Vec<Pod>,
    /// AnalysisRuns (those owned neither by the rollout nor by one of its Experiments are
    /// ignored).
    pub analysis_runs: Vec<AnalysisRun>,
    /// Experiments (those not owned by the rollout are ignored).
    pub experiments: Vec<Experiment>,
}

/// The health of a rollout, as `status` and the STATUS column report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Health {
    /// Fully rolled out and available.
    Healthy,
    /// Moving towards the desired state (or not yet observed by the controller).
    Progressing,
    /// Waiting for a promotion, a timer or `spec.paused: false`.
    Paused,
    /// Aborted, invalid, or past its progress deadline.
    Degraded,
}

impl Health {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Progressing => "Progressing",
            Self::Paused => "Paused",
            Self::Degraded => "Degraded",
        }
    }
}

/// Everything shown about one rollout.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutInfo {
    /// Name of the rollout.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Its health.
    pub status: Health,
    /// Why it has that health (the pause reason when paused).
    pub message: String,
    /// `Canary`, `BlueGreen`, or empty when the spec has neither.
    pub strategy: String,
    /// Canary step as `index/count`, when the canary has steps.
    pub step: Option<String>,
    /// The canary weight the current step asks for.
    pub set_weight: Option<i32>,
    /// The canary weight in effect.
    pub actual_weight: Option<i32>,
    /// Images of the running ReplicaSets, with their roles.
    pub images: Vec<ImageInfo>,
    /// Pod counts.
    pub replicas: Replicas,
    /// Newest revision first.
    pub revisions: Vec<RevisionInfo>,
    /// The rollout's Experiments, newest revision first, oldest first within one; each drawn
    /// under its revision (`revision` is always set).
    pub experiments: Vec<ExperimentInfo>,
}

/// Pod counts of a rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Replicas {
    /// `spec.replicas`.
    pub desired: i32,
    /// Pods of the rollout.
    pub current: i32,
    /// Pods with the current template.
    pub updated: i32,
    /// Ready pods.
    pub ready: i32,
    /// Available pods.
    pub available: i32,
}

/// A role a ReplicaSet plays, shown as a marker beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The last fully promoted version.
    Stable,
    /// The version being rolled out by a canary.
    Canary,
    /// Behind the blue/green active Service.
    Active,
    /// Behind the blue/green preview Service.
    Preview,
}

impl Role {
    /// The marker's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
            Self::Active => "active",
            Self::Preview => "preview",
        }
    }
}

/// An image and the roles of the ReplicaSets running it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// The image reference.
    pub image: String,
    /// Roles, in a fixed order.
    pub roles: Vec<Role>,
}

impl RolloutInfo {
    /// The model of `objects`.
    pub fn new(objects: &Objects) -> Self {
        let ro = &objects.rollout;
        let status = ro.status.clone().unwrap_or_default();
        let (health, message) = health(ro);
        let strategy = if ro.spec.canary().is_some() {
            "Canary"
        } else if ro.spec.blue_green().is_some() {
            "BlueGreen"
        } else {
            ""
        };
        let mut revisions = revisions(objects, &status);
        let experiments = experiments(objects, &mut revisions);
        let mut images: BTreeMap<String, BTreeSet<Role>> = BTreeMap::new();
        for rs in revisions.iter().flat_map(|r| &r.replica_sets) {
            if rs.replicas > 0 {
                for image in &rs.images {
                    images
                        .entry(image.clone())
                        .or_default()
                        .extend(rs.roles.iter().copied());
                }
            }
        }
        Self {
            name: ro.metadata.name.clone().unwrap_or_default(),
            namespace: ro.metadata.namespace.clone().unwrap_or_default(),
            created: created(&ro.metadata),
            status: health,
            message,
            strategy: strategy.to_string(),
            step: step(ro, &status),
            set_weight: set_weight(ro, &status),
            actual_weight: actual_weight(ro, &status, &revisions),
            images: images
                .into_iter()
                .map(|(image, roles)| ImageInfo {
                    image,
                    roles: roles.into_iter().collect(),
                })
                .collect(),
            replicas: Replicas {
                desired: ro.spec.desired_replicas(),
                current: status.replicas.unwrap_or(0),
                updated: status.updated_replicas.unwrap_or(0),
                ready: status.ready_replicas.unwrap_or(0),
                available: status.available_replicas.unwrap_or(0),
            },
            revisions,
            experiments,
        }
    }
}

/// The rollout's Experiments, each with the revision it hangs under: the one its
/// `rollout.argoproj.io/revision` annotation names (the controller writes it, as Argo's does),
/// else the revision of the rollout's ReplicaSet with its pod-template-hash label, else 0 (as
/// a run without either). A revision with an experiment but no ReplicaSet or run left is added
/// to `revisions`, which stay newest first.
fn experiments(objects: &Objects, revisions: &mut Vec<RevisionInfo>) -> Vec<ExperimentInfo> {
    let uid = objects.rollout.metadata.uid.clone().unwrap_or_default();
    let mut owned: Vec<&Experiment> = objects
        .experiments
        .iter()
        .filter(|e| !uid.is_empty() && owned_by(&e.metadata.owner_references, &uid))
        .collect();
    owned.sort_by(|a, b| {
        (created(&a.metadata), &a.metadata.name).cmp(&(created(&b.metadata), &b.metadata.name))
    });
    let mut out: Vec<ExperimentInfo> = owned
        .into_iter()
        .map(|e| {
            let meta = &e.metadata;
            let annotated = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .and_then(|r| r.parse().ok());
            let by_hash = || {
                let hash = meta.labels.as_ref()?.get(POD_TEMPLATE_HASH_LABEL)?;
                revisions
                    .iter()
                    .find(|r| r.replica_sets.iter().any(|rs| &rs.hash == hash))
                    .map(|r| r.revision)
            };
            let mut info = ExperimentInfo::of(
                e,
                &objects.replica_sets,
                &objects.pods,
                &objects.analysis_runs,
                None,
            );
            info.revision = Some(annotated.or_else(by_hash).unwrap_or(0));
            info
        })
        .collect();
    // Stable: oldest first within a revision.
    out.sort_by_key(|e| std::cmp::Reverse(e.revision));
    for revision in out.iter().filter_map(|e| e.revision) {
        if let Err(at) = revisions.binary_search_by(|r| revision.cmp(&r.revision)) {
            revisions.insert(
                at,
                RevisionInfo {
                    revision,
                    replica_sets: Vec::new(),
                    analysis_runs: Vec::new(),
                },
            );
        }
    }
    out
}

/// The rollout's health and why. The controller's `status.phase` counts only once it has seen
/// the current generation: until then the rollout is Progressing, so `status --watch` right
/// after a change never reports the state from before it.
pub fn health(ro: &Rollout) -> (Health, String) {
    let Some(status) = ro.status.as_ref() else {
        return (
            Health::Progressing,
            "waiting for the controller to observe the rollout".into(),
        );
    };
    if let Some(invalid) = status
        .conditions
        .iter()
        .find(|c| c.type_ == RolloutConditionType::InvalidSpec && c.status == ConditionStatus::True)
    {
        return (
            Health::Degraded,
            format!("InvalidSpec: {}", invalid.message),
        );
    }
    let generation = ro.metadata.generation.map(|g| g.to_string());
    if generation.is_some() && status.observed_generation != generation {
        return (
            Health::Progressing,
            format!(
                "waiting for the controller to observe generation {}",
                generation.unwrap_or_default()
            ),
        );
    }
    let message = status.message.clone().unwrap_or_default();
    match status.phase {
        Some(RolloutPhase::Healthy) => (Health::Healthy, message),
        Some(RolloutPhase::Progressing) => (Health::Progressing, message),
        Some(RolloutPhase::Paused) => (Health::Paused, message),
        Some(RolloutPhase::Degraded) => (Health::Degraded, message),
        None => fallback_health(ro, status),
    }
}

/// Health from the raw fields, for a status written without a phase (older controllers).
fn fallback_health(ro: &Rollout, status: &RolloutStatus) -> (Health, String) {
    let reasons = pause_reasons(ro);
    if status.abort == Some(true) {
        (Health::Degraded, reason::ROLLOUT_ABORTED.into())
    } else if !reasons.is_empty() {
        (Health::Paused, reasons.join(", "))
    } else if status.current_pod_hash.is_some()
        && status.stable_rs == status.current_pod_hash
        && status.updated_replicas.unwrap_or(0) >= ro.spec.desired_replicas()
        && status.available_replicas.unwrap_or(0) >= status.updated_replicas.unwrap_or(0)
    {
        (Health::Healthy, String::new())
    } else {
        (Health::Progressing, String::new())
    }
}

/// Why the rollout is paused: the controller's pause conditions, and `spec.paused`.
pub fn pause_reasons(ro: &Rollout) -> Vec<String> {
    let mut reasons: Vec<String> = ro
        .status
        .iter()
        .flat_map(|s| &s.pause_conditions)
        .map(|c| format!("{:?}", c.reason))
        .collect();
    if ro.spec.is_paused() {
        reasons.push("spec.paused".into());
    }
    reasons
}

/// Whether the canary is in flight: a stable version exists and is not the current one.
pub(super) fn canary_running(status: &RolloutStatus) -> bool {
    status.stable_rs.is_some() && status.stable_rs != status.current_pod_hash
}

fn step(ro: &Rollout, status: &RolloutStatus) -> Option<String> {
    let steps = &ro.spec.canary()?.steps;
    if steps.is_empty() {
        return None;
    }
    let index = status.current_step_index?;
    Some(format!("{index}/{}", steps.len()))
}

/// The weight the current step asks for: the last `setWeight` at or before it; 100 past the
/// last step, 0 when aborted.
fn set_weight(ro: &Rollout, status: &RolloutStatus) -> Option<i32> {
    let steps = &ro.spec.canary()?.steps;
    if status.abort == Some(true) && canary_running(status) {
        return Some(0);
    }
    if !canary_running(status) {
        return Some(100);
    }
    // The controller's own rule, so the plugin never shows another weight than it sets.
    Some(sluice_api::model::weight_at(
        steps,
        status.current_step_index.unwrap_or(0),
    ))
}

/// The weight in effect: what the controller last set, or the canary's share of available pods.
fn actual_weight(ro: &Rollout, status: &RolloutStatus, revisions: &[RevisionInfo]) -> Option<i32> {
    ro.spec.canary()?;
    if !canary_running(status) {
        return Some(100);
    }
    if let Some(weights) = status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
        return Some(weights.canary.weight);
    }
    let available = status.available_replicas.unwrap_or(0);
    let canary: i32 = revisions
        .iter()
        .flat_map(|r| &r.replica_sets)
        .filter(|rs| rs.roles.contains(&Role::Canary))
        .map(|rs| rs.available)
        .sum();
    Some(if available > 0 {
        canary * 100 / available
    } else {
        0
    })
}
