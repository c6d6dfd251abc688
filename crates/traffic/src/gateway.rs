//! Gateway API: the weights of the canary and stable Services in HTTPRoute, GRPCRoute and
//! TCPRoute rules, and header and mirror routes as named HTTPRoute rules.
//!
//! Configured as Argo users configure the `argoproj-labs/gatewayAPI` plugin, and written as the
//! plugin writes (since its v0.13): a rule whose backendRefs name both Services gets the
//! canary's weight and the rest; a header route is a rule named after the managed route that
//! sends the requests matching the weighted rule's matches plus the headers to the canary; a
//! mirror route is a rule named after it that copies matching requests to the canary. Rules
//! that name neither Service, and every other field, stay as their owner wrote them.

use serde_json::{Map, Value, json};
use sluice_api::{GatewayApiConfig, GatewayApiRoute, GatewayRouteKind, StringMatch};

use crate::common::{invalid, read_all};
use crate::{Current, Desired, HeaderRoute, MirrorRoute, ObjectRef, Router, RouterError, Write};

/// Gateway API's routes of one rollout.
#[derive(Clone, Debug)]
pub struct GatewayApi {
    routes: Vec<(GatewayRouteKind, GatewayApiRoute)>,
    namespace: Option<String>,
    /// Every managed route's name: a named rule among them that is not in force is removed.
    managed: Vec<String>,
}

impl GatewayApi {
    /// The router for a plugin configuration and the rollout's `managedRoutes`.
    pub fn new(config: &GatewayApiConfig, managed: &[String]) -> Self {
        Self {
            routes: config.routes(),
            namespace: config.namespace.clone(),
            managed: managed.to_vec(),
        }
    }
}

/// Group, version, kind and plural of a route kind (TCPRoute is still v1alpha2).
fn resource(kind: GatewayRouteKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        GatewayRouteKind::Http => ("v1", "HTTPRoute", "httproutes"),
        GatewayRouteKind::Grpc => ("v1", "GRPCRoute", "grpcroutes"),
        GatewayRouteKind::Tcp => ("v1alpha2", "TCPRoute", "tcproutes"),
    }
}

impl Router for GatewayApi {
    fn name(&self) -> &'static str {
        "gatewayAPI"
    }

    fn objects(&self, namespace: &str, _rollout: &str) -> Vec<ObjectRef> {
        self.routes
            .iter()
            .map(|(kind, route)| {
                let (version, kind, plural) = resource(*kind);
                ObjectRef {
                    group: "gateway.networking.k8s.io",
                    version,
                    kind,
                    plural,
                    namespace: self
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.to_string()),
                    name: route.name.clone(),
                }
            })
            .collect()
    }

    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let mut most = 0;
        for (object, route) in self.read(current, desired)? {
            for rule in weighted_rules(route, desired, &self.managed) {
                most = most.max(canary_share(rule, desired).ok_or_else(|| {
                    invalid(&object, "a rule's backendRef weights are not numbers")
                })?);
            }
        }
        Ok(most)
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let mut writes = Vec::new();
        for ((object, route), (kind, config)) in
            self.read(current, desired)?.into_iter().zip(&self.routes)
        {
            let mut wanted = route.clone();
            let rules = wanted
                .pointer_mut("/spec/rules")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| invalid(&object, "has no spec.rules"))?;
            rules.retain(|r| !self.managed.iter().any(|m| rule_name(r) == Some(m)));
            for rule in rules.iter_mut().filter(|r| sends_to_both(r, desired)) {
                set_weights(rule, desired);
            }
            let base = rules.iter().find(|r| sends_to_both(r, desired)).cloned();
            let base = base.ok_or_else(|| {
                invalid(
                    &object,
                    format!(
                        "no rule sends to both Services {:?} and {:?}",
                        desired.canary_service, desired.stable_service
                    ),
                )
            })?;
            if *kind == GatewayRouteKind::Http {
                if config.use_header_routes == Some(true) {
                    rules.extend(
                        desired
                            .header_routes
                            .iter()
                            .map(|h| header_rule(&base, h, desired)),
                    );
                }
                rules.extend(
                    desired
                        .mirror_routes
                        .iter()
                        .map(|m| mirror_rule(&base, m, desired)),
                );
            } else if config.use_header_routes == Some(true)
                && (!desired.header_routes.is_empty() || !desired.mirror_routes.is_empty())
            {
                return Err(invalid(
                    &object,
                    "header and mirror routes are written into HTTPRoutes only",
                ));
            }
            if wanted != *route {
                writes.push(Write::Replace(object, wanted));
            }
        }
        Ok(writes)
    }
}

