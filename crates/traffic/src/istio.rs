//! Istio: weights in VirtualService routes, header and mirror routes as named HTTP routes, and
//! pod template hashes in DestinationRule subsets.
//!
//! For every VirtualService (`istio.virtualService` or `istio.virtualServices`; a name
//! `name.namespace` names one in another namespace, as in Argo Rollouts) the router writes:
//! - the `weight` of the canary and stable destinations of the routes it weighs: the HTTP routes
//!   named in `routes` (the only HTTP route that is not a managed route when none are named),
//!   the TLS routes matching `tlsRoutes` (port and SNI hosts) and the TCP routes matching
//!   `tcpRoutes` (port). A destination is the canary's when its host is the canary Service
//!   (`svc` or `svc.ns…`) or, with `istio.destinationRule`, when its subset is the canary subset;
//!   likewise for stable. A destination that is neither and carries a weight is dropped, as
//!   Argo drops it (a leftover of an experiment), so that the weights add up;
//! - the managed routes in force, as HTTP routes named after them, first in the list in
//!   `managedRoutes` order: a header route sends requests matching any of its headers to the
//!   canary; a mirror route sends requests matching any of its conditions where the weighted
//!   route does and copies a share of them to the canary. A managed route no longer in force is
//!   removed; every route that is not a managed route stays where it is, as written.
//!
//! With `istio.destinationRule` the router also labels the canary and stable subsets with the
//! versions' pod template hashes (`rollouts-pod-template-hash`), removing the label while a
//! version has no hash, and marks the DestinationRule with the managed-by annotation as Argo
//! does; other subsets and fields stay. Objects are read and written as
//! `networking.istio.io/v1alpha3`, Argo Rollouts' default Istio version.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use sluice_api::{
    IstioTrafficRouting, IstioVirtualService, RouteMatch, StringMatch,
    vocab::{MANAGED_BY_ROLLOUTS_ANNOTATION, POD_TEMPLATE_HASH_LABEL},
};

use crate::common::{invalid, names_nothing, note_share, read_at, share, weight_or};
use crate::{Current, Desired, HeaderRoute, MirrorRoute, ObjectRef, Router, RouterError, Write};

/// Istio's networking API group.
pub const GROUP: &str = "networking.istio.io";
/// The version read and written (Argo Rollouts' default, served by every Istio release).
pub const VERSION: &str = "v1alpha3";

/// The Istio router: VirtualServices and an optional DestinationRule.
#[derive(Clone, Debug)]
pub struct Istio {
    config: IstioTrafficRouting,
    managed: Vec<String>,
}

impl Istio {
    /// A router for `trafficRouting.istio`; `managed_routes` is every name in
    /// `trafficRouting.managedRoutes`, so that routes no longer in force can be removed.
    pub fn new(config: &IstioTrafficRouting, managed_routes: &[String]) -> Self {
        Self {
            config: config.clone(),
            managed: managed_routes.to_vec(),
        }
    }

    /// `virtualServices`, else `virtualService`.
    fn virtual_services(&self) -> Vec<&IstioVirtualService> {
        if self.config.virtual_services.is_empty() {
            self.config.virtual_service.iter().collect()
        } else {
            self.config.virtual_services.iter().collect()
        }
    }

    fn is_managed(&self, name: Option<&str>) -> bool {
        name.is_some_and(|n| self.managed.iter().any(|m| m == n))
    }

