//! The generated CRDs must be structural, or the apiserver rejects them; this walks every
//! schema node and checks the rules of "Specifying a structural schema".

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::crds;

/// Keywords a structural schema cannot use anywhere.
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "$defs",
    "definitions",
    "const",
    "uniqueItems",
];
/// Keywords not allowed inside `oneOf`/`anyOf`/`allOf`/`not`.
const FORBIDDEN_IN_JUNCTORS: &[&str] = &[
    "type",
    "description",
    "default",
    "additionalProperties",
    "nullable",
];
/// The types Kubernetes knows.
const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];

/// Checks a node that specifies a field (the root, a property, array items, map values).
fn check_node(node: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errors.push(format!("{path}: schema is {node}, not an object"));
        return;
    };
    for keyword in FORBIDDEN {
        if obj.contains_key(*keyword) {
            errors.push(format!("{path}: uses {keyword}"));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    match obj.get("type").and_then(Value::as_str) {
        Some(t) if int_or_string => {
            errors.push(format!("{path}: int-or-string must not set type {t}"))
        }
        Some(t) if !TYPES.contains(&t) => errors.push(format!("{path}: unknown type {t}")),
        Some("array") if !obj.contains_key("items") => {
            errors.push(format!("{path}: array without items"))
        }
        Some(_) => {}
        None if obj.contains_key("type") => {
            errors.push(format!("{path}: type is not a single string"))
        }
        None if !int_or_string && !preserve => errors.push(format!("{path}: no type")),
        None => {}
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errors.push(format!("{path}: both properties and additionalProperties"));
    }
    let properties = obj.get("properties").and_then(Value::as_object);
    for (name, property) in properties.into_iter().flatten() {
        check_node(property, &format!("{path}.{name}"), errors);
    }
    if let Some(items) = obj.get("items") {
        check_node(items, &format!("{path}[]"), errors);
    }
    if let Some(values) = obj.get("additionalProperties") {
        check_node(values, &format!("{path}.*"), errors);
    }
    for junctor in ["oneOf", "anyOf", "allOf"] {
        for (i, branch) in obj
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_junctor_branch(branch, node, &format!("{path}.{junctor}[{i}]"), errors);
        }
    }
    if let Some(not) = obj.get("not") {
        check_junctor_branch(not, node, &format!("{path}.not"), errors);
    }
}

/// A branch of a junctor may only restate value validations of fields specified outside it.
fn check_junctor_branch(branch: &Value, outside: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = branch.as_object() else {
        errors.push(format!("{path}: branch is not an object"));
        return;
    };
    for keyword in FORBIDDEN.iter().chain(FORBIDDEN_IN_JUNCTORS) {
        if obj.contains_key(*keyword) {
            errors.push(format!("{path}: uses {keyword} inside a junctor"));
        }
    }
    let declared = outside.get("properties").and_then(Value::as_object);
    let named = obj
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .chain(
            obj.get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
    for name in named {
        if !declared.is_some_and(|d| d.contains_key(&name)) {
            errors.push(format!(
                "{path}: names {name}, which is not a property outside the junctor"
            ));
        }
    }
}

/// The schema of a CRD's only version, as JSON.
fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let json = serde_json::to_value(crd).expect("serialises");
    json["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn every_crd_is_structural() {
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut errors = Vec::new();
        check_node(&schema_of(&crd), &name, &mut errors);
        assert!(
            errors.is_empty(),
            "{name} is not structural:\n{}",
            errors.join("\n")
        );
        let text = serde_json::to_string(&crd).expect("serialises");
        assert!(!text.contains("$ref"), "{name} has a $ref");
    }
}

#[test]
fn the_checker_catches_non_structural_schemas() {
    let bad = json!({
        "type": "object",
        "properties": {
            "untyped": {},
            "ref": { "$ref": "#/definitions/X" },
            "choice": {
                "type": "object",
                "properties": { "a": { "type": "string" } },
                "oneOf": [{ "type": "object", "required": ["b"] }]
            }
        }
    });
    let mut errors = Vec::new();
    check_node(&bad, "bad", &mut errors);
    let joined = errors.join("\n");
    assert!(joined.contains("bad.untyped: no type"), "{joined}");
    assert!(joined.contains("bad.ref: uses $ref"), "{joined}");
    assert!(joined.contains("uses type inside a junctor"), "{joined}");
    assert!(joined.contains("names b"), "{joined}");
}

