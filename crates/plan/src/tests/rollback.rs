//! `rollbackWindow`: going back to a recent revision is promoted in full; an older one, or a new
//! version, walks the steps.
use super::*;

/// A canary with the standard steps and `rollbackWindow.revisions`, deployed on `web:1` and
/// then fully promoted to each of `images` in turn (each its own revision).
fn promoted_through(revisions: i32, images: &[&str]) -> Sim {
    let mut canary = standard_steps();
    canary["scaleDownDelaySeconds"] = serde_json::json!(0);
    let mut sim = deployed(canary, 5);
    sim.rollout.spec.rollback_window = Some(sluice_api::RollbackWindow {
        revisions: Some(revisions),
    });
    sim.rollout.spec.revision_history_limit = Some(10);
    for image in images {
        sim.set_image(image);
        sim.run(5);
        sim.patch_status(|s| s.promote_full = Some(true));
        sim.run(30);
        assert_eq!(sim.pods(), [(image.to_string(), 5)], "promoted to {image}");
    }
    sim
}

fn fast_tracked(plan_events: &[crate::Event]) -> bool {
    plan_events
        .iter()
        .any(|e| e.reason == "RollbackWithinWindow")
}

/// Reconciles up to `rounds` times, collecting every event.
fn run_collecting(sim: &mut Sim, rounds: usize) -> Vec<crate::Event> {
    let mut events = Vec::new();
    for _ in 0..rounds {
        let plan = sim.reconcile();
        events.extend(plan.events.clone());
    }
    events
}

#[test]
fn a_rollback_inside_the_window_skips_the_steps() {
    // Revisions 1 (web:1), 2 (web:2), 3 (web:3, stable); the window of 3 holds 3, 2 and 1.
    let mut sim = promoted_through(3, &["web:2", "web:3"]);
    sim.set_image("web:1");
    let events = run_collecting(&mut sim, 30);
    assert!(fast_tracked(&events), "no RollbackWithinWindow event");
    let status = sim.status();
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);
    assert_eq!(status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(status.stable_rs, status.current_pod_hash);
    assert!(
        !events.iter().any(|e| e.reason == "RolloutPaused"),
        "a fast-tracked rollback paused: {events:?}"
    );
    assert_eq!(status.promote_full, None, "the full promotion is spent");
}

#[test]
fn a_rollback_beyond_the_window_walks_the_steps() {
    // Revisions 1, 2, 3 (stable); a window of 2 holds 3 and 2 only.
    let mut sim = promoted_through(2, &["web:2", "web:3"]);
    sim.set_image("web:1");
    let events = run_collecting(&mut sim, 20);
    assert!(!fast_tracked(&events));
    let status = sim.status();
    assert_eq!(status.current_step_index, Some(1), "{status:?}");
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 1), ("web:3".to_string(), 4)]
    );

    // The window of 2 does hold the revision just before the stable one.
    let mut sim = promoted_through(2, &["web:2", "web:3"]);
    sim.set_image("web:2");
    assert!(fast_tracked(&run_collecting(&mut sim, 30)));
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
}

#[test]
fn a_new_version_walks_the_steps_whatever_the_window() {
    let mut sim = promoted_through(10, &["web:2"]);
    sim.set_image("web:3");
    let events = run_collecting(&mut sim, 20);
    assert!(!fast_tracked(&events));
    assert_eq!(sim.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(
        sim.pods(),
        [("web:2".to_string(), 4), ("web:3".to_string(), 1)]
    );
}

#[test]
fn blue_green_rolls_back_inside_the_window_without_waiting_for_promotion() {
    let strategy = serde_json::json!({ "blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 0,
    } });
    let mut sim = Sim::new(rollout_with(3, strategy));
    sim.rollout.spec.rollback_window = Some(sluice_api::RollbackWindow { revisions: Some(2) });
    sim.run(20);
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(
        sim.status().phase,
        Some(RolloutPhase::Paused),
        "waits for promotion"
    );
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(30);
    assert_eq!(sim.pods(), [("web:2".to_string(), 3)]);

    sim.set_image("web:1");
    let events = run_collecting(&mut sim, 30);
    assert!(fast_tracked(&events));
    assert_eq!(sim.pods(), [("web:1".to_string(), 3)]);
    assert_eq!(sim.status().phase, Some(RolloutPhase::Healthy));
}
