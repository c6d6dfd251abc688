//! The controller's Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! Names and labels follow Argo Rollouts where users' dashboards and alerts query them, so a
//! dashboard built for Argo keeps working when Sluice runs the same rollouts:
//!
//! | series                                                     | type      | as in Argo |
//! |------------------------------------------------------------|-----------|------------|
//! | `rollout_info{namespace,name,strategy,phase}` = 1          | gauge     | yes (Argo adds `traffic_router`) |
//! | `rollout_phase{namespace,name,strategy,phase}` = 0/1       | gauge     | yes (deprecated in Argo, kept for old dashboards) |
//! | `rollout_info_replicas_available{namespace,name}`          | gauge     | yes (`status.availableReplicas`) |
//! | `rollout_info_replicas_unavailable{namespace,name}`        | gauge     | yes (`status.replicas - status.availableReplicas`, as Argo computes it, not `status.unavailableReplicas`) |
//! | `rollout_info_replicas_desired{namespace,name}`            | gauge     | yes (`spec.replicas`, 1 when unset) |
//! | `rollout_info_replicas_updated{namespace,name}`            | gauge     | yes (`status.updatedReplicas`) |
//! | `rollout_events_total{namespace,name,type,reason}`         | counter   | yes (every event Sluice records on a rollout) |
//! | `rollout_reconcile_bucket/_sum/_count{namespace,name}`     | histogram | yes (finer buckets, 1 ms – 10 s) |
//! | `rollout_reconcile_error{namespace,name,reason}`           | unknown   | yes (Sluice adds `reason`) |
//! | `analysis_run_info{namespace,name,phase}` = 1               | gauge     | yes |
//! | `analysis_run_phase{namespace,name,phase}` = 0/1            | gauge     | yes (deprecated in Argo, kept for old dashboards) |
//! | `analysis_run_metric_type{namespace,name,metric,type}` = 1  | gauge     | yes (`type` as Argo names providers: `Prometheus`, `Web`, `Job` …) |
//! | `analysis_run_metric_phase{namespace,name,metric,type,dry_run,phase}` = 0/1 | gauge | yes (`dry_run` `true`/`false` from the run's `dryRun` rules) |
//! | `analysis_run_reconcile_bucket/_sum/_count{namespace,name}` | histogram | yes (the buckets of `rollout_reconcile`) |
//! | `analysis_run_reconcile_error{namespace,name,reason}`      | unknown   | yes (Sluice adds `reason`) |
//! | `experiment_info{namespace,name,phase}` = 1                 | gauge     | yes |
//! | `experiment_phase{namespace,name,phase}` = 0/1              | gauge     | yes (deprecated in Argo; its five phases, no `Failed`, as in Argo) |
//! | `experiment_reconcile_bucket/_sum/_count{namespace,name}`  | histogram | yes (the buckets of `rollout_reconcile`) |
//! | `experiment_reconcile_error{namespace,name,reason}`        | unknown   | yes (Sluice adds `reason`) |
//! | `notification_send_success{namespace,name,type,reason}`    | unknown   | yes (a delivered notification; type and reason of the event) |
//! | `notification_send_error{namespace,name,type,reason}`      | unknown   | yes (Sluice counts every failed attempt, retries included) |
//! | `notification_send_bucket/_sum/_count{namespace,name,type,reason}` | histogram | yes (the time of one delivered request; Sluice adds type and reason) |
//! | `controller_clientset_k8s_request_total{kind,namespace,name,verb,status_code}` | counter | yes, bounded: `name` only for Rollouts, AnalysisRuns and Experiments Sluice holds series for, `N/A` for other named requests (see [`Metrics::api_request`]) |
//! | `build_info{version,arch}` = 1                             | gauge     | Argo has `version goversion goarch commit`; Sluice has its own version and `arch` (the Rust target's, `x86_64`, `aarch64`) |
//! | `argo_rollouts_controller_info{version}` = 1               | gauge     | yes (Sluice's version) |
//! | `sluice_notifications_dropped_total`                       | counter   | Sluice's own (events dropped because the queue was full) |
//! | `sluice_kube_requests_total{verb,resource,status_code}`    | counter   | Sluice's own |
//! | `sluice_reconcile_kube_requests_bucket/_sum/_count{controller}` | histogram | Sluice's own |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds` | | as every Prometheus client |
//!
//! `rollout_reconcile_error` (and the other `*_reconcile_error`) is a counter in meaning, but OpenMetrics requires a counter's sample to
//! end in `_total`, and Argo (which serves the classic text format) exposes it without the suffix,
//! which is the name stored in Prometheus and used by existing queries. Sluice therefore exposes it
//! with the OpenMetrics type `unknown`, whose sample keeps the bare name; `rate()` and `increase()`
//! work on it as before. Counters whose Argo name ends in `_total` (`rollout_events_total`,
//! `controller_clientset_k8s_request_total`) are real counters, registered without the suffix
//! that the encoder adds; Sluice's own carry the standard `_total` suffix too.
//!
//! The `phase` label holds Argo's *metric* phase (`Completed`, `Progressing`, `Paused`, `Timeout`,
//! `Error`, `Abort`, or `InvalidSpec`), not `status.phase`: [`phase_label`] derives it from a status
//! as Argo does, and [`strategy_label`] gives the `strategy` label.
//!
//! Per-rollout series live in one map keyed by namespace and name and are written out at scrape
//! time, so a rollout has exactly one `rollout_info` series and [`Metrics::forget_rollout`] drops
//! all of its series at once. AnalysisRuns and Experiments have maps of their own: a run's errors
//! never count against a Rollout, and [`Metrics::forget_analysis_run`] (or
//! [`Metrics::retain_analysis_runs`], after the watch lists the runs again) drops them, as
//! [`Metrics::forget_experiment`] and [`Metrics::retain_experiments`] do an Experiment's. Each
//! also drops the object's `controller_clientset_k8s_request_total` series, and those of its
//! namespace once no Rollout, AnalysisRun or Experiment there has series left.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::Registry,
};

use sluice_analysis::rules::rule_matches;
use sluice_api::{
    AnalysisRunSpec, ConditionStatus, MetricProvider, RolloutConditionType, RolloutSpec,
    RolloutStatus, vocab::reason,
};

/// Upper bounds (seconds) of the `*_reconcile` buckets: 1 ms to 10 s.
const RECONCILE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the `sluice_reconcile_kube_requests` buckets: how many API requests one
/// reconcile made (a settled rollout makes none).
const REQUEST_BUCKETS: [f64; 8] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The values of `rollout_phase`'s `phase` label, as Argo Rollouts writes them. A rollout whose
/// phase is not among them (`InvalidSpec`) has all of them at 0, as in Argo.
pub const PHASES: [&str; 6] = [
    "Completed",
    "Progressing",
    "Paused",
    "Timeout",
    "Error",
    "Abort",
];

/// The values of `experiment_phase`'s `phase` label: Argo's five, without `Failed`, so a failed
/// Experiment has all of them at 0 there as in Argo (`experiment_info` has its phase).
pub const EXPERIMENT_PHASES: [&str; 5] =
    ["Pending", "Error", "Successful", "Running", "Inconclusive"];

/// The `name` label of `controller_clientset_k8s_request_total` for a request Argo does not label
/// by object (lists, events, ReplicaSets), and for one about an object Sluice keeps no series for.
pub const NOT_APPLICABLE: &str = "N/A";

/// The controller's metrics: one registry, shared by the reconcilers and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rollouts: Arc<RolloutSeries>,
    runs: Arc<RunSeries>,
    experiments: Arc<ExperimentSeries>,
    clientset: Arc<ClientsetSeries>,
    kube_requests: Family<KubeRequestLabels, Counter>,
    reconcile_requests: Family<ControllerLabel, Histogram, fn() -> Histogram>,
    notifications: Arc<NotificationSeries>,
    notifications_dropped: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubeRequestLabels {
    verb: String,
    resource: String,
    status_code: u16,
}