impl GatewayApi {
    /// The routes read, each with its reference; a missing one is an error naming it.
    fn read<'c>(
        &self,
        current: Current<'c>,
        desired: &Desired,
    ) -> Result<Vec<(ObjectRef, &'c Value)>, RouterError> {
        read_all(self.objects(&desired.namespace, &desired.rollout), current)
    }
}

/// The rules of `route` that split between the two Services (managed rules left out).
fn weighted_rules<'a>(
    route: &'a Value,
    desired: &'a Desired,
    managed: &'a [String],
) -> impl Iterator<Item = &'a Value> {
    route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |r| !managed.iter().any(|m| rule_name(r) == Some(m)))
        .filter(move |r| sends_to_both(r, desired))
}

fn rule_name(rule: &Value) -> Option<&String> {
    match rule.get("name") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// The backendRefs of a rule that name a core Service called `service`.
fn refs_to<'a>(rule: &'a Value, service: &'a str) -> impl Iterator<Item = &'a Value> {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |r| is_service(r, service))
}

fn is_service(backend: &Value, service: &str) -> bool {
    let group = backend.get("group").and_then(Value::as_str).unwrap_or("");
    let kind = backend
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Service");
    group.is_empty()
        && kind == "Service"
        && backend.get("name").and_then(Value::as_str) == Some(service)
}

fn sends_to_both(rule: &Value, desired: &Desired) -> bool {
    refs_to(rule, &desired.canary_service).next().is_some()
        && refs_to(rule, &desired.stable_service).next().is_some()
}

/// A backendRef's weight; Gateway API's default is 1.
fn weight_of(backend: &Value) -> Option<i64> {
    match backend.get("weight") {
        None | Some(Value::Null) => Some(1),
        Some(w) => w.as_i64(),
    }
}

/// The canary's share of a rule's traffic, out of the rollout's max weight.
fn canary_share(rule: &Value, desired: &Desired) -> Option<i32> {
    let sum = |service: &str| -> Option<i64> { refs_to(rule, service).map(weight_of).sum() };
    let canary = sum(&desired.canary_service)?;
    let stable = sum(&desired.stable_service)?;
    let total = canary + stable;
    if total <= 0 || canary <= 0 {
        return Some(0);
    }
    // Rounded up: any share of the requests at all counts (a canary that gets some is never
    // reported as getting none).
    let max = i64::from(desired.max_weight);
    i32::try_from((canary * max + total - 1) / total).ok()
}

/// Gives the canary's refs the canary weight and the stable refs the rest (the first ref of each
/// carries it; a second ref to the same Service gets 0).
fn set_weights(rule: &mut Value, desired: &Desired) {
    let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
        return;
    };
    let (mut canary_done, mut stable_done) = (false, false);
    for backend in refs.iter_mut() {
        let weight = if is_service(backend, &desired.canary_service) {
            let w = if canary_done {
                0
            } else {
                desired.canary_weight
            };
            canary_done = true;
            w
        } else if is_service(backend, &desired.stable_service) {
            let w = if stable_done {
                0
            } else {
                desired.stable_weight()
            };
            stable_done = true;
            w
        } else {
            continue;
        };
        if let Some(map) = backend.as_object_mut() {
            map.insert("weight".into(), json!(weight));
        }
    }
}

