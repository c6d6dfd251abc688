//! The `Rollout` custom resource: a Deployment-like workload updated by a canary or
//! blue/green strategy. Field names and JSON shapes follow Argo Rollouts `v1alpha1`.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::PodTemplateSpec,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BlueGreenStrategy, CanaryStrategy, RolloutAnalysis, RolloutStatus};

/// Replicas when `spec.replicas` is absent (as for a Deployment).
pub const DEFAULT_REPLICAS: i32 = 1;
/// Old ReplicaSets kept when `spec.revisionHistoryLimit` is absent.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Seconds without progress before the rollout is degraded, when the spec does not say.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

/// What the user asks of a Rollout: the pods to run and how to move them to a new version.
// Each `printcolumn(...)` repeats the same keys by design; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    shortname = "ro",
    status = "RolloutStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A workload updated progressively by a canary or blue/green strategy (Argo Rollouts compatible).",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.HPAReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Number of desired pods"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Total number of non-terminated pods targeted by this rollout"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Total number of non-terminated pods that have the desired template spec"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Total number of pods ready for at least minReadySeconds"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Number of desired pods; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Label selector of the rollout's pods; must match the template's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub selector: Option<LabelSelector>,
    /// The pods to create; absent when `workloadRef` supplies them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    /// A Deployment (or other workload) whose pod template this rollout uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<ObjectRef>,
    /// Seconds a new pod must be ready before it counts as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: Option<i32>,
    /// How many old ReplicaSets to keep; 10 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revision_history_limit: Option<i32>,
    /// Stops the rollout where it is until set back to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Seconds without progress before the rollout is reported degraded; 600 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub progress_deadline_seconds: Option<i32>,
    /// Abort the update when the progress deadline is exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Restart every pod created before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub restart_at: Option<Time>,
    /// Roll back to one of these recent revisions without running the steps again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
    /// How to replace old pods with new ones: exactly one of canary and blueGreen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,
    /// How many finished AnalysisRuns and Experiments to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunStrategy>,
}

/// The update strategy as written: `validate` requires exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Switch a Service from the old pods to the new ones at once, after a preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    /// Shift replicas (or traffic) to the new pods step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
}

/// The one strategy of a valid spec, for code that runs after `validate`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy<'a> {
    /// The spec uses `strategy.canary`.
    Canary(&'a CanaryStrategy),
    /// The spec uses `strategy.blueGreen`.
    BlueGreen(&'a BlueGreenStrategy),
}

impl RolloutSpec {
    /// The strategy, when exactly one of canary and blueGreen is set.
    pub fn strategy(&self) -> Option<Strategy<'_>> {
        let strategy = self.strategy.as_ref()?;
        match (&strategy.canary, &strategy.blue_green) {
            (Some(canary), None) => Some(Strategy::Canary(canary)),
            (None, Some(blue_green)) => Some(Strategy::BlueGreen(blue_green)),
            _ => None,
        }
    }

    /// The Deployment `workloadRef` names, when it names an `apps/v1` Deployment (the only kind
    /// a Rollout can take its template from): what the controller reads and `set image` patches.
    pub fn workload_deployment(&self) -> Option<&str> {
        let reference = self.workload_ref.as_ref()?;
        reference
            .name
            .as_deref()
            .filter(|_| reference.is_deployment())
    }

    /// The canary strategy, if one is written (even alongside blueGreen).
    pub fn canary(&self) -> Option<&CanaryStrategy> {
        self.strategy.as_ref()?.canary.as_ref()
    }

    /// The blue/green strategy, if one is written (even alongside canary).
    pub fn blue_green(&self) -> Option<&BlueGreenStrategy> {
        self.strategy.as_ref()?.blue_green.as_ref()
    }

    /// Every analysis the strategy names, with the field that names it
    /// (`spec.strategy.canary.steps[2].analysis`): step, background and blue/green analyses,
    /// the ones whose templates must exist for the rollout to be valid.
    pub fn analyses(&self) -> Vec<(String, &RolloutAnalysis)> {
        let mut found = Vec::new();
        if let Some(canary) = self.canary() {
            for (i, step) in canary.steps.every_action() {
                if let crate::CanaryStep::Analysis(analysis) = step {
                    found.push((
                        format!("spec.strategy.canary.steps[{i}].analysis"),
                        analysis,
                    ));
                }
            }
            if let Some(background) = canary.analysis.as_ref() {
                found.push((
                    "spec.strategy.canary.analysis".to_owned(),
                    &background.analysis,
                ));
            }
        }
        if let Some(blue_green) = self.blue_green() {
            let named = [
                ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
                ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
            ];
            for (field, analysis) in named {
                if let Some(analysis) = analysis {
                    found.push((format!("spec.strategy.blueGreen.{field}"), analysis));
                }
            }
        }
        found
    }

    /// Desired replicas with the default applied.
    pub fn desired_replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    /// Old ReplicaSets to keep, with the default applied.
    pub fn history_limit(&self) -> i32 {
        self.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
    }

    /// The progress deadline in seconds, with the default applied.
    pub fn progress_deadline(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }

    /// Whether the user paused the rollout (`spec.paused: true`).
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }
}

/// A reference to the workload whose pod template the rollout borrows.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API version of the referent, e.g. `apps/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent, e.g. `Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the referent, in the rollout's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether and when to scale the referenced workload down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDownPolicy>,
}

impl ObjectRef {
    /// Whether it refers to an `apps/v1` Deployment (an absent apiVersion reads as `apps/v1`).
    pub fn is_deployment(&self) -> bool {
        self.kind.as_deref() == Some("Deployment")
            && self.api_version.as_deref().is_none_or(|v| v == "apps/v1")
    }
}

/// When a referenced Deployment is scaled down as the rollout takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ScaleDownPolicy {
    /// Leave the Deployment as it is.
    #[serde(rename = "never")]
    Never,
    /// Scale it to zero once the rollout is healthy.
    #[serde(rename = "onsuccess")]
    OnSuccess,
    /// Scale it down as the rollout scales up.
    #[serde(rename = "progressively")]
    Progressively,
}

/// Revisions that a rollback may return to at once, skipping the steps.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    /// How many recent revisions count as inside the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revisions: Option<i32>,
}

/// How many finished AnalysisRuns and Experiments to keep per rollout.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStrategy {
    /// Successful runs to keep (Argo's default is 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub successful_run_history_limit: Option<i32>,
    /// Failed, errored or inconclusive runs to keep (Argo's default is 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub unsuccessful_run_history_limit: Option<i32>,
}

/// Extra labels and annotations put on pods while they play a role (canary, stable, preview).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMetadata {
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