/// A request to the Kubernetes API as the metrics label it: the client's meter reads it off the
/// request's method and path, so both request series are labelled from one reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiRequest {
    /// The verb as RBAC and the audit log name it: `get list watch create update patch delete
    /// deletecollection`, or `other`.
    pub verb: &'static str,
    /// The resource (`replicasets`, `rollouts`); a path outside the API groups (`/version`) is
    /// its own resource.
    pub resource: String,
    /// The subresource (`status`, `eviction`), if any.
    pub subresource: Option<String>,
    /// The namespace in the path; empty for a cluster-scoped or all-namespaces request.
    pub namespace: String,
    /// The object's name in the path; `None` for lists, watches and creates.
    pub name: Option<String>,
}

impl ApiRequest {
    /// The `resource` label of `sluice_kube_requests_total`: the resource with its subresource
    /// (`rollouts/status`, `pods/eviction`).
    pub fn resource_label(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// A rollout's replica counts as `rollout_info_replicas_*` report them; see [`replicas_of`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RolloutReplicas {
    /// `spec.replicas`, 1 when unset.
    pub desired: i64,
    /// `status.availableReplicas`.
    pub available: i64,
    /// `status.replicas - status.availableReplicas`.
    pub unavailable: i64,
    /// `status.updatedReplicas`.
    pub updated: i64,
}

/// One metric of an AnalysisRun, as `analysis_run_metric_type` and `analysis_run_metric_phase`
/// label it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMetric {
    /// The metric's name.
    pub name: String,
    /// The provider as Argo names it ([`provider_type`]).
    pub type_: &'static str,
    /// Whether the run's `dryRun` rules select the metric ([`dry_run_metrics`]).
    pub dry_run: bool,
    /// The metric's phase; `Pending` until it has a result.
    pub phase: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered, including the process metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rollouts = Arc::new(RolloutSeries::default());
        registry.register_collector(Box::new(rollouts.clone()));
        let runs = Arc::new(RunSeries::default());
        registry.register_collector(Box::new(runs.clone()));
        let experiments = Arc::new(ExperimentSeries::default());
        registry.register_collector(Box::new(experiments.clone()));
        let clientset = Arc::new(ClientsetSeries::default());
        registry.register_collector(Box::new(clientset.clone()));
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        registry.register(
            "sluice_kube_requests",
            "Kubernetes API requests made by the controller, by verb, resource and HTTP status.",
            kube_requests.clone(),
        );
        let reconcile_requests: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        registry.register(
            "sluice_reconcile_kube_requests",
            "Kubernetes API requests made by one reconcile, by controller (rollout, analysisrun or experiment).",
            reconcile_requests.clone(),
        );
        let notifications = Arc::new(NotificationSeries::default());
        registry.register_collector(Box::new(notifications.clone()));
        let notifications_dropped = Counter::default();
        registry.register(
            "sluice_notifications_dropped",
            "Events not notified because the notification queue was full.",
            notifications_dropped.clone(),
        );
        registry.register_collector(Box::new(BuildInfo));
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            rollouts,
            runs,
            experiments,
            clientset,
            kube_requests,
            reconcile_requests,
            notifications,
            notifications_dropped,
        }
    }

    /// Starts timing one reconcile of a rollout; the time is recorded in `rollout_reconcile` when
    /// the timer is dropped.
    pub fn reconcile_timer(&self, namespace: &str, name: &str) -> ReconcileTimer {
        let histogram = lock(&self.rollouts.0)
            .entry(key(namespace, name))
            .or_default()
            .reconcile
            .clone();
        ReconcileTimer::start(histogram)
    }

    /// Counts a failed reconcile of a rollout; `reason` is the error's short reason (the one its
    /// event carries), so the label's values stay few.
    pub fn reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        *lock(&self.rollouts.0)
            .entry(key(namespace, name))
            .or_default()
            .errors
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Counts one Kubernetes API request, `status` its HTTP status code (0 when none came back),
    /// in both request series; the client's [`crate::client::client`] layer calls it for every
    /// request it sends.
    ///
    /// `sluice_kube_requests_total` has the RBAC verb and the resource with its subresource.
    /// `controller_clientset_k8s_request_total` has Argo's labels: `verb` as Argo names it
    /// (`Get List Watch Create Update Patch Delete`, else `Unknown` with `kind`, `namespace` and
    /// `name` `Unknown` too), `kind` the resource without its subresource, `namespace` the
    /// path's (empty when it has none), and `name`: [`NOT_APPLICABLE`] for a list and for events
    /// and ReplicaSets (as in Argo); empty when the path names no object (a watch, a create: Argo
    /// reads a create's name from its body, the meter does not); the object's name for a
    /// Rollout, AnalysisRun or Experiment that has series here (and so loses them when deleted);
    /// [`NOT_APPLICABLE`] for any other object, whose name Argo would keep forever (a pod, a
    /// measurement's Job).
    pub fn api_request(&self, request: &ApiRequest, status: u16) {
        self.kube_requests
            .get_or_create(&KubeRequestLabels {
                verb: request.verb.to_owned(),
                resource: request.resource_label(),
                status_code: status,
            })
            .inc();
        let verb = argo_verb(request.verb);
        if verb == "Unknown" {
            self.clientset.add((
                "Unknown".into(),
                "Unknown".into(),
                "Unknown".into(),
                verb,
                status,
            ));
            return;
        }
        let labels = |name: &str| {
            (
                request.resource.clone(),
                request.namespace.clone(),
                name.to_owned(),
                verb,
                status,
            )
        };
        let name = match request.name.as_deref() {
            _ if verb == "List"
                || matches!(request.resource.as_str(), "events" | "replicasets") =>
            {
                NOT_APPLICABLE
            }
            None => "",
            Some(name) => {
                let object = key(&request.namespace, name);
                let counted = match request.resource.as_str() {
                    "rollouts" => {
                        self.clientset
                            .add_if_held(&self.rollouts.0, &object, labels(name))
                    }
                    "analysisruns" => {
                        self.clientset
                            .add_if_held(&self.runs.0, &object, labels(name))
                    }
                    "experiments" => {
                        self.clientset
                            .add_if_held(&self.experiments.0, &object, labels(name))
                    }
                    _ => false,
                };
                if counted {
                    return;
                }
                NOT_APPLICABLE
            }
        };
        self.clientset.add(labels(name));
    }

    /// Records how many API requests one reconcile of `controller` (`rollout`, `analysisrun` or
    /// `experiment`) made: requests are the scarce resource at scale, so their count per
    /// reconcile is watched.
    pub fn reconcile_requests(&self, controller: &'static str, requests: u32) {
        self.reconcile_requests
            .get_or_create(&ControllerLabel { controller })
            .observe(f64::from(requests));
    }

    /// Records a rollout's strategy ([`strategy_label`]) and phase ([`phase_label`]), replacing
    /// the previous ones: `rollout_info` has one series per rollout, `rollout_phase` one per phase.
    pub fn set_rollout(&self, namespace: &str, name: &str, strategy: &str, phase: &str) {
        lock(&self.rollouts.0)
            .entry(key(namespace, name))
            .or_default()
            .info = Some(Info {
            strategy: strategy.to_owned(),
            phase: phase.to_owned(),
        });
    }

    /// Records a rollout's replica counts ([`replicas_of`]) for `rollout_info_replicas_*`,
    /// replacing the previous ones: how far a rollout is from what it wants, at a glance.
    pub fn set_rollout_replicas(&self, namespace: &str, name: &str, replicas: RolloutReplicas) {
        lock(&self.rollouts.0)
            .entry(key(namespace, name))
            .or_default()
            .replicas = Some(replicas);
    }

    /// Counts one event recorded on a rollout (`type_` Normal or Warning, `reason` the event's)
    /// in `rollout_events_total`, so alerts can fire on a reason without reading events.
    pub fn rollout_event(&self, namespace: &str, name: &str, type_: &str, reason: &str) {
        *lock(&self.rollouts.0)
            .entry(key(namespace, name))
            .or_default()
            .events
            .entry((type_.to_owned(), reason.to_owned()))
            .or_default() += 1;
    }

    /// Drops every series of a rollout; call it once the rollout is deleted, after its last
    /// reconcile (a timer still running records into the dropped series, not a new one).
    pub fn forget_rollout(&self, namespace: &str, name: &str) {
        let gone = [key(namespace, name)];
        {
            let mut rollouts = lock(&self.rollouts.0);
            rollouts.remove(&gone[0]);
            self.clientset.forget_objects("rollouts", &gone);
        }
        self.notifications
            .lock()
            .retain(|key, _| key.0 != namespace || key.1 != name);
        self.forget_empty_namespaces(&gone);
    }

    /// Counts a delivered notification of a rollout's event (`type_` Normal or Warning,
    /// `reason` the event's) in `notification_send_success`, and the request's time in
    /// `notification_send`.
    pub fn notification_sent(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
        reason: &str,
        seconds: f64,
    ) {
        let mut series = self.notifications.lock();
        let entry = series
            .entry((
                namespace.to_owned(),
                name.to_owned(),
                type_.to_owned(),
                reason.to_owned(),
            ))
            .or_default();
        entry.success += 1;
        entry.send.observe(seconds);
    }

    /// Counts one failed attempt to deliver a notification in `notification_send_error`.
    pub fn notification_failed(&self, namespace: &str, name: &str, type_: &str, reason: &str) {
        self.notifications
            .lock()
            .entry((
                namespace.to_owned(),
                name.to_owned(),
                type_.to_owned(),
                reason.to_owned(),
            ))
            .or_default()
            .error += 1;
    }

    /// Counts an event dropped because the notification queue was full.
    pub fn notification_dropped(&self) {
        self.notifications_dropped.inc();
    }

    /// Starts timing one reconcile of an AnalysisRun; the time is recorded in
    /// `analysis_run_reconcile` when the timer is dropped.
    pub fn analysis_run_reconcile_timer(&self, namespace: &str, name: &str) -> ReconcileTimer {
        let histogram = lock(&self.runs.0)
            .entry(key(namespace, name))
            .or_default()
            .reconcile
            .clone();
        ReconcileTimer::start(histogram)
    }

    /// Records an AnalysisRun's phase and each of its metrics, replacing what was recorded before
    /// (its error counts and reconcile times stay).
    pub fn set_analysis_run(
        &self,
        namespace: &str,
        name: &str,
        phase: &str,
        metrics: Vec<RunMetric>,
    ) {
        let mut runs = lock(&self.runs.0);
        let run = runs.entry(key(namespace, name)).or_default();
        run.phase = Some(phase.to_owned());
        run.metrics = metrics;
    }

    /// Counts a failed reconcile of an AnalysisRun in `analysis_run_reconcile_error`, never in
    /// a Rollout's series; `reason` is the error's short reason, so the label's values stay few.
    pub fn analysis_run_reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        *lock(&self.runs.0)
            .entry(key(namespace, name))
            .or_default()
            .errors
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Drops every series of a deleted AnalysisRun.
    pub fn forget_analysis_run(&self, namespace: &str, name: &str) {
        let gone = [key(namespace, name)];
        {
            let mut runs = lock(&self.runs.0);
            runs.remove(&gone[0]);
            self.clientset.forget_objects("analysisruns", &gone);
        }
        self.forget_empty_namespaces(&gone);
    }

    /// Keeps the series of the AnalysisRuns `exists(namespace, name)` says are still there and
    /// drops the others: after the watch lists the runs again, a run deleted meanwhile (whose
    /// deletion no event reported) leaves no series behind.
    pub fn retain_analysis_runs(&self, exists: impl Fn(&str, &str) -> bool) {
        let gone = {
            let mut runs = lock(&self.runs.0);
            let gone = dropped(&mut runs, &exists);
            self.clientset.forget_objects("analysisruns", &gone);
            gone
        };
        self.forget_empty_namespaces(&gone);
    }

    /// Starts timing one reconcile of an Experiment; the time is recorded in
    /// `experiment_reconcile` when the timer is dropped.
    pub fn experiment_reconcile_timer(&self, namespace: &str, name: &str) -> ReconcileTimer {
        let histogram = lock(&self.experiments.0)
            .entry(key(namespace, name))
            .or_default()
            .reconcile
            .clone();
        ReconcileTimer::start(histogram)
    }

    /// Records an Experiment's phase (`status.phase`, empty while it has none) for
    /// `experiment_info` and `experiment_phase`, replacing the previous one.
    pub fn set_experiment(&self, namespace: &str, name: &str, phase: &str) {
        lock(&self.experiments.0)
            .entry(key(namespace, name))
            .or_default()
            .phase = Some(phase.to_owned());
    }

    /// Counts a failed reconcile of an Experiment in `experiment_reconcile_error`; `reason` is the
    /// error's short reason, so the label's values stay few.
    pub fn experiment_reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        *lock(&self.experiments.0)
            .entry(key(namespace, name))
            .or_default()
            .errors
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Drops every series of a deleted Experiment.
    pub fn forget_experiment(&self, namespace: &str, name: &str) {
        let gone = [key(namespace, name)];
        {
            let mut experiments = lock(&self.experiments.0);
            experiments.remove(&gone[0]);
            self.clientset.forget_objects("experiments", &gone);
        }
        self.forget_empty_namespaces(&gone);
    }

    /// Keeps the series of the Experiments `exists(namespace, name)` says are still there and
    /// drops the others, as [`Metrics::retain_analysis_runs`] does for runs.
    pub fn retain_experiments(&self, exists: impl Fn(&str, &str) -> bool) {
        let gone = {
            let mut experiments = lock(&self.experiments.0);
            let gone = dropped(&mut experiments, &exists);
            self.clientset.forget_objects("experiments", &gone);
            gone
        };
        self.forget_empty_namespaces(&gone);
    }

    /// Drops the `controller_clientset_k8s_request_total` series of each namespace of `gone` that
    /// no Rollout, AnalysisRun or Experiment with series is left in: a deleted namespace leaves
    /// no request series behind. The namespace's next request starts its series again.
    fn forget_empty_namespaces(&self, gone: &[(String, String)]) {
        let empty: BTreeSet<&str> = gone
            .iter()
            .map(|(namespace, _)| namespace.as_str())
            .filter(|namespace| !namespace.is_empty())
            .filter(|namespace| {
                !holds_namespace(&lock(&self.rollouts.0), namespace)
                    && !holds_namespace(&lock(&self.runs.0), namespace)
                    && !holds_namespace(&lock(&self.experiments.0), namespace)
            })
            .collect();
        if !empty.is_empty() {
            lock(&self.clientset.0)
                .retain(|(_, namespace, ..), _| !empty.contains(namespace.as_str()));
        }
    }

    /// The OpenMetrics text of every metric, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if text::encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail and the collectors skip what they cannot read, so
            // this is unreachable; a partial scrape still beats none.
            tracing::warn!("encoding the metrics failed; the scrape is incomplete");
        }
        out
    }
}

