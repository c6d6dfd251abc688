//! The rules of a run, read once from its spec and checked: each metric with its arguments
//! substituted, its schedule, its limits, whether it is a dry run and how many measurements to
//! keep. PURE.
//!
//! The controller's [`AnalysisLimits`] bound every metric here: an `interval` below the floor
//! (`0s` included) is raised to it, so no run can make a hot loop, and a provider's timeout
//! above the ceiling is lowered to it ([`bound_metric`]); each adjustment is kept as a note
//! ([`MetricRules::adjusted`]) the run's status shows. A metric name is never substituted: a
//! placeholder in one is an error naming it, not a metric the status can never match.
//!
//! [`RunRules::new`] is the one validation of a run (Argo's `ValidateMetrics` plus the checks
//! Argo only makes at the tenth measurement): an invalid run is an Error with a message, once,
//! not a retry storm. [`validate_template`] runs the same checks on a template, with arguments
//! the template leaves open filled by a stand-in, so the Rollout wiring can report a broken
//! template before creating a run from it.

use sluice_api::{
    AnalysisRunSpec, AnalysisTemplateSpec, Argument, DryRun, Duration, IntOrString,
    MeasurementRetention, Metric, MetricProvider,
};
use std::time::Duration as StdDuration;

use crate::{
    args::{self, ArgsError, ResolvedArgs},
    condition::{ConditionError, Conditions},
    limits::AnalysisLimits,
};

/// The provider keys Sluice implements, as written in manifests.
pub const SUPPORTED: &[&str] = &[
    "prometheus",
    "web",
    "job",
    "datadog",
    "newRelic",
    "wavefront",
    "kayenta",
    "cloudWatch",
    "graphite",
    "influxdb",
    "skywalking",
];

/// The key of a provider Sluice does not implement, `None` for a supported one.
pub fn unsupported(provider: &MetricProvider) -> Option<&'static str> {
    let key = provider.key();
    (!SUPPORTED.contains(&key)).then_some(key)
}

/// Consecutive errors tolerated when a metric does not say (Argo's default).
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// Measurements kept per metric when no retention rule says otherwise (Argo's default).
pub const DEFAULT_MEASUREMENT_RETENTION: usize = 10;
/// Time before measuring again after an Error measurement (Argo's `DefaultErrorRetryInterval`).
pub const ERROR_RETRY_INTERVAL: StdDuration = StdDuration::from_secs(10);

