//! The controller's Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! Names and labels follow Argo Rollouts where users' dashboards and alerts query them, so a
//! dashboard built for Argo keeps working when Sluice runs the same rollouts:
//!
//! | series                                                     | type      | as in Argo |
//! |------------------------------------------------------------|-----------|------------|
//! | `rollout_info{namespace,name,strategy,phase}` = 1          | gauge     | yes (Argo adds `traffic_router`) |
//! | `rollout_phase{namespace,name,strategy,phase}` = 0/1       | gauge     | yes (deprecated in Argo, kept for old dashboards) |
//! | `rollout_reconcile_bucket/_sum/_count{namespace,name}`     | histogram | yes (finer buckets, 1 ms – 10 s) |
//! | `rollout_reconcile_error{namespace,name,reason}`           | unknown   | yes (Sluice adds `reason`) |
//! | `analysis_run_info{namespace,name,phase}` = 1               | gauge     | yes |
//! | `analysis_run_metric_phase{namespace,name,metric,type,phase}` = 0/1 | gauge | yes |
//! | `analysis_run_reconcile_error{namespace,name,reason}`      | unknown   | yes (Sluice adds `reason`) |
//! | `notification_send_success{namespace,name,type,reason}`    | unknown   | yes (a delivered notification; type and reason of the event) |
//! | `notification_send_error{namespace,name,type,reason}`      | unknown   | yes (Sluice counts every failed attempt, retries included) |
//! | `notification_send_bucket/_sum/_count{namespace,name,type,reason}` | histogram | yes (the time of one delivered request; Sluice adds type and reason) |
//! | `sluice_notifications_dropped_total`                       | counter   | Sluice's own (events dropped because the queue was full) |
//! | `sluice_kube_requests_total{verb,resource,status_code}`    | counter   | Sluice's own |
//! | `sluice_reconcile_kube_requests_bucket/_sum/_count{controller}` | histogram | Sluice's own |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds` | | as every Prometheus client |
//!
//! `rollout_reconcile_error` (and `analysis_run_reconcile_error`) is a counter in meaning, but OpenMetrics requires a counter's sample to
//! end in `_total`, and Argo (which serves the classic text format) exposes it without the suffix,
//! which is the name stored in Prometheus and used by existing queries. Sluice therefore exposes it
//! with the OpenMetrics type `unknown`, whose sample keeps the bare name; `rate()` and `increase()`
//! work on it as before. Counters that are Sluice's own carry the standard `_total` suffix.
//!
//! The `phase` label holds Argo's *metric* phase (`Completed`, `Progressing`, `Paused`, `Timeout`,
//! `Error`, `Abort`, or `InvalidSpec`), not `status.phase`: [`phase_label`] derives it from a status
//! as Argo does, and [`strategy_label`] gives the `strategy` label.
//!
//! Per-rollout series live in one map keyed by namespace and name and are written out at scrape
//! time, so a rollout has exactly one `rollout_info` series and [`Metrics::forget_rollout`] drops
//! all of its series at once. AnalysisRuns have a map of their own: a run's errors never count
//! against a Rollout, and [`Metrics::forget_analysis_run`] (or
//! [`Metrics::retain_analysis_runs`], after the watch lists the runs again) drops them.

