//! Objects for the plugin's unit tests, built as the controller and the API server would write
//! them: a canary and a blue/green rollout at several stages, with their ReplicaSets, pods and
//! AnalysisRuns, and the Experiment of the canary's `experiment` step with its own. The time is
//! fixed at [`now`].

use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use serde_json::{Value, json};
use sluice_api::{
    AnalysisRun, Experiment, Rollout,
    vocab::{EXPERIMENT_NAME_ANNOTATION, EXPERIMENT_TEMPLATE_ANNOTATION},
};

use super::{experiment::ExperimentObjects, info::Objects, style::Style};

pub(super) const UID: &str = "5f0c2a8e-rollout";

pub(super) fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().expect("a time")
}

/// The time `secs` seconds before [`now`], as the API server writes it.
pub(super) fn ago(secs: i64) -> String {
    (now() - jiff::SignedDuration::from_secs(secs)).to_string()
}

pub(super) fn plain(width: usize) -> Style {
    Style {
        width,
        color: false,
    }
}

pub(super) fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

pub(super) fn template(image: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": "shop" } },
        "spec": { "containers": [{ "name": "shop", "image": image }] }
    })
}

/// A canary rollout `shop` of 5 replicas with four steps and the given status.
pub(super) fn canary(image: &str, status: Value) -> Rollout {
    canary_with(
        image,
        json!([
            { "setWeight": 20 }, { "pause": {} },
            { "setWeight": 60 }, { "pause": { "duration": "30s" } }
        ]),
        status,
    )
}

/// A canary rollout `shop` of 5 replicas with these steps and the given status.
pub(super) fn canary_with(image: &str, steps: Value, status: Value) -> Rollout {
    from(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "shop", "namespace": "prod", "uid": UID, "generation": 2,
            "creationTimestamp": ago(3 * 86400 + 7200)
        },
        "spec": {
            "replicas": 5,
            "selector": { "matchLabels": { "app": "shop" } },
            "template": template(image),
            "strategy": { "canary": {
                "canaryService": "shop-canary", "stableService": "shop-stable",
                "steps": steps
            } }
        },
        "status": status
    }))
}

/// A blue/green rollout `shop` of 3 replicas with the given status.
pub(super) fn blue_green(image: &str, status: Value) -> Rollout {
    from(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "shop", "namespace": "prod", "uid": UID, "generation": 4,
            "creationTimestamp": ago(40 * 86400)
        },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "shop" } },
            "template": template(image),
            "strategy": { "blueGreen": {
                "activeService": "shop-active", "previewService": "shop-preview",
                "autoPromotionEnabled": false
            } }
        },
        "status": status
    }))
}

pub(super) fn weights(canary: i32) -> Value {
    json!({ "weights": {
        "canary": { "weight": canary, "serviceName": "shop-canary", "podTemplateHash": "7d9f8c6b5" },
        "stable": { "weight": 100 - canary, "serviceName": "shop-stable", "podTemplateHash": "5c4b7f9d8" }
    } })
}

/// A ReplicaSet `shop-<hash>` of the rollout.
pub(super) fn rs(
    hash: &str,
    revision: i64,
    replicas: i32,
    available: i32,
    image: &str,
    age: i64,
) -> ReplicaSet {
    let mut t = template(image);
    t["metadata"]["labels"]["rollouts-pod-template-hash"] = json!(hash);
    from(json!({
        "metadata": {
            "name": format!("shop-{hash}"), "namespace": "prod", "uid": format!("rs-{hash}"),
            "creationTimestamp": ago(age),
            "labels": { "app": "shop", "rollouts-pod-template-hash": hash },
            "annotations": { "rollout.argoproj.io/revision": revision.to_string() },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "shop",
                "uid": UID, "controller": true
            }]
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "shop", "rollouts-pod-template-hash": hash } },
            "template": t
        },
        "status": { "replicas": replicas, "availableReplicas": available, "readyReplicas": available }
    }))
}

/// How a test pod is doing.
#[derive(Clone, Copy)]
pub(super) enum PodState {
    /// Ready and running.
    Running,
    /// Waiting for its container.
    Creating,
    /// Restarting again and again.
    CrashLooping,
    /// Being deleted.
    Terminating,
}

