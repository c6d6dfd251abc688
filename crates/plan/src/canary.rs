//! The canary strategy: which ReplicaSet is stable and which is the canary, where the steps
//! stand, and how many pods each set gets, decided from the status and the sets alone.
//!
//! The step index, pause start times and the abort flag live in the status, so a restarted
//! controller resumes the same step with the same timer.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use sluice_api::{
    CanaryStatus, CanaryStep, CanaryStrategy, PauseReason, RolloutAnalysis, SetCanaryScale,
    model::{steps_hash, weight_at},
    vocab::reason,
};

use super::{
    EventType, Planner,
    analysis::{self, RunKind, Verdict},
    metadata,
    pause::{self, Stand},
    replicas::{Limits, ScaleInput, SetCounts, canary_for_weight, next_scale, reached},
    replicasets::{SetView, add_anti_affinity},
};

/// Plans one reconcile of a canary rollout whose current pod template hashes to `hash`.
pub fn plan(
    p: &mut Planner<'_>,
    strategy: &CanaryStrategy,
    template: &PodTemplateSpec,
    hash: &str,
) {
    let desired = p.rollout.spec.desired_replicas();
    let limits = Limits::resolve(
        desired,
        &strategy.max_surge_or_default(),
        &strategy.max_unavailable_or_default(),
    );
    let steps = &strategy.steps;
    let step_count = i32::try_from(steps.len()).unwrap_or(i32::MAX);
    let steps_hash = steps_hash(steps);

    let new_revision = p.prev.current_pod_hash.as_deref() != Some(hash);
    let steps_changed = p
        .prev
        .current_step_hash
        .as_ref()
        .is_some_and(|h| *h != steps_hash);
    if new_revision || steps_changed {
        p.start_over();
        p.status.current_step_index = Some(0);
        // Runs of an earlier attempt at this template are no evidence for this one.
        analysis::spend(p, hash);
    }
    p.status.current_pod_hash = Some(hash.to_string());
    p.status.current_step_hash = Some(steps_hash);

    let stable_hash = p.existing_stable();
    let new_set = p.set(hash);
    let canary_running = stable_hash.as_deref().is_some_and(|h| h != hash);

    let mut index = p
        .status
        .current_step_index
        .unwrap_or(0)
        .clamp(0, step_count);
    if !canary_running || p.status.promote_full == Some(true) {
        // First deploy, fully promoted, or rolled back to the stable template: no steps to run.
        index = step_count;
    }
    let user_paused = p.rollout.spec.is_paused();
    if canary_running && p.status.abort != Some(true) && p.status.aborted_at.is_some() {
        // Retried: the runs of the aborted attempt are spent; every step runs again.
        p.status.aborted_at = None;
        if let Some(c) = p.status.canary.as_mut() {
            c.current_step_analysis_run_status = None;
            c.current_background_analysis_run_status = None;
        }
        analysis::spend(p, hash);
    }

    let counts = Counts::of(&p.sets, hash, stable_hash.as_deref());
    if canary_running && p.status.abort != Some(true) && !user_paused {
        index = advance(p, steps, index, hash, desired, limits, &counts);
    } else if canary_running && p.status.abort != Some(true) {
        // Paused by a person: the steps wait, but the analysis of the step the rollout stands
        // at goes on (a run cut short would be no evidence), and its failure still aborts.
        hold_step_analysis(p, steps, index, hash);
    }
    if canary_running && p.status.abort != Some(true) {
        background_analysis(p, strategy, index, hash);
    }
    let aborted = canary_running && p.status.abort == Some(true);
    if aborted {
        // Back to the start: a retry (abort cleared) runs every step again.
        index = 0;
        if p.status.aborted_at.is_none() {
            p.status.aborted_at = Some(p.now_time());
            p.event(EventType::Warning, reason::ROLLOUT_ABORTED, format!("Rollout aborted update to {hash}; traffic and replicas go back to the stable version"));
        }
    }
    let at_pause = usize::try_from(index)
        .ok()
        .and_then(|i| steps.get(i))
        .is_some_and(|s| matches!(s, CanaryStep::Pause(_)));
    if aborted || !at_pause {
        // Skipped, promoted past or aborted: a pause the rollout no longer stands at is over.
        pause::leave(p, PauseReason::CanaryPauseStep);
    }
    if !steps.is_empty() {
        p.status.current_step_index = Some(index);
    }
    if index >= step_count && p.status.promote_full == Some(true) && !canary_running {
        p.status.promote_full = None;
    }

    // Where each set should be for the step the rollout stands at.
    let (target_canary, target_stable) = match (canary_running, aborted) {
        (false, _) => (desired, 0),
        (true, true) => (0, desired),
        (true, false) => targets_at(steps, index, desired, limits),
    };
    let input = counts.toward(desired, limits, (target_canary, target_stable));

    // The canary has reached the whole rollout (or a first rollout its full size): it becomes the
    // stable version.
    let canary_complete = canary_running
        && !aborted
        && index >= step_count
        && new_set
            .as_ref()
            .is_some_and(|s| s.replicas >= desired && s.available >= desired);
    let first_complete = stable_hash.is_none()
        && new_set
            .as_ref()
            .is_some_and(|s| s.available >= desired && s.replicas == desired);
    if canary_complete || first_complete {
        p.status.stable_rs = Some(hash.to_string());
        p.progressed();
        p.event(
            EventType::Normal,
            reason::ROLLOUT_COMPLETED,
            format!("Rollout completed update to {hash}"),
        );
    }

    if !user_paused || aborted {
        let new = NewVersion {
            strategy,
            template,
            hash,
            set: new_set.as_ref(),
        };
        scale(p, &input, &new, stable_hash.as_deref(), aborted);
    }
    p.delete_old_sets(hash);

    let stable_now = p
        .status
        .stable_rs
        .clone()
        .unwrap_or_else(|| hash.to_string());
    let canary_serves = !aborted && new_set.as_ref().is_some_and(|s| s.available > 0);
    let canary_hash = if canary_serves {
        hash.to_string()
    } else {
        stable_now.clone()
    };
    p.point_services(&[
        (strategy.stable_service.as_ref(), &stable_now),
        (strategy.canary_service.as_ref(), &canary_hash),
    ]);
    metadata::sync(p, |set| {
        if set.hash == stable_now {
            strategy.stable_metadata.clone()
        } else if set.hash == hash && !aborted {
            strategy.canary_metadata.clone()
        } else {
            None
        }
    });
}

