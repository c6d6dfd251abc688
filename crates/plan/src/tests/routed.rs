//! A canary behind a traffic router: the weight decides the share of requests, the pods serve it,
//! and no request is sent where no pod can answer (the simulator's `check_traffic` asserts that
//! on every reconcile).

use proptest::prelude::*;
use sluice_api::vocab::SCALE_DOWN_DEADLINE_ANNOTATION;

use super::*;

/// A Gateway API canary of 10 pods: 10 %, a pause, 50 %, a pause, then done.
fn routed_steps(extra: serde_json::Value) -> serde_json::Value {
    let mut canary = serde_json::json!({
        "canaryService": "web-canary", "stableService": "web-stable",
        "trafficRouting": { "plugins": { "argoproj-labs/gatewayAPI": { "httpRoute": "web" } } },
        "scaleDownDelaySeconds": 30,
        "steps": [ { "setWeight": 10 }, { "pause": {} }, { "setWeight": 50 }, { "pause": { "duration": "10s" } } ]
    });
    if let (Some(c), Some(e)) = (canary.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    canary
}

fn weight(sim: &Sim) -> i32 {
    sim.router.as_ref().map_or(0, |d| d.canary_weight)
}

fn reported(sim: &Sim) -> Option<(i32, i32)> {
    let w = sim.status().canary?.weights?;
    Some((w.canary.weight, w.stable.weight))
}

#[test]
fn a_routed_canary_keeps_the_stable_set_full_and_moves_the_weight_once_its_pods_serve() {
    let mut sim = deployed(routed_steps(serde_json::json!({})), 10);
    sim.set_image("web:2");
    let first = sim.reconcile();
    assert_eq!(
        first.traffic.as_ref().map(|d| d.canary_weight),
        Some(0),
        "no canary pod is available yet: no request for it"
    );
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 10), ("web:2".to_string(), 1)],
        "10 % needs one canary pod; the stable set stays full"
    );
    assert_eq!(weight(&sim), 10);
    assert_eq!(
        reported(&sim),
        Some((10, 90)),
        "the status reports what the router carries"
    );
    assert_eq!(sim.status().current_step_index, Some(1));
    assert_eq!(sim.status().phase, Some(RolloutPhase::Paused));

    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 10), ("web:2".to_string(), 5)]
    );
    assert_eq!(weight(&sim), 50);
    assert_eq!(sim.status().current_step_index, Some(3));
}

#[test]
fn completion_switches_the_stable_service_then_the_weight_and_scales_the_old_set_down_after_its_delay()
 {
    let mut sim = deployed(routed_steps(serde_json::json!({})), 4);
    let old = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(20);
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(20);
    sim.advance(11);
    sim.run(20);
    let new = sim.hash_of("web:2");
    assert_eq!(
        sim.status().stable_rs.as_deref(),
        Some(new.as_str()),
        "completed"
    );
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(new.as_str())
    );
    assert_eq!(
        weight(&sim),
        0,
        "all traffic to the stable Service, now the new version"
    );
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 4)],
        "the old version waits out scaleDownDelaySeconds"
    );
    let old_set = sim
        .sets
        .iter()
        .find(|s| s.labels().get(POD_TEMPLATE_HASH_LABEL) == Some(&old))
        .expect("the old set");
    assert!(
        old_set
            .annotations()
            .contains_key(SCALE_DOWN_DEADLINE_ANNOTATION)
    );
    sim.advance(31);
    sim.run(20);
    assert_eq!(sim.pods(), [("web:2".to_string(), 4)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn abort_puts_the_whole_weight_on_stable_before_the_canary_loses_a_pod() {
    let mut sim = deployed(
        routed_steps(serde_json::json!({ "abortScaleDownDelaySeconds": 5 })),
        10,
    );
    sim.set_image("web:2");
    sim.run(20);
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(20);
    assert_eq!(weight(&sim), 50);
    sim.patch_status(|s| s.abort = Some(true));
    let plan = sim.reconcile();
    assert_eq!(plan.traffic.as_ref().map(|d| d.canary_weight), Some(0));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::ScaleReplicaSet { to, from, .. } if to < from)),
        "nothing is scaled down while the router still sends the canary half the requests: {:?}",
        plan.actions
    );
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 10), ("web:2".to_string(), 5)],
        "the canary keeps its pods for abortScaleDownDelaySeconds"
    );
    sim.advance(6);
    sim.run(20);
    assert_eq!(sim.pods(), [("web:1".to_string(), 10)]);
    assert_eq!(reported(&sim), Some((0, 100)));
}

#[test]
fn a_router_that_cannot_be_written_holds_the_step_and_the_canary_pods() {
    let mut sim = deployed(
        routed_steps(serde_json::json!({ "abortScaleDownDelaySeconds": 5 })),
        10,
    );
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(weight(&sim), 10);
    sim.router_stuck = true;
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(20);
    assert_eq!(
        sim.status().current_step_index,
        Some(2),
        "50 % never reached the router"
    );
    sim.patch_status(|s| s.abort = Some(true));
    sim.advance(60);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 10), ("web:2".to_string(), 5)],
        "the router still sends the canary requests, so its pods stay"
    );
}

