//! The canary strategy: shift the rollout to the new version one step at a time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CanarySteps, IntOrPercent, PodTemplateMetadata, RolloutAnalysis, TrafficRouting};

/// Default `maxSurge` and `maxUnavailable` when the spec leaves them out.
pub const DEFAULT_MAX_SURGE_OR_UNAVAILABLE: IntOrPercent = IntOrPercent::Percent(25);

/// `spec.strategy.canary`: steps, the Services that split traffic, and surge limits.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Service that selects only the canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// Service that selects only the stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// The steps, run in order; without steps the update goes straight to 100%.
    #[serde(default, skip_serializing_if = "CanarySteps::is_empty")]
    pub steps: CanarySteps,
    /// A traffic router that splits requests by weight instead of by replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Pods that may be unavailable during the update (number or percentage; 25% by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
    /// Pods that may run above the desired count (number or percentage; 25% by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrPercent>,
    /// An analysis that runs in the background while the steps execute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<BackgroundAnalysis>,
    /// Keep new pods away from the nodes of old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Labels and annotations put on canary pods while they are the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodTemplateMetadata>,
    /// Labels and annotations put on stable pods while they are stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodTemplateMetadata>,
    /// Seconds before the old ReplicaSet is scaled down after promotion (traffic routing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// How many old ReplicaSets may wait out their scale-down delay at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds before canary pods are scaled down after an abort; 0 keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Scale the stable ReplicaSet down as traffic moves to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
    /// Alternate two Services between stable and canary instead of rewriting selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<PingPongSpec>,
    /// Lower bound of pods in a non-empty canary or stable ReplicaSet (traffic routing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_pods_per_replica_set: Option<i32>,
    /// Pods (a number or a percentage) that must be available before the rollout moves to the
    /// next step; 100% of the step's replicas when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_progress_threshold: Option<ReplicaProgressThreshold>,
}

impl CanaryStrategy {
    /// The Services of the stable and the canary role: `stableService` and `canaryService`, or
    /// with `pingPong` the ping and pong Services, whichever `stable` (the status's
    /// `stablePingPong`; ping at first) names stable, and the other.
    pub fn role_services(
        &self,
        stable: Option<super::PingPong>,
    ) -> (Option<String>, Option<String>) {
        let Some(pp) = self.ping_pong.as_ref() else {
            return (self.stable_service.clone(), self.canary_service.clone());
        };
        let (ping, pong) = (Some(pp.ping_service.clone()), Some(pp.pong_service.clone()));
        match stable.unwrap_or(super::PingPong::Ping) {
            super::PingPong::Ping => (ping, pong),
            super::PingPong::Pong => (pong, ping),
        }
    }

    /// `maxSurge` with the default applied.
    pub fn max_surge_or_default(&self) -> IntOrPercent {
        self.max_surge.unwrap_or(DEFAULT_MAX_SURGE_OR_UNAVAILABLE)
    }

    /// `maxUnavailable` with the default applied.
    pub fn max_unavailable_or_default(&self) -> IntOrPercent {
        self.max_unavailable
            .unwrap_or(DEFAULT_MAX_SURGE_OR_UNAVAILABLE)
    }
}

/// `canary.replicaProgressThreshold`: how many of a step's pods must be available to go on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ReplicaProgressThreshold {
    /// Whether `value` is a percentage (`Percent`) or a number of pods (`Pods`).
    #[serde(rename = "type")]
    pub type_: String,
    /// The threshold; must be greater than 0.
    pub value: i32,
}

/// `canary.analysis`: an AnalysisRun kept running in the background from a given step on.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundAnalysis {
    /// The templates, arguments and options of the run.
    #[serde(flatten)]
    pub analysis: RolloutAnalysis,
    /// Index of the step at which the run starts; 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_step: Option<i32>,
}

/// Anti-affinity injected into new pods so they avoid the nodes of the old version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AntiAffinity {
    /// A soft rule with this weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_during_scheduling_ignored_during_execution: Option<PreferredAntiAffinity>,
    /// A hard rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<RequiredAntiAffinity>,
}

/// The weight of a soft anti-affinity rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct PreferredAntiAffinity {
    /// Weight of the rule, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
}

/// A hard anti-affinity rule; it has no settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct RequiredAntiAffinity {}

/// The two Services that take turns being stable and canary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingPongSpec {
    /// Name of the "ping" Service.
    pub ping_service: String,
    /// Name of the "pong" Service.
    pub pong_service: String,
}
