//! The status a plan reports: replica counts, phase and message, conditions and weights.
//!
//! Phase and message follow the rules Argo CD's built-in Rollout health check applies to the
//! same fields, so Sluice's own phase and Argo CD's health never disagree.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use sluice_api::{
    ConditionStatus, RolloutCondition, RolloutConditionType, RolloutPhase, RolloutStatus, Strategy,
    model::{MESSAGE_LIMIT, cut, selector_string},
    vocab::reason,
};

use super::{Action, EventType, Planner, traffic};

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
    set_condition(
        &mut status,
        RolloutConditionType::ReplicaFailure,
        ConditionStatus::True,
        reason,
        &cut(message, MESSAGE_LIMIT),
        now,
        false,
    );
    status
}

/// Drops a reported write failure: a plan assumes its writes succeed, and when they do, its status
/// (without the condition) is written; when they fail again, the condition is set again.
pub fn clear_failure(status: &mut RolloutStatus) {
    status
        .conditions
        .retain(|c| c.type_ != RolloutConditionType::ReplicaFailure);
}

/// The status as it was with `collisionCount` one higher: the pod template hash (which mixes the
/// count in) names the new version's ReplicaSet differently on the next attempt.
pub fn bump_collision(prev: &RolloutStatus) -> RolloutStatus {
    let mut status = prev.clone();
    status.collision_count = Some(prev.collision_count.unwrap_or(0).saturating_add(1));
    status
}

/// Sets the `InvalidSpec` condition; returns whether it is new or its message changed.
pub fn set_invalid(status: &mut RolloutStatus, message: &str, now: Timestamp) -> bool {
    let before = condition(status, RolloutConditionType::InvalidSpec).map(|c| c.message.clone());
    set_condition(
        status,
        RolloutConditionType::InvalidSpec,
        ConditionStatus::True,
        reason::INVALID_SPEC,
        message,
        now,
        false,
    );
    before.as_deref() != Some(message)
}

/// Drops the `InvalidSpec` condition once the spec is fixed.
pub fn clear_invalid(status: &mut RolloutStatus) {
    status
        .conditions
        .retain(|c| c.type_ != RolloutConditionType::InvalidSpec);
}

fn condition(status: &RolloutStatus, type_: RolloutConditionType) -> Option<&RolloutCondition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping its transition time while its status holds and its update time
/// while nothing about it changes (unless `touch`), so an unchanged status writes nothing.
fn set_condition(
    status: &mut RolloutStatus,
    type_: RolloutConditionType,
    value: ConditionStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
    touch: bool,
) {
    let now = Time(now);
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now.clone();
            }
            if touch || c.status != value || c.reason != reason || c.message != message {
                c.last_update_time = now;
            }
            c.status = value;
            c.reason = reason.to_string();
            c.message = message.to_string();
        }
        None => status.conditions.push(RolloutCondition {
            type_,
            status: value,
            last_update_time: now.clone(),
            last_transition_time: now,
            reason: reason.to_string(),
            message: message.to_string(),
        }),
    }
}

