//! What the plugin shows about a rollout, computed purely from the objects read from the cluster:
//! its health, step, weights, images, and the tree of revisions, ReplicaSets, pods and
//! AnalysisRuns. The tree, the table and `-o json|yaml` all print this one model.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::{
    api::{apps::v1::ReplicaSet, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use serde::Serialize;

use crate::api::{
    AnalysisPhase, AnalysisRun, CanaryStep, ConditionStatus, POD_TEMPLATE_HASH_LABEL, PauseReason,
    Rollout, RolloutConditionType, RolloutPhase, RolloutStatus,
};

/// Annotation holding the revision number of a ReplicaSet or AnalysisRun.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";

/// A rollout and the objects it owns, as read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// The Rollout.
    pub rollout: Rollout,
    /// ReplicaSets (those not owned by the rollout are ignored).
    pub replica_sets: Vec<ReplicaSet>,
    /// Pods (those not owned by one of the rollout's ReplicaSets are ignored).
    pub pods: Vec<Pod>,
    /// AnalysisRuns (those not owned by the rollout are ignored).
    pub analysis_runs: Vec<AnalysisRun>,
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
        let revisions = revisions(objects, &status);
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
        }
    }
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
        (Health::Degraded, "RolloutAborted".into())
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

/// Whether a paused rollout waits for a person (a promotion or `spec.paused: false`) rather than
/// a timer: a pause step without a duration, a blue/green preview without automatic promotion, an
/// inconclusive analysis, or `spec.paused`. A timed pause ends by itself.
pub fn waits_for_a_person(ro: &Rollout) -> bool {
    if ro.spec.is_paused() {
        return true;
    }
    let status = ro.status.clone().unwrap_or_default();
    status.pause_conditions.iter().any(|c| match c.reason {
        PauseReason::CanaryPauseStep => {
            let index = usize::try_from(status.current_step_index.unwrap_or(0)).unwrap_or(0);
            let step = ro.spec.canary().and_then(|c| c.steps.get(index));
            !matches!(step, Some(CanaryStep::Pause(p)) if p.duration.is_some())
        }
        PauseReason::BlueGreenPause => ro
            .spec
            .blue_green()
            .is_none_or(|b| !b.auto_promotes() || b.auto_promotion_seconds.is_none()),
        PauseReason::InconclusiveAnalysis | PauseReason::InconclusiveExperiment => true,
    })
}

/// Whether the canary is in flight: a stable version exists and is not the current one.
fn canary_running(status: &RolloutStatus) -> bool {
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
    let index = usize::try_from(status.current_step_index.unwrap_or(0)).unwrap_or(0);
    if index >= steps.len() || !canary_running(status) {
        return Some(100);
    }
    Some(
        steps[..=index]
            .iter()
            .rev()
            .find_map(|s| match s {
                CanaryStep::SetWeight(w) => Some(*w),
                _ => None,
            })
            .unwrap_or(0),
    )
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

fn created(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

fn owned_by(owners: &Option<Vec<OwnerReference>>, uid: &str) -> bool {
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
fn revisions(objects: &Objects, status: &RolloutStatus) -> Vec<RevisionInfo> {
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
        let spec = rs.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1);
        let available = rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
        let mut pods: Vec<&Pod> = objects
            .pods
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
        let set = ReplicaSetInfo {
            name: rs.metadata.name.clone().unwrap_or_default(),
            hash,
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
        };
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