    /// The VirtualServices read, each with its spec entry and reference; each must exist.
    fn read_virtual_services<'c>(
        &self,
        current: Current<'c>,
        desired: &Desired,
    ) -> Result<Vec<(&IstioVirtualService, ObjectRef, &'c Value)>, RouterError> {
        let services = self.virtual_services();
        if services.is_empty() {
            return Err(names_nothing(
                desired,
                "trafficRouting.istio names no VirtualService: set virtualService or \
                 virtualServices",
            ));
        }
        services
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let object = virtual_service_ref(spec, &desired.namespace);
                let vs = read_at(current, i, &object)?;
                Ok((spec, object, vs))
            })
            .collect()
    }

    fn targets<'a>(&'a self, desired: &'a Desired) -> Targets<'a> {
        Targets {
            canary_service: &desired.canary_service,
            stable_service: &desired.stable_service,
            subsets: self
                .config
                .destination_rule
                .as_ref()
                .map(|d| (d.canary_subset_name.as_str(), d.stable_subset_name.as_str())),
        }
    }

    /// The routes of one VirtualService to weigh.
    fn weighted(
        &self,
        spec: &IstioVirtualService,
        vs: &Value,
        object: &ObjectRef,
        t: &Targets<'_>,
    ) -> Result<Weighted, RouterError> {
        let invalid = |message: String| invalid(object, message);
        let routes = |kind: &str| {
            vs.pointer(&format!("/spec/{kind}"))
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        let (http, tls, tcp) = (routes("http"), routes("tls"), routes("tcp"));
        let mut weighted = Weighted::default();

        if spec.routes.is_empty() {
            let candidates: Vec<usize> = (0..http.len())
                .filter(|&i| !self.is_managed(http.get(i).and_then(route_name)))
                .collect();
            if let [only] = candidates.as_slice()
                && http.get(*only).is_some_and(|r| t.missing(r).is_none())
            {
                weighted.http.push(*only);
            }
        } else {
            for name in &spec.routes {
                if self.is_managed(Some(name)) {
                    return Err(invalid(format!(
                        "HTTP route `{name}` is listed both in virtualService.routes and in \
                         managedRoutes; a managed route is the rollout's own, list another"
                    )));
                }
                let index = http
                    .iter()
                    .position(|r| route_name(r) == Some(name.as_str()))
                    .ok_or_else(|| invalid(format!("has no HTTP route named `{name}`")))?;
                if let Some(missing) = http.get(index).and_then(|r| t.missing(r)) {
                    return Err(invalid(format!("HTTP route `{name}` {missing}")));
                }
                weighted.http.push(index);
            }
        }

        if spec.tls_routes.is_empty() {
            if let [only] = tls
                && t.missing(only).is_none()
            {
                weighted.tls.push(0);
            }
        } else {
            for wanted in &spec.tls_routes {
                let port = wanted.port.unwrap_or(0);
                let hosts: BTreeSet<&str> = wanted.sni_hosts.iter().map(String::as_str).collect();
                let found: Vec<usize> = (0..tls.len())
                    .filter(|&i| tls.get(i).is_some_and(|r| tls_matches(r, port, &hosts)))
                    .collect();
                if found.is_empty() {
                    return Err(invalid(format!(
                        "has no TLS route matching port {port} and sniHosts {:?}",
                        wanted.sni_hosts
                    )));
                }
                for i in found {
                    if let Some(missing) = tls.get(i).and_then(|r| t.missing(r)) {
                        return Err(invalid(format!("TLS route #{i} {missing}")));
                    }
                    weighted.tls.push(i);
                }
            }
        }

        if spec.tcp_routes.is_empty() {
            if let [only] = tcp
                && t.missing(only).is_none()
            {
                weighted.tcp.push(0);
            }
        } else {
            for wanted in &spec.tcp_routes {
                let port = wanted.port.unwrap_or(0);
                let found: Vec<usize> = (0..tcp.len())
                    .filter(|&i| tcp.get(i).and_then(single_port) == Some(port))
                    .collect();
                if found.is_empty() {
                    return Err(invalid(format!("has no TCP route matching port {port}")));
                }
                for i in found {
                    if let Some(missing) = tcp.get(i).and_then(|r| t.missing(r)) {
                        return Err(invalid(format!("TCP route #{i} {missing}")));
                    }
                    weighted.tcp.push(i);
                }
            }
        }

        if weighted.http.is_empty() && weighted.tls.is_empty() && weighted.tcp.is_empty() {
            let candidates: Vec<&Value> = http
                .iter()
                .filter(|r| !self.is_managed(route_name(r)))
                .collect();
            let message = match candidates.as_slice() {
                [] => format!(
                    "has no route to weigh: it needs an HTTP, TLS or TCP route with destinations \
                     for {} and {}",
                    t.canary_label(),
                    t.stable_label()
                ),
                [only] => format!(
                    "{} {}",
                    describe_http(only),
                    t.missing(only).unwrap_or_default()
                ),
                many => format!(
                    "has {} HTTP routes; name the ones to weigh in virtualService.routes",
                    many.len()
                ),
            };
            return Err(invalid(message));
        }
        Ok(weighted)
    }

    /// The managed routes in force, in `managedRoutes` order (then any others the plan named).
    fn in_force<'d>(&self, desired: &'d Desired) -> Vec<Managed<'d>> {
        let find = |name: &str| {
            desired
                .header_routes
                .iter()
                .find(|h| h.name == name)
                .map(Managed::Header)
                .or_else(|| {
                    desired
                        .mirror_routes
                        .iter()
                        .find(|m| m.name == name)
                        .map(Managed::Mirror)
                })
        };
        let mut names: Vec<&str> = self.managed.iter().map(String::as_str).collect();
        for name in desired
            .header_routes
            .iter()
            .map(|h| h.name.as_str())
            .chain(desired.mirror_routes.iter().map(|m| m.name.as_str()))
        {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.into_iter().filter_map(find).collect()
    }

    /// The VirtualService as the plan wants it.
    fn reconcile_virtual_service(
        &self,
        spec: &IstioVirtualService,
        object: &ObjectRef,
        vs: &Value,
        desired: &Desired,
        rule_host: Option<&str>,
    ) -> Result<Value, RouterError> {
        let t = self.targets(desired);
        let weighted = self.weighted(spec, vs, object, &t)?;
        let in_force = self.in_force(desired);
        let mut updated = vs.clone();
        for (kind, indexes) in [
            ("tls", &weighted.tls),
            ("tcp", &weighted.tcp),
            ("http", &weighted.http),
        ] {
            if let Some(routes) = updated
                .pointer_mut(&format!("/spec/{kind}"))
                .and_then(Value::as_array_mut)
            {
                for &i in indexes {
                    if let Some(route) = routes.get_mut(i) {
                        set_weights(route, &t, desired);
                    }
                }
            }
        }

        let had_http = vs.pointer("/spec/http").is_some_and(Value::is_array);
        if !had_http && in_force.is_empty() {
            return Ok(updated);
        }
        let http: Vec<Value> = updated
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let base = weighted.http.first().and_then(|&i| http.get(i));
        let mut managed_routes = Vec::new();
        if !in_force.is_empty() {
            let base = base.ok_or_else(|| {
                invalid(
                    object,
                    "header and mirror routes follow a weighted HTTP route, and this \
                     VirtualService weighs none (only TLS or TCP routes)"
                        .to_string(),
                )
            })?;
            let canary = canary_destination(base, &t, desired, rule_host);
            for route in &in_force {
                managed_routes.push(match route {
                    Managed::Header(h) => header_route(h, &canary),
                    Managed::Mirror(m) => mirror_route(m, base, &canary),
                });
            }
        }
        let mut names_in_force: Vec<&str> = in_force.iter().map(Managed::name).collect();
        names_in_force.extend(self.managed.iter().map(String::as_str));
        let others = http
            .into_iter()
            .filter(|r| !route_name(r).is_some_and(|n| names_in_force.contains(&n)));
        managed_routes.extend(others);
        if let Some(spec) = updated.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("http".to_string(), Value::Array(managed_routes));
        }
        Ok(updated)
    }

    /// The DestinationRule with the subsets' hashes.
    fn reconcile_destination_rule(
        &self,
        object: &ObjectRef,
        rule: &Value,
        desired: &Desired,
    ) -> Result<Value, RouterError> {
        let Some(config) = &self.config.destination_rule else {
            return Ok(rule.clone());
        };
        let mut updated = rule.clone();
        let subsets = updated
            .pointer_mut("/spec/subsets")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| invalid(object, "has no spec.subsets".to_string()))?;
        for (name, hash) in [
            (&config.canary_subset_name, &desired.canary_hash),
            (&config.stable_subset_name, &desired.stable_hash),
        ] {
            let subset = subsets
                .iter_mut()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .ok_or_else(|| invalid(object, format!("has no subset named `{name}`")))?;
            let Some(subset) = subset.as_object_mut() else {
                continue;
            };
            let labels = subset
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            if let Some(labels) = labels.as_object_mut() {
                if hash.is_empty() {
                    labels.remove(POD_TEMPLATE_HASH_LABEL);
                } else {
                    labels.insert(
                        POD_TEMPLATE_HASH_LABEL.to_string(),
                        Value::String(hash.clone()),
                    );
                }
            }
        }
        if let Some(root) = updated.as_object_mut() {
            let metadata = root
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(metadata) = metadata.as_object_mut() {
                let annotations = metadata
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Map::new()));
                if !annotations.is_object() {
                    *annotations = Value::Object(Map::new());
                }
                if let Some(annotations) = annotations.as_object_mut() {
                    annotations.insert(
                        MANAGED_BY_ROLLOUTS_ANNOTATION.to_string(),
                        Value::String(desired.rollout.clone()),
                    );
                }
            }
        }
        Ok(updated)
    }
}

