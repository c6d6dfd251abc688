//! The vocabulary Sluice shares with Argo Rollouts, Argo CD and its own tools: every label,
//! annotation, metadata key and reason it reads or writes, named once.
//!
//! Keys written as `argo-rollouts.argoproj.io/…`, `rollout.argoproj.io/…` or
//! `analysisrun.argoproj.io/…` are Argo's, kept so that objects move between the two
//! controllers; `sluice.dev/…` keys are Sluice's own.

/// API group of every Sluice resource, shared with Argo Rollouts.
pub const GROUP: &str = "argoproj.io";
/// API version of every Sluice resource.
pub const VERSION: &str = "v1alpha1";

// Labels.

/// Label on ReplicaSets and pods holding the pod template hash, which keeps versions apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// The label that assigns a Rollout to one controller installation (`--instance-id`).
pub const INSTANCE_ID_LABEL: &str = "argo-rollouts.argoproj.io/controller-instance-id";
/// Label of a run: which part of the rollout started it (`Step`, `Background`, …), as Argo's.
pub const ROLLOUT_TYPE_LABEL: &str = "rollout-type";
/// Label of a step's run: the index of the step.
pub const STEP_INDEX_LABEL: &str = "step-index";
/// Label of a run a retry left behind: it no longer speaks for its version.
pub const SPENT_LABEL: &str = "sluice.dev/spent";
/// Label of a run that a controller asked to stop, with who asked ([`TERMINATED_BY_CONTROLLER`]):
/// a run cut short by Sluice is never evidence that its version passed.
pub const TERMINATED_LABEL: &str = "sluice.dev/terminated-by";
/// The [`TERMINATED_LABEL`] value of a run Sluice itself terminated.
pub const TERMINATED_BY_CONTROLLER: &str = "controller";
/// Label on a metric's Jobs holding the run's uid (Argo's key).
pub const RUN_UID_LABEL: &str = "analysisrun.argoproj.io/uid";

// Annotations.

/// Annotation on Services and Ingresses naming the rollouts that manage (but do not own) them.
pub const MANAGED_BY_ROLLOUTS_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";
/// Annotation on a ReplicaSet recording the rollout revision it was created for.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";
/// Annotation on a ReplicaSet recording `spec.replicas` of the rollout when it was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "rollout.argoproj.io/desired-replicas";
/// On an old blue/green ReplicaSet: when it may be scaled down (RFC 3339), written when the
/// active Service leaves it, so a restarted controller keeps the same delay.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "argo-rollouts.argoproj.io/scale-down-deadline";
/// On a ReplicaSet Sluice adopted (one that Argo Rollouts created): the Sluice hash of the
/// template it runs, since its hash label is Argo's.
pub const TEMPLATE_HASH_ANNOTATION: &str = "sluice.dev/template-hash";
/// On a ReplicaSet Sluice created: a 64-bit digest of the rollout's pod template, independent of
/// the 32-bit hash in its name, so a set found under the new version's name can be told to run
/// another template (a hash collision) rather than this one.
pub const TEMPLATE_DIGEST_ANNOTATION: &str = "sluice.dev/template-digest";
/// On a ReplicaSet: the ephemeral metadata its pod template and pods carry (JSON).
pub const EPHEMERAL_ANNOTATION: &str = "sluice.dev/ephemeral-metadata";
/// Annotation on a metric's Jobs holding the run's name (Argo's key).
pub const RUN_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/name";
/// Annotation on a metric's Jobs holding the metric's name (Argo's key).
pub const METRIC_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/metric-name";
/// The Experiment a ReplicaSet, Service or AnalysisRun belongs to (annotation, Argo's key).
pub const EXPERIMENT_NAME_ANNOTATION: &str = "experiment.argoproj.io/name";
/// The experiment template a ReplicaSet or Service was made from (annotation, Argo's key).
pub const EXPERIMENT_TEMPLATE_ANNOTATION: &str = "experiment.argoproj.io/template-name";
/// The experiment analysis an AnalysisRun was made for (label).
pub const EXPERIMENT_ANALYSIS_LABEL: &str = "experiment.argoproj.io/analysis-name";

/// kubectl's copy of the last applied object; never read, so dropped from cached objects.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The node label anti-affinity spreads versions over (Kubernetes' well-known label).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

// Keys in a metric result's `metadata`.

/// Key of the Job's name in a measurement's metadata (Argo's key).
pub const JOB_NAME_KEY: &str = "job-name";
/// Key of the query a Prometheus metric sent, its arguments substituted (Argo's key).
pub const RESOLVED_QUERY_KEY: &str = "ResolvedPrometheusQuery";
/// Key of what the controller's limits changed in the metric (an interval raised, a timeout
/// lowered).
pub const ADJUSTED_METADATA_KEY: &str = "sluice.dev/adjusted";

