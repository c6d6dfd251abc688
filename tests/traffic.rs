//! Canary rollouts through a real proxy: Sluice moves the weights of a Gateway API HTTPRoute,
//! Traefik (built from its Go module) routes real requests by them to pods the test kit plays on
//! their pod IPs, and the test counts who answered. At every step the canary's share is within
//! binomial noise of the step's weight, a header route sends exactly the matching requests to the
//! canary, and not one request fails during the whole rollout, abort included.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::{Rollout, RolloutPhase};
use sluice_testkit::{
    Controller, TestNamespace,
    load::{self, Load, assert_share},
    manifests::{image_patch, status},
    pods::PodPlayer,
    traefik::{self, Tally, Traefik},
};

const V1: &str = "registry.local/web:v1";
const V2: &str = "registry.local/web:v2";

/// A namespace with the two Services, an HTTPRoute through Traefik's Gateway, the pods played,
/// and Sluice watching it.
struct Web {
    controller: Controller,
    traefik: Arc<Traefik>,
    pods: PodPlayer,
    ns: TestNamespace,
    rollouts: Api<Rollout>,
}

impl Web {
    async fn start(test: &str) -> Self {
        let ns = TestNamespace::new(test).await;
        sluice_testkit::install_crds(&ns.client).await;
        for name in ["web-stable", "web-canary"] {
            let service: Service = from(json!({
                "metadata": { "name": name },
                "spec": {
                    "selector": { "app": "web" },
                    "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }],
                },
            }));
            ns.api::<Service>()
                .create(&PostParams::default(), &service)
                .await
                .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
        }
        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": { "name": "web" },
            "spec": {
                "parentRefs": [{ "name": traefik::GATEWAY }],
                "rules": [{ "backendRefs": [
                    { "name": "web-stable", "port": 80, "weight": 100 },
                    { "name": "web-canary", "port": 80, "weight": 0 },
                ] }],
            },
        });
        httproutes(&ns)
            .create(&PostParams::default(), &from(route))
            .await
            .expect("creating the HTTPRoute");
        let pods = PodPlayer::start(&ns.name, "app=web");
        let traefik = Arc::new(Traefik::start(&ns.name).await);
        let controller = Controller::start(&ns.name).await;
        let rollouts = ns.api::<Rollout>();
        Self {
            controller,
            traefik,
            pods,
            ns,
            rollouts,
        }
    }

    /// Creates the rollout `web` of 4 pods on `V1` with `steps`, and waits until it is Healthy
    /// and every request reaches it.
    async fn deploy(&self, steps: Value, extra: Value) {
        let mut canary = json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": {
                "plugins": { "argoproj-labs/gatewayAPI": { "httpRoute": "web" } },
                "managedRoutes": [{ "name": "beta" }],
            },
            "scaleDownDelaySeconds": 3,
            "steps": steps,
        });
        if let (Some(c), Some(e)) = (canary.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let rollout: Rollout = from(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 4,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{
                        "name": "web", "image": V1,
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                    }] },
                },
                "strategy": { "canary": canary },
            },
        }));
        self.rollouts
            .create(&PostParams::default(), &rollout)
            .await
            .expect("creating the Rollout");
        self.wait(90, "the first version Healthy", |r| {
            status(r).phase == Some(RolloutPhase::Healthy)
        })
        .await;
        self.pods.wait_serving(4, Duration::from_secs(60)).await;
        load::wait_answered_by(&self.traefik, V1).await;
    }

    async fn wait(&self, seconds: u64, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
        self.ns
            .wait_for("web", seconds, what, move |r: Option<&Rollout>| {
                r.is_some_and(&ok)
            })
            .await
    }

    /// Waits until the rollout is paused at step `index`.
    async fn paused_at(&self, index: i32) -> Rollout {
        self.wait(120, &format!("paused at step {index}"), |r| {
            let s = status(r);
            s.current_step_index == Some(index) && s.phase == Some(RolloutPhase::Paused)
        })
        .await
    }

    async fn patch_status(&self, status: Value) {
        self.rollouts
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
            .expect("patching the status");
    }

    async fn promote(&self) {
        self.patch_status(json!({ "pauseConditions": null })).await;
    }

    /// The weights of the HTTPRoute's rule as Sluice wrote them: (stable, canary).
    async fn route_weights(&self) -> (i64, i64) {
        let route = httproutes(&self.ns)
            .get("web")
            .await
            .expect("reading the HTTPRoute");
        let refs = &route.data["spec"]["rules"][0]["backendRefs"];
        (
            refs[0]["weight"].as_i64().unwrap_or(-1),
            refs[1]["weight"].as_i64().unwrap_or(-1),
        )
    }

    /// Measures the canary's share once Traefik has taken up `weight`, no request failing.
    async fn share_of_v2(&self, headers: &[(&str, &str)], weight: f64) -> Tally {
        load::share_of(&self.traefik, V2, headers, weight).await
    }
}

