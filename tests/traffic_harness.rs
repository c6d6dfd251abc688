//! The real-traffic harness proves itself: real requests through a real Traefik, built from its
//! Go module and routing a test namespace, reach pods the test kit plays on their pod IPs, and
//! split as the route says. Two Deployments, `v1` and `v2` (two pods each), behind the Services
//! `stable` and `canary`; the routes are plain Gateway API and Traefik objects, no controller.
//!
//! The routers' tests rely on exactly this: if these fail, a router test's failure says nothing
//! about the router.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sluice_testkit::{
    TestNamespace,
    pods::PodPlayer,
    traefik::{self, Tally, Traefik},
};

/// The two versions' images; a played pod answers with its image and its pod-template hash.
const V1: &str = "registry.local/web:v1";
const V2: &str = "registry.local/web:v2";

/// How many requests a split is measured on.
const REQUESTS: usize = 2000;

/// Two Deployments and two Services, their pods played, and Traefik in front of the namespace.
struct Web {
    ns: TestNamespace,
    pods: PodPlayer,
    traefik: Traefik,
}

impl Web {
    async fn start(test: &str) -> Self {
        let ns = TestNamespace::new(test).await;
        let deployments: Api<Deployment> = ns.api();
        let services: Api<Service> = ns.api();
        for (version, image, service) in [("v1", V1, "stable"), ("v2", V2, "canary")] {
            let deployment: Deployment = from(json!({
                "metadata": { "name": format!("web-{version}") },
                "spec": {
                    "replicas": 2,
                    "selector": { "matchLabels": { "app": "web", "version": version } },
                    "template": {
                        "metadata": { "labels": { "app": "web", "version": version } },
                        "spec": { "containers": [{
                            "name": "web", "image": image,
                            "ports": [{ "name": "http", "containerPort": 8080 }],
                        }] },
                    },
                },
            }));
            deployments
                .create(&PostParams::default(), &deployment)
                .await
                .unwrap_or_else(|e| panic!("creating web-{version}: {e}"));
            let svc: Service = from(json!({
                "metadata": { "name": service },
                "spec": {
                    "selector": { "app": "web", "version": version },
                    "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }],
                },
            }));
            services
                .create(&PostParams::default(), &svc)
                .await
                .unwrap_or_else(|e| panic!("creating Service {service}: {e}"));
        }
        let pods = PodPlayer::start(&ns.name, "app=web");
        pods.wait_serving(4, Duration::from_secs(60)).await;
        let traefik = Traefik::start(&ns.name).await;
        Self { ns, pods, traefik }
    }

    /// The pod-template hash the pods of `image` answer with.
    fn hash(&self, image: &str) -> String {
        self.pods
            .served()
            .into_values()
            .find(|s| s.answer.image == image)
            .map(|s| s.answer.hash)
            .unwrap_or_else(|| panic!("no pod of {image} is served"))
    }

    async fn create(&self, group: &str, version: &str, kind: &str, object: Value) {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.ns.client.clone(), &self.ns.name, &resource);
        let mut object: DynamicObject = from(object);
        object.types = Some(kube::api::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: kind.to_owned(),
        });
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating {kind}: {e}"));
    }

    /// Waits until requests for `path` with `headers` reach every hash in `hashes` and fail
    /// nowhere: the route is in effect with all its backends' endpoints.
    async fn wait_reaching(&self, path: &str, headers: &[(&str, &str)], hashes: &[&str]) {
        self.traefik
            .wait_until(
                path,
                headers,
                40,
                Duration::from_secs(60),
                "every backend answering",
                |t| t.failures == 0 && hashes.iter().all(|h| t.by_hash.contains_key(*h)),
            )
            .await;
    }
}

fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a well-formed object")
}

/// Asserts that `hash` got `expected` of the requests within four binomial standard deviations,
/// and that nothing failed.
fn assert_share(tally: &Tally, hash: &str, expected: f64) {
    assert_eq!(tally.failures, 0, "failed requests: {tally:?}");
    #[allow(clippy::cast_precision_loss)]
    let sigma = (expected * (1.0 - expected) / tally.sent as f64).sqrt();
    let share = tally.share(hash);
    assert!(
        (share - expected).abs() <= 4.0 * sigma,
        "{hash} got {share:.4} of {} requests, want {expected} ± {:.4} (4σ): {tally:?}",
        tally.sent,
        4.0 * sigma
    );
    eprintln!(
        "{hash}: {share:.4} of {} requests (want {expected} ± {:.4})",
        tally.sent,
        4.0 * sigma
    );
}

