//! Traffic: the share of requests the canary and the stable version get, as a step asks for it
//! and as the pods serve it, and `status.canary.weights`.
//!
//! No traffic router exists yet: the Services select pods, so the pods are the traffic. A step's
//! weight sizes the canary set ([`crate::canary::steps::targets_at`]), and the weights reported are the
//! canary's share of the available pods. A router plugs in here: it turns [`Weights`] into
//! writes, and the weights it confirms become the ones reported.

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
    strategy: &CanaryStrategy,
    hash: &str,
    stable: &str,
) -> TrafficWeights {
    TrafficWeights {
        canary: WeightDestination {
            weight: weights.canary,
            service_name: strategy.canary_service.clone(),
            pod_template_hash: Some(hash.to_string()),
        },
        stable: WeightDestination {
            weight: weights.stable,
            service_name: strategy.stable_service.clone(),
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
        .weights = Some(status(weights, strategy, hash, &stable));
}
