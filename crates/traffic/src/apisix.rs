//! Apache APISIX: the canary's share in an ApisixRoute's weighted backends, and header routes as
//! ApisixRoutes of their own.
//!
//! The router reads the `apisix.apache.org/v2` ApisixRoute named `apisix.route.name`. In each of
//! its `spec.http` rules named in `apisix.route.rules` (when none are named: the rule named after
//! the ApisixRoute, as Argo Rollouts picks it, or else the route's only rule), it writes only the
//! `weight` of the backends whose `serviceName` is the canary and the stable Service: the canary's
//! weight and what is left of the max weight. Every other backend, rule and field stays as
//! written (APISIX weights are relative, so a third backend keeps its share).
//!
//! A header route in force is, as in Argo, an ApisixRoute named after the managed route: a copy
//! of the rollout's rules with the stable backend removed, the canary backend at weight 100, one
//! priority above the rule copied, and the route's headers added to the rule's `match.exprs`
//! (every header must match; exact is `Equal`, regex `RegexMatch`, prefix a `RegexMatch` on
//! `^prefix.*`). It carries the managed-by annotation, follows the ApisixRoute it was copied from,
//! and is deleted when its route is no longer in force; an ApisixRoute of that name that belongs to
//! something else is refused, never rewritten or deleted. Mirror routes are ignored, as Argo's
//! APISIX router ignores them.

use serde_json::{Map, Value, json};
use sluice_api::{ApisixTrafficRouting, StringMatch, vocab::MANAGED_BY_ROLLOUTS_ANNOTATION};

use crate::common::{
    annotated, distinct_names, invalid, managed_by, names_nothing, new_object, not_owned,
    note_share, owned_by, read_at, regex_escape, set_annotation, set_weight, share, weight_or,
};
use crate::{Current, Desired, HeaderRoute, ObjectRef, Router, RouterError, Write};

/// The API group of the APISIX Ingress Controller's CRDs.
pub const GROUP: &str = "apisix.apache.org";
/// The ApisixRoute version Argo Rollouts reads.
pub const VERSION: &str = "v2";
/// Weight the APISIX Ingress Controller gives a backend that does not say.
const APISIX_DEFAULT_WEIGHT: f64 = 100.0;
/// A header route's canary backend weight (the only backend that matters there).
const HEADER_ROUTE_WEIGHT: i32 = 100;

/// The APISIX router: weights in an ApisixRoute's rules, header routes beside it.
#[derive(Clone, Debug)]
pub struct Apisix {
    config: ApisixTrafficRouting,
    /// Every managed route's name: one not in force has its ApisixRoute removed.
    managed: Vec<String>,
}

impl Apisix {
    /// A router for `trafficRouting.apisix`; `managed_routes` is every name in
    /// `trafficRouting.managedRoutes`, so that header routes no longer in force can be removed.
    pub fn new(config: &ApisixTrafficRouting, managed_routes: &[String]) -> Self {
        Self {
            config: config.clone(),
            managed: managed_routes.to_vec(),
        }
    }

    /// The ApisixRoute's name, if the spec gives one.
    fn route_name(&self) -> Option<&str> {
        self.config
            .route
            .as_ref()
            .map(|r| r.name.as_str())
            .filter(|n| !n.is_empty())
    }

    /// The managed route names with an ApisixRoute of their own, in `objects()` order.
    fn managed_names(&self) -> Vec<&str> {
        distinct_names(&self.managed, self.route_name())
    }

