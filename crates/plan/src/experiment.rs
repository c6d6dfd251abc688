//! The Experiment planner: PURE decisions of the Experiment controller, like [`crate::plan`]
//! for a Rollout (no client, no clock, no I/O).
//!
//! [`plan`] takes the experiment, what [`ExperimentObserved`] holds for it and the time, and
//! returns the [`ExperimentAction`]s that move it on (ReplicaSets, Services, AnalysisRuns), the
//! status to report, the events to record and when to look again. Everything that matters is
//! read back from the cluster and the status on the next call, so a restarted controller
//! decides the same.
//!
//! Safety first: a run Sluice stopped is never a pass, and an experiment stopped by
//! `spec.terminate` before it could be judged is `Inconclusive`, never `Successful`.

mod objects;
mod validate;

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{
    api::{apps::v1::ReplicaSet, core::v1::Service},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube_core::ResourceExt;
use sluice_api::{
    AnalysisPhase, AnalysisRun, ConditionStatus, Experiment, ExperimentAnalysisRunStatus,
    ExperimentCondition, ExperimentStatus, TemplateSpec, TemplateStatus, TemplateStatusCode,
    model::{MESSAGE_LIMIT, cut},
    vocab::POD_TEMPLATE_HASH_LABEL,
};

pub use self::{
    objects::{
        replica_set, replica_set_name, selects, service, service_name, service_ports, template_hash,
    },
    validate::problems,
};
use crate::{Event, EventType};

/// Event: every template is available and the experiment runs (its analyses start).
pub const EXPERIMENT_RUNNING: &str = "ExperimentRunning";
/// Event: the experiment ended well.
pub const EXPERIMENT_SUCCESSFUL: &str = "ExperimentSuccessful";
/// Event: a template or an analysis failed the experiment.
pub const EXPERIMENT_FAILED: &str = "ExperimentFailed";
/// Event: the experiment could not be run (an invalid spec, an analysis in error).
pub const EXPERIMENT_ERROR: &str = "ExperimentError";
/// Event: the experiment ended without a verdict; a person decides.
pub const EXPERIMENT_INCONCLUSIVE: &str = "ExperimentInconclusive";
/// Event: a template's ReplicaSet was created.
pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
/// Event: a template's ReplicaSet was scaled.
pub const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";
/// Event: a template's Service was created.
pub const SERVICE_CREATED: &str = "ServiceCreated";
/// Event: a template's Service was deleted with its scaled-down ReplicaSet.
pub const SERVICE_DELETED: &str = "ServiceDeleted";

/// Condition type: the experiment is on its way (True while Pending or Running).
pub const PROGRESSING_CONDITION: &str = "Progressing";
/// Condition type: the experiment has a verdict; scale-down counts from its transition time.
pub const COMPLETED_CONDITION: &str = "Completed";
/// Condition type (and reason): the spec cannot run as written.
pub const INVALID_SPEC_CONDITION: &str = "InvalidSpec";
/// Condition reason: Pending or Running.
pub const EXPERIMENT_PROGRESSING: &str = "ExperimentProgressing";
/// Condition reason: the experiment has a verdict.
pub const EXPERIMENT_COMPLETED: &str = "ExperimentCompleted";

/// Seconds a template may take to become available when `progressDeadlineSeconds` is absent.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Seconds the ReplicaSets stay up after the verdict when `scaleDownDelaySeconds` is absent.
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// What the cluster holds for one experiment.
#[derive(Clone, Debug, Default)]
pub struct ExperimentObserved {
    /// The ReplicaSets the experiment owns, by template name (from EXPERIMENT_TEMPLATE_ANNOTATION).
    pub replica_sets: BTreeMap<String, ReplicaSet>,
    /// The Services the experiment owns, by template name: the Service's name.
    pub services: BTreeMap<String, String>,
    /// The AnalysisRuns the experiment owns, by analysis name (EXPERIMENT_ANALYSIS_LABEL).
    pub runs: BTreeMap<String, ExperimentRunView>,
    /// Why analyses cannot run (a template missing, invalid, arguments unresolvable), as
    /// messages naming the analysis; the controller computes them. Non-empty = invalid spec.
    pub analysis_problems: Vec<String>,
}

/// The part of an AnalysisRun the planner reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExperimentRunView {
    /// The run's name.
    pub name: String,
    /// Its phase (Pending while it has no status).
    pub phase: AnalysisPhase,
    /// Its status message.
    pub message: Option<String>,
    /// Whether it was asked to stop (`spec.terminate`): never stopped twice, never a pass.
    pub terminated: bool,
}

