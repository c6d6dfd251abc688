//! Every traffic router Sluice runs, against the real API server: a canary Rollout configured as
//! Argo Rollouts' users configure it, the router's objects created as Argo's docs show them, and
//! those objects read back as the API server stored them, so every write Sluice made passed the
//! router's real CRD schema. At the pause of a `setWeight: 25` step the router carries a quarter
//! of the traffic to the canary and the rollout reports that weight; once promoted, the router
//! carries none to the canary and the stable side runs the new version.
//!
//! The Traefik canary also runs through a real Traefik: the canary answers its share of real
//! requests, and not one request fails from the image change to the end.
//!
//! (A Gateway API HTTPRoute canary through Traefik is tests/traffic.rs.)

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::{Rollout, RolloutPhase, vocab::POD_TEMPLATE_HASH_LABEL};
use sluice_testkit::{
    Controller, TestNamespace,
    load::{self, Load, assert_share},
    manifests::{self, image_patch, status},
    pods::PodPlayer,
    traefik::{self, Traefik},
};

const V1: &str = "registry.local/web:v1";
const V2: &str = "registry.local/web:v2";

/// The Services a canary splits between.
const STABLE: &str = "web-stable";
const CANARY: &str = "web-canary";

/// A test's namespace with its Services and router objects, and Sluice watching it.
struct Routed {
    // Dropped in this order: the controller (its log printed on failure) before the namespace.
    _controller: Controller,
    ns: TestNamespace,
    rollouts: Api<Rollout>,
}

/// The pod template hashes of a paused canary.
struct Paused {
    stable: String,
    canary: String,
}

impl Routed {
    /// A namespace with `services` (selecting the pods of `web`, port 80 to 8080) and `objects`
    /// created as their owner writes them, and Sluice watching it.
    async fn start(test: &str, services: &[&str], objects: Vec<Value>) -> Self {
        let ns = TestNamespace::new(test).await;
        sluice_testkit::install_crds(&ns.client).await;
        sluice_testkit::routers::ensure_installed(&ns.client)
            .await
            .expect("the router CRDs on the cluster");
        for name in services {
            ns.api::<Service>()
                .create(
                    &PostParams::default(),
                    &from(manifests::service(name, "web", Some(8080))),
                )
                .await
                .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
        }
        let controller = Controller::start(&ns.name).await;
        let rollouts = ns.api::<Rollout>();
        let routed = Self {
            _controller: controller,
            ns,
            rollouts,
        };
        for object in objects {
            routed.create(object).await;
        }
        routed
    }