fn backend(service: &str, weight: u32) -> Value {
    json!({ "name": service, "port": 80, "weight": weight })
}

#[tokio::test]
async fn requests_through_traefik_split_by_the_httproute_weights() {
    let web = Web::start("traffic-weights").await;
    let (stable, canary) = (web.hash(V1), web.hash(V2));
    web.create(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "parentRefs": [{ "name": traefik::GATEWAY }],
                "rules": [{ "backendRefs": [backend("stable", 80), backend("canary", 20)] }],
            },
        }),
    )
    .await;
    web.wait_reaching("/", &[], &[&stable, &canary]).await;

    let tally = web.traefik.send(REQUESTS, "/", &[]).await;
    assert_share(&tally, &canary, 0.2);
    assert_eq!(tally.by_hash.len(), 2, "only v1 and v2 answer: {tally:?}");
    assert_eq!(tally.by_pod.len(), 4, "every pod answers: {tally:?}");
}

#[tokio::test]
async fn a_header_match_sends_every_matching_request_to_the_canary() {
    let web = Web::start("traffic-header").await;
    let (stable, canary) = (web.hash(V1), web.hash(V2));
    web.create(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "parentRefs": [{ "name": traefik::GATEWAY }],
                "rules": [
                    {
                        "matches": [{ "headers": [{ "name": "X-Canary", "value": "yes" }] }],
                        "backendRefs": [backend("canary", 1)],
                    },
                    { "backendRefs": [backend("stable", 80), backend("canary", 20)] },
                ],
            },
        }),
    )
    .await;
    let header = [("X-Canary", "yes")];
    web.wait_reaching("/", &header, &[&canary]).await;
    web.wait_reaching("/", &[], &[&stable, &canary]).await;

    let tally = web.traefik.send(REQUESTS / 4, "/", &header).await;
    assert_eq!(tally.failures, 0, "failed requests: {tally:?}");
    assert_eq!(
        tally.by_hash.get(&canary).copied(),
        Some(tally.sent),
        "every request with X-Canary: yes reaches the canary: {tally:?}"
    );
    let without = web.traefik.send(REQUESTS, "/", &[]).await;
    assert_share(&without, &canary, 0.2);
}

#[tokio::test]
async fn a_weighted_traefikservice_splits_requests_between_its_services() {
    let web = Web::start("traffic-traefikservice").await;
    let (stable, canary) = (web.hash(V1), web.hash(V2));
    web.create(
        "traefik.io",
        "v1alpha1",
        "TraefikService",
        json!({
            "metadata": { "name": "web-split" },
            "spec": { "weighted": { "services": [
                { "name": "stable", "port": 80, "weight": 1 },
                { "name": "canary", "port": 80, "weight": 1 },
            ] } },
        }),
    )
    .await;
    web.create(
        "traefik.io",
        "v1alpha1",
        "IngressRoute",
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "entryPoints": [traefik::ENTRY_POINT],
                "routes": [{
                    "match": "PathPrefix(`/`)",
                    "kind": "Rule",
                    "services": [{ "name": "web-split", "kind": "TraefikService" }],
                }],
            },
        }),
    )
    .await;
    web.wait_reaching("/", &[], &[&stable, &canary]).await;

    let tally = web.traefik.send(REQUESTS, "/", &[]).await;
    assert_share(&tally, &canary, 0.5);
    assert_share(&tally, &stable, 0.5);
}

#[tokio::test]
async fn a_pod_that_goes_away_stops_answering_on_its_ip() {
    let web = Web::start("traffic-gone").await;
    let canary: Vec<_> = web
        .pods
        .served()
        .into_values()
        .filter(|s| s.answer.image == V2)
        .map(|s| s.addr)
        .collect();
    assert_eq!(canary.len(), 2, "two v2 pods are served");
    for addr in &canary {
        tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("a served pod accepts connections on {addr}: {e}"));
    }
    web.ns
        .api::<Deployment>()
        .patch(
            "web-v2",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
        )
        .await
        .expect("scaling web-v2 to 0");
    web.pods.wait_serving(2, Duration::from_secs(60)).await;
    for addr in &canary {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the deleted pod's address {addr} still accepts connections"
        );
    }
}