impl ExperimentRunView {
    /// The view of a run; its phase is Pending while it has no status.
    pub fn of(run: &AnalysisRun) -> Self {
        let status = run.status.as_ref();
        Self {
            name: run.name_any(),
            phase: status.map(|s| s.phase).unwrap_or_default(),
            message: status.and_then(|s| s.message.clone()),
            terminated: run.spec.is_terminated(),
        }
    }
}

/// The outcome of planning one experiment.
#[derive(Clone, Debug, Default)]
pub struct ExperimentPlan {
    /// Changes to make, in order.
    pub actions: Vec<ExperimentAction>,
    /// The status to report.
    pub status: ExperimentStatus,
    /// Events to record on the experiment.
    pub events: Vec<Event>,
    /// When to plan again even if nothing changes (a deadline, the duration, the scale-down).
    pub requeue_after: Option<Duration>,
}

/// One change to make in the cluster for an experiment.
#[derive(Clone, Debug, PartialEq)]
pub enum ExperimentAction {
    /// Create a template's ReplicaSet (complete object: name, labels, annotations, selector,
    /// replicas, template, ownerReference to the Experiment with controller=true, using the
    /// Experiment's metadata.uid).
    CreateReplicaSet(Box<ReplicaSet>),
    /// Set a ReplicaSet's spec.replicas.
    ScaleReplicaSet {
        /// The ReplicaSet.
        name: String,
        /// Its replicas now (for messages).
        from: i32,
        /// Its replicas after.
        to: i32,
    },
    /// Create a template's Service (complete object, owned by the Experiment).
    CreateService(Box<Service>),
    /// Delete a template's Service (at scale-down).
    DeleteService {
        /// The Service.
        name: String,
    },
    /// Create the AnalysisRun of `analysis` (the index into spec.analyses) named `name`; the
    /// controller resolves templates and arguments, replacing `{{templates.X.podTemplateHash}}`
    /// with the hashes in the planned status' templateStatuses.
    CreateAnalysisRun {
        /// The run's name, `<experiment>-<analysis>`.
        name: String,
        /// The index of its analysis in `spec.analyses`.
        analysis: usize,
    },
    /// Stop a run (the controller marks it as terminated by the controller).
    TerminateAnalysisRun {
        /// The run.
        name: String,
    },
}

impl std::fmt::Display for ExperimentAction {
    /// One line for logs: what the action changes, never the whole object.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CreateReplicaSet(rs) => write!(
                f,
                "create ReplicaSet {} with {} replicas",
                rs.name_any(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            ),
            Self::ScaleReplicaSet { name, from, to } => {
                write!(f, "scale ReplicaSet {name} from {from} to {to}")
            }
            Self::CreateService(svc) => write!(f, "create Service {}", svc.name_any()),
            Self::DeleteService { name } => write!(f, "delete Service {name}"),
            Self::CreateAnalysisRun { name, analysis } => {
                write!(f, "create AnalysisRun {name} for spec.analyses[{analysis}]")
            }
            Self::TerminateAnalysisRun { name } => write!(f, "terminate AnalysisRun {name}"),
        }
    }
}

/// The name of an analysis's run, `<experiment>-<analysis>`.
pub fn run_name(experiment: &str, analysis: &str) -> String {
    format!("{experiment}-{analysis}")
}

/// One observed ReplicaSet, reduced to what decisions need.
#[derive(Clone, Debug)]
struct SetView {
    name: String,
    hash: Option<String>,
    replicas: i32,
    pods: i32,
    ready: i32,
    available: i32,
    /// Whether its status describes its current spec (observedGeneration caught up).
    current: bool,
}

impl SetView {
    fn of(rs: &ReplicaSet) -> Self {
        let status = rs.status.as_ref();
        let current = match (rs.metadata.generation, status) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(generation), Some(s)) => s.observed_generation.is_some_and(|o| o >= generation),
        };
        Self {
            name: rs.name_any(),
            hash: rs.labels().get(POD_TEMPLATE_HASH_LABEL).cloned(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            pods: status.map_or(0, |s| s.replicas),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
            current,
        }
    }
}

