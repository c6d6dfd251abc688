//! The CRDs generated from the Rust types are accepted by the real apiserver, describe the schema
//! to `kubectl explain`, accept every example a user copies, and reject bad input with a message
//! that names the field.

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::pinned_kind,
};
use sluice_testkit::{TestNamespace, install_crds, kubectl, repo_root};

#[tokio::test]
async fn the_committed_crds_apply_server_side_and_explain_the_steps() {
    let client = sluice_testkit::client().await;
    install_crds(&client).await;
    let applied = kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(repo_root().join("crds"))
        .output()
        .expect("running kubectl apply");
    assert!(
        applied.status.success(),
        "kubectl apply of crds/ failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    for name in [
        "rollouts",
        "analysistemplates",
        "clusteranalysistemplates",
        "analysisruns",
    ] {
        assert!(
            String::from_utf8_lossy(&applied.stdout).contains(&format!("{name}.argoproj.io")),
            "{name} applied"
        );
    }

    let explain = kubectl()
        .args(["explain", "rollout.spec.strategy.canary.steps"])
        .output()
        .expect("running kubectl explain");
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.status.success(),
        "kubectl explain failed: {}",
        String::from_utf8_lossy(&explain.stderr)
    );
    for field in [
        "setWeight",
        "pause",
        "setCanaryScale",
        "analysis",
        "experiment",
        "setHeaderRoute",
        "setMirrorRoute",
        "plugin",
    ] {
        assert!(
            text.contains(field),
            "`kubectl explain` lists the {field} step:\n{text}"
        );
    }
}

#[tokio::test]
async fn short_names_and_printer_columns_work_with_kubectl() {
    let ns = TestNamespace::new("crd-columns").await;
    install_crds(&ns.client).await;
    let rollout = serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web", "namespace": ns.name },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                          "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] } },
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }] } }
        }
    });
    apply(&ns.client, &ns.name, &rollout, false)
        .await
        .expect("creating a Rollout");
    let out = kubectl()
        .args(["get", "ro", "-n", &ns.name])
        .output()
        .expect("running kubectl get ro");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl get ro: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ]
    );
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("web") && l.split_whitespace().nth(1) == Some("4")),
        "{text}"
    );
    for short in ["at", "cat", "ar"] {
        let out = kubectl()
            .args(["get", short, "-n", &ns.name])
            .output()
            .expect("running kubectl get");
        assert!(
            out.status.success(),
            "kubectl get {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn every_example_passes_a_strict_server_side_dry_run() {
    let ns = TestNamespace::new("examples").await;
    install_crds(&ns.client).await;
    let mut checked = 0;
    for path in example_files() {
        let text = std::fs::read_to_string(&path).expect("reading an example");
        for document in serde_norway::Deserializer::from_str(&text) {
            let object: serde_json::Value =
                serde::Deserialize::deserialize(document).expect("a YAML document");
            if object.is_null() {
                continue;
            }
            if let Err(e) = apply(&ns.client, &ns.name, &object, true).await {
                panic!(
                    "{} ({}) is rejected: {e}",
                    path.display(),
                    object["metadata"]["name"]
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "the examples hold at least 8 objects, found {checked}"
    );
}

#[tokio::test]
async fn quantities_written_as_numbers_are_accepted_and_read_as_kubernetes_reads_them() {
    // `cpu: 0.5` is in half the manifests people write: Kubernetes takes it for a Deployment
    // and Argo Rollouts' CRD for a Rollout, so Sluice's must too (the int-or-string schema of
    // a quantity refuses a number with a fraction).
    let ns = TestNamespace::new("quantities").await;
    install_crds(&ns.client).await;
    let container = serde_json::json!({
        "name": "web",
        "image": "nginx",
        "resources": {
            "requests": { "cpu": 0.5, "memory": 134217728 },
            "limits": { "cpu": 1.5, "memory": "256Mi" },
        },
    });
    let rollout = serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "numbers" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "numbers" } },
            "template": {
                "metadata": { "labels": { "app": "numbers" } },
                "spec": {
                    "containers": [container],
                    "overhead": { "cpu": 0.25 },
                    "volumes": [{ "name": "scratch", "emptyDir": { "sizeLimit": 1.5 } }],
                },
            },
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }] } },
        },
    });
    apply(&ns.client, &ns.name, &rollout, false)
        .await
        .unwrap_or_else(|e| panic!("a Rollout with numeric quantities is refused: {e}"));
    let template = serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": { "name": "numbers" },
        "spec": { "metrics": [{ "name": "job", "provider": { "job": { "spec": {
            "template": { "spec": { "containers": [container], "restartPolicy": "Never" } },
        } } } }] },
    });
    apply(&ns.client, &ns.name, &template, false)
        .await
        .unwrap_or_else(|e| panic!("a job metric with numeric quantities is refused: {e}"));

    // What the controller reads: the quantities as Kubernetes spells them.
    let typed: Api<sluice_api::Rollout> = Api::namespaced(ns.client.clone(), &ns.name);
    let read = typed
        .get("numbers")
        .await
        .expect("Sluice reads the Rollout");
    let pod = read.spec.template.and_then(|t| t.spec).expect("a pod spec");
    let resources = pod.containers[0].resources.clone().expect("resources");
    let requests = resources.requests.expect("requests");
    assert_eq!(requests["cpu"].0, "0.5");
    assert_eq!(requests["memory"].0, "134217728");
    assert_eq!(resources.limits.expect("limits")["cpu"].0, "1.5");
}

