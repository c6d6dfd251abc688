//! `workloadRef`: a Rollout over an existing Deployment takes the Deployment's template, rolls
//! out changes to it by its strategy, and scales the Deployment down as its policy says, never
//! leaving fewer serving pods than desired.

use sluice_api::ScaleDownPolicy;

use super::*;
use crate::workload::{Workload, WorkloadView};

/// A canary Rollout of 4 pods over Deployment `web`, with no template or selector of its own.
fn over_deployment(policy: Option<ScaleDownPolicy>) -> Sim {
    let mut rollout = rollout(4, standard_steps());
    rollout.spec.template = None;
    rollout.spec.selector = None;
    rollout.spec.workload_ref = Some(sluice_api::ObjectRef {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        name: Some("web".into()),
        scale_down: policy,
    });
    let mut sim = Sim::new(rollout);
    sim.workload = Some(Workload::Found(Box::new(deployment("web:1", 4, 1))));
    sim
}

fn deployment(image: &str, replicas: i32, generation: i64) -> WorkloadView {
    let template = rollout(1, standard_steps())
        .spec
        .template
        .map(|mut t| {
            t.spec.as_mut().expect("a pod spec").containers[0].image = Some(image.into());
            t
        })
        .expect("a template");
    WorkloadView {
        name: "web".into(),
        template,
        selector: Some(
            serde_json::from_value(serde_json::json!({ "matchLabels": { "app": "web" } }))
                .expect("a selector"),
        ),
        replicas,
        generation: Some(generation),
    }
}

fn deployment_replicas(sim: &Sim) -> i32 {
    match &sim.workload {
        Some(Workload::Found(view)) => view.replicas,
        other => panic!("no Deployment: {other:?}"),
    }
}

/// Reconciles until settled, checking after every reconcile that the Deployment's pods and the
/// Rollout's available ones together are never fewer than desired.
fn run_serving(sim: &mut Sim, rounds: usize) {
    for _ in 0..rounds {
        let plan = sim.reconcile();
        let available = sim.status().available_replicas.unwrap_or(0);
        assert!(
            deployment_replicas(sim) + available >= 4,
            "{} Deployment pods + {available} available Rollout pods < 4 after {:?}",
            deployment_replicas(sim),
            plan.actions
        );
    }
}

#[test]
fn progressively_hands_the_pods_over_and_rolls_a_deployment_change_out_by_the_steps() {
    let mut sim = over_deployment(Some(ScaleDownPolicy::Progressively));
    run_serving(&mut sim, 20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4)],
        "the Deployment's template"
    );
    assert_eq!(deployment_replicas(&sim), 0, "handed over");
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(
        sim.status().workload_observed_generation.as_deref(),
        Some("1")
    );
    assert!(
        sim.published
            .iter()
            .any(|(r, m)| *r == "ScalingDeployment" && m.contains("Deployment web from 4 to"))
    );

    // The Deployment's template changes: a new revision, canaried by the Rollout's steps.
    sim.workload = Some(Workload::Found(Box::new(deployment("web:2", 0, 2))));
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 1)],
        "setWeight 20 of 4"
    );
    assert_eq!(sim.status().current_step_index, Some(1));
    assert_eq!(
        sim.status().workload_observed_generation.as_deref(),
        Some("2")
    );
    sim.advance(10);
    sim.run(20);
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(30);
    assert_eq!(sim.pods(), [("web:2".to_string(), 4)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(
        deployment_replicas(&sim),
        0,
        "never scaled back up after a success"
    );
}

#[test]
fn onsuccess_waits_for_healthy_and_never_leaves_the_deployment_alone() {
    let mut sim = over_deployment(Some(ScaleDownPolicy::OnSuccess));
    sim.reconcile();
    assert_eq!(
        deployment_replicas(&sim),
        4,
        "not before the Rollout is Healthy"
    );
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(deployment_replicas(&sim), 0);

    let mut sim = over_deployment(None);
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(deployment_replicas(&sim), 4, "never is the default");
}

#[test]
fn a_broken_first_version_keeps_the_deployment_serving() {
    let mut sim = over_deployment(Some(ScaleDownPolicy::Progressively));
    sim.broken_image = Some("web:1".into());
    run_serving(&mut sim, 20);
    assert_eq!(deployment_replicas(&sim), 4, "no Rollout pod is available");
}

#[test]
fn a_missing_or_unsupported_workload_is_invalid_and_nothing_is_scaled() {
    let mut sim = over_deployment(Some(ScaleDownPolicy::Progressively));
    sim.workload = Some(Workload::Missing);
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    let message = condition_message(&sim, RolloutConditionType::InvalidSpec);
    assert!(
        message.contains("spec.workloadRef.name")
            && message.contains("Deployment \"web\" not found"),
        "{message}"
    );
    // It appears: the rollout goes on.
    sim.workload = Some(Workload::Found(Box::new(deployment("web:1", 4, 1))));
    run_serving(&mut sim, 20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");

    let mut sim = over_deployment(None);
    if let Some(reference) = sim.rollout.spec.workload_ref.as_mut() {
        reference.kind = Some("StatefulSet".into());
    }
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty());
    assert!(
        condition_message(&sim, RolloutConditionType::InvalidSpec)
            .contains("only apps/v1 Deployment")
    );
}

fn condition_message(sim: &Sim, type_: RolloutConditionType) -> String {
    sim.status()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}