/// Reasons: of conditions, of events, and of the `reason` label of error metrics. A condition
/// and the event that reports the same change share one reason, as in Argo Rollouts.
pub mod reason {
    /// A new ReplicaSet was created for the current template.
    pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
    /// The rollout is moving pods to the current template.
    pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
    /// The current template's ReplicaSet is the stable one and fully available.
    pub const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// A pause step or `spec.paused` holds the rollout.
    pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
    /// The pods the strategy needs are available (the `Available` condition).
    pub const AVAILABLE_REASON: &str = "AvailableReason";
    /// Every pod runs the current version and is available (the `Healthy` condition).
    pub const ROLLOUT_HEALTHY: &str = "RolloutHealthy";
    /// The update has not finished yet (the `Completed` condition, False).
    pub const ROLLOUT_NOT_COMPLETED: &str = "RolloutNotCompleted";
    /// The rollout was paused and no longer is.
    pub const ROLLOUT_RESUMED: &str = "RolloutResumed";
    /// `status.abort` sent everything back to the stable version.
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    /// No progress within `progressDeadlineSeconds`.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// The update finished: the current template is stable.
    pub const ROLLOUT_COMPLETED: &str = "RolloutCompleted";
    /// The spec cannot be run as written.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The API refused to create the new version's ReplicaSet (a `ReplicaFailure` condition).
    pub const REPLICA_SET_CREATE_ERROR: &str = "ReplicaSetCreateError";
    /// A canary step finished (event).
    pub const ROLLOUT_STEP_COMPLETED: &str = "RolloutStepCompleted";
    /// Back to a revision inside `rollbackWindow`: promoted in full (event).
    pub const ROLLBACK_WITHIN_WINDOW: &str = "RollbackWithinWindow";
    /// `restartAt` asked for new pods (event).
    pub const ROLLOUT_RESTARTED: &str = "RolloutRestarted";
    /// A pod of the restart was deleted (event).
    pub const RESTARTING_PODS: &str = "RestartingPods";
    /// An AnalysisRun of the rollout was seen running (event; Argo's reason, the
    /// `on-analysis-run-running` notification).
    pub const ANALYSIS_RUN_RUNNING: &str = "AnalysisRunRunning";
    /// An AnalysisRun of the rollout passed (event).
    pub const ANALYSIS_RUN_SUCCESSFUL: &str = "AnalysisRunSuccessful";
    /// An AnalysisRun of the rollout failed (event; `on-analysis-run-failed`).
    pub const ANALYSIS_RUN_FAILED: &str = "AnalysisRunFailed";
    /// An AnalysisRun of the rollout ended in error (event; `on-analysis-run-error`).
    pub const ANALYSIS_RUN_ERROR: &str = "AnalysisRunError";
    /// An AnalysisRun of the rollout was inconclusive (event).
    pub const ANALYSIS_RUN_INCONCLUSIVE: &str = "AnalysisRunInconclusive";
    /// The rollout moved to a new revision of its pod template (event; `on-rollout-updated`).
    pub const ROLLOUT_UPDATED: &str = "RolloutUpdated";
    /// A ReplicaSet that another controller created for the same template was adopted (event).
    pub const REPLICA_SET_ADOPTED: &str = "ReplicaSetAdopted";
    /// A Service selector was pointed at another version (event).
    pub const SWITCH_SERVICE: &str = "SwitchService";
    /// The Deployment a `workloadRef` names was scaled by its `scaleDown` policy (event).
    pub const SCALING_DEPLOYMENT: &str = "ScalingDeployment";
    /// A ReplicaSet was scaled (event).
    pub const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";
    /// An old ReplicaSet past the history limit was deleted (event).
    pub const REPLICA_SET_DELETED: &str = "ReplicaSetDeleted";
    /// A write the controller needed was refused (error metric).
    pub const WRITE_FAILED: &str = "WriteFailed";
    /// The new version's ReplicaSet name is taken by another template (error metric).
    pub const HASH_COLLISION: &str = "HashCollision";
    /// A write met a newer version of the object (error metric).
    pub const CONFLICT: &str = "Conflict";
    /// The caches were still filling (error metric).
    pub const NOT_READY: &str = "NotReady";
    /// A Secret an AnalysisRun argument names could not be read (error metric).
    pub const SECRET_UNAVAILABLE: &str = "SecretUnavailable";
    /// A traffic router's objects could not be read or written as the plan decided (condition,
    /// event, error metric; Argo's word).
    pub const TRAFFIC_ROUTING_ERROR: &str = "TrafficRoutingError";
    /// A router object another writer changed was put back (event).
    pub const TRAFFIC_ROUTING_PUT_BACK: &str = "TrafficRoutingPutBack";
    /// A canary's experiment step created its Experiment (event).
    pub const EXPERIMENT_CREATED: &str = "ExperimentCreated";
    /// A canary's Experiment failed, ended in error, or could not be made: the rollout aborts
    /// (event).
    pub const EXPERIMENT_FAILED: &str = "ExperimentFailed";
}
