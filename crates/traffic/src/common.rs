//! Pieces every router shares: reading objects, errors, ownership, weights and metadata.

use serde_json::{Map, Value, json};
use sluice_api::vocab::MANAGED_BY_ROLLOUTS_ANNOTATION;

use crate::{Current, Desired, ObjectRef, RouterError};

/// `RouterError::Invalid` about `object`.
pub(crate) fn invalid(object: &ObjectRef, message: impl Into<String>) -> RouterError {
    RouterError::Invalid {
        object: object.to_string(),
        message: message.into(),
    }
}

/// `RouterError::Invalid` about the rollout itself (its spec names no object to route with).
pub(crate) fn names_nothing(desired: &Desired, message: &str) -> RouterError {
    RouterError::Invalid {
        object: format!("Rollout {}/{}", desired.namespace, desired.rollout),
        message: message.to_string(),
    }
}

/// The object read at `index` of `current`, or `NotFound` naming `object`.
pub(crate) fn read_at<'c>(
    current: Current<'c>,
    index: usize,
    object: &ObjectRef,
) -> Result<&'c Value, RouterError> {
    current
        .get(index)
        .and_then(Option::as_ref)
        .ok_or_else(|| RouterError::NotFound(object.to_string()))
}

/// Every reference (in `objects()` order) with its object read; a missing one is `NotFound`.
pub(crate) fn read_all<'c>(
    refs: Vec<ObjectRef>,
    current: Current<'c>,
) -> Result<Vec<(ObjectRef, &'c Value)>, RouterError> {
    refs.into_iter()
        .enumerate()
        .map(|(i, object)| read_at(current, i, &object).map(|value| (object, value)))
        .collect()
}

/// `value` unless it is absent or empty, else `fallback`.
pub(crate) fn non_empty_or<'a>(value: Option<&'a str>, fallback: &'a str) -> &'a str {
    value.filter(|s| !s.is_empty()).unwrap_or(fallback)
}

/// `list`, else the single name `one` (when set and not empty).
pub(crate) fn list_or_one(list: &[String], one: Option<&String>) -> Vec<String> {
    if list.is_empty() {
        one.filter(|n| !n.is_empty()).cloned().into_iter().collect()
    } else {
        list.to_vec()
    }
}

/// The names in `names`, in order, without empty or repeated ones nor `except`.
pub(crate) fn distinct_names<'a>(names: &'a [String], except: Option<&str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for name in names {
        if !name.is_empty() && Some(name.as_str()) != except && !out.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out
}

/// `s` cut to at most `len` bytes, at a character boundary.
pub(crate) fn truncate_at_char(s: &mut String, len: usize) {
    if s.len() > len {
        let mut cut = len;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// `s` with the characters a regular expression reads specially escaped.
pub(crate) fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The Ingress `name` in `namespace`.
pub(crate) fn ingress_ref(namespace: &str, name: String) -> ObjectRef {
    ObjectRef {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        plural: "ingresses",
        namespace: namespace.to_string(),
        name,
    }
}

/// The text of the annotation `key`, if the object has it.
pub(crate) fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Whether the managed-by annotation names the rollout.
pub(crate) fn annotated(object: &Value, rollout: &str) -> bool {
    annotation(object, MANAGED_BY_ROLLOUTS_ANNOTATION)
        .is_some_and(|names| names.split(',').any(|n| n.trim() == rollout))
}

/// Whether a controller owner reference names the Rollout `rollout` (as Argo sets it).
pub(crate) fn controlled_by(object: &Value, rollout: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("kind").and_then(Value::as_str) == Some("Rollout")
                    && r.get("name").and_then(Value::as_str) == Some(rollout)
                    && r.get("controller").and_then(Value::as_bool) == Some(true)
            })
        })
}

/// Whether the rollout owns `object`: Argo's controller owner reference, or Sluice's annotation.
pub(crate) fn owned_by(object: &Value, rollout: &str) -> bool {
    controlled_by(object, rollout) || annotated(object, rollout)
}

/// The error for an object that exists but is not the rollout's; `advice` says what to do.
pub(crate) fn not_owned(object: &ObjectRef, rollout: &str, advice: &str) -> RouterError {
    invalid(
        object,
        format!(
            "exists but does not belong to rollout `{rollout}` (no controller owner reference to \
             the Rollout, no `{MANAGED_BY_ROLLOUTS_ANNOTATION}` annotation naming it); {advice}"
        ),
    )
}