/// The routes of a VirtualService that carry the weights, by position.
#[derive(Debug, Default)]
struct Weighted {
    http: Vec<usize>,
    tls: Vec<usize>,
    tcp: Vec<usize>,
}

/// A managed route in force.
enum Managed<'d> {
    Header(&'d HeaderRoute),
    Mirror(&'d MirrorRoute),
}

impl Managed<'_> {
    fn name(&self) -> &str {
        match self {
            Managed::Header(h) => &h.name,
            Managed::Mirror(m) => &m.name,
        }
    }
}

/// What tells the canary's and the stable version's destinations apart.
struct Targets<'a> {
    canary_service: &'a str,
    stable_service: &'a str,
    /// (canary, stable) subset names, with a DestinationRule.
    subsets: Option<(&'a str, &'a str)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Canary,
    Stable,
    Other,
}

impl Targets<'_> {
    fn role(&self, entry: &Value) -> Role {
        let host = entry
            .pointer("/destination/host")
            .and_then(Value::as_str)
            .map(short_host)
            .unwrap_or_default();
        let subset = entry
            .pointer("/destination/subset")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let is = |service: &str, subset_name: Option<&str>| {
            (!service.is_empty() && host == service)
                || subset_name.is_some_and(|s| !s.is_empty() && subset == s)
        };
        if is(self.canary_service, self.subsets.map(|s| s.0)) {
            Role::Canary
        } else if is(self.stable_service, self.subsets.map(|s| s.1)) {
            Role::Stable
        } else {
            Role::Other
        }
    }

    fn canary_label(&self) -> String {
        match self.subsets {
            Some((canary, _)) => format!("the canary subset `{canary}`"),
            None => format!("the canary Service `{}`", self.canary_service),
        }
    }

    fn stable_label(&self) -> String {
        match self.subsets {
            Some((_, stable)) => format!("the stable subset `{stable}`"),
            None => format!("the stable Service `{}`", self.stable_service),
        }
    }

    /// What a route lacks to be weighed, if anything.
    fn missing(&self, route: &Value) -> Option<String> {
        let roles: Vec<Role> = destinations(route).iter().map(|d| self.role(d)).collect();
        if !roles.contains(&Role::Canary) {
            Some(format!("has no destination for {}", self.canary_label()))
        } else if !roles.contains(&Role::Stable) {
            Some(format!("has no destination for {}", self.stable_label()))
        } else {
            None
        }
    }
}

