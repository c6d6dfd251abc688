//! NGINX Ingress: a canary Ingress beside each stable Ingress, carrying the canary annotations.
//!
//! For every stable Ingress (`nginx.stableIngress` or `nginx.stableIngresses`) the router keeps a
//! canary Ingress named `<rollout>-<stableIngress>-canary` (Argo Rollouts' name, so the canary
//! Ingresses Argo made are taken over): a copy of the stable Ingress's rules that have a path
//! to the stable Service, with those paths sent to the canary Service, its TLS and ingress class
//! kept, and the annotations `<prefix>/canary: "true"`, `<prefix>/canary-weight` and, when the
//! max weight is not 100, `<prefix>/canary-weight-total`, plus `additionalIngressAnnotations`
//! (prefixed) and `canaryIngressAnnotations` (as given). The canary Ingress is the rollout's
//! (an owner reference to the Rollout as Argo sets, or the managed-by annotation Sluice sets):
//! the router creates it, rewrites its annotations and spec whole, and refuses one that belongs
//! to something else. The stable Ingress is only read.
//!
//! A header route in force becomes ingress-nginx's `canary-by-header` with
//! `canary-by-header-value` (exact) or `canary-by-header-pattern` (regex): one route with one
//! header, since a canary Ingress has one header condition; prefix matches have no ingress-nginx
//! equivalent. (Argo Rollouts' NGINX router ignores header routes; users wrote the same
//! annotations by hand in `additionalIngressAnnotations`, which still works.) Mirror routes are
//! ignored, as Argo's NGINX router ignores them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_api::{NginxTrafficRouting, StringMatch, vocab::MANAGED_BY_ROLLOUTS_ANNOTATION};

use crate::common::{
    annotation, ingress_ref, list_or_one, names_nothing, new_object, non_empty_or, not_owned,
    note_share, owned_by, parse_weight, read_at, regex_escape, share, truncate_at_char,
};
use crate::{Current, Desired, ObjectRef, Router, RouterError, Write};

/// ingress-nginx's annotation prefix, used when `annotationPrefix` is not set.
pub const DEFAULT_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";
/// The suffix of a canary Ingress's name (Argo Rollouts').
pub const CANARY_SUFFIX: &str = "-canary";
/// The ingress class annotation ingress-nginx still reads; copied to the canary Ingress.
const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Longest name of an object (a DNS subdomain).
const MAX_NAME: usize = 253;

/// The NGINX router: canary Ingresses beside the stable ones.
#[derive(Clone, Debug)]
pub struct Nginx {
    config: NginxTrafficRouting,
}

impl Nginx {
    /// A router for `trafficRouting.nginx`.
    pub fn new(config: &NginxTrafficRouting) -> Self {
        Self {
            config: config.clone(),
        }
    }

    /// `stableIngresses`, else `stableIngress`.
    fn stable_ingresses(&self) -> Vec<String> {
        list_or_one(
            &self.config.stable_ingresses,
            self.config.stable_ingress.as_ref(),
        )
    }

