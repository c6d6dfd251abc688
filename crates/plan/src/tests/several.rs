//! Steps of several actions, as Argo's own examples write them: every action of a step applies,
//! its settings before its waits, and the step (Argo's index in the status) is reached once all of
//! them are done.
use sluice_api::{AnalysisPhase, PauseReason};

use super::*;
use crate::analysis::RunKind;

fn several(steps: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "canaryService": "web-canary", "stableService": "web-stable",
        "maxSurge": "25%", "maxUnavailable": 0, "steps": steps,
    })
}

#[test]
fn a_pause_written_before_its_weight_waits_at_that_weight() {
    let mut sim = deployed(
        several(serde_json::json!([
            { "pause": {}, "setWeight": 40 },
            { "setWeight": 80 },
        ])),
        5,
    );
    sim.set_image("web:2");
    let mut events = Vec::new();
    for _ in 0..20 {
        events.extend(sim.reconcile().events);
    }
    let status = sim.status();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 2)],
        "the step's weight applies while it pauses"
    );
    assert_eq!(
        status.current_step_index,
        Some(0),
        "Argo's index: the written step"
    );
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert!(
        !events.iter().any(|e| e.reason == "RolloutStepCompleted"),
        "the step completed before its pause was over: {events:?}"
    );

    sim.patch_status(|s| s.pause_conditions.clear());
    let mut events = Vec::new();
    for _ in 0..20 {
        events.extend(sim.reconcile().events);
    }
    let completed: Vec<_> = events
        .iter()
        .filter(|e| e.reason == "RolloutStepCompleted")
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(
        completed,
        [
            "Rollout step 1/2 completed (setWeight, pause)",
            "Rollout step 2/2 completed (setWeight)"
        ]
    );
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
    assert_eq!(sim.status().phase, Some(RolloutPhase::Healthy));
}

#[test]
fn a_pause_that_began_holds_when_its_step_s_pods_waver() {
    let mut sim = deployed(
        several(serde_json::json!([{ "setWeight": 40, "pause": { "duration": "60s" } }])),
        5,
    );
    sim.set_image("web:2");
    sim.run(20);
    let started = sim.status().pause_conditions[0].start_time.clone();
    // The canary's pods stop being available mid-pause: the pause goes on, its timer unchanged.
    sim.broken_image = Some("web:2".into());
    sim.advance(30);
    sim.run(5);
    let status = sim.status();
    assert_eq!(status.pause_conditions.len(), 1, "{status:?}");
    assert_eq!(
        status.pause_conditions[0].reason,
        PauseReason::CanaryPauseStep
    );
    assert_eq!(status.pause_conditions[0].start_time, started);
    assert_eq!(status.current_step_index, Some(0));
}

#[test]
fn an_analysis_beside_a_weight_starts_at_that_weight_and_holds_the_step() {
    let mut sim = deployed(
        several(serde_json::json!([
            { "analysis": { "templates": [{ "templateName": "success-rate" }] }, "setWeight": 40 },
            { "setWeight": 80 },
        ])),
        5,
    );
    sim.set_image("web:2");
    sim.run(20);
    let run = sim
        .runs
        .iter()
        .find(|r| r.kind == Some(RunKind::Step(0)))
        .expect("the step's run, named by the written step")
        .name
        .clone();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 2)]
    );
    assert_eq!(sim.status().current_step_index, Some(0));
    for r in sim.runs.iter_mut().filter(|r| r.name == run) {
        r.phase = AnalysisPhase::Running;
    }
    sim.run(10);
    assert_eq!(sim.status().current_step_index, Some(0), "held by its run");

    for r in sim.runs.iter_mut().filter(|r| r.name == run) {
        r.phase = AnalysisPhase::Successful;
    }
    sim.run(30);
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
    assert_eq!(sim.status().phase, Some(RolloutPhase::Healthy));
}