/// A watched object's key in the series maps: (namespace, name).
type Key = (String, String);

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_owned(), name.to_owned())
}

/// Locks a series map; it stays consistent even if a holder panicked (every update is one
/// assignment or insertion).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `objects` holds an object of `namespace`.
fn holds_namespace<V>(objects: &BTreeMap<Key, V>, namespace: &str) -> bool {
    objects
        .range(key(namespace, "")..)
        .next()
        .is_some_and(|((ns, _), _)| ns == namespace)
}

/// Removes the objects `exists` says are gone; returns their keys.
fn dropped<V>(objects: &mut BTreeMap<Key, V>, exists: &impl Fn(&str, &str) -> bool) -> Vec<Key> {
    let gone: Vec<Key> = objects
        .keys()
        .filter(|(namespace, name)| !exists(namespace, name))
        .cloned()
        .collect();
    for key in &gone {
        objects.remove(key);
    }
    gone
}

/// Argo's name of an RBAC verb, as its client metrics write it.
fn argo_verb(verb: &str) -> &'static str {
    match verb {
        "get" => "Get",
        "list" => "List",
        "watch" => "Watch",
        "create" => "Create",
        "update" => "Update",
        "patch" => "Patch",
        "delete" | "deletecollection" => "Delete",
        _ => "Unknown",
    }
}

