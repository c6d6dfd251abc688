//! Analysis templates (`AnalysisTemplate`, `ClusterAnalysisTemplate`), their metrics and
//! arguments, and the way a Rollout refers to them (`RolloutAnalysis`).

use std::collections::BTreeMap;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, IntOrString, MetricProvider};

/// Metrics to measure and the arguments they take; instantiated as an AnalysisRun.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    shortname = "at",
    derive = "Default",
    derive = "PartialEq",
    doc = "A namespaced template of metrics from which AnalysisRuns are created.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// The metrics to measure (may be empty when `templates` brings them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Arguments the metrics refer to as `{{args.NAME}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Metrics whose failures are reported but do not fail the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements to keep per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Other templates whose metrics, arguments and rules are combined with these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<AnalysisTemplateRef>,
}

/// The cluster-scoped twin of an AnalysisTemplate, usable from every namespace.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    shortname = "cat",
    derive = "Default",
    derive = "PartialEq",
    doc = "A cluster-scoped template of metrics from which AnalysisRuns are created.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since resource was created"
    )
)]
pub struct ClusterAnalysisTemplateSpec {
    /// The same fields as an AnalysisTemplate's spec.
    #[serde(flatten)]
    pub template: AnalysisTemplateSpec,
}

/// One metric: what to query, how often, and what counts as success.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Name of the metric, unique within the template.
    pub name: String,
    /// Time between measurements; a single measurement when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time to wait before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<Duration>,
    /// Number of measurements (may be an `{{args.*}}` placeholder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    /// Expression over `result` that marks a measurement successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression over `result` that marks a measurement failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the metric fails (0 by default; -1 disables the
    /// limit when `consecutiveSuccessLimit` decides instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated before the metric is inconclusive (0 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Consecutive errors tolerated before the metric errors (4 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// Where the measurement comes from.
    pub provider: MetricProvider,
    /// Successful measurements in a row that make the metric Successful (0, the default,
    /// disables it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_success_limit: Option<IntOrString>,
}

/// A template argument: a literal value, a value from elsewhere, or one supplied by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    /// Name used as `{{args.NAME}}`.
    pub name: String,
    /// The value (a default in a template, the actual value in a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// The source of an argument's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    /// A key of a Secret in the run's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A field of the Rollout, such as `metadata.labels['app']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// A key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within it.
    pub key: String,
}

/// A path to a field of the object that started the analysis.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// The field path, e.g. `metadata.name`.
    pub field_path: String,
}

/// A metric run in dry-run mode (`*` for all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Name of the metric, or `*`.
    pub metric_name: String,
}

/// How many measurements of a metric to keep in the run's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// Name of the metric, or `*`.
    pub metric_name: String,
    /// Number of measurements to keep.
    #[schemars(range(min = 0))]
    pub limit: i32,
}

/// A Rollout's request for an AnalysisRun: which templates, with which arguments.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// Templates whose metrics are combined into one run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<AnalysisTemplateRef>,
    /// Arguments passed to the templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// Metrics run in dry-run mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements to keep per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Labels and annotations for the created run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
}

/// A reference to an AnalysisTemplate or ClusterAnalysisTemplate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// Name of the template.
    pub template_name: String,
    /// Look it up as a ClusterAnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

/// An argument a Rollout passes to its analysis templates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunArgument {
    /// Name of the template argument.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A value taken from the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// A value a Rollout supplies from its own state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentValueFrom {
    /// The pod template hash of the stable or the latest ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
    /// A field of the Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// Whose pod template hash an argument takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum PodTemplateHashValue {
    /// The stable ReplicaSet's.
    Stable,
    /// The newest ReplicaSet's.
    Latest,
}

/// Labels and annotations added to an AnalysisRun.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct AnalysisRunMetadata {
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The phase of an AnalysisRun, a metric result, or a single measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum AnalysisPhase {
    /// Not started.
    #[default]
    Pending,
    /// Measuring.
    Running,
    /// Finished and passed.
    Successful,
    /// Finished and failed.
    Failed,
    /// Could not measure.
    Error,
    /// Finished without a verdict; a person decides.
    Inconclusive,
}

impl AnalysisPhase {
    /// Whether the phase is final.
    pub fn is_completed(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}