/// Why a run (or template) cannot be measured; the run's phase becomes Error with this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No metric at all.
    #[error("no metrics specified")]
    NoMetrics,
    /// Two metrics share a name.
    #[error("metrics[{index}]: duplicate name {name:?}")]
    DuplicateMetric {
        /// Position of the second one.
        index: usize,
        /// The name.
        name: String,
    },
    /// A metric's name holds a placeholder: names are never substituted (the status, dryRun
    /// rules and metric labels refer to a metric by the name as written), so the run could
    /// never record a measurement under it.
    #[error(
        "metrics[{index}]: name {name:?} holds the placeholder {placeholder}; metric names are not substituted, write the name out"
    )]
    PlaceholderInName {
        /// Position of the metric.
        index: usize,
        /// The name as written.
        name: String,
        /// The placeholder, braces included.
        placeholder: String,
    },
    /// Arguments could not be resolved or substituted.
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// A condition does not compile.
    #[error("metrics[{index}] {metric:?}: {source}")]
    Condition {
        /// Position of the metric.
        index: usize,
        /// Its name.
        metric: String,
        /// Why.
        #[source]
        source: ConditionError,
    },
    /// A count or limit that is not a whole number, or a negative one.
    #[error("metrics[{index}] {metric:?}: {field} {value:?} must be a whole number >= 0")]
    NotACount {
        /// Position of the metric.
        index: usize,
        /// Its name.
        metric: String,
        /// `count`, `failureLimit`, `inconclusiveLimit` or `consecutiveErrorLimit`.
        field: &'static str,
        /// The value as written (after substitution).
        value: String,
    },
    /// A rule between fields of a metric is broken (Argo's wording).
    #[error("metrics[{index}] {metric:?}: {message}")]
    Metric {
        /// Position of the metric.
        index: usize,
        /// Its name.
        metric: String,
        /// What is wrong.
        message: String,
    },
    /// The provider is not one Sluice implements.
    #[error(
        "metrics[{index}] {metric:?}: the {provider} provider is not supported by Sluice (supported: {})",
        SUPPORTED.join(", ")
    )]
    UnsupportedProvider {
        /// Position of the metric.
        index: usize,
        /// Its name.
        metric: String,
        /// The provider's key in the manifest.
        provider: &'static str,
    },
    /// A dryRun or measurementRetention rule that is not a valid regular expression or
    /// matches no metric.
    #[error("{field}[{index}]: {message}")]
    Rule {
        /// `dryRun` or `measurementRetention`.
        field: &'static str,
        /// Position of the rule.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// One metric, ready to schedule and assess.
#[derive(Clone, Debug)]
pub struct MetricRules {
    /// The metric with `{{args.*}}` substituted (Secret values stand in as a placeholder: the
    /// controller substitutes them for real with [`args::resolve_args`] before measuring).
    pub metric: Metric,
    /// Its conditions, compiled.
    pub conditions: Conditions,
    /// Time between measurements.
    pub interval: Option<StdDuration>,
    /// Time from the run's start to the first measurement.
    pub initial_delay: Option<StdDuration>,
    /// Measurements to take (errors not counted); `None`: until the run is terminated.
    pub count: Option<u32>,
    /// Failed measurements tolerated; `None` when `failureLimit: -1` disables the limit, which
    /// Argo allows only with a `consecutiveSuccessLimit` (its `ValidateMetric`), and which then
    /// never fails the metric on failed measurements (its `assessMetricFailureInconclusiveOrError`:
    /// "If failureLimit is negative, that means it isn't applicable").
    pub failure_limit: Option<u32>,
    /// Successful measurements in a row that make the metric Successful; 0 disables it.
    pub consecutive_success_limit: u32,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
    /// Errors in a row tolerated.
    pub consecutive_error_limit: u32,
    /// Measured and reported, but never decides the run.
    pub dry_run: bool,
    /// Measurements kept in the status.
    pub retention: usize,
    /// What the controller's limits changed in the metric as written (an interval raised, a
    /// timeout lowered), for the run's status to say; empty when nothing.
    pub adjusted: Vec<String>,
}

impl MetricRules {
    /// The metric's name.
    pub fn name(&self) -> &str {
        &self.metric.name
    }
}

/// Every metric of a run, in the spec's order, and whether the run was asked to stop.
#[derive(Clone, Debug)]
pub struct RunRules {
    /// The metrics.
    pub metrics: Vec<MetricRules>,
    /// `spec.terminate`.
    pub terminate: bool,
}

impl RunRules {
    /// Reads and checks a run's spec within the default [`AnalysisLimits`].
    pub fn new(spec: &AnalysisRunSpec) -> Result<Self, SpecError> {
        Self::within(spec, &AnalysisLimits::default())
    }

    /// Reads and checks a run's spec, bounding each metric by the controller's `limits`.
    pub fn within(spec: &AnalysisRunSpec, limits: &AnalysisLimits) -> Result<Self, SpecError> {
        let resolved = args::resolve_args_without_secrets(&spec.args)?;
        let metrics = check_metrics(
            &spec.metrics,
            &resolved,
            &spec.dry_run,
            &spec.measurement_retention,
            limits,
        )?;
        Ok(Self {
            metrics,
            terminate: spec.is_terminated(),
        })
    }

    /// The rules of one metric.
    pub fn metric(&self, name: &str) -> Option<&MetricRules> {
        self.metrics.iter().find(|m| m.metric.name == name)
    }
}

impl SpecError {
    /// Whether the spec is valid but asks for something Sluice does not do yet (a provider),
    /// rather than being wrong.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, SpecError::UnsupportedProvider { .. })
    }
}

/// Checks a template as a run made from it would be checked; arguments without a value are
/// filled with `0`, which fits the numeric and the textual places arguments appear in.
///
/// A template that includes others (`spec.templates`) may have no metrics of its own; its
/// metrics are checked with those it includes when a run is made ([`args::lookup_templates`]).
pub fn validate_template(spec: &AnalysisTemplateSpec) -> Result<(), SpecError> {
    if spec.metrics.is_empty() && !spec.templates.is_empty() {
        return Ok(());
    }
    let stand_ins: Vec<Argument> = spec
        .args
        .iter()
        .map(|a| Argument {
            name: a.name.clone(),
            value: Some(a.value.clone().unwrap_or_else(|| "0".to_owned())),
            value_from: None,
        })
        .collect();
    let resolved = args::resolve_args_without_secrets(&stand_ins)?;
    check_metrics(
        &spec.metrics,
        &resolved,
        &spec.dry_run,
        &spec.measurement_retention,
        &AnalysisLimits::default(),
    )
    .map(|_| ())
}