/// Fills in counts, phase, message, conditions and weights; `hash` is the current template's.
pub fn finish(p: &mut Planner<'_>, hash: Option<&str>) {
    let spec = &p.rollout.spec;
    let desired = spec.desired_replicas();
    let now = p.now;
    let current = hash
        .map(str::to_string)
        .or_else(|| p.prev.current_pod_hash.clone());
    let sum = |f: fn(&super::SetView) -> i32| p.sets.iter().map(f).sum::<i32>();
    let (pods, ready, available) = (sum(|s| s.pods), sum(|s| s.ready), sum(|s| s.available));
    let updated = p
        .sets
        .iter()
        .filter(|s| Some(&s.hash) == current.as_ref())
        .map(|s| s.pods)
        .sum::<i32>();

    let st = &mut p.status;
    st.observed_generation = p.rollout.metadata.generation.map(|g| g.to_string());
    st.selector = spec.selector.as_ref().map(selector_string);
    (
        st.replicas,
        st.updated_replicas,
        st.ready_replicas,
        st.available_replicas,
    ) = (Some(pods), Some(updated), Some(ready), Some(available));
    st.hpa_replicas = Some(pods);
    let counts_moved = [
        st.replicas,
        st.updated_replicas,
        st.ready_replicas,
        st.available_replicas,
    ] != [
        p.prev.replicas,
        p.prev.updated_replicas,
        p.prev.ready_replicas,
        p.prev.available_replicas,
    ];

    if let (Some(hash), Some(canary)) = (hash, spec.canary()) {
        traffic::report(p, canary, hash);
    }

    let min_available = desired - max_unavailable(p);
    let st = &mut p.status;
    let (value, message) = if available >= min_available {
        (ConditionStatus::True, "Rollout has minimum availability")
    } else {
        (
            ConditionStatus::False,
            "Rollout does not have minimum availability",
        )
    };
    set_condition(
        st,
        RolloutConditionType::Available,
        value,
        "AvailableReason",
        message,
        now,
        false,
    );

    if let Some(message) = p.invalid.clone() {
        set_phase(&mut p.status, RolloutPhase::Degraded, message);
        return;
    }
    let Some(hash) = current else { return };
    let paused = !p.status.pause_conditions.is_empty() || spec.is_paused();
    let aborted =
        p.status.abort == Some(true) && p.status.stable_rs.as_deref() != Some(hash.as_str());
    let healthy = p.status.stable_rs.as_deref() == Some(hash.as_str())
        && updated >= desired
        && pods <= updated
        && available >= updated;
    let set_name = format!(
        "{}-{hash}",
        p.rollout.metadata.name.as_deref().unwrap_or("")
    );
    let created = p
        .plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::CreateReplicaSet(_)));
    let moved =
        p.progressed || counts_moved || p.prev.current_pod_hash.as_deref() != Some(hash.as_str());

    let was_paused = condition(&p.prev, RolloutConditionType::Paused)
        .is_some_and(|c| c.status == ConditionStatus::True);
    let st = &mut p.status;
    if paused {
        set_condition(
            st,
            RolloutConditionType::Paused,
            ConditionStatus::True,
            reason::ROLLOUT_PAUSED,
            "Rollout is paused",
            now,
            false,
        );
    } else if was_paused {
        set_condition(
            st,
            RolloutConditionType::Paused,
            ConditionStatus::False,
            reason::ROLLOUT_RESUMED,
            "Rollout is resumed",
            now,
            false,
        );
    }
    let (value, message) = if healthy {
        (ConditionStatus::True, "Rollout is healthy")
    } else {
        (ConditionStatus::False, "Rollout is not healthy")
    };
    set_condition(
        st,
        RolloutConditionType::Healthy,
        value,
        "RolloutHealthy",
        message,
        now,
        false,
    );
    let (value, why) = if healthy {
        (ConditionStatus::True, reason::ROLLOUT_COMPLETED)
    } else {
        (ConditionStatus::False, "RolloutNotCompleted")
    };
    set_condition(
        st,
        RolloutConditionType::Completed,
        value,
        why,
        "Rollout completed update to the current template",
        now,
        false,
    );

    use RolloutConditionType::Progressing;
    if aborted {
        let mut message = format!("Rollout aborted update to {hash}");
        if let Some(why) = failed_analysis(st) {
            message = format!("{message}: {why}");
        }
        set_condition(
            st,
            Progressing,
            ConditionStatus::False,
            reason::ROLLOUT_ABORTED,
            &message,
            now,
            false,
        );
        set_phase(
            st,
            RolloutPhase::Degraded,
            format!("{}: {message}", reason::ROLLOUT_ABORTED),
        );
    } else if paused {
        set_condition(
            st,
            Progressing,
            ConditionStatus::Unknown,
            reason::ROLLOUT_PAUSED,
            "Rollout is paused",
            now,
            false,
        );
        let reasons: Vec<String> = st
            .pause_conditions
            .iter()
            .map(|c| format!("{:?}", c.reason))
            .collect();
        let message = if reasons.is_empty() {
            "manually paused".to_string()
        } else {
            reasons.join(", ")
        };
        set_phase(st, RolloutPhase::Paused, message);
    } else if healthy {
        set_condition(
            st,
            Progressing,
            ConditionStatus::True,
            reason::NEW_REPLICA_SET_AVAILABLE,
            &format!("ReplicaSet {set_name} has successfully progressed"),
            now,
            false,
        );
        set_phase(st, RolloutPhase::Healthy, String::new());
    } else {
        progressing(p, &set_name, created, moved, updated, pods, available);
    }
}

