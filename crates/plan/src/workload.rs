//! `spec.workloadRef`: a Rollout that takes its pods from an existing Deployment, the way teams
//! move a Deployment under a Rollout without rewriting it (Argo's migration path).
//!
//! The Deployment's pod template (and its selector, when the Rollout has none) stands in for the
//! Rollout's own: a change to the Deployment's template is a new revision of the Rollout, rolled
//! out by its strategy. `scaleDown` says what happens to the Deployment's own pods:
//! - `never` (the default): they stay; the person scales the Deployment down;
//! - `onsuccess`: once the Rollout is Healthy on a promoted revision, to zero;
//! - `progressively`: by as many pods as the Rollout has available, so the two together never
//!   serve with fewer than the desired count; if the Rollout's first version fails (aborted with
//!   no stable version of its own) the Deployment is scaled back up.
//!
//! Only `apps/v1` Deployments are read, as Argo's controller does; anything else, a missing name
//! or a Deployment that does not exist is an `InvalidSpec` at the field, and nothing is scaled.

use k8s_openapi::{
    api::core::v1::PodTemplateSpec, apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use sluice_api::{Rollout, RolloutPhase, ScaleDownPolicy, SpecProblem};

use crate::{Action, Observed, Plan};

/// The part of the referenced Deployment the plan reads.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadView {
    /// Its name.
    pub name: String,
    /// `spec.template`: the Rollout's pods.
    pub template: PodTemplateSpec,
    /// `spec.selector`, used when the Rollout has none.
    pub selector: Option<LabelSelector>,
    /// `spec.replicas` (1 when absent, as the API defaults it).
    pub replicas: i32,
    /// `metadata.generation`, recorded as `status.workloadObservedGeneration`.
    pub generation: Option<i64>,
}

/// What the controller found for a Rollout's `workloadRef`.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// The Deployment, read.
    Found(Box<WorkloadView>),
    /// The Deployment does not exist.
    Missing,
}

/// Whether the status was written for the Deployment generation read now (always true without
/// a `workloadRef`): the Deployment's template can change while the Rollout's generation stays.
pub fn seen(prev: &sluice_api::RolloutStatus, observed: &Observed) -> bool {
    match &observed.workload {
        Some(Workload::Found(view)) => {
            prev.workload_observed_generation == view.generation.map(|g| g.to_string())
        }
        _ => true,
    }
}

/// The Rollout with the Deployment's template in place of its own (`Ok(None)` without a
/// `workloadRef`, or with a template beside it, which validation reports), or why it cannot be
/// resolved.
pub fn resolve(rollout: &Rollout, observed: &Observed) -> Result<Option<Rollout>, SpecProblem> {
    let Some(reference) = rollout.spec.workload_ref.as_ref() else {
        return Ok(None);
    };
    if rollout.spec.template.is_some() {
        return Ok(None);
    }
    if !reference.is_deployment() {
        return Err(SpecProblem::invalid(
            "spec.workloadRef",
            format!(
                "{} {} is not supported: only apps/v1 Deployment",
                reference
                    .api_version
                    .as_deref()
                    .unwrap_or("(no apiVersion)"),
                reference.kind.as_deref().unwrap_or("(no kind)")
            ),
        ));
    }
    let Some(name) = reference.name.as_deref() else {
        return Err(SpecProblem::invalid("spec.workloadRef.name", "is required"));
    };
    match &observed.workload {
        Some(Workload::Found(view)) => {
            let mut resolved = rollout.clone();
            resolved.spec.template = Some(view.template.clone());
            if resolved.spec.selector.is_none() {
                resolved.spec.selector.clone_from(&view.selector);
            }
            resolved.spec.workload_ref = None;
            Ok(Some(resolved))
        }
        Some(Workload::Missing) => Err(SpecProblem::invalid(
            "spec.workloadRef.name",
            format!("Deployment {name:?} not found"),
        )),
        None => Err(SpecProblem::invalid(
            "spec.workloadRef.name",
            format!("Deployment {name:?} was not read"),
        )),
    }
}

/// The Deployment's scale-down its policy asks for now, given a valid plan's status, and the
/// generation the plan acted on.
pub fn scale_down(rollout: &Rollout, observed: &Observed, plan: &mut Plan) {
    let (Some(reference), Some(Workload::Found(view))) = (
        rollout.spec.workload_ref.as_ref(),
        observed.workload.as_ref(),
    ) else {
        return;
    };
    plan.status.workload_observed_generation = view.generation.map(|g| g.to_string());
    let desired = rollout.spec.desired_replicas();
    let status = &plan.status;
    let promoted = status.stable_rs.is_some() && status.stable_rs == status.current_pod_hash;
    let to = match reference.scale_down.unwrap_or(ScaleDownPolicy::Never) {
        ScaleDownPolicy::Never => return,
        ScaleDownPolicy::OnSuccess => {
            if status.phase == Some(RolloutPhase::Healthy) && promoted {
                0
            } else {
                return;
            }
        }
        ScaleDownPolicy::Progressively => {
            let failed = status.abort == Some(true) && status.stable_rs.is_none();
            if failed {
                desired
            } else {
                let available = status.available_replicas.unwrap_or(0);
                (desired - available).clamp(0, view.replicas)
            }
        }
    };
    if to != view.replicas {
        plan.events.push(crate::Event {
            type_: crate::EventType::Normal,
            reason: sluice_api::vocab::reason::SCALING_DEPLOYMENT,
            message: format!(
                "Scaled Deployment {} from {} to {to} (workloadRef scaleDown)",
                view.name, view.replicas
            ),
        });
        plan.actions.push(Action::ScaleWorkload {
            name: view.name.clone(),
            from: view.replicas,
            to,
        });
    }
}
