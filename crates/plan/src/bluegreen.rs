//! The blue/green strategy: the new version comes up beside the stable one behind the preview
//! Service, is promoted (by a person, a timer, or at once), and the active Service switches to it
//! in one write once it is fully available; the old version stays up for a delay, then goes.
//!
//! Where the rollout stands is read from the status (`stableRS`, the pause condition, the
//! promotion checkpoint, `abort`) and from the ReplicaSets (their availability and the scale-down
//! deadline annotation), so a restarted controller decides exactly the same.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use sluice_api::{
    BlueGreenStatus, BlueGreenStrategy, PauseReason,
    vocab::{POD_TEMPLATE_HASH_LABEL, reason},
};

use self::update::update;
use super::{EventType, Planner, analysis, metadata, pause, replicasets::SetView};

mod update;

/// Seconds before an aborted preview is scaled down, when the spec is silent.
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// Plans one reconcile of a blue/green rollout whose current pod template hashes to `hash`.
pub fn plan(
    p: &mut Planner<'_>,
    strategy: &BlueGreenStrategy,
    template: &PodTemplateSpec,
    hash: &str,
) {
    if p.prev.current_pod_hash.as_deref() != Some(hash) {
        p.start_over();
        // Runs of an earlier attempt at this template are no evidence for this one.
        analysis::spend(p, hash);
        crate::rollback::fast_track(p, hash);
    }
    p.status.current_pod_hash = Some(hash.to_string());

    let stable = p.existing_stable();
    let new_set = p.set(hash);
    let updating = stable.as_deref().is_some_and(|h| h != hash);
    let aborted = updating && p.status.abort == Some(true);

    match (stable, updating, aborted) {
        (Some(stable), true, true) => abort(p, strategy, hash, &stable, new_set.as_ref()),
        (Some(stable), true, false) => {
            update(p, strategy, template, hash, &stable, new_set.as_ref());
        }
        _ => steady(p, strategy, template, hash, new_set.as_ref()),
    }

    // The sets that may serve traffic now: the current one, the stable one, and whatever the
    // active Service still selects (a switch the status has not recorded yet).
    let active_now = service_hash(p, &strategy.active_service);
    let mut keep: Vec<String> = vec![hash.to_string()];
    keep.extend(p.status.stable_rs.clone());
    keep.extend(active_now);
    scale_down_old(p, strategy, &keep);
    p.delete_old_sets(hash);

    // The pods behind the active Service carry activeMetadata; the new version's pods, while it
    // is only previewed, previewMetadata.
    let active = p
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.clone());
    let previewing = updating && !aborted;
    metadata::sync(p, |set| {
        if Some(&set.hash) == active.as_ref() {
            strategy.active_metadata.clone()
        } else if previewing && set.hash == hash {
            strategy.preview_metadata.clone()
        } else {
            None
        }
    });
}

/// No update in flight: the first deployment, a settled rollout, or a template set back to the
/// stable one. The current set gets every replica; once it is fully available it is the stable
/// version and both Services select it.
fn steady(
    p: &mut Planner<'_>,
    strategy: &BlueGreenStrategy,
    template: &PodTemplateSpec,
    hash: &str,
    new_set: Option<&SetView>,
) {
    let desired = p.rollout.spec.desired_replicas();
    pause::end(p, PauseReason::BlueGreenPause);
    if let Some(bg) = p.status.blue_green.as_mut() {
        bg.scale_up_preview_check_point = None;
    }
    p.status.aborted_at = None;
    if p.rollout.spec.is_paused() && new_set.is_some() {
        return point_at_stable(p, strategy);
    }
    match new_set {
        None => {
            let rs = p.new_set(template, hash, desired);
            p.create_set(rs);
        }
        Some(set) => p.scale_set(set, desired),
    }
    let first = p.status.stable_rs.as_deref() != Some(hash);
    if first && new_set.is_some_and(|s| fully_available(s, desired)) {
        p.status.stable_rs = Some(hash.to_string());
        p.progressed();
        p.event(
            EventType::Normal,
            reason::ROLLOUT_COMPLETED,
            format!("Rollout completed update to {hash}"),
        );
    }
    point_at_stable(p, strategy);
}

/// Points both Services at the stable version, when there is one.
fn point_at_stable(p: &mut Planner<'_>, strategy: &BlueGreenStrategy) {
    if let Some(stable) = p.status.stable_rs.clone() {
        point(p, strategy, &stable, &stable);
    }
}

/// The stable set keeps serving at full size until the switch (and after an abort).
fn keep_stable_full(p: &mut Planner<'_>, stable: &str, desired: i32) {
    if let Some(set) = p.set(stable)
        && set.replicas < desired
    {
        p.scale_set(&set, desired);
    }
}