/// A pod `shop-<hash>-<suffix>` of the ReplicaSet with that hash.
pub(super) fn pod(hash: &str, suffix: &str, state: PodState, age: i64) -> Pod {
    let (phase, container) = match state {
        PodState::Running | PodState::Terminating => (
            "Running",
            json!({ "ready": true, "restartCount": 0, "state": { "running": {} } }),
        ),
        PodState::Creating => (
            "Pending",
            json!({ "ready": false, "restartCount": 0,
                    "state": { "waiting": { "reason": "ContainerCreating" } } }),
        ),
        PodState::CrashLooping => (
            "Running",
            json!({ "ready": false, "restartCount": 4,
                    "state": { "waiting": { "reason": "CrashLoopBackOff" } } }),
        ),
    };
    let mut container = container;
    container["name"] = json!("shop");
    container["image"] = json!("registry.example/shop");
    container["imageID"] = json!("");
    let mut metadata = json!({
        "name": format!("shop-{hash}-{suffix}"), "namespace": "prod",
        "creationTimestamp": ago(age),
        "labels": { "app": "shop", "rollouts-pod-template-hash": hash },
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("shop-{hash}"),
            "uid": format!("rs-{hash}"), "controller": true
        }]
    });
    if matches!(state, PodState::Terminating) {
        metadata["deletionTimestamp"] = json!(ago(2));
    }
    from(json!({
        "metadata": metadata,
        "spec": { "containers": [{ "name": "shop", "image": "registry.example/shop" }] },
        "status": { "phase": phase, "containerStatuses": [container] }
    }))
}

/// An AnalysisRun of the rollout at `revision` with one metric and these measurement counts.
pub(super) fn run(
    name: &str,
    revision: i64,
    phase: &str,
    counts: [i32; 4],
    age: i64,
) -> AnalysisRun {
    let [successful, failed, inconclusive, error] = counts;
    from(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {
            "name": name, "namespace": "prod", "creationTimestamp": ago(age),
            "annotations": { "rollout.argoproj.io/revision": revision.to_string() },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "shop",
                "uid": UID, "controller": true
            }]
        },
        "spec": { "metrics": [
            { "name": "success-rate", "interval": "30s", "successCondition": "result[0] >= 0.95",
              "provider": { "prometheus": { "address": "http://prometheus:9090", "query": "rate" } } },
            { "name": "latency-p99", "provider": { "web": { "url": "http://probe/latency" } } }
        ] },
        "status": {
            "phase": phase,
            "message": if phase == "Failed" { "Metric \"success-rate\" assessed Failed due to failed (2) > failureLimit (1)" } else { "" },
            "metricResults": [{
                "name": "success-rate", "phase": phase,
                "count": successful + failed + inconclusive,
                "successful": successful, "failed": failed,
                "inconclusive": inconclusive, "error": error,
                "measurements": [
                    { "phase": phase, "value": "[0.913]", "startedAt": ago(40), "finishedAt": ago(39) }
                ]
            }]
        }
    }))
}

pub(super) fn stable_pods(hash: &str, n: usize, age: i64) -> Vec<Pod> {
    ["xk2lp", "9qvzt", "mw4rc", "b7hjd", "t5nfs"]
        .iter()
        .take(n)
        .map(|s| pod(hash, s, PodState::Running, age))
        .collect()
}

/// A canary paused at its first pause step: one canary pod of five, an analysis running.
pub(super) fn canary_paused() -> Objects {
    let rollout = canary(
        "registry.example/shop:2.1",
        json!({
            "observedGeneration": "2", "phase": "Paused", "message": "CanaryPauseStep",
            "currentPodHash": "7d9f8c6b5", "stableRS": "5c4b7f9d8", "currentStepIndex": 1,
            "pauseConditions": [{ "reason": "CanaryPauseStep", "startTime": ago(95) }],
            "controllerPause": true,
            "replicas": 5, "updatedReplicas": 1, "readyReplicas": 5, "availableReplicas": 5,
            "canary": weights(20)
        }),
    );
    let mut pods = stable_pods("5c4b7f9d8", 4, 3 * 86400);
    pods.push(pod("7d9f8c6b5", "z8d2q", PodState::Running, 120));
    Objects {
        rollout,
        replica_sets: vec![
            rs("5c4b7f9d8", 1, 4, 4, "registry.example/shop:2.0", 3 * 86400),
            rs("7d9f8c6b5", 2, 1, 1, "registry.example/shop:2.1", 125),
        ],
        pods,
        analysis_runs: vec![run("shop-7d9f8c6b5-2", 2, "Running", [2, 0, 0, 0], 95)],
        experiments: vec![],
    }
}