/// Times one reconcile; see [`Metrics::reconcile_timer`].
#[derive(Debug)]
#[must_use = "the reconcile is timed until the timer is dropped"]
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl ReconcileTimer {
    fn start(histogram: Histogram) -> Self {
        Self {
            histogram,
            start: Instant::now(),
        }
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The `strategy` label of `rollout_info`: `canary`, `blueGreen`, or `none`, as Argo writes it.
pub fn strategy_label(spec: &RolloutSpec) -> &'static str {
    if spec.blue_green().is_some() {
        "blueGreen"
    } else if spec.canary().is_some() {
        "canary"
    } else {
        "none"
    }
}

/// The `phase` label of `rollout_info`, computed from the status as Argo Rollouts does: from the
/// reason of the `Progressing` condition, with `InvalidSpec` winning over everything.
pub fn phase_label(status: &RolloutStatus) -> &'static str {
    let condition = |type_| status.conditions.iter().find(|c| c.type_ == type_);
    if condition(RolloutConditionType::InvalidSpec)
        .is_some_and(|c| c.status == ConditionStatus::True)
    {
        return reason::INVALID_SPEC;
    }
    match condition(RolloutConditionType::Progressing).map(|c| c.reason.as_str()) {
        Some(reason::NEW_REPLICA_SET_AVAILABLE) => "Completed",
        Some(reason::ROLLOUT_PAUSED) => "Paused",
        Some(reason::REPLICA_SET_CREATE_ERROR) => "Error",
        Some(reason::PROGRESS_DEADLINE_EXCEEDED) => "Timeout",
        Some(reason::ROLLOUT_ABORTED) => "Abort",
        _ => "Progressing",
    }
}

/// A rollout's replica counts as Argo reports them: desired from the spec (1 when unset), the
/// others from the status; unavailable is `status.replicas - status.availableReplicas`, the pods
/// that exist but are not available, not the status's `unavailableReplicas` field.
pub fn replicas_of(spec: &RolloutSpec, status: &RolloutStatus) -> RolloutReplicas {
    let count = |n: Option<i32>| i64::from(n.unwrap_or(0));
    RolloutReplicas {
        desired: i64::from(spec.desired_replicas()),
        available: count(status.available_replicas),
        unavailable: count(status.replicas) - count(status.available_replicas),
        updated: count(status.updated_replicas),
    }
}

/// The `type` label of a run's metric series: the provider as Argo names it (`Prometheus`,
/// `Web`, `Job`, `NewRelic`, `RPCPlugin` …), so queries written for Argo select the same metrics.
pub fn provider_type(provider: &MetricProvider) -> &'static str {
    match provider {
        MetricProvider::Prometheus(_) => "Prometheus",
        MetricProvider::Web(_) => "Web",
        MetricProvider::Job(_) => "Job",
        MetricProvider::Datadog(_) => "Datadog",
        MetricProvider::NewRelic(_) => "NewRelic",
        MetricProvider::Wavefront(_) => "Wavefront",
        MetricProvider::Kayenta(_) => "Kayenta",
        MetricProvider::CloudWatch(_) => "CloudWatch",
        MetricProvider::Graphite(_) => "Graphite",
        MetricProvider::Influxdb(_) => "Influxdb",
        MetricProvider::SkyWalking(_) => "skywalking",
        MetricProvider::Plugin(_) => "RPCPlugin",
    }
}

/// The metrics of a run its `dryRun` rules select, for the `dry_run` label: each rule in turn
/// selects the metrics whose name it matches (as the run's own rules read it), and, as in Argo,
/// a rule that matches none stops the reading there (such a run is invalid and ends in Error).
pub fn dry_run_metrics(spec: &AnalysisRunSpec) -> BTreeSet<&str> {
    let mut selected = BTreeSet::new();
    for rule in &spec.dry_run {
        let matched: Vec<&str> = spec
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .filter(|name| rule_matches(&rule.metric_name, name).unwrap_or(false))
            .collect();
        if matched.is_empty() {
            break;
        }
        selected.extend(matched);
    }
    selected
}

/// The series of every rollout the controller has seen, keyed by (namespace, name).
#[derive(Debug, Default)]
struct RolloutSeries(Mutex<BTreeMap<Key, Rollout>>);

#[derive(Debug)]
struct Rollout {
    info: Option<Info>,
    replicas: Option<RolloutReplicas>,
    reconcile: Histogram,
    errors: BTreeMap<String, u64>,
    /// Recorded events, by (type, reason).
    events: BTreeMap<(String, String), u64>,
}

#[derive(Debug)]
struct Info {
    strategy: String,
    phase: String,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            info: None,
            replicas: None,
            reconcile: Histogram::new(RECONCILE_BUCKETS),
            errors: BTreeMap::new(),
            events: BTreeMap::new(),
        }
    }
}

impl RolloutSeries {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Rollout>> {
        lock(&self.0)
    }
}

impl Collector for RolloutSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let rollouts = self.lock();
        let infos = || {
            rollouts
                .iter()
                .filter_map(|((ns, name), r)| r.info.as_ref().map(|i| (ns, name, i)))
        };

        let mut family = encoder.encode_descriptor(
            "rollout_info",
            "Information about rollout.",
            None,
            MetricType::Gauge,
        )?;
        for (ns, name, info) in infos() {
            let labels = [
                ("namespace", ns.as_str()),
                ("name", name.as_str()),
                ("strategy", &info.strategy),
                ("phase", &info.phase),
            ];
            ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "rollout_phase",
            "Information on the state of the rollout (deprecated in Argo Rollouts: use rollout_info).",
            None,
            MetricType::Gauge,
        )?;
        for (ns, name, info) in infos() {
            for phase in PHASES {
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("strategy", &info.strategy),
                    ("phase", phase),
                ];
                let value = i64::from(info.phase == phase);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }

        for (family_name, help, pick) in [
            (
                "rollout_info_replicas_available",
                "Replicas of the rollout that are available (status.availableReplicas).",
                (|r: &RolloutReplicas| r.available) as fn(&RolloutReplicas) -> i64,
            ),
            (
                "rollout_info_replicas_unavailable",
                "Replicas of the rollout that exist but are not available (status.replicas - status.availableReplicas).",
                |r| r.unavailable,
            ),
            (
                "rollout_info_replicas_desired",
                "Replicas the rollout asks for (spec.replicas, 1 when unset).",
                |r| r.desired,
            ),
            (
                "rollout_info_replicas_updated",
                "Replicas of the rollout running its current pod template (status.updatedReplicas).",
                |r| r.updated,
            ),
        ] {
            let mut family =
                encoder.encode_descriptor(family_name, help, None, MetricType::Gauge)?;
            for ((ns, name), rollout) in rollouts.iter() {
                let Some(replicas) = rollout.replicas.as_ref() else {
                    continue;
                };
                let labels = [("namespace", ns.as_str()), ("name", name.as_str())];
                ConstGauge::new(pick(replicas)).encode(family.encode_family(&labels)?)?;
            }
        }

        // Registered without `_total`: the encoder adds it, giving Argo's sample name.
        let mut family = encoder.encode_descriptor(
            "rollout_events",
            "Events recorded on the rollout, by type and reason.",
            None,
            MetricType::Counter,
        )?;
        for ((ns, name), rollout) in rollouts.iter() {
            for ((type_, reason), count) in &rollout.events {
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("type", type_.as_str()),
                    ("reason", reason.as_str()),
                ];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }

        encode_reconciles(
            &mut encoder,
            "rollout_reconcile",
            "Rollout reconciliation performance.",
            rollouts.iter().map(|(key, r)| (key, &r.reconcile)),
        )?;
        encode_errors(
            &mut encoder,
            "rollout_reconcile_error",
            "Errors during rollout reconciles, by reason.",
            rollouts.iter().map(|(key, r)| (key, &r.errors)),
        )?;
        Ok(())
    }
}

/// The phases of an AnalysisRun or metric, as Argo Rollouts names them.
pub const ANALYSIS_PHASES: [&str; 6] = [
    "Pending",
    "Running",
    "Successful",
    "Failed",
    "Error",
    "Inconclusive",
];

/// The series of every AnalysisRun the controller has seen, keyed by (namespace, name).
#[derive(Debug, Default)]
struct RunSeries(Mutex<BTreeMap<Key, RunInfo>>);

#[derive(Debug)]
struct RunInfo {
    /// The run's phase; `None` until it is first recorded (an error may come first).
    phase: Option<String>,
    metrics: Vec<RunMetric>,
    /// Seconds per reconcile.
    reconcile: Histogram,
    /// Failed reconciles, by reason.
    errors: BTreeMap<String, u64>,
}