/// Pods and availability of the canary, the stable, and the older sets.
struct Counts {
    canary: SetCounts,
    stable: Option<SetCounts>,
    others: Vec<SetCounts>,
}

impl Counts {
    /// The scaling problem of moving these sets to `(canary, stable)` pods.
    fn toward(&self, desired: i32, limits: Limits, (canary, stable): (i32, i32)) -> ScaleInput<'_> {
        ScaleInput {
            desired,
            limits,
            canary: self.canary,
            stable: self.stable,
            others: &self.others,
            target_canary: canary,
            target_stable: stable,
        }
    }

    /// Sets are told apart by hash; `stable` equal to `hash` means there is no separate stable.
    fn of(sets: &[SetView], hash: &str, stable: Option<&str>) -> Self {
        let counts = |s: &SetView| SetCounts {
            replicas: s.replicas,
            available: s.available,
        };
        let stable = stable.filter(|h| *h != hash);
        Self {
            canary: sets
                .iter()
                .find(|s| s.hash == hash)
                .map(counts)
                .unwrap_or_default(),
            stable: stable
                .and_then(|h| sets.iter().find(|s| s.hash == h))
                .map(counts),
            others: sets
                .iter()
                .filter(|s| s.hash != hash && Some(s.hash.as_str()) != stable)
                .map(counts)
                .collect(),
        }
    }
}