    /// The API of the objects of `api_version` and `kind` in the test's namespace.
    fn dynamic(&self, api_version: &str, kind: &str) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::namespaced_with(self.ns.client.clone(), &self.ns.name, &resource)
    }

    async fn create(&self, object: Value) {
        let (api_version, kind) = (text(&object, "apiVersion"), text(&object, "kind"));
        let name = object["metadata"]["name"].clone();
        self.dynamic(&api_version, &kind)
            .create(&PostParams::default(), &from(object))
            .await
            .unwrap_or_else(|e| panic!("creating {kind} {name}: {e}"));
    }

    /// The object as the API server stores it, read at `api_version`.
    async fn get(&self, api_version: &str, kind: &str, name: &str) -> Value {
        let object = self
            .dynamic(api_version, kind)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading {kind} {name}: {e}"));
        serde_json::to_value(object).expect("an object as JSON")
    }

    /// Creates the rollout `web` of 4 pods running `V1` with the steps `setWeight: 25` then an
    /// indefinite pause, `canary` adding the Services and the router, and waits until it is
    /// Healthy.
    async fn deploy(&self, canary: Value) {
        let strategy = manifests::merged(
            json!({
                "steps": [{ "setWeight": 25 }, { "pause": {} }],
                "scaleDownDelaySeconds": 3,
            }),
            &canary,
        );
        let rollout = manifests::rollout("web", 4, V1, json!({ "canary": strategy }));
        self.rollouts
            .create(&PostParams::default(), &from(rollout))
            .await
            .expect("creating the Rollout");
        self.wait(90, "the first version Healthy", |r| {
            status(r).phase == Some(RolloutPhase::Healthy)
        })
        .await;
    }

    async fn wait(&self, seconds: u64, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
        let limit = Duration::from_secs(seconds);
        sluice_testkit::wait::rollout(&self.rollouts, "web", limit, ok)
            .await
            .unwrap_or_else(|e| panic!("waiting for {what}: {e:#}"))
    }

    /// Changes the image to `V2` and waits until the rollout pauses after `setWeight: 25` with the
    /// router's weight read back; asserts the weights it reports.
    async fn paused_at_25(&self) -> Paused {
        self.rollouts
            .patch("web", &PatchParams::default(), &image_patch(V2))
            .await
            .expect("changing the image");
        let r = self
            .wait(120, "paused after setWeight 25", |r| {
                let s = status(r);
                s.current_step_index == Some(1) && s.phase == Some(RolloutPhase::Paused)
            })
            .await;
        let s = status(&r);
        let weights = s
            .canary
            .and_then(|c| c.weights)
            .expect("status.canary.weights");
        assert_eq!(
            (weights.canary.weight, weights.stable.weight),
            (25, 75),
            "the weights the rollout reports at the pause: {weights:?}"
        );
        Paused {
            stable: s.stable_rs.expect("status.stableRS"),
            canary: s.current_pod_hash.expect("status.currentPodHash"),
        }
    }

    /// Promotes the pause as `kubectl argo rollouts promote` does, waits until the new version is
    /// the stable one and Healthy, and returns its hash.
    async fn promoted(&self) -> String {
        self.rollouts
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": { "pauseConditions": null } })),
            )
            .await
            .expect("promoting");
        let r = self
            .wait(120, "v2 Healthy and stable", |r| {
                let s = status(r);
                s.phase == Some(RolloutPhase::Healthy) && s.stable_rs == s.current_pod_hash
            })
            .await;
        let s = status(&r);
        if let Some(weights) = s.canary.and_then(|c| c.weights) {
            assert_eq!(
                weights.canary.weight, 0,
                "the rollout reports no weight on the canary once done: {weights:?}"
            );
        }
        s.stable_rs.expect("status.stableRS")
    }

    /// The pod template hash the Service selects.
    async fn selected(&self, service: &str) -> Option<String> {
        let service = self
            .ns
            .api::<Service>()
            .get(service)
            .await
            .unwrap_or_else(|e| panic!("reading Service {service}: {e}"));
        service
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL).cloned())
    }
}

fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a well-formed object")
}

fn text(object: &Value, field: &str) -> String {
    object[field].as_str().unwrap_or_default().to_owned()
}

/// The weights of a list of destinations, by name: `name` and `weight` point into each entry. A
/// weight written as a string (a quantity, an annotation's JSON) reads as its number; a missing
/// one as -1.
fn weights(list: &Value, name: &str, weight: &str) -> BTreeMap<String, i64> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let weight = match entry.pointer(weight) {
                Some(Value::String(s)) => s.parse().unwrap_or(-1),
                Some(w) => w.as_i64().unwrap_or(-1),
                None => -1,
            };
            (
                entry
                    .pointer(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                weight,
            )
        })
        .collect()
}

/// Prints the weights `what` carries (the test's figures) and returns them.
fn shown(what: &str, weights: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    eprintln!("{what}: {weights:?}");
    weights
}

/// `canary` to the canary and the rest to stable, by destination name.
fn split(stable: &str, canary: &str, canary_weight: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([
        (stable.to_owned(), 100 - canary_weight),
        (canary.to_owned(), canary_weight),
    ])
}

/// The routers of Argo's docs split between these two Services.
fn services() -> Value {
    json!({ "canaryService": CANARY, "stableService": STABLE })
}

fn with_routing(routing: Value) -> Value {
    manifests::merged(services(), &json!({ "trafficRouting": routing }))
}

/// An Ingress rule sending `/` on `host` to `service` on `port`.
fn ingress(name: &str, class: &str, path: &str, service: &str, port: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": name, "annotations": { "kubernetes.io/ingress.class": class } },
        "spec": { "rules": [{
            "host": "web.example.com",
            "http": { "paths": [{
                "path": path,
                "pathType": if path == "/" { "Prefix" } else { "ImplementationSpecific" },
                "backend": { "service": { "name": service, "port": port } },
            }] },
        }] },
    })
}

