//! A blue/green update in flight: the new version comes up at the preview size, waits for
//! promotion (a person, a timer, or at once) and its pre-promotion analysis, takes over the
//! active Service once fully available, and becomes stable once its post-promotion analysis
//! passes.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use sluice_api::{
    BlueGreenStatus, BlueGreenStrategy, PauseReason,
    vocab::{SCALE_DOWN_DEADLINE_ANNOTATION, reason},
};

use super::{
    super::{
        Action, EventType, Planner,
        analysis::{self, RunKind, judge},
        metadata,
        pause::{self, Stand},
        replicasets::{SetView, add_anti_affinity},
    },
    abort, bg_status, deadline_after, fully_available, keep_stable_full, point, ready,
};

/// An update in flight: the new set comes up at the preview size beside the stable one, waits
/// for promotion, grows to full size, and takes over the active Service once fully available.
pub(super) fn update(
    p: &mut Planner<'_>,
    strategy: &BlueGreenStrategy,
    template: &PodTemplateSpec,
    hash: &str,
    stable: &str,
    new_set: Option<&SetView>,
) {
    let u = Update {
        strategy,
        template,
        hash,
        stable,
        set: new_set,
        desired: p.rollout.spec.desired_replicas(),
    };
    retry_after_abort(p, hash);
    let preview_ready = new_set.is_some_and(|s| ready(s, u.preview_count()));
    let promoted = !pause::by_person(p) && promoted(p, strategy, preview_ready);
    keep_stable_full(p, stable, u.desired);
    if !pause::by_person(p) {
        scale_new(p, &u, promoted);
    }
    let switched_before = switched_before(p, hash);
    let pre_passed = pre_promotion_passed(p, &u, preview_ready, switched_before);
    if p.status.abort == Some(true) {
        return abort(p, strategy, hash, stable, new_set);
    }
    let switch_now = !switched_before
        && promoted
        && pre_passed
        && new_set.is_some_and(|s| fully_available(s, u.desired));
    let switched = switched_before || switch_now;
    let active = if switched { hash } else { stable };
    point(
        p,
        strategy,
        active,
        if preview_ready { hash } else { stable },
    );
    if switch_now {
        p.progressed();
    }
    if !switched {
        return;
    }
    let post_passed = post_promotion_passed(p, &u);
    if p.status.abort == Some(true) {
        // The new version failed while serving: the active Service goes back to the old one,
        // which kept every replica.
        return abort(p, strategy, hash, stable, new_set);
    }
    if post_passed {
        complete(p, &u);
    }
}

/// What one update reads once: the strategy, the new version and its set, the stable version.
struct Update<'a> {
    strategy: &'a BlueGreenStrategy,
    template: &'a PodTemplateSpec,
    hash: &'a str,
    stable: &'a str,
    set: Option<&'a SetView>,
    desired: i32,
}

impl Update<'_> {
    /// Pods of the new version before promotion: `previewReplicaCount`, or all of them.
    fn preview_count(&self) -> i32 {
        self.strategy
            .preview_replica_count
            .unwrap_or(self.desired)
            .clamp(0, self.desired)
    }
}

/// A cleared abort is a retry: the runs of the aborted attempt are spent.
fn retry_after_abort(p: &mut Planner<'_>, hash: &str) {
    if p.status.aborted_at.take().is_some() {
        let bg = bg_status(p);
        bg.pre_promotion_analysis_run_status = None;
        bg.post_promotion_analysis_run_status = None;
        analysis::spend(p, hash);
    }
}

/// Creates the new set, or scales it to the preview size (all replicas once `promoted`).
fn scale_new(p: &mut Planner<'_>, u: &Update<'_>, promoted: bool) {
    let target = if promoted {
        u.desired
    } else {
        u.preview_count()
    };
    match u.set {
        None => {
            let mut rs = p.new_set(u.template, u.hash, target);
            if let Some(rule) = u.strategy.anti_affinity.as_ref() {
                add_anti_affinity(&mut rs, rule, u.stable);
            }
            metadata::stamp(&mut rs, u.strategy.preview_metadata.as_ref());
            p.create_set(rs);
        }
        Some(set) => {
            // A set back from the old versions keeps its pods while its delay runs.
            let waiting = set.scale_down_wait(p.now).is_some();
            let to = if waiting {
                target.max(set.replicas)
            } else {
                target
            };
            p.scale_set(set, to);
        }
    }
}

