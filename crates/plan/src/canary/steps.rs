//! Where a canary's steps stand: which steps are satisfied (their pods reached, their pause
//! over, their analysis passed), the analysis they run, and the pods each step asks for.
//!
//! Nothing here moves pods: `advance` only reads whether a step is done, so the plan scales
//! toward the step the rollout ends up standing at.

use std::time::Duration;

use sluice_api::{
    CanaryStatus, CanaryStep, CanaryStrategy, PauseReason, RolloutAnalysis, SetCanaryScale,
    vocab::reason,
};

use super::{
    super::{
        EventType, Planner,
        analysis::{self, RunKind, judge},
        pause::{self, Stand},
        replicas::{Limits, canary_for_weight, reached_with},
        replicasets::SetView,
        traffic,
    },
    Canary,
};

/// Moves through the actions that are already satisfied; returns the index to stand at. A
/// written step is completed (and said so) with its last action.
pub(super) fn advance(p: &mut Planner<'_>, c: &Canary<'_>, mut index: i32) -> i32 {
    let (steps, hash, desired, limits) = (&c.steps.actions, c.hash, c.desired, c.limits);
    let total = c.steps.step_of(c.steps.len());
    while let Some(step) = usize::try_from(index).ok().and_then(|i| steps.get(i)) {
        let written = c.steps.step_of(index);
        let done = match step {
            CanaryStep::SetWeight(_) | CanaryStep::SetCanaryScale(_)
                if let Some(routing) = c.routing.as_ref() =>
            {
                super::routed::step_done(c, routing, index)
            }
            // Header and mirror routes are written with the weight; they need no waiting.
            CanaryStep::SetHeaderRoute(_) | CanaryStep::SetMirrorRoute(_) => c.routing.is_some(),
            CanaryStep::SetWeight(_) | CanaryStep::SetCanaryScale(_) => {
                let targets = targets_at(steps, index, desired, limits);
                reached_with(&c.counts.toward(desired, limits, targets), c.progress)
                    && settled(&p.sets)
            }
            CanaryStep::Pause(pause) => pause_done(p, pause.duration.as_ref().map(|d| d.as_std())),
            CanaryStep::Analysis(analysis) => step_analysis_done(p, analysis, written, hash),
            CanaryStep::Experiment(experiment) => {
                super::experiment::step_done(p, c, experiment, written)
            }
            // Other kinds are refused by validate() until they are built.
            _ => false,
        };
        if !done {
            break;
        }
        p.progressed();
        if c.steps.ends_step(index) {
            p.event(
                EventType::Normal,
                reason::ROLLOUT_STEP_COMPLETED,
                format!(
                    "Rollout step {}/{total} completed ({})",
                    written + 1,
                    c.steps.kinds_of_step(index)
                ),
            );
        }
        index += 1;
    }
    index
}

/// Whether one of the waits (a pause, an analysis) of the written step `step` has begun: its
/// settings were then done.
pub(super) fn wait_begun(p: &Planner<'_>, c: &Canary<'_>, step: i32) -> bool {
    let first = c.steps.first_of(step);
    (first..c.steps.first_of(step + 1)).any(|index| {
        match usize::try_from(index)
            .ok()
            .and_then(|i| c.steps.actions.get(i))
        {
            Some(CanaryStep::Pause(_)) => {
                pause::started(&p.status, PauseReason::CanaryPauseStep).is_some()
            }
            Some(CanaryStep::Analysis(_)) => analysis::started(p, RunKind::Step(step), c.hash),
            Some(CanaryStep::Experiment(_)) => super::experiment::started(p, c.hash, step),
            _ => false,
        }
    })
}

/// Whether the `analysis` of the written step `index` passed; starts its run when it has none.
/// A failed run aborts the rollout, an inconclusive one pauses it.
fn step_analysis_done(
    p: &mut Planner<'_>,
    analysis: &RolloutAnalysis,
    index: i32,
    hash: &str,
) -> bool {
    let recorded = p
        .status
        .canary
        .as_ref()
        .and_then(|c| c.current_step_analysis_run_status.clone());
    let (verdict, entry) =
        analysis::require(p, RunKind::Step(index), hash, analysis, recorded.as_ref());
    p.status
        .canary
        .get_or_insert_with(CanaryStatus::default)
        .current_step_analysis_run_status = Some(entry);
    judge(p, verdict)
}

