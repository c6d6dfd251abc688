//! Traffic: the share of requests the canary and the stable version get, as a step asks for it
//! and as the pods serve it, and `status.canary.weights`.
//!
//! Without a traffic router the Services select pods, so the pods are the traffic: a step's
//! weight sizes the canary set ([`crate::canary::steps::targets_at`]), and the weights reported
//! are the canary's share of the available pods. With a router
//! ([`crate::canary::routed`]) the plan decides the weight and routes
//! ([`sluice_traffic::Desired`]), the controller writes them, and the weights reported are the
//! ones the router's objects were read to carry.

use sluice_api::{
    CanaryStatus, CanaryStep, CanaryStrategy, TrafficWeights, WeightDestination, model::weight_at,
};

use super::{Planner, replicasets::SetView};

/// The percentage of traffic each version gets; the two always add up to 100.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weights {
    /// Percent to the canary (the version being rolled out).
    pub canary: i32,
    /// Percent to the stable version.
    pub stable: i32,
}

impl Weights {
    /// `canary` percent to the canary, the rest to the stable version.
    pub fn to_canary(canary: i32) -> Self {
        Self {
            canary,
            stable: 100 - canary,
        }
    }
}

/// The weights the step at `index` asks for: the last `setWeight` at or before it (0 before
/// any), everything to the canary once past the last step.
pub fn at_step(steps: &[CanaryStep], index: i32) -> Weights {
    Weights::to_canary(weight_at(steps, index))
}

/// The weights the pods serve without a router: the canary's share of the available pods of
/// both versions, rounded to the nearest percent (all to the stable version when none is up).
pub fn by_pods(canary_available: i32, stable_available: i32) -> Weights {
    let total = canary_available + stable_available;
    if total == 0 {
        return Weights::to_canary(0);
    }
    Weights::to_canary((100 * canary_available + total / 2) / total)
}

/// The weights the version `hash` and the stable version `stable` serve now, read from `sets`;
/// `stable` equal to `hash` means there is no canary, so it serves nothing.
pub fn served(sets: &[SetView], hash: &str, stable: &str) -> Weights {
    let available_of = |h: &str| {
        sets.iter()
            .filter(|s| s.hash == h)
            .map(|s| s.available)
            .sum::<i32>()
    };
    if stable == hash {
        by_pods(0, available_of(hash))
    } else {
        by_pods(available_of(hash), available_of(stable))
    }
}

/// `status.canary.weights`: where each share goes (Service and pod template hash); nothing
/// additional and nothing verified, since no router reports back.
pub fn status(
    weights: Weights,
    (canary_service, stable_service): (Option<String>, Option<String>),
    hash: &str,
    stable: &str,
) -> TrafficWeights {
    TrafficWeights {
        canary: WeightDestination {
            weight: weights.canary,
            service_name: canary_service,
            pod_template_hash: Some(hash.to_string()),
        },
        stable: WeightDestination {
            weight: weights.stable,
            service_name: stable_service,
            pod_template_hash: Some(stable.to_string()),
        },
        additional: Vec::new(),
        verified: None,
    }
}

/// Reports the weights served now in the status of a canary rollout at version `hash`.
pub fn report(p: &mut Planner<'_>, strategy: &CanaryStrategy, hash: &str) {
    let stable = p
        .status
        .stable_rs
        .clone()
        .unwrap_or_else(|| hash.to_string());
    let weights = served(&p.sets, hash, &stable);
    p.status
        .canary
        .get_or_insert_with(CanaryStatus::default)
        .weights = Some(status(
        weights,
        (
            strategy.canary_service.clone(),
            strategy.stable_service.clone(),
        ),
        hash,
        &stable,
    ));
}

/// What the controller read of a routed canary's router before planning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficView {
    /// The most traffic any of the rollout's routers gives the canary now (out of the rollout's
    /// max weight); `None` when an object could not be read or carries no weight for the
    /// canary, so the plan must assume the canary may get requests.
    pub canary_weight: Option<i32>,
}

/// Reports a routed canary's weights: the ones the router was read to carry, or, before it was
/// ever read, none at all (an unknown weight is not reported as a number).
pub fn report_routed(
    p: &mut Planner<'_>,
    desired: &sluice_traffic::Desired,
    observed: Option<i32>,
) {
    let Some(canary) = observed else {
        return;
    };
    let weights = Weights {
        canary,
        stable: desired.max_weight - canary,
    };
    // The Services of each role (with pingPong, the ping and pong Services take turns).
    let named = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let services = (
        named(&desired.canary_service),
        named(&desired.stable_service),
    );
    let reported = status(
        weights,
        services,
        &desired.canary_hash,
        &desired.stable_hash,
    );
    p.status
        .canary
        .get_or_insert_with(CanaryStatus::default)
        .weights = Some(reported);
}
