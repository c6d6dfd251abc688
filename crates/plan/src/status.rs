//! The status a plan reports: replica counts, phase and message, conditions and weights.
//!
//! Phase and message follow the rules Argo CD's built-in Rollout health check applies to the
//! same fields, so Sluice's own phase and Argo CD's health never disagree.

use std::time::Duration;

use jiff::Timestamp;
use sluice_api::{
    RolloutPhase, RolloutStatus, Strategy,
    model::{MESSAGE_LIMIT, cut, selector_string},
    vocab::{POD_TEMPLATE_HASH_LABEL, reason},
};

use super::{
    Action, Event, EventType, Planner,
    conditions::{self, ProgressClock},
    pause,
    replicasets::SetView,
    traffic,
};

/// The status as it was, with the write failure that stopped a reconcile in a `ReplicaFailure`
/// condition (as Argo Rollouts reports a refused ReplicaSet): nothing else moves, since the plan's
/// changes did not happen. Unchanged when the same failure is already reported.
pub fn with_failure(
    prev: &RolloutStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> RolloutStatus {
    let mut status = prev.clone();
    conditions::replica_failure(&mut status, reason, &cut(message, MESSAGE_LIMIT), now);
    status
}

/// The status as it was with `collisionCount` one higher: the pod template hash (which mixes the
/// count in) names the new version's ReplicaSet differently on the next attempt.
pub fn bump_collision(prev: &RolloutStatus) -> RolloutStatus {
    let mut status = prev.clone();
    status.collision_count = Some(prev.collision_count.unwrap_or(0).saturating_add(1));
    status
}

/// Fills in counts, phase, message, conditions and weights; `hash` is the current template's.
pub fn finish(p: &mut Planner<'_>, hash: Option<&str>) {
    let current = hash
        .map(str::to_string)
        .or_else(|| p.prev.current_pod_hash.clone());
    let counts = Counts::of(&p.sets, current.as_deref());
    let counts_moved = record_counts(p, &counts);
    // A routed canary reports what its router carries ([`traffic::report_routed`]).
    let by_pods = p
        .rollout
        .spec
        .canary()
        .filter(|c| c.traffic_routing.is_none());
    if let (Some(hash), Some(canary)) = (hash, by_pods) {
        traffic::report(p, canary, hash);
    }
    let enough = counts.available >= p.rollout.spec.desired_replicas() - max_unavailable(p);
    conditions::available(&mut p.status, enough, p.now);
    if let Some(message) = p.invalid.clone() {
        set_phase(&mut p.status, RolloutPhase::Degraded, message);
        return;
    }
    let Some(hash) = current else { return };
    let standing = Standing::of(p, hash, &counts, counts_moved);
    conditions::paused(&mut p.status, &p.prev, standing.paused, p.now);
    conditions::healthy(&mut p.status, standing.healthy, p.now);
    conditions::completed(&mut p.status, standing.healthy, p.now);
    if standing.aborted {
        report_aborted(p, &standing);
    } else if standing.paused {
        report_paused(p);
    } else if standing.healthy {
        report_healthy(p, &standing);
    } else {
        report_in_flight(p, &standing, &counts);
    }
}

/// Pods over all sets, and the current version's.
struct Counts {
    pods: i32,
    ready: i32,
    available: i32,
    /// Pods of the current version.
    updated: i32,
}

impl Counts {
    /// Sums `sets`; `current` is the current version's hash.
    fn of(sets: &[SetView], current: Option<&str>) -> Self {
        let sum = |f: fn(&SetView) -> i32| sets.iter().map(f).sum::<i32>();
        Self {
            pods: sum(|s| s.pods),
            ready: sum(|s| s.ready),
            available: sum(|s| s.available),
            updated: sets
                .iter()
                .filter(|s| Some(s.hash.as_str()) == current)
                .map(|s| s.pods)
                .sum(),
        }
    }
}

/// Records the generation seen, the selector and the replica counts; returns whether the counts
/// moved since the last status.
fn record_counts(p: &mut Planner<'_>, counts: &Counts) -> bool {
    let st = &mut p.status;
    st.observed_generation = p.rollout.metadata.generation.map(|g| g.to_string());
    st.selector = p.rollout.spec.selector.as_ref().map(selector_string);
    (
        st.replicas,
        st.updated_replicas,
        st.ready_replicas,
        st.available_replicas,
    ) = (
        Some(counts.pods),
        Some(counts.updated),
        Some(counts.ready),
        Some(counts.available),
    );
    st.hpa_replicas = Some(counts.pods);
    // Blue/green as Argo counts it: the active version is what serves, so an HPA scales on it
    // and the selector (`kubectl get --selector`, the scale subresource) picks its pods only.
    let active = st
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.as_deref())
        .filter(|_| p.rollout.spec.blue_green().is_some())
        .and_then(|hash| p.sets.iter().find(|s| s.hash == hash));
    if let Some(set) = active {
        st.hpa_replicas = Some(set.pods);
        st.ready_replicas = Some(set.ready);
        st.available_replicas = Some(set.available);
        st.selector = p.rollout.spec.selector.as_ref().map(|selector| {
            let mut selector = selector.clone();
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(POD_TEMPLATE_HASH_LABEL.to_string(), set.hash.clone());
            selector_string(&selector)
        });
    }
    [
        st.replicas,
        st.updated_replicas,
        st.ready_replicas,
        st.available_replicas,
    ] != [
        p.prev.replicas,
        p.prev.updated_replicas,
        p.prev.ready_replicas,
        p.prev.available_replicas,
    ]
}