#[tokio::test]
async fn an_nginx_canary_gets_its_own_ingress_with_the_step_weight() {
    let stable_ingress = ingress(
        "primary-ingress",
        "nginx",
        "/",
        STABLE,
        json!({ "number": 80 }),
    );
    let routed = Routed::start("routers-nginx", &[STABLE, CANARY], vec![stable_ingress]).await;
    let ingress_api = "networking.k8s.io/v1";
    let before = routed.get(ingress_api, "Ingress", "primary-ingress").await;
    routed
        .deploy(with_routing(json!({ "nginx": {
            "stableIngress": "primary-ingress",
            "additionalIngressAnnotations": { "canary-by-header": "X-Canary" },
        } })))
        .await;

    routed.paused_at_25().await;
    let canary = routed
        .get(ingress_api, "Ingress", "web-primary-ingress-canary")
        .await;
    let annotations = &canary["metadata"]["annotations"];
    eprintln!("canary Ingress annotations: {annotations}");
    assert_eq!(annotations["nginx.ingress.kubernetes.io/canary"], "true");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"], "25",
        "the canary Ingress carries the step's weight: {annotations}"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header"],
        "X-Canary"
    );
    assert_eq!(annotations["kubernetes.io/ingress.class"], "nginx");
    let path = &canary["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(
        (&path["backend"]["service"]["name"], &path["path"]),
        (&json!(CANARY), &json!("/")),
        "the canary Ingress sends the stable Ingress's path to the canary Service: {path}"
    );
    assert_eq!(
        canary["spec"]["rules"][0]["host"], "web.example.com",
        "the host is the stable Ingress's"
    );
    let owner = &canary["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["controller"]),
        (&json!("Rollout"), &json!("web"), &json!(true)),
        "the canary Ingress goes with its rollout when the rollout is deleted: {owner}"
    );

    let new = routed.promoted().await;
    let canary = routed
        .get(ingress_api, "Ingress", "web-primary-ingress-canary")
        .await;
    assert_eq!(
        canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "0"
    );
    assert_eq!(routed.selected(STABLE).await, Some(new));
    let after = routed.get(ingress_api, "Ingress", "primary-ingress").await;
    assert_eq!(
        (&after["metadata"], &after["spec"]),
        (&before["metadata"], &before["spec"]),
        "the stable Ingress is left as its owner wrote it"
    );
}

/// A VirtualService of Argo's Istio docs: an HTTP route `primary` between two destinations.
fn virtual_service(host: &str, stable: Value, canary: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": { "name": "web-vsvc" },
        "spec": {
            "gateways": ["web-gateway"],
            "hosts": [host],
            "http": [{
                "name": "primary",
                "route": [
                    { "destination": stable, "weight": 100 },
                    { "destination": canary, "weight": 0 },
                ],
            }],
        },
    })
}

async fn http_route_weights(routed: &Routed, by: &str) -> BTreeMap<String, i64> {
    let vs = routed
        .get("networking.istio.io/v1alpha3", "VirtualService", "web-vsvc")
        .await;
    shown(
        "VirtualService route primary",
        weights(&vs["spec"]["http"][0]["route"], by, "/weight"),
    )
}

#[tokio::test]
async fn an_istio_host_level_canary_moves_the_virtual_service_weights() {
    let vs = virtual_service(
        "web.example.com",
        json!({ "host": STABLE }),
        json!({ "host": CANARY }),
    );
    let routed = Routed::start("routers-istio-host", &[STABLE, CANARY], vec![vs]).await;
    routed
        .deploy(with_routing(json!({ "istio": {
            "virtualService": { "name": "web-vsvc", "routes": ["primary"] },
        } })))
        .await;

    routed.paused_at_25().await;
    assert_eq!(
        http_route_weights(&routed, "/destination/host").await,
        split(STABLE, CANARY, 25)
    );

    let new = routed.promoted().await;
    assert_eq!(
        http_route_weights(&routed, "/destination/host").await,
        split(STABLE, CANARY, 0)
    );
    assert_eq!(routed.selected(STABLE).await, Some(new));
}