use std::{
    collections::BTreeMap,
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

use sluice_api::{
    ConditionStatus, RolloutConditionType, RolloutSpec, RolloutStatus, vocab::reason,
};

/// Upper bounds (seconds) of the `rollout_reconcile` buckets: 1 ms to 10 s.
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

/// The controller's metrics: one registry, shared by the reconcilers and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rollouts: Arc<RolloutSeries>,
    runs: Arc<RunSeries>,
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
            "Kubernetes API requests made by one reconcile, by controller (rollout or analysisrun).",
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
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            rollouts,
            runs,
            kube_requests,
            reconcile_requests,
            notifications,
            notifications_dropped,
        }
    }

    /// Starts timing one reconcile of a rollout; the time is recorded in `rollout_reconcile` when
    /// the timer is dropped.
    pub fn reconcile_timer(&self, namespace: &str, name: &str) -> ReconcileTimer {
        let histogram = self
            .rollouts
            .lock()
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .reconcile
            .clone();
        ReconcileTimer {
            histogram,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile of a rollout; `reason` is the error's short reason (the one its
    /// event carries), so the label's values stay few.
    pub fn reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        *self
            .rollouts
            .lock()
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .errors
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Counts one Kubernetes API request (`verb` such as `create` or `patch`, `resource` such as
    /// `replicasets` or `rollouts/status`, `status` the HTTP status code, 0 when none came back).
    /// The client's [`crate::client::client`] layer calls it for every request it sends.
    pub fn api_request(&self, verb: &str, resource: &str, status: u16) {
        self.kube_requests
            .get_or_create(&KubeRequestLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                status_code: status,
            })
            .inc();
    }

    /// Records how many API requests one reconcile of `controller` (`rollout` or `analysisrun`)
    /// made: requests are the scarce resource at scale, so their count per reconcile is watched.
    pub fn reconcile_requests(&self, controller: &'static str, requests: u32) {
        self.reconcile_requests
            .get_or_create(&ControllerLabel { controller })
            .observe(f64::from(requests));
    }

    /// Records a rollout's strategy ([`strategy_label`]) and phase ([`phase_label`]), replacing
    /// the previous ones: `rollout_info` has one series per rollout, `rollout_phase` one per phase.
    pub fn set_rollout(&self, namespace: &str, name: &str, strategy: &str, phase: &str) {
        self.rollouts
            .lock()
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .info = Some(Info {
            strategy: strategy.to_owned(),
            phase: phase.to_owned(),
        });
    }

    /// Drops every series of a rollout; call it once the rollout is deleted, after its last
    /// reconcile (a timer still running records into the dropped series, not a new one).
    pub fn forget_rollout(&self, namespace: &str, name: &str) {
        self.rollouts
            .lock()
            .remove(&(namespace.to_owned(), name.to_owned()));
        self.notifications
            .lock()
            .retain(|key, _| key.0 != namespace || key.1 != name);
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

    /// Records an AnalysisRun's phase and each metric's (`metrics` as name, provider type,
    /// phase), replacing what was recorded before (its error counts stay).
    pub fn set_analysis_run(
        &self,
        namespace: &str,
        name: &str,
        phase: &str,
        metrics: Vec<(String, String, String)>,
    ) {
        let mut runs = self.runs.lock();
        let run = runs
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default();
        run.phase = Some(phase.to_owned());
        run.metrics = metrics;
    }

    /// Counts a failed reconcile of an AnalysisRun in `analysis_run_reconcile_error`, never in
    /// a Rollout's series; `reason` is the error's short reason, so the label's values stay few.
    pub fn analysis_run_reconcile_error(&self, namespace: &str, name: &str, reason: &str) {
        *self
            .runs
            .lock()
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .errors
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Drops every series of a deleted AnalysisRun.
    pub fn forget_analysis_run(&self, namespace: &str, name: &str) {
        self.runs
            .lock()
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Keeps the series of the AnalysisRuns `exists(namespace, name)` says are still there and
    /// drops the others: after the watch lists the runs again, a run deleted meanwhile (whose
    /// deletion no event reported) leaves no series behind.
    pub fn retain_analysis_runs(&self, exists: impl Fn(&str, &str) -> bool) {
        self.runs
            .lock()
            .retain(|(namespace, name), _| exists(namespace, name));
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

/// Times one reconcile; see [`Metrics::reconcile_timer`].
#[derive(Debug)]
#[must_use = "the reconcile is timed until the timer is dropped"]
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
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

/// The series of every rollout the controller has seen, keyed by (namespace, name).
#[derive(Debug, Default)]
struct RolloutSeries(Mutex<BTreeMap<(String, String), Rollout>>);

#[derive(Debug)]
struct Rollout {
    info: Option<Info>,
    reconcile: Histogram,
    errors: BTreeMap<String, u64>,
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
            reconcile: Histogram::new(RECONCILE_BUCKETS),
            errors: BTreeMap::new(),
        }
    }
}

impl RolloutSeries {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), Rollout>> {
        // The map stays consistent even if a holder panicked: every update is one assignment.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
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

        let mut family = encoder.encode_descriptor(
            "rollout_reconcile",
            "Rollout reconciliation performance.",
            None,
            MetricType::Histogram,
        )?;
        for ((ns, name), rollout) in rollouts.iter() {
            let labels = [("namespace", ns.as_str()), ("name", name.as_str())];
            rollout.reconcile.encode(family.encode_family(&labels)?)?;
        }

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
struct RunSeries(Mutex<BTreeMap<(String, String), RunInfo>>);

#[derive(Debug, Default)]
struct RunInfo {
    /// The run's phase; `None` until it is first recorded (an error may come first).
    phase: Option<String>,
    /// (metric, provider type, phase).
    metrics: Vec<(String, String, String)>,
    /// Failed reconciles, by reason.
    errors: BTreeMap<String, u64>,
}

impl RunSeries {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), RunInfo>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Collector for RunSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let runs = self.lock();
        let mut family = encoder.encode_descriptor(
            "analysis_run_info",
            "Information about analysis run.",
            None,
            MetricType::Gauge,
        )?;
        for ((ns, name), run) in runs.iter() {
            let Some(phase) = run.phase.as_deref() else {
                continue;
            };
            let labels = [
                ("namespace", ns.as_str()),
                ("name", name.as_str()),
                ("phase", phase),
            ];
            ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "analysis_run_metric_phase",
            "Information on the duration of a specific metric in the Analysis Run.",
            None,
            MetricType::Gauge,
        )?;
        for ((ns, name), run) in runs.iter() {
            for (metric, type_, current) in &run.metrics {
                for phase in ANALYSIS_PHASES {
                    let labels = [
                        ("namespace", ns.as_str()),
                        ("name", name.as_str()),
                        ("metric", metric.as_str()),
                        ("type", type_.as_str()),
                        ("phase", phase),
                    ];
                    let value = i64::from(current == phase);
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        encode_errors(
            &mut encoder,
            "analysis_run_reconcile_error",
            "Errors during analysis run reconciles, by reason.",
            runs.iter().map(|(key, r)| (key, &r.errors)),
        )?;
        Ok(())
    }
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

/// A reconcile-error family (`rollout_reconcile_error`, `analysis_run_reconcile_error`): one
/// sample per object and reason. `unknown`, not `counter`: the sample keeps Argo's bare name (see
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
        metrics.api_request("patch", "replicasets", 200);
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

    #[test]
    fn analysis_runs_have_one_info_series_and_one_hot_phase_per_metric() {
        let metrics = Metrics::new();
        let rate = || ("rate".to_string(), "prometheus".to_string());
        metrics.set_analysis_run(
            "shop",
            "web-1",
            "Running",
            vec![(rate().0, rate().1, "Running".into())],
        );
        metrics.set_analysis_run(
            "shop",
            "web-1",
            "Failed",
            vec![(rate().0, rate().1, "Failed".into())],
        );
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
                &r#"analysis_run_metric_phase{namespace="shop",name="web-1",metric="rate",type="prometheus",phase="Failed"} 1"#
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
