//! `Experiment`: ReplicaSets of given pod templates run side by side for a while, with analyses
//! judging them; created by hand or by a canary's `experiment` step.

use k8s_openapi::{
    api::core::v1::PodTemplateSpec,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AnalysisPhase, Argument, ConditionStatus, DryRun, Duration, MeasurementRetention};

/// ReplicaSets of the given templates, available together for a duration while analyses run.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Experiment",
    namespaced,
    shortname = "exp",
    status = "ExperimentStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "ReplicaSets of given pod templates run side by side for a while, with analyses judging them.",
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Experiment status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The pod templates, one ReplicaSet each.
    pub templates: Vec<TemplateSpec>,
    /// How long the experiment runs once every template is available; until terminated, or
    /// until its required analyses end, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Seconds a template may take to become available before the experiment fails; 600 when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Stop the experiment now (its result is what its analyses said so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// The analyses run once every template is available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<ExperimentAnalysisTemplateRef>,
    /// Seconds the ReplicaSets stay up after the experiment ends; 30 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Metrics whose failures are reported but do not fail the analyses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements the analyses keep per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Labels and annotations for the experiment's AnalysisRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<super::AnalysisRunMetadata>,
}

impl ExperimentSpec {
    /// Whether the experiment was asked to stop.
    pub fn is_terminated(&self) -> bool {
        self.terminate.unwrap_or(false)
    }
}

/// One template of an experiment: the ReplicaSet it becomes.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    /// Its name within the experiment (the ReplicaSet is `<experiment>-<name>`).
    pub name: String,
    /// Pods to run; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Seconds a new pod must be ready before it counts as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: Option<i32>,
    /// Label selector of its pods; must match the template's labels and differ from the other
    /// templates' selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub selector: Option<LabelSelector>,
    /// The pods to run.
    pub template: PodTemplateSpec,
    /// A Service to create for the template's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<super::TemplateService>,
}

impl TemplateSpec {
    /// `replicas`, defaulted.
    pub fn desired(&self) -> i32 {
        self.replicas.unwrap_or(1).max(0)
    }
}

/// An analysis of an experiment: a template and its arguments.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisTemplateRef {
    /// Its name within the experiment.
    pub name: String,
    /// The AnalysisTemplate (or ClusterAnalysisTemplate) to run.
    pub template_name: String,
    /// Look the template up as a ClusterAnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Arguments given to the template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// The experiment does not end before this analysis does, even past its duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
}

impl ExperimentAnalysisTemplateRef {
    /// `requiredForCompletion`, defaulted.
    pub fn required(&self) -> bool {
        self.required_for_completion.unwrap_or(false)
    }
}

/// What an experiment has done so far.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// Pending until every template is available, Running, then the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    /// Why the phase is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each template's ReplicaSet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_statuses: Vec<TemplateStatus>,
    /// When every template was first available: the duration counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub available_at: Option<Time>,
    /// Conditions, shaped like a Rollout's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ExperimentCondition>,
    /// Each analysis's run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<ExperimentAnalysisRunStatus>,
}

/// Where a template's ReplicaSet stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum TemplateStatusCode {
    /// Its pods are not all available yet.
    #[default]
    Progressing,
    /// Its pods are available.
    Running,
    /// The experiment ended well.
    Successful,
    /// The experiment failed (a run failed, or a template missed its deadline).
    Failed,
    /// The experiment ended in error, or without a verdict (Inconclusive).
    Error,
}

impl TemplateStatusCode {
    /// Whether the template is done.
    pub fn is_completed(self) -> bool {
        matches!(self, Self::Successful | Self::Failed | Self::Error)
    }
}

/// One template's ReplicaSet, as last seen.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateStatus {
    /// The template.
    pub name: String,
    /// Pods of the ReplicaSet.
    pub replicas: i32,
    /// Pods with the template's spec.
    pub updated_replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Available pods.
    pub available_replicas: i32,
    /// Hash collisions met naming the ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// Where the template stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TemplateStatusCode>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed: the progress deadline counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub last_transition_time: Option<Time>,
    /// The Service created for the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The ReplicaSet's pod template hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// A condition of an experiment.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentCondition {
    /// `InvalidSpec`, `Completed`, `Progressing`, `Running` or `ReplicaFailure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// When the condition was last written.
    #[schemars(schema_with = "super::schema::time")]
    pub last_update_time: Time,
    /// When `status` last changed.
    #[schemars(schema_with = "super::schema::time")]
    pub last_transition_time: Time,
    /// A short CamelCase reason.
    pub reason: String,
    /// A message for people.
    pub message: String,
}

/// One analysis's run.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisRunStatus {
    /// The analysis.
    pub name: String,
    /// The AnalysisRun.
    pub analysis_run: String,
    /// The run's phase.
    pub phase: AnalysisPhase,
    /// The run's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
