//! Invariants over random sizes, limits and steps.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over random sizes, limits and steps: pods never exceed replicas + maxSurge, available pods
    /// never drop below replicas − maxUnavailable, weights stay within 0..=100, and the step
    /// index never moves backwards within a revision; the rollout ends Healthy.
    #[test]
    fn invariants_hold_along_any_canary(
        replicas in 1i32..12,
        surge in 0i32..4,
        unavailable in 0i32..4,
        weights in proptest::collection::vec(0i32..=100, 0..5),
    ) {
        prop_assume!(surge + unavailable > 0);
        let steps: Vec<serde_json::Value> = weights.iter().flat_map(|w| [serde_json::json!({ "setWeight": w }), serde_json::json!({ "pause": { "duration": 5 } })]).collect();
        let mut sim = deployed(serde_json::json!({ "maxSurge": surge, "maxUnavailable": unavailable, "steps": steps }), replicas);
        sim.surge_limit = Some(replicas + surge);
        sim.set_image("web:2");
        let mut last_index = 0;
        for _ in 0..200 {
            let plan = sim.reconcile();
            let total: i32 = sim.pods().iter().map(|(_, n)| n).sum();
            prop_assert!(total <= replicas + surge, "{total} pods > {replicas} + {surge}");
            let available: i32 = sim.sets.iter().filter_map(|s| s.status.as_ref()?.available_replicas).sum();
            prop_assert!(available >= replicas - unavailable, "{available} available < {replicas} - {unavailable}");
            if let Some(w) = plan.status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
                prop_assert!((0..=100).contains(&w.canary.weight) && w.canary.weight + w.stable.weight == 100);
            }
            let index = plan.status.current_step_index.unwrap_or(0);
            prop_assert!(index >= last_index, "the step index went back from {last_index} to {index}");
            last_index = index;
            sim.advance(1);
        }
        prop_assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
        prop_assert_eq!(sim.pods(), vec![("web:2".to_string(), replicas)]);
    }

    /// With a random `replicaProgressThreshold` and canary pods that never become available
    /// (no more than maxUnavailable): steps go on with a share of the canary available, yet the
    /// pods never exceed replicas + maxSurge, available pods never drop below
    /// replicas − maxUnavailable, and the step index never moves backwards; without lame pods
    /// the rollout ends Healthy.
    #[test]
    fn a_progress_threshold_never_costs_availability(
        replicas in 1i32..12,
        surge in 0i32..4,
        unavailable in 0i32..4,
        weights in proptest::collection::vec(0i32..=100, 0..5),
        percent in any::<bool>(),
        value in 1i32..=100,
        lame in 0i32..4,
    ) {
        prop_assume!(surge + unavailable > 0);
        let lame = lame.min(unavailable);
        let threshold = if percent {
            serde_json::json!({ "type": "Percent", "value": value })
        } else {
            serde_json::json!({ "type": "Pods", "value": 1 + value % replicas })
        };
        let steps: Vec<serde_json::Value> = weights.iter().flat_map(|w| [serde_json::json!({ "setWeight": w }), serde_json::json!({ "pause": { "duration": 5 } })]).collect();
        let mut sim = deployed(serde_json::json!({ "maxSurge": surge, "maxUnavailable": unavailable, "replicaProgressThreshold": threshold, "steps": steps }), replicas);
        sim.surge_limit = Some(replicas + surge);
        sim.lame_pods = Some(("web:2".into(), lame));
        sim.set_image("web:2");
        let mut last_index = 0;
        for _ in 0..200 {
            let plan = sim.reconcile();
            let total: i32 = sim.pods().iter().map(|(_, n)| n).sum();
            prop_assert!(total <= replicas + surge, "{total} pods > {replicas} + {surge}");
            let available: i32 = sim.sets.iter().filter_map(|s| s.status.as_ref()?.available_replicas).sum();
            prop_assert!(available >= replicas - unavailable, "{available} available < {replicas} - {unavailable}");
            let index = plan.status.current_step_index.unwrap_or(0);
            prop_assert!(index >= last_index, "the step index went back from {last_index} to {index}");
            last_index = index;
            sim.advance(1);
        }
        if lame == 0 {
            prop_assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
            prop_assert_eq!(sim.pods(), vec![("web:2".to_string(), replicas)]);
        }
    }

    /// With an experiment step among random steps: the same pod limits hold while the
    /// Experiment runs, it is created once (the simulator refuses a second), and the rollout ends
    /// Healthy on the new version when it succeeds, or back on the stable one, aborted and
    /// with no Experiment left running, when it fails.
    #[test]
    fn invariants_hold_along_a_canary_with_an_experiment(
        replicas in 1i32..8,
        surge in 0i32..3,
        unavailable in 0i32..3,
        weights in proptest::collection::vec(0i32..=100, 1..4),
        at in 0usize..4,
        rounds in 0u32..6,
        fails in any::<bool>(),
    ) {
        prop_assume!(surge + unavailable > 0);
        let mut steps: Vec<serde_json::Value> = weights.iter().flat_map(|w| [serde_json::json!({ "setWeight": w }), serde_json::json!({ "pause": { "duration": 5 } })]).collect();
        let experiment = serde_json::json!({ "experiment": { "duration": "1m", "templates": [
            { "name": "baseline", "specRef": "stable" }, { "name": "canary", "specRef": "canary" } ] } });
        steps.insert(at.min(steps.len()), experiment);
        let mut sim = deployed(serde_json::json!({ "maxSurge": surge, "maxUnavailable": unavailable, "steps": steps }), replicas);
        sim.surge_limit = Some(replicas + surge);
        sim.experiment_rounds = rounds;
        sim.experiment_outcome = Some(if fails { sluice_api::AnalysisPhase::Failed } else { sluice_api::AnalysisPhase::Successful });
        sim.set_image("web:2");
        let mut last_index = 0;
        for _ in 0..200 {
            let plan = sim.reconcile();
            let total: i32 = sim.pods().iter().map(|(_, n)| n).sum();
            prop_assert!(total <= replicas + surge, "{total} pods > {replicas} + {surge}");
            let available: i32 = sim.sets.iter().filter_map(|s| s.status.as_ref()?.available_replicas).sum();
            prop_assert!(available >= replicas - unavailable, "{available} available < {replicas} - {unavailable}");
            let index = plan.status.current_step_index.unwrap_or(0);
            prop_assert!(fails || index >= last_index, "the step index went back from {last_index} to {index}");
            last_index = index;
            sim.advance(1);
        }
        prop_assert_eq!(sim.experiments.len(), 1);
        prop_assert!(sim.experiments.iter().all(|e| e.is_completed()));
        if fails {
            prop_assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
            prop_assert_eq!(sim.pods(), vec![("web:1".to_string(), replicas)]);
        } else {
            prop_assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
            prop_assert_eq!(sim.pods(), vec![("web:2".to_string(), replicas)]);
        }
    }
}
