//! The blue/green flows, stage by stage: first deploy, preview, manual and automatic promotion,
//! the scale-down delay, abort and retry, a second update while the first waits, invalid
//! Services; and invariants over random sequences of those.

use proptest::prelude::*;
use sluice_api::{PauseReason, vocab::POD_TEMPLATE_HASH_LABEL};

use super::*;

fn blue_green(extra: serde_json::Value) -> serde_json::Value {
    let mut strategy =
        serde_json::json!({ "activeService": "web-active", "previewService": "web-preview" });
    if let (Some(s), Some(e)) = (strategy.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::json!({ "blueGreen": strategy })
}

/// A blue/green rollout deployed once and Healthy on `web:1`.
fn deployed_bg(extra: serde_json::Value, replicas: i32) -> Sim {
    let mut sim = Sim::new(rollout_with(replicas, blue_green(extra)));
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    sim
}

fn promote(sim: &mut Sim) {
    sim.patch_status(|s| s.pause_conditions.clear());
}

fn active(sim: &Sim) -> Option<String> {
    sim.service_hash("web-active")
}

fn preview(sim: &Sim) -> Option<String> {
    sim.service_hash("web-preview")
}

#[test]
fn a_first_deploy_points_both_services_at_the_first_set_once_it_is_available() {
    let mut sim = Sim::new(rollout_with(3, blue_green(serde_json::json!({}))));
    let first = sim.reconcile();
    assert!(
        matches!(&first.actions[..], [Action::CreateReplicaSet(rs)] if rs.spec.as_ref().and_then(|s| s.replicas) == Some(3)),
        "{:?}",
        first.actions
    );
    assert_eq!(
        active(&sim),
        None,
        "no Service points at pods not yet available"
    );
    sim.run(10);
    let status = sim.status();
    let hash = status.current_pod_hash.clone().expect("a hash");
    assert_eq!(status.stable_rs.as_deref(), Some(hash.as_str()));
    assert_eq!(active(&sim).as_deref(), Some(hash.as_str()));
    assert_eq!(preview(&sim).as_deref(), Some(hash.as_str()));
    let bg = status.blue_green.expect("blue/green status");
    assert_eq!(bg.active_selector.as_deref(), Some(hash.as_str()));
    assert_eq!(bg.preview_selector.as_deref(), Some(hash.as_str()));
    assert_eq!(status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(argocd_health(&sim.rollout), ("Healthy", String::new()));
}

#[test]
fn a_manual_promotion_previews_the_new_set_then_switches_and_scales_the_old_one_down_after_the_delay()
 {
    let mut sim = deployed_bg(serde_json::json!({ "autoPromotionEnabled": false }), 3);
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(10);
    let new = sim.hash_of("web:2");

    // Both versions at full size; the preview serves the new one, the active the old one.
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 3)]
    );
    assert_eq!(preview(&sim).as_deref(), Some(new.as_str()));
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));
    let status = sim.status();
    assert_eq!(
        status.pause_conditions.first().map(|c| c.reason),
        Some(PauseReason::BlueGreenPause)
    );
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    assert_eq!(status.stable_rs.as_deref(), Some(old.as_str()));
    // An HPA and the scale subresource see the active version, as Argo counts it: 3 pods, not 6.
    assert_eq!(status.replicas, Some(6));
    assert_eq!(
        (
            status.hpa_replicas,
            status.available_replicas,
            status.ready_replicas
        ),
        (Some(3), Some(3), Some(3))
    );
    assert_eq!(
        status.selector,
        Some(format!("app=web,{POD_TEMPLATE_HASH_LABEL}={old}"))
    );

    // Waiting longer changes nothing.
    sim.advance(3600);
    sim.run(5);
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));

    promote(&mut sim);
    let switched = sim.reconcile();
    assert!(
        switched
            .actions
            .iter()
            .any(|a| matches!(a, Action::PointService { service, hash } if service == "web-active" && *hash == new)),
        "{:?}",
        switched.actions
    );
    let status = sim.status();
    assert_eq!(status.stable_rs.as_deref(), Some(new.as_str()));
    assert_eq!(
        status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref()),
        Some(new.as_str())
    );
    // The old set waits out the default 30 s.
    sim.run(5);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 3)]
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Progressing");
    sim.advance(29);
    let early = sim.run(5);
    assert_eq!(sim.pods().len(), 2, "scaled down before the delay");
    assert!(
        early
            .requeue_after
            .is_some_and(|d| d <= Duration::from_secs(1))
    );
    sim.advance(1);
    sim.run(5);
    assert_eq!(sim.pods(), [("web:2".to_string(), 3)]);
    assert_eq!(argocd_health(&sim.rollout), ("Healthy", String::new()));
    assert_eq!(sim.status().phase, Some(RolloutPhase::Healthy));
}

