//! Analysis inside a rollout: which AnalysisRuns the rollout needs now (a canary step's, the
//! background one, blue/green's pre- and post-promotion ones), what their verdicts mean for it,
//! and which runs are no longer needed (terminated) or too old to keep (deleted).
//!
//! A run is found again by the name the status records, or by its labels (kind, step, hash), so
//! a status write lost after the run's creation never creates it twice.

use jiff::Timestamp;
use kube_core::ResourceExt;
use sluice_api::{
    AnalysisPhase, AnalysisRun, RolloutAnalysis, RolloutAnalysisRunStatus,
    vocab::{
        POD_TEMPLATE_HASH_LABEL, ROLLOUT_TYPE_LABEL, SPENT_LABEL, STEP_INDEX_LABEL,
        TERMINATED_BY_CONTROLLER, TERMINATED_LABEL, reason,
    },
};

use super::{Action, EventType, Planner, pause};

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
                if recorded.is_none_or(|r| r.name != name) {
                    p.event(
                        EventType::Normal,
                        reason::ANALYSIS_RUN_STARTED,
                        format!("Started {} AnalysisRun {name}", kind.label()),
                    );
                }
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

/// Acts on a run's verdict: a failure aborts the rollout. Returns whether it passed.
pub fn judge(p: &mut Planner<'_>, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Passed => true,
        Verdict::Failed(message) => {
            p.status.abort = Some(true);
            p.progressed();
            p.event(EventType::Warning, reason::ANALYSIS_RUN_FAILED, message);
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