/// Where the current version stands, the facts its phase and conditions follow from.
struct Standing {
    /// The current version's hash.
    hash: String,
    /// Its ReplicaSet's name.
    set_name: String,
    /// Paused by a condition or `spec.paused`.
    paused: bool,
    /// Aborted, and not back at the stable version.
    aborted: bool,
    /// Stable, fully updated and available, with no pods left over.
    healthy: bool,
    /// Its ReplicaSet is created in this plan.
    created: bool,
    /// Something moved: a write, a step, the counts, or the version.
    moved: bool,
}

impl Standing {
    /// Reads the standing of version `hash` from the plan so far.
    fn of(p: &Planner<'_>, hash: String, counts: &Counts, counts_moved: bool) -> Self {
        let desired = p.rollout.spec.desired_replicas();
        let stable = p.status.stable_rs.as_deref() == Some(hash.as_str());
        Self {
            set_name: format!(
                "{}-{hash}",
                p.rollout.metadata.name.as_deref().unwrap_or("")
            ),
            paused: pause::is_paused(p),
            aborted: p.status.abort == Some(true) && !stable,
            healthy: stable
                && counts.updated >= desired
                && counts.pods <= counts.updated
                && counts.available >= counts.updated,
            created: p
                .plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_))),
            moved: p.progressed
                || counts_moved
                || p.prev.current_pod_hash.as_deref() != Some(hash.as_str()),
            hash,
        }
    }
}

/// An aborted update: Degraded, naming the analysis that failed it.
fn report_aborted(p: &mut Planner<'_>, standing: &Standing) {
    let cause = p.abort_cause.clone();
    let message = conditions::aborted(&mut p.status, &standing.hash, cause.as_deref(), p.now);
    set_phase(
        &mut p.status,
        RolloutPhase::Degraded,
        format!("{}: {message}", reason::ROLLOUT_ABORTED),
    );
}

/// A paused rollout: Paused, with its pause reasons.
fn report_paused(p: &mut Planner<'_>) {
    conditions::paused_progress(&mut p.status, p.now);
    let message = pause::summary(&p.status);
    set_phase(&mut p.status, RolloutPhase::Paused, message);
}

/// A rollout at rest on its current version: Healthy.
fn report_healthy(p: &mut Planner<'_>, standing: &Standing) {
    conditions::progressed(&mut p.status, &standing.set_name, p.now);
    set_phase(&mut p.status, RolloutPhase::Healthy, String::new());
}

/// An update in flight: Progressing, unless the deadline passed without progress.
fn report_in_flight(p: &mut Planner<'_>, standing: &Standing, counts: &Counts) {
    let deadline =
        Duration::from_secs(u64::try_from(p.rollout.spec.progress_deadline()).unwrap_or(0));
    let clock = ProgressClock::read(&p.prev, deadline, standing.moved, p.now);
    if clock.exceeded() {
        return report_timed_out(p, standing, &clock);
    }
    conditions::progressing(&mut p.status, &standing.set_name, standing.created, &clock);
    let message = in_flight_message(p, counts);
    set_phase(
        &mut p.status,
        RolloutPhase::Progressing,
        message.to_string(),
    );
    p.requeue_in(clock.left());
}

/// The deadline passed without progress: Degraded, and aborted the first time when
/// `progressDeadlineAbort` asks.
fn report_timed_out(p: &mut Planner<'_>, standing: &Standing, clock: &ProgressClock) {
    let message = format!("ReplicaSet {} has timed out progressing", standing.set_name);
    if !clock.timed_out_before {
        p.plan.events.push(Event {
            type_: EventType::Warning,
            reason: reason::PROGRESS_DEADLINE_EXCEEDED,
            message: message.clone(),
        });
        if p.rollout.spec.progress_deadline_abort == Some(true) {
            p.status.abort = Some(true);
            p.plan.requeue_after = Some(Duration::from_millis(100));
        }
    }
    conditions::deadline_exceeded(&mut p.status, &message, clock);
    set_phase(
        &mut p.status,
        RolloutPhase::Degraded,
        format!("{}: {message}", reason::PROGRESS_DEADLINE_EXCEEDED),
    );
}

/// What an update in flight waits for, as Argo CD's health check words it.
fn in_flight_message(p: &Planner<'_>, counts: &Counts) -> &'static str {
    if counts.updated < p.rollout.spec.desired_replicas() {
        "more replicas need to be updated"
    } else if counts.pods > counts.updated {
        "old replicas are pending termination"
    } else if counts.available < counts.updated {
        "updated replicas are still becoming available"
    } else if p.rollout.spec.blue_green().is_some() {
        "active service cutover pending"
    } else {
        "waiting for rollout to finish steps"
    }
}

/// Sets the phase and its message (none when empty).
fn set_phase(status: &mut RolloutStatus, phase: RolloutPhase, message: String) {
    status.phase = Some(phase);
    status.message = (!message.is_empty()).then_some(message);
}

/// Available pods the strategy allows below the desired replicas.
fn max_unavailable(p: &Planner<'_>) -> i32 {
    let desired = p.rollout.spec.desired_replicas();
    match p.rollout.spec.strategy() {
        Some(Strategy::Canary(c)) => c.max_unavailable_or_default().resolve(desired, false),
        Some(Strategy::BlueGreen(b)) => b.max_unavailable.map_or(0, |m| m.resolve(desired, false)),
        None => 0,
    }
}
