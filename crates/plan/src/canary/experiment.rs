//! A canary's `experiment` step: the Experiment it creates (the canary's and the stable
//! version's pod templates run side by side, with analyses), what its phase means for the
//! rollout, and stopping the experiments nothing waits on any more.
//!
//! An Experiment is found again by its labels (hash, step) and the name the status records, so a
//! status write lost after its creation never creates it twice. Like a run, an experiment Sluice
//! terminated is never evidence that its version passed, and one a retry left behind speaks for
//! the aborted attempt only.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube_core::ResourceExt;
use sluice_analysis::args::field_value;
use sluice_api::{
    AnalysisPhase, AnalysisRunArgument, Argument, CanaryStatus, Experiment,
    ExperimentAnalysisTemplateRef, ExperimentSpec, ExperimentStep, ExperimentTemplate,
    PodTemplateHashValue, Rollout, SpecProblem, SpecRef, TemplateSpec,
    vocab::{
        POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, ROLLOUT_TYPE_LABEL, SPENT_LABEL,
        STEP_INDEX_LABEL, TERMINATED_BY_CONTROLLER, TERMINATED_LABEL, reason,
    },
};

use super::{
    super::{Action, EventType, Planner, pause},
    Canary,
};

/// The `rollout-type` label of an experiment step's Experiment (as its runs', Argo's value).
const STEP_TYPE: &str = "Step";

/// One Experiment the rollout owns, reduced to what decisions need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExperimentView {
    /// The Experiment's name.
    pub name: String,
    /// The rollout's pod-template-hash it was made for (its label).
    pub hash: String,
    /// The written step that made it (its `step-index` label); `None` when not a step's.
    pub step: Option<i32>,
    /// Its phase; `None` before the Experiment controller wrote one.
    pub phase: Option<AnalysisPhase>,
    /// Why the phase is what it is.
    pub message: Option<String>,
    /// Whether it was asked to stop (`spec.terminate`).
    pub terminated: bool,
    /// Whether Sluice asked it to stop ([`TERMINATED_LABEL`]): then it is no verdict.
    pub cut_by_controller: bool,
    /// Whether a retry or a new attempt left it behind ([`SPENT_LABEL`]).
    pub spent: bool,
}

impl ExperimentView {
    /// The view of an Experiment.
    pub fn of(experiment: &Experiment) -> Self {
        let labels = experiment.labels();
        let status = experiment.status.as_ref();
        Self {
            name: experiment.name_any(),
            hash: labels
                .get(POD_TEMPLATE_HASH_LABEL)
                .cloned()
                .unwrap_or_default(),
            step: labels
                .get(STEP_INDEX_LABEL)
                .filter(|_| labels.get(ROLLOUT_TYPE_LABEL).map(String::as_str) == Some(STEP_TYPE))
                .and_then(|i| i.parse().ok()),
            phase: status.and_then(|s| s.phase),
            message: status.and_then(|s| s.message.clone()),
            terminated: experiment.spec.is_terminated(),
            cut_by_controller: labels.get(TERMINATED_LABEL).map(String::as_str)
                == Some(TERMINATED_BY_CONTROLLER),
            spent: labels.contains_key(SPENT_LABEL),
        }
    }

    /// Whether the experiment has ended (Successful, Failed, Error or Inconclusive).
    pub fn is_completed(&self) -> bool {
        self.phase.is_some_and(AnalysisPhase::is_completed)
    }

    /// Whether it can speak for its version: not left behind by a retry, and not stopped by
    /// Sluice unless it had already failed (a stopped experiment is no pass).
    pub fn is_evidence(&self) -> bool {
        !self.spent
            && (!self.cut_by_controller
                || matches!(
                    self.phase,
                    Some(AnalysisPhase::Failed | AnalysisPhase::Error)
                ))
    }
}

