//! `spec.restartAt`: every pod of the rollout created before that time is evicted and replaced
//! by its ReplicaSet, a few at a time, without the update strategy; then `status.restartedAt`
//! records that the restart is done.
//!
//! Safety: pods are evicted only while every pod of the rollout is ready, and at most
//! `maxUnavailable` at a time (at least one, so a restart can finish when `maxUnavailable` is
//! 0), so the application never has fewer ready pods than the strategy allows, less one at most.
//! Eviction (not deletion) also honours the application's PodDisruptionBudgets.

use std::time::Duration;

use jiff::Timestamp;
use sluice_api::{Rollout, vocab::reason};

use super::{Action, EventType, Planner, replicas::Limits};

/// The part of a pod a restart reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// The pod's name.
    pub name: String,
    /// Its `rollouts-pod-template-hash` label.
    pub hash: String,
    /// When it was created.
    pub created: Timestamp,
    /// Whether it is Ready.
    pub ready: bool,
    /// Whether it is being deleted.
    pub deleting: bool,
}

/// Whether a restart is due and not done: the controller lists the rollout's pods only then.
pub fn pending(rollout: &Rollout, now: Timestamp) -> bool {
    let Some(at) = rollout.spec.restart_at.as_ref().map(|t| t.0) else {
        return false;
    };
    let done = rollout
        .status
        .as_ref()
        .and_then(|s| s.restarted_at.as_ref())
        .is_some_and(|t| t.0 >= at);
    !done && at <= now
}

/// Evicts the next pods of a pending restart, or records it done.
pub fn plan(p: &mut Planner<'_>, pods: Option<&[PodView]>, limits: Limits) {
    let Some(at) = p.rollout.spec.restart_at.as_ref().map(|t| t.0) else {
        return;
    };
    if p.status.restarted_at.as_ref().is_some_and(|t| t.0 >= at) {
        return;
    }
    if at > p.now {
        p.requeue_in(Duration::try_from(at.duration_since(p.now)).unwrap_or_default());
        return;
    }
    // Listed by the controller only while a restart is pending; not listed: look again soon.
    let Some(pods) = pods else {
        p.requeue_in(Duration::from_secs(1));
        return;
    };
    // Only the pods of this rollout's ReplicaSets, whatever else the selector matches.
    let pods: Vec<&PodView> = pods
        .iter()
        .filter(|pod| p.sets.iter().any(|s| s.hash == pod.hash))
        .collect();
    let old: Vec<&PodView> = pods
        .iter()
        .copied()
        .filter(|pod| pod.created < at && !pod.deleting)
        .collect();
    if old.is_empty() {
        p.status.restarted_at = p.rollout.spec.restart_at.clone();
        p.progressed();
        p.event(
            EventType::Normal,
            reason::ROLLOUT_RESTARTED,
            "Restarted every pod created before restartAt",
        );
        return;
    }
    let desired = p.rollout.spec.desired_replicas();
    let ready = pods.iter().filter(|pod| pod.ready && !pod.deleting).count();
    let settling = pods.iter().any(|pod| pod.deleting || !pod.ready);
    // Wait until the last evictions were replaced and every pod is ready again.
    if settling || i32::try_from(ready).unwrap_or(i32::MAX) < desired {
        p.requeue_in(Duration::from_secs(2));
        return;
    }
    let budget = usize::try_from(limits.max_unavailable.max(1)).unwrap_or(1);
    for pod in old.iter().take(budget) {
        p.act(Action::EvictPod {
            name: pod.name.clone(),
        });
    }
    p.event(
        EventType::Normal,
        reason::RESTARTING_PODS,
        format!(
            "Evicting {} of {} pods created before restartAt",
            budget.min(old.len()),
            old.len()
        ),
    );
    p.requeue_in(Duration::from_secs(2));
}