/// A canary moving from 20% to 60%: pods starting, one stable pod going away.
pub(super) fn canary_progressing() -> Objects {
    let rollout = canary(
        "registry.example/shop:2.1",
        json!({
            "observedGeneration": "2", "phase": "Progressing",
            "message": "more replicas need to be updated",
            "currentPodHash": "7d9f8c6b5", "stableRS": "5c4b7f9d8", "currentStepIndex": 2,
            "replicas": 6, "updatedReplicas": 3, "readyReplicas": 4, "availableReplicas": 4,
            "canary": weights(25)
        }),
    );
    let mut pods = stable_pods("5c4b7f9d8", 2, 3 * 86400);
    pods.push(pod("5c4b7f9d8", "b7hjd", PodState::Terminating, 3 * 86400));
    pods.push(pod("7d9f8c6b5", "z8d2q", PodState::Running, 300));
    pods.push(pod("7d9f8c6b5", "p2m6w", PodState::Creating, 4));
    pods.push(pod("7d9f8c6b5", "r4c8x", PodState::CrashLooping, 4));
    Objects {
        rollout,
        replica_sets: vec![
            rs("5c4b7f9d8", 1, 2, 3, "registry.example/shop:2.0", 3 * 86400),
            rs("7d9f8c6b5", 2, 3, 1, "registry.example/shop:2.1", 305),
        ],
        pods,
        analysis_runs: vec![run("shop-7d9f8c6b5-2", 2, "Successful", [4, 0, 0, 0], 290)],
        experiments: vec![],
    }
}

/// A canary aborted after its analysis failed: the canary scaled down, stable serving all.
pub(super) fn canary_aborted() -> Objects {
    let rollout = canary(
        "registry.example/shop:2.1",
        json!({
            "observedGeneration": "2", "phase": "Degraded",
            "message": "RolloutAborted: Rollout aborted update to 7d9f8c6b5",
            "currentPodHash": "7d9f8c6b5", "stableRS": "5c4b7f9d8", "currentStepIndex": 0,
            "abort": true, "abortedAt": ago(30),
            "replicas": 5, "updatedReplicas": 0, "readyReplicas": 5, "availableReplicas": 5,
            "canary": weights(0)
        }),
    );
    Objects {
        rollout,
        replica_sets: vec![
            rs("5c4b7f9d8", 1, 5, 5, "registry.example/shop:2.0", 3 * 86400),
            rs("7d9f8c6b5", 2, 0, 0, "registry.example/shop:2.1", 600),
        ],
        pods: stable_pods("5c4b7f9d8", 5, 3 * 86400),
        analysis_runs: vec![run("shop-7d9f8c6b5-2", 2, "Failed", [3, 2, 1, 1], 590)],
        experiments: vec![],
    }
}

/// A canary that finished: the new version is stable, the old one scaled down.
pub(super) fn canary_healthy() -> Objects {
    let rollout = canary(
        "registry.example/shop:2.1",
        json!({
            "observedGeneration": "2", "phase": "Healthy",
            "currentPodHash": "7d9f8c6b5", "stableRS": "7d9f8c6b5", "currentStepIndex": 4,
            "replicas": 5, "updatedReplicas": 5, "readyReplicas": 5, "availableReplicas": 5,
            "canary": weights(0)
        }),
    );
    Objects {
        rollout,
        replica_sets: vec![
            rs("5c4b7f9d8", 1, 0, 0, "registry.example/shop:2.0", 3 * 86400),
            rs("7d9f8c6b5", 2, 5, 5, "registry.example/shop:2.1", 900),
        ],
        pods: stable_pods("7d9f8c6b5", 5, 800),
        analysis_runs: vec![run("shop-7d9f8c6b5-2", 2, "Successful", [6, 0, 0, 0], 890)],
        experiments: vec![],
    }
}

