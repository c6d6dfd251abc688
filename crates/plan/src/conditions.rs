//! The conditions a rollout reports (`Available`, `Paused`, `Healthy`, `Completed`,
//! `Progressing`, `InvalidSpec`, `ReplicaFailure`): each decided by a function of its own, from
//! facts [`crate::status`] gathers.
//!
//! A condition keeps its transition time while its status holds and its update time while
//! nothing about it changes, so an unchanged rollout writes an unchanged status.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice_api::{
    ConditionStatus, RolloutCondition, RolloutConditionType, RolloutStatus, vocab::reason,
};

/// The condition of `type_`, if the status has one.
pub fn condition(status: &RolloutStatus, type_: RolloutConditionType) -> Option<&RolloutCondition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping its transition time while its status holds and its update time
/// while nothing about it changes (unless `touch`), so an unchanged status writes nothing.
fn set(
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

/// `ReplicaFailure`: a write of this reconcile failed with `reason` and `message`.
pub fn replica_failure(status: &mut RolloutStatus, reason: &str, message: &str, now: Timestamp) {
    set(
        status,
        RolloutConditionType::ReplicaFailure,
        ConditionStatus::True,
        reason,
        message,
        now,
        false,
    );
}

/// Drops `ReplicaFailure`: a plan assumes its writes succeed.
pub fn clear_replica_failure(status: &mut RolloutStatus) {
    status
        .conditions
        .retain(|c| c.type_ != RolloutConditionType::ReplicaFailure);
}

/// `InvalidSpec` with the spec's problems; returns whether it is new or its message changed.
pub fn invalid_spec(status: &mut RolloutStatus, message: &str, now: Timestamp) -> bool {
    let before = condition(status, RolloutConditionType::InvalidSpec).map(|c| c.message.clone());
    set(
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

/// Drops `InvalidSpec` once the spec is fixed.
pub fn clear_invalid_spec(status: &mut RolloutStatus) {
    status
        .conditions
        .retain(|c| c.type_ != RolloutConditionType::InvalidSpec);
}

/// `Available`: whether at least the minimum of pods (desired − maxUnavailable) is available.
pub fn available(status: &mut RolloutStatus, enough: bool, now: Timestamp) {
    let (value, message) = if enough {
        (ConditionStatus::True, "Rollout has minimum availability")
    } else {
        (
            ConditionStatus::False,
            "Rollout does not have minimum availability",
        )
    };
    set(
        status,
        RolloutConditionType::Available,
        value,
        reason::AVAILABLE_REASON,
        message,
        now,
        false,
    );
}

/// `Paused`: True while paused; False (resumed) only once it was True, never set otherwise.
pub fn paused(status: &mut RolloutStatus, prev: &RolloutStatus, paused: bool, now: Timestamp) {
    let was_paused = condition(prev, RolloutConditionType::Paused)
        .is_some_and(|c| c.status == ConditionStatus::True);
    if paused {
        set(
            status,
            RolloutConditionType::Paused,
            ConditionStatus::True,
            reason::ROLLOUT_PAUSED,
            "Rollout is paused",
            now,
            false,
        );
    } else if was_paused {
        set(
            status,
            RolloutConditionType::Paused,
            ConditionStatus::False,
            reason::ROLLOUT_RESUMED,
            "Rollout is resumed",
            now,
            false,
        );
    }
}

/// `Healthy`: whether the current version is stable and fully available.
pub fn healthy(status: &mut RolloutStatus, healthy: bool, now: Timestamp) {
    let (value, message) = if healthy {
        (ConditionStatus::True, "Rollout is healthy")
    } else {
        (ConditionStatus::False, "Rollout is not healthy")
    };
    set(
        status,
        RolloutConditionType::Healthy,
        value,
        reason::ROLLOUT_HEALTHY,
        message,
        now,
        false,
    );
}

/// `Completed`: whether the update to the current template is done (the same test as healthy).
pub fn completed(status: &mut RolloutStatus, healthy: bool, now: Timestamp) {
    let (value, why) = if healthy {
        (ConditionStatus::True, reason::ROLLOUT_COMPLETED)
    } else {
        (ConditionStatus::False, reason::ROLLOUT_NOT_COMPLETED)
    };
    set(
        status,
        RolloutConditionType::Completed,
        value,
        why,
        "Rollout completed update to the current template",
        now,
        false,
    );
}

/// `Progressing` False for an aborted update to `hash`, naming the failed analysis behind it;
/// returns the message.
pub fn aborted(
    status: &mut RolloutStatus,
    hash: &str,
    cause: Option<&str>,
    now: Timestamp,
) -> String {
    let base = format!("Rollout aborted update to {hash}");
    let mut message = base.clone();
    if let Some(why) = failed_analysis(status).or_else(|| cause.map(str::to_string)) {
        message = format!("{message}: {why}");
    } else if let Some(kept) = condition(status, RolloutConditionType::Progressing)
        .filter(|c| c.reason == reason::ROLLOUT_ABORTED && c.message.starts_with(&base))
    {
        // The cause (a failed experiment) was said when the abort happened; it stays said.
        message = kept.message.clone();
    }
    set(
        status,
        RolloutConditionType::Progressing,
        ConditionStatus::False,
        reason::ROLLOUT_ABORTED,
        &message,
        now,
        false,
    );
    message
}

/// `Progressing` Unknown while paused: no progress is expected, and the deadline does not run.
pub fn paused_progress(status: &mut RolloutStatus, now: Timestamp) {
    set(
        status,
        RolloutConditionType::Progressing,
        ConditionStatus::Unknown,
        reason::ROLLOUT_PAUSED,
        "Rollout is paused",
        now,
        false,
    );
}

/// `Progressing` True once the new ReplicaSet `set_name` is the healthy stable version.
pub fn progressed(status: &mut RolloutStatus, set_name: &str, now: Timestamp) {
    set(
        status,
        RolloutConditionType::Progressing,
        ConditionStatus::True,
        reason::NEW_REPLICA_SET_AVAILABLE,
        &format!("ReplicaSet {set_name} has successfully progressed"),
        now,
        false,
    );
}

/// How long an update in flight has gone without progress, read from the `Progressing`
/// condition it last reported, against `progressDeadlineSeconds`.
#[derive(Clone, Copy, Debug)]
pub struct ProgressClock {
    /// `progressDeadlineSeconds`.
    pub deadline: Duration,
    /// Since when nothing moved (now, when something did).
    pub since: Timestamp,
    /// How long since then.
    pub waited: Duration,
    /// Whether something moved in this plan.
    pub moved: bool,
    /// Whether the recorded time lay in the future (a skewed clock, a status written by hand):
    /// no time waited, and the condition records now.
    pub skewed: bool,
    /// Whether the last status already reported the deadline exceeded.
    pub timed_out_before: bool,
}

impl ProgressClock {
    /// Reads the clock from the previous status; `moved` restarts it.
    pub fn read(prev: &RolloutStatus, deadline: Duration, moved: bool, now: Timestamp) -> Self {
        let previous = condition(prev, RolloutConditionType::Progressing);
        let was_progressing = previous.is_some_and(|c| {
            [
                reason::REPLICA_SET_UPDATED,
                reason::NEW_REPLICA_SET_CREATED,
                reason::PROGRESS_DEADLINE_EXCEEDED,
            ]
            .contains(&c.reason.as_str())
        });
        let recorded = previous
            .filter(|_| was_progressing && !moved)
            .map_or(now, |c| c.last_update_time.0);
        let since = recorded.min(now);
        Self {
            deadline,
            since,
            waited: now.duration_since(since).unsigned_abs(),
            moved,
            skewed: recorded > now,
            timed_out_before: previous
                .is_some_and(|c| c.reason == reason::PROGRESS_DEADLINE_EXCEEDED),
        }
    }

    /// Whether the deadline passed without progress.
    pub fn exceeded(&self) -> bool {
        self.waited >= self.deadline
    }

    /// How long until the deadline passes.
    pub fn left(&self) -> Duration {
        self.deadline - self.waited
    }
}

/// `Progressing` False: the deadline passed without progress, with `message`, since the clock
/// stopped.
pub fn deadline_exceeded(status: &mut RolloutStatus, message: &str, clock: &ProgressClock) {
    set(
        status,
        RolloutConditionType::Progressing,
        ConditionStatus::False,
        reason::PROGRESS_DEADLINE_EXCEEDED,
        message,
        clock.since,
        false,
    );
}

/// `Progressing` True for an update in flight to `set_name` (`created` in this plan, or
/// updated), touched whenever something moved.
pub fn progressing(
    status: &mut RolloutStatus,
    set_name: &str,
    created: bool,
    clock: &ProgressClock,
) {
    let why = if created {
        reason::NEW_REPLICA_SET_CREATED
    } else {
        reason::REPLICA_SET_UPDATED
    };
    set(
        status,
        RolloutConditionType::Progressing,
        ConditionStatus::True,
        why,
        &format!("ReplicaSet {set_name} is progressing"),
        clock.since,
        clock.moved || clock.skewed,
    );
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
