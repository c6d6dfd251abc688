//! The blue/green strategy: bring the new version up beside the old one, preview it, then
//! switch the active Service over in one move.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AntiAffinity, IntOrPercent, PodTemplateMetadata, RolloutAnalysis};

/// Seconds before the old ReplicaSet is scaled down after the switch, when the spec is silent.
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// `spec.strategy.blueGreen`: the Services to switch and when to promote.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Service that receives production traffic; Sluice points it at the promoted pods.
    pub active_service: String,
    /// Service that points at the new pods before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Replicas of the new version before promotion; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub preview_replica_count: Option<i32>,
    /// Promote automatically once the preview is available (true when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// Seconds to wait before automatic promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub auto_promotion_seconds: Option<i32>,
    /// Pods that may be unavailable while the old version is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
    /// Seconds before the old ReplicaSet is scaled down after the switch (30 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// How many old ReplicaSets may wait out their scale-down delay at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds before the preview pods are scaled down after an abort; 0 keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Keep new pods away from the nodes of old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Analysis that must pass before the active Service is switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis run after the switch; failure switches back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Labels and annotations put on the new pods while they are the preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodTemplateMetadata>,
    /// Labels and annotations put on the pods behind the active Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodTemplateMetadata>,
}

impl BlueGreenStrategy {
    /// Whether promotion happens without a user's word (the default).
    pub fn auto_promotes(&self) -> bool {
        self.auto_promotion_enabled.unwrap_or(true)
    }

    /// Scale-down delay of the old ReplicaSet, with the default applied.
    pub fn scale_down_delay(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }
}