/// An update in flight: Progressing, unless the deadline passed without progress.
fn progressing(
    p: &mut Planner<'_>,
    set_name: &str,
    created: bool,
    moved: bool,
    updated: i32,
    pods: i32,
    available: i32,
) {
    let now = p.now;
    let deadline =
        Duration::from_secs(u64::try_from(p.rollout.spec.progress_deadline()).unwrap_or(0));
    let previous = condition(&p.prev, RolloutConditionType::Progressing).cloned();
    let was_progressing = previous.as_ref().is_some_and(|c| {
        [
            reason::REPLICA_SET_UPDATED,
            reason::NEW_REPLICA_SET_CREATED,
            reason::PROGRESS_DEADLINE_EXCEEDED,
        ]
        .contains(&c.reason.as_str())
    });
    let recorded = previous
        .as_ref()
        .filter(|_| was_progressing && !moved)
        .map_or(now, |c| c.last_update_time.0);
    // A time in the future (a skewed clock, a status written by hand) is no time waited: the
    // deadline counts from now, and the condition records now.
    let skewed = recorded > now;
    let since = recorded.min(now);
    let waited = now.duration_since(since).unsigned_abs();
    let st = &mut p.status;
    if waited >= deadline {
        let message = format!("ReplicaSet {set_name} has timed out progressing");
        if previous
            .as_ref()
            .is_none_or(|c| c.reason != reason::PROGRESS_DEADLINE_EXCEEDED)
        {
            p.plan.events.push(super::Event {
                type_: EventType::Warning,
                reason: reason::PROGRESS_DEADLINE_EXCEEDED,
                message: message.clone(),
            });
            if p.rollout.spec.progress_deadline_abort == Some(true) {
                st.abort = Some(true);
                p.plan.requeue_after = Some(Duration::from_millis(100));
            }
        }
        set_condition(
            st,
            RolloutConditionType::Progressing,
            ConditionStatus::False,
            reason::PROGRESS_DEADLINE_EXCEEDED,
            &message,
            since,
            false,
        );
        set_phase(
            st,
            RolloutPhase::Degraded,
            format!("{}: {message}", reason::PROGRESS_DEADLINE_EXCEEDED),
        );
        return;
    }
    let why = if created {
        reason::NEW_REPLICA_SET_CREATED
    } else {
        reason::REPLICA_SET_UPDATED
    };
    set_condition(
        st,
        RolloutConditionType::Progressing,
        ConditionStatus::True,
        why,
        &format!("ReplicaSet {set_name} is progressing"),
        since,
        moved || skewed,
    );
    let desired = p.rollout.spec.desired_replicas();
    let message = if updated < desired {
        "more replicas need to be updated"
    } else if pods > updated {
        "old replicas are pending termination"
    } else if available < updated {
        "updated replicas are still becoming available"
    } else if p.rollout.spec.blue_green().is_some() {
        "active service cutover pending"
    } else {
        "waiting for rollout to finish steps"
    };
    set_phase(st, RolloutPhase::Progressing, message.to_string());
    p.requeue_in(deadline - waited);
}

fn set_phase(status: &mut RolloutStatus, phase: RolloutPhase, message: String) {
    status.phase = Some(phase);
    status.message = (!message.is_empty()).then_some(message);
}

fn max_unavailable(p: &Planner<'_>) -> i32 {
    let desired = p.rollout.spec.desired_replicas();
    match p.rollout.spec.strategy() {
        Some(Strategy::Canary(c)) => c.max_unavailable_or_default().resolve(desired, false),
        Some(Strategy::BlueGreen(b)) => b.max_unavailable.map_or(0, |m| m.resolve(desired, false)),
        None => 0,
    }
}

/// The message of a failed AnalysisRun the rollout recorded, if one caused an abort.
fn failed_analysis(status: &RolloutStatus) -> Option<String> {
    use sluice_api::AnalysisPhase::{Error, Failed};
    let canary = status.canary.as_ref();
    let blue_green = status.blue_green.as_ref();
    [
        canary.and_then(|c| c.current_step_analysis_run_status.as_ref()),
        canary.and_then(|c| c.current_background_analysis_run_status.as_ref()),
        blue_green.and_then(|b| b.pre_promotion_analysis_run_status.as_ref()),
        blue_green.and_then(|b| b.post_promotion_analysis_run_status.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|r| matches!(r.status, Some(Failed | Error)))
    .map(|r| {
        let phase = r.status.map(|p| format!("{p:?}")).unwrap_or_default();
        match r.message.as_deref() {
            Some(m) => format!("AnalysisRun {} {phase}: {m}", r.name),
            None => format!("AnalysisRun {} {phase}", r.name),
        }
    })
}