#[tokio::test]
async fn an_invalid_rollout_is_rejected_with_a_message_naming_the_field() {
    let ns = TestNamespace::new("invalid").await;
    install_crds(&ns.client).await;
    let rollout = |strategy: serde_json::Value, replicas: serde_json::Value| {
        serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "bad", "namespace": ns.name },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": "bad" } },
                "template": { "metadata": { "labels": { "app": "bad" } },
                              "spec": { "containers": [{ "name": "app", "image": "nginx" }] } },
                "strategy": strategy
            }
        })
    };
    let cases = [
        (
            rollout(
                serde_json::json!({ "canary": { "steps": [{ "setWeight": 150 }] } }),
                3.into(),
            ),
            "spec.strategy.canary.steps[0].setWeight",
            "100",
        ),
        (
            rollout(serde_json::json!({ "canary": {} }), "three".into()),
            "spec.replicas",
            "expected numeric",
        ),
        (
            rollout(serde_json::json!({ "canary": { "stepz": [] } }), 3.into()),
            "stepz",
            "not declared in schema",
        ),
        // A step with two actions is not here: Argo's schema takes it, so Sluice's does, and
        // `validate` reports it (see the test of the Argo 1.9 fields below).
    ];
    for (object, field, words) in cases {
        let error = apply(&ns.client, &ns.name, &object, false)
            .await
            .expect_err("the apiserver rejects it");
        assert!(
            error.contains(field) && error.contains(words),
            "the error names {field} and says {words:?}: {error}"
        );
    }
    // The pod template has the schema of a Deployment's: a container without a name is refused.
    let mut nameless = rollout(serde_json::json!({ "canary": {} }), 3.into());
    nameless["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .expect("a container")
        .remove("name");
    let error = apply(&ns.client, &ns.name, &nameless, false)
        .await
        .expect_err("the apiserver rejects it");
    assert!(
        error.contains("spec.template.spec.containers[0].name") && error.contains("Required"),
        "{error}"
    );

    let missing: Api<DynamicObject> = rollouts(&ns.client, &ns.name).await;
    assert!(
        missing.get_opt("bad").await.expect("reading").is_none(),
        "nothing was stored"
    );
}

fn example_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![repo_root().join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("reading examples/")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

async fn rollouts(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout");
    let (resource, _) = pinned_kind(client, &gvk)
        .await
        .expect("discovering Rollout");
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Server-side applies one object with strict field validation (unknown fields are errors, as
/// `kubectl apply --validate=strict` makes them); returns the apiserver's message when rejected.
async fn apply(
    client: &Client,
    ns: &str,
    object: &serde_json::Value,
    dry_run: bool,
) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap_or_default());
    let (resource, capabilities): (ApiResource, _) = pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("discovery: {e}"))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
        kube::discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &resource),
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let mut params = PatchParams::apply("sluice-tests").validation_strict();
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        })
}