#[test]
fn auto_promotion_switches_as_soon_as_the_new_set_is_fully_available() {
    let mut sim = deployed_bg(serde_json::json!({ "scaleDownDelaySeconds": 0 }), 4);
    sim.set_image("web:2");
    sim.run(20);
    let new = sim.hash_of("web:2");
    assert_eq!(active(&sim).as_deref(), Some(new.as_str()));
    assert!(sim.status().pause_conditions.is_empty());
    assert_eq!(sim.pods(), [("web:2".to_string(), 4)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn auto_promotion_seconds_pause_first_then_promote_on_time() {
    let mut sim = deployed_bg(serde_json::json!({ "autoPromotionSeconds": 20 }), 2);
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    let plan = sim.run(10);
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    assert!(
        plan.requeue_after
            .is_some_and(|d| d <= Duration::from_secs(20))
    );
    sim.advance(19);
    sim.run(5);
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));
    sim.advance(1);
    sim.run(5);
    assert_eq!(active(&sim).as_deref(), Some(sim.hash_of("web:2").as_str()));
    assert!(sim.status().pause_conditions.is_empty());
}

#[test]
fn a_preview_replica_count_grows_to_full_size_only_after_promotion() {
    let mut sim = deployed_bg(
        serde_json::json!({ "autoPromotionEnabled": false, "previewReplicaCount": 1 }),
        3,
    );
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(10);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 1)]
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    promote(&mut sim);
    // Scaled to full size first; the switch waits for the new pods to be available.
    let plan = sim.reconcile();
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::PointService { service, .. } if service == "web-active"))
    );
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 3)]
    );
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));
    sim.run(5);
    assert_eq!(active(&sim).as_deref(), Some(sim.hash_of("web:2").as_str()));
}

#[test]
fn new_pods_that_never_become_available_never_get_the_active_service() {
    let mut sim = deployed_bg(serde_json::json!({}), 3);
    let old = sim.status().stable_rs.expect("stable");
    sim.broken_image = Some("web:2".into());
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));
    assert_eq!(preview(&sim).as_deref(), Some(old.as_str()));
    assert_eq!(sim.status().stable_rs.as_deref(), Some(old.as_str()));
    assert_eq!(argocd_health(&sim.rollout).0, "Progressing");
}

#[test]
fn abort_returns_both_services_to_stable_scales_the_preview_down_later_and_retry_starts_over() {
    let mut sim = deployed_bg(serde_json::json!({ "autoPromotionEnabled": false }), 2);
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(10);
    let new = sim.hash_of("web:2");
    assert_eq!(preview(&sim).as_deref(), Some(new.as_str()));

    sim.patch_status(|s| s.abort = Some(true));
    sim.run(5);
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));
    assert_eq!(preview(&sim).as_deref(), Some(old.as_str()));
    let status = sim.status();
    assert_eq!(status.phase, Some(RolloutPhase::Degraded));
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("RolloutAborted"))
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert!(status.pause_conditions.is_empty());
    // The preview set stays for abortScaleDownDelaySeconds (30), then goes.
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 2)]
    );
    sim.advance(30);
    sim.run(5);
    assert_eq!(sim.pods(), [("web:1".to_string(), 2)]);

    // Retry: the preview comes back and waits for promotion again.
    sim.patch_status(|s| s.abort = Some(false));
    sim.run(10);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 2)]
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    assert_eq!(preview(&sim).as_deref(), Some(new.as_str()));
    promote(&mut sim);
    sim.run(5);
    assert_eq!(active(&sim).as_deref(), Some(new.as_str()));
}

