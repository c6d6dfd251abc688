//! `Rollout.status`, written by the controller and read by Argo CD's health check, the
//! kubectl plugin and dashboards; every field name matches what Argo Rollouts writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::AnalysisPhase;

/// The observed state of a Rollout.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `metadata.generation` last acted on, as a string (Argo CD compares it with `tonumber`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<String>,
    /// Summary of the rollout's health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Why the rollout is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Pod template hash of the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Pod template hash of the ReplicaSet that last completed a rollout.
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    /// Index of the canary step being executed; equal to the step count once all are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// Hash of the step list, to notice edits of the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,
    /// Why the controller paused the rollout; cleared by the user to resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// The controller paused the rollout (stays true after the user clears pauseConditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_pause: Option<bool>,
    /// The update is aborted: traffic and replicas go back to the stable version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<bool>,
    /// When the controller acted on the abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub aborted_at: Option<Time>,
    /// Skip the remaining steps, pauses and analyses and promote at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<bool>,
    /// Non-terminated pods of the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Non-terminated pods with the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Ready pods of the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods ready for at least `minReadySeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Pods receiving production traffic: the scale subresource's status replicas.
    #[serde(
        default,
        rename = "HPAReplicas",
        skip_serializing_if = "Option::is_none"
    )]
    pub hpa_replicas: Option<i32>,
    /// Label selector (string form) of the pods receiving traffic, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Hash collisions seen, folded into the next ReplicaSet name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// When pods were last restarted because of `spec.restartAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub restarted_at: Option<Time>,
    /// Generation of the referenced workload last acted on, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_observed_generation: Option<String>,
    /// Conditions (Available, Progressing, Healthy, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
    /// State specific to the canary strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// State specific to the blue/green strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    /// The ALB and target groups of the AWS Load Balancer router (written by Argo Rollouts;
    /// Sluice keeps it as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbStatus>,
    /// The ALBs and target groups of each Ingress, with several stable Ingresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub albs: Vec<AlbStatus>,
}

/// `status.alb`: the load balancer and target groups behind the AWS Load Balancer router.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbStatus {
    /// The load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<AwsResourceRef>,
    /// The target group of the canary Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_target_group: Option<AwsResourceRef>,
    /// The target group of the stable Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_target_group: Option<AwsResourceRef>,
    /// The Ingress these belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
}

/// An AWS resource by name and ARN.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsResourceRef {
    /// Name of the resource.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
}

/// The health summary of a rollout, as Argo tooling expects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum RolloutPhase {
    /// Fully rolled out and available.
    Healthy,
    /// Moving towards the desired state.
    Progressing,
    /// Waiting for a user (or a timer) to continue.
    Paused,
    /// Aborted, invalid, or past its progress deadline.
    Degraded,
}

/// Why and since when the controller paused the rollout.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// What caused the pause.
    pub reason: PauseReason,
    /// When the pause began.
    #[schemars(schema_with = "super::schema::time")]
    pub start_time: Time,
}

/// What caused an automatic pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum PauseReason {
    /// A canary `pause` step.
    CanaryPauseStep,
    /// A blue/green rollout waiting for promotion.
    BlueGreenPause,
    /// An AnalysisRun ended Inconclusive.
    #[serde(rename = "InconclusiveAnalysisRun")]
    InconclusiveAnalysis,
    /// An Experiment ended Inconclusive.
    InconclusiveExperiment,
}

/// A condition of a rollout, shaped like a Deployment's.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    /// Which condition this is.
    #[serde(rename = "type")]
    pub type_: RolloutConditionType,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// When the condition was last written.
    #[schemars(schema_with = "super::schema::time")]
    pub last_update_time: Time,
    /// When `status` last changed.
    #[schemars(schema_with = "super::schema::time")]
    pub last_transition_time: Time,
    /// A short CamelCase reason, shared with events and metrics.
    pub reason: String,
    /// A message for people.
    pub message: String,
}

/// The condition types of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum RolloutConditionType {
    /// The spec is invalid; the rollout does not progress until it is fixed.
    InvalidSpec,
    /// Enough pods are available.
    Available,
    /// The update is making progress (or failed to, see the reason).
    Progressing,
    /// Pods could not be created or deleted.
    ReplicaFailure,
    /// The rollout is paused.
    Paused,
    /// The update reached the desired revision.
    Completed,
    /// Completed and all pods are available.
    Healthy,
}

/// The status of a Kubernetes condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// `status.canary`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The AnalysisRun of the current `analysis` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The background AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// Name of the running Experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_experiment: Option<String>,
    /// The weights last set on the traffic router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    /// Which ping-pong Service is currently stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ping_pong: Option<PingPong>,
    /// State of the step plugins run so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_plugin_statuses: Vec<StepPluginStatus>,
}

/// The ping-pong Service currently serving as stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PingPong {
    /// The ping Service.
    Ping,
    /// The pong Service.
    Pong,
}

/// How traffic is split between the versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    /// Traffic sent to the canary.
    pub canary: WeightDestination,
    /// Traffic sent to the stable version.
    pub stable: WeightDestination,
    /// Traffic sent to other ReplicaSets, such as an experiment's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional: Vec<WeightDestination>,
    /// Whether the router confirmed the weights took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// One destination of the traffic split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    /// Percentage of traffic.
    pub weight: i32,
    /// Service the traffic goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Pod template hash of the pods behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// A summary of an AnalysisRun started by the rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct RolloutAnalysisRunStatus {
    /// Name of the AnalysisRun.
    pub name: String,
    /// Its phase; absent (Argo writes `""`) until the run has reported one.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<AnalysisPhase>,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Reads `""` (Argo's phase of a run that has not started) as no phase.
fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AnalysisPhase>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(phase) => {
            AnalysisPhase::deserialize(serde::de::value::StrDeserializer::new(phase)).map(Some)
        }
    }
}

/// State of one step plugin execution (alpha in Argo Rollouts; kept as written).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepPluginStatus {
    /// Index of the step.
    pub index: i32,
    /// Name of the plugin.
    pub name: String,
    /// Operation recorded (Run, Terminate, Abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Phase of the operation (Running, Successful, Failed, Error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Message of the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the operation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub started_at: Option<Time>,
    /// When the operation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub finished_at: Option<Time>,
    /// When the status was last updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::time")]
    pub updated_at: Option<Time>,
    /// How many times the plugin ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executions: Option<i32>,
    /// Delay before the next execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Whether the plugin is disabled globally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// The plugin's own state, passed back to it verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::any_json")]
    pub status: Option<serde_json::Value>,
}

/// `status.blueGreen`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    /// Pod template hash the active Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    /// Pod template hash the preview Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    /// The preview ReplicaSet may be scaled up fully once the rollout is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_preview_check_point: Option<bool>,
    /// The pre-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The post-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
}
