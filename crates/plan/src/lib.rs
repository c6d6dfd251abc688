//! PURE decisions of the Rollout controller: no client, no clock, no I/O.
//!
//! This crate depends on the API and the pure analysis rules only; it has no Kubernetes client
//! to import, so a planner that reaches for the cluster does not compile.
//!
//! [`plan`] takes the rollout, what [`Observed`] holds for it, and the time, and returns the
//! [`Action`]s that move the rollout one step closer to what its spec asks, the status to
//! report, the events to record, and when to look again. Everything that matters is read back
//! from the cluster on the next call, so a restarted controller decides exactly the same.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod bluegreen;
pub mod canary;
pub mod conditions;
pub mod experiment;
pub mod metadata;
pub mod pause;
pub mod replicas;
pub mod replicasets;
pub mod restart;
pub mod rollback;
pub mod status;
pub mod traffic;
pub mod workload;

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{api::apps::v1::ReplicaSet, apimachinery::pkg::apis::meta::v1::Time};
use kube_core::ResourceExt;
use sluice_api::{
    IntOrPercent, ProblemKind, Rollout, RolloutStatus, SpecProblem, Strategy, validate,
    vocab::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, TEMPLATE_HASH_ANNOTATION, reason},
};

use self::replicasets::SetView;

/// What the cluster holds for one rollout, as read by `observe`.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The ReplicaSets the rollout owns.
    pub replica_sets: Vec<ReplicaSet>,
    /// Each Service the strategy names, by name; `None` when it does not exist.
    pub services: BTreeMap<String, Option<ServiceView>>,
    /// The rollout's pods, listed only while a restart is pending ([`restart::pending`]).
    pub pods: Option<Vec<restart::PodView>>,
    /// The AnalysisRuns the rollout owns.
    pub analysis_runs: Vec<analysis::RunView>,
    /// What a routed canary's router carries now (`None` without `trafficRouting`).
    pub traffic: Option<traffic::TrafficView>,
    /// Why templates the strategy names cannot be used (missing, invalid, requiring arguments
    /// the rollout does not give, or asking for what Sluice does not do), at the fields that
    /// name them ([`analysis::template_problems`]): the spec is invalid until they are mended.
    pub template_problems: Vec<SpecProblem>,
    /// The Deployment `spec.workloadRef` names, as read (`None` without one).
    pub workload: Option<workload::Workload>,
    /// The Experiments the rollout owns.
    pub experiments: Vec<canary::experiment::ExperimentView>,
}

/// The part of a Service the plan reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceView {
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
    /// The `managed-by-rollouts` annotation.
    pub managed_by: Option<String>,
}

