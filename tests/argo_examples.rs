//! Argo Rollouts v1.9.1's own `examples/` folder (its Helm templates aside), read from its published Go module: every
//! Rollout in it is accepted by Sluice's CRD as written (a server-side dry run), and Sluice runs
//! all of them but the ones using a feature it does not run yet, which it reports by name.

use std::{collections::BTreeMap, path::Path};

use kube::api::{Api, PostParams};
use sluice_api::{ProblemKind, Rollout, validate};
use sluice_testkit::{TestNamespace, gobuild, install_crds};

/// The kinds of Argo's besides Rollout whose examples must be accepted as written.
const OTHER_KINDS: [&str; 4] = [
    "AnalysisTemplate",
    "ClusterAnalysisTemplate",
    "AnalysisRun",
    "Experiment",
];

/// Every Rollout in the examples, by file, with the multi-document files split; and every
/// document of the [`OTHER_KINDS`], as `(file, document)`.
fn examples() -> (BTreeMap<String, Rollout>, Vec<(String, serde_json::Value)>) {
    let root = gobuild::module_source("github.com/argoproj/argo-rollouts", "v1.9.1")
        .expect("Argo Rollouts' module")
        .join("examples");
    let mut found = BTreeMap::new();
    let mut others = Vec::new();
    collect(&root, &mut found, &mut others);
    (found, others)
}

fn collect(
    root: &Path,
    found: &mut BTreeMap<String, Rollout>,
    others: &mut Vec<(String, serde_json::Value)>,
) {
    let mut files = Vec::new();
    yaml_files(root, &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).expect("an example");
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
            } else if OTHER_KINDS.iter().any(|k| value["kind"] == *k) {
                others.push((name.clone(), value));
            }
        }
    }
}

#[tokio::test]
async fn every_argo_example_rollout_is_accepted_and_all_but_the_unsupported_features_run() {
    let (examples, _) = examples();
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
    // What is left is named, and only the features Sluice does not run yet: App Mesh, and
    // traffic sent to an experiment's templates (`weight` under a router).
    for (file, fields) in &refused {
        assert!(
            fields.iter().all(|f| f.contains("appMesh")
                || (f.contains(".experiment.templates[") && f.ends_with(".weight"))),
            "{file} is refused for {fields:?}"
        );
    }
    // Experiment steps and workloadRef run.
    for runs_now in [
        "rollout-experiment-step.yaml",
        "rollout-baseline-vs-canary.yaml",
        "rollout-canary-preview.yaml",
        "workload-ref/workload-ref.yaml",
        "rollout-template-ref.yaml",
    ] {
        assert!(
            runs.iter().any(|r| r == runs_now),
            "{runs_now} runs: {runs:?}"
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

/// Every AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment in the examples
/// passes `kubectl apply --server-side` with strict field validation (a dry run): no field of
/// Argo's is unknown to Sluice's CRDs, none refused.
#[tokio::test]
async fn every_argo_example_of_the_other_kinds_applies_server_side_with_strict_validation() {
    let (_, others) = examples();
    // Argo's examples hold no AnalysisRun; the other three kinds must be found.
    for kind in ["AnalysisTemplate", "ClusterAnalysisTemplate", "Experiment"] {
        assert!(
            others.iter().any(|(_, doc)| doc["kind"] == kind),
            "no {kind} among the examples: {:?}",
            others.iter().map(|(f, _)| f).collect::<Vec<_>>()
        );
    }
    let ns = TestNamespace::new("argo-examples-kinds").await;
    install_crds(&ns.client).await;
    let dir = std::env::temp_dir().join(&ns.name);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    for (i, (file, document)) in others.iter().enumerate() {
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, document.to_string()).expect("writing the document");
        let out = sluice_testkit::kubectl()
            .args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--validate=strict",
            ])
            .args(["-n", &ns.name, "-f"])
            .arg(&path)
            .output()
            .expect("running kubectl");
        assert!(
            out.status.success(),
            "{file} ({}): {}{}",
            document["kind"],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kubectl sluice lint` knows every field of Argo's examples (each file whole, Services and
/// Ingresses beside the Rollouts included): none is reported unknown. A misspelt field in one of
/// them is.
#[test]
fn lint_finds_no_unknown_field_in_the_argo_examples_and_names_a_misspelt_one() {
    let root = gobuild::module_source("github.com/argoproj/argo-rollouts", "v1.9.1")
        .expect("Argo Rollouts' module")
        .join("examples");
    let plugin = sluice_testkit::binaries::workspace_binary("kubectl-sluice", "kubectl-sluice");
    let lint = |path: &Path| {
        let out = std::process::Command::new(&plugin)
            .arg("lint")
            .arg(path)
            .output()
            .expect("running kubectl-sluice lint");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(files.len() >= 30, "the examples were found: {files:?}");
    for file in &files {
        let out = lint(file);
        assert!(!out.contains("unknown field"), "{}:\n{out}", file.display());
    }
    let canary = std::fs::read_to_string(root.join("rollout-canary.yaml")).expect("an example");
    assert!(
        canary.contains("setWeight: 20"),
        "the example has a step to misspell"
    );
    let misspelt = std::env::temp_dir().join(format!("sluice-lint-{}.yaml", std::process::id()));
    std::fs::write(
        &misspelt,
        canary.replacen("setWeight: 20", "setWeigth: 20", 1),
    )
    .expect("writing");
    let out = lint(&misspelt);
    let _ = std::fs::remove_file(&misspelt);
    assert!(
        out.contains("spec.strategy.canary.steps[0].setWeigth: unknown field"),
        "the misspelt field is named: {out}"
    );
}

/// The YAML files under `dir` that are manifests (Helm templates are not until rendered).
fn yaml_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("reading the examples")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, files);
        } else if path.extension().and_then(|e| e.to_str()) == Some("yaml")
            && !std::fs::read_to_string(&path).is_ok_and(|t| t.contains("{{"))
        {
            files.push(path);
        }
    }
}