/// Bounds a metric (after substitution) by the controller's limits: an `interval` shorter than
/// [`AnalysisLimits::min_interval`] is raised to it, a web or Prometheus timeout longer than
/// [`AnalysisLimits::max_timeout`] is lowered to it. Returns a note for each change.
pub fn bound_metric(metric: &mut Metric, limits: &AnalysisLimits) -> Vec<String> {
    let mut notes = Vec::new();
    // A zero interval is raised even under a zero floor: it would measure in a loop.
    if let Some(interval) = &metric.interval
        && (interval.as_std() < limits.min_interval || interval.as_std().is_zero())
    {
        let floor = whole_seconds_at_least(limits.min_interval);
        notes.push(format!(
            "interval {interval} raised to {}s, the shortest this controller measures at",
            floor.as_secs()
        ));
        metric.interval = Some(floor);
    }
    let ceiling = i64::try_from(limits.max_timeout.as_secs()).unwrap_or(i64::MAX);
    let mut lower = |field: &str, timeout: &mut Option<i64>| {
        if let Some(t) = timeout.as_mut()
            && *t > ceiling
        {
            notes.push(format!(
                "{field} {t} lowered to {ceiling}, the longest this controller waits"
            ));
            *t = ceiling;
        }
    };
    match &mut metric.provider {
        MetricProvider::Web(web) => lower("timeoutSeconds", &mut web.timeout_seconds),
        MetricProvider::Prometheus(prometheus) => lower("timeout", &mut prometheus.timeout),
        _ => {}
    }
    notes
}

/// The duration in whole seconds, rounded up, and at least one second (an API duration is
/// written in seconds; a floor of zero would be no floor).
fn whole_seconds_at_least(d: StdDuration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

/// The first `{{...}}` placeholder in `text` (to its end when unterminated), if any.
fn placeholder_in(text: &str) -> Option<&str> {
    let start = text.find("{{")?;
    let rest = &text[start..];
    Some(rest.find("}}").map_or(rest, |end| &rest[..end + 2]))
}

/// The checks shared by runs and templates.
fn check_metrics(
    metrics: &[Metric],
    resolved: &ResolvedArgs,
    dry_run: &[DryRun],
    retention: &[MeasurementRetention],
    limits: &AnalysisLimits,
) -> Result<Vec<MetricRules>, SpecError> {
    if metrics.is_empty() {
        return Err(SpecError::NoMetrics);
    }
    let mut out: Vec<MetricRules> = Vec::with_capacity(metrics.len());
    for (index, metric) in metrics.iter().enumerate() {
        if out.iter().any(|m| m.metric.name == metric.name) {
            return Err(SpecError::DuplicateMetric {
                index,
                name: metric.name.clone(),
            });
        }
        if let Some(placeholder) = placeholder_in(&metric.name) {
            return Err(SpecError::PlaceholderInName {
                index,
                name: metric.name.clone(),
                placeholder: placeholder.to_owned(),
            });
        }
        let mut metric = args::substitute_metric(metric, resolved)?;
        let adjusted = bound_metric(&mut metric, limits);
        let mut rules = check_metric(index, metric, limits)?;
        rules.adjusted = adjusted;
        out.push(rules);
    }
    for (index, rule) in dry_run.iter().enumerate() {
        for m in matching(&mut out, "dryRun", index, &rule.metric_name)? {
            m.dry_run = true;
        }
    }
    for (index, rule) in retention.iter().enumerate() {
        let limit = usize::try_from(rule.limit).unwrap_or(0);
        for m in matching(&mut out, "measurementRetention", index, &rule.metric_name)? {
            // As in Argo, a limit of 0 keeps the default.
            if limit > 0 {
                m.retention = limit;
            }
        }
    }
    Ok(out)
}

/// The metrics a dryRun or retention rule selects; a rule selecting none is an error.
fn matching<'a>(
    metrics: &'a mut [MetricRules],
    field: &'static str,
    index: usize,
    pattern: &str,
) -> Result<Vec<&'a mut MetricRules>, SpecError> {
    let rule_error = |message: String| SpecError::Rule {
        field,
        index,
        message,
    };
    let mut selected = Vec::new();
    for m in metrics.iter_mut() {
        if rule_matches(pattern, &m.metric.name).map_err(rule_error)? {
            selected.push(m);
        }
    }
    if selected.is_empty() {
        return Err(rule_error(format!(
            "rule {pattern:?} didn't match any metric name(s)"
        )));
    }
    Ok(selected)
}