impl Default for RunInfo {
    fn default() -> Self {
        Self {
            phase: None,
            metrics: Vec::new(),
            reconcile: Histogram::new(RECONCILE_BUCKETS),
            errors: BTreeMap::new(),
        }
    }
}

impl Collector for RunSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let runs = lock(&self.0);
        let phases = || {
            runs.iter()
                .filter_map(|((ns, name), run)| Some((ns, name, run.phase.as_deref()?)))
        };
        let mut family = encoder.encode_descriptor(
            "analysis_run_info",
            "Information about analysis run.",
            None,
            MetricType::Gauge,
        )?;
        for (ns, name, phase) in phases() {
            let labels = [
                ("namespace", ns.as_str()),
                ("name", name.as_str()),
                ("phase", phase),
            ];
            ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "analysis_run_phase",
            "Information on the state of the analysis run (deprecated in Argo Rollouts: use analysis_run_info).",
            None,
            MetricType::Gauge,
        )?;
        for (ns, name, current) in phases() {
            for phase in ANALYSIS_PHASES {
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("phase", phase),
                ];
                let value = i64::from(current == phase);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "analysis_run_metric_type",
            "The provider type of each metric of an analysis run.",
            None,
            MetricType::Gauge,
        )?;
        for ((ns, name), run) in runs.iter() {
            for metric in &run.metrics {
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("metric", metric.name.as_str()),
                    ("type", metric.type_),
                ];
                ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "analysis_run_metric_phase",
            "Information on the duration of a specific metric in the Analysis Run.",
            None,
            MetricType::Gauge,
        )?;
        for ((ns, name), run) in runs.iter() {
            for metric in &run.metrics {
                for phase in ANALYSIS_PHASES {
                    let labels = [
                        ("namespace", ns.as_str()),
                        ("name", name.as_str()),
                        ("metric", metric.name.as_str()),
                        ("type", metric.type_),
                        ("dry_run", if metric.dry_run { "true" } else { "false" }),
                        ("phase", phase),
                    ];
                    let value = i64::from(metric.phase == phase);
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        encode_reconciles(
            &mut encoder,
            "analysis_run_reconcile",
            "Analysis run reconciliation performance.",
            runs.iter().map(|(key, r)| (key, &r.reconcile)),
        )?;
        encode_errors(
            &mut encoder,
            "analysis_run_reconcile_error",
            "Errors during analysis run reconciles, by reason.",
            runs.iter().map(|(key, r)| (key, &r.errors)),
        )?;
        Ok(())
    }
}

/// The series of every Experiment the controller has seen, keyed by (namespace, name).
#[derive(Debug, Default)]
struct ExperimentSeries(Mutex<BTreeMap<Key, ExperimentInfo>>);

#[derive(Debug)]
struct ExperimentInfo {
    /// The experiment's phase (empty while its status has none); `None` until first recorded.
    phase: Option<String>,
    /// Seconds per reconcile.
    reconcile: Histogram,
    /// Failed reconciles, by reason.
    errors: BTreeMap<String, u64>,
}

impl Default for ExperimentInfo {
    fn default() -> Self {
        Self {
            phase: None,
            reconcile: Histogram::new(RECONCILE_BUCKETS),
            errors: BTreeMap::new(),
        }
    }
}

impl Collector for ExperimentSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let experiments = lock(&self.0);
        let phases = || {
            experiments
                .iter()
                .filter_map(|((ns, name), e)| Some((ns, name, e.phase.as_deref()?)))
        };
        let mut family = encoder.encode_descriptor(
            "experiment_info",
            "Information about experiment.",
            None,
            MetricType::Gauge,
        )?;
        for (ns, name, phase) in phases() {
            let labels = [
                ("namespace", ns.as_str()),
                ("name", name.as_str()),
                ("phase", phase),
            ];
            ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "experiment_phase",
            "Information on the state of the experiment (deprecated in Argo Rollouts: use experiment_info).",
            None,
            MetricType::Gauge,
        )?;
        for (ns, name, current) in phases() {
            for phase in EXPERIMENT_PHASES {
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("phase", phase),
                ];
                // As in Argo, an experiment without a phase yet counts as Pending.
                let value =
                    i64::from(current == phase || (current.is_empty() && phase == "Pending"));
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        encode_reconciles(
            &mut encoder,
            "experiment_reconcile",
            "Experiment reconciliation performance.",
            experiments.iter().map(|(key, e)| (key, &e.reconcile)),
        )?;
        encode_errors(
            &mut encoder,
            "experiment_reconcile_error",
            "Errors during experiment reconciles, by reason.",
            experiments.iter().map(|(key, e)| (key, &e.errors)),
        )?;
        Ok(())
    }
}

/// `controller_clientset_k8s_request_total`'s labels: kind, namespace, name, verb, status code.
type ClientsetLabels = (String, String, String, &'static str, u16);

/// Request counts as Argo labels them; see [`Metrics::api_request`].
#[derive(Debug, Default)]
struct ClientsetSeries(Mutex<BTreeMap<ClientsetLabels, u64>>);

impl ClientsetSeries {
    fn add(&self, labels: ClientsetLabels) {
        *lock(&self.0).entry(labels).or_default() += 1;
    }

    /// Counts `labels` (which name `object`) only while `objects` holds `object`, checked and
    /// counted under that map's lock: a forget, which takes the same lock, can never leave a
    /// named series behind. Returns whether it counted.
    fn add_if_held<V>(
        &self,
        objects: &Mutex<BTreeMap<Key, V>>,
        object: &Key,
        labels: ClientsetLabels,
    ) -> bool {
        let objects = lock(objects);
        if !objects.contains_key(object) {
            return false;
        }
        self.add(labels);
        true
    }

    /// Drops the series naming the `gone` objects of `kind`; the caller holds the lock of the map
    /// they were removed from.
    fn forget_objects(&self, kind: &str, gone: &[Key]) {
        if gone.is_empty() {
            return;
        }
        lock(&self.0).retain(|(k, namespace, name, ..), _| {
            k != kind || !gone.iter().any(|(n, o)| n == namespace && o == name)
        });
    }
}

impl Collector for ClientsetSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let series = lock(&self.0);
        // Registered without `_total`: the encoder adds it, giving Argo's sample name.
        let mut family = encoder.encode_descriptor(
            "controller_clientset_k8s_request",
            "Kubernetes API requests made by the controller, labelled as Argo Rollouts labels them.",
            None,
            MetricType::Counter,
        )?;
        for ((kind, namespace, name, verb, status), count) in series.iter() {
            let status = status.to_string();
            let labels = [
                ("kind", kind.as_str()),
                ("namespace", namespace.as_str()),
                ("name", name.as_str()),
                ("verb", verb),
                ("status_code", status.as_str()),
            ];
            ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// What is running: `build_info` and `argo_rollouts_controller_info`, constant 1.
#[derive(Debug)]
struct BuildInfo;

/// Sluice's version, the `version` label of the build series.
const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "build_info",
            "The version of Sluice running and the architecture it was built for; always 1.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", VERSION), ("arch", std::env::consts::ARCH)];
        ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        let mut family = encoder.encode_descriptor(
            "argo_rollouts_controller_info",
            "The version of the controller running (Sluice's); always 1.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1).encode(family.encode_family(&[("version", VERSION)])?)?;
        Ok(())
    }
}

