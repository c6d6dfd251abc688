//! The one table of spec fields that Sluice declares (so Argo manifests apply unchanged) but
//! does not act on yet. `validate` reports each one a spec uses as `Unsupported`.
//!
//! **When a feature lands, delete its line here** (and the matching test case).

use super::{CanarySteps, RolloutSpec, StepKind, TrafficRouting, validate::step_field};

/// Tells whether a spec uses a field.
type Uses = fn(&RolloutSpec) -> bool;

/// Declared fields Sluice ignores today, with a test of whether a spec uses them.
#[rustfmt::skip]
const UNSUPPORTED_FIELDS: &[(&str, Uses)] = &[
    ("spec.strategy.canary.trafficRouting.appMesh",        |s| router(s, |t| t.app_mesh.is_some())),
    // Router plugins other than Gateway API's, which Sluice runs natively.
    ("spec.strategy.canary.trafficRouting.plugins",        |s| router(s, |t| t.plugins.keys().any(|k| k != super::GATEWAY_API_PLUGIN))),
    // An Experiment has no field to carry its runs' labels and annotations to them.
];
// Not listed, as ignoring them is safe and Argo-equivalent:
// - fields inside a router or a step kind that is itself listed (nginx `canaryIngressAnnotations`,
//   istio `destinationRule.additionalSubsetNames`): the router is reported, so the field is
//   never silently ignored;
// - status fields Argo's controller writes for features Sluice does not run
//   (`status.alb`, `status.albs`, `stepPluginStatuses[].disabled`): kept as written.

/// Canary step kinds Sluice does not execute yet.
const UNSUPPORTED_STEPS: &[StepKind] = &[StepKind::Plugin];

/// The paths of every unsupported field and step the spec uses, in table order.
pub(super) fn unsupported_fields(spec: &RolloutSpec) -> Vec<String> {
    let fields = UNSUPPORTED_FIELDS
        .iter()
        .filter(|(_, uses)| uses(spec))
        .map(|(field, _)| (*field).to_owned());
    let empty = CanarySteps::default();
    let steps = spec.canary().map_or(&empty, |c| &c.steps);
    let step_fields = (0..steps.len()).flat_map(|i| {
        steps
            .actions(i)
            .into_iter()
            .filter(|step| UNSUPPORTED_STEPS.contains(&step.kind()))
            .map(move |step| step_field(i, step.kind()))
    });
    fields.chain(step_fields).collect()
}

/// Whether the canary strategy uses a router matching `test`.
fn router(spec: &RolloutSpec, test: fn(&TrafficRouting) -> bool) -> bool {
    spec.canary()
        .and_then(|c| c.traffic_routing.as_ref())
        .is_some_and(test)
}