/// The part of a host before its first dot (`reviews.prod.svc.cluster.local` is `reviews`).
fn short_host(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

fn route_name(route: &Value) -> Option<&str> {
    route.get("name").and_then(Value::as_str)
}

fn describe_http(route: &Value) -> String {
    match route_name(route) {
        Some(name) => format!("HTTP route `{name}`"),
        None => "its HTTP route".to_string(),
    }
}

fn destinations(route: &Value) -> &[Value] {
    route
        .get("route")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The one port a TLS or TCP route's matches name (0 when they name none), if only one.
fn single_port(route: &Value) -> Option<i64> {
    let ports: BTreeSet<i64> = route
        .get("match")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| m.get("port").and_then(Value::as_i64).unwrap_or(0))
        .collect();
    match ports.len() {
        0 => Some(0),
        1 => ports.into_iter().next(),
        _ => None,
    }
}

/// Whether a TLS route matches `port` and exactly the SNI hosts `hosts`.
fn tls_matches(route: &Value, port: i64, hosts: &BTreeSet<&str>) -> bool {
    let sni: BTreeSet<&str> = route
        .get("match")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("sniHosts").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    single_port(route) == Some(port) && sni == *hosts
}

/// Gives the canary and stable destinations their weights; drops other weighted destinations.
fn set_weights(route: &mut Value, t: &Targets<'_>, desired: &Desired) {
    let Some(entries) = route.get_mut("route").and_then(Value::as_array_mut) else {
        return;
    };
    entries.retain(|e| {
        t.role(e) != Role::Other || e.get("weight").and_then(Value::as_f64).unwrap_or(0.0) == 0.0
    });
    for entry in entries.iter_mut() {
        let weight = match t.role(entry) {
            Role::Canary => desired.canary_weight,
            Role::Stable => desired.stable_weight(),
            Role::Other => continue,
        };
        if entry.get("weight").and_then(Value::as_f64) == Some(f64::from(weight)) {
            continue;
        }
        if let Some(map) = entry.as_object_mut() {
            map.insert("weight".to_string(), Value::from(weight));
        }
    }
}

/// Where header and mirror routes send: the canary's host (the DestinationRule's host with
/// subsets), the canary subset, and the port of the weighted route's canary destination.
fn canary_destination(
    base: &Value,
    t: &Targets<'_>,
    desired: &Desired,
    rule_host: Option<&str>,
) -> Value {
    let entries = destinations(base);
    let canary = entries.iter().find(|e| t.role(e) == Role::Canary);
    let mut destination = Map::new();
    let host = match (t.subsets, rule_host) {
        (Some(_), Some(host)) if !host.is_empty() => host.to_string(),
        _ => desired.canary_service.clone(),
    };
    destination.insert("host".to_string(), Value::String(host));
    if let Some((subset, _)) = t.subsets {
        destination.insert("subset".to_string(), Value::String(subset.to_string()));
    }
    let port = canary
        .or_else(|| entries.first())
        .and_then(|e| e.pointer("/destination/port"));
    if let Some(port) = port {
        destination.insert("port".to_string(), port.clone());
    }
    Value::Object(destination)
}

fn string_match(m: &StringMatch) -> Value {
    match m {
        StringMatch::Exact(v) => json!({ "exact": v }),
        StringMatch::Prefix(v) => json!({ "prefix": v }),
        StringMatch::Regex(v) => json!({ "regex": v }),
    }
}

/// A header route: requests matching any of its headers go to the canary.
fn header_route(route: &HeaderRoute, canary: &Value) -> Value {
    let matches: Vec<Value> = route
        .matches
        .iter()
        .map(|m| json!({ "headers": { m.header_name.clone(): string_match(&m.header_value) } }))
        .collect();
    json!({
        "name": route.name,
        "match": matches,
        "route": [{ "destination": canary, "weight": 100 }],
    })
}

fn route_match(m: &RouteMatch) -> Value {
    let mut out = Map::new();
    if let Some(method) = &m.method {
        out.insert("method".to_string(), string_match(method));
    }
    if let Some(path) = &m.path {
        out.insert("uri".to_string(), string_match(path));
    }
    if !m.headers.is_empty() {
        let headers: Map<String, Value> = m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), string_match(v)))
            .collect();
        out.insert("headers".to_string(), Value::Object(headers));
    }
    Value::Object(out)
}

/// A mirror route: matching requests go where the weighted route sends them, and a share of
/// them is copied to the canary.
fn mirror_route(route: &MirrorRoute, base: &Value, canary: &Value) -> Value {
    json!({
        "name": route.name,
        "match": route.matches.iter().map(route_match).collect::<Vec<_>>(),
        "route": destinations(base),
        "mirror": canary,
        "mirrorPercentage": { "value": route.percentage },
    })
}