/// The working state of one [`plan`] call.
struct Planner<'a> {
    experiment: &'a Experiment,
    observed: &'a ExperimentObserved,
    now: Timestamp,
    name: String,
    prev: ExperimentStatus,
    status: ExperimentStatus,
    plan: ExperimentPlan,
}

/// Decides what `experiment` needs given what the cluster holds and the time.
pub fn plan(
    experiment: &Experiment,
    observed: &ExperimentObserved,
    now: Timestamp,
) -> ExperimentPlan {
    let prev = experiment.status.clone().unwrap_or_default();
    let mut p = Planner {
        experiment,
        observed,
        now,
        name: experiment.name_any(),
        status: prev.clone(),
        prev,
        plan: ExperimentPlan::default(),
    };
    p.run();
    p.plan.status = p.status;
    p.plan
}

/// How an experiment ended, and why.
struct Verdict {
    phase: AnalysisPhase,
    message: String,
}

impl Verdict {
    fn new(phase: AnalysisPhase, message: impl Into<String>) -> Self {
        Self {
            phase,
            message: message.into(),
        }
    }
}

impl Planner<'_> {
    fn run(&mut self) {
        let spec = &self.experiment.spec;
        let prev_phase = self.prev.phase.unwrap_or_default();
        let problems = problems(spec, &self.observed.analysis_problems);
        let invalid = (!problems.is_empty()).then(|| cut(&problems.join("; "), MESSAGE_LIMIT));
        let sets: BTreeMap<&str, SetView> = self
            .observed
            .replica_sets
            .iter()
            .map(|(k, rs)| (k.as_str(), SetView::of(rs)))
            .collect();

        // Templates as their ReplicaSets report them; a completed experiment's keep their
        // verdict, an invalid one's are not judged.
        let judge = !prev_phase.is_completed() && invalid.is_none();
        let mut failed: Option<String> = None;
        let mut statuses = Vec::new();
        for template in unique(&spec.templates) {
            let status = self.template_status(template, sets.get(template.name.as_str()), judge);
            if failed.is_none() && status.status == Some(TemplateStatusCode::Failed) && judge {
                failed = status.message.clone();
            }
            statuses.push(status);
        }
        let all_running = !statuses.is_empty()
            && statuses
                .iter()
                .all(|s| s.status == Some(TemplateStatusCode::Running));
        if judge && all_running && self.status.available_at.is_none() {
            self.status.available_at = Some(Time(self.now));
        }
        self.status.template_statuses = statuses;
        self.record_runs();

        let verdict = if prev_phase.is_completed() {
            None
        } else if let Some(message) = &invalid {
            Some(Verdict::new(
                AnalysisPhase::Error,
                format!("InvalidSpec: {message}"),
            ))
        } else if let Some(message) = failed {
            Some(Verdict::new(AnalysisPhase::Failed, message))
        } else {
            self.verdict()
        };
        let phase = match &verdict {
            Some(v) => v.phase,
            None if prev_phase.is_completed() => prev_phase,
            None if self.status.available_at.is_some() => AnalysisPhase::Running,
            None => AnalysisPhase::Pending,
        };
        self.status.phase = Some(phase);
        if let Some(message) = invalid.as_ref().filter(|_| !prev_phase.is_completed()) {
            self.set_condition(
                INVALID_SPEC_CONDITION,
                ConditionStatus::True,
                INVALID_SPEC_CONDITION,
                message,
            );
        }

        if phase.is_completed() {
            let message = verdict
                .map(|v| v.message)
                .or_else(|| self.prev.message.clone())
                .unwrap_or_default();
            self.status.message = Some(cut(&message, MESSAGE_LIMIT));
            self.complete(phase, &message, &sets);
        } else {
            let message = self.progress_message(phase);
            self.status.message = Some(message.clone());
            self.set_condition(
                PROGRESSING_CONDITION,
                ConditionStatus::True,
                EXPERIMENT_PROGRESSING,
                &message,
            );
            self.progress(&sets);
        }
        if phase != prev_phase {
            self.phase_event(phase);
        }
    }

    /// A template's status from its ReplicaSet; `judge`: the experiment is still running, so
    /// the template may become Running, fall back to Progressing or time out.
    fn template_status(
        &mut self,
        template: &TemplateSpec,
        set: Option<&SetView>,
        judge: bool,
    ) -> TemplateStatus {
        let prev = self
            .prev
            .template_statuses
            .iter()
            .find(|s| s.name == template.name)
            .cloned()
            .unwrap_or_default();
        let desired = template.desired();
        let hash = set
            .and_then(|s| s.hash.clone())
            .unwrap_or_else(|| template_hash(&self.name, template, prev.collision_count));
        let (code, message) = if judge {
            let available = set.is_some_and(|s| s.current && s.available >= desired);
            if available {
                (TemplateStatusCode::Running, None)
            } else {
                self.deadline(template, &prev, set, desired)
            }
        } else {
            // [`Planner::complete`] gives it the experiment's verdict.
            (
                prev.status.unwrap_or(TemplateStatusCode::Progressing),
                prev.message.clone(),
            )
        };
        let changed = prev.status != Some(code);
        TemplateStatus {
            name: template.name.clone(),
            replicas: set.map_or(0, |s| s.pods),
            updated_replicas: set.map_or(0, |s| s.pods),
            ready_replicas: set.map_or(0, |s| s.ready),
            available_replicas: set.map_or(0, |s| s.available),
            collision_count: prev.collision_count,
            status: Some(code),
            message,
            last_transition_time: if changed || prev.last_transition_time.is_none() {
                Some(Time(self.now))
            } else {
                prev.last_transition_time
            },
            service_name: prev.service_name,
            pod_template_hash: Some(hash),
        }
    }

    /// A template that is not available: Progressing until its deadline, then Failed. Asks to
    /// look again at the deadline.
    fn deadline(
        &mut self,
        template: &TemplateSpec,
        prev: &TemplateStatus,
        set: Option<&SetView>,
        desired: i32,
    ) -> (TemplateStatusCode, Option<String>) {
        let seconds = self
            .experiment
            .spec
            .progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
            .max(0);
        let since = match (prev.status, &prev.last_transition_time) {
            (Some(TemplateStatusCode::Progressing), Some(t)) => t.0,
            _ => self.now,
        };
        let until = since + jiff::SignedDuration::from_secs(i64::from(seconds));
        if self.now >= until {
            let message = format!(
                "Template {:?} timed out progressing: {} of {desired} pods available after {seconds}s (progressDeadlineSeconds)",
                template.name,
                set.map_or(0, |s| s.available),
            );
            return (TemplateStatusCode::Failed, Some(message));
        }
        self.requeue_at(until);
        (TemplateStatusCode::Progressing, None)
    }

    /// `status.analysisRuns`: each analysis's run as observed, else as recorded.
    fn record_runs(&mut self) {
        let mut runs = Vec::new();
        for analysis in unique_analyses(&self.experiment.spec.analyses) {
            let entry = match self.observed.runs.get(&analysis.name) {
                Some(run) => Some(ExperimentAnalysisRunStatus {
                    name: analysis.name.clone(),
                    analysis_run: run.name.clone(),
                    phase: run.phase,
                    message: run.message.as_deref().map(|m| cut(m, MESSAGE_LIMIT)),
                }),
                None => self
                    .prev
                    .analysis_runs
                    .iter()
                    .find(|r| r.name == analysis.name)
                    .cloned(),
            };
            runs.extend(entry);
        }
        self.status.analysis_runs = runs;
    }

    /// The verdict of a valid experiment whose templates have not failed, if it has one yet
    /// (the first that applies: a bad run, `terminate`, the duration, the required analyses).
    fn verdict(&mut self) -> Option<Verdict> {
        let spec = &self.experiment.spec;
        let runs = &self.observed.runs;
        for bad in [
            AnalysisPhase::Failed,
            AnalysisPhase::Error,
            AnalysisPhase::Inconclusive,
        ] {
            if let Some((analysis, run)) = spec
                .analyses
                .iter()
                .find_map(|a| runs.get(&a.name).filter(|r| r.phase == bad).map(|r| (a, r)))
            {
                let why = run.message.as_deref().unwrap_or("no message");
                return Some(Verdict::new(
                    bad,
                    format!(
                        "Analysis {:?} ({}) is {bad:?}: {why}",
                        analysis.name, run.name
                    ),
                ));
            }
        }
        let required: Vec<&str> = spec
            .analyses
            .iter()
            .filter(|a| a.required())
            .map(|a| a.name.as_str())
            .collect();
        // A required run stopped before its verdict is no pass: a person judges.
        if let Some(name) = required.iter().find(|n| {
            runs.get(**n)
                .is_some_and(|r| r.terminated && r.phase == AnalysisPhase::Successful)
        }) {
            return Some(Verdict::new(
                AnalysisPhase::Inconclusive,
                format!("Required analysis {name:?} was terminated before it reached a verdict"),
            ));
        }
        let pending: Vec<&str> = required
            .iter()
            .copied()
            .filter(|n| {
                runs.get(*n)
                    .is_none_or(|r| r.phase != AnalysisPhase::Successful)
            })
            .collect();
        let end = self.duration_end();
        let elapsed = end.is_some_and(|e| self.now >= e);
        if spec.is_terminated() {
            if spec.duration.is_none() && required.is_empty() {
                return Some(Verdict::new(
                    AnalysisPhase::Successful,
                    "Terminated; the experiment had no duration and no required analysis to judge",
                ));
            }
            if pending.is_empty() && (spec.duration.is_none() || elapsed) {
                return Some(Verdict::new(
                    AnalysisPhase::Successful,
                    "Terminated after its duration elapsed and its required analyses succeeded",
                ));
            }
            let mut why = Vec::new();
            if spec.duration.is_some() && !elapsed {
                why.push("before its duration elapsed".to_string());
            }
            if !pending.is_empty() {
                why.push(format!(
                    "before its required analyses completed ({})",
                    pending.join(", ")
                ));
            }
            return Some(Verdict::new(
                AnalysisPhase::Inconclusive,
                format!(
                    "Terminated {}: no verdict, a person decides",
                    why.join(" and ")
                ),
            ));
        }
        if let Some(duration) = &spec.duration {
            if elapsed && pending.is_empty() {
                let analyses = if required.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and its required analyses succeeded ({})",
                        required.join(", ")
                    )
                };
                return Some(Verdict::new(
                    AnalysisPhase::Successful,
                    format!(
                        "Experiment ran for its duration of {}s{analyses}",
                        duration.as_secs()
                    ),
                ));
            }
            if let Some(end) = end.filter(|_| !elapsed) {
                self.requeue_at(end);
            }
            return None;
        }
        if !required.is_empty() && pending.is_empty() {
            return Some(Verdict::new(
                AnalysisPhase::Successful,
                format!("Required analyses succeeded ({})", required.join(", ")),
            ));
        }
        None
    }

    /// When the duration ends: `availableAt` plus `duration`.
    fn duration_end(&self) -> Option<Timestamp> {
        let start = self.status.available_at.as_ref()?.0;
        let duration = self.experiment.spec.duration.as_ref()?;
        let secs = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2);
        start
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .ok()
    }

    /// Why a Pending or Running experiment is where it is (stable between reconciles, so an
    /// unchanged experiment writes an unchanged status).
    fn progress_message(&self, phase: AnalysisPhase) -> String {
        let spec = &self.experiment.spec;
        if phase == AnalysisPhase::Pending {
            let waiting: Vec<String> = self
                .status
                .template_statuses
                .iter()
                .filter(|s| s.status != Some(TemplateStatusCode::Running))
                .map(|s| {
                    let desired = spec
                        .templates
                        .iter()
                        .find(|t| t.name == s.name)
                        .map_or(0, TemplateSpec::desired);
                    format!(
                        "{} ({} of {desired} available)",
                        s.name, s.available_replicas
                    )
                })
                .collect();
            return format!(
                "Waiting for templates to become available: {}",
                waiting.join(", ")
            );
        }
        let pending: Vec<&str> = spec
            .analyses
            .iter()
            .filter(|a| a.required())
            .filter(|a| {
                self.observed
                    .runs
                    .get(&a.name)
                    .is_none_or(|r| r.phase != AnalysisPhase::Successful)
            })
            .map(|a| a.name.as_str())
            .collect();
        match (&spec.duration, self.duration_end()) {
            (Some(duration), Some(end)) if self.now < end => {
                format!("Running for {}s, until {end}", duration.as_secs())
            }
            (Some(duration), _) => format!(
                "Ran for its duration of {}s; waiting for required analyses: {}",
                duration.as_secs(),
                pending.join(", ")
            ),
            (None, _) if !pending.is_empty() => format!(
                "Running until required analyses complete: {}",
                pending.join(", ")
            ),
            (None, _) => "Running until terminated".to_string(),
        }
    }

    /// Pending or Running: each template's ReplicaSet at its replicas, its Service once the
    /// ReplicaSet exists, and each analysis's run once every template was available.
    fn progress(&mut self, sets: &BTreeMap<&str, SetView>) {
        let spec = &self.experiment.spec;
        for template in unique(&spec.templates) {
            let hash = self
                .status
                .template_statuses
                .iter()
                .find(|s| s.name == template.name)
                .and_then(|s| s.pod_template_hash.clone())
                .unwrap_or_default();
            let desired = template.desired();
            match sets.get(template.name.as_str()) {
                None => {
                    let rs = replica_set(self.experiment, template, &hash, desired);
                    self.event(
                        EventType::Normal,
                        NEW_REPLICA_SET_CREATED,
                        format!(
                            "Created ReplicaSet {} for template {:?} with {desired} replicas",
                            rs.name_any(),
                            template.name
                        ),
                    );
                    self.plan
                        .actions
                        .push(ExperimentAction::CreateReplicaSet(Box::new(rs)));
                }
                Some(set) => {
                    self.scale(set, desired);
                    self.ensure_service(template, &hash);
                }
            }
        }
        if self.status.available_at.is_none() {
            return;
        }
        for (index, analysis) in spec.analyses.iter().enumerate() {
            if self.observed.runs.contains_key(&analysis.name) {
                continue;
            }
            let name = run_name(&self.name, &analysis.name);
            self.plan.actions.push(ExperimentAction::CreateAnalysisRun {
                name: name.clone(),
                analysis: index,
            });
            if !self
                .status
                .analysis_runs
                .iter()
                .any(|r| r.name == analysis.name)
            {
                self.status.analysis_runs.push(ExperimentAnalysisRunStatus {
                    name: analysis.name.clone(),
                    analysis_run: name,
                    phase: AnalysisPhase::Pending,
                    message: None,
                });
            }
        }
    }

    /// Creates the Service a template asks for, unless it exists; records its name.
    fn ensure_service(&mut self, template: &TemplateSpec, hash: &str) {
        let Some(name) = service_name(&self.name, template) else {
            return;
        };
        if !self.observed.services.contains_key(&template.name) {
            let svc = service(self.experiment, template, hash, &name);
            self.event(
                EventType::Normal,
                SERVICE_CREATED,
                format!("Created Service {name} for template {:?}", template.name),
            );
            self.plan
                .actions
                .push(ExperimentAction::CreateService(Box::new(svc)));
        }
        let observed = self.observed.services.get(&template.name).cloned();
        if let Some(status) = self
            .status
            .template_statuses
            .iter_mut()
            .find(|s| s.name == template.name)
        {
            status.service_name = Some(observed.unwrap_or(name));
        }
    }

    /// The experiment has its verdict: conditions, runs stopped, and the ReplicaSets scaled
    /// down (and Services deleted) once the scale-down delay has passed.
    fn complete(&mut self, phase: AnalysisPhase, message: &str, sets: &BTreeMap<&str, SetView>) {
        let message = cut(message, MESSAGE_LIMIT);
        self.set_condition(
            PROGRESSING_CONDITION,
            ConditionStatus::False,
            EXPERIMENT_COMPLETED,
            &message,
        );
        self.set_condition(
            COMPLETED_CONDITION,
            ConditionStatus::True,
            EXPERIMENT_COMPLETED,
            &message,
        );
        let template_code = match phase {
            AnalysisPhase::Successful => TemplateStatusCode::Successful,
            AnalysisPhase::Failed => TemplateStatusCode::Failed,
            // Error and Inconclusive: never reported as a template's success or failure.
            _ => TemplateStatusCode::Error,
        };
        for status in &mut self.status.template_statuses {
            if status.status != Some(template_code) {
                status.status = Some(template_code);
                status.last_transition_time = Some(Time(self.now));
            }
        }
        for run in self.observed.runs.values() {
            if !run.phase.is_completed() && !run.terminated {
                self.plan
                    .actions
                    .push(ExperimentAction::TerminateAnalysisRun {
                        name: run.name.clone(),
                    });
            }
        }
        let completed_at = self
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == COMPLETED_CONDITION)
            .map_or(self.now, |c| c.last_transition_time.0);
        let delay = self
            .experiment
            .spec
            .scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
            .max(0);
        let at = completed_at + jiff::SignedDuration::from_secs(i64::from(delay));
        let busy = sets.values().any(|s| s.replicas != 0) || !self.observed.services.is_empty();
        if self.now < at {
            if busy {
                self.requeue_at(at);
            }
            return;
        }
        for set in sets.values() {
            self.scale(set, 0);
        }
        for name in self.observed.services.values() {
            self.event(
                EventType::Normal,
                SERVICE_DELETED,
                format!("Deleted Service {name}: the experiment is over"),
            );
            self.plan
                .actions
                .push(ExperimentAction::DeleteService { name: name.clone() });
        }
        for status in &mut self.status.template_statuses {
            status.service_name = None;
        }
    }

    /// Scales a ReplicaSet to `to` pods, unless it is there already.
    fn scale(&mut self, set: &SetView, to: i32) {
        if set.replicas == to {
            return;
        }
        let direction = if to > set.replicas { "up" } else { "down" };
        self.event(
            EventType::Normal,
            SCALING_REPLICA_SET,
            format!(
                "Scaled {direction} ReplicaSet {} from {} to {to}",
                set.name, set.replicas
            ),
        );
        self.plan.actions.push(ExperimentAction::ScaleReplicaSet {
            name: set.name.clone(),
            from: set.replicas,
            to,
        });
    }

    /// The event of a new phase (none for Pending).
    fn phase_event(&mut self, phase: AnalysisPhase) {
        let (type_, reason) = match phase {
            AnalysisPhase::Pending => return,
            AnalysisPhase::Running => (EventType::Normal, EXPERIMENT_RUNNING),
            AnalysisPhase::Successful => (EventType::Normal, EXPERIMENT_SUCCESSFUL),
            AnalysisPhase::Failed => (EventType::Warning, EXPERIMENT_FAILED),
            AnalysisPhase::Error => (EventType::Warning, EXPERIMENT_ERROR),
            AnalysisPhase::Inconclusive => (EventType::Warning, EXPERIMENT_INCONCLUSIVE),
        };
        let message = format!(
            "Experiment {} is {phase:?}: {}",
            self.name,
            self.status.message.as_deref().unwrap_or_default()
        );
        self.event(type_, reason, message);
    }

    /// Sets a condition, keeping its transition time while its status holds and its update
    /// time while nothing about it changes, so an unchanged experiment writes nothing.
    fn set_condition(&mut self, type_: &str, value: ConditionStatus, reason: &str, message: &str) {
        let now = Time(self.now);
        match self.status.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != value {
                    c.last_transition_time = now.clone();
                }
                if c.status != value || c.reason != reason || c.message != message {
                    c.last_update_time = now;
                }
                c.status = value;
                c.reason = reason.to_string();
                c.message = message.to_string();
            }
            None => self.status.conditions.push(ExperimentCondition {
                type_: type_.to_string(),
                status: value,
                last_update_time: now.clone(),
                last_transition_time: now,
                reason: reason.to_string(),
                message: message.to_string(),
            }),
        }
    }

    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.plan.events.push(Event {
            type_,
            reason,
            message,
        });
    }

    /// Asks to plan again at `at` at the latest (nothing when it has passed).
    fn requeue_at(&mut self, at: Timestamp) {
        if at <= self.now {
            return;
        }
        let delay = at.duration_since(self.now).unsigned_abs();
        self.plan.requeue_after = Some(self.plan.requeue_after.map_or(delay, |d| d.min(delay)));
    }
}

/// The templates, the first of each name (an invalid spec may repeat one).
fn unique(templates: &[TemplateSpec]) -> Vec<&TemplateSpec> {
    let mut seen = std::collections::BTreeSet::new();
    templates
        .iter()
        .filter(|t| seen.insert(t.name.as_str()))
        .collect()
}

/// The analyses, the first of each name (an invalid spec may repeat one).
fn unique_analyses(
    analyses: &[sluice_api::ExperimentAnalysisTemplateRef],
) -> Vec<&sluice_api::ExperimentAnalysisTemplateRef> {
    let mut seen = std::collections::BTreeSet::new();
    analyses
        .iter()
        .filter(|a| seen.insert(a.name.as_str()))
        .collect()
}