/// Moves through the steps that are already satisfied; returns the index to stand at.
fn advance(
    p: &mut Planner<'_>,
    steps: &[CanaryStep],
    mut index: i32,
    hash: &str,
    desired: i32,
    limits: Limits,
    counts: &Counts,
) -> i32 {
    let total = steps.len();
    while let Some(step) = usize::try_from(index).ok().and_then(|i| steps.get(i)) {
        let position = format!("{}/{total}", index + 1);
        let done = match step {
            CanaryStep::SetWeight(_) | CanaryStep::SetCanaryScale(_) => {
                let targets = targets_at(steps, index, desired, limits);
                reached(&counts.toward(desired, limits, targets)) && settled(&p.sets)
            }
            CanaryStep::Pause(pause) => pause_done(p, pause.duration.as_ref().map(|d| d.as_std())),
            CanaryStep::Analysis(analysis) => step_analysis_done(p, analysis, index, hash),
            // Other kinds are refused by validate() until they are built.
            _ => false,
        };
        if !done {
            break;
        }
        p.progressed();
        p.event(
            EventType::Normal,
            reason::ROLLOUT_STEP_COMPLETED,
            format!("Rollout step {position} completed ({})", step.kind()),
        );
        index += 1;
    }
    index
}

/// Whether the `analysis` step at `index` passed; starts its run when it has none. A failed run
/// aborts the rollout, an inconclusive one pauses it.
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

/// Keeps the run of the `analysis` step at `index` going while the rollout is paused; a run it
/// already has is judged (a failure aborts), none is started.
fn hold_step_analysis(p: &mut Planner<'_>, steps: &[CanaryStep], index: i32, hash: &str) {
    let Some(CanaryStep::Analysis(analysis)) =
        usize::try_from(index).ok().and_then(|i| steps.get(i))
    else {
        return;
    };
    if analysis::started(p, RunKind::Step(index), hash) {
        step_analysis_done(p, analysis, index, hash);
    }
}

/// Runs `canary.analysis` from its starting step on, while the canary runs.
fn background_analysis(p: &mut Planner<'_>, strategy: &CanaryStrategy, index: i32, hash: &str) {
    let Some(background) = strategy.analysis.as_ref() else {
        return;
    };
    if index < background.starting_step.unwrap_or(0) {
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
    let by_weight = canary_for_weight(desired, weight_at(steps, index));
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

/// The version being rolled out: what its ReplicaSet is made from, and that set if it exists.
struct NewVersion<'a> {
    strategy: &'a CanaryStrategy,
    template: &'a PodTemplateSpec,
    hash: &'a str,
    set: Option<&'a SetView>,
}

/// Creates the new set or scales every set one safe move toward the targets.
fn scale(
    p: &mut Planner<'_>,
    input: &ScaleInput<'_>,
    new: &NewVersion<'_>,
    stable: Option<&str>,
    aborted: bool,
) {
    let NewVersion {
        strategy,
        template,
        hash,
        set: new_set,
    } = *new;
    let next = next_scale(input);
    let stable = stable.filter(|h| *h != hash);
    let mut moves: Vec<(SetView, i32)> = Vec::new();
    if let Some(set) = new_set {
        moves.push((set.clone(), next.canary));
    }
    let stable_set = stable.and_then(|h| p.sets.iter().find(|s| s.hash == h));
    if let (Some(set), Some(to)) = (stable_set, next.stable) {
        moves.push((set.clone(), to));
    }
    let others = p
        .sets
        .iter()
        .filter(|s| s.hash != hash && Some(s.hash.as_str()) != stable);
    moves.extend(others.cloned().zip(next.others));

    // Scale-downs first: each write lands on its own, and between them the pods must stay within
    // maxSurge (a scale-up written before the matching scale-down would exceed it).
    for (set, to) in moves.iter().filter(|(set, to)| *to < set.replicas) {
        p.scale_set(set, *to);
    }
    // An aborted version is not brought back: it stays at zero until retried.
    if new_set.is_none() && !aborted {
        let mut rs = p.new_set(template, hash, next.canary);
        if let Some(stable) = stable {
            if let Some(rule) = strategy.anti_affinity.as_ref() {
                add_anti_affinity(&mut rs, rule, stable);
            }
            metadata::stamp(&mut rs, strategy.canary_metadata.as_ref());
        }
        p.create_set(rs);
    }
    for (set, to) in moves.iter().filter(|(set, to)| *to > set.replicas) {
        p.scale_set(set, *to);
    }
}
