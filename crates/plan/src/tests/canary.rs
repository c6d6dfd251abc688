//! The canary flows, stage by stage: first deploy, steps, promote, abort and retry, rollback,
//! pauses, invalid specs, deadlines, history, setCanaryScale.
use sluice_api::vocab::POD_TEMPLATE_HASH_LABEL;

use super::*;

#[test]
fn a_first_deploy_creates_one_full_replica_set_and_is_healthy_without_steps() {
    let mut sim = Sim::new(rollout(5, standard_steps()));
    let first = sim.reconcile();
    assert!(
        matches!(&first.actions[0], Action::CreateReplicaSet(rs) if rs.spec.as_ref().and_then(|s| s.replicas) == Some(5))
    );
    sim.run(10);
    let status = sim.status();
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);
    assert_eq!(
        status.stable_rs, status.current_pod_hash,
        "the first version is stable at once"
    );
    assert_eq!(
        status.current_step_index,
        Some(4),
        "no steps on a first deploy"
    );
    assert_eq!(status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(argocd_health(&sim.rollout), ("Healthy", String::new()));
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas
        ),
        (Some(5), Some(5), Some(5))
    );
    assert_eq!(status.observed_generation.as_deref(), Some("1"));
    assert_eq!(status.selector.as_deref(), Some("app=web"));
    let hash = status.stable_rs.clone().expect("a stable hash");
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(hash.as_str())
    );
    assert_eq!(
        sim.service_hash("web-canary").as_deref(),
        Some(hash.as_str())
    );
}

#[test]
fn a_canary_walks_its_steps_pauses_and_completes_when_promoted() {
    let mut sim = deployed(standard_steps(), 5);
    let stable = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");

    // setWeight 20 → 1 canary pod of 5, then the timed pause holds.
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 1)]
    );
    let status = sim.status();
    assert_eq!(status.current_step_index, Some(1));
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    assert_eq!(
        status.stable_rs.as_deref(),
        Some(stable.as_str()),
        "the stable does not change mid-rollout"
    );
    let canary = sim.hash_of("web:2");
    assert_eq!(
        sim.service_hash("web-canary").as_deref(),
        Some(canary.as_str()),
        "the canary Service serves the canary"
    );
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(stable.as_str())
    );
    assert_eq!(
        status
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map(|w| (w.canary.weight, w.stable.weight)),
        Some((20, 80))
    );

    // Not yet: 9 s into a 10 s pause.
    sim.advance(9);
    sim.run(5);
    assert_eq!(sim.status().current_step_index, Some(1));
    // After 10 s: setWeight 60 → 3 of 5, then the indefinite pause.
    sim.advance(1);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 3)]
    );
    assert_eq!(sim.status().current_step_index, Some(3));
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    // Time alone does not end an indefinite pause.
    sim.advance(3600);
    sim.run(5);
    assert_eq!(sim.status().current_step_index, Some(3));

    // Promote as Argo CD's resume action and the plugin do: clear the pause conditions.
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(30);
    let status = sim.status();
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
    assert_eq!(status.stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(status.current_step_index, Some(4));
    assert_eq!(argocd_health(&sim.rollout), ("Healthy", String::new()));
    assert_eq!(
        condition_reason(&sim, RolloutConditionType::Progressing).as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(canary.as_str())
    );
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(sim.status().current_step_index, Some(1));
    sim.patch_status(|s| s.promote_full = Some(true));
    sim.run(30);
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(
        sim.status().promote_full,
        None,
        "promoteFull is spent once the update completes"
    );
}

#[test]
fn a_step_index_raised_by_someone_else_is_where_the_rollout_continues() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    sim.patch_status(|s| {
        s.current_step_index = Some(2);
        s.pause_conditions.clear();
        s.controller_pause = None;
    });
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 3)],
        "setWeight 60 ran"
    );
    assert_eq!(sim.status().current_step_index, Some(3));
}

#[test]
fn abort_returns_everything_to_stable_and_retry_starts_over() {
    let mut sim = deployed(standard_steps(), 5);
    let stable = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(20);
    sim.patch_status(|s| s.abort = Some(true));
    sim.run(20);
    let status = sim.status();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5)],
        "the canary is scaled to zero, the stable back to full"
    );
    assert_eq!(status.phase, Some(RolloutPhase::Degraded));
    assert!(status.aborted_at.is_some());
    assert_eq!(
        condition_reason(&sim, RolloutConditionType::Progressing).as_deref(),
        Some("RolloutAborted")
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert_eq!(
        sim.service_hash("web-canary").as_deref(),
        Some(stable.as_str()),
        "no traffic to the aborted version"
    );
    // The aborted revision stays down while abort is set.
    sim.advance(600);
    sim.run(10);
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);

    // Retry: abort cleared (as `kubectl sluice retry` and Argo CD's retry action do).
    sim.patch_status(|s| s.abort = None);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 1)],
        "the steps start over at setWeight 20"
    );
    assert_eq!(sim.status().current_step_index, Some(1));
}