/// Whether the experiment step written at `step` is done for the canary; creates its
/// Experiment when it has none. Failed or Error aborts the rollout; Inconclusive pauses it until
/// a person promotes (go on) or aborts.
pub(super) fn step_done(
    p: &mut Planner<'_>,
    c: &Canary<'_>,
    experiment: &ExperimentStep,
    step: i32,
) -> bool {
    let Some(found) = current(p, c.hash, step) else {
        start(p, c, experiment, step);
        return false;
    };
    p.experiments_needed.push(found.name.clone());
    record(p, Some(found.name.clone()));
    match found.phase {
        Some(AnalysisPhase::Successful) => {
            record(p, None);
            true
        }
        Some(phase @ (AnalysisPhase::Failed | AnalysisPhase::Error)) => {
            let message = format!(
                "Experiment {} ended {phase:?}{}",
                found.name,
                found
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            if p.status.abort != Some(true) {
                p.event(
                    EventType::Warning,
                    reason::EXPERIMENT_FAILED,
                    message.clone(),
                );
            }
            p.status.abort = Some(true);
            p.abort_cause = Some(message);
            p.progressed();
            false
        }
        Some(AnalysisPhase::Inconclusive) => {
            let go_on = pause::inconclusive_experiment(p, &found.name);
            if go_on {
                record(p, None);
            }
            go_on
        }
        Some(AnalysisPhase::Pending | AnalysisPhase::Running) | None => false,
    }
}

/// Keeps the Experiment of the step written at `step` going while a person paused the rollout:
/// one it has is judged (a failure aborts), none is created.
pub(super) fn hold(p: &mut Planner<'_>, c: &Canary<'_>, experiment: &ExperimentStep, step: i32) {
    if current(p, c.hash, step).is_some() {
        step_done(p, c, experiment, step);
    }
}

/// Whether the attempt at version `hash` has an Experiment for the step written at `step`.
pub(super) fn started(p: &Planner<'_>, hash: &str, step: i32) -> bool {
    current(p, hash, step).is_some()
}

/// Records the step's Experiment in `status.canary.currentExperiment` (or clears it).
fn record(p: &mut Planner<'_>, name: Option<String>) {
    if name.is_none() && p.status.canary.is_none() {
        return;
    }
    p.status
        .canary
        .get_or_insert_with(CanaryStatus::default)
        .current_experiment = name;
}

/// The recorded Name, when its Experiment is in the cache (or was created a moment ago and is
/// not yet); else the newest Experiment this attempt made for the step.
fn current(p: &Planner<'_>, hash: &str, step: i32) -> Option<ExperimentView> {
    let matching: Vec<&ExperimentView> = p
        .observed
        .experiments
        .iter()
        .filter(|e| e.hash == hash && e.step == Some(step) && e.is_evidence())
        .filter(|e| !p.experiments_spent.contains(&e.name))
        .collect();
    let recorded = p
        .status
        .canary
        .as_ref()
        .and_then(|c| c.current_experiment.as_deref());
    recorded
        .and_then(|r| matching.iter().find(|e| e.name == r))
        .or_else(|| matching.iter().max_by_key(|e| suffix(&e.name)))
        .map(|e| (*e).clone())
}

/// The number a collision added to a name (`web-abc-2-1.3` → 3; none → 1).
fn suffix(name: &str) -> u32 {
    name.rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// Creates the step's Experiment. The rollout's Experiments are listed afresh on each reconcile
/// (never from a cache that may lag a creation), so one the status records but the list lacks
/// was deleted: as in Argo Rollouts, the step makes a new one (a new judgment, never a pass).
fn start(p: &mut Planner<'_>, c: &Canary<'_>, experiment: &ExperimentStep, step: i32) {
    let name = fresh_name(p, c.hash, step);
    let revision = revision(p, c.hash);
    match build(p, c, experiment, step, &name, revision) {
        Ok(object) => {
            p.event(
                EventType::Normal,
                reason::EXPERIMENT_CREATED,
                format!("Created Experiment {name} for step {}", step + 1),
            );
            p.act(Action::CreateExperiment(Box::new(object)));
            p.experiments_needed.push(name.clone());
            record(p, Some(name));
        }
        Err(why) => {
            // Fails closed: an experiment that cannot be made is no pass.
            let message = format!("Experiment {name} cannot be created: {why}");
            if p.status.abort != Some(true) {
                p.event(
                    EventType::Warning,
                    reason::EXPERIMENT_FAILED,
                    message.clone(),
                );
            }
            p.status.abort = Some(true);
            p.abort_cause = Some(message);
        }
    }
}

/// The revision of version `hash`: its set's, or the next one before the set exists.
fn revision(p: &Planner<'_>, hash: &str) -> i64 {
    p.sets.iter().find(|s| s.hash == hash).map_or_else(
        || p.sets.iter().map(|s| s.revision).max().unwrap_or(0) + 1,
        |s| s.revision,
    )
}

/// `<rollout>-<hash>-<revision>-<step>`, with `.N` added when an earlier attempt holds it.
fn fresh_name(p: &Planner<'_>, hash: &str, step: i32) -> String {
    let base = format!(
        "{}-{hash}-{}-{step}",
        p.rollout.name_any(),
        revision(p, hash)
    );
    let taken = |n: &str| p.observed.experiments.iter().any(|e| e.name == n);
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}.{n}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// The Experiment of the step written at `step`, complete and owned by the rollout.
fn build(
    p: &Planner<'_>,
    c: &Canary<'_>,
    experiment: &ExperimentStep,
    step: i32,
    name: &str,
    revision: i64,
) -> Result<Experiment, String> {
    let rollout = p.rollout;
    let stable = c.stable.as_deref();
    let templates = experiment
        .templates
        .iter()
        .map(|t| template(p, c, t))
        .collect::<Result<Vec<_>, _>>()?;
    let json = serde_json::to_value(rollout).map_err(|e| e.to_string())?;
    let analyses = experiment
        .analyses
        .iter()
        .map(|a| {
            Ok(ExperimentAnalysisTemplateRef {
                name: a.name.clone(),
                template_name: a.template_name.clone(),
                cluster_scope: a.cluster_scope,
                args: a
                    .args
                    .iter()
                    .map(|arg| argument(arg, &json, stable, c.hash))
                    .collect::<Result<Vec<_>, String>>()?,
                required_for_completion: a.required_for_completion,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let labels = BTreeMap::from([
        (POD_TEMPLATE_HASH_LABEL.to_string(), c.hash.to_string()),
        (ROLLOUT_TYPE_LABEL.to_string(), STEP_TYPE.to_string()),
        (STEP_INDEX_LABEL.to_string(), step.to_string()),
    ]);
    let mut object = Experiment::new(
        name,
        ExperimentSpec {
            templates,
            duration: experiment.duration.clone(),
            progress_deadline_seconds: rollout.spec.progress_deadline_seconds,
            terminate: None,
            analyses,
            scale_down_delay_seconds: experiment.scale_down_delay_seconds,
            dry_run: experiment.dry_run.clone(),
            analysis_run_metadata: experiment.analysis_run_metadata.clone(),
            measurement_retention: Vec::new(),
        },
    );
    object.metadata = ObjectMeta {
        name: Some(name.to_string()),
        namespace: rollout.namespace(),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            REVISION_ANNOTATION.to_string(),
            revision.to_string(),
        )])),
        owner_references: Some(vec![owner(rollout)]),
        ..ObjectMeta::default()
    };
    Ok(object)
}

/// The rollout as the controlling owner, so the Experiment is collected with it.
fn owner(rollout: &Rollout) -> OwnerReference {
    OwnerReference {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        name: rollout.name_any(),
        uid: rollout.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// One template of the Experiment: the pod template `specRef` names, without the rollout's
/// pod-template-hash (its pods must not join the rollout's Services), the template's metadata
/// merged over it.
fn template(
    p: &Planner<'_>,
    c: &Canary<'_>,
    t: &ExperimentTemplate,
) -> Result<TemplateSpec, String> {
    let (hash, role) = match t.spec_ref {
        SpecRef::Canary => (Some(c.hash), "canary"),
        SpecRef::Stable => (c.stable.as_deref(), "stable"),
    };
    let from_set = hash.and_then(|h| {
        p.observed
            .replica_sets
            .iter()
            .find(|rs| rs.labels().get(POD_TEMPLATE_HASH_LABEL).map(String::as_str) == Some(h))
            .and_then(|rs| rs.spec.as_ref()?.template.clone())
    });
    let mut pod = match (from_set, t.spec_ref) {
        (Some(pod), _) => pod,
        // The canary's set is created with the rollout's template.
        (None, SpecRef::Canary) => c.template.clone(),
        (None, SpecRef::Stable) => {
            return Err(format!(
                "template {:?} copies the {role} version, which has no ReplicaSet",
                t.name
            ));
        }
    };
    let meta = pod.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.remove(POD_TEMPLATE_HASH_LABEL);
    if let Some(extra) = t.metadata.as_ref() {
        labels.extend(extra.labels.clone());
        if !extra.annotations.is_empty() {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(extra.annotations.clone());
        }
    }
    if meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
        meta.labels = None;
    }
    Ok(TemplateSpec {
        name: t.name.clone(),
        replicas: Some(t.replicas.unwrap_or(1)),
        min_ready_seconds: p.rollout.spec.min_ready_seconds,
        selector: t
            .selector
            .clone()
            .or_else(|| p.rollout.spec.selector.clone())
            .map(without_hash),
        template: pod,
        service: t.service.clone(),
    })
}

/// A selector without the pod-template-hash (the Experiment's sets carry their own).
fn without_hash(mut selector: LabelSelector) -> LabelSelector {
    if let Some(labels) = selector.match_labels.as_mut() {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    selector
}

/// A step argument as the Experiment's: a value as is (`{{templates.X.podTemplateHash}}` is
/// the Experiment's to resolve), a hash of the stable or latest version, or a field of the
/// rollout read now.
fn argument(
    arg: &AnalysisRunArgument,
    rollout: &serde_json::Value,
    stable: Option<&str>,
    latest: &str,
) -> Result<Argument, String> {
    let value = match (&arg.value, &arg.value_from) {
        (Some(value), _) => value.clone(),
        (None, Some(from)) => match (from.pod_template_hash_value, &from.field_ref) {
            (Some(PodTemplateHashValue::Latest), _) => latest.to_string(),
            (Some(PodTemplateHashValue::Stable), _) => stable
                .ok_or_else(|| format!("args.{}: there is no stable version yet", arg.name))?
                .to_string(),
            (None, Some(field)) => field_value(rollout, &field.field_path)
                .map_err(|e| format!("args.{}: fieldRef {}: {e}", arg.name, field.field_path))?,
            (None, None) => return Err(format!("args.{}: valueFrom names no source", arg.name)),
        },
        (None, None) => {
            return Err(format!(
                "args.{}: has neither value nor valueFrom",
                arg.name
            ));
        }
    };
    Ok(Argument {
        name: arg.name.clone(),
        value: Some(value),
        value_from: None,
    })
}

/// The experiment steps' arguments that cannot be given: a `fieldRef` the rollout does not
/// have, an argument with no value at all. The spec is invalid until they are mended.
pub fn argument_problems(rollout: &Rollout) -> Vec<SpecProblem> {
    let Some(canary) = rollout.spec.canary() else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let json = serde_json::to_value(rollout).unwrap_or_default();
    for (i, step) in canary.steps.every_action() {
        let sluice_api::CanaryStep::Experiment(experiment) = step else {
            continue;
        };
        for (j, analysis) in experiment.analyses.iter().enumerate() {
            for (k, arg) in analysis.args.iter().enumerate() {
                // The hashes exist once the step runs; only what is fixed now is checked.
                if let Err(why) = argument(arg, &json, Some(""), "") {
                    problems.push(SpecProblem::invalid(
                        format!(
                            "spec.strategy.canary.steps[{i}].experiment.analyses[{j}].args[{k}]"
                        ),
                        why,
                    ));
                }
            }
        }
    }
    problems
}

/// A new attempt at version `hash` (a new revision, new steps, a retry): its Experiments speak
/// for the attempt before, and are marked so that this one makes its own.
pub fn spend(p: &mut Planner<'_>, hash: &str) {
    let spent: Vec<String> = p
        .observed
        .experiments
        .iter()
        .filter(|e| e.hash == hash && !e.spent && !p.experiments_spent.contains(&e.name))
        .map(|e| e.name.clone())
        .collect();
    for name in spent {
        p.experiments_spent.push(name.clone());
        p.act(Action::SpendExperiment { name });
    }
    if let Some(status) = p.status.canary.as_mut() {
        status.current_experiment = None;
    }
}

/// Stops the Experiments nothing waits on any more (an abort, a promotion past the step, a new
/// revision, the rollout completing), once each.
pub fn tidy(p: &mut Planner<'_>) {
    let stop: Vec<String> = p
        .observed
        .experiments
        .iter()
        .filter(|e| !p.experiments_needed.contains(&e.name) && !e.is_completed() && !e.terminated)
        .map(|e| e.name.clone())
        .collect();
    for name in stop {
        p.act(Action::TerminateExperiment { name });
    }
    if let Some(status) = p.status.canary.as_mut()
        && status
            .current_experiment
            .as_ref()
            .is_some_and(|n| !p.experiments_needed.contains(n))
        && p.status.abort != Some(true)
    {
        // Moved past the step (promoted, skipped, a new version): nothing runs for it.
        status.current_experiment = None;
    }
}