/// One change to make in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the ReplicaSet of a new version.
    CreateReplicaSet(Box<ReplicaSet>),
    /// Set `spec.replicas` of the Deployment a `workloadRef` names (its `scaleDown` policy).
    ScaleWorkload {
        /// The Deployment.
        name: String,
        /// Its replicas now (for messages).
        from: i32,
        /// Its replicas after.
        to: i32,
    },
    /// Set a ReplicaSet's `spec.replicas`.
    ScaleReplicaSet {
        /// The ReplicaSet.
        name: String,
        /// Its replicas now (for messages).
        from: i32,
        /// Its replicas after.
        to: i32,
    },
    /// Delete an old ReplicaSet beyond `revisionHistoryLimit`.
    DeleteReplicaSet {
        /// The ReplicaSet.
        name: String,
    },
    /// Set one annotation of a ReplicaSet.
    AnnotateReplicaSet {
        /// The ReplicaSet.
        name: String,
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Evict a pod (a restart): its ReplicaSet replaces it.
    EvictPod {
        /// The pod.
        name: String,
    },
    /// Give a version's pod template and pods the ephemeral metadata of their role, removing
    /// what an earlier role put there.
    SetPodMetadata {
        /// The ReplicaSet.
        name: String,
        /// Its pod-template-hash (selects its pods).
        hash: String,
        /// The metadata its pods get.
        wanted: sluice_api::PodTemplateMetadata,
        /// The metadata its pods carry now.
        previous: sluice_api::PodTemplateMetadata,
    },
    /// Start an AnalysisRun from the rollout's templates and arguments.
    CreateAnalysisRun(Box<analysis::NewRun>),
    /// Ask a run nothing waits on any more to stop (`spec.terminate`).
    TerminateAnalysisRun {
        /// The run.
        name: String,
    },
    /// Mark a run a retry left behind ([`SPENT_LABEL`](sluice_api::vocab::SPENT_LABEL)).
    SpendAnalysisRun {
        /// The run.
        name: String,
    },
    /// Delete a completed run beyond the history limits.
    DeleteAnalysisRun {
        /// The run.
        name: String,
    },
    /// Remove one annotation of a ReplicaSet.
    UnannotateReplicaSet {
        /// The ReplicaSet.
        name: String,
        /// The annotation.
        key: &'static str,
    },
    /// Point a Service at one version: set its pod-template-hash selector and mark it managed.
    PointService {
        /// The Service.
        service: String,
        /// The pod template hash its selector gets.
        hash: String,
    },
    /// Create the Experiment of an experiment step (complete object, owned by the Rollout).
    CreateExperiment(Box<sluice_api::Experiment>),
    /// Stop an experiment nothing waits on any more (`spec.terminate: true`, and
    /// [`TERMINATED_LABEL`](sluice_api::vocab::TERMINATED_LABEL) set to
    /// [`TERMINATED_BY_CONTROLLER`](sluice_api::vocab::TERMINATED_BY_CONTROLLER), as for a run).
    TerminateExperiment {
        /// The Experiment.
        name: String,
    },
    /// Mark an Experiment a new attempt left behind
    /// ([`SPENT_LABEL`](sluice_api::vocab::SPENT_LABEL)): it no longer speaks for its version.
    SpendExperiment {
        /// The Experiment.
        name: String,
    },
}

impl std::fmt::Display for Action {
    /// One line for logs: what the action changes, never the whole object.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateReplicaSet(rs) => write!(
                f,
                "create ReplicaSet {} with {} replicas",
                rs.name_any(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            ),
            Action::ScaleReplicaSet { name, from, to } => {
                write!(f, "scale ReplicaSet {name} from {from} to {to}")
            }
            Action::DeleteReplicaSet { name } => write!(f, "delete ReplicaSet {name}"),
            Action::ScaleWorkload { name, from, to } => {
                write!(f, "scale Deployment {name} from {from} to {to}")
            }
            Action::EvictPod { name } => write!(f, "evict pod {name}"),
            Action::AnnotateReplicaSet { name, key, value } => {
                write!(f, "annotate ReplicaSet {name} with {key}={value}")
            }
            Action::UnannotateReplicaSet { name, key } => {
                write!(f, "remove annotation {key} from ReplicaSet {name}")
            }
            Action::PointService { service, hash } => {
                write!(f, "point Service {service} at pod-template-hash {hash}")
            }
            Action::CreateAnalysisRun(run) => {
                write!(f, "create {} AnalysisRun {}", run.kind.label(), run.name)
            }
            Action::TerminateAnalysisRun { name } => write!(f, "terminate AnalysisRun {name}"),
            Action::DeleteAnalysisRun { name } => write!(f, "delete AnalysisRun {name}"),
            Action::SpendAnalysisRun { name } => {
                write!(f, "mark AnalysisRun {name} spent by a retry")
            }
            Action::CreateExperiment(experiment) => {
                write!(f, "create Experiment {}", experiment.name_any())
            }
            Action::TerminateExperiment { name } => write!(f, "terminate Experiment {name}"),
            Action::SpendExperiment { name } => {
                write!(f, "mark Experiment {name} spent by a new attempt")
            }
            Action::SetPodMetadata { name, wanted, .. } => write!(
                f,
                "set the ephemeral metadata of ReplicaSet {name}'s pods to labels {:?}, annotations {:?}",
                wanted.labels, wanted.annotations
            ),
        }
    }
}

/// Whether an event reports routine progress or something a person should look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Routine.
    Normal,
    /// Needs attention.
    Warning,
}