    /// The rollout's ApisixRoute, read.
    fn read<'c>(
        &self,
        current: Current<'c>,
        desired: &Desired,
    ) -> Result<(ObjectRef, &'c Value), RouterError> {
        let Some(name) = self.route_name() else {
            return Err(names_nothing(
                desired,
                "trafficRouting.apisix names no ApisixRoute: set apisix.route.name",
            ));
        };
        let object = route_ref(&desired.namespace, name.to_string());
        let route = read_at(current, 0, &object)?;
        Ok((object, route))
    }

    /// Positions in `spec.http` of the rules to split.
    fn rules(&self, route: &Value, object: &ObjectRef) -> Result<Vec<usize>, RouterError> {
        let rules = route
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(object, "has no spec.http list of rules".to_string()))?;
        let position = |name: &str| {
            rules
                .iter()
                .position(|r| r.get("name").and_then(Value::as_str) == Some(name))
        };
        let listed = self
            .config
            .route
            .as_ref()
            .map(|r| r.rules.as_slice())
            .unwrap_or_default();
        if listed.is_empty() {
            if let Some(i) = position(&object.name) {
                return Ok(vec![i]);
            }
            if rules.len() == 1 {
                return Ok(vec![0]);
            }
            return Err(invalid(
                object,
                format!(
                    "spec.http has {} rules and none is named `{}` after the ApisixRoute; list the \
                     rules to split in apisix.route.rules",
                    rules.len(),
                    object.name
                ),
            ));
        }
        let mut positions = Vec::new();
        for name in listed {
            let i = position(name)
                .ok_or_else(|| invalid(object, format!("spec.http has no rule named `{name}`")))?;
            if !positions.contains(&i) {
                positions.push(i);
            }
        }
        Ok(positions)
    }
}

fn route_ref(namespace: &str, name: String) -> ObjectRef {
    ObjectRef {
        group: GROUP,
        version: VERSION,
        kind: "ApisixRoute",
        plural: "apisixroutes",
        namespace: namespace.to_string(),
        name,
    }
}

/// A rule's name, for messages.
fn rule_name(rule: &Value) -> &str {
    rule.get("name").and_then(Value::as_str).unwrap_or("")
}

/// A rule's `backends`.
fn backends<'a>(rule: &'a Value, object: &ObjectRef) -> Result<&'a [Value], RouterError> {
    rule.get("backends")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| {
            invalid(
                object,
                format!("rule `{}` has no backends list", rule_name(rule)),
            )
        })
}

/// Positions of the canary and the stable backends of a rule.
fn positions(
    rule: &Value,
    desired: &Desired,
    object: &ObjectRef,
) -> Result<(usize, usize), RouterError> {
    let list = backends(rule, object)?;
    let find = |name: &str, which: &str| {
        list.iter()
            .position(|b| {
                !name.is_empty() && b.get("serviceName").and_then(Value::as_str) == Some(name)
            })
            .ok_or_else(|| {
                invalid(
                    object,
                    format!(
                        "rule `{}` has no backend whose serviceName is the {which} Service `{name}`",
                        rule_name(rule)
                    ),
                )
            })
    };
    Ok((
        find(&desired.canary_service, "canary")?,
        find(&desired.stable_service, "stable")?,
    ))
}

/// A backend's or upstream's weight as APISIX reads it (100 when absent).
fn entry_weight(entry: &Value, rule: &Value, object: &ObjectRef) -> Result<f64, RouterError> {
    weight_or(entry, APISIX_DEFAULT_WEIGHT).map_err(|w| {
        invalid(
            object,
            format!(
                "rule `{}` has a weight that is not a non-negative number: {w}",
                rule_name(rule)
            ),
        )
    })
}

/// The `match.exprs` entries of a header route (Argo's: Equal, RegexMatch, `^prefix.*`).
fn header_exprs(route: &HeaderRoute) -> Vec<Value> {
    route
        .matches
        .iter()
        .map(|m| {
            let (op, value) = match &m.header_value {
                StringMatch::Exact(v) => ("Equal", v.clone()),
                StringMatch::Regex(r) => ("RegexMatch", r.clone()),
                StringMatch::Prefix(p) => ("RegexMatch", format!("^{}.*", regex_escape(p))),
            };
            json!({
                "subject": {"scope": "Header", "name": m.header_name},
                "op": op,
                "value": value,
            })
        })
        .collect()
}

