//! `workloadRef`: a Rollout over an existing Deployment, end to end: the first deploy takes the
//! Deployment's pods over (`scaleDown: progressively`), a change to the Deployment's template is
//! canaried by the Rollout's steps and promoted, and a later one (`kubectl sluice set image`,
//! which patches the Deployment) aborted back to stable.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_api::RolloutPhase;

use super::setup::{Setup, paused_by_step, status};

async fn set_deployment_image(t: &Setup, image: &str) {
    let patch = json!({ "spec": { "template": { "spec": {
        "containers": [{ "name": "app", "image": image }]
    } } } });
    t.ns.api::<Deployment>()
        .patch(
            "app-deploy",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .expect("changing the Deployment's image");
}

/// The images of the rollout's ReplicaSets with pods, with their replicas, sorted.
async fn images(t: &Setup) -> Vec<(String, i32)> {
    let mut images: Vec<(String, i32)> = t
        .sets()
        .await
        .into_iter()
        .filter_map(|rs| {
            let spec = rs.spec?;
            let image = spec.template?.spec?.containers.first()?.image.clone()?;
            Some((image, spec.replicas.unwrap_or(0)))
        })
        .filter(|(_, replicas)| *replicas > 0)
        .collect();
    images.sort();
    images
}

#[tokio::test]
async fn a_rollout_over_a_deployment_takes_its_pods_over_and_canaries_its_changes() {
    let t = Setup::new("canary-workload-ref").await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "app-deploy" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "app" } },
            "template": {
                "metadata": { "labels": { "app": "app" } },
                "spec": { "containers": [{ "name": "app", "image": "example/app:1" }] }
            }
        }
    }))
    .expect("a Deployment");
    t.ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .expect("creating the Deployment");
    t.create(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "app" },
        "spec": {
            "replicas": 3,
            "workloadRef": {
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "app-deploy",
                "scaleDown": "progressively"
            },
            "strategy": { "canary": {
                "canaryService": "app-canary", "stableService": "app-stable",
                "steps": [{ "setWeight": 50 }, { "pause": {} }]
            } }
        }
    }))
    .await;

    // First deploy: the Deployment's template, its pods handed over.
    t.healthy().await;
    assert_eq!(images(&t).await, [("example/app:1".to_string(), 3)]);
    let deployments = t.ns.api::<Deployment>();
    let handed_over = sluice_testkit::wait(
        async {
            loop {
                let d = deployments.get("app-deploy").await.expect("the Deployment");
                if d.spec.as_ref().and_then(|s| s.replicas) == Some(0) {
                    return Ok::<_, ()>(d);
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        },
        30,
        "the Deployment scaled to 0",
    )
    .await;
    // The status records the generation of the Deployment it scaled down (the reconcile after
    // that scale-down writes it).
    let handed_over_generation = handed_over.metadata.generation.map(|g| g.to_string());
    t.wait(
        30,
        "the handed-over Deployment's generation observed",
        |r| {
            let s = status(r);
            s.phase == Some(RolloutPhase::Healthy)
                && s.workload_observed_generation == handed_over_generation
        },
    )
    .await;

    // A change to the Deployment's template is a new revision, canaried by the steps.
    set_deployment_image(&t, "example/app:2").await;
    t.wait(30, "paused at the setWeight 50 step", paused_by_step)
        .await;
    assert_eq!(
        images(&t).await,
        [
            ("example/app:1".to_string(), 1),
            ("example/app:2".to_string(), 2)
        ],
        "setWeight 50 of 3 by replica ratio"
    );
    t.patch_status(json!({ "pauseConditions": null })).await;
    t.wait(30, "Healthy on the Deployment's new template", |r| {
        let s = status(r);
        s.phase == Some(RolloutPhase::Healthy)
            && s.stable_rs == s.current_pod_hash
            && s.current_step_index == Some(2)
    })
    .await;
    assert_eq!(images(&t).await, [("example/app:2".to_string(), 3)]);

    // Another change, made with the plugin (which patches the Deployment), then aborted:
    // everything back on the stable version.
    let plugin = sluice_testkit::binaries::workspace_binary("kubectl-sluice", "kubectl-sluice");
    let out = std::process::Command::new(plugin)
        .args(["set", "image", "app", "app=example/app:3", "-n", &t.ns.name])
        .env("KUBECONFIG", sluice_testkit::kubeconfig())
        .output()
        .expect("running kubectl-sluice");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("in Deployment \"app-deploy\""),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait(30, "paused at the setWeight 50 step", paused_by_step)
        .await;
    t.patch_status(json!({ "abort": true })).await;
    t.wait(30, "Degraded after the abort", |r| {
        status(r).phase == Some(RolloutPhase::Degraded)
    })
    .await;
    sluice_testkit::wait(
        async {
            while images(&t).await != [("example/app:2".to_string(), 3)] {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Ok::<_, ()>(())
        },
        30,
        "the canary scaled away",
    )
    .await;
    let d = deployments.get("app-deploy").await.expect("the Deployment");
    assert_eq!(
        d.spec.and_then(|s| s.replicas),
        Some(0),
        "the Deployment stays handed over"
    );
}
