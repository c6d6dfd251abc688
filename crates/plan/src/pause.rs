//! Pauses: when the controller pauses a rollout (a canary `pause` step, blue/green's wait for
//! promotion, an inconclusive analysis), how long a timed pause has lasted and when it ends, how
//! a promote (a pause condition cleared by a person) reads, and `spec.paused`.
//!
//! A pause is recorded in the status only: a `pauseCondition` with its start time, and
//! `controllerPause` marking the pause as Sluice's own. So a restarted controller ends a timed
//! pause on the same schedule, and a condition that vanished while `controllerPause` holds reads
//! as a person's "go on".

use std::time::Duration;

use jiff::Timestamp;
use sluice_api::{PauseCondition, PauseReason, RolloutStatus, vocab::reason};

use super::{EventType, Planner};

/// Where a pause of one reason stands now, as [`stand`] reads it from the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stand {
    /// Paused, and the pause goes on (untimed, or its timer has not run out).
    Held,
    /// The timer ran out in this plan: the pause is over and its condition gone.
    Elapsed,
    /// Sluice paused here and someone cleared the condition: the rollout was promoted.
    Promoted,
    /// No pause of this reason has begun.
    NotStarted,
}

/// Reads the pause of `reason`, ending after `timer` (none: until promoted). A running timer asks
/// to plan again when it runs out; one that ran out ends the pause ([`end`]).
pub fn stand(p: &mut Planner<'_>, reason: PauseReason, timer: Option<Duration>) -> Stand {
    match (started(&p.status, reason), timer) {
        (Some(start), Some(timer)) => {
            let elapsed = waited(p, reason, start);
            if elapsed >= timer {
                end(p, reason);
                return Stand::Elapsed;
            }
            p.requeue_in(timer - elapsed);
            Stand::Held
        }
        (Some(_), None) => Stand::Held,
        (None, _) if p.status.controller_pause == Some(true) => Stand::Promoted,
        (None, _) => Stand::NotStarted,
    }
}

/// When the pause of `reason` began, if the rollout is paused for it.
pub fn started(status: &RolloutStatus, reason: PauseReason) -> Option<Timestamp> {
    status
        .pause_conditions
        .iter()
        .find(|c| c.reason == reason)
        .map(|c| c.start_time.0)
}

/// How long the pause of `reason` that began at `start` has lasted. A start in the future (a
/// skewed clock, a status written by hand) is no time waited: the pause restarts now, so it
/// neither ends early nor waits for a far-off date.
pub fn waited(p: &mut Planner<'_>, reason: PauseReason, start: Timestamp) -> Duration {
    if start > p.now {
        let now = p.now_time();
        for condition in p
            .status
            .pause_conditions
            .iter_mut()
            .filter(|c| c.reason == reason)
        {
            condition.start_time = now.clone();
        }
        return Duration::ZERO;
    }
    p.now.duration_since(start).unsigned_abs()
}

/// Pauses the rollout for `reason` from now, marking the pause as the controller's own, so a
/// pause condition cleared later (by a promote) reads as "go on".
pub fn begin(p: &mut Planner<'_>, reason: PauseReason) {
    p.status.pause_conditions.push(PauseCondition {
        reason,
        start_time: p.now_time(),
    });
    p.status.controller_pause = Some(true);
    p.progressed();
}

/// Pauses for `reason` until promoted, or for `timer` (planning again when it runs out), and
/// records the event; `purpose` ends the timed message (" before promotion" for blue/green).
pub fn hold(p: &mut Planner<'_>, reason: PauseReason, timer: Option<Duration>, purpose: &str) {
    begin(p, reason);
    match timer {
        Some(t) => {
            p.requeue_in(t);
            p.event(
                EventType::Normal,
                reason::ROLLOUT_PAUSED,
                format!("Rollout paused for {}s{purpose}", t.as_secs()),
            );
        }
        None => p.event(
            EventType::Normal,
            reason::ROLLOUT_PAUSED,
            "Rollout paused until promoted",
        ),
    }
}

/// A promote read from a cleared condition: the controller's pause is spent, and `message` says
/// the rollout goes on.
pub fn resume(p: &mut Planner<'_>, message: &str) {
    p.status.controller_pause = None;
    p.event(EventType::Normal, reason::ROLLOUT_RESUMED, message);
}

/// The pause of `reason` is over (ran out, promoted, aborted, or nothing to wait for): its
/// condition goes, and the controller's pause with it when it had one or no other pause remains.
pub fn end(p: &mut Planner<'_>, reason: PauseReason) {
    let had = p.status.pause_conditions.iter().any(|c| c.reason == reason);
    p.status.pause_conditions.retain(|c| c.reason != reason);
    if had || p.status.pause_conditions.is_empty() {
        p.status.controller_pause = None;
    }
}

/// The rollout no longer stands where it paused for `reason` (a step skipped, promoted past or
/// aborted): that condition goes; the controller's pause goes only once no other pause remains.
pub fn leave(p: &mut Planner<'_>, reason: PauseReason) {
    p.status.pause_conditions.retain(|c| c.reason != reason);
    if p.status.pause_conditions.is_empty() {
        p.status.controller_pause = None;
    }
}

/// A new version (or new steps) starts over: no pause of the earlier attempt holds it.
pub fn forget(status: &mut RolloutStatus) {
    status.pause_conditions.clear();
    status.controller_pause = None;
}

/// An Inconclusive AnalysisRun `name` pauses the rollout until a person promotes or aborts;
/// returns whether a person promoted (go on).
pub fn inconclusive(p: &mut Planner<'_>, name: &str) -> bool {
    inconclusive_for(
        p,
        PauseReason::InconclusiveAnalysis,
        &format!("AnalysisRun {name}"),
    )
}

/// An Inconclusive Experiment `name` pauses the rollout until a person promotes or aborts;
/// returns whether a person promoted (go on).
pub fn inconclusive_experiment(p: &mut Planner<'_>, name: &str) -> bool {
    inconclusive_for(
        p,
        PauseReason::InconclusiveExperiment,
        &format!("Experiment {name}"),
    )
}

/// Pauses for an inconclusive verdict of `what` (`why`); returns whether a person promoted.
fn inconclusive_for(p: &mut Planner<'_>, why: PauseReason, what: &str) -> bool {
    match stand(p, why, None) {
        Stand::Promoted => {
            resume(p, "Rollout resumed");
            true
        }
        Stand::NotStarted => {
            begin(p, why);
            p.event(
                EventType::Warning,
                reason::ROLLOUT_PAUSED,
                format!("{what} is inconclusive; paused until promoted or aborted"),
            );
            false
        }
        Stand::Held | Stand::Elapsed => false,
    }
}

/// Whether a person paused the rollout (`spec.paused`): its steps and scaling wait.
pub fn by_person(p: &Planner<'_>) -> bool {
    p.rollout.spec.is_paused()
}

/// Whether the rollout is paused for any reason: a pause condition, or `spec.paused`.
pub fn is_paused(p: &Planner<'_>) -> bool {
    !p.status.pause_conditions.is_empty() || by_person(p)
}

/// The phase message of a paused rollout: its pause reasons, or "manually paused" for
/// `spec.paused` alone.
pub fn summary(status: &RolloutStatus) -> String {
    let reasons: Vec<String> = status
        .pause_conditions
        .iter()
        .map(|c| format!("{:?}", c.reason))
        .collect();
    if reasons.is_empty() {
        "manually paused".to_string()
    } else {
        reasons.join(", ")
    }
}