/// The spec of the ApisixRoute of a header route: the rules split, sent to the canary alone.
fn header_spec(
    route: &Value,
    rules: &[usize],
    header: &HeaderRoute,
    desired: &Desired,
    object: &ObjectRef,
) -> Result<Value, RouterError> {
    let mut spec = route
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Stream routes listen on ports: a copy would collide with the original.
    spec.remove("stream");
    let all = route
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut http = Vec::new();
    for rule in rules.iter().filter_map(|&i| all.get(i)) {
        let (canary, stable) = positions(rule, desired, object)?;
        let priority = match rule.get("priority") {
            None | Some(Value::Null) => 0,
            Some(p) => p.as_i64().ok_or_else(|| {
                invalid(
                    object,
                    format!(
                        "rule `{}` has a priority that is not a whole number: {p}",
                        rule_name(rule)
                    ),
                )
            })?,
        };
        let mut rule = rule.clone();
        if let Some(map) = rule.as_object_mut() {
            map.insert(
                "priority".to_string(),
                Value::from(priority.saturating_add(1)),
            );
            if let Some(list) = map.get_mut("backends").and_then(Value::as_array_mut) {
                if let Some(entry) = list.get_mut(canary) {
                    set_weight(entry, HEADER_ROUTE_WEIGHT);
                }
                list.remove(stable);
            }
            let matched = map
                .entry("match")
                .or_insert_with(|| Value::Object(Map::new()));
            if !matched.is_object() {
                *matched = Value::Object(Map::new());
            }
            if let Some(matched) = matched.as_object_mut() {
                let exprs = matched
                    .entry("exprs")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !exprs.is_array() {
                    *exprs = Value::Array(Vec::new());
                }
                if let Some(exprs) = exprs.as_array_mut() {
                    exprs.extend(header_exprs(header));
                }
            }
        }
        http.push(rule);
    }
    spec.insert("http".to_string(), Value::Array(http));
    Ok(Value::Object(spec))
}

/// `object` with the managed-by annotation naming `rollout` and `spec`.
fn with_annotation_and_spec(object: &Value, rollout: &str, spec: Value) -> Value {
    let mut updated = object.clone();
    if let Some(root) = updated.as_object_mut() {
        if !annotated(object, rollout) {
            set_annotation(root, MANAGED_BY_ROLLOUTS_ANNOTATION, rollout.to_string());
        }
        root.insert("spec".to_string(), spec);
    }
    updated
}