/// Points the active Service at `active` and the preview Service at `preview`, and records the
/// selectors in the status.
fn point(p: &mut Planner<'_>, strategy: &BlueGreenStrategy, active: &str, preview: &str) {
    p.point_services(&[
        (Some(&strategy.active_service), active),
        (strategy.preview_service.as_ref(), preview),
    ]);
    let bg = bg_status(p);
    bg.active_selector = Some(active.to_string());
    bg.preview_selector = strategy
        .preview_service
        .as_ref()
        .map(|_| preview.to_string());
}

/// The blue/green status, created when the rollout has none yet.
fn bg_status<'a>(p: &'a mut Planner<'_>) -> &'a mut BlueGreenStatus {
    p.status
        .blue_green
        .get_or_insert_with(BlueGreenStatus::default)
}

/// An aborted update: both Services select the stable version again, which keeps every replica;
/// the new set is scaled down after `abortScaleDownDelaySeconds` (never, when 0).
fn abort(
    p: &mut Planner<'_>,
    strategy: &BlueGreenStrategy,
    hash: &str,
    stable: &str,
    new_set: Option<&SetView>,
) {
    let desired = p.rollout.spec.desired_replicas();
    pause::end(p, PauseReason::BlueGreenPause);
    if let Some(bg) = p.status.blue_green.as_mut() {
        bg.scale_up_preview_check_point = None;
    }
    let aborted_at = match p.status.aborted_at.clone() {
        // An abort recorded in the future has waited nothing: its delay starts now.
        Some(t) if t.0 > p.now => {
            p.status.aborted_at = Some(p.now_time());
            p.now
        }
        Some(t) => t.0,
        None => {
            p.status.aborted_at = Some(p.now_time());
            p.event(
                EventType::Warning,
                reason::ROLLOUT_ABORTED,
                format!("Rollout aborted update to {hash}; the active and preview Services select the stable version"),
            );
            p.now
        }
    };
    keep_stable_full(p, stable, desired);
    point(p, strategy, stable, stable);

    let delay = strategy
        .abort_scale_down_delay_seconds
        .unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS);
    let Some(set) = new_set.filter(|s| s.replicas > 0 && delay > 0) else {
        return;
    };
    let delay = Duration::from_secs(u64::try_from(delay).unwrap_or(0));
    let waited = p.now.duration_since(aborted_at).unsigned_abs();
    // A set the active Service left before it became the update (a rollback to it, then an
    // abort) also waits out that earlier delay: traffic may still reach it until then.
    let left = set.scale_down_wait(p.now).unwrap_or(Duration::ZERO);
    if waited >= delay && left.is_zero() {
        p.scale_set(set, 0);
    } else {
        p.requeue_in(delay.saturating_sub(waited).max(left));
    }
}

/// Scales down the old sets that no Service needs: each one the active Service left waits until
/// its deadline, at most `scaleDownDelayRevisionLimit` of them at once (newest first); any other
/// (a preview replaced by a newer update, a set left by an earlier version) goes now.
fn scale_down_old(p: &mut Planner<'_>, strategy: &BlueGreenStrategy, keep: &[String]) {
    let limit = strategy
        .scale_down_delay_revision_limit
        .map(|l| usize::try_from(l).unwrap_or(0));
    let old: Vec<SetView> = p
        .sets
        .iter()
        .filter(|s| s.replicas > 0 && !keep.contains(&s.hash))
        .cloned()
        .collect();
    let mut waiting = 0;
    for set in old {
        let wait = set
            .scale_down_wait(p.now)
            .filter(|_| limit.is_none_or(|l| waiting < l));
        match wait {
            Some(left) => {
                waiting += 1;
                p.requeue_in(left);
            }
            None => p.scale_set(&set, 0),
        }
    }
}

/// The pod-template-hash a Service selects now, if it exists.
fn service_hash(p: &Planner<'_>, service: &str) -> Option<String> {
    p.observed
        .services
        .get(service)?
        .as_ref()?
        .selector
        .get(POD_TEMPLATE_HASH_LABEL)
        .cloned()
}

/// At least `n` pods asked for and available.
fn ready(set: &SetView, n: i32) -> bool {
    set.replicas >= n && set.available >= n
}

/// Exactly `desired` pods, all available, none extra: the only set the active Service may select.
pub fn fully_available(set: &SetView, desired: i32) -> bool {
    set.replicas == desired && set.available >= desired && set.pods <= desired
}

/// When an old set may be scaled down, as the annotation writes it.
pub fn deadline_after(now: Timestamp, seconds: i32) -> String {
    (now + Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0))).to_string()
}