/// A reconcile-time family (`rollout_reconcile`, `analysis_run_reconcile`,
/// `experiment_reconcile`): one histogram per object.
fn encode_reconciles<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    objects: impl Iterator<Item = (&'a Key, &'a Histogram)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for ((ns, object), histogram) in objects {
        let labels = [("namespace", ns.as_str()), ("name", object.as_str())];
        histogram.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Notification counts, keyed by (namespace, rollout, event type, event reason).
#[derive(Debug, Default)]
struct NotificationSeries(Mutex<BTreeMap<(String, String, String, String), Notified>>);

#[derive(Debug)]
struct Notified {
    success: u64,
    error: u64,
    /// Seconds per delivered request.
    send: Histogram,
}

impl Default for Notified {
    fn default() -> Self {
        Self {
            success: 0,
            error: 0,
            send: Histogram::new(NOTIFICATION_BUCKETS),
        }
    }
}

/// Upper bounds (seconds) of the `notification_send` buckets, Argo's.
const NOTIFICATION_BUCKETS: [f64; 5] = [0.01, 0.15, 0.25, 0.5, 1.0];

impl NotificationSeries {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String, String, String), Notified>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Collector for NotificationSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let series = self.lock();
        for (family_name, help, pick) in [
            (
                "notification_send_success",
                "Notification send success.",
                (|n: &Notified| n.success) as fn(&Notified) -> u64,
            ),
            (
                "notification_send_error",
                "Error sending the notification (each failed attempt).",
                |n: &Notified| n.error,
            ),
        ] {
            // `unknown`, not `counter`: the sample keeps Argo's bare name (see the header).
            let mut family =
                encoder.encode_descriptor(family_name, help, None, MetricType::Unknown)?;
            for ((ns, name, type_, reason), notified) in series.iter() {
                let count = pick(notified);
                if count == 0 {
                    continue;
                }
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("type", type_.as_str()),
                    ("reason", reason.as_str()),
                ];
                family.encode_family(&labels)?.encode_gauge(&count)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "notification_send",
            "Notification send performance.",
            None,
            MetricType::Histogram,
        )?;
        for ((ns, name, type_, reason), notified) in series.iter() {
            if notified.success == 0 {
                continue;
            }
            let labels = [
                ("namespace", ns.as_str()),
                ("name", name.as_str()),
                ("type", type_.as_str()),
                ("reason", reason.as_str()),
            ];
            notified.send.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, read from `/proc/self` at scrape time (Linux only; elsewhere
/// they are absent).
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 by the
/// Linux ABI whatever the kernel's internal tick rate).
const USER_HZ: f64 = 100.0;

/// A reconcile-error family (`rollout_reconcile_error`, `analysis_run_reconcile_error`,
/// `experiment_reconcile_error`): one sample per object and reason. `unknown`, not `counter`: the sample keeps Argo's bare name (see
/// the module's header).
fn encode_errors<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    objects: impl Iterator<Item = (&'a (String, String), &'a BTreeMap<String, u64>)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Unknown)?;
    for ((ns, object), errors) in objects {
        for (reason, count) in errors {
            let labels = [
                ("namespace", ns.as_str()),
                ("name", object.as_str()),
                ("reason", reason),
            ];
            family.encode_family(&labels)?.encode_gauge(count)?;
        }
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let read = |path| std::fs::read_to_string(path).ok();
        let stat = read("/proc/self/stat").and_then(|s| parse_stat(&s));
        if let Some((cpu_ticks, _)) = stat {
            let metric = ConstCounter::new(cpu_ticks as f64 / USER_HZ);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                metric.metric_type(),
            )?)?;
        }
        if let Some(bytes) = read("/proc/self/status").and_then(|s| parse_rss_bytes(&s)) {
            let metric = ConstGauge::new(bytes);
            metric.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                metric.metric_type(),
            )?)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            // The count includes the directory handle read_dir holds open, as Go's client does.
            let metric = ConstGauge::new(fds.count() as u64);
            metric.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                metric.metric_type(),
            )?)?;
        }
        let boot_time = read("/proc/stat").and_then(|s| parse_boot_time(&s));
        if let (Some((_, start_ticks)), Some(boot_time)) = (stat, boot_time) {
            let metric = ConstGauge::new(boot_time as f64 + start_ticks as f64 / USER_HZ);
            metric.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                metric.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// `(utime + stime, starttime)` in clock ticks from `/proc/self/stat`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the
    // last ')'. There, field 3 (state) has index 0, so field n has index n - 3.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(22)?))
}

/// `VmRSS` from `/proc/self/status`, in bytes.
fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    Some(kib * 1024)
}