#[test]
fn abort_scale_down_delay_zero_keeps_the_preview() {
    let mut sim = deployed_bg(
        serde_json::json!({ "autoPromotionEnabled": false, "abortScaleDownDelaySeconds": 0 }),
        2,
    );
    sim.set_image("web:2");
    sim.run(10);
    sim.patch_status(|s| s.abort = Some(true));
    sim.advance(3600);
    sim.run(5);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 2)]
    );
}

#[test]
fn a_second_update_while_the_first_waits_replaces_the_waiting_set() {
    let mut sim = deployed_bg(serde_json::json!({ "autoPromotionEnabled": false }), 2);
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(10);
    sim.set_image("web:3");
    sim.run(10);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:3".to_string(), 2)],
        "web:2 never served the active Service, so it goes at once"
    );
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));
    assert_eq!(
        preview(&sim).as_deref(),
        Some(sim.hash_of("web:3").as_str())
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
}

#[test]
fn going_back_to_the_stable_template_drops_the_waiting_preview() {
    let mut sim = deployed_bg(serde_json::json!({ "autoPromotionEnabled": false }), 2);
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(10);
    sim.set_image("web:1");
    sim.run(10);
    assert_eq!(sim.pods(), [("web:1".to_string(), 2)]);
    assert_eq!(active(&sim).as_deref(), Some(old.as_str()));
    assert_eq!(preview(&sim).as_deref(), Some(old.as_str()));
    assert_eq!(argocd_health(&sim.rollout), ("Healthy", String::new()));
}

#[test]
fn the_revision_limit_bounds_how_many_old_sets_wait_out_their_delay() {
    let mut sim = deployed_bg(
        serde_json::json!({ "scaleDownDelaySeconds": 600, "scaleDownDelayRevisionLimit": 1 }),
        2,
    );
    sim.set_image("web:2");
    sim.run(10);
    assert_eq!(sim.pods().len(), 2, "web:1 waits out its delay");
    sim.set_image("web:3");
    sim.run(10);
    // web:2 (newest old) waits; web:1 is past the limit and goes.
    assert_eq!(
        sim.pods(),
        [("web:2".to_string(), 2), ("web:3".to_string(), 2)]
    );
}

#[test]
fn the_deadline_is_recorded_on_the_old_set_so_a_restart_keeps_it() {
    let mut sim = deployed_bg(serde_json::json!({ "scaleDownDelaySeconds": 60 }), 2);
    sim.set_image("web:2");
    sim.run(10);
    let old = sim
        .sets
        .iter()
        .filter_map(SetView::of)
        .find(|s| s.hash != sim.hash_of("web:2"))
        .expect("the old set");
    assert_eq!(
        old.scale_down_deadline,
        Some(sim.now + Duration::from_secs(60)),
        "written when the active Service left it"
    );
}