/// A canary at its first step, an `experiment`: the step's Experiment (revision 2's) runs the
/// stable and the canary version side by side with one analysis, the canary's own ReplicaSet
/// still at zero.
pub(super) fn canary_experimenting() -> Objects {
    let rollout = canary_with(
        "registry.example/shop:2.1",
        json!([
            { "experiment": {
                "duration": "10m",
                "templates": [
                    { "name": "baseline", "specRef": "stable" },
                    { "name": "canary", "specRef": "canary", "replicas": 2 }
                ],
                "analyses": [{ "name": "success-rate", "templateName": "success-rate",
                               "requiredForCompletion": true }]
            } },
            { "setWeight": 20 }, { "pause": {} }
        ]),
        json!({
            "observedGeneration": "2", "phase": "Progressing",
            "message": "more replicas need to be updated",
            "currentPodHash": "7d9f8c6b5", "stableRS": "5c4b7f9d8", "currentStepIndex": 0,
            "replicas": 5, "updatedReplicas": 0, "readyReplicas": 5, "availableReplicas": 5,
            "canary": { "currentExperiment": EXP }
        }),
    );
    let experiment = experiment_running();
    let mut pods = stable_pods("5c4b7f9d8", 5, 3 * 86400);
    pods.extend(experiment.pods);
    let mut replica_sets = vec![
        rs("5c4b7f9d8", 1, 5, 5, "registry.example/shop:2.0", 3 * 86400),
        rs("7d9f8c6b5", 2, 0, 0, "registry.example/shop:2.1", 300),
    ];
    replica_sets.extend(experiment.replica_sets);
    Objects {
        rollout,
        replica_sets,
        pods,
        analysis_runs: experiment.analysis_runs,
        experiments: vec![experiment.experiment],
    }
}

/// A blue/green rollout waiting for promotion: the preview is up beside the active version.
pub(super) fn blue_green_preview() -> Objects {
    let rollout = blue_green(
        "registry.example/shop:green",
        json!({
            "observedGeneration": "4", "phase": "Paused", "message": "BlueGreenPause",
            "currentPodHash": "6b8d4f7c9", "stableRS": "8f6c9b4d7",
            "pauseConditions": [{ "reason": "BlueGreenPause", "startTime": ago(50) }],
            "controllerPause": true,
            "replicas": 6, "updatedReplicas": 3, "readyReplicas": 6, "availableReplicas": 6,
            "blueGreen": { "activeSelector": "8f6c9b4d7", "previewSelector": "6b8d4f7c9" }
        }),
    );
    let mut pods = stable_pods("8f6c9b4d7", 3, 12 * 86400);
    pods.extend(["c6kwq", "h3xnv", "s9tlb"].map(|s| pod("6b8d4f7c9", s, PodState::Running, 60)));
    Objects {
        rollout,
        replica_sets: vec![
            rs(
                "8f6c9b4d7",
                3,
                3,
                3,
                "registry.example/shop:blue",
                12 * 86400,
            ),
            rs("6b8d4f7c9", 4, 3, 3, "registry.example/shop:green", 62),
            rs(
                "4d7b6c8f9",
                2,
                0,
                0,
                "registry.example/shop:red",
                30 * 86400,
            ),
        ],
        pods,
        analysis_runs: vec![],
        experiments: vec![],
    }
}

/// A blue/green rollout just promoted: green is active, blue waits out its scale-down delay.
pub(super) fn blue_green_promoted() -> Objects {
    let rollout = blue_green(
        "registry.example/shop:green",
        json!({
            "observedGeneration": "4", "phase": "Healthy",
            "currentPodHash": "6b8d4f7c9", "stableRS": "6b8d4f7c9",
            "replicas": 6, "updatedReplicas": 3, "readyReplicas": 6, "availableReplicas": 6,
            "blueGreen": { "activeSelector": "6b8d4f7c9" }
        }),
    );
    let mut pods = stable_pods("8f6c9b4d7", 3, 12 * 86400);
    pods.extend(["c6kwq", "h3xnv", "s9tlb"].map(|s| pod("6b8d4f7c9", s, PodState::Running, 240)));
    Objects {
        rollout,
        replica_sets: vec![
            rs(
                "8f6c9b4d7",
                3,
                3,
                3,
                "registry.example/shop:blue",
                12 * 86400,
            ),
            rs("6b8d4f7c9", 4, 3, 3, "registry.example/shop:green", 242),
        ],
        pods,
        analysis_runs: vec![],
        experiments: vec![],
    }
}