    fn prefix(&self) -> &str {
        non_empty_or(
            self.config.annotation_prefix.as_deref(),
            DEFAULT_ANNOTATION_PREFIX,
        )
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix())
    }

    /// (stable, canary) references, in `objects()` order.
    fn pairs(&self, namespace: &str, rollout: &str) -> Vec<(ObjectRef, ObjectRef)> {
        self.stable_ingresses()
            .into_iter()
            .map(|stable| {
                let canary = canary_ingress_name(rollout, &stable);
                (
                    ingress_ref(namespace, stable),
                    ingress_ref(namespace, canary),
                )
            })
            .collect()
    }

    /// The read objects by pair; the stable Ingress must exist.
    fn read<'c>(
        &self,
        current: Current<'c>,
        desired: &Desired,
    ) -> Result<Vec<Pair<'c>>, RouterError> {
        let pairs = self.pairs(&desired.namespace, &desired.rollout);
        if pairs.is_empty() {
            return Err(names_nothing(
                desired,
                "trafficRouting.nginx names no Ingress: set stableIngress or stableIngresses",
            ));
        }
        pairs
            .into_iter()
            .enumerate()
            .map(|(i, (stable_ref, canary_ref))| {
                let stable = read_at(current, 2 * i, &stable_ref)?;
                let canary = current.get(2 * i + 1).and_then(Option::as_ref);
                Ok(Pair {
                    stable_ref,
                    stable,
                    canary_ref,
                    canary,
                })
            })
            .collect()
    }

    /// The annotations the canary Ingress must carry, exactly.
    fn annotations(
        &self,
        stable: &Value,
        canary_ref: &ObjectRef,
        desired: &Desired,
    ) -> Result<BTreeMap<String, String>, RouterError> {
        let mut out = BTreeMap::new();
        if let Some(class) = annotation(stable, INGRESS_CLASS_ANNOTATION) {
            out.insert(INGRESS_CLASS_ANNOTATION.to_string(), class.to_string());
        }
        for (key, value) in &self.config.additional_ingress_annotations {
            let key = if key.starts_with(self.prefix()) {
                key.clone()
            } else {
                self.key(key)
            };
            out.insert(key, value.clone());
        }
        for (key, value) in &self.config.canary_ingress_annotations {
            out.insert(key.clone(), value.clone());
        }
        if let Some((header, condition)) = self.header_condition(canary_ref, desired)? {
            let (set, unset) = match condition {
                HeaderCondition::Value(v) => {
                    (("canary-by-header-value", v), "canary-by-header-pattern")
                }
                HeaderCondition::Pattern(p) => {
                    (("canary-by-header-pattern", p), "canary-by-header-value")
                }
            };
            out.insert(self.key("canary-by-header"), header);
            out.insert(self.key(set.0), set.1);
            out.remove(&self.key(unset));
        }
        out.insert(self.key("canary"), "true".to_string());
        out.insert(self.key("canary-weight"), desired.canary_weight.to_string());
        let total = self.key("canary-weight-total");
        if desired.max_weight == 100 {
            out.remove(&total);
        } else {
            out.insert(total, desired.max_weight.to_string());
        }
        out.insert(
            MANAGED_BY_ROLLOUTS_ANNOTATION.to_string(),
            desired.rollout.clone(),
        );
        Ok(out)
    }

    /// The header and its condition of the header route in force, if one is.
    fn header_condition(
        &self,
        canary_ref: &ObjectRef,
        desired: &Desired,
    ) -> Result<Option<(String, HeaderCondition)>, RouterError> {
        let invalid = |message: String| RouterError::Invalid {
            object: canary_ref.to_string(),
            message,
        };
        let route = match desired.header_routes.as_slice() {
            [] => return Ok(None),
            [route] => route,
            routes => {
                let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
                return Err(invalid(format!(
                    "a canary Ingress has one header condition, but {} header routes are in force \
                     ({}); remove all but one with a setHeaderRoute step without match",
                    routes.len(),
                    names.join(", ")
                )));
            }
        };
        let [matched] = route.matches.as_slice() else {
            return Err(invalid(format!(
                "header route `{}` matches {} headers, but a canary Ingress has one header \
                 condition (canary-by-header); match one header",
                route.name,
                route.matches.len()
            )));
        };
        let condition = match &matched.header_value {
            StringMatch::Exact(v) => HeaderCondition::Value(v.clone()),
            StringMatch::Regex(p) => HeaderCondition::Pattern(p.clone()),
            StringMatch::Prefix(p) => {
                return Err(invalid(format!(
                    "header route `{}` matches header `{}` by prefix `{p}`, which ingress-nginx \
                     cannot express; use exact, or regex `^{}.*`",
                    route.name,
                    matched.header_name,
                    regex_escape(p)
                )));
            }
        };
        Ok(Some((matched.header_name.clone(), condition)))
    }

    /// The canary Ingress's spec: the stable rules sending to the stable Service, redirected.
    fn spec(&self, pair: &Pair<'_>, desired: &Desired) -> Result<Value, RouterError> {
        let stable_spec = pair.stable.get("spec");
        let mut rules = Vec::new();
        for rule in stable_spec
            .and_then(|s| s.get("rules"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut rule = rule.clone();
            let mut redirected = false;
            for path in rule
                .pointer_mut("/http/paths")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(service) = path.pointer_mut("/backend/service/name")
                    && service.as_str() == Some(desired.stable_service.as_str())
                {
                    *service = Value::String(desired.canary_service.clone());
                    redirected = true;
                }
            }
            if redirected {
                rules.push(rule);
            }
        }
        if rules.is_empty() || desired.stable_service.is_empty() {
            return Err(RouterError::Invalid {
                object: pair.stable_ref.to_string(),
                message: format!(
                    "no rule has a path whose backend is the stable Service `{}`, so there is \
                     nothing to copy into the canary Ingress",
                    desired.stable_service
                ),
            });
        }
        let mut spec = Map::new();
        if let Some(class) = stable_spec.and_then(|s| s.get("ingressClassName")) {
            spec.insert("ingressClassName".to_string(), class.clone());
        }
        spec.insert("rules".to_string(), Value::Array(rules));
        if let Some(tls) = stable_spec.and_then(|s| s.get("tls")) {
            spec.insert("tls".to_string(), tls.clone());
        }
        Ok(Value::Object(spec))
    }
}

