//! What users of Argo Rollouts wait on and do, seen through the status: the `Completed`,
//! `Healthy` and `Paused` conditions `kubectl wait --for=condition=…` reads, scaling a paused
//! canary, and changing the strategy under a deployed rollout.

use super::*;

/// The status of a condition, `None` when the status does not carry it.
fn condition(sim: &Sim, type_: RolloutConditionType) -> Option<ConditionStatus> {
    sim.status()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status)
}

/// Replaces the strategy (a new generation) and creates the Services it names.
fn change_strategy(sim: &mut Sim, strategy: serde_json::Value, services: [&str; 2]) {
    for name in services {
        sim.services.insert(
            name.into(),
            Some(ServiceView {
                selector: BTreeMap::from([("app".into(), "web".into())]),
                managed_by: None,
            }),
        );
    }
    sim.rollout.spec.strategy = Some(serde_json::from_value(strategy).expect("a strategy"));
    sim.rollout.metadata.generation = Some(sim.rollout.metadata.generation.unwrap_or(1) + 1);
}

fn set_replicas(sim: &mut Sim, replicas: i32) {
    sim.rollout.spec.replicas = Some(replicas);
    sim.rollout.metadata.generation = Some(sim.rollout.metadata.generation.unwrap_or(1) + 1);
}

#[test]
fn waiting_for_completed_never_returns_on_the_previous_revision_and_paused_follows_each_pause() {
    let mut sim = deployed(standard_steps(), 5);
    assert_eq!(
        condition(&sim, RolloutConditionType::Completed),
        Some(ConditionStatus::True)
    );
    assert_eq!(
        condition(&sim, RolloutConditionType::Healthy),
        Some(ConditionStatus::True)
    );

    // The status write that says the new generation was seen also takes Completed and Healthy
    // back: `kubectl wait` started after `set image` cannot see the old revision's True.
    sim.set_image("web:2");
    sim.reconcile();
    let status = sim.status();
    assert_eq!(status.observed_generation.as_deref(), Some("2"));
    assert_eq!(
        condition(&sim, RolloutConditionType::Completed),
        Some(ConditionStatus::False)
    );
    assert_eq!(
        condition(&sim, RolloutConditionType::Healthy),
        Some(ConditionStatus::False)
    );

    // Each pause sets Paused; leaving it says resumed, as Argo's does.
    sim.run(20);
    assert_eq!(sim.status().current_step_index, Some(1));
    assert_eq!(
        condition(&sim, RolloutConditionType::Paused),
        Some(ConditionStatus::True)
    );
    sim.advance(10);
    sim.run(20);
    assert_eq!(sim.status().current_step_index, Some(3));
    assert_eq!(
        condition(&sim, RolloutConditionType::Paused),
        Some(ConditionStatus::True)
    );
    assert_eq!(
        condition(&sim, RolloutConditionType::Completed),
        Some(ConditionStatus::False),
        "a paused update is not complete"
    );
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(30);
    assert_eq!(
        condition(&sim, RolloutConditionType::Paused),
        Some(ConditionStatus::False)
    );
    assert_eq!(
        condition(&sim, RolloutConditionType::Completed),
        Some(ConditionStatus::True)
    );
    assert_eq!(
        condition(&sim, RolloutConditionType::Healthy),
        Some(ConditionStatus::True)
    );
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
}

#[test]
fn scaling_a_paused_canary_keeps_its_step_and_its_weight() {
    let mut sim = deployed(standard_steps(), 10);
    sim.set_image("web:2");
    sim.advance(10);
    sim.run(20);
    sim.advance(10);
    sim.run(20);
    assert_eq!(sim.status().current_step_index, Some(3));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 6)]
    );

    // Scaled up while paused at 60 %: both sets grow to the same ratio, the pause holds.
    set_replicas(&mut sim, 20);
    sim.run(20);
    let status = sim.status();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 8), ("web:2".to_string(), 12)]
    );
    assert_eq!(status.current_step_index, Some(3));
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(
        (status.replicas, status.available_replicas),
        (Some(20), Some(20)),
        "the counts the status reports are the pods the sets hold"
    );

    // And down, the extra pods lingering a round as a real ReplicaSet's do: the same step and
    // ratio, and the status counts what is left.
    set_replicas(&mut sim, 5);
    sim.slow_scale_down = true;
    sim.run(20);
    let status = sim.status();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 3)]
    );
    assert_eq!(status.current_step_index, Some(3));
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(status.replicas, Some(5));
}

#[test]
fn blue_green_to_canary_keeps_the_pods_and_the_next_update_walks_the_steps() {
    let blue_green = serde_json::json!({
        "blueGreen": { "activeService": "web-active", "previewService": "web-preview" }
    });
    let mut sim = Sim::new(rollout_with(4, blue_green));
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    let stable = sim.status().stable_rs.expect("a stable set");

    // The strategy alone changes: the running pods are the stable set, nothing rolls again.
    change_strategy(
        &mut sim,
        serde_json::json!({ "canary": standard_steps() }),
        ["web-canary", "web-stable"],
    );
    sim.run(20);
    let status = sim.status();
    assert_eq!(sim.pods(), [("web:1".to_string(), 4)]);
    assert_eq!(sim.sets.len(), 1, "no new ReplicaSet for a strategy change");
    assert_eq!(status.stable_rs.as_deref(), Some(stable.as_str()));
    assert_eq!(status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(stable.as_str())
    );

    // The next update is a canary: one pod of four at 20 %, the rest still stable.
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 1)]
    );
    assert_eq!(sim.status().current_step_index, Some(1));
    assert_eq!(
        sim.service_hash("web-canary").as_deref(),
        Some(sim.hash_of("web:2").as_str())
    );
}

#[test]
fn canary_to_blue_green_keeps_the_pods_and_the_next_update_previews_first() {
    let mut sim = deployed(standard_steps(), 4);
    let stable = sim.status().stable_rs.expect("a stable set");
    change_strategy(
        &mut sim,
        serde_json::json!({
            "blueGreen": {
                "activeService": "web-active", "previewService": "web-preview",
                "autoPromotionEnabled": false
            }
        }),
        ["web-active", "web-preview"],
    );
    sim.run(20);
    assert_eq!(sim.pods(), [("web:1".to_string(), 4)]);
    assert_eq!(sim.status().stable_rs.as_deref(), Some(stable.as_str()));
    assert_eq!(
        sim.service_hash("web-active").as_deref(),
        Some(stable.as_str()),
        "the active Service is pointed at the running pods"
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");

    sim.set_image("web:2");
    sim.run(20);
    let new = sim.hash_of("web:2");
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 4)]
    );
    assert_eq!(
        sim.service_hash("web-active").as_deref(),
        Some(stable.as_str())
    );
    assert_eq!(
        sim.service_hash("web-preview").as_deref(),
        Some(new.as_str())
    );
    assert_eq!(sim.status().phase, Some(RolloutPhase::Paused));
    assert!(
        sim.sets
            .iter()
            .all(|rs| rs.labels().contains_key(POD_TEMPLATE_HASH_LABEL))
    );
}
