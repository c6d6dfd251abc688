//! Argo Rollouts v1.9.1's own `examples/` folder (its Helm templates aside), read from its published Go module: every
//! Rollout in it is accepted by Sluice's CRD as written (a server-side dry run), and Sluice runs
//! all of them but the ones using a feature it does not run yet, which it reports by name.

use std::{collections::BTreeMap, path::Path};

use kube::api::{Api, PostParams};
use sluice_api::{ProblemKind, Rollout, validate};
use sluice_testkit::{TestNamespace, gobuild, install_crds};

/// Every Rollout in the examples, by file, with the multi-document files split.
fn examples() -> BTreeMap<String, Rollout> {
    let root = gobuild::module_source("github.com/argoproj/argo-rollouts", "v1.9.1")
        .expect("Argo Rollouts' module")
        .join("examples");
    let mut found = BTreeMap::new();
    collect(&root, &root, &mut found);
    found
}

fn collect(root: &Path, dir: &Path, found: &mut BTreeMap<String, Rollout>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("reading the examples")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, found);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("an example");
        // Helm templates are not manifests until rendered.
        if text.contains("{{") {
            continue;
        }
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value: serde_json::Value =
                serde::Deserialize::deserialize(document).expect("a YAML document");
            if value["kind"] == "Rollout" {
                let rollout: Rollout = serde_json::from_value(value)
                    .unwrap_or_else(|e| panic!("{name}: Sluice's types read it: {e}"));
                found.insert(name.clone(), rollout);
            }
        }
    }
}

#[tokio::test]
async fn every_argo_example_rollout_is_accepted_and_all_but_the_unsupported_features_run() {
    let examples = examples();
    assert!(
        examples.len() >= 15,
        "the examples were found: {:?}",
        examples.keys()
    );
    let ns = TestNamespace::new("argo-examples").await;
    install_crds(&ns.client).await;
    let rollouts: Api<Rollout> = ns.api();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut runs = Vec::new();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (file, rollout) in &examples {
        let mut rollout = rollout.clone();
        rollout.metadata.namespace = None;
        rollouts
            .create(&dry_run, &rollout)
            .await
            .unwrap_or_else(|e| panic!("{file}: the CRD refuses an Argo example: {e}"));
        let problems = validate(&rollout);
        assert!(
            problems.iter().all(|p| p.kind == ProblemKind::Unsupported),
            "{file}: a valid Argo example is called invalid: {problems:?}"
        );
        if problems.is_empty() {
            runs.push(file.clone());
        } else {
            refused.insert(
                file.clone(),
                problems.into_iter().map(|p| p.field).collect(),
            );
        }
    }
    eprintln!("run as written ({}): {runs:#?}", runs.len());
    eprintln!("reported unsupported ({}): {refused:#?}", refused.len());
    // What is left is named, and only the features Sluice does not run yet.
    for (file, fields) in &refused {
        assert!(
            fields
                .iter()
                .all(|f| ["experiment", "workloadRef", "appMesh"]
                    .iter()
                    .any(|feature| f.contains(feature))),
            "{file} is refused for {fields:?}"
        );
    }
    // Steps of several actions run (APISIX's example writes setCanaryScale and setHeaderRoute
    // in one step).
    for routed in [
        "apisix/rollout.yaml",
        "istio/istio-mirror.yaml",
        "istio/istio-subset-split.yaml",
    ] {
        assert!(runs.iter().any(|r| r == routed), "{routed} runs: {runs:?}");
    }
}
