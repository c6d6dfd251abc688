//! `spec.restartAt`: evictions a few at a time, only while every pod is ready.

use super::*;

#[test]
fn restart_at_evicts_old_pods_a_few_at_a_time_and_records_the_restart() {
    let mut sim = deployed(serde_json::json!({ "maxSurge": 1, "maxUnavailable": 1 }), 4);
    let hash = sim.status().stable_rs.expect("a stable set");
    let before = sim.now;
    sim.pods_listed = Some(
        (0..4)
            .map(|i| crate::restart::PodView {
                name: format!("web-{i}"),
                hash: hash.clone(),
                created: before,
                ready: true,
                deleting: false,
            })
            .collect(),
    );
    sim.advance(60);
    let at = sim.now;
    sim.rollout.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
    let mut evictions = 0;
    for round in 0..40 {
        let plan = sim.reconcile();
        let evicting = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::EvictPod { .. }))
            .count();
        assert!(
            evicting <= 1,
            "round {round}: {evicting} evictions at once with maxUnavailable 1"
        );
        evictions += evicting;
        // The ReplicaSet replaces each evicted pod with a new, ready one.
        let pods = sim.pods_listed.as_mut().expect("pods");
        for pod in pods.iter_mut().filter(|p| p.deleting) {
            *pod = crate::restart::PodView {
                name: format!("{}-new", pod.name),
                hash: hash.clone(),
                created: at,
                ready: true,
                deleting: false,
            };
        }
        if sim.status().restarted_at.is_some() {
            break;
        }
    }
    assert_eq!(evictions, 4, "every old pod was restarted once");
    assert_eq!(sim.status().restarted_at.map(|t| t.0), Some(at));
    assert!(
        !crate::restart::pending(&sim.rollout, sim.now),
        "done: no more listing of pods"
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn a_restart_waits_while_a_pod_is_not_ready() {
    let mut sim = deployed(serde_json::json!({ "maxSurge": 1, "maxUnavailable": 2 }), 3);
    let hash = sim.status().stable_rs.expect("a stable set");
    let before = sim.now;
    sim.pods_listed = Some(
        (0..3)
            .map(|i| crate::restart::PodView {
                name: format!("web-{i}"),
                hash: hash.clone(),
                created: before,
                ready: i != 0,
                deleting: false,
            })
            .collect(),
    );
    sim.advance(10);
    sim.rollout.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        sim.now,
    ));
    let plan = sim.reconcile();
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::EvictPod { .. })),
        "no eviction while a pod is not ready: {:?}",
        plan.actions
    );
    assert!(plan.requeue_after.is_some());
}