#[test]
fn changing_the_template_back_to_stable_rolls_back_at_once() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    sim.set_image("web:1");
    sim.run(20);
    let status = sim.status();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5)],
        "the canary disappears"
    );
    assert_eq!(status.current_step_index, Some(4), "steps are skipped");
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn spec_paused_holds_the_rollout_where_it_is() {
    let mut sim = deployed(standard_steps(), 5);
    sim.rollout.spec.paused = Some(true);
    sim.set_image("web:2");
    let plan = sim.run(10);
    assert!(plan.actions.is_empty());
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5)],
        "no canary while paused"
    );
    assert_eq!(sim.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    sim.rollout.spec.paused = Some(false);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 1)]
    );
}

#[test]
fn an_invalid_spec_is_reported_and_nothing_is_scaled() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    if let Some(c) = sim
        .rollout
        .spec
        .strategy
        .as_mut()
        .and_then(|s| s.canary.as_mut())
    {
        c.steps[0] = sluice_api::CanaryStep::SetWeight(150);
    }
    let plan = sim.reconcile();
    assert!(
        plan.actions.is_empty(),
        "nothing is created or scaled down: {:?}",
        plan.actions
    );
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);
    let (health, message) = argocd_health(&sim.rollout);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains("spec.strategy.canary.steps[0].setWeight"),
        "{message}"
    );
    assert!(plan.events.iter().any(|e| e.reason == "InvalidSpec"));
    // Reported once: the same problem does not raise a second event.
    assert!(
        sim.reconcile()
            .events
            .iter()
            .all(|e| e.reason != "InvalidSpec")
    );
}

#[test]
fn a_missing_service_is_an_error_condition_not_a_crash() {
    let mut sim = Sim::new(rollout(3, standard_steps()));
    sim.services.insert("web-canary".into(), None);
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty());
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert!(
        sim.status()
            .message
            .unwrap_or_default()
            .contains("\"web-canary\" not found")
    );
}

#[test]
fn an_update_held_by_a_missing_service_goes_on_once_the_service_is_back() {
    let mut sim = deployed(standard_steps(), 3);
    sim.set_image("web:2");
    let canary = sim.services.insert("web-canary".into(), None).flatten();
    sim.run(10);
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert_eq!(sim.pods(), [("web:1".to_string(), 3)]);
    // The generation was recorded while nothing moved: the old set is not taken for the new
    // version once the Service is back; the update starts.
    sim.services.insert("web-canary".into(), canary);
    sim.run(10);
    assert!(
        sim.pods()
            .iter()
            .any(|(image, n)| image == "web:2" && *n > 0),
        "{:?}",
        sim.pods()
    );
    assert_eq!(sim.status().current_step_index, Some(1));
}

#[test]
fn no_progress_past_the_deadline_degrades_and_can_abort() {
    let mut canary = standard_steps();
    canary["maxUnavailable"] = 1.into();
    let mut sim = deployed(canary, 4);
    sim.rollout.spec.progress_deadline_seconds = Some(60);
    sim.rollout.spec.progress_deadline_abort = Some(true);
    sim.broken_image = Some("web:2".into());
    sim.set_image("web:2");
    sim.run(10);
    assert_eq!(sim.status().phase, Some(RolloutPhase::Progressing));
    sim.advance(61);
    let plan = sim.reconcile();
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "ProgressDeadlineExceeded")
    );
    sim.run(10);
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert_eq!(
        sim.status().abort,
        Some(true),
        "progressDeadlineAbort aborts"
    );
    assert_eq!(sim.pods(), [("web:1".to_string(), 4)]);
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let mut sim = deployed(serde_json::json!({ "steps": [] }), 2);
    sim.rollout.spec.revision_history_limit = Some(1);
    for image in ["web:2", "web:3", "web:4"] {
        sim.set_image(image);
        sim.run(20);
    }
    assert_eq!(sim.pods(), [("web:4".to_string(), 2)]);
    assert_eq!(
        sim.sets.len(),
        2,
        "the current set and one old one are kept"
    );
}

