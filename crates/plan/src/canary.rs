//! The canary strategy: which ReplicaSet is stable and which is the canary, where the steps
//! stand, and how many pods each set gets, decided from the status and the sets alone.
//!
//! The step index, pause start times and the abort flag live in the status, so a restarted
//! controller resumes the same step with the same timer.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use sluice_api::{
    CanaryStatus, CanaryStep, CanaryStrategy, PauseReason, RolloutAnalysis, SetCanaryScale,
    model::steps_hash, vocab::reason,
};

use super::{
    EventType, Planner,
    analysis::{self, RunKind, judge},
    metadata,
    pause::{self, Stand},
    replicas::{Limits, ScaleInput, SetCounts, canary_for_weight, next_scale, reached},
    replicasets::{SetView, add_anti_affinity},
    traffic,
};

/// Plans one reconcile of a canary rollout whose current pod template hashes to `hash`.
pub fn plan(
    p: &mut Planner<'_>,
    strategy: &CanaryStrategy,
    template: &PodTemplateSpec,
    hash: &str,
) {
    begin_attempt(p, &strategy.steps, hash);
    let c = Canary::read(p, strategy, template, hash);
    retry_after_abort(p, &c);
    let index = walk_steps(p, &c);
    let aborted = record_abort(p, &c);
    // Back to the start: a retry (abort cleared) runs every step again.
    let index = if aborted { 0 } else { index };
    record_step(p, &c, index, aborted);
    let input = c
        .counts
        .toward(c.desired, c.limits, targets(&c, index, aborted));
    complete_if_done(p, &c, index, aborted);
    if !pause::by_person(p) || aborted {
        scale(p, &c, &input, aborted);
    }
    p.delete_old_sets(hash);
    point_services(p, &c, aborted);
    sync_metadata(p, &c, aborted);
}

/// What one canary plan reads once: the strategy, the version rolled out, and the sets.
struct Canary<'a> {
    strategy: &'a CanaryStrategy,
    template: &'a PodTemplateSpec,
    hash: &'a str,
    desired: i32,
    limits: Limits,
    /// How many steps there are; an index this high stands past the last one.
    step_count: i32,
    /// The stable version as the plan began ([`Planner::existing_stable`]).
    stable: Option<String>,
    /// The new version's set, if it exists.
    set: Option<SetView>,
    /// Whether a canary runs beside a different stable version.
    running: bool,
    counts: Counts,
}

impl<'a> Canary<'a> {
    /// Reads the rollout at version `hash` under `strategy`.
    fn read(
        p: &Planner<'_>,
        strategy: &'a CanaryStrategy,
        template: &'a PodTemplateSpec,
        hash: &'a str,
    ) -> Self {
        let desired = p.rollout.spec.desired_replicas();
        let stable = p.existing_stable();
        Self {
            strategy,
            template,
            hash,
            desired,
            limits: Limits::resolve(
                desired,
                &strategy.max_surge_or_default(),
                &strategy.max_unavailable_or_default(),
            ),
            step_count: i32::try_from(strategy.steps.len()).unwrap_or(i32::MAX),
            set: p.set(hash),
            running: stable.as_deref().is_some_and(|h| h != hash),
            counts: Counts::of(&p.sets, hash, stable.as_deref()),
            stable,
        }
    }

    /// Whether the canary runs and is not aborted: its steps and analysis go on.
    fn live(&self, p: &Planner<'_>) -> bool {
        self.running && p.status.abort != Some(true)
    }
}

/// A new version or new steps start over at step 0; records which version and steps run.
fn begin_attempt(p: &mut Planner<'_>, steps: &[CanaryStep], hash: &str) {
    let steps_hash = steps_hash(&steps);
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
}

/// A cleared abort is a retry: the runs of the aborted attempt are spent; every step runs again.
fn retry_after_abort(p: &mut Planner<'_>, c: &Canary<'_>) {
    if !c.live(p) || p.status.aborted_at.is_none() {
        return;
    }
    p.status.aborted_at = None;
    if let Some(status) = p.status.canary.as_mut() {
        status.current_step_analysis_run_status = None;
        status.current_background_analysis_run_status = None;
    }
    analysis::spend(p, c.hash);
}

/// The step the rollout stands at from the status: past the last one when there are no steps to
/// run (first deploy, fully promoted, or rolled back to the stable template).
fn start_index(p: &Planner<'_>, c: &Canary<'_>) -> i32 {
    if !c.running || p.status.promote_full == Some(true) {
        return c.step_count;
    }
    p.status
        .current_step_index
        .unwrap_or(0)
        .clamp(0, c.step_count)
}

/// Completes the steps that are satisfied and runs the analysis they need; returns the index to
/// stand at.
fn walk_steps(p: &mut Planner<'_>, c: &Canary<'_>) -> i32 {
    let mut index = start_index(p, c);
    if c.live(p) && !pause::by_person(p) {
        index = advance(p, c, index);
    } else if c.live(p) {
        // Paused by a person: the steps wait, but the analysis of the step the rollout stands
        // at goes on (a run cut short would be no evidence), and its failure still aborts.
        hold_step_analysis(p, &c.strategy.steps, index, c.hash);
    }
    if c.live(p) {
        background_analysis(p, c.strategy, index, c.hash);
    }
    index
}