/// The subsets' `rollouts-pod-template-hash` labels: (stable, canary).
async fn subset_hashes(routed: &Routed) -> (Value, Value) {
    let rule = routed
        .get(
            "networking.istio.io/v1alpha3",
            "DestinationRule",
            "web-destrule",
        )
        .await;
    let label = |subset: &str| {
        rule["spec"]["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == subset)
            .map_or(Value::Null, |s| {
                s["labels"][POD_TEMPLATE_HASH_LABEL].clone()
            })
    };
    (label("stable"), label("canary"))
}

#[tokio::test]
async fn an_istio_subset_level_canary_labels_the_subsets_with_each_version_and_weighs_them() {
    // Argo's subset-level setup: one Service, the versions told apart by DestinationRule subsets.
    let vs = virtual_service(
        "web",
        json!({ "host": "web", "subset": "stable" }),
        json!({ "host": "web", "subset": "canary" }),
    );
    let rule = json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
        "metadata": { "name": "web-destrule" },
        "spec": {
            "host": "web",
            "subsets": [
                { "name": "canary", "labels": { "app": "web" } },
                { "name": "stable", "labels": { "app": "web" } },
            ],
        },
    });
    let routed = Routed::start("routers-istio-subset", &["web"], vec![vs, rule]).await;
    routed
        .deploy(json!({ "trafficRouting": { "istio": {
            "virtualService": { "name": "web-vsvc", "routes": ["primary"] },
            "destinationRule": {
                "name": "web-destrule",
                "canarySubsetName": "canary",
                "stableSubsetName": "stable",
            },
        } } }))
        .await;

    let paused = routed.paused_at_25().await;
    assert_eq!(
        http_route_weights(&routed, "/destination/subset").await,
        split("stable", "canary", 25)
    );
    assert_eq!(
        subset_hashes(&routed).await,
        (json!(paused.stable), json!(paused.canary)),
        "each subset selects its version's pods"
    );

    let new = routed.promoted().await;
    assert_eq!(
        http_route_weights(&routed, "/destination/subset").await,
        split("stable", "canary", 0)
    );
    assert_eq!(
        subset_hashes(&routed).await,
        (json!(new), json!(new)),
        "both subsets select the new version"
    );
    assert_eq!(
        routed.selected("web").await,
        None,
        "the Service is not Sluice's to change"
    );
}

/// The backends' weights of the TrafficSplit `web-split`, whose apex is the root Service `web`.
async fn traffic_split_weights(routed: &Routed) -> BTreeMap<String, i64> {
    let split = routed
        .get("split.smi-spec.io/v1alpha1", "TrafficSplit", "web-split")
        .await;
    assert_eq!(split["spec"]["service"], "web", "the root Service: {split}");
    eprintln!("TrafficSplit backends: {}", split["spec"]["backends"]);
    weights(&split["spec"]["backends"], "/service", "/weight")
}

#[tokio::test]
async fn an_smi_canary_creates_its_traffic_split_with_the_step_weight() {
    // Argo's SMI setup: no TrafficSplit of the user's; the rollout creates and owns it.
    let routed = Routed::start("routers-smi", &["web", STABLE, CANARY], vec![]).await;
    routed
        .deploy(with_routing(json!({ "smi": {
            "rootService": "web",
            "trafficSplitName": "web-split",
        } })))
        .await;

    routed.paused_at_25().await;
    assert_eq!(
        traffic_split_weights(&routed).await,
        split(STABLE, CANARY, 25)
    );

    let new = routed.promoted().await;
    assert_eq!(
        traffic_split_weights(&routed).await,
        split(STABLE, CANARY, 0)
    );
    assert_eq!(routed.selected(STABLE).await, Some(new));
}

/// The forward action the AWS Load Balancer Controller reads, by target group.
async fn alb_action(routed: &Routed) -> BTreeMap<String, i64> {
    let ingress = routed
        .get("networking.k8s.io/v1", "Ingress", "web-ingress")
        .await;
    let key = format!("alb.ingress.kubernetes.io/actions.{STABLE}");
    let text = ingress["metadata"]["annotations"][&key]
        .as_str()
        .unwrap_or_else(|| panic!("the Ingress has no {key} annotation: {ingress}"));
    let action: Value = serde_json::from_str(text).expect("the action is JSON");
    assert_eq!(action["Type"], "forward", "{text}");
    let groups = &action["ForwardConfig"]["TargetGroups"];
    for group in groups.as_array().into_iter().flatten() {
        assert_eq!(group["ServicePort"], "80", "{text}");
    }
    shown(
        "ALB forward action",
        weights(groups, "/ServiceName", "/Weight"),
    )
}

#[tokio::test]
async fn an_alb_canary_writes_the_weighted_forward_action_on_the_ingress() {
    let ingress = ingress(
        "web-ingress",
        "alb",
        "/*",
        STABLE,
        json!({ "name": "use-annotation" }),
    );
    let routed = Routed::start("routers-alb", &[STABLE, CANARY], vec![ingress]).await;
    routed
        .deploy(with_routing(json!({ "alb": {
            "ingress": "web-ingress",
            "servicePort": 80,
        } })))
        .await;

    routed.paused_at_25().await;
    assert_eq!(alb_action(&routed).await, split(STABLE, CANARY, 25));

    let new = routed.promoted().await;
    assert_eq!(alb_action(&routed).await, split(STABLE, CANARY, 0));
    assert_eq!(routed.selected(STABLE).await, Some(new));
}