#[test]
fn a_missing_active_service_is_invalid_and_nothing_is_scaled() {
    let mut sim = deployed_bg(serde_json::json!({}), 2);
    sim.services.insert("web-active".into(), None);
    sim.set_image("web:2");
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(
        condition_reason(&sim, RolloutConditionType::InvalidSpec).as_deref(),
        Some("InvalidSpec")
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert!(sim.status().message.is_some_and(
        |m| m.contains("spec.strategy.blueGreen.activeService") && m.contains("not found")
    ));
}

#[test]
fn a_service_of_another_rollout_or_with_a_foreign_selector_is_invalid() {
    let mut sim = deployed_bg(serde_json::json!({}), 2);
    if let Some(Some(view)) = sim.services.get_mut("web-preview") {
        view.managed_by = Some("other".into());
    }
    sim.set_image("web:2");
    assert!(sim.reconcile().actions.is_empty());
    assert!(
        sim.status()
            .message
            .is_some_and(|m| m.contains("managed by Rollout \"other\""))
    );

    let mut sim = deployed_bg(serde_json::json!({}), 2);
    if let Some(Some(view)) = sim.services.get_mut("web-active") {
        view.selector.insert("app".into(), "shop".into());
    }
    sim.set_image("web:2");
    assert!(sim.reconcile().actions.is_empty());
    assert!(sim.status().message.is_some_and(|m| m.contains("app=shop")));
}

#[test]
fn anti_affinity_keeps_new_pods_off_the_stable_pods_nodes() {
    let mut sim = deployed_bg(
        serde_json::json!({ "antiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": { "weight": 40 } } }),
        2,
    );
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    let plan = sim.reconcile();
    let Some(Action::CreateReplicaSet(rs)) = plan.actions.first() else {
        panic!("{:?}", plan.actions)
    };
    let terms = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .clone()
        })
        .expect("a preferred anti-affinity");
    assert_eq!(terms[0].weight, 40);
    assert_eq!(
        terms[0]
            .pod_affinity_term
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)),
        Some(&old)
    );
}