/// Whether the canary is aborted; records when, and says so, the first time.
fn record_abort(p: &mut Planner<'_>, c: &Canary<'_>) -> bool {
    let aborted = c.running && p.status.abort == Some(true);
    if aborted && p.status.aborted_at.is_none() {
        p.status.aborted_at = Some(p.now_time());
        p.event(
            EventType::Warning,
            reason::ROLLOUT_ABORTED,
            format!(
                "Rollout aborted update to {}; traffic and replicas go back to the stable version",
                c.hash
            ),
        );
    }
    aborted
}

/// Records the step index, ends a pause the rollout no longer stands at, and spends a full
/// promotion once the steps are over.
fn record_step(p: &mut Planner<'_>, c: &Canary<'_>, index: i32, aborted: bool) {
    let steps = &c.strategy.steps;
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
    if index >= c.step_count && p.status.promote_full == Some(true) && !c.running {
        p.status.promote_full = None;
    }
}

/// Pods for the canary and the stable set where the rollout stands.
fn targets(c: &Canary<'_>, index: i32, aborted: bool) -> (i32, i32) {
    match (c.running, aborted) {
        (false, _) => (c.desired, 0),
        (true, true) => (0, c.desired),
        (true, false) => targets_at(&c.strategy.steps, index, c.desired, c.limits),
    }
}

/// Makes the canary the stable version once it holds the whole rollout (or a first rollout its
/// full size).
fn complete_if_done(p: &mut Planner<'_>, c: &Canary<'_>, index: i32, aborted: bool) {
    let desired = c.desired;
    let canary_complete = c.running
        && !aborted
        && index >= c.step_count
        && c.set
            .as_ref()
            .is_some_and(|s| s.replicas >= desired && s.available >= desired);
    let first_complete = c.stable.is_none()
        && c.set
            .as_ref()
            .is_some_and(|s| s.available >= desired && s.replicas == desired);
    if canary_complete || first_complete {
        p.status.stable_rs = Some(c.hash.to_string());
        p.progressed();
        p.event(
            EventType::Normal,
            reason::ROLLOUT_COMPLETED,
            format!("Rollout completed update to {}", c.hash),
        );
    }
}

/// Points the stable Service at the stable version and the canary Service at the canary once it
/// serves (at the stable version until then, or once aborted).
fn point_services(p: &mut Planner<'_>, c: &Canary<'_>, aborted: bool) {
    let stable_now = stable_now(p, c);
    let canary_serves = !aborted && c.set.as_ref().is_some_and(|s| s.available > 0);
    let canary_hash = if canary_serves {
        c.hash.to_string()
    } else {
        stable_now.clone()
    };
    p.point_services(&[
        (c.strategy.stable_service.as_ref(), &stable_now),
        (c.strategy.canary_service.as_ref(), &canary_hash),
    ]);
}

/// Gives the stable pods `stableMetadata` and the canary's (unless aborted) `canaryMetadata`.
fn sync_metadata(p: &mut Planner<'_>, c: &Canary<'_>, aborted: bool) {
    let stable_now = stable_now(p, c);
    metadata::sync(p, |set| {
        if set.hash == stable_now {
            c.strategy.stable_metadata.clone()
        } else if set.hash == c.hash && !aborted {
            c.strategy.canary_metadata.clone()
        } else {
            None
        }
    });
}

/// The stable version as this plan leaves it: the canary's own once it completed.
fn stable_now(p: &Planner<'_>, c: &Canary<'_>) -> String {
    p.status
        .stable_rs
        .clone()
        .unwrap_or_else(|| c.hash.to_string())
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
fn advance(p: &mut Planner<'_>, c: &Canary<'_>, mut index: i32) -> i32 {
    let (steps, hash, desired, limits) = (&c.strategy.steps, c.hash, c.desired, c.limits);
    let total = steps.len();
    while let Some(step) = usize::try_from(index).ok().and_then(|i| steps.get(i)) {
        let position = format!("{}/{total}", index + 1);
        let done = match step {
            CanaryStep::SetWeight(_) | CanaryStep::SetCanaryScale(_) => {
                let targets = targets_at(steps, index, desired, limits);
                reached(&c.counts.toward(desired, limits, targets)) && settled(&p.sets)
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

/// Creates the new set or scales every set one safe move toward the targets.
fn scale(p: &mut Planner<'_>, c: &Canary<'_>, input: &ScaleInput<'_>, aborted: bool) {
    let hash = c.hash;
    let next = next_scale(input);
    let stable = c.stable.as_deref().filter(|h| *h != hash);
    let mut moves: Vec<(SetView, i32)> = Vec::new();
    if let Some(set) = c.set.as_ref() {
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
    if c.set.is_none() && !aborted {
        let mut rs = p.new_set(c.template, hash, next.canary);
        if let Some(stable) = stable {
            if let Some(rule) = c.strategy.anti_affinity.as_ref() {
                add_anti_affinity(&mut rs, rule, stable);
            }
            metadata::stamp(&mut rs, c.strategy.canary_metadata.as_ref());
        }
        p.create_set(rs);
    }
    for (set, to) in moves.iter().filter(|(set, to)| *to > set.replicas) {
        p.scale_set(set, *to);
    }
}