/// An event to record on the rollout (the same short reason as logs and metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// A short CamelCase reason.
    pub reason: &'static str,
    /// What happened, for a person.
    pub message: String,
}

/// The outcome of planning one rollout.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Changes to make, in order.
    pub actions: Vec<Action>,
    /// The status to report.
    pub status: RolloutStatus,
    /// Events to record.
    pub events: Vec<Event>,
    /// When to plan again even if nothing changes (a timed pause, a deadline).
    pub requeue_after: Option<Duration>,
    /// What a routed canary's router objects must carry, written after the actions (so a
    /// Service points at its version before the weight sends it requests).
    pub traffic: Option<sluice_traffic::Desired>,
}

/// Decides what to do for `rollout` given what the cluster holds and the time.
pub fn plan(original: &Rollout, observed: &Observed, now: Timestamp) -> Plan {
    // A workloadRef's Deployment lends the rollout its template; the plan reads the result.
    let resolved = workload::resolve(original, observed);
    let (rollout, unresolved) = match &resolved {
        Ok(Some(resolved)) => (resolved, None),
        Ok(None) => (original, None),
        Err(problem) => (original, Some(problem.clone())),
    };
    let mut p = Planner::new(rollout, observed, now);
    // A failure reported by an earlier reconcile is gone once this plan's writes succeed; the
    // controller reports it again if they fail ([`status::with_failure`]).
    conditions::clear_replica_failure(&mut p.status);
    let mut problems = p.problems();
    problems.extend(unresolved);
    if !problems.is_empty() {
        p.report_invalid(&problems);
        return p.finish(None);
    }
    conditions::clear_invalid_spec(&mut p.status);
    // validate() guarantees a template (workloadRef is not supported yet) and one strategy.
    let (Some(template), Some(strategy)) =
        (rollout.spec.template.as_ref(), rollout.spec.strategy())
    else {
        return p.finish(None);
    };
    let hash = current_hash(&mut p, template);
    updated(&mut p, &hash);
    let desired = rollout.spec.desired_replicas();
    let limits = match strategy {
        Strategy::Canary(canary) => {
            canary::plan(&mut p, canary, template, &hash);
            replicas::Limits::resolve(
                desired,
                &canary.max_surge_or_default(),
                &canary.max_unavailable_or_default(),
            )
        }
        Strategy::BlueGreen(blue_green) => {
            bluegreen::plan(&mut p, blue_green, template, &hash);
            // Blue/green surges a whole version; a restart may take down maxUnavailable pods.
            let unavailable = blue_green.max_unavailable.unwrap_or(IntOrPercent::Int(0));
            replicas::Limits::resolve(desired, &IntOrPercent::Percent(100), &unavailable)
        }
    };
    analysis::tidy(&mut p);
    canary::experiment::tidy(&mut p);
    restart::plan(&mut p, observed.pods.as_deref(), limits);
    let mut plan = p.finish(Some(&hash));
    workload::scale_down(original, observed, &mut plan);
    plan
}

/// Says the rollout moved to a new revision (Argo's `RolloutUpdated`, the `on-rollout-updated`
/// notification) when its template's hash is not the one the status records: a first deploy, an
/// update, a rollback. Once: the status written with the event records the new hash.
fn updated(p: &mut Planner<'_>, hash: &str) {
    if p.prev.current_pod_hash.as_deref() == Some(hash) {
        return;
    }
    let revision = p.sets.iter().find(|s| s.hash == hash).map_or_else(
        || p.sets.iter().map(|s| s.revision).max().unwrap_or(0) + 1,
        |s| s.revision,
    );
    p.event(
        EventType::Normal,
        reason::ROLLOUT_UPDATED,
        format!("Rollout updated to revision {revision}"),
    );
}