/// A fixture of `tests/fixtures/api/` as JSON, ready to apply in any namespace: without its
/// namespace and its status.
fn fixture(name: &str) -> (serde_json::Value, Option<serde_json::Value>) {
    let path = repo_root().join("tests/fixtures/api").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut object: serde_json::Value = serde_norway::from_str(&text).expect("a YAML object");
    let map = object.as_object_mut().expect("an object");
    let status = map.remove("status");
    if let Some(metadata) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        metadata.remove("namespace");
    }
    (object, status)
}

/// The object as the apiserver stores it.
async fn read_back(client: &Client, ns: &str, kind: &str, name: &str) -> serde_json::Value {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind);
    let (resource, _) = pinned_kind(client, &gvk).await.expect("discovery");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    serde_json::to_value(api.get(name).await.expect("reading back")).expect("JSON")
}

#[tokio::test]
async fn a_step_with_two_actions_and_the_argo_1_9_rollout_fields_are_accepted_and_kept() {
    // Argo's apisix example puts setCanaryScale and setHeaderRoute in one step; Argo's schema has
    // no oneOf, so the apiserver must take it (and Sluice runs it), and every v1.9 field must be
    // kept, not pruned.
    let ns = TestNamespace::new("argo-fields").await;
    install_crds(&ns.client).await;
    let (rollout, status) = fixture("canary-argo-1.9-fields.yaml");
    apply(&ns.client, &ns.name, &rollout, false)
        .await
        .unwrap_or_else(|e| panic!("the Rollout is refused: {e}"));
    let stored = read_back(&ns.client, &ns.name, "Rollout", "gateway").await;
    assert_eq!(
        stored["spec"], rollout["spec"],
        "a field was pruned or changed"
    );
    let step = stored["spec"]["strategy"]["canary"]["steps"][0]
        .as_object()
        .expect("a step");
    assert!(step.contains_key("setCanaryScale") && step.contains_key("setHeaderRoute"));

    // The status Argo writes for the ALB router and step plugins, through the status subresource.
    let status_patch = serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "gateway" },
        "status": status.expect("the fixture has a status"),
    });
    let api = rollouts(&ns.client, &ns.name).await;
    api.patch_status(
        "gateway",
        &PatchParams::apply("sluice-tests").validation_strict(),
        &Patch::Apply(&status_patch),
    )
    .await
    .unwrap_or_else(|e| panic!("the status is refused: {e}"));
    let stored = read_back(&ns.client, &ns.name, "Rollout", "gateway").await;
    assert_eq!(
        stored["status"], status_patch["status"],
        "a status field was pruned"
    );

    // Sluice reads it with every action of its first step, and names only what it will not run.
    let typed: Api<sluice_api::Rollout> = Api::namespaced(ns.client.clone(), &ns.name);
    let read = typed
        .get("gateway")
        .await
        .expect("Sluice reads the Rollout");
    let steps = &read.spec.canary().expect("a canary").steps;
    assert_eq!(steps.actions(0).len(), 2, "{steps:?}");
    let problems = sluice_api::validate(&read);
    assert!(
        problems
            .iter()
            .all(|p| !p.field.starts_with("spec.strategy.canary.steps[0]")),
        "{problems:#?}"
    );
}

#[tokio::test]
async fn the_argo_1_9_metric_fields_and_a_disabled_failure_limit_are_accepted_and_kept() {
    let ns = TestNamespace::new("argo-metric-fields").await;
    install_crds(&ns.client).await;
    for (file, kind, name) in [
        (
            "analysis-template-argo-1.9-fields.yaml",
            "AnalysisTemplate",
            "composed",
        ),
        (
            "analysis-run-argo-1.9-fields.yaml",
            "AnalysisRun",
            "gateway-streak",
        ),
    ] {
        let (object, _) = fixture(file);
        apply(&ns.client, &ns.name, &object, false)
            .await
            .unwrap_or_else(|e| panic!("the {kind} is refused: {e}"));
        let stored = read_back(&ns.client, &ns.name, kind, name).await;
        assert_eq!(
            stored["spec"], object["spec"],
            "{kind}: a field was pruned or changed"
        );
        assert_eq!(
            stored["spec"]["metrics"][0]["failureLimit"],
            serde_json::json!(-1)
        );
    }
}