#[test]
fn a_canary_whose_pods_never_become_available_never_gets_a_request() {
    let mut sim = deployed(routed_steps(serde_json::json!({})), 10);
    sim.broken_image = Some("web:2".into());
    sim.set_image("web:2");
    sim.run(30);
    assert_eq!(weight(&sim), 0);
    assert_eq!(sim.status().current_step_index, Some(0));
}

#[test]
fn max_traffic_weight_scales_the_weights_and_the_pods() {
    let mut sim = deployed(
        routed_steps(serde_json::json!({
            "trafficRouting": { "plugins": { "argoproj-labs/gatewayAPI": { "httpRoute": "web" } }, "maxTrafficWeight": 1000 },
            "steps": [ { "setWeight": 5 }, { "pause": {} } ]
        })),
        10,
    );
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(weight(&sim), 5, "0.5 % of the requests");
    assert_eq!(reported(&sim), Some((5, 995)));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 10), ("web:2".to_string(), 1)]
    );
}

#[test]
fn header_routes_hold_while_the_canary_runs_and_go_at_completion() {
    let mut sim = deployed(
        routed_steps(serde_json::json!({
            "trafficRouting": { "plugins": { "argoproj-labs/gatewayAPI": { "httpRoute": "web" } }, "managedRoutes": [{ "name": "beta" }] },
            "steps": [
                { "setCanaryScale": { "replicas": 1 } },
                { "setHeaderRoute": { "name": "beta", "match": [{ "headerName": "X-Beta", "headerValue": { "exact": "yes" } }] } },
                { "pause": {} },
                { "setHeaderRoute": { "name": "beta" } },
                { "setWeight": 20 }, { "pause": {} }
            ]
        })),
        5,
    );
    sim.set_image("web:2");
    sim.run(20);
    let routes = |sim: &Sim| {
        sim.router
            .as_ref()
            .map(|d| d.header_routes.len())
            .unwrap_or(0)
    };
    assert_eq!(sim.status().current_step_index, Some(2));
    assert_eq!(
        routes(&sim),
        1,
        "the header route sends X-Beta: yes to the canary"
    );
    assert_eq!(weight(&sim), 0, "and nothing else");
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(20);
    assert_eq!(sim.status().current_step_index, Some(5));
    assert_eq!(routes(&sim), 0, "removed by the step without a match");
    assert_eq!(weight(&sim), 20);
    sim.patch_status(|s| s.promote_full = Some(true));
    sim.run(20);
    assert_eq!(routes(&sim), 0);
    assert_eq!(weight(&sim), 0);
    assert_eq!(sim.status().stable_rs, Some(sim.hash_of("web:2")));
}

#[test]
fn dynamic_stable_scale_shrinks_the_stable_set_after_its_traffic_and_grows_it_back_before_an_abort_returns_it()
 {
    let mut canary = routed_steps(
        serde_json::json!({ "dynamicStableScale": true, "abortScaleDownDelaySeconds": 5 }),
    );
    canary
        .as_object_mut()
        .expect("an object")
        .remove("scaleDownDelaySeconds");
    let mut sim = deployed(canary, 10);
    sim.set_image("web:2");
    sim.run(20);
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(20);
    assert_eq!(weight(&sim), 50);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5), ("web:2".to_string(), 5)],
        "half the traffic, half the stable pods"
    );

    sim.patch_status(|s| s.abort = Some(true));
    let first = sim.reconcile();
    assert_eq!(
        first.traffic.as_ref().map(|d| d.canary_weight),
        Some(50),
        "the stable set cannot take the traffic back before it has the pods"
    );
    assert!(
        first
            .actions
            .iter()
            .any(|a| matches!(a, Action::ScaleReplicaSet { to: 10, .. })),
        "the stable set grows first: {:?}",
        first.actions
    );
    sim.run(20);
    assert_eq!(weight(&sim), 0);
    sim.advance(6);
    sim.run(20);
    assert_eq!(sim.pods(), [("web:1".to_string(), 10)]);
}

#[test]
fn min_pods_per_replica_set_keeps_a_canary_of_a_small_weight_highly_available() {
    let mut sim = deployed(
        routed_steps(serde_json::json!({ "minPodsPerReplicaSet": 2 })),
        10,
    );
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(weight(&sim), 10);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 10), ("web:2".to_string(), 2)]
    );
}

#[test]
fn old_versions_beyond_the_revision_limit_do_not_wait_out_their_delay() {
    let mut sim = deployed(
        routed_steps(serde_json::json!({ "scaleDownDelayRevisionLimit": 0, "steps": [] })),
        3,
    );
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(sim.status().stable_rs, Some(sim.hash_of("web:2")));
    assert_eq!(
        sim.pods(),
        [("web:2".to_string(), 3)],
        "no old version may wait: scaled down as soon as no traffic reaches it"
    );
}