/// The hash that names the current template's ReplicaSet: Sluice's own hash of the template,
/// unless a ReplicaSet that Argo Rollouts created already runs it.
///
/// Argo Rollouts hashes templates its own way, so a Rollout it managed carries other hashes.
/// When its status says the current generation runs `currentPodHash` and that ReplicaSet exists,
/// Sluice adopts it (annotating it with its own hash, once) instead of rolling the same pods
/// out again; later template changes get Sluice's hashes.
fn current_hash(
    p: &mut Planner<'_>,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> String {
    let hash = sluice_api::model::pod_template_hash(template, p.prev.collision_count);
    if p.sets.iter().any(|s| s.hash == hash) {
        return hash;
    }
    if let Some(set) = p
        .sets
        .iter()
        .find(|s| s.template_hash.as_deref() == Some(hash.as_str()))
    {
        return set.hash.clone();
    }
    // An invalid spec's status records the generation without acting on it (its
    // currentPodHash is the previous version's), so it says nothing about what runs it.
    let seen = p.prev.observed_generation.as_deref()
        == p.rollout
            .metadata
            .generation
            .map(|g| g.to_string())
            .as_deref()
        && conditions::condition(&p.prev, sluice_api::RolloutConditionType::InvalidSpec).is_none()
        // A workloadRef's template changes with the Deployment, not the rollout's generation.
        && workload::seen(&p.prev, p.observed);
    let adoptable = p
        .prev
        .current_pod_hash
        .as_ref()
        .filter(|h| **h != hash && seen)
        .and_then(|h| {
            p.sets
                .iter()
                .find(|s| s.hash == *h && s.template_hash.is_none())
        })
        .cloned();
    match adoptable {
        Some(set) => {
            p.act(Action::AnnotateReplicaSet {
                name: set.name.clone(),
                key: TEMPLATE_HASH_ANNOTATION,
                value: hash,
            });
            p.event(
                EventType::Normal,
                reason::REPLICA_SET_ADOPTED,
                format!("Adopted ReplicaSet {} as the current version", set.name),
            );
            set.hash
        }
        None => hash,
    }
}

/// Why a Service cannot be handed to this rollout: another rollout manages it, or its selector
/// (apart from the pod-template-hash Sluice sets) does not select this rollout's pods, so
/// pointing it here would serve nothing, or serve someone else's pods.
fn service_conflict(
    view: &ServiceView,
    labels: &BTreeMap<String, String>,
    rollout: &str,
) -> Option<String> {
    if let Some(owner) = view.managed_by.as_deref().filter(|o| *o != rollout) {
        return Some(format!("is already managed by Rollout {owner:?}"));
    }
    let foreign: Vec<String> = view
        .selector
        .iter()
        .filter(|(k, _)| *k != POD_TEMPLATE_HASH_LABEL)
        .filter(|(k, v)| labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!foreign.is_empty()).then(|| {
        format!(
            "selector {} does not match the pod template's labels",
            foreign.join(",")
        )
    })
}

/// The working state of one `plan` call.
pub struct Planner<'a> {
    /// The rollout being planned.
    pub rollout: &'a Rollout,
    /// What the cluster holds for it.
    pub observed: &'a Observed,
    /// The time of this decision.
    pub now: Timestamp,
    /// The status as it was.
    pub prev: RolloutStatus,
    /// The status being decided.
    pub status: RolloutStatus,
    /// The rollout's ReplicaSets.
    pub sets: Vec<SetView>,
    /// The rollout's AnalysisRuns.
    pub runs: Vec<analysis::RunView>,
    /// The runs something waits on in this plan; the others are stopped.
    pub runs_needed: Vec<String>,
    /// The Experiments something waits on in this plan; the others are stopped.
    pub experiments_needed: Vec<String>,
    /// The Experiments marked spent in this plan (the cache still shows them unmarked).
    pub experiments_spent: Vec<String>,
    /// Why this plan aborted the rollout, when the status cannot say it (a failed experiment):
    /// the `Progressing` condition's message.
    pub abort_cause: Option<String>,
    plan: Plan,
    /// Whether something moved (a write, a step): feeds the progress deadline.
    progressed: bool,
    /// The spec problems reported, if any.
    invalid: Option<String>,
}

