//! The one table of spec fields that Sluice declares (so Argo manifests apply unchanged) but
//! does not act on yet. `validate` reports each one a spec uses as `Unsupported`.
//!
//! **When a feature lands, delete its line here** (and the matching test case).

use super::{CanaryStrategy, RolloutSpec, StepKind, TrafficRouting, validate::step_field};

/// Tells whether a spec uses a field.
type Uses = fn(&RolloutSpec) -> bool;

/// Declared fields Sluice ignores today, with a test of whether a spec uses them.
#[rustfmt::skip]
const UNSUPPORTED_FIELDS: &[(&str, Uses)] = &[
    ("spec.workloadRef",                                   |s| s.workload_ref.is_some()),
    ("spec.rollbackWindow",                                |s| s.rollback_window.is_some()),
    ("spec.strategy.canary.trafficRouting.nginx",          |s| router(s, |t| t.nginx.is_some())),
    ("spec.strategy.canary.trafficRouting.istio",          |s| router(s, |t| t.istio.is_some())),
    ("spec.strategy.canary.trafficRouting.smi",            |s| router(s, |t| t.smi.is_some())),
    ("spec.strategy.canary.trafficRouting.alb",            |s| router(s, |t| t.alb.is_some())),
    ("spec.strategy.canary.trafficRouting.traefik",        |s| router(s, |t| t.traefik.is_some())),
    ("spec.strategy.canary.trafficRouting.apisix",         |s| router(s, |t| t.apisix.is_some())),
    ("spec.strategy.canary.trafficRouting.ambassador",     |s| router(s, |t| t.ambassador.is_some())),
    ("spec.strategy.canary.trafficRouting.appMesh",        |s| router(s, |t| t.app_mesh.is_some())),
    ("spec.strategy.canary.trafficRouting.plugins",        |s| router(s, |t| !t.plugins.is_empty())),
    ("spec.strategy.canary.trafficRouting.managedRoutes",  |s| router(s, |t| !t.managed_routes.is_empty())),
    ("spec.strategy.canary.trafficRouting.maxTrafficWeight", |s| router(s, |t| t.max_traffic_weight.is_some())),
    ("spec.strategy.canary.pingPong",                      |s| canary(s, |c| c.ping_pong.is_some())),
    ("spec.strategy.canary.dynamicStableScale",            |s| canary(s, |c| c.dynamic_stable_scale == Some(true))),
    ("spec.strategy.canary.minPodsPerReplicaSet",          |s| canary(s, |c| c.min_pods_per_replica_set.is_some())),
];

/// Canary step kinds Sluice does not execute yet.
const UNSUPPORTED_STEPS: &[StepKind] = &[
    StepKind::Experiment,
    StepKind::SetHeaderRoute,
    StepKind::SetMirrorRoute,
    StepKind::Plugin,
];

/// The paths of every unsupported field and step the spec uses, in table order.
pub(super) fn unsupported_fields(spec: &RolloutSpec) -> Vec<String> {
    let fields = UNSUPPORTED_FIELDS
        .iter()
        .filter(|(_, uses)| uses(spec))
        .map(|(field, _)| (*field).to_owned());
    let steps = spec.canary().map_or(&[][..], |c| &c.steps);
    let step_fields = steps
        .iter()
        .enumerate()
        .filter(|(_, step)| UNSUPPORTED_STEPS.contains(&step.kind()))
        .map(|(i, step)| step_field(i, step.kind()));
    fields.chain(step_fields).collect()
}

/// Whether the canary strategy uses a router matching `test`.
fn router(spec: &RolloutSpec, test: fn(&TrafficRouting) -> bool) -> bool {
    spec.canary()
        .and_then(|c| c.traffic_routing.as_ref())
        .is_some_and(test)
}

/// Whether the canary strategy matches `test`.
fn canary(spec: &RolloutSpec, test: fn(&CanaryStrategy) -> bool) -> bool {
    spec.canary().is_some_and(test)
}