/// Keeps the run of the `analysis` action at `index` going while the rollout is paused; a run
/// it already has is judged (a failure aborts), none is started.
pub(super) fn hold_step_analysis(p: &mut Planner<'_>, c: &Canary<'_>, index: i32) {
    let written = c.steps.step_of(index);
    let analysis = match usize::try_from(index)
        .ok()
        .and_then(|i| c.steps.actions.get(i))
    {
        Some(CanaryStep::Analysis(analysis)) => analysis,
        // An experiment step's Experiment goes on too, and is judged.
        Some(CanaryStep::Experiment(experiment)) => {
            return super::experiment::hold(p, c, experiment, written);
        }
        _ => return,
    };
    if analysis::started(p, RunKind::Step(written), c.hash) {
        step_analysis_done(p, analysis, written, c.hash);
    }
}

/// Runs `canary.analysis` from its starting step on (`step` is the written step the rollout
/// stands at), while the canary runs.
pub(super) fn background_analysis(
    p: &mut Planner<'_>,
    strategy: &CanaryStrategy,
    step: i32,
    hash: &str,
) {
    let Some(background) = strategy.analysis.as_ref() else {
        return;
    };
    if step < background.starting_step.unwrap_or(0) {
        return;
    }
    let recorded = p
        .status
        .canary
        .as_ref()
        .and_then(|c| c.current_background_analysis_run_status.clone());
    let (verdict, entry) = analysis::require(
        p,
        RunKind::Background,
        hash,
        &background.analysis,
        recorded.as_ref(),
    );
    p.status
        .canary
        .get_or_insert_with(CanaryStatus::default)
        .current_background_analysis_run_status = Some(entry);
    judge(p, verdict);
}

/// Whether every set holds no more pods than it was scaled to: a step completes on the split it
/// asked for, not while a scaled-down set still runs (and serves) its extra pods.
pub fn settled(sets: &[SetView]) -> bool {
    sets.iter().all(|s| s.pods <= s.replicas.max(0))
}

/// Whether the pause step the rollout stands at is over; starts it when it has not begun.
fn pause_done(p: &mut Planner<'_>, duration: Option<Duration>) -> bool {
    let reason = PauseReason::CanaryPauseStep;
    match pause::stand(p, reason, duration) {
        Stand::Elapsed => true,
        Stand::Held => false,
        Stand::Promoted => {
            pause::resume(p, "Rollout resumed");
            true
        }
        Stand::NotStarted if duration.is_some_and(|d| d.is_zero()) => true,
        Stand::NotStarted => {
            pause::hold(p, reason, duration, "");
            false
        }
    }
}

/// Pods for the canary and the stable set at a step. The stable set leaves room for the weight
/// (without a traffic router, pods are the traffic); the canary follows the weight unless the
/// last `setCanaryScale` at or before the step sizes it (`replicas` or `weight`; a
/// `matchTrafficWeight` hands it back to the weight), within what `maxSurge` allows beside the
/// stable set, so the step can always be reached.
pub fn targets_at(steps: &[CanaryStep], index: i32, desired: i32, limits: Limits) -> (i32, i32) {
    let by_weight = canary_for_weight(desired, traffic::at_step(steps, index).canary);
    let stable = desired - by_weight;
    let Some(upto) = usize::try_from(index).ok().filter(|i| *i < steps.len()) else {
        return (by_weight, stable);
    };
    let scale = steps[..=upto].iter().rev().find_map(|s| match s {
        CanaryStep::SetCanaryScale(scale) => Some(scale),
        _ => None,
    });
    let canary = match scale {
        Some(SetCanaryScale {
            replicas: Some(n), ..
        }) => (*n).clamp(0, desired),
        Some(SetCanaryScale {
            weight: Some(w), ..
        }) => canary_for_weight(desired, *w),
        _ => return (by_weight, stable),
    };
    let room = (desired + limits.max_surge - stable).max(by_weight);
    (canary.min(room), stable)
}
