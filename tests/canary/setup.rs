//! The harness of the canary tests: a namespace with the Services `app-stable` and
//! `app-canary`, the controller watching it, and the reads and writes the tests make.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Event, Service},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::{
    ConditionStatus, PauseReason, Rollout, RolloutConditionType, RolloutPhase,
    vocab::POD_TEMPLATE_HASH_LABEL,
};
pub use sluice_testkit::manifests::status;
use sluice_testkit::{Controller, TestNamespace, manifests};

/// A test's namespace, the controller watching it, and its Rollouts.
pub struct Setup {
    // Dropped in this order: the controller (its log printed on failure) before the namespace.
    pub controller: Controller,
    pub ns: TestNamespace,
    pub rollouts: Api<Rollout>,
}

impl Setup {
    /// A namespace with the Services `app-stable` and `app-canary` and a running controller.
    pub async fn new(test: &str) -> Self {
        let ns = TestNamespace::new(test).await;
        sluice_testkit::install_crds(&ns.client).await;
        for name in ["app-stable", "app-canary"] {
            create_service(&ns, name).await;
        }
        let controller = Controller::start(&ns.name).await;
        let rollouts = ns.api::<Rollout>();
        Self {
            controller,
            ns,
            rollouts,
        }
    }

    pub async fn create(&self, rollout: Value) -> Rollout {
        let rollout: Rollout = serde_json::from_value(rollout).expect("a Rollout");
        self.rollouts
            .create(&PostParams::default(), &rollout)
            .await
            .expect("creating the Rollout")
    }

    /// Waits until the rollout `app` satisfies `ok`, failing with `what` after `seconds`.
    pub async fn wait(&self, seconds: u64, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
        self.ns
            .wait_for("app", seconds, what, move |r: Option<&Rollout>| {
                r.is_some_and(&ok)
            })
            .await
    }

    pub async fn healthy(&self) -> Rollout {
        self.wait(30, "the rollout Healthy and up to date", |r| {
            let s = status(r);
            s.phase == Some(RolloutPhase::Healthy)
                && s.observed_generation == r.metadata.generation.map(|g| g.to_string())
        })
        .await
    }

    pub async fn set_image(&self, image: &str) {
        self.rollouts
            .patch(
                "app",
                &PatchParams::default(),
                &manifests::image_patch(image),
            )
            .await
            .expect("changing the image");
    }

    pub async fn patch_spec(&self, patch: Value) {
        self.rollouts
            .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patching the spec");
    }

    /// A merge patch of the status subresource, as the plugin and Argo CD's actions write it.
    pub async fn patch_status(&self, status: Value) {
        self.rollouts
            .patch_status(
                "app",
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
            .expect("patching the status");
    }

    /// Replicas of each of the rollout's ReplicaSets, by pod-template-hash.
    pub async fn replicas(&self) -> BTreeMap<String, i32> {
        self.sets()
            .await
            .iter()
            .map(|rs| {
                (
                    rs.labels()[POD_TEMPLATE_HASH_LABEL].clone(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                )
            })
            .collect()
    }

    pub async fn sets(&self) -> Vec<ReplicaSet> {
        self.ns
            .api::<ReplicaSet>()
            .list(&ListParams::default().labels(POD_TEMPLATE_HASH_LABEL))
            .await
            .expect("listing ReplicaSets")
            .items
    }

    /// The pod-template-hash in the Service's selector.
    pub async fn selected(&self, service: &str) -> Option<String> {
        let service = self
            .ns
            .api::<Service>()
            .get(service)
            .await
            .expect("reading the Service");
        service
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL).cloned())
    }

    /// Waits until an event with `reason` is recorded for the rollout (a reconcile records its
    /// events after its status write, so a status may show before its event).
    pub async fn wait_event(&self, reason: &str) {
        self.wait_event_where(&format!("a {reason} event"), |e| {
            e.reason.as_deref() == Some(reason)
        })
        .await;
    }

    /// Waits for an event on the Rollout that `matches`; answers it.
    pub async fn wait_event_where(&self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
        let events = self.ns.api::<Event>();
        let params = ListParams::default().fields("involvedObject.kind=Rollout");
        sluice_testkit::wait(
            async {
                loop {
                    let listed = events.list(&params).await.expect("listing events");
                    if let Some(found) = listed.items.into_iter().find(|e| matches(e)) {
                        return Ok::<_, ()>(found);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
            // A routed canary's router is read again every 15 s when nothing else wakes it.
            30,
            what,
        )
        .await
    }
}

pub async fn create_service(ns: &TestNamespace, name: &str) {
    let service: Service =
        serde_json::from_value(manifests::service(name, "app", Some(8080))).expect("a Service");
    ns.api::<Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("creating the Service");
}

/// A canary Rollout `app` of `replicas` pods running `example/app:1`, with the given steps
/// and the Services `app-canary` and `app-stable`; `canary` adds or overrides fields of
/// `spec.strategy.canary`.
pub fn rollout(replicas: i32, steps: Value, canary: Value) -> Value {
    let strategy = json!({
        "canaryService": "app-canary",
        "stableService": "app-stable",
        "steps": steps,
    });
    let strategy = manifests::merged(strategy, &canary);
    manifests::rollout(
        "app",
        replicas,
        "example/app:1",
        json!({ "canary": strategy }),
    )
}

/// A blue/green Rollout `app` of `replicas` pods behind the Services `app-active` and
/// `app-preview`; `extra` adds or overrides fields of `spec.strategy.blueGreen`.
#[allow(dead_code)] // for the blue/green and analysis tests, which share this harness
pub fn blue_green_rollout(replicas: i32, extra: Value) -> Value {
    let strategy = json!({ "activeService": "app-active", "previewService": "app-preview" });
    let strategy = manifests::merged(strategy, &extra);
    manifests::rollout(
        "app",
        replicas,
        "example/app:1",
        json!({ "blueGreen": strategy }),
    )
}

pub fn condition(
    rollout: &Rollout,
    type_: RolloutConditionType,
) -> Option<(ConditionStatus, String)> {
    status(rollout)
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason))
}

pub fn step(rollout: &Rollout) -> Option<i32> {
    status(rollout).current_step_index
}

pub fn paused_by_step(rollout: &Rollout) -> bool {
    status(rollout)
        .pause_conditions
        .iter()
        .any(|c| c.reason == PauseReason::CanaryPauseStep)
}