fn virtual_service_ref(spec: &IstioVirtualService, namespace: &str) -> ObjectRef {
    let (name, namespace) = match spec.name.split_once('.') {
        Some((name, ns)) if !ns.is_empty() => (name, ns.split('.').next().unwrap_or(ns)),
        _ => (spec.name.as_str(), namespace),
    };
    ObjectRef {
        group: GROUP,
        version: VERSION,
        kind: "VirtualService",
        plural: "virtualservices",
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// A destination's weight for reading the split: absent is 0, unless no destination says.
fn read_weight(entry: &Value, any_weight: bool) -> Option<f64> {
    weight_or(entry, if any_weight { 0.0 } else { 1.0 }).ok()
}

impl Router for Istio {
    fn name(&self) -> &'static str {
        "istio"
    }

    /// Every VirtualService, then the DestinationRule if one is configured.
    fn objects(&self, namespace: &str, _rollout: &str) -> Vec<ObjectRef> {
        let mut objects: Vec<ObjectRef> = self
            .virtual_services()
            .into_iter()
            .map(|vs| virtual_service_ref(vs, namespace))
            .collect();
        if let Some(rule) = &self.config.destination_rule {
            objects.push(ObjectRef {
                group: GROUP,
                version: VERSION,
                kind: "DestinationRule",
                plural: "destinationrules",
                namespace: namespace.to_string(),
                name: rule.name.clone(),
            });
        }
        objects
    }

    /// The canary's share in every weighed route; where they disagree, the largest share that
    /// is not the desired one.
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let t = self.targets(desired);
        let mut differing: Option<i32> = None;
        for (spec, object, vs) in self.read_virtual_services(current, desired)? {
            let weighted = self.weighted(spec, vs, &object, &t)?;
            for (kind, indexes) in [
                ("http", &weighted.http),
                ("tls", &weighted.tls),
                ("tcp", &weighted.tcp),
            ] {
                for &i in indexes {
                    let Some(route) = vs.pointer(&format!("/spec/{kind}/{i}")) else {
                        continue;
                    };
                    let entries = destinations(route);
                    let any_weight = entries.iter().any(|e| e.get("weight").is_some());
                    let (mut canary, mut total) = (0.0, 0.0);
                    for entry in entries {
                        let weight = read_weight(entry, any_weight).ok_or_else(|| {
                            invalid(
                                &object,
                                format!("a destination weight is not a number: {entry}"),
                            )
                        })?;
                        total += weight;
                        if t.role(entry) == Role::Canary {
                            canary += weight;
                        }
                    }
                    note_share(
                        &mut differing,
                        share(canary, total, desired.max_weight),
                        desired,
                    );
                }
            }
        }
        Ok(differing.unwrap_or(desired.canary_weight))
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let mut writes = Vec::new();
        let mut rule_host = None;
        if self.config.destination_rule.is_some() {
            let objects = self.objects(&desired.namespace, &desired.rollout);
            let index = objects.len().saturating_sub(1);
            if let Some(object) = objects.into_iter().last() {
                let rule = read_at(current, index, &object)?;
                rule_host = rule.pointer("/spec/host").and_then(Value::as_str);
                let updated = self.reconcile_destination_rule(&object, rule, desired)?;
                if updated != *rule {
                    writes.push(Write::Replace(object, updated));
                }
            }
        }
        for (spec, object, vs) in self.read_virtual_services(current, desired)? {
            let updated = self.reconcile_virtual_service(spec, &object, vs, desired, rule_host)?;
            if updated != *vs {
                writes.push(Write::Replace(object, updated));
            }
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use sluice_api::{HeaderMatch, IstioDestinationRule, IstioTcpRoute, IstioTlsRoute};

    use super::*;
    use crate::common::tests::{self as fixtures, replaced};

    fn desired(weight: i32) -> Desired {
        fixtures::desired(
            "rollout-example",
            "default",
            "canary-svc",
            "stable-svc",
            weight,
        )
    }

    fn vs_config(name: &str, routes: &[&str]) -> IstioVirtualService {
        IstioVirtualService {
            name: name.into(),
            routes: routes.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Host-level splitting, as in Argo's Istio docs.
    fn host_router(managed: &[&str]) -> Istio {
        let managed: Vec<String> = managed.iter().map(|m| m.to_string()).collect();
        Istio::new(
            &IstioTrafficRouting {
                virtual_service: Some(vs_config("rollout-vsvc", &["primary"])),
                ..Default::default()
            },
            &managed,
        )
    }

    /// The host-level VirtualService of Argo's docs, with a route Sluice must not touch.
    fn host_vs() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {"name": "rollout-vsvc", "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "gateways": ["istio-rollout-gateway"],
                "hosts": ["istio-rollout.dev.argoproj.io"],
                "http": [
                    {
                        "name": "admin",
                        "match": [{"uri": {"prefix": "/admin"}}],
                        "route": [{"destination": {"host": "admin-svc"}}]
                    },
                    {
                        "name": "primary",
                        "route": [
                            {"destination": {"host": "stable-svc", "port": {"number": 15372}}, "weight": 100},
                            {"destination": {"host": "canary-svc", "port": {"number": 15372}}, "weight": 0}
                        ]
                    }
                ],
                "tls": [{
                    "match": [{"port": 3000, "sniHosts": ["reviews.bookinfo.com"]}],
                    "route": [{"destination": {"host": "reviews-legacy"}}]
                }]
            }
        })
    }

    fn http_names(vs: &Value) -> Vec<&str> {
        vs["spec"]["http"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("-"))
            .collect()
    }

    fn header(name: &str, header: &str, value: StringMatch) -> HeaderRoute {
        HeaderRoute {
            name: name.into(),
            matches: vec![HeaderMatch {
                header_name: header.into(),
                header_value: value,
            }],
        }
    }

    #[test]
    fn host_level_weights_and_nothing_else() {
        let writes = host_router(&[])
            .reconcile(&[Some(host_vs())], &desired(5))
            .unwrap();
        let body = replaced(&writes);
        let mut expected = host_vs();
        expected["spec"]["http"][1]["route"][0]["weight"] = json!(95);
        expected["spec"]["http"][1]["route"][1]["weight"] = json!(5);
        assert_eq!(*body, expected);
        assert_eq!(
            writes[0].target().to_string(),
            "VirtualService default/rollout-vsvc"
        );
        assert_eq!(
            writes[0].target().api_version(),
            "networking.istio.io/v1alpha3"
        );
    }

    #[test]
    fn a_second_reconcile_writes_nothing_and_weight_reads_it_back() {
        let r = host_router(&[]);
        let written = replaced(&r.reconcile(&[Some(host_vs())], &desired(30)).unwrap()).clone();
        assert_eq!(
            r.reconcile(&[Some(written.clone())], &desired(30)).unwrap(),
            vec![]
        );
        assert_eq!(
            r.weight(&[Some(written.clone())], &desired(30)).unwrap(),
            30
        );
        assert_eq!(r.weight(&[Some(host_vs())], &desired(30)).unwrap(), 0);
    }

    #[test]
    fn fully_qualified_hosts_are_the_services() {
        let mut vs = host_vs();
        vs["spec"]["http"][1]["route"][0]["destination"]["host"] =
            json!("stable-svc.default.svc.cluster.local");
        vs["spec"]["http"][1]["route"][1]["destination"]["host"] =
            json!("canary-svc.default.svc.cluster.local");
        let body = replaced(
            &host_router(&[])
                .reconcile(&[Some(vs)], &desired(40))
                .unwrap(),
        )
        .clone();
        assert_eq!(body["spec"]["http"][1]["route"][1]["weight"], 40);
    }

    #[test]
    fn the_only_route_is_weighed_when_none_are_named() {
        let r = Istio::new(
            &IstioTrafficRouting {
                virtual_service: Some(vs_config("rollout-vsvc", &[])),
                ..Default::default()
            },
            &[],
        );
        let vs = json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {"name": "rollout-vsvc", "namespace": "default"},
            "spec": {"http": [{"route": [
                {"destination": {"host": "stable-svc"}, "weight": 100},
                {"destination": {"host": "canary-svc"}, "weight": 0}
            ]}]}
        });
        let body = replaced(&r.reconcile(&[Some(vs)], &desired(20)).unwrap()).clone();
        assert_eq!(body["spec"]["http"][0]["route"][0]["weight"], 80);
        assert_eq!(body["spec"]["http"][0]["route"][1]["weight"], 20);
    }

    #[test]
    fn several_unnamed_candidates_ask_for_routes() {
        let r = Istio::new(
            &IstioTrafficRouting {
                virtual_service: Some(vs_config("rollout-vsvc", &[])),
                ..Default::default()
            },
            &[],
        );
        let mut vs = host_vs();
        vs["spec"].as_object_mut().unwrap().remove("tls");
        let err = r.reconcile(&[Some(vs)], &desired(20)).unwrap_err();
        assert!(
            err.to_string()
                .contains("has 2 HTTP routes; name the ones to weigh"),
            "{err}"
        );
    }

    #[test]
    fn a_route_that_names_neither_service_is_an_error() {
        let mut vs = host_vs();
        vs["spec"]["http"][1]["route"] = json!([{"destination": {"host": "other"}, "weight": 100}]);
        let err = host_router(&[])
            .reconcile(&[Some(vs)], &desired(20))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "VirtualService default/rollout-vsvc: HTTP route `primary` has no destination for \
             the canary Service `canary-svc`"
        );
        let mut vs = host_vs();
        vs["spec"]["http"][1]["route"][0]["destination"]["host"] = json!("other");
        let err = host_router(&[])
            .reconcile(&[Some(vs)], &desired(20))
            .unwrap_err();
        assert!(
            err.to_string().contains("stable Service `stable-svc`"),
            "{err}"
        );
    }

    #[test]
    fn missing_objects_and_routes_are_errors() {
        let r = host_router(&[]);
        assert_eq!(
            r.reconcile(&[None], &desired(1)).unwrap_err(),
            RouterError::NotFound("VirtualService default/rollout-vsvc".into())
        );
        let mut vs = host_vs();
        vs["spec"]["http"][1]["name"] = json!("renamed");
        let err = r.reconcile(&[Some(vs)], &desired(1)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("has no HTTP route named `primary`"),
            "{err}"
        );
        let none = Istio::new(&IstioTrafficRouting::default(), &[]);
        assert!(none.objects("default", "r").is_empty());
        assert!(none.reconcile(&[], &desired(1)).is_err());
    }

    #[test]
    fn a_weighted_leftover_destination_is_dropped_a_zero_one_kept() {
        let mut vs = host_vs();
        let route = vs["spec"]["http"][1]["route"].as_array_mut().unwrap();
        route.push(json!({"destination": {"host": "experiment-svc"}, "weight": 10}));
        route.push(json!({"destination": {"host": "idle-svc"}, "weight": 0}));
        let body = replaced(
            &host_router(&[])
                .reconcile(&[Some(vs)], &desired(10))
                .unwrap(),
        )
        .clone();
        let hosts: Vec<&str> = body["spec"]["http"][1]["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["destination"]["host"].as_str().unwrap())
            .collect();
        assert_eq!(hosts, ["stable-svc", "canary-svc", "idle-svc"]);
    }

    #[test]
    fn header_routes_come_first_in_managed_order_and_leave_when_done() {
        let r = host_router(&["mirror-route", "set-header-1", "set-header-2"]);
        let mut d = desired(10);
        d.header_routes = vec![
            header(
                "set-header-1",
                "agent",
                StringMatch::Regex("firefox(.*)".into()),
            ),
            HeaderRoute {
                name: "set-header-2".into(),
                matches: vec![
                    HeaderMatch {
                        header_name: "x-team".into(),
                        header_value: StringMatch::Exact("qa".into()),
                    },
                    HeaderMatch {
                        header_name: "x-beta".into(),
                        header_value: StringMatch::Prefix("yes".into()),
                    },
                ],
            },
        ];
        let body = replaced(&r.reconcile(&[Some(host_vs())], &d).unwrap()).clone();
        assert_eq!(
            http_names(&body),
            ["set-header-1", "set-header-2", "admin", "primary"]
        );
        assert_eq!(
            body["spec"]["http"][0],
            json!({
                "name": "set-header-1",
                "match": [{"headers": {"agent": {"regex": "firefox(.*)"}}}],
                "route": [{"destination": {"host": "canary-svc", "port": {"number": 15372}}, "weight": 100}]
            })
        );
        assert_eq!(
            body["spec"]["http"][1]["match"],
            json!([
                {"headers": {"x-team": {"exact": "qa"}}},
                {"headers": {"x-beta": {"prefix": "yes"}}}
            ])
        );
        // The weighted route is untouched by the header routes, and the foreign one kept as is.
        assert_eq!(body["spec"]["http"][2], host_vs()["spec"]["http"][0]);
        assert_eq!(body["spec"]["http"][3]["route"][1]["weight"], 10);
        assert_eq!(r.reconcile(&[Some(body.clone())], &d).unwrap(), vec![]);
        assert_eq!(r.weight(&[Some(body.clone())], &d).unwrap(), 10);

        // One route left in force, then none.
        let mut fewer = d.clone();
        fewer.header_routes.truncate(1);
        let after = replaced(&r.reconcile(&[Some(body.clone())], &fewer).unwrap()).clone();
        assert_eq!(http_names(&after), ["set-header-1", "admin", "primary"]);
        let gone = replaced(&r.reconcile(&[Some(after)], &desired(10)).unwrap()).clone();
        assert_eq!(http_names(&gone), ["admin", "primary"]);
    }

    #[test]
    fn a_mirror_route_copies_to_the_canary_and_follows_the_weights() {
        let r = host_router(&["mirror-route"]);
        let mut d = desired(25);
        d.mirror_routes = vec![MirrorRoute {
            name: "mirror-route".into(),
            matches: vec![RouteMatch {
                method: Some(StringMatch::Exact("GET".into())),
                path: Some(StringMatch::Prefix("/".into())),
                headers: BTreeMap::from([("x-mirror".to_string(), StringMatch::Exact("1".into()))]),
            }],
            percentage: 35,
        }];
        let body = replaced(&r.reconcile(&[Some(host_vs())], &d).unwrap()).clone();
        assert_eq!(http_names(&body), ["mirror-route", "admin", "primary"]);
        assert_eq!(
            body["spec"]["http"][0],
            json!({
                "name": "mirror-route",
                "match": [{
                    "method": {"exact": "GET"},
                    "uri": {"prefix": "/"},
                    "headers": {"x-mirror": {"exact": "1"}}
                }],
                "route": [
                    {"destination": {"host": "stable-svc", "port": {"number": 15372}}, "weight": 75},
                    {"destination": {"host": "canary-svc", "port": {"number": 15372}}, "weight": 25}
                ],
                "mirror": {"host": "canary-svc", "port": {"number": 15372}},
                "mirrorPercentage": {"value": 35}
            })
        );
        assert_eq!(r.reconcile(&[Some(body.clone())], &d).unwrap(), vec![]);
        // The next weight moves the mirror route's split with the weighted route's.
        d.canary_weight = 50;
        let next = replaced(&r.reconcile(&[Some(body)], &d).unwrap()).clone();
        assert_eq!(next["spec"]["http"][0]["route"][1]["weight"], 50);
        assert_eq!(next["spec"]["http"][2]["route"][1]["weight"], 50);
    }

    #[test]
    fn an_argo_written_mirror_percentage_reads_as_done() {
        let r = host_router(&["mirror-route"]);
        let mut d = desired(0);
        d.mirror_routes = vec![MirrorRoute {
            name: "mirror-route".into(),
            matches: vec![RouteMatch {
                method: Some(StringMatch::Exact("GET".into())),
                ..Default::default()
            }],
            percentage: 100,
        }];
        let body = replaced(&r.reconcile(&[Some(host_vs())], &d).unwrap()).clone();
        // Go writes the float 100.0 as `100`; JSON read back from the API has the same number.
        let text = serde_json::to_string(&body).unwrap();
        let reread: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(r.reconcile(&[Some(reread)], &d).unwrap(), vec![]);
    }

    #[test]
    fn a_managed_route_listed_as_weighted_is_an_error() {
        let r = host_router(&["primary"]);
        let err = r.reconcile(&[Some(host_vs())], &desired(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("both in virtualService.routes and in managedRoutes"),
            "{err}"
        );
    }

    fn subset_router(managed: &[&str]) -> Istio {
        let managed: Vec<String> = managed.iter().map(|m| m.to_string()).collect();
        Istio::new(
            &IstioTrafficRouting {
                virtual_service: Some(vs_config("rollout-vsvc", &["primary"])),
                destination_rule: Some(IstioDestinationRule {
                    name: "rollout-destrule".into(),
                    canary_subset_name: "canary".into(),
                    stable_subset_name: "stable".into(),
                    additional_subset_names: Vec::new(),
                }),
                ..Default::default()
            },
            &managed,
        )
    }

    /// Subset-level splitting, as in Argo's Istio docs.
    fn subset_vs() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {"name": "rollout-vsvc", "namespace": "default", "resourceVersion": "8"},
            "spec": {
                "gateways": ["istio-rollout-gateway"],
                "hosts": ["istio-rollout.dev.argoproj.io"],
                "http": [{
                    "name": "primary",
                    "route": [
                        {"destination": {"host": "rollout-example", "subset": "stable"}, "weight": 100},
                        {"destination": {"host": "rollout-example", "subset": "canary"}, "weight": 0}
                    ]
                }]
            }
        })
    }

    fn destination_rule() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "DestinationRule",
            "metadata": {"name": "rollout-destrule", "namespace": "default", "resourceVersion": "9"},
            "spec": {
                "host": "rollout-example",
                "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
                "subsets": [
                    {"name": "canary", "labels": {"app": "rollout-example"}},
                    {"name": "stable", "labels": {"app": "rollout-example"}},
                    {"name": "debug", "labels": {"app": "rollout-example", "debug": "true"}}
                ]
            }
        })
    }

    #[test]
    fn subset_level_weights_and_hashes() {
        let mut d = desired(10);
        d.canary_service = String::new();
        d.stable_service = String::new();
        let r = subset_router(&[]);
        assert_eq!(
            r.objects("default", "rollout-example")
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "VirtualService default/rollout-vsvc",
                "DestinationRule default/rollout-destrule"
            ]
        );
        let writes = r
            .reconcile(&[Some(subset_vs()), Some(destination_rule())], &d)
            .unwrap();
        assert_eq!(writes.len(), 2);
        let Write::Replace(rule_ref, rule) = &writes[0] else {
            panic!("{writes:?}");
        };
        assert_eq!(rule_ref.kind, "DestinationRule");
        let mut expected = destination_rule();
        expected["metadata"]["annotations"] =
            json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "rollout-example"});
        expected["spec"]["subsets"][0]["labels"]["rollouts-pod-template-hash"] = json!("6c7f6b8d9");
        expected["spec"]["subsets"][1]["labels"]["rollouts-pod-template-hash"] = json!("5b9c8d7f6");
        assert_eq!(*rule, expected);
        let Write::Replace(_, vs) = &writes[1] else {
            panic!("{writes:?}");
        };
        assert_eq!(vs["spec"]["http"][0]["route"][0]["weight"], 90);
        assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 10);
        let current = [Some(vs.clone()), Some(rule.clone())];
        assert_eq!(r.reconcile(&current, &d).unwrap(), vec![]);
        assert_eq!(r.weight(&current, &d).unwrap(), 10);
    }

    #[test]
    fn a_version_without_a_hash_loses_its_label() {
        let mut rule = destination_rule();
        rule["spec"]["subsets"][0]["labels"]["rollouts-pod-template-hash"] = json!("old");
        let mut d = desired(0);
        d.canary_hash = String::new();
        let writes = subset_router(&[])
            .reconcile(&[Some(subset_vs()), Some(rule)], &d)
            .unwrap();
        let Write::Replace(_, rule) = &writes[0] else {
            panic!("{writes:?}");
        };
        assert_eq!(
            rule["spec"]["subsets"][0]["labels"],
            json!({"app": "rollout-example"})
        );
    }

    #[test]
    fn subset_header_routes_go_to_the_rule_host_and_canary_subset() {
        let mut d = desired(0);
        d.header_routes = vec![header(
            "set-header-1",
            "x-canary",
            StringMatch::Exact("yes".into()),
        )];
        let r = subset_router(&["set-header-1"]);
        let writes = r
            .reconcile(&[Some(subset_vs()), Some(destination_rule())], &d)
            .unwrap();
        let Write::Replace(_, vs) = &writes[1] else {
            panic!("{writes:?}");
        };
        assert_eq!(
            vs["spec"]["http"][0]["route"],
            json!([{"destination": {"host": "rollout-example", "subset": "canary"}, "weight": 100}])
        );
    }

    #[test]
    fn a_missing_subset_or_rule_is_an_error() {
        let mut rule = destination_rule();
        rule["spec"]["subsets"].as_array_mut().unwrap().remove(1);
        let err = subset_router(&[])
            .reconcile(&[Some(subset_vs()), Some(rule)], &desired(0))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DestinationRule default/rollout-destrule: has no subset named `stable`"
        );
        let err = subset_router(&[])
            .reconcile(&[Some(subset_vs()), None], &desired(0))
            .unwrap_err();
        assert_eq!(
            err,
            RouterError::NotFound("DestinationRule default/rollout-destrule".into())
        );
        let mut vs = subset_vs();
        vs["spec"]["http"][0]["route"][1]["destination"]["subset"] = json!("v2");
        let err = subset_router(&[])
            .reconcile(&[Some(vs), Some(destination_rule())], &desired(0))
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("has no destination for the canary subset `canary`"),
            "{err}"
        );
    }

    #[test]
    fn several_virtual_services_and_one_in_another_namespace() {
        let r = Istio::new(
            &IstioTrafficRouting {
                virtual_services: vec![
                    vs_config("rollout-vsvc", &["primary"]),
                    vs_config("edge.gateways", &["primary"]),
                ],
                ..Default::default()
            },
            &[],
        );
        let objects = r.objects("default", "rollout-example");
        assert_eq!(objects[1].to_string(), "VirtualService gateways/edge");
        let mut edge = host_vs();
        edge["metadata"]["name"] = json!("edge");
        let writes = r
            .reconcile(&[Some(host_vs()), Some(edge.clone())], &desired(20))
            .unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[1].target().namespace, "gateways");
        // The one that lags is the weight reported.
        let Write::Replace(_, done) = &writes[0] else {
            panic!("{writes:?}");
        };
        assert_eq!(
            r.weight(&[Some(done.clone()), Some(edge)], &desired(20))
                .unwrap(),
            0
        );
    }

    #[test]
    fn tls_and_tcp_routes_by_port_and_sni_hosts() {
        let r = Istio::new(
            &IstioTrafficRouting {
                virtual_service: Some(IstioVirtualService {
                    name: "rollout-vsvc".into(),
                    routes: Vec::new(),
                    tls_routes: vec![IstioTlsRoute {
                        port: Some(443),
                        sni_hosts: vec!["a.example.com".into(), "b.example.com".into()],
                    }],
                    tcp_routes: vec![IstioTcpRoute { port: Some(5432) }],
                }),
                ..Default::default()
            },
            &[],
        );
        let split = json!([
            {"destination": {"host": "stable-svc"}, "weight": 100},
            {"destination": {"host": "canary-svc"}, "weight": 0}
        ]);
        let vs = json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {"name": "rollout-vsvc", "namespace": "default"},
            "spec": {
                "tls": [
                    {"match": [{"port": 443, "sniHosts": ["a.example.com"]}, {"port": 443, "sniHosts": ["b.example.com"]}], "route": split},
                    {"match": [{"port": 443, "sniHosts": ["c.example.com"]}], "route": [{"destination": {"host": "c"}}]}
                ],
                "tcp": [
                    {"match": [{"port": 5432}], "route": split},
                    {"match": [{"port": 6379}], "route": [{"destination": {"host": "redis"}}]}
                ]
            }
        });
        let body = replaced(&r.reconcile(&[Some(vs.clone())], &desired(15)).unwrap()).clone();
        assert_eq!(body["spec"]["tls"][0]["route"][1]["weight"], 15);
        assert_eq!(body["spec"]["tcp"][0]["route"][0]["weight"], 85);
        assert_eq!(body["spec"]["tls"][1], vs["spec"]["tls"][1]);
        assert_eq!(body["spec"]["tcp"][1], vs["spec"]["tcp"][1]);
        assert!(body["spec"].get("http").is_none());
        assert_eq!(
            r.reconcile(&[Some(body.clone())], &desired(15)).unwrap(),
            vec![]
        );
        assert_eq!(r.weight(&[Some(body)], &desired(15)).unwrap(), 15);

        let mut d = desired(15);
        d.header_routes = vec![header("h", "x", StringMatch::Exact("1".into()))];
        let err = r.reconcile(&[Some(vs.clone())], &d).unwrap_err();
        assert!(
            err.to_string()
                .contains("header and mirror routes follow a weighted HTTP route"),
            "{err}"
        );

        let mut wrong = vs;
        wrong["spec"]["tcp"][0]["match"][0]["port"] = json!(5433);
        let err = r.reconcile(&[Some(wrong)], &desired(15)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("has no TCP route matching port 5432"),
            "{err}"
        );
    }

    #[test]
    fn unweighted_destinations_split_evenly_when_read() {
        let mut vs = host_vs();
        for d in vs["spec"]["http"][1]["route"].as_array_mut().unwrap() {
            d.as_object_mut().unwrap().remove("weight");
        }
        assert_eq!(
            host_router(&[]).weight(&[Some(vs)], &desired(0)).unwrap(),
            50
        );
    }
}