/// Whether a dryRun / measurementRetention rule selects a metric: the rule is a regular
/// expression searched in the name, as Argo does (`.*` selects all); `*` alone also selects
/// all. The match runs through expr-lang's `matches` operator (the `regex` crate, whose syntax
/// is Go's RE2 for everything a metric name needs).
pub fn rule_matches(pattern: &str, name: &str) -> Result<bool, String> {
    if pattern == "*" {
        return Ok(true);
    }
    let mut ctx = expr::Context::default();
    ctx.insert("name", name);
    ctx.insert("pattern", pattern);
    match expr::eval("name matches pattern", &ctx) {
        Ok(expr::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("matching {pattern:?} gave {other}")),
        Err(e) => Err(format!("{pattern:?} is not a regular expression: {e}")),
    }
}

/// Checks one metric (after substitution) and reads its numbers.
fn check_metric(
    index: usize,
    metric: Metric,
    limits: &AnalysisLimits,
) -> Result<MetricRules, SpecError> {
    let name = metric.name.clone();
    let number =
        |field: &'static str, value: &Option<IntOrString>| -> Result<Option<u32>, SpecError> {
            value
                .as_ref()
                .map(|v| {
                    v.as_int()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| SpecError::NotACount {
                            index,
                            metric: name.clone(),
                            field,
                            value: match v {
                                IntOrString::Int(n) => n.to_string(),
                                IntOrString::String(s) => s.clone(),
                            },
                        })
                })
                .transpose()
        };
    let count = number("count", &metric.count)?.unwrap_or(0);
    // `-1` is Argo's one negative failureLimit: the limit is disabled.
    let failure_limit = match &metric.failure_limit {
        Some(limit) if limit.as_int() == Some(-1) => None,
        limit => Some(number("failureLimit", limit)?.unwrap_or(0)),
    };
    let consecutive_success_limit =
        number("consecutiveSuccessLimit", &metric.consecutive_success_limit)?.unwrap_or(0);
    let inconclusive_limit = number("inconclusiveLimit", &metric.inconclusive_limit)?.unwrap_or(0);
    let consecutive_error_limit = number("consecutiveErrorLimit", &metric.consecutive_error_limit)?
        .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT);
    let broken = |message: &str| SpecError::Metric {
        index,
        metric: name.clone(),
        message: message.to_owned(),
    };
    // Argo's `ValidateMetric`, in its words.
    if consecutive_success_limit == 0 && failure_limit.is_none() {
        return Err(broken(
            "failureLimit and consecutiveSuccessLimit cannot both be disabled",
        ));
    }
    match failure_limit {
        Some(failure_limit) if count > 0 && count < failure_limit + consecutive_success_limit => {
            return Err(broken(&format!(
                "count ({count}) must be >= failureLimit + consecutiveSuccessLimit ({failure_limit} + {consecutive_success_limit}) if both >= 0"
            )));
        }
        None if count > 0 && count < consecutive_success_limit => {
            return Err(broken("count must be >= consecutiveSuccessLimit"));
        }
        _ => {}
    }
    if count > 0 && count < inconclusive_limit {
        return Err(broken("count must be >= inconclusiveLimit"));
    }
    if count > 1 && metric.interval.is_none() {
        return Err(broken("interval must be specified when count > 1"));
    }
    if let Some(provider) = unsupported(&metric.provider) {
        return Err(SpecError::UnsupportedProvider {
            index,
            metric: name.clone(),
            provider,
        });
    }
    let conditions = Conditions::of_within(&metric, &limits.condition).map_err(|source| {
        SpecError::Condition {
            index,
            metric: name.clone(),
            source,
        }
    })?;
    let interval = metric.interval.as_ref().map(|d| d.as_std());
    // Argo's `EffectiveCount`: no count (or 0) is one measurement without an interval, and
    // measurements until terminated with one.
    let count = match (count, interval) {
        (0, None) => Some(1),
        (0, Some(_)) => None,
        (n, _) => Some(n),
    };
    Ok(MetricRules {
        interval,
        initial_delay: metric.initial_delay.as_ref().map(|d| d.as_std()),
        conditions,
        count,
        failure_limit,
        consecutive_success_limit,
        inconclusive_limit,
        consecutive_error_limit,
        dry_run: false,
        retention: DEFAULT_MEASUREMENT_RETENTION,
        adjusted: Vec::new(),
        metric,
    })
}

#[cfg(test)]
mod tests;