/// `btime` (seconds since the epoch at boot) from `/proc/stat`.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_starting(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn encode_contains_the_recorded_series() {
        let metrics = Metrics::new();
        drop(metrics.reconcile_timer("shop", "web"));
        metrics.reconcile_error("shop", "web", "ServiceNotFound");
        metrics.reconcile_error("shop", "web", "ServiceNotFound");
        metrics.api_request(
            &ApiRequest {
                verb: "patch",
                resource: "replicasets".into(),
                namespace: "shop".into(),
                name: Some("web-6d4f".into()),
                ..ApiRequest::default()
            },
            200,
        );
        metrics.reconcile_requests("rollout", 0);
        metrics.reconcile_requests("rollout", 3);
        metrics.set_rollout("shop", "web", "canary", "Paused");

        let text = metrics.encode();
        for line in [
            "# TYPE rollout_info gauge",
            r#"rollout_info{namespace="shop",name="web",strategy="canary",phase="Paused"} 1"#,
            r#"rollout_phase{namespace="shop",name="web",strategy="canary",phase="Paused"} 1"#,
            r#"rollout_phase{namespace="shop",name="web",strategy="canary",phase="Completed"} 0"#,
            "# TYPE rollout_reconcile histogram",
            r#"rollout_reconcile_count{namespace="shop",name="web"} 1"#,
            r#"rollout_reconcile_bucket{le="10.0",namespace="shop",name="web"} 1"#,
            "# TYPE rollout_reconcile_error unknown",
            r#"rollout_reconcile_error{namespace="shop",name="web",reason="ServiceNotFound"} 2"#,
            "# TYPE sluice_kube_requests counter",
            r#"sluice_kube_requests_total{verb="patch",resource="replicasets",status_code="200"} 1"#,
            "# TYPE sluice_reconcile_kube_requests histogram",
            r#"sluice_reconcile_kube_requests_count{controller="rollout"} 2"#,
            r#"sluice_reconcile_kube_requests_sum{controller="rollout"} 3.0"#,
            r#"sluice_reconcile_kube_requests_bucket{le="0.0",controller="rollout"} 1"#,
            r#"sluice_reconcile_kube_requests_bucket{le="2.0",controller="rollout"} 1"#,
            r#"sluice_reconcile_kube_requests_bucket{le="4.0",controller="rollout"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert_eq!(lines_starting(&text, "rollout_phase{").len(), PHASES.len());
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn notifications_are_counted_under_argo_s_names_and_dropped_with_their_rollout() {
        let metrics = Metrics::new();
        metrics.notification_failed("shop", "web", "Normal", "RolloutCompleted");
        metrics.notification_failed("shop", "web", "Normal", "RolloutCompleted");
        metrics.notification_sent("shop", "web", "Normal", "RolloutCompleted", 0.02);
        metrics.notification_dropped();
        let text = metrics.encode();
        let labels = r#"{namespace="shop",name="web",type="Normal",reason="RolloutCompleted"}"#;
        assert!(
            text.contains(&format!("notification_send_success{labels} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("notification_send_error{labels} 2")),
            "{text}"
        );
        assert!(text.contains("notification_send_count{"), "{text}");
        assert!(
            text.contains("sluice_notifications_dropped_total 1"),
            "{text}"
        );
        metrics.forget_rollout("shop", "web");
        assert!(!metrics.encode().contains("notification_send_success{"));
    }

    #[test]
    fn a_phase_change_leaves_one_info_series() {
        let metrics = Metrics::new();
        metrics.set_rollout("shop", "web", "canary", "Progressing");
        metrics.set_rollout("shop", "web", "blueGreen", "Completed");
        metrics.set_rollout("shop", "api", "canary", "Progressing");

        let text = metrics.encode();
        let web = lines_starting(&text, r#"rollout_info{namespace="shop",name="web""#);
        assert_eq!(
            web,
            [
                r#"rollout_info{namespace="shop",name="web",strategy="blueGreen",phase="Completed"} 1"#
            ]
        );
        let phases = lines_starting(&text, r#"rollout_phase{namespace="shop",name="web""#);
        assert_eq!(phases.len(), PHASES.len());
        assert_eq!(phases.iter().filter(|l| l.ends_with(" 1")).count(), 1);
        assert!(phases.iter().all(|l| l.contains(r#"strategy="blueGreen""#)));
        assert_eq!(lines_starting(&text, "rollout_info{").len(), 2);
    }

    #[test]
    fn forget_removes_every_series_of_the_rollout() {
        let metrics = Metrics::new();
        let timer = metrics.reconcile_timer("shop", "web");
        metrics.reconcile_error("shop", "web", "Conflict");
        metrics.set_rollout("shop", "web", "canary", "Progressing");
        metrics.set_rollout("shop", "api", "canary", "Progressing");

        metrics.forget_rollout("shop", "web");
        drop(timer); // a reconcile that ends after the forget does not bring the series back

        let text = metrics.encode();
        assert!(!text.contains(r#"name="web""#), "{text}");
        assert!(text.contains(r#"name="api""#), "{text}");
    }

    fn rate(phase: &str) -> RunMetric {
        RunMetric {
            name: "rate".into(),
            type_: "Prometheus",
            dry_run: false,
            phase: phase.into(),
        }
    }

    #[test]
    fn analysis_runs_have_one_info_series_and_one_hot_phase_per_metric() {
        let metrics = Metrics::new();
        metrics.set_analysis_run("shop", "web-1", "Running", vec![rate("Running")]);
        metrics.set_analysis_run("shop", "web-1", "Failed", vec![rate("Failed")]);
        let text = metrics.encode();
        assert_eq!(
            lines_starting(&text, "analysis_run_info{"),
            [r#"analysis_run_info{namespace="shop",name="web-1",phase="Failed"} 1"#]
        );
        let phases = lines_starting(&text, "analysis_run_metric_phase{");
        assert_eq!(phases.len(), ANALYSIS_PHASES.len());
        assert_eq!(
            phases
                .iter()
                .filter(|l| l.ends_with(" 1"))
                .collect::<Vec<_>>(),
            [
                &r#"analysis_run_metric_phase{namespace="shop",name="web-1",metric="rate",type="Prometheus",dry_run="false",phase="Failed"} 1"#
            ]
        );
        metrics.forget_analysis_run("shop", "web-1");
        assert!(!metrics.encode().contains("web-1"));
    }

    #[test]
    fn analysis_run_errors_have_their_own_series() {
        let metrics = Metrics::new();
        metrics.analysis_run_reconcile_error("shop", "web-1", "StatusWrite");
        metrics.set_analysis_run("shop", "web-1", "Running", vec![]);
        metrics.analysis_run_reconcile_error("shop", "web-1", "StatusWrite");
        let text = metrics.encode();
        assert!(
            text.lines()
                .any(|l| l == "# TYPE analysis_run_reconcile_error unknown"),
            "{text}"
        );
        assert_eq!(
            lines_starting(&text, "analysis_run_reconcile_error{"),
            [
                r#"analysis_run_reconcile_error{namespace="shop",name="web-1",reason="StatusWrite"} 2"#
            ]
        );
        assert!(
            lines_starting(&text, "rollout_").is_empty(),
            "an AnalysisRun's error is no Rollout's: {text}"
        );
        metrics.forget_analysis_run("shop", "web-1");
        assert!(!metrics.encode().contains("web-1"));
    }

    #[test]
    fn runs_gone_after_a_relist_lose_their_series() {
        let metrics = Metrics::new();
        for name in ["kept", "gone"] {
            metrics.set_analysis_run("shop", name, "Running", vec![]);
            metrics.analysis_run_reconcile_error("shop", name, "SecretUnavailable");
        }
        metrics.retain_analysis_runs(|namespace, name| namespace == "shop" && name == "kept");
        let text = metrics.encode();
        assert!(text.contains(r#"name="kept""#), "{text}");
        assert!(!text.contains(r#"name="gone""#), "{text}");
    }

    #[test]
    fn rollout_replicas_are_reported_as_argo_computes_them() {
        let metrics = Metrics::new();
        // Five pods exist, three available, two on the new template; `unavailableReplicas`
        // (pods the rollout wants but lacks) is not what Argo's gauge reports.
        let status: RolloutStatus = serde_json::from_value(serde_json::json!({
            "replicas": 5, "availableReplicas": 3, "updatedReplicas": 2, "unavailableReplicas": 1,
        }))
        .expect("a rollout status");
        let replicas = replicas_of(&RolloutSpec::default(), &status);
        assert_eq!(
            replicas,
            RolloutReplicas {
                desired: 1,
                available: 3,
                unavailable: 2,
                updated: 2
            }
        );
        metrics.set_rollout_replicas("shop", "web", replicas);
        let text = metrics.encode();
        for line in [
            "# TYPE rollout_info_replicas_available gauge",
            r#"rollout_info_replicas_available{namespace="shop",name="web"} 3"#,
            r#"rollout_info_replicas_unavailable{namespace="shop",name="web"} 2"#,
            r#"rollout_info_replicas_desired{namespace="shop",name="web"} 1"#,
            r#"rollout_info_replicas_updated{namespace="shop",name="web"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        metrics.forget_rollout("shop", "web");
        assert!(!metrics.encode().contains("rollout_info_replicas_desired{"));
    }

    #[test]
    fn rollout_events_are_counted_under_argo_s_sample_name_and_dropped_with_the_rollout() {
        let metrics = Metrics::new();
        metrics.rollout_event("shop", "web", "Normal", "RolloutCompleted");
        metrics.rollout_event("shop", "web", "Normal", "RolloutCompleted");
        metrics.rollout_event("shop", "web", "Warning", "InvalidSpec");
        let text = metrics.encode();
        assert!(
            text.lines().any(|l| l == "# TYPE rollout_events counter"),
            "{text}"
        );
        assert_eq!(
            lines_starting(&text, "rollout_events"),
            [
                r#"rollout_events_total{namespace="shop",name="web",type="Normal",reason="RolloutCompleted"} 2"#,
                r#"rollout_events_total{namespace="shop",name="web",type="Warning",reason="InvalidSpec"} 1"#,
            ]
        );
        metrics.forget_rollout("shop", "web");
        assert!(lines_starting(&metrics.encode(), "rollout_events").is_empty());
    }

    #[test]
    fn analysis_runs_are_timed_and_carry_argo_s_metric_type_and_deprecated_phase() {
        let metrics = Metrics::new();
        drop(metrics.analysis_run_reconcile_timer("shop", "web-1"));
        let mut dry = rate("Running");
        dry.name = "errors".into();
        dry.type_ = "Web";
        dry.dry_run = true;
        metrics.set_analysis_run("shop", "web-1", "Running", vec![rate("Successful"), dry]);
        let text = metrics.encode();
        for line in [
            "# TYPE analysis_run_reconcile histogram",
            r#"analysis_run_reconcile_count{namespace="shop",name="web-1"} 1"#,
            r#"analysis_run_reconcile_bucket{le="10.0",namespace="shop",name="web-1"} 1"#,
            r#"analysis_run_metric_type{namespace="shop",name="web-1",metric="rate",type="Prometheus"} 1"#,
            r#"analysis_run_metric_type{namespace="shop",name="web-1",metric="errors",type="Web"} 1"#,
            r#"analysis_run_metric_phase{namespace="shop",name="web-1",metric="errors",type="Web",dry_run="true",phase="Running"} 1"#,
            r#"analysis_run_metric_phase{namespace="shop",name="web-1",metric="rate",type="Prometheus",dry_run="false",phase="Successful"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        let phases = lines_starting(&text, "analysis_run_phase{");
        assert_eq!(phases.len(), ANALYSIS_PHASES.len());
        assert_eq!(
            phases
                .iter()
                .filter(|l| l.ends_with(" 1"))
                .collect::<Vec<_>>(),
            [&r#"analysis_run_phase{namespace="shop",name="web-1",phase="Running"} 1"#]
        );
        metrics.forget_analysis_run("shop", "web-1");
        assert!(!metrics.encode().contains("web-1"));
    }

    fn run_spec(dry_run: &[&str]) -> AnalysisRunSpec {
        let metric = |name: &str| serde_json::json!({ "name": name, "provider": { "prometheus": { "query": "1" } } });
        let rules: Vec<_> = dry_run
            .iter()
            .map(|r| serde_json::json!({ "metricName": r }))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metrics": [metric("rate"), metric("errors"), metric("error-budget")],
            "dryRun": rules,
        }))
        .expect("a run spec")
    }

    #[test]
    fn the_dry_run_label_follows_the_run_s_dry_run_rules_as_argo_reads_them() {
        let selected = |rules: &[&str]| {
            let spec = run_spec(rules);
            dry_run_metrics(&spec)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(selected(&[]).is_empty());
        // A rule is a regular expression searched in the name.
        assert_eq!(selected(&["^err"]), ["error-budget", "errors"]);
        assert_eq!(selected(&["rate", "budget"]), ["error-budget", "rate"]);
        assert_eq!(selected(&["*"]).len(), 3);
        // A rule matching nothing stops the reading there, as in Argo.
        assert_eq!(selected(&["rate", "latency", "errors"]), ["rate"]);
        let spec = run_spec(&[]);
        assert_eq!(provider_type(&spec.metrics[0].provider), "Prometheus");
    }

    #[test]
    fn experiments_have_an_info_series_a_deprecated_phase_timings_and_errors_until_deleted() {
        let metrics = Metrics::new();
        drop(metrics.experiment_reconcile_timer("shop", "exp"));
        metrics.set_experiment("shop", "exp", "Running");
        metrics.experiment_reconcile_error("shop", "exp", "WriteFailed");
        metrics.set_experiment("shop", "new", "");
        metrics.set_experiment("shop", "failed", "Failed");
        let text = metrics.encode();
        for line in [
            "# TYPE experiment_info gauge",
            r#"experiment_info{namespace="shop",name="exp",phase="Running"} 1"#,
            r#"experiment_info{namespace="shop",name="failed",phase="Failed"} 1"#,
            "# TYPE experiment_reconcile histogram",
            r#"experiment_reconcile_count{namespace="shop",name="exp"} 1"#,
            "# TYPE experiment_reconcile_error unknown",
            r#"experiment_reconcile_error{namespace="shop",name="exp",reason="WriteFailed"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        let hot = |name: &str| {
            lines_starting(
                &text,
                &format!(r#"experiment_phase{{namespace="shop",name="{name}""#),
            )
            .into_iter()
            .filter(|l| l.ends_with(" 1"))
            .collect::<Vec<_>>()
        };
        assert_eq!(
            lines_starting(&text, r#"experiment_phase{namespace="shop",name="exp""#).len(),
            EXPERIMENT_PHASES.len()
        );
        assert_eq!(
            hot("exp"),
            [r#"experiment_phase{namespace="shop",name="exp",phase="Running"} 1"#]
        );
        assert_eq!(
            hot("new"),
            [r#"experiment_phase{namespace="shop",name="new",phase="Pending"} 1"#]
        );
        assert!(
            hot("failed").is_empty(),
            "Argo has no Failed experiment_phase"
        );

        metrics.forget_experiment("shop", "exp");
        metrics.retain_experiments(|_, name| name == "new");
        let text = metrics.encode();
        assert!(!text.contains(r#"name="exp""#), "{text}");
        assert!(!text.contains(r#"name="failed""#), "{text}");
        assert!(text.contains(r#"name="new""#), "{text}");
    }

    fn request(
        verb: &'static str,
        resource: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> ApiRequest {
        ApiRequest {
            verb,
            resource: resource.into(),
            subresource: None,
            namespace: namespace.into(),
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn kube_requests_are_counted_as_argo_labels_them_with_names_only_while_their_object_has_series()
    {
        let metrics = Metrics::new();
        let status = ApiRequest {
            subresource: Some("status".into()),
            ..request("update", "rollouts", "shop", Some("web"))
        };
        // Before the rollout has series its name is not a label; once it has, it is.
        metrics.api_request(&status, 200);
        drop(metrics.reconcile_timer("shop", "web"));
        metrics.api_request(&status, 200);
        metrics.api_request(&status, 409);
        metrics.api_request(&request("list", "replicasets", "shop", None), 200);
        metrics.api_request(&request("get", "pods", "shop", Some("web-1")), 200);
        metrics.api_request(&request("create", "events", "shop", None), 201);
        metrics.api_request(&request("create", "analysisruns", "shop", None), 201);
        metrics.api_request(&request("watch", "rollouts", "", None), 200);
        metrics.api_request(&request("deletecollection", "jobs", "shop", None), 200);
        metrics.api_request(&request("other", "pods", "shop", Some("web-1")), 0);
        let text = metrics.encode();
        assert!(
            text.lines()
                .any(|l| l == "# TYPE controller_clientset_k8s_request counter"),
            "{text}"
        );
        let series = lines_starting(&text, "controller_clientset_k8s_request");
        let mut expected = [
            r#"controller_clientset_k8s_request_total{kind="rollouts",namespace="shop",name="web",verb="Update",status_code="200"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="rollouts",namespace="shop",name="web",verb="Update",status_code="409"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="rollouts",namespace="shop",name="N/A",verb="Update",status_code="200"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="replicasets",namespace="shop",name="N/A",verb="List",status_code="200"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="pods",namespace="shop",name="N/A",verb="Get",status_code="200"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="events",namespace="shop",name="N/A",verb="Create",status_code="201"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="analysisruns",namespace="shop",name="",verb="Create",status_code="201"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="rollouts",namespace="",name="",verb="Watch",status_code="200"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="jobs",namespace="shop",name="",verb="Delete",status_code="200"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="Unknown",namespace="Unknown",name="Unknown",verb="Unknown",status_code="0"} 1"#,
        ]
        .map(str::to_owned);
        expected.sort();
        let mut got = series.clone();
        got.sort();
        assert_eq!(got, expected);

        // A run in the namespace keeps its request series when the rollout goes; the rollout's
        // named ones go at once.
        drop(metrics.analysis_run_reconcile_timer("shop", "web-1"));
        metrics.forget_rollout("shop", "web");
        let text = metrics.encode();
        assert!(!text.contains(r#"name="web""#), "{text}");
        assert!(text.contains(r#"kind="pods",namespace="shop""#), "{text}");
        // The namespace's last object gone, its series go; cluster-wide ones stay.
        metrics.forget_analysis_run("shop", "web-1");
        let series = lines_starting(&metrics.encode(), "controller_clientset_k8s_request");
        assert!(
            series.iter().all(|l| !l.contains(r#"namespace="shop""#)),
            "{series:?}"
        );
        assert_eq!(series.len(), 2, "{series:?}");
        // A request about a forgotten rollout names it no more.
        metrics.api_request(&status, 404);
        assert!(!metrics.encode().contains(r#"name="web""#));
    }

    #[test]
    fn build_info_names_sluice_s_version_and_architecture() {
        let text = Metrics::new().encode();
        let version = env!("CARGO_PKG_VERSION");
        for line in [
            "# TYPE build_info gauge".to_owned(),
            format!(
                r#"build_info{{version="{version}",arch="{}"}} 1"#,
                std::env::consts::ARCH
            ),
            format!(r#"argo_rollouts_controller_info{{version="{version}"}} 1"#),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let text = Metrics::new().encode();
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_start_time_seconds ",
            ] {
                assert_eq!(lines_starting(&text, name).len(), 1, "{name} in:\n{text}");
            }
        }
    }

    #[test]
    fn proc_files_are_parsed() {
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 3000 0 0 0 \
                    150 50 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((200, 123456)));
        assert_eq!(parse_stat("garbage"), None);
        let status = "Name:\tsluice\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads:\t9\n";
        assert_eq!(parse_rss_bytes(status), Some(1536 * 1024));
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }

    fn status_with(conditions: serde_json::Value) -> RolloutStatus {
        serde_json::from_value(serde_json::json!({ "conditions": conditions }))
            .expect("a rollout status")
    }

    fn condition(type_: &str, status: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({
            "type": type_, "status": status, "reason": reason, "message": "",
            "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z",
        })
    }

    #[test]
    fn phase_label_follows_argo() {
        let cases = [
            (vec![], "Progressing"),
            (
                vec![condition("Progressing", "True", "NewReplicaSetAvailable")],
                "Completed",
            ),
            (
                vec![condition("Progressing", "Unknown", "RolloutPaused")],
                "Paused",
            ),
            (
                vec![condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                )],
                "Timeout",
            ),
            (
                vec![condition("Progressing", "False", "RolloutAborted")],
                "Abort",
            ),
            (
                vec![condition("Progressing", "False", "ReplicaSetCreateError")],
                "Error",
            ),
            (
                vec![
                    condition("Progressing", "True", "NewReplicaSetAvailable"),
                    condition("InvalidSpec", "True", "InvalidFieldValue"),
                ],
                "InvalidSpec",
            ),
        ];
        for (conditions, phase) in cases {
            let status = status_with(serde_json::Value::Array(conditions.clone()));
            assert_eq!(phase_label(&status), phase, "{conditions:?}");
        }
    }
}