/// Sets the annotation `key` of an object, making `metadata` and `annotations` maps as needed.
pub(crate) fn set_annotation(root: &mut Map<String, Value>, key: &str, value: String) {
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    if let Some(metadata) = metadata.as_object_mut() {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(key.to_string(), Value::String(value));
        }
    }
}

/// A new object the router owns: `object`'s kind and name, `annotations` and `spec`.
pub(crate) fn new_object(object: &ObjectRef, annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": object.api_version(),
        "kind": object.kind,
        "metadata": {
            "name": object.name,
            "namespace": object.namespace,
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// The managed-by annotations naming `rollout`, for an object the router creates.
pub(crate) fn managed_by(rollout: &str) -> Value {
    json!({ MANAGED_BY_ROLLOUTS_ANNOTATION: rollout })
}

/// `w` if it is a finite, non-negative weight.
pub(crate) fn non_negative(w: f64) -> Option<f64> {
    Some(w).filter(|w| w.is_finite() && *w >= 0.0)
}

/// A weight written as text (spaces around allowed).
pub(crate) fn parse_weight(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().and_then(non_negative)
}

/// A weight written as a JSON number.
pub(crate) fn number_weight(value: &Value) -> Option<f64> {
    value.as_f64().and_then(non_negative)
}

/// A weight written as a JSON number or as text.
pub(crate) fn number_or_text(value: &Value) -> Option<f64> {
    match value {
        Value::Number(_) => number_weight(value),
        Value::String(s) => parse_weight(s),
        _ => None,
    }
}

/// An entry's `weight` number, `default` when absent; the unreadable value as the error.
pub(crate) fn weight_or(entry: &Value, default: f64) -> Result<f64, &Value> {
    match entry.get("weight") {
        None | Some(Value::Null) => Ok(default),
        Some(w) => number_weight(w).ok_or(w),
    }
}

/// Sets `weight` unless the entry already carries that number.
pub(crate) fn set_weight(entry: &mut Value, weight: i32) {
    if entry.get("weight").and_then(Value::as_f64) == Some(f64::from(weight)) {
        return;
    }
    if let Some(map) = entry.as_object_mut() {
        map.insert("weight".to_string(), Value::from(weight));
    }
}

/// `part` of `total`, in units of `max`, rounded up so that any traffic at all counts.
pub(crate) fn share(part: f64, total: f64, max: i32) -> i32 {
    if part <= 0.0 || total <= 0.0 {
        return 0;
    }
    let scaled = (part * f64::from(max) / total).ceil();
    if scaled >= f64::from(max) {
        max
    } else {
        // In 0..max, so the conversion is exact.
        scaled as i32
    }
}

/// Notes one object's canary share: where objects disagree, the largest share that is not the
/// desired one is the weight reported.
pub(crate) fn note_share(differing: &mut Option<i32>, got: i32, desired: &Desired) {
    if got != desired.canary_weight {
        *differing = Some(differing.map_or(got, |d| d.max(got)));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Fixtures the routers' tests share.

    use serde_json::{Value, json};

    use crate::{Desired, Write};

    /// A `Desired` at `weight` out of 100, without header or mirror routes.
    pub(crate) fn desired(
        rollout: &str,
        namespace: &str,
        canary_service: &str,
        stable_service: &str,
        weight: i32,
    ) -> Desired {
        Desired {
            rollout: rollout.into(),
            namespace: namespace.into(),
            canary_weight: weight,
            max_weight: 100,
            canary_service: canary_service.into(),
            stable_service: stable_service.into(),
            canary_hash: "6c7f6b8d9".into(),
            stable_hash: "5b9c8d7f6".into(),
            header_routes: Vec::new(),
            mirror_routes: Vec::new(),
        }
    }

    /// The body of the only write, which must be a `Replace`.
    pub(crate) fn replaced(writes: &[Write]) -> &Value {
        match writes {
            [Write::Replace(_, body)] => body,
            other => panic!("expected one Replace, got {other:?}"),
        }
    }

    /// The body of the only write, which must be a `Create`.
    pub(crate) fn created(writes: &[Write]) -> &Value {
        match writes {
            [Write::Create(_, body)] => body,
            other => panic!("expected one Create, got {other:?}"),
        }
    }

    /// What the API server returns for a created object (`resourceVersion` and `uid` set).
    pub(crate) fn stored(mut body: Value, resource_version: &str, uid: &str) -> Value {
        body["metadata"]["resourceVersion"] = json!(resource_version);
        body["metadata"]["uid"] = json!(uid);
        body
    }
}
