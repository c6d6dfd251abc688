//! Analysis inside a rollout: which AnalysisRuns the rollout needs now (a canary step's, the
//! background one, blue/green's pre- and post-promotion ones), what their verdicts mean for it,
//! and which runs are no longer needed (terminated) or too old to keep (deleted).
//!
//! A run is found again by the name the status records, or by its labels (kind, step, hash), so
//! a status write lost after the run's creation never creates it twice.

use jiff::Timestamp;
use kube_core::ResourceExt;
use sluice_analysis::{
    args::{flatten_templates, lookup_templates},
    rules::{SpecError, validate_template},
};
use sluice_api::{
    AnalysisPhase, AnalysisRun, AnalysisTemplateRef, AnalysisTemplateSpec, RolloutAnalysis,
    RolloutAnalysisRunStatus, RolloutSpec, SpecProblem,
    vocab::{
        POD_TEMPLATE_HASH_LABEL, ROLLOUT_TYPE_LABEL, SPENT_LABEL, STEP_INDEX_LABEL,
        TERMINATED_BY_CONTROLLER, TERMINATED_LABEL, reason,
    },
};

use super::{Action, EventType, Planner, pause};

/// What the cluster holds under a template reference.
#[derive(Clone, Copy, Debug)]
pub enum Found<'a> {
    /// No such template.
    Missing,
    /// A template the types cannot read, with the reason.
    Unreadable(&'a str),
    /// The template's spec.
    Spec(&'a AnalysisTemplateSpec),
}

/// The problems of the templates a rollout's strategy names, at the fields that name them: a
/// template that does not exist or cannot be read, one a run could not be made from (its
/// metrics, conditions or providers, as [`validate_template`] checks them, with the templates it
/// includes), and an argument a template requires that neither the templates nor the rollout
/// give. `find` looks a reference up in the cluster.
pub fn template_problems<'a>(
    spec: &RolloutSpec,
    find: impl Fn(&AnalysisTemplateRef) -> Found<'a>,
) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    for (field, analysis) in spec.analyses() {
        let mut found = Vec::new();
        for (i, template) in analysis.templates.iter().enumerate() {
            let at = format!("{field}.templates[{i}]");
            let kind = template_kind(template);
            let name = &template.template_name;
            match find(template) {
                Found::Missing => problems.push(SpecProblem::invalid(
                    at,
                    format!("{kind} {name:?} not found"),
                )),
                Found::Unreadable(reason) => problems.push(SpecProblem::invalid(
                    at,
                    format!("{kind} {name:?} cannot be read: {reason}"),
                )),
                Found::Spec(_) => {
                    // The template with those it includes (Argo's composition), each once.
                    let included =
                        lookup_templates(std::slice::from_ref(template), |r| match find(r) {
                            Found::Spec(spec) => Some(spec),
                            Found::Missing | Found::Unreadable(_) => None,
                        });
                    let all = match included {
                        Ok(all) => all,
                        Err(e) => {
                            problems.push(SpecProblem::invalid(
                                at,
                                format!(
                                    "{kind} {name:?} includes templates that cannot be used: {e}"
                                ),
                            ));
                            continue;
                        }
                    };
                    let checked =
                        all.iter()
                            .try_for_each(|t| validate_template(t))
                            .and_then(|()| {
                                flatten_templates(&all).map(|_| ()).map_err(SpecError::from)
                            });
                    if let Err(e) = checked {
                        let message = format!("{kind} {name:?}: {e}");
                        problems.push(if e.is_unsupported() {
                            SpecProblem::unsupported_because(at, message)
                        } else {
                            SpecProblem::invalid(at, message)
                        });
                    }
                    found.extend(all.into_iter().map(|t| (template, t)));
                }
            }
        }
        // An argument is given by the rollout, or by any of the templates merged into the run.
        let given = |arg: &str| {
            analysis.args.iter().any(|a| a.name == arg)
                || found.iter().any(|(_, t)| {
                    t.args
                        .iter()
                        .any(|a| a.name == arg && (a.value.is_some() || a.value_from.is_some()))
                })
        };
        let mut reported: Vec<&str> = Vec::new();
        for (template, template_spec) in &found {
            for arg in &template_spec.args {
                if !given(&arg.name) && !reported.contains(&arg.name.as_str()) {
                    reported.push(&arg.name);
                    problems.push(SpecProblem::invalid(
                        format!("{field}.args"),
                        format!(
                            "args.{} was not resolved: {} {:?} requires it and no value was supplied",
                            arg.name,
                            template_kind(template),
                            template.template_name
                        ),
                    ));
                }
            }
        }
    }
    problems
}