/// The canary's backendRef as the weighted rule names it (its port and namespace kept).
fn canary_ref(base: &Value, desired: &Desired) -> Value {
    let mut backend = refs_to(base, &desired.canary_service)
        .next()
        .cloned()
        .unwrap_or_else(|| json!({ "name": desired.canary_service }));
    if let Some(map) = backend.as_object_mut() {
        map.remove("filters");
        map.insert("weight".into(), json!(1));
    }
    backend
}

/// A header route: the weighted rule's matches, each with the headers added, to the canary only.
fn header_rule(base: &Value, route: &HeaderRoute, desired: &Desired) -> Value {
    let headers: Vec<Value> = route
        .matches
        .iter()
        .map(|h| header_match(&h.header_name, &h.header_value))
        .collect();
    let matches: Vec<Value> = base_matches(base)
        .into_iter()
        .map(|mut m| {
            if let Some(map) = m.as_object_mut() {
                let mut all = map
                    .get("headers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                all.extend(headers.iter().cloned());
                map.insert("headers".into(), Value::Array(all));
            }
            m
        })
        .collect();
    json!({
        "name": route.name,
        "matches": matches,
        "backendRefs": [canary_ref(base, desired)],
    })
}

/// A mirror route: requests matching its conditions keep going where the weighted rule sends
/// them, and a copy of `percentage` of them goes to the canary.
fn mirror_rule(base: &Value, route: &MirrorRoute, desired: &Desired) -> Value {
    let matches: Vec<Value> = route
        .matches
        .iter()
        .map(|m| {
            let mut out = Map::new();
            if let Some(path) = &m.path {
                out.insert("path".into(), path_match(path));
            }
            if let Some(StringMatch::Exact(method)) = &m.method {
                out.insert("method".into(), json!(method.to_ascii_uppercase()));
            }
            let headers: Vec<Value> = m
                .headers
                .iter()
                .map(|(name, value)| header_match(name, value))
                .collect();
            if !headers.is_empty() {
                out.insert("headers".into(), Value::Array(headers));
            }
            Value::Object(out)
        })
        .collect();
    let mut mirror_to = canary_ref(base, desired);
    if let Some(map) = mirror_to.as_object_mut() {
        map.remove("weight");
    }
    let mut mirror = json!({ "backendRef": mirror_to });
    if route.percentage < 100
        && let Some(map) = mirror.as_object_mut()
    {
        map.insert("percent".into(), json!(route.percentage));
    }
    json!({
        "name": route.name,
        "matches": matches,
        "filters": [{ "type": "RequestMirror", "requestMirror": mirror }],
        "backendRefs": base.get("backendRefs").cloned().unwrap_or_else(|| json!([])),
    })
}

/// The weighted rule's matches, or one match of everything when it has none.
fn base_matches(base: &Value) -> Vec<Value> {
    match base.get("matches").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({ "path": { "type": "PathPrefix", "value": "/" } })],
    }
}

/// A header condition; Gateway API has no prefix match, so a prefix is an anchored expression.
fn header_match(name: &str, value: &StringMatch) -> Value {
    let (kind, value) = match value {
        StringMatch::Exact(v) => ("Exact", v.clone()),
        StringMatch::Prefix(v) => ("RegularExpression", format!("^{}.*", escape(v))),
        StringMatch::Regex(v) => ("RegularExpression", v.clone()),
    };
    json!({ "type": kind, "name": name, "value": value })
}

fn path_match(value: &StringMatch) -> Value {
    let (kind, value) = match value {
        StringMatch::Exact(v) => ("Exact", v.clone()),
        StringMatch::Prefix(v) => ("PathPrefix", v.clone()),
        StringMatch::Regex(v) => ("RegularExpression", v.clone()),
    };
    json!({ "type": kind, "value": value })
}

/// `text` with the characters a regular expression treats specially escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