#[test]
fn a_steady_rollout_writes_nothing() {
    let mut sim = deployed(standard_steps(), 3);
    let writes = sim.writes;
    for _ in 0..5 {
        sim.advance(30);
        let plan = sim.reconcile();
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, None, "no timer on a healthy rollout");
    }
    assert_eq!(sim.writes, writes, "no status patch when nothing changed");
}

#[test]
fn a_restarted_controller_resumes_the_same_pause_timer() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    let started = sim.status().pause_conditions[0].start_time.clone();
    // A new process reads the same status: the pause keeps its start time and ends on schedule.
    sim.advance(4);
    let plan = sim.reconcile();
    assert_eq!(sim.status().pause_conditions[0].start_time, started);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(6)));
}

#[test]
fn a_rollout_without_steps_is_a_rolling_update_within_surge_and_unavailability() {
    let mut sim = deployed(serde_json::json!({ "maxSurge": 1, "maxUnavailable": 0 }), 4);
    sim.surge_limit = Some(5);
    sim.set_image("web:2");
    for _ in 0..40 {
        sim.reconcile();
        let total: i32 = sim.pods().iter().map(|(_, n)| n).sum();
        assert!(
            total <= 5,
            "never more than replicas + maxSurge pods: {:?}",
            sim.pods()
        );
    }
    assert_eq!(sim.pods(), [("web:2".to_string(), 4)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn set_canary_scale_sizes_the_canary_and_the_weight_sizes_the_stable_set() {
    let steps = serde_json::json!({
        "steps": [
            { "setCanaryScale": { "replicas": 3 } },
            { "setWeight": 10 },
            { "pause": {} },
            { "setCanaryScale": { "matchTrafficWeight": true } },
            { "setWeight": 50 },
            { "pause": {} },
        ]
    });
    let mut sim = deployed(steps, 10);
    sim.set_image("web:2");
    sim.run(30);
    assert_eq!(sim.status().current_step_index, Some(2));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 9), ("web:2".to_string(), 3)],
        "3 canary pods by setCanaryScale; the stable set leaves room for 10%"
    );
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(30);
    assert_eq!(sim.status().current_step_index, Some(5));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5), ("web:2".to_string(), 5)],
        "matchTrafficWeight: the canary follows the weight again"
    );
}

#[test]
fn a_step_completes_only_once_the_scaled_down_pods_are_gone() {
    let mut sim = deployed(standard_steps(), 5);
    sim.slow_scale_down = true;
    sim.set_image("web:2");
    for _ in 0..40 {
        let plan = sim.reconcile();
        if !plan.status.pause_conditions.is_empty() {
            let lingering: Vec<_> = sim
                .sets
                .iter()
                .filter(|s| {
                    s.status.as_ref().map_or(0, |st| st.replicas)
                        > s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(0)
                })
                .map(ResourceExt::name_any)
                .collect();
            assert!(
                lingering.is_empty(),
                "paused while {lingering:?} still shrink"
            );
            let weights = plan.status.canary.and_then(|c| c.weights).expect("weights");
            assert_eq!((weights.canary.weight, weights.stable.weight), (20, 80));
            return;
        }
    }
    panic!("the first pause was never reached");
}

#[test]
fn conditions_are_always_present_for_argo_cd() {
    let mut sim = Sim::new(rollout(2, standard_steps()));
    sim.reconcile();
    let status = sim.status();
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == RolloutConditionType::Available)
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == RolloutConditionType::Progressing
                && c.status == ConditionStatus::True)
    );
}

#[test]
fn a_rollout_that_argo_rollouts_managed_is_adopted_without_a_new_replica_set() {
    // What Argo Rollouts leaves: its own hash on the ReplicaSet and in the status, for the
    // generation it last saw.
    let mut sim = deployed(standard_steps(), 3);
    let argo = "7d4b9c8f6".to_string();
    for rs in &mut sim.sets {
        rs.labels_mut()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), argo.clone());
        rs.metadata.name = Some(format!("web-{argo}"));
    }
    let status = sim.rollout.status.as_mut().expect("a status");
    status.stable_rs = Some(argo.clone());
    status.current_pod_hash = Some(argo.clone());

    let first = sim.reconcile();
    assert!(
        !first
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet(_))),
        "the same pods are not rolled out again: {:?}",
        first.actions
    );
    assert!(
        first
            .actions
            .iter()
            .any(|a| matches!(a, Action::AnnotateReplicaSet { .. }))
    );
    sim.run(10);
    assert_eq!(sim.status().stable_rs.as_deref(), Some(argo.as_str()));
    assert_eq!(sim.sets.len(), 1);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");

    // A spec change that keeps the template (generation moves on) still finds the adopted set.
    sim.rollout.spec.paused = Some(false);
    sim.rollout.metadata.generation = Some(sim.rollout.metadata.generation.unwrap_or(1) + 1);
    sim.run(10);
    assert_eq!(
        sim.sets.len(),
        1,
        "no new ReplicaSet for an unchanged template"
    );

    // A new template gets Sluice's own hash and a canary as usual.
    sim.set_image("web:2");
    sim.run(10);
    assert_eq!(sim.status().current_step_index, Some(1));
    assert_ne!(sim.status().current_pod_hash, Some(argo));
}