/// Whether two references name the same template (an absent `clusterScope` is `false`).
pub fn same_template(a: &AnalysisTemplateRef, b: &AnalysisTemplateRef) -> bool {
    a.template_name == b.template_name
        && a.cluster_scope.unwrap_or(false) == b.cluster_scope.unwrap_or(false)
}

/// `ClusterAnalysisTemplate` or `AnalysisTemplate`, as a reference names it.
fn template_kind(template: &AnalysisTemplateRef) -> &'static str {
    if template.cluster_scope.unwrap_or(false) {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

/// Completed runs of each outcome kept per rollout, when the spec is silent.
pub const DEFAULT_HISTORY_LIMIT: i32 = 5;

/// What a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// The `analysis` step at this index.
    Step(i32),
    /// `canary.analysis`, alongside the steps.
    Background,
    /// `blueGreen.prePromotionAnalysis`, before the switch.
    PrePromotion,
    /// `blueGreen.postPromotionAnalysis`, after the switch.
    PostPromotion,
}

impl RunKind {
    /// The `rollout-type` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Step(_) => "Step",
            Self::Background => "Background",
            Self::PrePromotion => "PrePromotion",
            Self::PostPromotion => "PostPromotion",
        }
    }

    fn suffix(self) -> String {
        match self {
            Self::Step(i) => format!("-{i}"),
            Self::Background => String::new(),
            Self::PrePromotion => "-pre".into(),
            Self::PostPromotion => "-post".into(),
        }
    }
}

/// One AnalysisRun of the rollout, reduced to what decisions need.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    /// The run's name.
    pub name: String,
    /// The pod-template-hash it analyses.
    pub hash: String,
    /// What it is for; `None` for runs Sluice cannot place (not its labels).
    pub kind: Option<RunKind>,
    /// Its phase.
    pub phase: AnalysisPhase,
    /// Its message.
    pub message: Option<String>,
    /// Whether it was asked to stop.
    pub terminating: bool,
    /// Whether a retry left it behind ([`SPENT_LABEL`]).
    pub spent: bool,
    /// Whether Sluice asked it to stop ([`TERMINATED_LABEL`]); a person's terminate is not this.
    pub cut_by_controller: bool,
    /// When it was created.
    pub created: Option<Timestamp>,
}

impl RunView {
    /// The view of a run.
    pub fn of(run: &AnalysisRun) -> Self {
        let labels = run.labels();
        let kind = match labels.get(ROLLOUT_TYPE_LABEL).map(String::as_str) {
            Some("Step") => labels
                .get(STEP_INDEX_LABEL)
                .and_then(|i| i.parse().ok())
                .map(RunKind::Step),
            Some("Background") => Some(RunKind::Background),
            Some("PrePromotion") => Some(RunKind::PrePromotion),
            Some("PostPromotion") => Some(RunKind::PostPromotion),
            _ => None,
        };
        let status = run.status.as_ref();
        Self {
            name: run.name_any(),
            hash: labels
                .get(POD_TEMPLATE_HASH_LABEL)
                .cloned()
                .unwrap_or_default(),
            kind,
            phase: status.map(|s| s.phase).unwrap_or_default(),
            message: status.and_then(|s| s.message.clone()),
            terminating: run.spec.is_terminated(),
            spent: labels.contains_key(SPENT_LABEL),
            cut_by_controller: labels.get(TERMINATED_LABEL).map(String::as_str)
                == Some(TERMINATED_BY_CONTROLLER),
            created: run.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// A run the plan asks for; `apply` resolves its templates and arguments into the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub kind: RunKind,
    /// The pod-template-hash it analyses (the new version's).
    pub hash: String,
    /// The stable version's hash, for `podTemplateHashValue: Stable`.
    pub stable_hash: Option<String>,
    /// The templates, arguments and options the rollout gives.
    pub analysis: RolloutAnalysis,
}

/// What a run says to the rollout waiting on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet.
    Waiting,
    /// Passed: go on.
    Passed,
    /// Failed or errored: abort, with this message.
    Failed(String),
    /// Inconclusive, and a person has not said yet whether to go on.
    Held,
}

impl RunView {
    /// The view of a run the API holds but Sluice's types cannot read: placed by its labels,
    /// and an Error, so a rollout waiting on it aborts instead of passing or waiting forever.
    pub fn unreadable(
        metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        error: &str,
    ) -> Self {
        let mut run = AnalysisRun::new(
            metadata.name.as_deref().unwrap_or_default(),
            Default::default(),
        );
        run.metadata = metadata.clone();
        Self {
            phase: AnalysisPhase::Error,
            message: Some(format!("the AnalysisRun cannot be read: {error}")),
            ..Self::of(&run)
        }
    }