fn httproutes(ns: &TestNamespace) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a well-formed object")
}

#[tokio::test]
async fn requests_follow_every_step_of_a_gateway_api_canary_and_none_fails() {
    let web = Web::start("traffic-canary").await;
    web.deploy(
        json!([
            { "setWeight": 20 }, { "pause": {} },
            { "setHeaderRoute": { "name": "beta", "match": [{ "headerName": "X-Beta", "headerValue": { "exact": "yes" } }] } },
            { "setWeight": 50 }, { "pause": {} },
        ]),
        json!({}),
    )
    .await;
    let load = Load::start(web.traefik.clone());
    web.rollouts
        .patch("web", &PatchParams::default(), &image_patch(V2))
        .await
        .expect("changing the image");

    let r = web.paused_at(1).await;
    let weights = status(&r).canary.and_then(|c| c.weights).expect("weights");
    assert_eq!((weights.canary.weight, weights.stable.weight), (20, 80));
    assert_eq!(
        web.route_weights().await,
        (80, 20),
        "the HTTPRoute carries the step"
    );
    assert_share("setWeight 20", &web.share_of_v2(&[], 0.2).await, V2, 0.2);

    web.promote().await;
    web.paused_at(4).await;
    assert_eq!(web.route_weights().await, (50, 50));
    assert_share("setWeight 50", &web.share_of_v2(&[], 0.5).await, V2, 0.5);
    let beta = web.share_of_v2(&[("X-Beta", "yes")], 1.0).await;
    assert_eq!(
        beta.by_image.get(V2),
        Some(&beta.sent),
        "every request with X-Beta: yes reaches v2: {beta:?}"
    );

    web.promote().await;
    web.wait(120, "v2 Healthy and the old pods gone", |r| {
        let s = status(r);
        s.phase == Some(RolloutPhase::Healthy) && s.stable_rs == s.current_pod_hash
    })
    .await;
    web.pods.wait_serving(4, Duration::from_secs(60)).await;
    assert_eq!(
        web.route_weights().await,
        (100, 0),
        "all to the stable Service, now v2"
    );
    let done = web.share_of_v2(&[], 1.0).await;
    assert_share("completed", &done, V2, 1.0);
    let route = httproutes(&web.ns).get("web").await.expect("the HTTPRoute");
    assert_eq!(
        route.data["spec"]["rules"].as_array().map(Vec::len),
        Some(1),
        "the header route is gone: {}",
        route.data["spec"]["rules"]
    );

    load.finish_none_failed("the rollout").await;
    drop(web.controller);
}

#[tokio::test]
async fn an_abort_moves_every_request_back_to_stable_before_the_canary_goes_and_none_fails() {
    let web = Web::start("traffic-abort").await;
    web.deploy(
        json!([{ "setWeight": 50 }, { "pause": {} }]),
        json!({ "abortScaleDownDelaySeconds": 3 }),
    )
    .await;
    let load = Load::start(web.traefik.clone());
    web.rollouts
        .patch("web", &PatchParams::default(), &image_patch(V2))
        .await
        .expect("changing the image");
    web.paused_at(1).await;
    assert_share("setWeight 50", &web.share_of_v2(&[], 0.5).await, V2, 0.5);

    web.patch_status(json!({ "abort": true })).await;
    let r = web
        .wait(60, "aborted with the weight back on stable", |r| {
            let s = status(r);
            s.phase == Some(RolloutPhase::Degraded)
                && s.canary
                    .as_ref()
                    .and_then(|c| c.weights.as_ref())
                    .is_some_and(|w| w.canary.weight == 0)
        })
        .await;
    assert_eq!(web.route_weights().await, (100, 0));
    let canary_pods = web
        .pods
        .served()
        .into_values()
        .filter(|s| s.answer.image == V2)
        .count();
    assert!(
        canary_pods > 0,
        "the canary keeps its pods while the proxy lets go of them: {:?}",
        status(&r)
    );
    assert_share("aborted", &web.share_of_v2(&[], 0.0).await, V2, 0.0);
    web.pods.wait_serving(4, Duration::from_secs(60)).await;

    let all = load.finish_none_failed("the rollout and its abort").await;
    assert!(
        all.by_image.get(V2).is_some_and(|n| *n > 0),
        "v2 served: {all:?}"
    );
}
