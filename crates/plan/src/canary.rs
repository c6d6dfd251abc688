//! The canary strategy: which ReplicaSet is stable and which is the canary, where the steps
//! stand, and how many pods each set gets, decided from the status and the sets alone.
//!
//! The step index, pause start times and the abort flag live in the status, so a restarted
//! controller resumes the same step with the same timer.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use sluice_api::{CanaryStep, CanaryStrategy, PauseReason, model::steps_hash, vocab::reason};

use super::{
    EventType, Planner, analysis, metadata, pause,
    replicas::{Limits, Progress, ScaleInput, SetCounts, next_scale},
    replicasets::{SetView, add_anti_affinity},
};

pub mod experiment;
pub mod flat;
pub mod routed;
pub mod steps;

use self::{
    flat::FlatSteps,
    steps::{advance, background_analysis, hold_step_analysis, targets_at},
};

/// Plans one reconcile of a canary rollout whose current pod template hashes to `hash`.
pub fn plan(
    p: &mut Planner<'_>,
    strategy: &CanaryStrategy,
    template: &PodTemplateSpec,
    hash: &str,
) {
    let flat = FlatSteps::of(&strategy.steps);
    begin_attempt(p, &flat.actions, hash);
    let c = Canary::read(p, strategy, flat, template, hash);
    retry_after_abort(p, &c);
    let index = walk_steps(p, &c);
    let aborted = record_abort(p, &c);
    // Back to the start: a retry (abort cleared) runs every step again.
    let index = if aborted { 0 } else { index };
    record_step(p, &c, index, aborted);
    if let Some(routing) = c.routing.clone() {
        routed::plan(p, &c, &routing, index, aborted);
        p.delete_old_sets(hash);
        sync_metadata(p, &c, aborted);
        return;
    }
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
    /// How many of the canary's pods must be available for a step to be done.
    progress: Progress,
    /// The steps as walked: one action each ([`FlatSteps`]). Indexes in the plan count these;
    /// the status counts the steps as written.
    steps: FlatSteps,
    /// How many actions there are; an index this high stands past the last step.
    step_count: i32,
    /// The stable version as the plan began ([`Planner::existing_stable`]).
    stable: Option<String>,
    /// The new version's set, if it exists.
    set: Option<SetView>,
    /// Whether a canary runs beside a different stable version.
    running: bool,
    counts: Counts,
    /// The traffic router and what it carries, when `trafficRouting` is set.
    routing: Option<routed::Routing>,
}

impl<'a> Canary<'a> {
    /// Reads the rollout at version `hash` under `strategy`.
    fn read(
        p: &Planner<'_>,
        strategy: &'a CanaryStrategy,
        steps: FlatSteps,
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
            progress: Progress::of(strategy.replica_progress_threshold.as_ref()),
            step_count: steps.len(),
            steps,
            set: p.set(hash),
            running: stable.as_deref().is_some_and(|h| h != hash),
            counts: Counts::of(&p.sets, hash, stable.as_deref()),
            routing: routed::Routing::of(p, strategy),
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
        experiment::spend(p, hash);
        if new_revision {
            crate::rollback::fast_track(p, hash);
        }
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
    experiment::spend(p, c.hash);
}

/// The action the rollout stands at from the status: past the last one when there are no steps
/// to run (first deploy, fully promoted, or rolled back to the stable template). Inside a step of
/// several actions that the rollout already stood at, its settings were done once one of its
/// waits began: the walk goes on from that wait, as from a step of its own.
fn start_index(p: &Planner<'_>, c: &Canary<'_>) -> i32 {
    if !c.running || p.status.promote_full == Some(true) {
        return c.step_count;
    }
    let step = p.status.current_step_index.unwrap_or(0).max(0);
    let mut index = c.steps.first_of(step).clamp(0, c.step_count);
    if p.prev.current_step_index == Some(step) && steps::wait_begun(p, c, step) {
        while c
            .steps
            .actions
            .get(usize::try_from(index).unwrap_or(usize::MAX))
            .is_some_and(flat::sets_something)
        {
            index += 1;
        }
    }
    index
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
        hold_step_analysis(p, c, index);
    }
    if c.live(p) {
        background_analysis(p, c.strategy, c.steps.step_of(index), c.hash);
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
    let steps = &c.steps.actions;
    let at_pause = usize::try_from(index)
        .ok()
        .and_then(|i| steps.get(i))
        .is_some_and(|s| matches!(s, CanaryStep::Pause(_)));
    if aborted || !at_pause {
        // Skipped, promoted past or aborted: a pause the rollout no longer stands at is over.
        pause::leave(p, PauseReason::CanaryPauseStep);
    }
    if !steps.is_empty() {
        p.status.current_step_index = Some(c.steps.step_of(index));
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
        (true, false) => targets_at(&c.steps.actions, index, c.desired, c.limits),
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
            .is_some_and(|s| s.replicas >= desired && c.progress.met(s.available, desired));
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
