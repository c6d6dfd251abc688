//! A routed canary's router object edited by another writer (an Argo CD sync, a person): Sluice
//! puts it back once and says so, and when it is changed back again soon after, leaves it alone
//! and reports the conflict on the rollout instead of fighting over it.

use std::time::Duration;

use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::setup::{Setup, paused_by_step, rollout, status, step};

fn httproutes(t: &Setup) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    Api::namespaced_with(t.ns.client.clone(), &t.ns.name, &resource)
}

/// The (stable, canary) weights of the route's rule.
async fn weights(t: &Setup) -> (i64, i64) {
    let route = httproutes(t).get("app").await.expect("the HTTPRoute");
    let refs = &route.data["spec"]["rules"][0]["backendRefs"];
    (
        refs[0]["weight"].as_i64().unwrap_or(-1),
        refs[1]["weight"].as_i64().unwrap_or(-1),
    )
}

/// Another writer sets the rule's weights back to all-stable, as a sync from git would.
async fn reset_by_another_writer(t: &Setup) {
    let patch = json!({ "spec": { "rules": [{ "backendRefs": [
        { "name": "app-stable", "port": 80, "weight": 100 },
        { "name": "app-canary", "port": 80, "weight": 0 },
    ] }] } });
    httproutes(t)
        .patch(
            "app",
            &PatchParams::apply("another-writer").force(),
            &Patch::Apply(&json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": { "name": "app" },
                "spec": patch["spec"],
            })),
        )
        .await
        .expect("editing the HTTPRoute");
}

async fn wait_weights(t: &Setup, want: (i64, i64), what: &str) {
    sluice_testkit::wait(
        async {
            while weights(t).await != want {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok::<_, ()>(())
        },
        40,
        what,
    )
    .await;
}

#[tokio::test]
async fn a_router_object_edited_by_another_writer_is_put_back_once_then_left_alone_and_reported() {
    let t = Setup::new("canary-routed-drift").await;
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "app" },
        "spec": {
            "parentRefs": [{ "name": "gateway" }],
            "rules": [{ "backendRefs": [
                { "name": "app-stable", "port": 80, "weight": 100 },
                { "name": "app-canary", "port": 80, "weight": 0 },
            ] }],
        },
    }))
    .expect("an HTTPRoute");
    httproutes(&t)
        .create(&PostParams::default(), &route)
        .await
        .expect("creating the HTTPRoute");
    t.create(rollout(
        4,
        json!([{ "setWeight": 30 }, { "pause": {} }]),
        json!({ "trafficRouting": { "plugins": { "argoproj-labs/gatewayAPI": { "httpRoute": "app" } } } }),
    ))
    .await;
    t.healthy().await;
    t.set_image("example/app:2").await;
    let paused = t
        .wait(60, "paused at 30 %", |r| {
            step(r) == Some(1) && paused_by_step(r)
        })
        .await;
    let w = status(&paused)
        .canary
        .and_then(|c| c.weights)
        .expect("weights");
    assert_eq!((w.canary.weight, w.stable.weight), (30, 70));
    assert_eq!(weights(&t).await, (70, 30));

    reset_by_another_writer(&t).await;
    wait_weights(&t, (70, 30), "Sluice putting the weights back").await;
    t.wait_event("TrafficRoutingPutBack").await;

    reset_by_another_writer(&t).await;
    t.wait_event("TrafficRoutingError").await;
    // Left alone: the other writer's weights stay through Sluice's next looks at the router.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        weights(&t).await,
        (100, 0),
        "Sluice does not fight the other writer"
    );
    let r = t.rollouts.get("app").await.expect("the rollout");
    assert_eq!(step(&r), Some(1), "the rollout holds its step");
}