/// The uid of the experiment of [`experiment`].
pub(super) const EXP_UID: &str = "9a1e-experiment";
/// The name the controller gives the Experiment of the canary's first step (step 0) at
/// revision 2: `<rollout>-<hash>-<revision>-<step>`.
pub(super) const EXP: &str = "shop-7d9f8c6b5-2-0";

/// The experiment of a canary's `experiment` step: a baseline and a canary template, ten
/// minutes, one required analysis; owned by the rollout `shop` and marked with the revision and
/// pod-template-hash it was made for, as the controller writes it; `status` as the Experiment
/// controller wrote it.
pub(super) fn experiment(status: Value) -> Experiment {
    let template = |image: &str, role: &str| {
        json!({
            "metadata": { "labels": { "app": "shop", "role": role } },
            "spec": { "containers": [{ "name": "shop", "image": image }] }
        })
    };
    from(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {
            "name": EXP, "namespace": "prod", "uid": EXP_UID,
            "creationTimestamp": ago(300),
            "labels": {
                "rollouts-pod-template-hash": "7d9f8c6b5", "rollout-type": "Step",
                "step-index": "0"
            },
            "annotations": { "rollout.argoproj.io/revision": "2" },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "shop",
                "uid": UID, "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "duration": "10m",
            "templates": [
                { "name": "baseline", "template": template("registry.example/shop:2.0", "baseline") },
                { "name": "canary", "replicas": 2,
                  "template": template("registry.example/shop:2.1", "canary") }
            ],
            "analyses": [{ "name": "success-rate", "templateName": "success-rate",
                           "requiredForCompletion": true }]
        },
        "status": status
    }))
}

/// The ReplicaSet of a template, owned by the experiment, annotated as Argo annotates it.
pub(super) fn experiment_set(template: &str, replicas: i32, available: i32) -> ReplicaSet {
    from(json!({
        "metadata": {
            "name": format!("{EXP}-{template}"), "namespace": "prod",
            "uid": format!("rs-{template}"), "creationTimestamp": ago(295),
            "labels": { "app": "shop", "role": template },
            "annotations": {
                EXPERIMENT_NAME_ANNOTATION: EXP,
                EXPERIMENT_TEMPLATE_ANNOTATION: template
            },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment", "name": EXP,
                "uid": EXP_UID, "controller": true
            }]
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "shop", "role": template } }
        },
        "status": { "replicas": replicas, "availableReplicas": available }
    }))
}

/// A pod of a template's ReplicaSet.
pub(super) fn experiment_pod(template: &str, suffix: &str, state: PodState) -> Pod {
    let mut p = pod(template, suffix, state, 290);
    p.metadata.name = Some(format!("{EXP}-{template}-{suffix}"));
    p
}

/// The experiment's AnalysisRun, owned by it.
pub(super) fn experiment_run(phase: &str, counts: [i32; 4]) -> AnalysisRun {
    let mut r = run(&format!("{EXP}-success-rate"), 2, phase, counts, 230);
    for owner in r.metadata.owner_references.iter_mut().flatten() {
        owner.kind = "Experiment".into();
        owner.name = EXP.into();
        owner.uid = EXP_UID.into();
    }
    r
}

/// The experiment's status, its run's phase as given.
pub(super) fn experiment_status(phase: &str, run_phase: &str) -> Value {
    json!({
        "phase": phase, "availableAt": ago(240),
        "templateStatuses": [
            { "name": "baseline", "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
              "availableReplicas": 1, "status": "Running" },
            { "name": "canary", "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1,
              "availableReplicas": 1, "status": "Running" }
        ],
        "analysisRuns": [{ "name": "success-rate", "analysisRun": format!("{EXP}-success-rate"),
                           "phase": run_phase }]
    })
}

/// An experiment four minutes into its ten: one canary pod still crash-looping.
pub(super) fn experiment_running() -> ExperimentObjects {
    ExperimentObjects {
        experiment: experiment(experiment_status("Running", "Running")),
        replica_sets: vec![
            experiment_set("canary", 2, 1),
            experiment_set("baseline", 1, 1),
        ],
        pods: vec![
            experiment_pod("baseline", "k2x9p", PodState::Running),
            experiment_pod("canary", "m4q7z", PodState::Running),
            experiment_pod("canary", "w8c3n", PodState::CrashLooping),
        ],
        analysis_runs: vec![experiment_run("Running", [8, 0, 0, 0])],
    }
}