impl Router for Apisix {
    fn name(&self) -> &'static str {
        "apisix"
    }

    /// The rollout's ApisixRoute, then one per managed route (its header route's).
    fn objects(&self, namespace: &str, _rollout: &str) -> Vec<ObjectRef> {
        let Some(name) = self.route_name() else {
            return Vec::new();
        };
        std::iter::once(route_ref(namespace, name.to_string()))
            .chain(
                self.managed_names()
                    .into_iter()
                    .map(|m| route_ref(namespace, m.to_string())),
            )
            .collect()
    }

    /// The canary's share of the weights of each rule split (APISIX's weights are relative);
    /// where the rules disagree, the largest share that is not the desired one.
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let (object, route) = self.read(current, desired)?;
        let all = route
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut differing: Option<i32> = None;
        for rule in self
            .rules(route, &object)?
            .into_iter()
            .filter_map(|i| all.get(i))
        {
            let (canary, _) = positions(rule, desired, &object)?;
            let list = backends(rule, &object)?;
            let upstreams = rule
                .get("upstreams")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut total = 0.0;
            for entry in list.iter().chain(upstreams) {
                total += entry_weight(entry, rule, &object)?;
            }
            let part = list
                .get(canary)
                .map_or(Ok(0.0), |e| entry_weight(e, rule, &object))?;
            let got = share(part, total, desired.max_weight);
            note_share(&mut differing, got, desired);
        }
        Ok(differing.unwrap_or(desired.canary_weight))
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let (object, route) = self.read(current, desired)?;
        let rules = self.rules(route, &object)?;
        let mut updated = route.clone();
        for &i in &rules {
            let rule = updated
                .pointer_mut("/spec/http")
                .and_then(Value::as_array_mut)
                .and_then(|http| http.get_mut(i));
            let Some(rule) = rule else { continue };
            let (canary, stable) = positions(rule, desired, &object)?;
            if let Some(list) = rule.get_mut("backends").and_then(Value::as_array_mut) {
                if let Some(entry) = list.get_mut(canary) {
                    set_weight(entry, desired.canary_weight);
                }
                if let Some(entry) = list.get_mut(stable) {
                    set_weight(entry, desired.stable_weight());
                }
            }
        }
        let mut writes = Vec::new();
        if updated != *route {
            writes.push(Write::Replace(object.clone(), updated));
        }

        let managed = self.managed_names();
        for header in &desired.header_routes {
            if !managed.contains(&header.name.as_str()) {
                return Err(invalid(
                    &object,
                    format!(
                        "header route `{}` has no ApisixRoute of its own: list it in \
                         trafficRouting.managedRoutes under a name other than the ApisixRoute's",
                        header.name
                    ),
                ));
            }
        }
        for (j, name) in managed.into_iter().enumerate() {
            let header_ref = route_ref(&desired.namespace, name.to_string());
            let existing = current.get(1 + j).and_then(Option::as_ref);
            let in_force = desired.header_routes.iter().find(|h| h.name == name);
            let owned = existing.is_none_or(|e| owned_by(e, &desired.rollout));
            match (in_force, existing) {
                (None, Some(_)) if owned => writes.push(Write::Delete(header_ref)),
                (None, _) => {}
                (Some(_), Some(_)) if !owned => {
                    return Err(not_owned(
                        &header_ref,
                        &desired.rollout,
                        "rename or delete it so the rollout can make its header route",
                    ));
                }
                (Some(header), None) => {
                    let spec = header_spec(route, &rules, header, desired, &object)?;
                    let created = new_object(&header_ref, managed_by(&desired.rollout), spec);
                    writes.push(Write::Create(header_ref, created));
                }
                (Some(header), Some(existing)) => {
                    let spec = header_spec(route, &rules, header, desired, &object)?;
                    let updated = with_annotation_and_spec(existing, &desired.rollout, spec);
                    if updated != *existing {
                        writes.push(Write::Replace(header_ref, updated));
                    }
                }
            }
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_api::{ApisixRoute, HeaderMatch};

    use super::*;
    use crate::MirrorRoute;
    use crate::common::tests::{self as fixtures, replaced};

    fn desired(weight: i32) -> Desired {
        fixtures::desired(
            "rollout-apisix-canary",
            "default",
            "rollout-apisix-canary-canary",
            "rollout-apisix-canary-stable",
            weight,
        )
    }

    fn config(rules: &[&str]) -> ApisixTrafficRouting {
        ApisixTrafficRouting {
            route: Some(ApisixRoute {
                name: "rollouts-apisix-route".into(),
                rules: rules.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    /// Argo's APISIX example (`rules: [rollouts-apisix]`, `managedRoutes: [set-header]`).
    fn router() -> Apisix {
        Apisix::new(&config(&["rollouts-apisix"]), &["set-header".to_string()])
    }

    /// The ApisixRoute of Argo's APISIX guide (no weights, for Argo CD), plus a second rule
    /// to another Service and a plugin on the split rule.
    fn route() -> Value {
        json!({
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {
                "name": "rollouts-apisix-route",
                "namespace": "default",
                "resourceVersion": "500",
                "labels": {"app.kubernetes.io/instance": "rollouts-apisix"}
            },
            "spec": {
                "ingressClassName": "apisix",
                "http": [
                    {
                        "name": "rollouts-apisix",
                        "match": {
                            "paths": ["/*"],
                            "methods": ["GET", "POST", "PUT", "DELETE", "PATCH"],
                            "hosts": ["rollouts-demo.apisix.local"]
                        },
                        "backends": [
                            {"serviceName": "rollout-apisix-canary-stable", "servicePort": 80},
                            {"serviceName": "rollout-apisix-canary-canary", "servicePort": 80}
                        ],
                        "plugins": [{"name": "cors", "enable": true}]
                    },
                    {
                        "name": "admin",
                        "match": {"paths": ["/admin/*"]},
                        "backends": [{"serviceName": "admin", "servicePort": 8080}]
                    }
                ]
            }
        })
    }

    fn header_route(name: &str, matches: Vec<(&str, StringMatch)>) -> HeaderRoute {
        HeaderRoute {
            name: name.into(),
            matches: matches
                .into_iter()
                .map(|(header, value)| HeaderMatch {
                    header_name: header.into(),
                    header_value: value,
                })
                .collect(),
        }
    }

    /// What the API server returns for a created object.
    fn stored(body: Value) -> Value {
        fixtures::stored(body, "600", "h-1")
    }

    #[test]
    fn objects_are_the_route_then_each_managed_route() {
        let r = Apisix::new(
            &config(&[]),
            &[
                "set-header".to_string(),
                "rollouts-apisix-route".to_string(),
                "set-header".to_string(),
                "mirror".to_string(),
            ],
        );
        let objects = r.objects("default", "demo");
        let names: Vec<String> = objects.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "ApisixRoute default/rollouts-apisix-route",
                "ApisixRoute default/set-header",
                "ApisixRoute default/mirror"
            ]
        );
        assert_eq!(objects[0].api_version(), "apisix.apache.org/v2");
        assert_eq!(objects[0].plural, "apisixroutes");
    }

    #[test]
    fn writes_the_canary_and_stable_weights_and_nothing_else() {
        let writes = router()
            .reconcile(&[Some(route()), None], &desired(20))
            .unwrap();
        let mut expected = route();
        expected["spec"]["http"][0]["backends"][0]["weight"] = json!(80);
        expected["spec"]["http"][0]["backends"][1]["weight"] = json!(20);
        assert_eq!(*replaced(&writes), expected);
        assert_eq!(
            writes[0].target().to_string(),
            "ApisixRoute default/rollouts-apisix-route"
        );
    }

    #[test]
    fn a_second_reconcile_writes_nothing() {
        let r = router();
        let first = r.reconcile(&[Some(route()), None], &desired(35)).unwrap();
        let written = replaced(&first).clone();
        let current = [Some(written), None];
        assert_eq!(r.reconcile(&current, &desired(35)).unwrap(), vec![]);
        assert_eq!(r.weight(&current, &desired(35)).unwrap(), 35);
    }

    #[test]
    fn weights_follow_the_max_weight() {
        let mut d = desired(250);
        d.max_weight = 1000;
        let writes = router().reconcile(&[Some(route()), None], &d).unwrap();
        let body = replaced(&writes);
        assert_eq!(body["spec"]["http"][0]["backends"][0]["weight"], 750);
        assert_eq!(body["spec"]["http"][0]["backends"][1]["weight"], 250);
        assert_eq!(
            router().weight(&[Some(body.clone()), None], &d).unwrap(),
            250
        );
    }

    #[test]
    fn unweighted_backends_split_evenly_so_the_canary_has_half() {
        assert_eq!(
            router()
                .weight(&[Some(route()), None], &desired(0))
                .unwrap(),
            50
        );
    }

    #[test]
    fn without_rules_listed_the_rule_named_after_the_route_is_split() {
        let mut r = route();
        r["spec"]["http"][1]["name"] = json!("rollouts-apisix-route");
        r["spec"]["http"][1]["backends"] = route()["spec"]["http"][0]["backends"].clone();
        let writes = Apisix::new(&config(&[]), &[])
            .reconcile(&[Some(r)], &desired(10))
            .unwrap();
        let body = replaced(&writes);
        assert!(
            body["spec"]["http"][0]["backends"][0]
                .get("weight")
                .is_none()
        );
        assert_eq!(body["spec"]["http"][1]["backends"][1]["weight"], 10);
    }

    #[test]
    fn without_rules_listed_an_only_rule_is_split() {
        let mut r = route();
        r["spec"]["http"].as_array_mut().unwrap().pop();
        let writes = Apisix::new(&config(&[]), &[])
            .reconcile(&[Some(r)], &desired(10))
            .unwrap();
        assert_eq!(
            replaced(&writes)["spec"]["http"][0]["backends"][1]["weight"],
            10
        );
        // Two rules, neither named after the route: which one is meant is not guessed.
        let err = Apisix::new(&config(&[]), &[])
            .reconcile(&[Some(route())], &desired(10))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.http has 2 rules and none is named `rollouts-apisix-route`"),
            "{err}"
        );
    }

    #[test]
    fn other_backends_keep_their_weight() {
        let mut r = route();
        r["spec"]["http"][0]["backends"]
            .as_array_mut()
            .unwrap()
            .push(json!({"serviceName": "shadow", "servicePort": 80, "weight": 0}));
        let writes = router().reconcile(&[Some(r), None], &desired(10)).unwrap();
        assert_eq!(
            replaced(&writes)["spec"]["http"][0]["backends"][2],
            json!({"serviceName": "shadow", "servicePort": 80, "weight": 0})
        );
    }

    #[test]
    fn a_missing_route_is_not_found() {
        let err = router().reconcile(&[None, None], &desired(10)).unwrap_err();
        assert_eq!(
            err,
            RouterError::NotFound("ApisixRoute default/rollouts-apisix-route".into())
        );
        assert!(router().weight(&[], &desired(10)).is_err());
    }

    #[test]
    fn a_rule_naming_neither_service_is_invalid() {
        let mut r = route();
        r["spec"]["http"][0]["backends"][1]["serviceName"] = json!("someone-else");
        let err = router()
            .reconcile(&[Some(r.clone()), None], &desired(10))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ApisixRoute default/rollouts-apisix-route: rule `rollouts-apisix` has no backend \
             whose serviceName is the canary Service `rollout-apisix-canary-canary`"
        );
        r["spec"]["http"][0]["backends"][1]["serviceName"] = json!("rollout-apisix-canary-canary");
        r["spec"]["http"][0]["backends"][0]["serviceName"] = json!("someone-else");
        let err = router()
            .reconcile(&[Some(r), None], &desired(10))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("stable Service `rollout-apisix-canary-stable`"),
            "{err}"
        );
    }

    #[test]
    fn a_listed_rule_that_does_not_exist_is_invalid() {
        let r = Apisix::new(&config(&["rollouts-apisix", "nope"]), &[]);
        let err = r.reconcile(&[Some(route())], &desired(10)).unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.http has no rule named `nope`"),
            "{err}"
        );
    }

    #[test]
    fn malformed_routes_are_errors_not_panics() {
        for r in [
            json!("rollouts-apisix-route"),
            json!({"spec": {"http": {}}}),
            json!({"spec": {"http": [{"name": "rollouts-apisix", "backends": "x"}]}}),
            json!({"spec": {"http": [{"name": "rollouts-apisix", "backends": [1, 2]}]}}),
        ] {
            assert!(matches!(
                router().reconcile(&[Some(r.clone()), None], &desired(10)),
                Err(RouterError::Invalid { .. })
            ));
            assert!(router().weight(&[Some(r), None], &desired(10)).is_err());
        }
        let mut r = route();
        r["spec"]["http"][0]["backends"][1]["weight"] = json!("ten");
        assert!(matches!(
            router().weight(&[Some(r), None], &desired(10)),
            Err(RouterError::Invalid { .. })
        ));
    }

    #[test]
    fn no_route_configured_is_an_error() {
        let r = Apisix::new(&ApisixTrafficRouting::default(), &["set-header".into()]);
        assert!(r.objects("default", "demo").is_empty());
        let err = r.reconcile(&[], &desired(10)).unwrap_err();
        assert!(err.to_string().contains("set apisix.route.name"), "{err}");
    }

    #[test]
    fn a_header_route_is_an_apisix_route_of_its_own() {
        let mut d = desired(0);
        d.header_routes = vec![header_route(
            "set-header",
            vec![("trace", StringMatch::Exact("debug".into()))],
        )];
        let writes = router().reconcile(&[Some(route()), None], &d).unwrap();
        // The weights are written (0 and 100), and the header route created.
        assert_eq!(writes.len(), 2);
        let Write::Create(target, body) = &writes[1] else {
            panic!("expected a Create, got {:?}", writes[1]);
        };
        assert_eq!(target.to_string(), "ApisixRoute default/set-header");
        assert_eq!(
            *body,
            json!({
                "apiVersion": "apisix.apache.org/v2",
                "kind": "ApisixRoute",
                "metadata": {
                    "name": "set-header",
                    "namespace": "default",
                    "annotations": {
                        "argo-rollouts.argoproj.io/managed-by-rollouts": "rollout-apisix-canary"
                    }
                },
                "spec": {
                    "ingressClassName": "apisix",
                    "http": [{
                        "name": "rollouts-apisix",
                        "priority": 1,
                        "match": {
                            "paths": ["/*"],
                            "methods": ["GET", "POST", "PUT", "DELETE", "PATCH"],
                            "hosts": ["rollouts-demo.apisix.local"],
                            "exprs": [{
                                "subject": {"scope": "Header", "name": "trace"},
                                "op": "Equal",
                                "value": "debug"
                            }]
                        },
                        "backends": [
                            {"serviceName": "rollout-apisix-canary-canary", "servicePort": 80, "weight": 100}
                        ],
                        "plugins": [{"name": "cors", "enable": true}]
                    }]
                }
            })
        );

        // Over its own output, nothing more is written.
        let Write::Replace(_, weighted) = &writes[0] else {
            panic!("expected a Replace, got {:?}", writes[0]);
        };
        let current = [Some(weighted.clone()), Some(stored(body.clone()))];
        assert_eq!(router().reconcile(&current, &d).unwrap(), vec![]);

        // No longer in force: deleted.
        let writes = router().reconcile(&current, &desired(0)).unwrap();
        match writes.as_slice() {
            [Write::Delete(target)] => assert_eq!(target.name, "set-header"),
            other => panic!("expected one Delete, got {other:?}"),
        }
    }

    #[test]
    fn header_matches_become_exprs_added_to_the_rules_own() {
        let mut r = route();
        r["spec"]["http"][0]["priority"] = json!(7);
        r["spec"]["http"][0]["match"]["exprs"] = json!([
            {"subject": {"scope": "Query", "name": "env"}, "op": "Equal", "value": "prod"}
        ]);
        let mut d = desired(10);
        d.header_routes = vec![header_route(
            "set-header",
            vec![
                ("User-Agent", StringMatch::Regex("Chrome(.*)".into())),
                ("X-Version", StringMatch::Prefix("v1.2".into())),
            ],
        )];
        let writes = router().reconcile(&[Some(r), None], &d).unwrap();
        let Write::Create(_, body) = &writes[1] else {
            panic!("expected a Create, got {:?}", writes[1]);
        };
        let rule = &body["spec"]["http"][0];
        assert_eq!(rule["priority"], 8);
        assert_eq!(
            rule["match"]["exprs"],
            json!([
                {"subject": {"scope": "Query", "name": "env"}, "op": "Equal", "value": "prod"},
                {"subject": {"scope": "Header", "name": "User-Agent"}, "op": "RegexMatch", "value": "Chrome(.*)"},
                {"subject": {"scope": "Header", "name": "X-Version"}, "op": "RegexMatch", "value": "^v1\\.2.*"}
            ])
        );
    }

    #[test]
    fn a_header_route_follows_the_route_it_copies() {
        let mut d = desired(10);
        d.header_routes = vec![header_route(
            "set-header",
            vec![("trace", StringMatch::Exact("debug".into()))],
        )];
        let first = router().reconcile(&[Some(route()), None], &d).unwrap();
        let Write::Create(_, body) = &first[1] else {
            panic!("expected a Create, got {:?}", first[1]);
        };
        let mut r = route();
        r["spec"]["http"][0]["match"]["hosts"] = json!(["rollouts-demo.example.com"]);
        let writes = router()
            .reconcile(&[Some(r), Some(stored(body.clone()))], &d)
            .unwrap();
        let Some(Write::Replace(target, updated)) = writes.last() else {
            panic!("expected a Replace, got {writes:?}");
        };
        assert_eq!(target.name, "set-header");
        assert_eq!(
            updated["spec"]["http"][0]["match"]["hosts"],
            json!(["rollouts-demo.example.com"])
        );
        assert_eq!(updated["metadata"]["resourceVersion"], "600");
    }

    #[test]
    fn argo_made_header_routes_are_taken_over_and_foreign_ones_refused() {
        let mut d = desired(10);
        d.header_routes = vec![header_route(
            "set-header",
            vec![("trace", StringMatch::Exact("debug".into()))],
        )];
        let argo = json!({
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {
                "name": "set-header",
                "namespace": "default",
                "ownerReferences": [{
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Rollout",
                    "name": "rollout-apisix-canary",
                    "uid": "r-1",
                    "controller": true
                }]
            },
            "spec": route()["spec"].clone()
        });
        let writes = router()
            .reconcile(&[Some(route()), Some(argo)], &d)
            .unwrap();
        let Some(Write::Replace(_, updated)) = writes.last() else {
            panic!("expected a Replace, got {writes:?}");
        };
        assert_eq!(updated["metadata"]["ownerReferences"][0]["uid"], "r-1");
        assert_eq!(
            updated["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"],
            "rollout-apisix-canary"
        );
        assert_eq!(updated["spec"]["http"].as_array().unwrap().len(), 1);

        let mut foreign = route();
        foreign["metadata"]["name"] = json!("set-header");
        let err = router()
            .reconcile(&[Some(route()), Some(foreign.clone())], &d)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not belong to rollout `rollout-apisix-canary`"),
            "{err}"
        );
        // Not in force: a foreign ApisixRoute of that name is left alone.
        let writes = router()
            .reconcile(&[Some(route()), Some(foreign)], &desired(10))
            .unwrap();
        assert!(writes.iter().all(|w| !matches!(w, Write::Delete(_))));
    }

    #[test]
    fn a_header_route_that_is_not_managed_is_invalid() {
        let mut d = desired(10);
        d.header_routes = vec![header_route(
            "elsewhere",
            vec![("trace", StringMatch::Exact("debug".into()))],
        )];
        let err = router().reconcile(&[Some(route()), None], &d).unwrap_err();
        assert!(
            err.to_string()
                .contains("header route `elsewhere` has no ApisixRoute of its own"),
            "{err}"
        );
    }

    #[test]
    fn mirror_routes_are_ignored_as_argo_ignores_them() {
        let mut d = desired(10);
        d.mirror_routes = vec![MirrorRoute {
            name: "set-header".into(),
            matches: vec![Default::default()],
            percentage: 50,
        }];
        assert_eq!(
            router().reconcile(&[Some(route()), None], &d).unwrap(),
            router()
                .reconcile(&[Some(route()), None], &desired(10))
                .unwrap()
        );
    }
}