/// What a user or the clock does between reconciles.
#[derive(Clone, Debug)]
enum Move {
    Image(u8),
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Wait(u64),
    Break(u8),
    Heal,
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        (1u8..4).prop_map(Move::Image),
        Just(Move::Promote),
        Just(Move::PromoteFull),
        Just(Move::Abort),
        Just(Move::Retry),
        (0u64..40).prop_map(Move::Wait),
        (1u8..4).prop_map(Move::Break),
        Just(Move::Heal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Over random sequences of updates, promotions, aborts, retries, waits and pods that stop
    /// becoming available: the active Service is only ever switched to a fully available set, a
    /// set it selects is never scaled down, no old set goes before its deadline (checked on every
    /// write by the simulator), an aborted rollout's active Service selects the stable version,
    /// and once left alone the rollout ends Healthy or waits for a person.
    #[test]
    fn blue_green_invariants_hold_along_any_history(
        replicas in 1i32..6,
        preview in proptest::option::of(0i32..6),
        manual in any::<bool>(),
        auto_seconds in proptest::option::of(0i32..30),
        delay in 0i32..40,
        history in proptest::collection::vec(moves(), 1..25),
    ) {
        let mut extra = serde_json::json!({ "autoPromotionEnabled": !manual, "scaleDownDelaySeconds": delay });
        if let Some(p) = preview { extra["previewReplicaCount"] = p.into(); }
        if let Some(s) = auto_seconds { extra["autoPromotionSeconds"] = s.into(); }
        let mut sim = deployed_bg(extra, replicas);
        for step in history {
            match step {
                Move::Image(n) => sim.set_image(&format!("web:{n}")),
                Move::Promote => promote(&mut sim),
                Move::PromoteFull => sim.patch_status(|s| s.promote_full = Some(true)),
                Move::Abort => sim.patch_status(|s| s.abort = Some(true)),
                Move::Retry => sim.patch_status(|s| s.abort = Some(false)),
                Move::Wait(s) => sim.advance(s),
                Move::Break(n) => sim.broken_image = Some(format!("web:{n}")),
                Move::Heal => sim.broken_image = None,
            }
            sim.reconcile();
            sim.reconcile();
            let status = sim.status();
            if status.abort == Some(true) && status.stable_rs != status.current_pod_hash {
                prop_assert_eq!(active(&sim), status.stable_rs.clone(), "aborted, yet active is not stable");
            }
            // Whatever the active Service selects has pods asked for.
            if let Some(h) = active(&sim) {
                let set = sim.sets.iter().filter_map(SetView::of).find(|s| s.hash == h);
                prop_assert!(set.is_some_and(|s| s.replicas > 0), "the active Service selects a set without pods");
            }
        }
        sim.broken_image = None;
        sim.patch_status(|s| s.abort = None);
        promote(&mut sim);
        for _ in 0..4 {
            sim.run(30);
            sim.advance(100);
        }
        sim.run(30);
        let health = argocd_health(&sim.rollout).0;
        prop_assert!(health == "Healthy" || health == "Suspended", "ended {health}");
        if health == "Suspended" {
            promote(&mut sim);
            for _ in 0..4 {
                sim.run(30);
                sim.advance(100);
            }
            sim.run(30);
            prop_assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
        }
        let current = sim.status().current_pod_hash;
        prop_assert_eq!(active(&sim), current);
    }
}

#[test]
fn active_and_preview_metadata_follow_the_role_of_each_set() {
    let mut sim = deployed_bg(
        serde_json::json!({
            "autoPromotionEnabled": false,
            "activeMetadata": { "labels": { "role": "active" } },
            "previewMetadata": { "labels": { "role": "preview" }, "annotations": { "preview": "yes" } }
        }),
        2,
    );
    let role = |sim: &Sim, image: &str| {
        let hash = sim.hash_of(image);
        sim.sets
            .iter()
            .filter_map(SetView::of)
            .find(|s| s.hash == hash)
            .map(|s| s.ephemeral)
            .expect("the set")
    };
    assert_eq!(
        role(&sim, "web:1").labels.get("role").map(String::as_str),
        Some("active")
    );
    sim.set_image("web:2");
    let created = sim.reconcile();
    let Some(Action::CreateReplicaSet(rs)) = created.actions.first() else {
        panic!("{:?}", created.actions)
    };
    let labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert_eq!(
        labels.get("role").map(String::as_str),
        Some("preview"),
        "new pods start as preview"
    );
    sim.run(10);
    assert_eq!(
        role(&sim, "web:2").labels.get("role").map(String::as_str),
        Some("preview")
    );
    assert_eq!(
        role(&sim, "web:1").labels.get("role").map(String::as_str),
        Some("active")
    );

    promote(&mut sim);
    let switched = sim.reconcile();
    assert!(switched.actions.iter().any(|a| matches!(a,
        Action::SetPodMetadata { wanted, previous, .. }
            if wanted.labels.get("role").map(String::as_str) == Some("active")
            && previous.annotations.contains_key("preview"))));
    let new = role(&sim, "web:2");
    assert_eq!(new.labels.get("role").map(String::as_str), Some("active"));
    assert!(
        new.annotations.is_empty(),
        "preview annotations removed: {new:?}"
    );
    assert!(
        role(&sim, "web:1").labels.is_empty(),
        "the old set is no longer active"
    );
}

#[test]
fn a_pre_promotion_run_stays_needed_while_the_preview_is_briefly_short_of_pods() {
    let mut sim = deployed_bg(
        serde_json::json!({
            "autoPromotionEnabled": false,
            "prePromotionAnalysis": { "templates": [{ "templateName": "smoke" }] }
        }),
        3,
    );
    sim.set_image("web:2");
    sim.run(10);
    let run = sim
        .runs
        .iter()
        .find(|r| r.kind == Some(super::super::analysis::RunKind::PrePromotion))
        .expect("the pre-promotion run started once the preview was ready")
        .name
        .clone();
    // A moment of unreadiness (a pod restarting) in the preview set.
    sim.broken_image = Some("web:2".into());
    sim.run(5);
    assert!(
        sim.runs.iter().all(|r| !r.terminating),
        "the run is not cut short: {:?}",
        sim.runs
    );
    sim.broken_image = None;
    sim.run(5);
    promote(&mut sim);
    sim.run(10);
    assert_ne!(
        active(&sim).as_deref(),
        Some(sim.hash_of("web:2").as_str()),
        "no switch before the run passes"
    );
    for r in sim.runs.iter_mut().filter(|r| r.name == run) {
        r.phase = sluice_api::AnalysisPhase::Successful;
    }
    sim.run(10);
    assert_eq!(active(&sim).as_deref(), Some(sim.hash_of("web:2").as_str()));
}
