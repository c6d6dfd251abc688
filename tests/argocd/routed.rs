//! A Gateway API canary under Argo CD: the HTTPRoute is in Git with every request on stable, and
//! Sluice moves its weights through the steps. Argo CD sees those weights differ from Git; the
//! Application stays Synced, and neither a sync nor self-heal puts the weights back, once the
//! weights are ignored in the diff and the sync respects that (`RespectIgnoreDifferences=true`),
//! as docs/argocd.md tells users to configure. Traefik is the Gateway's controller, so the
//! HTTPRoute has the status Argo CD's health check reads.

use k8s_openapi::api::core::v1::Event;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams},
};
use serde_json::{Value, json};
use sluice_testkit::{manifests::status, traefik::Traefik};

use crate::app::{App, MANUAL_PAUSE, Policy, canary, stays_synced};

/// The route as a user commits it: every request to the stable Service, its rule written with
/// the fields the API server would default (the backends' `group` and `kind`, the match). Argo CD
/// respecting an ignored field inside an array takes the whole array from the live object
/// (argo-cd#11876), defaults included, and a rule in Git without them then differs from what it
/// applied: OutOfSync after every sync.
const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: guestbook
spec:
  parentRefs:
  - name: traefik
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - group: ""
      kind: Service
      name: guestbook-stable
      port: 80
      weight: 100
    - group: ""
      kind: Service
      name: guestbook-canary
      port: 80
      weight: 0
"#;

/// The canary example routed through the HTTPRoute (Argo's Gateway API plugin configuration),
/// with the route in the same commit.
fn routed(image: &str) -> String {
    let services = "      stableService: guestbook-stable\n";
    let text = canary(image);
    assert!(
        text.contains(services),
        "examples/canary.yaml: the Services moved"
    );
    let text = text.replacen(
        services,
        &format!(
            "{services}      trafficRouting:\n        plugins:\n          \
             argoproj-labs/gatewayAPI:\n            httpRoute: guestbook\n"
        ),
        1,
    );
    format!("{text}---\n{ROUTE}")
}

/// The weights of the route's rule: (stable, canary).
async fn weights(app: &App) -> (i64, i64) {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    let routes: Api<DynamicObject> =
        Api::namespaced_with(app.ns.client.clone(), &app.ns.name, &resource);
    let route = routes
        .get("guestbook")
        .await
        .expect("reading the HTTPRoute");
    let refs = &route.data["spec"]["rules"][0]["backendRefs"];
    let weight = |r: &Value| r["weight"].as_i64().unwrap_or(-1);
    (weight(&refs[0]), weight(&refs[1]))
}

/// The events about the Rollout (Sluice's, in the test's namespace), as `reason: message`.
async fn event_reasons(app: &App) -> Vec<String> {
    let events = app
        .ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing events");
    events
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Rollout"))
        .filter_map(|e| Some(format!("{}: {}", e.reason?, e.message.unwrap_or_default())))
        .collect()
}

#[tokio::test]
async fn a_routed_canary_stays_synced_when_its_weights_are_ignored_and_respected() {
    let mut app = App::new(
        "argocd-routed",
        &routed("1.0"),
        "guestbook",
        Policy::automated(),
    )
    .await;
    let _traefik = Traefik::start(&app.ns.name).await;
    app.healthy(120).await;
    assert_eq!(weights(&app).await, (100, 0));

    // Without a word in the Application, the weights Sluice sets are a difference from Git.
    app.commit(&routed("1.1"), "guestbook 1.1").await;
    app.wait(
        90,
        "the HTTPRoute OutOfSync once the canary has weight",
        |v| v.out_of_sync == ["HTTPRoute/guestbook"],
    )
    .await;
    assert_ne!(
        weights(&app).await.1,
        0,
        "OutOfSync before any weight moved"
    );

    // What docs/argocd.md says to add: the weights ignored in the diff and in syncs, and with
    // that, self-heal on.
    app.patch(json!({ "spec": {
        "ignoreDifferences": [{
            "group": "gateway.networking.k8s.io",
            "kind": "HTTPRoute",
            "jqPathExpressions": [".spec.rules[].backendRefs[].weight"],
        }],
        "syncPolicy": {
            "automated": { "prune": true, "selfHeal": true },
            "syncOptions": ["RespectIgnoreDifferences=true"],
        },
    } }))
    .await;
    app.wait(60, "Synced with the weights ignored", |v| {
        v.sync == "Synced"
    })
    .await;
    app.at_manual_pause_with(stays_synced).await;
    assert_eq!(
        weights(&app).await,
        (60, 40),
        "the weight of the manual pause"
    );

    // A sync by hand keeps the weights Sluice set.
    app.sync_by_hand(stays_synced).await;
    assert_eq!(
        weights(&app).await,
        (60, 40),
        "the sync put Git's weights back"
    );
    let r = app.get_rollout().await;
    assert_eq!(status(&r).current_step_index, Some(MANUAL_PAUSE));

    app.promote_full_to_healthy().await;
    assert_eq!(
        weights(&app).await,
        (100, 0),
        "the update over, stable has it all"
    );
    // No fight: nothing put back, no write refused. (Argo CD may apply the Rollout a moment
    // before the HTTPRoute in the first sync; the route not found yet is no fight.)
    let reasons = event_reasons(&app).await;
    assert!(
        !reasons
            .iter()
            .any(|r| r.starts_with("TrafficRoutingPutBack:")
                || (r.starts_with("TrafficRoutingError:") && !r.ends_with(" not found"))),
        "Sluice and Argo CD wrote over each other: {reasons:?}"
    );
}