impl<'a> Planner<'a> {
    fn new(rollout: &'a Rollout, observed: &'a Observed, now: Timestamp) -> Self {
        let prev = rollout.status.clone().unwrap_or_default();
        let mut sets: Vec<SetView> = observed
            .replica_sets
            .iter()
            .filter_map(SetView::of)
            .collect();
        sets.sort_by_key(|s| std::cmp::Reverse(s.revision));
        Self {
            rollout,
            observed,
            now,
            status: prev.clone(),
            prev,
            sets,
            runs: observed.analysis_runs.clone(),
            runs_needed: Vec::new(),
            experiments_needed: Vec::new(),
            experiments_spent: Vec::new(),
            abort_cause: None,
            plan: Plan::default(),
            progressed: false,
            invalid: None,
        }
    }

    /// Spec problems and Services that cannot be pointed at this rollout: reasons to touch
    /// nothing.
    fn problems(&self) -> Vec<SpecProblem> {
        let mut problems = validate(self.rollout);
        let spec = &self.rollout.spec;
        let named: Vec<(String, &String)> = match spec.strategy() {
            Some(Strategy::Canary(c)) => [
                ("canary.canaryService", c.canary_service.as_ref()),
                ("canary.stableService", c.stable_service.as_ref()),
            ]
            .into_iter()
            .filter_map(|(f, n)| Some((f.to_string(), n?)))
            .collect(),
            Some(Strategy::BlueGreen(b)) => [
                ("blueGreen.activeService", Some(&b.active_service)),
                ("blueGreen.previewService", b.preview_service.as_ref()),
            ]
            .into_iter()
            .filter_map(|(f, n)| Some((f.to_string(), n?)))
            .collect(),
            None => Vec::new(),
        };
        let labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let me = self.rollout.name_any();
        for (field, name) in named.into_iter().filter(|(_, n)| !n.is_empty()) {
            let field = format!("spec.strategy.{field}");
            let message = match self.observed.services.get(name.as_str()) {
                Some(None) => format!("Service {name:?} not found"),
                Some(Some(view)) => match service_conflict(view, &labels, &me) {
                    Some(message) => format!("Service {name:?} {message}"),
                    None => continue,
                },
                None => continue,
            };
            problems.push(SpecProblem {
                field,
                message,
                kind: ProblemKind::Invalid,
            });
        }
        problems.extend(self.observed.template_problems.iter().cloned());
        problems.extend(canary::experiment::argument_problems(self.rollout));
        problems
    }

    fn report_invalid(&mut self, problems: &[SpecProblem]) {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let changed = conditions::invalid_spec(&mut self.status, &message, self.now);
        if changed {
            self.event(EventType::Warning, reason::INVALID_SPEC, message.clone());
        }
        self.invalid = Some(message);
    }

    /// Records an event.
    pub fn event(&mut self, type_: EventType, reason: &'static str, message: impl Into<String>) {
        self.plan.events.push(Event {
            type_,
            reason,
            message: message.into(),
        });
    }

    /// Adds an action; every action counts as progress.
    pub fn act(&mut self, action: Action) {
        self.progressed = true;
        self.plan.actions.push(action);
    }

    /// Asks the router's objects to carry `desired` (written only where they differ).
    pub fn route(&mut self, desired: sluice_traffic::Desired) {
        self.plan.traffic = Some(desired);
    }

    /// Notes that the rollout moved without a write (a step completed).
    pub fn progressed(&mut self) {
        self.progressed = true;
    }

    /// Asks to plan again after `delay` at the latest.
    pub fn requeue_in(&mut self, delay: Duration) {
        let delay = delay.max(Duration::from_millis(100));
        self.plan.requeue_after = Some(self.plan.requeue_after.map_or(delay, |d| d.min(delay)));
    }

    /// The time of this decision as a Kubernetes timestamp.
    pub fn now_time(&self) -> Time {
        Time(self.now)
    }

    /// Points each named Service at the version it should serve, unless it already does.
    pub fn point_services(&mut self, wanted: &[(Option<&String>, &str)]) {
        let name = self.rollout.name_any();
        for (service, hash) in wanted {
            let Some(service) = service.filter(|s| !s.is_empty()) else {
                continue;
            };
            let Some(Some(view)) = self.observed.services.get(service.as_str()) else {
                continue;
            };
            let current = view
                .selector
                .get(POD_TEMPLATE_HASH_LABEL)
                .map(String::as_str);
            if current != Some(*hash) || view.managed_by.as_deref() != Some(name.as_str()) {
                self.act(Action::PointService {
                    service: service.clone(),
                    hash: (*hash).to_string(),
                });
                self.event(
                    EventType::Normal,
                    reason::SWITCH_SERVICE,
                    format!(
                        "Switched selector for service {service:?} from {:?} to {hash:?}",
                        current.unwrap_or("")
                    ),
                );
            }
        }
    }

