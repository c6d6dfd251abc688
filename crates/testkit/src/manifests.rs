//! Rollout and Service manifests the tests and the benchmarks create, and the reads of a
//! Rollout's status they all make.

use serde_json::{Value, json};
use sluice_api::{Rollout, RolloutStatus};

/// A Rollout `name` of `replicas` pods of one container `app` running `image`, its pods
/// labelled `app: <name>`, with `strategy` as its `spec.strategy`.
pub fn rollout(name: &str, replicas: i32, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": image }] }
            },
            "strategy": strategy
        }
    })
}

/// A canary Rollout (see [`rollout`]) with these steps and no Services: replica weights.
pub fn canary(name: &str, replicas: i32, image: &str, steps: Value) -> Value {
    rollout(
        name,
        replicas,
        image,
        json!({ "canary": { "steps": steps } }),
    )
}

/// `base` with the fields of the object `extra` added or replaced (one level deep).
pub fn merged(mut base: Value, extra: &Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

/// A Service `name` selecting the pods labelled `app: <app>`, port 80 to `target_port`.
pub fn service(name: &str, app: &str, target_port: Option<i32>) -> Value {
    let mut port = json!({ "port": 80 });
    if let Some(target) = target_port {
        port["targetPort"] = target.into();
    }
    json!({
        "metadata": { "name": name },
        "spec": { "selector": { "app": app }, "ports": [port] }
    })
}

/// A JSON patch replacing the image of the first container, as `kubectl sluice set image` does.
pub fn image_patch(image: &str) -> kube::api::Patch<()> {
    let patch = json!([{
        "op": "replace",
        "path": "/spec/template/spec/containers/0/image",
        "value": image
    }]);
    kube::api::Patch::Json(serde_json::from_value(patch).expect("a JSON patch"))
}

/// The Rollout's status, or an empty one.
pub fn status(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

/// Whether the controller has written a status for the Rollout's latest spec.
pub fn observed(rollout: &Rollout) -> bool {
    rollout.status.as_ref().is_some_and(|s| {
        s.observed_generation == rollout.metadata.generation.map(|g| g.to_string())
    })
}

/// The image of the Rollout's first container.
pub fn image(rollout: &Rollout) -> String {
    rollout
        .spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first()?.image.clone())
        .unwrap_or_default()
}