    /// Whether the run can speak for its version: not left behind by a retry, and not cut
    /// short by the controller unless what it measured before already failed it (a terminated
    /// run reads Successful with no verdict behind it, so it is never a pass).
    pub fn is_evidence(&self) -> bool {
        !self.spent
            && (!self.cut_by_controller
                || matches!(self.phase, AnalysisPhase::Failed | AnalysisPhase::Error))
    }
}

/// Finds or starts the run of `kind` for the version `hash`, marks it needed, and returns its
/// verdict and the status entry to record. `recorded` is the entry the status holds for this
/// kind of run.
pub fn require(
    p: &mut Planner<'_>,
    kind: RunKind,
    hash: &str,
    analysis: &RolloutAnalysis,
    recorded: Option<&RolloutAnalysisRunStatus>,
) -> (Verdict, RolloutAnalysisRunStatus) {
    let runs: Vec<RunView> = p.runs.clone();
    let matches = |r: &&RunView| r.kind == Some(kind) && r.hash == hash && r.is_evidence();
    // The recorded run, if it is this kind's; else the newest one this attempt started (its
    // status write was lost), finished or not: a run is never started twice for one attempt.
    let found = recorded
        .and_then(|rec| runs.iter().filter(matches).find(|r| r.name == rec.name))
        .or_else(|| runs.iter().filter(matches).max_by_key(|r| r.created))
        .cloned();
    let run = match found {
        Some(run) => run,
        None => {
            let name = recorded
                .filter(|rec| {
                    // Recorded, not in the cache yet: created a moment ago.
                    !runs.iter().any(|r| r.name == rec.name) && rec.status.is_none()
                })
                .map_or_else(|| fresh_name(p, kind, hash), |rec| rec.name.clone());
            let stable_hash = p.status.stable_rs.clone();
            if !runs.iter().any(|r| r.name == name) {
                p.act(Action::CreateAnalysisRun(Box::new(NewRun {
                    name: name.clone(),
                    kind,
                    hash: hash.to_string(),
                    stable_hash,
                    analysis: analysis.clone(),
                })));
            }
            p.runs_needed.push(name.clone());
            return (
                Verdict::Waiting,
                RolloutAnalysisRunStatus {
                    name,
                    status: None,
                    message: None,
                },
            );
        }
    };
    p.runs_needed.push(run.name.clone());
    let before = recorded
        .filter(|r| r.name == run.name)
        .and_then(|r| r.status);
    phase_changed(p, kind, &run, before);
    let entry = RolloutAnalysisRunStatus {
        name: run.name.clone(),
        status: Some(run.phase),
        message: run.message.clone(),
    };
    let verdict = match run.phase {
        AnalysisPhase::Successful => Verdict::Passed,
        AnalysisPhase::Failed | AnalysisPhase::Error => Verdict::Failed(format!(
            "AnalysisRun {} ended {:?}{}",
            run.name,
            run.phase,
            run.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        AnalysisPhase::Inconclusive if pause::inconclusive(p, &run.name) => Verdict::Passed,
        AnalysisPhase::Inconclusive => Verdict::Held,
        AnalysisPhase::Pending | AnalysisPhase::Running => Verdict::Waiting,
    };
    (verdict, entry)
}

/// Says on the rollout that one of its runs reached a new phase, as Argo does
/// (`AnalysisRun<Phase>`: the reasons its notification triggers listen to), once: the phase is
/// recorded in the status written with the event, so the next reconcile sees it as known.
fn phase_changed(p: &mut Planner<'_>, kind: RunKind, run: &RunView, before: Option<AnalysisPhase>) {
    let reason = match run.phase {
        _ if before == Some(run.phase) => return,
        AnalysisPhase::Pending => return,
        AnalysisPhase::Running => reason::ANALYSIS_RUN_RUNNING,
        AnalysisPhase::Successful => reason::ANALYSIS_RUN_SUCCESSFUL,
        AnalysisPhase::Failed => reason::ANALYSIS_RUN_FAILED,
        AnalysisPhase::Error => reason::ANALYSIS_RUN_ERROR,
        AnalysisPhase::Inconclusive => reason::ANALYSIS_RUN_INCONCLUSIVE,
    };
    let type_ = if matches!(run.phase, AnalysisPhase::Failed | AnalysisPhase::Error) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let was = before.map(|b| format!(" (was {b:?})")).unwrap_or_default();
    let message = run
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    p.event(
        type_,
        reason,
        format!(
            "{} AnalysisRun {} {:?}{was}{message}",
            kind.label(),
            run.name,
            run.phase
        ),
    );
}

/// Acts on a run's verdict: a failure aborts the rollout (the run's own phase event says why).
/// Returns whether it passed.
pub fn judge(p: &mut Planner<'_>, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Passed => true,
        Verdict::Failed(_) => {
            p.status.abort = Some(true);
            p.progressed();
            false
        }
        Verdict::Waiting | Verdict::Held => false,
    }
}

/// `<rollout>-<hash>-<revision><suffix>`, with `.N` added when an earlier attempt holds it.
fn fresh_name(p: &Planner<'_>, kind: RunKind, hash: &str) -> String {
    let revision = p.sets.iter().find(|s| s.hash == hash).map_or_else(
        || p.sets.iter().map(|s| s.revision).max().unwrap_or(0) + 1,
        |s| s.revision,
    );
    let base = format!(
        "{}-{hash}-{revision}{}",
        p.rollout.name_any(),
        kind.suffix()
    );
    let taken = |n: &str| p.runs.iter().any(|r| r.name == n);
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}.{n}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// A retry: the runs of version `hash` speak for the aborted attempt, not the next one; they
/// are marked so that the retry starts its own, in this same plan.
pub fn spend(p: &mut Planner<'_>, hash: &str) {
    let mut spent = Vec::new();
    for run in p.runs.iter_mut().filter(|r| r.hash == hash && !r.spent) {
        run.spent = true;
        spent.push(run.name.clone());
    }
    for name in spent {
        p.act(Action::SpendAnalysisRun { name });
    }
}

/// Whether the attempt at version `hash` has started a run of `kind` that still speaks for it:
/// such a run stays needed whatever happens meanwhile (a pause, a moment of unreadiness).
pub fn started(p: &Planner<'_>, kind: RunKind, hash: &str) -> bool {
    p.runs
        .iter()
        .any(|r| r.kind == Some(kind) && r.hash == hash && r.is_evidence())
}

/// Stops the runs nothing waits on any more, and deletes completed runs beyond the history
/// limits (oldest first).
pub fn tidy(p: &mut Planner<'_>) {
    let needed = std::mem::take(&mut p.runs_needed);
    let runs = p.runs.clone();
    for run in &runs {
        if !needed.contains(&run.name) && !run.phase.is_completed() && !run.terminating {
            p.act(Action::TerminateAnalysisRun {
                name: run.name.clone(),
            });
        }
    }
    let limits = p.rollout.spec.analysis.as_ref();
    let keep_ok = limits
        .and_then(|a| a.successful_run_history_limit)
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let keep_bad = limits
        .and_then(|a| a.unsuccessful_run_history_limit)
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let mut done: Vec<&RunView> = runs
        .iter()
        .filter(|r| r.phase.is_completed() && !needed.contains(&r.name))
        .collect();
    done.sort_by_key(|r| std::cmp::Reverse(r.created));
    let (ok, bad): (Vec<&RunView>, Vec<&RunView>) = done
        .into_iter()
        .partition(|r| r.phase == AnalysisPhase::Successful);
    for (list, keep) in [(ok, keep_ok), (bad, keep_bad)] {
        for run in list.into_iter().skip(usize::try_from(keep).unwrap_or(0)) {
            p.act(Action::DeleteAnalysisRun {
                name: run.name.clone(),
            });
        }
    }
    p.runs_needed = needed;
}