/// Whether an earlier reconcile switched the active Service to `hash` (the post-promotion
/// analysis still decides).
fn switched_before(p: &Planner<'_>, hash: &str) -> bool {
    p.prev
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.as_deref())
        == Some(hash)
}

/// Whether the pre-promotion analysis lets the switch happen; starts or judges its run.
fn pre_promotion_passed(
    p: &mut Planner<'_>,
    u: &Update<'_>,
    preview_ready: bool,
    switched_before: bool,
) -> bool {
    match u.strategy.pre_promotion_analysis.as_ref() {
        None => true,
        Some(_) if switched_before => true,
        // Once started, the run stays needed while the preview is briefly short of pods: it is
        // never cut short and read as a pass.
        Some(analysis) if preview_ready || analysis::started(p, RunKind::PrePromotion, u.hash) => {
            let recorded = p
                .status
                .blue_green
                .as_ref()
                .and_then(|b| b.pre_promotion_analysis_run_status.clone());
            let (verdict, entry) = analysis::require(
                p,
                RunKind::PrePromotion,
                u.hash,
                analysis,
                recorded.as_ref(),
            );
            bg_status(p).pre_promotion_analysis_run_status = Some(entry);
            judge(p, verdict)
        }
        Some(_) => false,
    }
}

/// Whether the post-promotion analysis passed once the active Service switched.
fn post_promotion_passed(p: &mut Planner<'_>, u: &Update<'_>) -> bool {
    let Some(analysis) = u.strategy.post_promotion_analysis.as_ref() else {
        return true;
    };
    let recorded = p
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.post_promotion_analysis_run_status.clone());
    let (verdict, entry) = analysis::require(
        p,
        RunKind::PostPromotion,
        u.hash,
        analysis,
        recorded.as_ref(),
    );
    bg_status(p).post_promotion_analysis_run_status = Some(entry);
    judge(p, verdict)
}

/// The new version is stable. The old one waits out its delay; the deadline is written with the
/// change, so it is on record however the reconcile ends.
fn complete(p: &mut Planner<'_>, u: &Update<'_>) {
    let old = p.set(u.stable);
    if let Some(old) = old.filter(|s| s.replicas > 0) {
        p.act(Action::AnnotateReplicaSet {
            name: old.name.clone(),
            key: SCALE_DOWN_DEADLINE_ANNOTATION,
            value: deadline_after(p.now, u.strategy.scale_down_delay()),
        });
    }
    bg_status(p).scale_up_preview_check_point = None;
    p.status.stable_rs = Some(u.hash.to_string());
    p.status.controller_pause = None;
    p.status.promote_full = None;
    p.progressed();
    p.event(
        EventType::Normal,
        reason::ROLLOUT_COMPLETED,
        format!("Rollout completed update to {}", u.hash),
    );
}

/// Whether the new version may take all replicas and the active Service: promoted by a person
/// (`promote` clears the pause condition; `promote --full` sets `promoteFull`), by the
/// `autoPromotionSeconds` timer, or at once with auto-promotion. Once promoted, the checkpoint in
/// the status remembers it until the switch.
fn promoted(p: &mut Planner<'_>, strategy: &BlueGreenStrategy, preview_ready: bool) -> bool {
    let checkpoint = |p: &mut Planner<'_>| {
        p.status
            .blue_green
            .get_or_insert_with(BlueGreenStatus::default)
            .scale_up_preview_check_point = Some(true);
        p.status.controller_pause = None;
        p.progressed();
        true
    };
    let promoted_before = p
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.scale_up_preview_check_point)
        == Some(true);
    if promoted_before {
        return true;
    }
    if p.status.promote_full == Some(true) {
        pause::end(p, PauseReason::BlueGreenPause);
        return checkpoint(p);
    }
    let timer = strategy
        .auto_promotes()
        .then_some(strategy.auto_promotion_seconds)
        .flatten()
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
    match pause::stand(p, PauseReason::BlueGreenPause, timer) {
        Stand::Elapsed => {
            pause::resume(p, "Rollout resumed: autoPromotionSeconds passed");
            checkpoint(p)
        }
        Stand::Held => false,
        Stand::Promoted => {
            pause::resume(p, "Rollout promoted");
            checkpoint(p)
        }
        Stand::NotStarted if !preview_ready => false,
        Stand::NotStarted if timer.is_none() && strategy.auto_promotes() => checkpoint(p),
        Stand::NotStarted => {
            pause::hold(p, PauseReason::BlueGreenPause, timer, " before promotion");
            false
        }
    }
}