/// The objects read for one stable Ingress.
struct Pair<'c> {
    stable_ref: ObjectRef,
    stable: &'c Value,
    canary_ref: ObjectRef,
    canary: Option<&'c Value>,
}

enum HeaderCondition {
    Value(String),
    Pattern(String),
}

/// `<rollout>-<stableIngress>-canary`, cut to fit a name as Argo Rollouts cuts it.
pub fn canary_ingress_name(rollout: &str, stable_ingress: &str) -> String {
    let mut prefix = format!("{rollout}-{stable_ingress}");
    truncate_at_char(&mut prefix, MAX_NAME - CANARY_SUFFIX.len());
    prefix + CANARY_SUFFIX
}

fn to_json(annotations: BTreeMap<String, String>) -> Value {
    Value::Object(
        annotations
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

impl Router for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    /// Each stable Ingress followed by its canary Ingress.
    fn objects(&self, namespace: &str, rollout: &str) -> Vec<ObjectRef> {
        self.pairs(namespace, rollout)
            .into_iter()
            .flat_map(|(stable, canary)| [stable, canary])
            .collect()
    }

    /// The canary Ingresses' `canary-weight` out of their `canary-weight-total`; 0 where a canary
    /// Ingress does not exist (the stable Ingress alone sends nothing to the canary). Where they
    /// disagree, the largest share that is not the desired one.
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let mut differing: Option<i32> = None;
        for pair in self.read(current, desired)? {
            let Some(canary) = pair.canary else {
                if desired.canary_weight != 0 {
                    differing = Some(differing.unwrap_or(0));
                }
                continue;
            };
            let annotations = canary.pointer("/metadata/annotations");
            let number = |key: &str| -> Result<Option<f64>, RouterError> {
                match annotations.and_then(|a| a.get(self.key(key))) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v.as_str().and_then(parse_weight).map(Some).ok_or_else(|| {
                        RouterError::Invalid {
                            object: pair.canary_ref.to_string(),
                            message: format!("annotation {} is not a number: {v}", self.key(key)),
                        }
                    }),
                }
            };
            let enabled = annotations
                .and_then(|a| a.get(self.key("canary")))
                .and_then(Value::as_str)
                == Some("true");
            let weight = number("canary-weight")?.unwrap_or(0.0);
            let total = number("canary-weight-total")?.unwrap_or(100.0);
            let got = if enabled {
                share(weight, total, desired.max_weight)
            } else {
                0
            };
            note_share(&mut differing, got, desired);
        }
        Ok(differing.unwrap_or(desired.canary_weight))
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let mut writes = Vec::new();
        for pair in self.read(current, desired)? {
            let spec = self.spec(&pair, desired)?;
            let annotations = to_json(self.annotations(pair.stable, &pair.canary_ref, desired)?);
            let Some(canary) = pair.canary else {
                let created = new_object(&pair.canary_ref, annotations, spec);
                writes.push(Write::Create(pair.canary_ref, created));
                continue;
            };
            if !owned_by(canary, &desired.rollout) {
                return Err(not_owned(
                    &pair.canary_ref,
                    &desired.rollout,
                    "rename or delete it so the rollout can make its canary Ingress",
                ));
            }
            let mut updated = canary.clone();
            if let Some(root) = updated.as_object_mut() {
                let metadata = root
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(metadata) = metadata.as_object_mut() {
                    metadata.insert("annotations".to_string(), annotations);
                }
                root.insert("spec".to_string(), spec);
            }
            if updated != *canary {
                writes.push(Write::Replace(pair.canary_ref, updated));
            }
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_api::HeaderMatch;

    use super::*;
    use crate::common::tests::{self as fixtures, created, replaced};
    use crate::{HeaderRoute, MirrorRoute};

    fn desired(weight: i32) -> Desired {
        fixtures::desired(
            "rollouts-demo",
            "default",
            "rollouts-demo-canary",
            "rollouts-demo-stable",
            weight,
        )
    }

    fn router() -> Nginx {
        Nginx::new(&NginxTrafficRouting {
            stable_ingress: Some("rollouts-demo-stable".into()),
            ..Default::default()
        })
    }

    /// The stable Ingress of Argo's NGINX getting-started guide, plus a second host whose
    /// backend is another Service, TLS and an unrelated annotation.
    fn stable() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "rollouts-demo-stable",
                "namespace": "default",
                "resourceVersion": "100",
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/proxy-body-size": "8m"
                }
            },
            "spec": {
                "rules": [
                    {
                        "host": "rollouts-demo.local",
                        "http": {"paths": [{
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "rollouts-demo-stable", "port": {"number": 80}}}
                        }]}
                    },
                    {
                        "host": "admin.local",
                        "http": {"paths": [{
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "admin", "port": {"number": 80}}}
                        }]}
                    }
                ],
                "tls": [{"hosts": ["rollouts-demo.local"], "secretName": "demo-tls"}]
            }
        })
    }

    /// What the API server returns for a created object.
    fn stored(body: Value) -> Value {
        fixtures::stored(body, "200", "c-1")
    }

    fn header_route(name: &str, header: &str, value: StringMatch) -> HeaderRoute {
        HeaderRoute {
            name: name.into(),
            matches: vec![HeaderMatch {
                header_name: header.into(),
                header_value: value,
            }],
        }
    }

    #[test]
    fn objects_are_each_stable_ingress_and_its_canary() {
        let r = Nginx::new(&NginxTrafficRouting {
            stable_ingress: Some("ignored-when-several".into()),
            stable_ingresses: vec!["primary".into(), "secondary".into()],
            ..Default::default()
        });
        let names: Vec<String> = r
            .objects("default", "demo")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "Ingress default/primary",
                "Ingress default/demo-primary-canary",
                "Ingress default/secondary",
                "Ingress default/demo-secondary-canary"
            ]
        );
    }

    #[test]
    fn creates_the_canary_ingress_argo_would() {
        let writes = router()
            .reconcile(&[Some(stable()), None], &desired(20))
            .unwrap();
        assert_eq!(
            writes[0].target().to_string(),
            "Ingress default/rollouts-demo-rollouts-demo-stable-canary"
        );
        assert_eq!(
            *created(&writes),
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": "rollouts-demo-rollouts-demo-stable-canary",
                    "namespace": "default",
                    "annotations": {
                        "kubernetes.io/ingress.class": "nginx",
                        "nginx.ingress.kubernetes.io/canary": "true",
                        "nginx.ingress.kubernetes.io/canary-weight": "20",
                        "argo-rollouts.argoproj.io/managed-by-rollouts": "rollouts-demo"
                    }
                },
                "spec": {
                    "rules": [{
                        "host": "rollouts-demo.local",
                        "http": {"paths": [{
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "rollouts-demo-canary", "port": {"number": 80}}}
                        }]}
                    }],
                    "tls": [{"hosts": ["rollouts-demo.local"], "secretName": "demo-tls"}]
                }
            })
        );
    }

    #[test]
    fn a_second_reconcile_writes_nothing_and_weight_reads_it_back() {
        let r = router();
        let first = r.reconcile(&[Some(stable()), None], &desired(20)).unwrap();
        let canary = stored(created(&first).clone());
        let current = [Some(stable()), Some(canary)];
        assert_eq!(r.reconcile(&current, &desired(20)).unwrap(), vec![]);
        assert_eq!(r.weight(&current, &desired(20)).unwrap(), 20);
        assert_eq!(r.weight(&current, &desired(50)).unwrap(), 20);
    }

    #[test]
    fn a_new_weight_replaces_the_canary_ingress_keeping_its_metadata() {
        let r = router();
        let first = r.reconcile(&[Some(stable()), None], &desired(20)).unwrap();
        let mut canary = stored(created(&first).clone());
        canary["metadata"]["labels"] = json!({"kept": "yes"});
        let writes = r
            .reconcile(&[Some(stable()), Some(canary)], &desired(60))
            .unwrap();
        let body = replaced(&writes);
        assert_eq!(
            body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
            "60"
        );
        assert_eq!(body["metadata"]["resourceVersion"], "200");
        assert_eq!(body["metadata"]["uid"], "c-1");
        assert_eq!(body["metadata"]["labels"]["kept"], "yes");
    }

    #[test]
    fn takes_over_the_canary_ingress_argo_made() {
        let argo = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "rollouts-demo-rollouts-demo-stable-canary",
                "namespace": "default",
                "resourceVersion": "77",
                "ownerReferences": [{
                    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "rollouts-demo",
                    "uid": "r-1", "controller": true, "blockOwnerDeletion": true
                }],
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "20"
                }
            },
            "spec": created(&router().reconcile(&[Some(stable()), None], &desired(20)).unwrap())["spec"].clone()
        });
        let current = [Some(stable()), Some(argo)];
        assert_eq!(router().weight(&current, &desired(20)).unwrap(), 20);
        let writes = router().reconcile(&current, &desired(20)).unwrap();
        let body = replaced(&writes);
        // Only the managed-by annotation is added; the owner reference stays for garbage collection.
        assert_eq!(
            body["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"],
            "rollouts-demo"
        );
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "r-1");
        assert_eq!(body["metadata"]["resourceVersion"], "77");
    }

    #[test]
    fn a_canary_ingress_of_someone_else_is_refused() {
        let foreign = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "rollouts-demo-rollouts-demo-stable-canary", "namespace": "default"},
            "spec": {}
        });
        let err = router()
            .reconcile(&[Some(stable()), Some(foreign)], &desired(20))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not belong to rollout `rollouts-demo`"),
            "{err}"
        );
    }

    #[test]
    fn the_stable_ingress_is_never_written() {
        let writes = router()
            .reconcile(&[Some(stable()), None], &desired(20))
            .unwrap();
        assert!(
            writes
                .iter()
                .all(|w| w.target().name != "rollouts-demo-stable")
        );
    }

    #[test]
    fn annotations_from_the_spec_and_the_weight_total() {
        let r = Nginx::new(&NginxTrafficRouting {
            stable_ingress: Some("rollouts-demo-stable".into()),
            annotation_prefix: Some("custom.nginx.org".into()),
            additional_ingress_annotations: [
                ("canary-by-header".to_string(), "X-Canary".to_string()),
                (
                    "custom.nginx.org/load-balance".to_string(),
                    "ewma".to_string(),
                ),
            ]
            .into(),
            canary_ingress_annotations: [(
                "my-custom-annotation.mygroup.com/key".to_string(),
                "value".to_string(),
            )]
            .into(),
            ..Default::default()
        });
        let mut d = desired(5);
        d.max_weight = 1000;
        let writes = r.reconcile(&[Some(stable()), None], &d).unwrap();
        assert_eq!(
            created(&writes)["metadata"]["annotations"],
            json!({
                "kubernetes.io/ingress.class": "nginx",
                "custom.nginx.org/canary-by-header": "X-Canary",
                "custom.nginx.org/load-balance": "ewma",
                "my-custom-annotation.mygroup.com/key": "value",
                "custom.nginx.org/canary": "true",
                "custom.nginx.org/canary-weight": "5",
                "custom.nginx.org/canary-weight-total": "1000",
                "argo-rollouts.argoproj.io/managed-by-rollouts": "rollouts-demo"
            })
        );
        let canary = stored(created(&writes).clone());
        assert_eq!(r.weight(&[Some(stable()), Some(canary)], &d).unwrap(), 5);
    }

    #[test]
    fn ingress_class_name_is_copied() {
        let mut s = stable();
        s["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("kubernetes.io/ingress.class");
        s["spec"]["ingressClassName"] = json!("nginx-internal");
        let writes = router().reconcile(&[Some(s), None], &desired(0)).unwrap();
        let body = created(&writes);
        assert_eq!(body["spec"]["ingressClassName"], "nginx-internal");
        assert!(
            body["metadata"]["annotations"]
                .get("kubernetes.io/ingress.class")
                .is_none()
        );
    }

    #[test]
    fn an_exact_header_route_becomes_canary_by_header_and_goes_away_after() {
        let r = router();
        let mut d = desired(10);
        d.header_routes = vec![header_route(
            "set-header-1",
            "X-Canary",
            StringMatch::Exact("yes".into()),
        )];
        let first = r.reconcile(&[Some(stable()), None], &d).unwrap();
        let annotations = &created(&first)["metadata"]["annotations"];
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/canary-by-header"],
            "X-Canary"
        );
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/canary-by-header-value"],
            "yes"
        );
        let canary = stored(created(&first).clone());
        let current = [Some(stable()), Some(canary)];
        assert_eq!(r.reconcile(&current, &d).unwrap(), vec![]);
        let writes = r.reconcile(&current, &desired(10)).unwrap();
        let annotations = replaced(&writes)["metadata"]["annotations"]
            .as_object()
            .unwrap();
        assert!(
            !annotations.keys().any(|k| k.contains("canary-by-header")),
            "{annotations:?}"
        );
    }

    #[test]
    fn a_regex_header_route_replaces_a_configured_header_value() {
        let r = Nginx::new(&NginxTrafficRouting {
            stable_ingress: Some("rollouts-demo-stable".into()),
            additional_ingress_annotations: [
                ("canary-by-header".to_string(), "X-Team".to_string()),
                ("canary-by-header-value".to_string(), "qa".to_string()),
            ]
            .into(),
            ..Default::default()
        });
        let mut d = desired(10);
        d.header_routes = vec![header_route(
            "agent",
            "User-Agent",
            StringMatch::Regex("firefox(.*)".into()),
        )];
        let writes = r.reconcile(&[Some(stable()), None], &d).unwrap();
        let annotations = &created(&writes)["metadata"]["annotations"];
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/canary-by-header"],
            "User-Agent"
        );
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/canary-by-header-pattern"],
            "firefox(.*)"
        );
        assert!(
            annotations
                .get("nginx.ingress.kubernetes.io/canary-by-header-value")
                .is_none()
        );
    }

    #[test]
    fn header_routes_nginx_cannot_express_are_errors() {
        let r = router();
        let mut d = desired(10);
        d.header_routes = vec![header_route(
            "h",
            "X-Canary",
            StringMatch::Prefix("be".into()),
        )];
        let err = r.reconcile(&[Some(stable()), None], &d).unwrap_err();
        assert!(err.to_string().contains("by prefix `be`"), "{err}");
        assert!(matches!(err, RouterError::Invalid { .. }));

        d.header_routes = vec![
            header_route("a", "X-A", StringMatch::Exact("1".into())),
            header_route("b", "X-B", StringMatch::Exact("1".into())),
        ];
        let err = r.reconcile(&[Some(stable()), None], &d).unwrap_err();
        assert!(
            err.to_string()
                .contains("2 header routes are in force (a, b)"),
            "{err}"
        );

        let mut two = header_route("c", "X-A", StringMatch::Exact("1".into()));
        two.matches.push(two.matches[0].clone());
        d.header_routes = vec![two];
        let err = r.reconcile(&[Some(stable()), None], &d).unwrap_err();
        assert!(err.to_string().contains("matches 2 headers"), "{err}");
    }

    #[test]
    fn mirror_routes_are_ignored() {
        let mut d = desired(10);
        d.mirror_routes = vec![MirrorRoute {
            name: "mirror".into(),
            matches: vec![Default::default()],
            percentage: 50,
        }];
        assert_eq!(
            router().reconcile(&[Some(stable()), None], &d).unwrap(),
            router()
                .reconcile(&[Some(stable()), None], &desired(10))
                .unwrap()
        );
    }

    #[test]
    fn a_stable_ingress_without_the_stable_service_is_an_error() {
        let mut s = stable();
        s["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = json!("other");
        let err = router()
            .reconcile(&[Some(s), None], &desired(10))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Ingress default/rollouts-demo-stable: no rule has a path whose backend is the stable \
             Service `rollouts-demo-stable`, so there is nothing to copy into the canary Ingress"
        );
    }

    #[test]
    fn a_missing_stable_ingress_is_not_found() {
        let err = router().reconcile(&[None, None], &desired(10)).unwrap_err();
        assert_eq!(
            err,
            RouterError::NotFound("Ingress default/rollouts-demo-stable".into())
        );
        assert!(router().weight(&[], &desired(10)).is_err());
    }

    #[test]
    fn no_canary_ingress_means_no_canary_traffic() {
        assert_eq!(
            router()
                .weight(&[Some(stable()), None], &desired(30))
                .unwrap(),
            0
        );
        assert_eq!(
            router()
                .weight(&[Some(stable()), None], &desired(0))
                .unwrap(),
            0
        );
    }

    #[test]
    fn no_stable_ingress_configured_is_an_error() {
        let r = Nginx::new(&NginxTrafficRouting::default());
        assert!(r.objects("default", "demo").is_empty());
        let err = r.reconcile(&[], &desired(10)).unwrap_err();
        assert!(
            err.to_string()
                .contains("set stableIngress or stableIngresses"),
            "{err}"
        );
    }

    #[test]
    fn long_names_are_cut_as_argo_cuts_them() {
        let name = canary_ingress_name(&"r".repeat(200), &"s".repeat(100));
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("s-canary"));
        assert_eq!(canary_ingress_name("demo", "web"), "demo-web-canary");
    }
}