/// The events notifications are sent on (Argo's `on-rollout-*` triggers) are published once each
/// per update, in order, even when the controller dies between two writes of a reconcile: the
/// one that died published nothing, and the next finds the work undone and says it then.
#[test]
fn an_update_publishes_each_notification_event_once_even_across_crashes() {
    for crash in [None, Some(0), Some(1)] {
        let mut sim = deployed(standard_steps(), 5);
        assert_eq!(
            sim.published
                .iter()
                .filter(|(r, _)| *r == "RolloutUpdated")
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>(),
            ["Rollout updated to revision 1"],
            "the first deploy is revision 1"
        );
        sim.published.clear();
        sim.set_image("web:2");
        sim.crash_after = crash;
        sim.run(20);
        sim.advance(10);
        sim.run(20);
        sim.patch_status(|s| s.pause_conditions.clear());
        sim.run(30);
        assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
        let said: Vec<&str> = sim
            .published
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| {
                [
                    "RolloutUpdated",
                    "RolloutStepCompleted",
                    "RolloutPaused",
                    "RolloutCompleted",
                ]
                .contains(r)
            })
            .collect();
        assert_eq!(
            said,
            [
                "RolloutUpdated",
                "RolloutStepCompleted",
                "RolloutPaused",
                "RolloutStepCompleted",
                "RolloutStepCompleted",
                "RolloutPaused",
                "RolloutStepCompleted",
                "RolloutCompleted"
            ],
            "crash after {crash:?} writes: {:#?}",
            sim.published
        );
        let mut messages: Vec<&(&str, String)> = sim.published.iter().collect();
        let all = messages.len();
        messages.sort();
        messages.dedup();
        assert_eq!(
            messages.len(),
            all,
            "an event said twice: {:#?}",
            sim.published
        );
    }
}

#[test]
fn a_replica_progress_threshold_goes_on_with_a_share_of_the_canary_available() {
    let steps = |threshold: Option<serde_json::Value>| {
        let mut canary = serde_json::json!({
            "maxSurge": "25%", "maxUnavailable": 1,
            "steps": [ { "setWeight": 50 }, { "pause": { "duration": "10s" } } ]
        });
        if let Some(t) = threshold {
            canary["replicaProgressThreshold"] = t;
        }
        canary
    };
    // One pod of the new version never becomes available.
    let walk = |threshold| {
        let mut sim = deployed(steps(threshold), 10);
        sim.lame_pods = Some(("web:2".into(), 1));
        sim.set_image("web:2");
        sim.run(30);
        sim
    };

    // Without a threshold the first step waits for all five canary pods, forever.
    let waiting = walk(None);
    assert_eq!(waiting.status().current_step_index, Some(0));

    // 80 % of five pods is four: the step is done, the pause runs, and the canary completes
    // with 9 of its 10 pods available (80 % of 10 is 8).
    let mut sim = walk(Some(serde_json::json!({ "type": "Percent", "value": 80 })));
    assert_eq!(sim.status().current_step_index, Some(1));
    sim.advance(11);
    sim.run(30);
    let status = sim.status();
    assert_eq!(
        status.stable_rs,
        status.current_pod_hash,
        "{:?}",
        sim.pods()
    );
    // 9 available pods are all maxUnavailable (1) allows: the old version is gone.
    assert_eq!(sim.pods(), [("web:2".to_string(), 10)]);

    // In pods: four of the first step's five are enough, but not five.
    let pods = |value: i32| walk(Some(serde_json::json!({ "type": "Pods", "value": value })));
    assert_eq!(pods(4).status().current_step_index, Some(1));
    assert_eq!(pods(5).status().current_step_index, Some(0));
}