#[test]
fn the_rollout_crd_matches_argo_rollouts() {
    let crd = &crds()[0];
    let names = &crd.spec.names;
    assert_eq!(names.short_names.as_deref(), Some(&["ro".to_owned()][..]));
    let version = &crd.spec.versions[0];
    let scale = version
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("scale");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.HPAReplicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str(), c.type_.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Desired", ".spec.replicas", "integer"),
            ("Current", ".status.replicas", "integer"),
            ("Up-to-date", ".status.updatedReplicas", "integer"),
            ("Available", ".status.availableReplicas", "integer"),
            ("Age", ".metadata.creationTimestamp", "date"),
        ]
    );
}

#[test]
fn the_schema_rejects_clearly_bad_input() {
    let schema = schema_of(&crds()[0]);
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["minimum"], json!(0.0));
    let canary = &spec["strategy"]["properties"]["canary"]["properties"];
    let step = &canary["steps"]["items"];
    assert_eq!(step["properties"]["setWeight"]["minimum"], json!(0.0));
    assert_eq!(step["properties"]["setWeight"]["maximum"], json!(100.0));
    // Argo's step is a struct of optional actions: a step may hold several (validate reports
    // it), so there is no oneOf that the apiserver would refuse it by.
    assert_eq!(step.get("oneOf"), None);
    assert_eq!(step["properties"].as_object().map(|p| p.len()), Some(8));
    let int_or_string = json!(true);
    assert_eq!(
        canary["maxSurge"]["x-kubernetes-int-or-string"],
        int_or_string
    );
    let pause = &step["properties"]["pause"]["properties"]["duration"];
    assert_eq!(pause["x-kubernetes-int-or-string"], int_or_string);
    let status = &schema["properties"]["status"]["properties"];
    assert_eq!(status["observedGeneration"]["type"], json!("string"));
    assert_eq!(
        status["phase"]["enum"],
        json!(["Healthy", "Progressing", "Paused", "Degraded"])
    );
}

#[test]
fn analysis_crds_match_argo_rollouts() {
    let all = crds();
    let short = |i: usize| all[i].spec.names.short_names.clone().unwrap_or_default();
    assert_eq!(
        (short(1), short(2), short(3)),
        (vec!["at".into()], vec!["cat".into()], vec!["ar".into()])
    );
    assert_eq!(all[2].spec.scope, "Cluster");
    let run = &all[3].spec.versions[0];
    assert!(
        run.subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
    let columns: Vec<_> = run
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Status", "Age"]);
    let metric =
        &schema_of(&all[1])["properties"]["spec"]["properties"]["metrics"]["items"]["properties"];
    assert_eq!(metric["count"]["x-kubernetes-int-or-string"], json!(true));
    assert_eq!(
        metric["provider"]["properties"]
            .as_object()
            .map(|p| p.len()),
        Some(12)
    );
}

#[test]
fn no_crd_has_a_one_of_as_argo_rollouts_has_none() {
    for crd in crds() {
        let text = serde_json::to_string(&crd).expect("serialises");
        assert!(
            !text.contains("\"oneOf\""),
            "{:?} has a oneOf",
            crd.metadata.name
        );
    }
    let schema = schema_of(&crds()[0]);
    let failure_limit = &schema_of(&crds()[1])["properties"]["spec"]["properties"]["metrics"]["items"]
        ["properties"]["failureLimit"];
    assert_eq!(failure_limit["x-kubernetes-int-or-string"], json!(true));
    let canary = &schema["properties"]["spec"]["properties"]["strategy"]["properties"]["canary"]["properties"];
    assert!(canary["replicaProgressThreshold"].is_object());
}
