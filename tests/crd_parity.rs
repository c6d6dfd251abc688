//! Sluice's CRDs against Argo Rollouts v1.9.1's published ones (read from its Go module): every
//! property Argo's schema has, Sluice's has too, accepting at least what Argo's accepts (no
//! narrower type, no field required that Argo leaves optional). The schema can no longer drift
//! from Argo's without this failing; what is still missing is named below, and the test fails as
//! well when it is no longer missing, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sluice_testkit::gobuild;

/// Argo's kinds Sluice has no CRD for yet, with the reason (none today; a new kind of Argo's
/// goes here until it is built).
const NOT_YET: &[(&str, &str)] = &[];

/// Every property of a CRD's schema by path (`.spec.steps[].setWeight`; `[]` for the items of an
/// array, `{}` for the values of a map), with its schema.
fn properties(schema: &Value, path: String, found: &mut BTreeMap<String, Value>) {
    if let Some(props) = schema["properties"].as_object() {
        for (name, child) in props {
            let child_path = format!("{path}.{name}");
            found.insert(child_path.clone(), child.clone());
            properties(child, child_path, found);
        }
    }
    if schema["items"].is_object() {
        properties(&schema["items"], format!("{path}[]"), found);
    }
    if schema["additionalProperties"].is_object() {
        properties(
            &schema["additionalProperties"],
            format!("{path}{{}}"),
            found,
        );
    }
}

/// The properties of each kind's served version in these CRD files, by kind.
fn crds(
    files: impl IntoIterator<Item = std::path::PathBuf>,
) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut kinds = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for document in serde_norway::Deserializer::from_str(&text) {
            let crd: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
            let version = &crd["spec"]["versions"][0];
            let mut found = BTreeMap::new();
            properties(
                &version["schema"]["openAPIV3Schema"],
                String::new(),
                &mut found,
            );
            // The apiserver serves these for every kind, whatever the schema says.
            for implicit in [".apiVersion", ".kind", ".metadata"] {
                found.entry(implicit.to_string()).or_insert(Value::Null);
            }
            kinds.insert(kind.to_string(), found);
        }
    }
    kinds
}

fn yaml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// What a property accepts, as far as the type goes.
fn accepts(schema: &Value) -> &str {
    if schema["x-kubernetes-int-or-string"] == true {
        "int-or-string"
    } else if let Some(t) = schema["type"].as_str() {
        t
    } else {
        "anything"
    }
}

/// Whether a property of Sluice's type `ours` accepts every value Argo's type `theirs` does.
fn at_least_as_wide(theirs: &str, ours: &str) -> bool {
    theirs == ours
        || ours == "anything"
        || (ours == "int-or-string" && matches!(theirs, "string" | "integer"))
        // Argo leaves some embedded Kubernetes fields untyped (pod `volumes`, container resource
        // `limits`); their type is Kubernetes', which Sluice spells out.
        || (theirs == "anything" && matches!(ours, "object" | "array"))
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn sluice_s_crds_have_every_property_of_argo_s_and_accept_what_they_accept() {
    let argo_dir = gobuild::module_source("github.com/argoproj/argo-rollouts", "v1.9.1")
        .expect("Argo Rollouts' module")
        .join("manifests/crds");
    let argo = crds(yaml_files(&argo_dir));
    let ours = crds(yaml_files(&sluice_testkit::repo_root().join("crds")));
    assert!(
        argo.len() >= 5,
        "Argo's CRDs not found in {}",
        argo_dir.display()
    );

    let mut problems = Vec::new();
    for (kind, theirs) in &argo {
        let Some(mine) = ours.get(kind) else {
            if !NOT_YET.iter().any(|(k, _)| k == kind) {
                problems.push(format!("{kind}: no CRD"));
            }
            continue;
        };
        if let Some((_, why)) = NOT_YET.iter().find(|(k, _)| k == kind) {
            problems.push(format!(
                "{kind} has a CRD now: take it out of NOT_YET ({why})"
            ));
        }
        for (path, schema) in theirs {
            let Some(my_schema) = mine.get(path) else {
                problems.push(format!("{kind}: {path} is missing"));
                continue;
            };
            if schema.is_null() || my_schema.is_null() {
                continue;
            }
            let (t, o) = (accepts(schema), accepts(my_schema));
            if !at_least_as_wide(t, o) {
                problems.push(format!("{kind}: {path} is {o}, Argo's is {t}"));
            }
            let extra: Vec<_> = required(my_schema)
                .difference(&required(schema))
                .cloned()
                .collect();
            if !extra.is_empty() {
                problems.push(format!(
                    "{kind}: {path} requires {extra:?}, Argo's does not"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences from Argo Rollouts v1.9.1's CRDs:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
