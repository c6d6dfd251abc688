//! Hand-written CRD schemas for field types whose derived schema would not be structural, and
//! the rewrites of embedded Kubernetes schemas that keep every manifest Kubernetes accepts.
//!
//! Each function is used through `#[schemars(schema_with = "…")]`. Embedded Kubernetes types
//! (the pod template, a Job spec) use k8s-openapi's own schemas; [`without_embedded_descriptions`]
//! trims them once the CRD is generated.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::Value;

/// Properties whose schema comes from k8s-openapi: `(parent property, property)`.
const EMBEDDED: [(&str, &str); 3] = [
    ("spec", "template"),
    ("templates", "template"),
    ("job", "spec"),
];

/// Drops the descriptions inside embedded Kubernetes types of a generated CRD (see [`super::crds`]).
pub(crate) fn without_embedded_descriptions(
    crd: CustomResourceDefinition,
) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(versions) = value
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                trim_embedded(schema, "");
            }
        }
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// Drops every `oneOf` of a generated CRD: Argo Rollouts' CRDs have none, so a manifest they
/// accept must not be refused here. The derived schema of a one-key enum (a canary step, a metric
/// provider, a string match) is an object with one property per variant plus a `oneOf` requiring
/// exactly one; without it the object accepts any of them together, as Argo's struct does. A step
/// with several actions is read and reported by `validate`; a provider or a string match with
/// two keys is refused when the object is read, as Argo's own validation refuses it.
pub(crate) fn without_one_of(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(object) => {
                object.remove("oneOf");
                object.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(versions) = value
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                strip(schema);
            }
        }
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// Walks a schema; below a property listed in [`EMBEDDED`], removes every description.
fn trim_embedded(schema: &mut Value, name: &str) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (child, child_schema) in properties.iter_mut() {
            if EMBEDDED.contains(&(name, child.as_str())) {
                strip_descriptions(child_schema);
                loosen_quantities(child_schema, "");
                optional_reference_names(child_schema);
            } else {
                trim_embedded(child_schema, child);
            }
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let Some(child) = object.get_mut(nested) {
            trim_embedded(child, name);
        }
    }
}

/// Lets quantities be numbers, as Kubernetes and Argo Rollouts let them be: `cpu: 0.5` is a
/// quantity a Deployment takes, but the int-or-string schema of `resource.Quantity` refuses a
/// number with a fraction. Maps of quantities (`limits`, `requests`, `overhead`: the only maps of
/// int-or-string values in a pod spec) and `sizeLimit` keep whatever value is written, as in Argo
/// Rollouts' own CRD; the controller reads numbers as quantities.
fn loosen_quantities(schema: &mut Value, name: &str) {
    let int_or_string = |v: &Value| v.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if name == "sizeLimit" && int_or_string(schema) {
        *schema = serde_json::json!({ "x-kubernetes-preserve-unknown-fields": true });
        return;
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object
        .get("additionalProperties")
        .is_some_and(int_or_string)
    {
        object.insert(
            "additionalProperties".into(),
            serde_json::json!({ "x-kubernetes-preserve-unknown-fields": true }),
        );
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (child, child_schema) in properties.iter_mut() {
            loosen_quantities(child_schema, child);
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let Some(child) = object.get_mut(nested) {
            loosen_quantities(child, name);
        }
    }
}

/// Makes `name` optional in references to ConfigMaps, Secrets and pull secrets, as Kubernetes and
/// Argo Rollouts have it (`secretKeyRef: {key: token}` means the Secret named ""; Kubernetes
/// defaults it): k8s-openapi's types hold the name as a plain string, so their derived schema
/// requires it. A reference is an object whose properties are among `name`, `key`, `optional`.
fn optional_reference_names(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let is_reference = object
                .get("properties")
                .and_then(Value::as_object)
                .is_some_and(|p| {
                    p.contains_key("name")
                        && p.keys()
                            .all(|k| matches!(k.as_str(), "name" | "key" | "optional"))
                });
            if is_reference && let Some(Value::Array(required)) = object.get_mut("required") {
                required.retain(|r| r != "name");
                if required.is_empty() {
                    object.remove("required");
                }
            }
            object.values_mut().for_each(optional_reference_names);
        }
        Value::Array(items) => items.iter_mut().for_each(optional_reference_names),
        _ => {}
    }
}

/// Removes `description` strings from a schema and all its sub-schemas (a property that happens
/// to be named `description` is a schema object, not a string, and stays).
fn strip_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if object.get("description").is_some_and(Value::is_string) {
                object.remove("description");
            }
            object.values_mut().for_each(strip_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// `metav1.Time`: an RFC 3339 timestamp string.
pub(crate) fn time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

/// Any JSON value, kept as written (plugin configuration, a web metric's `jsonBody`).
pub(crate) fn any_json(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// A JSON object whose content is kept as written (embedded Kubernetes objects, plugin maps).
pub(crate) fn open_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// The `labels` and `annotations` of an object a template makes (a metric's Job), spelled out as
/// Argo's CRDs spell them; any other `ObjectMeta` field is kept as written.
pub(crate) fn template_metadata(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "labels": { "type": "object", "additionalProperties": { "type": "string" } },
            "annotations": { "type": "object", "additionalProperties": { "type": "string" } }
        },
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// `metav1.LabelSelector`, spelled out so the apiserver checks its shape.
pub(crate) fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "Selects the pods of the rollout; must match the pod template's labels.",
        "properties": {
            "matchLabels": {
                "type": "object",
                "additionalProperties": { "type": "string" }
            },
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": { "type": "string" },
                        "operator": { "type": "string" },
                        "values": { "type": "array", "items": { "type": "string" } }
                    }
                }
            }
        },
        "x-kubernetes-map-type": "atomic"
    })
}