#[test]
fn ping_pong_hands_the_stable_role_to_the_canary_s_service_without_moving_a_selector() {
    let mut canary = routed_steps(serde_json::json!({
        "pingPong": { "pingService": "web-ping", "pongService": "web-pong" },
        "steps": [ { "setWeight": 50 }, { "pause": { "duration": 1 } } ]
    }));
    let c = canary.as_object_mut().expect("an object");
    c.remove("canaryService");
    c.remove("stableService");
    let mut sim = Sim::new(rollout(4, canary));
    for name in ["web-ping", "web-pong"] {
        sim.services.insert(
            name.into(),
            Some(ServiceView {
                selector: BTreeMap::from([("app".into(), "web".into())]),
                managed_by: None,
            }),
        );
    }
    sim.run(20);
    let old = sim.hash_of("web:1");
    assert_eq!(
        sim.service_hash("web-ping"),
        Some(old.clone()),
        "ping is stable first"
    );
    sim.set_image("web:2");
    sim.run(20);
    let new = sim.hash_of("web:2");
    assert_eq!(
        sim.service_hash("web-pong"),
        Some(new.clone()),
        "pong serves the canary"
    );
    assert_eq!(
        sim.router.as_ref().map(|d| (
            d.stable_service.as_str(),
            d.canary_service.as_str(),
            d.canary_weight
        )),
        Some(("web-ping", "web-pong", 50))
    );
    sim.advance(2);
    sim.run(20);
    let status = sim.status();
    assert_eq!(status.stable_rs, Some(new.clone()));
    assert_eq!(
        status.canary.as_ref().and_then(|c| c.stable_ping_pong),
        Some(sluice_api::PingPong::Pong),
        "pong, which already selects the new version, is stable now"
    );
    assert_eq!(
        sim.router
            .as_ref()
            .map(|d| (d.stable_service.as_str(), d.canary_weight)),
        Some(("web-pong", 0)),
        "all traffic to pong"
    );
    assert_eq!(sim.service_hash("web-pong"), Some(new), "no selector moved");
    assert_eq!(
        sim.service_hash("web-ping"),
        Some(old),
        "ping keeps the old version until the next canary"
    );
    sim.advance(31);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:2".to_string(), 4)],
        "the old version goes after its delay"
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over random sizes, weights, broken versions, stuck routers, aborts, dynamicStableScale,
    /// minPodsPerReplicaSet and a controller killed between any two writes: no set that traffic reaches is scaled down below what its share
    /// needs, the router never sends requests to a Service with no available
    /// pod (both checked by the simulator on every reconcile), weights stay within the max, and
    /// a rollout neither aborted nor broken ends Healthy on the new version with no weight left
    /// on the canary.
    #[test]
    fn no_request_goes_where_no_pod_serves_it(
        replicas in 1i32..9,
        weights in proptest::collection::vec(0i32..=100, 1..4),
        broken in any::<bool>(),
        abort_at in proptest::option::of(0usize..60),
        stuck_at in proptest::option::of(0usize..60),
        delay in 0i32..20,
        crashes in proptest::collection::vec((0usize..120, 0usize..4), 0..12),
        dynamic in any::<bool>(),
        min_pods in proptest::option::of(1i32..4),
    ) {
        let steps: Vec<serde_json::Value> = weights.iter().flat_map(|w| [serde_json::json!({ "setWeight": w }), serde_json::json!({ "pause": { "duration": 3 } })]).collect();
        let mut canary = routed_steps(serde_json::json!({ "steps": steps, "scaleDownDelaySeconds": delay, "abortScaleDownDelaySeconds": delay, "minPodsPerReplicaSet": min_pods }));
        if dynamic {
            let c = canary.as_object_mut().expect("an object");
            c.remove("scaleDownDelaySeconds");
            c.insert("dynamicStableScale".into(), serde_json::json!(true));
        }
        let mut sim = deployed(canary, replicas);
        if broken {
            sim.broken_image = Some("web:2".into());
        }
        sim.set_image("web:2");
        for round in 0..120 {
            if Some(round) == abort_at {
                sim.patch_status(|s| s.abort = Some(true));
            }
            if Some(round) == stuck_at {
                sim.router_stuck = true;
            }
            if let Some((_, writes)) = crashes.iter().find(|(at, _)| *at == round) {
                sim.crash_after = Some(*writes);
            }
            let plan = sim.reconcile();
            if let Some(d) = plan.traffic.as_ref() {
                prop_assert!((0..=100).contains(&d.canary_weight));
            }
            sim.advance(1);
        }
        if !broken && abort_at.is_none() && stuck_at.is_none() {
            prop_assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
            prop_assert_eq!(sim.pods(), vec![("web:2".to_string(), replicas)]);
            prop_assert_eq!(weight(&sim), 0);
        }
    }
}
