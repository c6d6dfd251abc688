//! The rules of `canary.trafficRouting` and the steps that need it, as Argo Rollouts checks them.

use std::collections::BTreeSet;

use super::{SpecProblem, step_field};
use crate::{CanaryStep, CanaryStrategy, GatewayApiConfig, StepKind, TrafficRouting};

/// Checks a canary's router, its managed routes, and the steps that need a router.
pub(super) fn check(canary: &CanaryStrategy, problems: &mut Vec<SpecProblem>) {
    let Some(routing) = canary.traffic_routing.as_ref() else {
        check_steps_without_router(canary, problems);
        return;
    };
    let field = "spec.strategy.canary";
    // Istio's subset-level routing splits by the DestinationRule's subsets, and pingPong by its
    // ping and pong Services, not by canaryService and stableService.
    let by_subsets = routing
        .istio
        .as_ref()
        .is_some_and(|i| i.destination_rule.is_some())
        || canary.ping_pong.is_some();
    if let Some(pp) = canary.ping_pong.as_ref()
        && (pp.ping_service.is_empty() || pp.ping_service == pp.pong_service)
    {
        problems.push(SpecProblem::invalid(
            format!("{field}.pingPong"),
            "needs two different Services, pingService and pongService",
        ));
    }
    for (name, service) in [
        ("canaryService", &canary.canary_service),
        ("stableService", &canary.stable_service),
    ] {
        if !by_subsets && service.as_deref().is_none_or(str::is_empty) {
            problems.push(SpecProblem::invalid(
                format!("{field}.{name}"),
                "is required with trafficRouting: the router splits requests between the canary and stable Services",
            ));
        }
    }
    check_gateway_api(routing, problems);
    if canary.dynamic_stable_scale == Some(true) && canary.scale_down_delay_seconds.is_some() {
        problems.push(SpecProblem::invalid(
            format!("{field}.scaleDownDelaySeconds"),
            "cannot be set with dynamicStableScale: the stable set shrinks as it loses traffic",
        ));
    }
    let max = routing.max_traffic_weight.unwrap_or(100);
    let managed = managed_routes(routing, problems);
    for (i, step) in canary.steps.every_action() {
        match step {
            CanaryStep::SetWeight(w) if *w > max => problems.push(SpecProblem::invalid(
                step_field(i, StepKind::SetWeight),
                format!("must not exceed maxTrafficWeight {max} (got {w})"),
            )),
            CanaryStep::SetHeaderRoute(h) => {
                let name = h.name.clone().unwrap_or_default();
                check_managed(i, StepKind::SetHeaderRoute, &name, &managed, problems);
            }
            CanaryStep::SetMirrorRoute(m) => {
                check_managed(i, StepKind::SetMirrorRoute, &m.name, &managed, problems);
                if let Some(p) = m.percentage.filter(|p| !(0..=100).contains(p)) {
                    problems.push(SpecProblem::invalid(
                        format!("{}.percentage", step_field(i, StepKind::SetMirrorRoute)),
                        format!("must be between 0 and 100 (got {p})"),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Header and mirror routes are written into a router's objects: without one they would be
/// silently dropped.
fn check_steps_without_router(canary: &CanaryStrategy, problems: &mut Vec<SpecProblem>) {
    for (field, set) in [
        ("pingPong", canary.ping_pong.is_some()),
        (
            "dynamicStableScale",
            canary.dynamic_stable_scale == Some(true),
        ),
        (
            "minPodsPerReplicaSet",
            canary.min_pods_per_replica_set.is_some(),
        ),
    ] {
        if set {
            problems.push(SpecProblem::invalid(
                format!("spec.strategy.canary.{field}"),
                "needs spec.strategy.canary.trafficRouting: without a router the pods are the traffic",
            ));
        }
    }
    for (i, step) in canary.steps.every_action() {
        let kind = step.kind();
        if matches!(kind, StepKind::SetHeaderRoute | StepKind::SetMirrorRoute) {
            problems.push(SpecProblem::invalid(
                step_field(i, kind),
                "needs spec.strategy.canary.trafficRouting with the route in managedRoutes",
            ));
        }
    }
}

/// The names of `managedRoutes`; a name listed twice is a problem.
fn managed_routes(routing: &TrafficRouting, problems: &mut Vec<SpecProblem>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, route) in routing.managed_routes.iter().enumerate() {
        if !names.insert(route.name.clone()) {
            problems.push(SpecProblem::invalid(
                format!("spec.strategy.canary.trafficRouting.managedRoutes[{i}].name"),
                format!("{:?} is listed twice", route.name),
            ));
        }
    }
    names
}

/// A header or mirror route step must name a managed route.
fn check_managed(
    i: usize,
    kind: StepKind,
    name: &str,
    managed: &BTreeSet<String>,
    problems: &mut Vec<SpecProblem>,
) {
    if !managed.contains(name) {
        problems.push(SpecProblem::invalid(
            format!("{}.name", step_field(i, kind)),
            format!("{name:?} is not in spec.strategy.canary.trafficRouting.managedRoutes"),
        ));
    }
}

/// The Gateway API plugin's configuration must read as the plugin's and name a route.
fn check_gateway_api(routing: &TrafficRouting, problems: &mut Vec<SpecProblem>) {
    let field = format!(
        "spec.strategy.canary.trafficRouting.plugins[{:?}]",
        crate::GATEWAY_API_PLUGIN
    );
    match GatewayApiConfig::of(routing) {
        None => {}
        Some(Err(message)) => problems.push(SpecProblem::invalid(field, message)),
        Some(Ok(config)) if config.routes().is_empty() => problems.push(SpecProblem::invalid(
            field,
            "names no route: set httpRoute(s), grpcRoute(s) or tcpRoute(s)",
        )),
        Some(Ok(_)) => {}
    }
}