/// A route of the Gateway API plugin's docs: one rule between the two Services, no weights.
fn gateway_route(api_version: &str, kind: &str, section: Option<&str>) -> Value {
    let mut parent = json!({ "name": "web-gateway" });
    if let Some(section) = section {
        parent["sectionName"] = json!(section);
    }
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": { "name": "web-route" },
        "spec": {
            "parentRefs": [parent],
            "rules": [{ "backendRefs": [
                { "name": STABLE, "port": 80 },
                { "name": CANARY, "port": 80 },
            ] }],
        },
    })
}

/// A Gateway API canary through the route `kind` the plugin configuration `key` names.
async fn gateway_canary(test: &str, api_version: &str, kind: &str, key: &str) {
    let section = (kind == "TCPRoute").then_some("tcp");
    let route = gateway_route(api_version, kind, section);
    let routed = Routed::start(test, &[STABLE, CANARY], vec![route]).await;
    routed
        .deploy(with_routing(json!({
            "plugins": { "argoproj-labs/gatewayAPI": { key: "web-route" } },
        })))
        .await;
    let route_weights = || async {
        let route = routed.get(api_version, kind, "web-route").await;
        shown(
            kind,
            weights(
                &route["spec"]["rules"][0]["backendRefs"],
                "/name",
                "/weight",
            ),
        )
    };

    routed.paused_at_25().await;
    assert_eq!(route_weights().await, split(STABLE, CANARY, 25), "{kind}");

    let new = routed.promoted().await;
    assert_eq!(route_weights().await, split(STABLE, CANARY, 0), "{kind}");
    assert_eq!(routed.selected(STABLE).await, Some(new));
}

#[tokio::test]
async fn a_gateway_api_grpc_route_carries_the_step_weight() {
    gateway_canary(
        "routers-grpcroute",
        "gateway.networking.k8s.io/v1",
        "GRPCRoute",
        "grpcRoute",
    )
    .await;
}

#[tokio::test]
async fn a_gateway_api_tcp_route_carries_the_step_weight() {
    gateway_canary(
        "routers-tcproute",
        "gateway.networking.k8s.io/v1alpha2",
        "TCPRoute",
        "tcpRoute",
    )
    .await;
}

async fn traefik_weights(routed: &Routed) -> BTreeMap<String, i64> {
    let service = routed
        .get("traefik.io/v1alpha1", "TraefikService", "web-split")
        .await;
    shown(
        "TraefikService",
        weights(&service["spec"]["weighted"]["services"], "/name", "/weight"),
    )
}

#[tokio::test]
async fn a_traefik_canary_sends_real_requests_by_the_traefik_service_weights_and_none_fails() {
    // Argo's Traefik setup: a weighted TraefikService between the Services, without weights (they
    // are the rollout's), and an IngressRoute sending requests to it.
    let service = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
        "metadata": { "name": "web-split" },
        "spec": { "weighted": { "services": [
            { "name": STABLE, "port": 80 },
            { "name": CANARY, "port": 80 },
        ] } },
    });
    let route = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": { "name": "web" },
        "spec": {
            "entryPoints": [traefik::ENTRY_POINT],
            "routes": [{
                "match": "PathPrefix(`/`)",
                "kind": "Rule",
                "services": [{ "name": "web-split", "kind": "TraefikService" }],
            }],
        },
    });
    let routed = Routed::start("routers-traefik", &[STABLE, CANARY], vec![service, route]).await;
    let pods = PodPlayer::start(&routed.ns.name, "app=web");
    let traefik = Arc::new(Traefik::start(&routed.ns.name).await);
    routed
        .deploy(with_routing(json!({ "traefik": {
            "weightedTraefikServiceName": "web-split",
        } })))
        .await;
    pods.wait_serving(4, Duration::from_secs(60)).await;
    load::wait_answered_by(&traefik, V1).await;
    let all = Load::start(traefik.clone());

    routed.paused_at_25().await;
    assert_eq!(traefik_weights(&routed).await, split(STABLE, CANARY, 25));
    let at_25 = load::share_of(&traefik, V2, &[], 0.25).await;
    assert_share("setWeight 25", &at_25, V2, 0.25);

    let new = routed.promoted().await;
    assert_eq!(traefik_weights(&routed).await, split(STABLE, CANARY, 0));
    assert_eq!(routed.selected(STABLE).await, Some(new));
    pods.wait_serving(4, Duration::from_secs(60)).await;
    let done = load::share_of(&traefik, V2, &[], 1.0).await;
    assert_share("completed", &done, V2, 1.0);

    all.finish_none_failed("the rollout").await;
}
