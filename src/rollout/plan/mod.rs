//! PURE decisions of the Rollout controller: no client, no clock, no I/O.
//!
//! [`plan`] takes the rollout, what [`Observed`] holds for it, and the time, and returns the
//! [`Action`]s that move the rollout one step closer to what its spec asks, the status to
//! report, the events to record, and when to look again. Everything that matters is read back
//! from the cluster on the next call, so a restarted controller decides exactly the same.

pub mod canary;
pub mod replicas;
pub mod replicasets;
pub mod restart;
pub mod status;

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{api::apps::v1::ReplicaSet, apimachinery::pkg::apis::meta::v1::Time};
use kube::ResourceExt;

use self::replicasets::SetView;
use crate::api::{
    POD_TEMPLATE_HASH_LABEL, ProblemKind, Rollout, RolloutStatus, SpecProblem, Strategy, validate,
};

/// What the cluster holds for one rollout, as read by `observe`.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The ReplicaSets the rollout owns.
    pub replica_sets: Vec<ReplicaSet>,
    /// Each Service the strategy names, by name; `None` when it does not exist.
    pub services: BTreeMap<String, Option<ServiceView>>,
    /// The rollout's pods, listed only while a restart is pending ([`restart::pending`]).
    pub pods: Option<Vec<restart::PodView>>,
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
    /// Point a Service at one version: set its pod-template-hash selector and mark it managed.
    PointService {
        /// The Service.
        service: String,
        /// The pod template hash its selector gets.
        hash: String,
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
            Action::EvictPod { name } => write!(f, "evict pod {name}"),
            Action::AnnotateReplicaSet { name, key, value } => {
                write!(f, "annotate ReplicaSet {name} with {key}={value}")
            }
            Action::PointService { service, hash } => {
                write!(f, "point Service {service} at pod-template-hash {hash}")
            }
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
}

/// Decides what to do for `rollout` given what the cluster holds and the time.
pub fn plan(rollout: &Rollout, observed: &Observed, now: Timestamp) -> Plan {
    let mut p = Planner::new(rollout, observed, now);
    let problems = p.problems();
    if !problems.is_empty() {
        p.report_invalid(&problems);
        return p.finish(None);
    }
    status::clear_invalid(&mut p.status);
    // validate() guarantees a template (workloadRef is not supported yet) and one strategy.
    let (Some(template), Some(Strategy::Canary(canary))) =
        (rollout.spec.template.as_ref(), rollout.spec.strategy())
    else {
        return p.finish(None);
    };
    let hash = current_hash(&mut p, template);
    canary::plan(&mut p, canary, template, &hash);
    let limits = replicas::Limits::resolve(
        rollout.spec.desired_replicas(),
        &canary.max_surge_or_default(),
        &canary.max_unavailable_or_default(),
    );
    restart::plan(&mut p, observed.pods.as_deref(), limits);
    p.finish(Some(&hash))
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
    let hash = replicasets::pod_template_hash(template, p.prev.collision_count);
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
    let seen = p.prev.observed_generation.as_deref()
        == p.rollout
            .metadata
            .generation
            .map(|g| g.to_string())
            .as_deref();
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
                key: replicasets::TEMPLATE_HASH_ANNOTATION,
                value: hash,
            });
            p.event(
                EventType::Normal,
                "ReplicaSetAdopted",
                format!("Adopted ReplicaSet {} as the current version", set.name),
            );
            set.hash
        }
        None => hash,
    }
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
            plan: Plan::default(),
            progressed: false,
            invalid: None,
        }
    }

    /// Spec problems, missing Services and strategies not built yet: reasons to touch nothing.
    fn problems(&self) -> Vec<SpecProblem> {
        let mut problems = validate(self.rollout);
        if self.rollout.spec.blue_green().is_some() && self.rollout.spec.canary().is_none() {
            problems.push(SpecProblem {
                field: "spec.strategy.blueGreen".into(),
                message: "is not supported by Sluice yet".into(),
                kind: ProblemKind::Unsupported,
            });
        }
        let named = self.rollout.spec.canary().map(|c| {
            [
                ("canaryService", &c.canary_service),
                ("stableService", &c.stable_service),
            ]
        });
        for (field, name) in named.into_iter().flatten() {
            if let Some(name) = name.as_deref().filter(|n| !n.is_empty())
                && matches!(self.observed.services.get(name), Some(None))
            {
                problems.push(SpecProblem {
                    field: format!("spec.strategy.canary.{field}"),
                    message: format!("Service {name:?} not found"),
                    kind: ProblemKind::Invalid,
                });
            }
        }
        problems
    }

    fn report_invalid(&mut self, problems: &[SpecProblem]) {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let changed = status::set_invalid(&mut self.status, &message, self.now);
        if changed {
            self.event(EventType::Warning, "InvalidSpec", message.clone());
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
                    "SwitchService",
                    format!(
                        "Switched selector for service {service:?} from {:?} to {hash:?}",
                        current.unwrap_or("")
                    ),
                );
            }
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
