//! The fields of a manifest that Sluice's CRDs do not declare: `kubectl apply` refuses them under
//! strict validation and the API server drops them without a word otherwise, so a misspelt
//! `maxSurge` or a field of another tool's Rollout would silently do nothing. `lint` reports them
//! from the same schema the CRDs are generated from.

use std::sync::OnceLock;

use serde_json::Value;

/// One field the schema does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// Its JSON path, `spec.strategy.canary.stepz`.
    pub path: String,
}

/// The committed CRD of each of Sluice's kinds (generated from the API types by `cargo xtask
/// crds`, which CI checks): read as text, not generated here, because deriving the schemas takes
/// seconds in a debug build and a lint should answer at once.
const CRDS: [(&str, &str); 5] = [
    (
        "Rollout",
        include_str!("../../../crds/rollouts.argoproj.io.yaml"),
    ),
    (
        "AnalysisTemplate",
        include_str!("../../../crds/analysistemplates.argoproj.io.yaml"),
    ),
    (
        "ClusterAnalysisTemplate",
        include_str!("../../../crds/clusteranalysistemplates.argoproj.io.yaml"),
    ),
    (
        "AnalysisRun",
        include_str!("../../../crds/analysisruns.argoproj.io.yaml"),
    ),
    (
        "Experiment",
        include_str!("../../../crds/experiments.argoproj.io.yaml"),
    ),
];

/// The `openAPIV3Schema` of `kind`, parsed the first time a document of that kind is read.
fn schema(kind: &str) -> Option<&'static Value> {
    static SCHEMAS: [OnceLock<Option<Value>>; CRDS.len()] = [const { OnceLock::new() }; CRDS.len()];
    let i = CRDS.iter().position(|(k, _)| *k == kind)?;
    SCHEMAS[i]
        .get_or_init(|| {
            let crd: Value = serde_norway::from_str(CRDS[i].1).ok()?;
            crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
                .cloned()
        })
        .as_ref()
}

/// Whether `kind` is one of Sluice's kinds (so [`unknown_fields`] can check it).
pub fn is_known_kind(kind: &str) -> bool {
    CRDS.iter().any(|(k, _)| *k == kind)
}

/// The fields of `object` (a whole manifest of `kind`) its CRD does not declare, in document
/// order. `metadata` is the API server's to check, as it is for every kind.
pub fn unknown_fields(kind: &str, object: &Value) -> Vec<UnknownField> {
    let mut found = Vec::new();
    let Some(schema) = schema(kind) else {
        return found;
    };
    let Value::Object(fields) = object else {
        return found;
    };
    for (key, value) in fields {
        match key.as_str() {
            "apiVersion" | "kind" | "metadata" => {}
            _ => match property(schema, key) {
                Some(child) => walk(child, value, key, &mut found),
                None => found.push(UnknownField { path: key.clone() }),
            },
        }
    }
    found
}

/// Checks `value` against `schema`, recording the unknown fields under `path`.
fn walk(schema: &Value, value: &Value, path: &str, found: &mut Vec<UnknownField>) {
    match value {
        Value::Object(fields) => {
            if preserves_unknown(schema) && properties(schema).is_empty() {
                return;
            }
            for (key, child) in fields {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = property(schema, key) {
                    walk(child_schema, child, &child_path, found);
                } else if let Some(values) = additional(schema) {
                    walk(values, child, &child_path, found);
                } else if !preserves_unknown(schema) && !allows_any_map(schema) {
                    found.push(UnknownField { path: child_path });
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

/// The branches a schema is made of: itself and its `allOf`, `anyOf` and `oneOf` parts (a field
/// is known when any branch declares it).
fn branches(schema: &Value) -> impl Iterator<Item = &Value> {
    std::iter::once(schema).chain(
        ["allOf", "anyOf", "oneOf"]
            .into_iter()
            .filter_map(|k| schema.get(k).and_then(Value::as_array))
            .flatten(),
    )
}

fn properties(schema: &Value) -> Vec<&serde_json::Map<String, Value>> {
    branches(schema)
        .filter_map(|b| b.get("properties").and_then(Value::as_object))
        .collect()
}

fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    properties(schema).into_iter().find_map(|p| p.get(key))
}

/// The schema of a map's values (`additionalProperties: {…}`).
fn additional(schema: &Value) -> Option<&Value> {
    branches(schema)
        .filter_map(|b| b.get("additionalProperties"))
        .find(|a| a.is_object())
}

/// `additionalProperties: true`: any key.
fn allows_any_map(schema: &Value) -> bool {
    branches(schema).any(|b| b.get("additionalProperties") == Some(&Value::Bool(true)))
}

fn preserves_unknown(schema: &Value) -> bool {
    branches(schema)
        .any(|b| b.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(kind: &str, object: Value) -> Vec<String> {
        unknown_fields(kind, &object)
            .into_iter()
            .map(|f| f.path)
            .collect()
    }

    #[test]
    fn a_misspelt_field_is_named_with_its_path() {
        let rollout = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "r", "whatever": 1},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "r"}},
                "template": {
                    "metadata": {"labels": {"app": "r"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always"}]}
                },
                "strategy": {"canary": {
                    "maxSurge": "25%",
                    "steps": [{"setWeight": 20}, {"pause": {"duraton": "1m"}}],
                    "stepz": []
                }}
            }
        });
        assert_eq!(
            paths("Rollout", rollout),
            [
                "spec.strategy.canary.steps[1].pause.duraton",
                "spec.strategy.canary.stepz"
            ]
        );
    }

    #[test]
    fn maps_and_free_form_fields_take_any_key() {
        let template = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "t"},
            "spec": {"metrics": [{
                "name": "m",
                "provider": {"web": {"url": "http://x", "jsonPath": "{$.ok}",
                    "headers": [{"key": "a", "value": "b"}]}},
                "successCondition": "result == true"
            }]}
        });
        assert!(paths("AnalysisTemplate", template).is_empty());
        let with_labels = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "spec": {"selector": {"matchLabels": {"any-key": "v"}},
                "template": {"metadata": {"labels": {"x": "y"}}},
                "unknownTop": 1}
        });
        assert_eq!(paths("Rollout", with_labels), ["spec.unknownTop"]);
    }

    #[test]
    fn every_kind_of_sluice_has_a_schema() {
        // Every committed CRD (a kind added later included) is one lint reads.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
        let mut kinds = 0;
        for entry in std::fs::read_dir(&dir).expect("the crds folder") {
            let text = std::fs::read_to_string(entry.expect("an entry").path()).expect("a CRD");
            let crd: Value = serde_norway::from_str(&text).expect("a CRD");
            let kind = crd["spec"]["names"]["kind"].as_str().expect("a kind");
            assert!(schema(kind).is_some(), "{kind}");
            kinds += 1;
        }
        assert_eq!(kinds, CRDS.len());
        assert!(!is_known_kind("Deployment"));
    }
}