    /// The set of version `hash`, if it exists.
    pub fn set(&self, hash: &str) -> Option<SetView> {
        self.sets.iter().find(|s| s.hash == hash).cloned()
    }

    /// The stable version (`status.stableRS`), if its set still exists: a stable whose set is
    /// gone counts as none, and the rollout starts over as on its first deploy.
    pub fn existing_stable(&self) -> Option<String> {
        self.status
            .stable_rs
            .clone()
            .filter(|h| self.sets.iter().any(|s| s.hash == *h))
    }

    /// The ReplicaSet of a new version with `replicas` pods, at the next revision.
    pub fn new_set(
        &self,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        hash: &str,
        replicas: i32,
    ) -> ReplicaSet {
        let revision = self.sets.iter().map(|s| s.revision).max().unwrap_or(0) + 1;
        replicasets::new_replica_set(self.rollout, template, hash, replicas, revision)
    }

    /// Creates a ReplicaSet made by [`Planner::new_set`].
    pub fn create_set(&mut self, rs: ReplicaSet) {
        let spec = rs.spec.as_ref();
        let replicas = spec.and_then(|s| s.replicas).unwrap_or(0);
        let revision = rs
            .annotations()
            .get(REVISION_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        self.event(
            EventType::Normal,
            reason::NEW_REPLICA_SET_CREATED,
            format!(
                "Created ReplicaSet {} (revision {revision}) with {replicas} replicas",
                rs.name_any()
            ),
        );
        self.act(Action::CreateReplicaSet(Box::new(rs)));
    }

    /// Scales one ReplicaSet to `to` pods, unless it is there already.
    pub fn scale_set(&mut self, set: &SetView, to: i32) {
        if set.replicas == to {
            return;
        }
        let direction = if to > set.replicas { "up" } else { "down" };
        self.event(
            EventType::Normal,
            reason::SCALING_REPLICA_SET,
            format!(
                "Scaled {direction} ReplicaSet {} (revision {}) from {} to {to}",
                set.name, set.revision, set.replicas
            ),
        );
        self.act(Action::ScaleReplicaSet {
            name: set.name.clone(),
            from: set.replicas,
            to,
        });
    }

    /// Deletes scaled-down old sets beyond `revisionHistoryLimit`, oldest first.
    pub fn delete_old_sets(&mut self, hash: &str) {
        let keep = usize::try_from(self.rollout.spec.history_limit()).unwrap_or(0);
        let stable = self.status.stable_rs.clone();
        let idle: Vec<String> = self
            .sets
            .iter()
            .filter(|s| {
                s.hash != hash && Some(&s.hash) != stable.as_ref() && s.replicas == 0 && s.pods == 0
            })
            .map(|s| s.name.clone())
            .collect();
        // `sets` is sorted newest first, so the ones past `keep` are the oldest.
        for name in idle.into_iter().skip(keep) {
            self.act(Action::DeleteReplicaSet { name: name.clone() });
            self.event(
                EventType::Normal,
                reason::REPLICA_SET_DELETED,
                format!("Deleted old ReplicaSet {name} beyond the revision history limit"),
            );
        }
    }

    /// A new version (or new steps) starts over: the old abort, pause and promotion are spent.
    pub fn start_over(&mut self) {
        let status = &mut self.status;
        status.abort = None;
        status.aborted_at = None;
        pause::forget(status);
        status.promote_full = None;
        if let Some(bg) = status.blue_green.as_mut() {
            bg.scale_up_preview_check_point = None;
        }
    }

    fn finish(mut self, hash: Option<&str>) -> Plan {
        status::finish(&mut self, hash);
        self.plan.status = self.status;
        self.plan
    }
}

#[cfg(test)]
mod tests;
