//! PURE decisions of the AnalysisRun controller: no client, no clock, no I/O.
//!
//! One reconcile of a run is
//! 1. [`RunRules::new`](super::rules::RunRules::new) (an invalid spec: [`invalid`], done);
//! 2. [`due`]: the measurements to take, resume or terminate now;
//! 3. the providers carry them out (the edge), each giving a [`Measurement`];
//! 4. [`record`] folds each into its metric's result (counters, in-flight replacement);
//! 5. [`assess`]: metric phases, the run's phase, summaries, message, retention, and the next
//!    time anything is due, so the controller requeues exactly then and never polls.
//!
//! Everything is read back from the status, so a restarted controller decides the same. The
//! rules are Argo Rollouts' (`analysis/analysis.go`); where Sluice differs it says so.

use std::{cmp::Ordering, collections::BTreeMap, time::Duration as StdDuration};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice_api::{
    AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, Measurement, MetricResult, RunSummary,
};

use super::rules::{ERROR_RETRY_INTERVAL, MetricRules, RunRules, SpecError};

/// What to do for one metric now.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// Take a new measurement (`Provider::measure`).
    Measure,
    /// Look again at the measurement still in flight (`Provider::resume`).
    Resume(Measurement),
    /// Stop the measurement in flight: the run is ending (`Provider::terminate`).
    Terminate(Measurement),
}

/// A task for a named metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    /// The metric.
    pub metric: String,
    /// What to do.
    pub task: Task,
}

/// The outcome of [`assess`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assessment {
    /// When anything is next due; `None` when nothing will be until something changes (the run
    /// is complete, or only watched in-flight measurements remain).
    pub next_due: Option<Timestamp>,
    /// Metrics whose measurements were trimmed to their retention, with the limit, for
    /// `Provider::garbage_collect`.
    pub trimmed: Vec<(String, usize)>,
    /// Whether the run reached a final phase in this assessment (record an event, clean up).
    pub completed_now: bool,
}

/// Argo's order of phases from best to worst: a worse metric decides the run.
fn rank(phase: AnalysisPhase) -> u8 {
    match phase {
        AnalysisPhase::Successful => 0,
        AnalysisPhase::Running => 1,
        AnalysisPhase::Pending => 2,
        AnalysisPhase::Inconclusive => 3,
        AnalysisPhase::Error => 4,
        AnalysisPhase::Failed => 5,
    }
}

/// Compares phases by how bad they are (Failed > Error > Inconclusive > Pending > Running >
/// Successful), as Argo's `IsWorse`.
pub fn severity(a: AnalysisPhase, b: AnalysisPhase) -> Ordering {
    rank(a).cmp(&rank(b))
}

/// The metric's result in the status.
pub fn result<'a>(status: &'a AnalysisRunStatus, metric: &str) -> Option<&'a MetricResult> {
    status.metric_results.iter().find(|r| r.name == metric)
}

/// The number of a metric's next measurement, from 1 (Argo's `count + error + 1`): names what
/// the measurement creates (a Job).
pub fn attempt(status: &AnalysisRunStatus, metric: &str) -> u32 {
    result(status, metric).map_or(1, |r| {
        let n = |v: Option<i32>| u32::try_from(v.unwrap_or(0)).unwrap_or(0);
        n(r.count).saturating_add(n(r.error)).saturating_add(1)
    })
}

/// Whether a measurement has not finished yet.
fn in_flight(m: &Measurement) -> bool {
    m.finished_at.is_none()
}

/// Whether the run stops taking new measurements: asked to, or a deciding metric already
/// Failed, Errored or was Inconclusive (Argo's `IsTerminating`).
pub fn is_terminating(rules: &RunRules, status: &AnalysisRunStatus) -> bool {
    rules.terminate
        || status.metric_results.iter().any(|r| {
            !r.dry_run.unwrap_or(false)
                && matches!(
                    r.phase,
                    AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
                )
        })
}

/// Whether nothing is left to do for a completed run (no measurement in flight).
pub fn settled(status: &AnalysisRunStatus) -> bool {
    status.phase.is_completed()
        && status
            .metric_results
            .iter()
            .all(|r| r.measurements.last().is_none_or(|m| !in_flight(m)))
}

/// When a completed run's `ttlStrategy` lets it be deleted: `secondsAfterSuccess` for a
/// Successful run and `secondsAfterFailure` for a Failed one take precedence over
/// `secondsAfterCompletion`, which covers every outcome (Error and Inconclusive have only it).
/// `None` while the run is not completed, without a completion time, or with no TTL for its
/// outcome; a negative TTL counts as zero.
pub fn expires_at(spec: &AnalysisRunSpec, status: &AnalysisRunStatus) -> Option<Timestamp> {
    let ttl = spec.ttl_strategy.as_ref()?;
    if !status.phase.is_completed() {
        return None;
    }
    let by_outcome = match status.phase {
        AnalysisPhase::Successful => ttl.seconds_after_success,
        AnalysisPhase::Failed => ttl.seconds_after_failure,
        _ => None,
    };
    let seconds = by_outcome.or(ttl.seconds_after_completion)?;
    let completed = status.completed_at.as_ref()?.0;
    Some(later(
        completed,
        StdDuration::from_secs(u64::try_from(seconds).unwrap_or(0)),
    ))
}

/// `at + d`, saturating.
fn later(at: Timestamp, d: StdDuration) -> Timestamp {
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// When the run started (now, before the first assessment).
fn started(status: &AnalysisRunStatus, now: Timestamp) -> Timestamp {
    status.started_at.as_ref().map_or(now, |t| t.0)
}

/// Time between a finished measurement and the next.
fn spacing(rules: &MetricRules, last: &Measurement) -> StdDuration {
    if last.phase == AnalysisPhase::Error {
        ERROR_RETRY_INTERVAL
    } else {
        // Validation requires an interval when count > 1; 10 s keeps a hand-made status sane.
        rules.interval.unwrap_or(ERROR_RETRY_INTERVAL)
    }
}

/// Measurements counted toward `count` (errors are not).
fn taken(result: &MetricResult) -> u32 {
    u32::try_from(result.count.unwrap_or(0)).unwrap_or(0)
}

/// When one metric wants something done next, and what; `None` when it waits on nothing.
fn metric_due(
    rules: &MetricRules,
    status: &AnalysisRunStatus,
    stopping: bool,
    now: Timestamp,
) -> Option<(Timestamp, Task)> {
    let result = result(status, rules.name());
    let last = result.and_then(|r| r.measurements.last());
    if let Some(last) = last.filter(|m| in_flight(m)) {
        // Sluice terminates at once rather than waiting for `resumeAt`, and also when the run
        // has completed (Argo leaves such a measurement running).
        return Some(if stopping {
            (now, Task::Terminate(last.clone()))
        } else {
            (
                last.resume_at.as_ref().map_or(now, |t| t.0),
                Task::Resume(last.clone()),
            )
        });
    }
    if stopping || result.is_some_and(|r| r.phase.is_completed()) {
        return None;
    }
    let Some(last) = last else {
        let at = rules
            .initial_delay
            .map_or(now, |d| later(started(status, now), d));
        return Some((at, Task::Measure));
    };
    if rules
        .count
        .is_some_and(|count| result.is_some_and(|r| taken(r) >= count))
    {
        return None;
    }
    let finished = last.finished_at.as_ref().map_or(now, |t| t.0);
    Some((later(finished, spacing(rules, last)), Task::Measure))
}

/// The measurements to take, resume or terminate at `now`, in the spec's order of metrics.
pub fn due(rules: &RunRules, status: &AnalysisRunStatus, now: Timestamp) -> Vec<Due> {
    let stopping = status.phase.is_completed() || is_terminating(rules, status);
    rules
        .metrics
        .iter()
        .filter_map(|m| {
            let (at, task) = metric_due(m, status, stopping, now)?;
            (at <= now).then(|| Due {
                metric: m.name().to_owned(),
                task,
            })
        })
        .collect()
}

/// The next time anything is due: the exact moment to requeue.
///
/// An in-flight measurement without `resumeAt` is left to the watch on what it waits for (a
/// Job); every provider that leaves one in flight sets `resumeAt`.
pub fn next_due(rules: &RunRules, status: &AnalysisRunStatus, now: Timestamp) -> Option<Timestamp> {
    let stopping = status.phase.is_completed() || is_terminating(rules, status);
    rules
        .metrics
        .iter()
        .filter_map(|m| metric_due(m, status, stopping, now).map(|(at, _)| at))
        .min()
}

/// Folds a measurement a provider returned into its metric's result: replaces the measurement
/// in flight or appends a new one, stamps `finishedAt` on a final one, and counts it
/// (Successful, Failed and Inconclusive count toward `count` and reset the errors in a row).
///
/// `metadata` is the provider's (e.g. the resolved query); it is stored with a new result.
pub fn record(
    rules: &MetricRules,
    status: &mut AnalysisRunStatus,
    mut measurement: Measurement,
    metadata: BTreeMap<String, String>,
    now: Timestamp,
) {
    let name = rules.name();
    let index = match status.metric_results.iter().position(|r| r.name == name) {
        Some(i) => i,
        None => {
            status.metric_results.push(MetricResult {
                name: name.to_owned(),
                phase: AnalysisPhase::Running,
                dry_run: rules.dry_run.then_some(true),
                metadata,
                ..MetricResult::default()
            });
            status.metric_results.len() - 1
        }
    };
    let result = &mut status.metric_results[index];
    if measurement.phase.is_completed() {
        if measurement.finished_at.is_none() {
            measurement.finished_at = Some(Time(now));
        }
        measurement.resume_at = None;
        let bump = |n: &mut Option<i32>| *n = Some(n.unwrap_or(0).saturating_add(1));
        match measurement.phase {
            AnalysisPhase::Error => {
                bump(&mut result.error);
                bump(&mut result.consecutive_error);
                result.consecutive_success = None;
            }
            phase => {
                match phase {
                    AnalysisPhase::Successful => {
                        bump(&mut result.successful);
                        bump(&mut result.consecutive_success);
                    }
                    AnalysisPhase::Failed => {
                        bump(&mut result.failed);
                        result.consecutive_success = None;
                    }
                    _ => {
                        bump(&mut result.inconclusive);
                        result.consecutive_success = None;
                    }
                }
                bump(&mut result.count);
                result.consecutive_error = None;
            }
        }
    } else {
        // A measurement still in flight is never finished.
        measurement.finished_at = None;
    }
    match result.measurements.last_mut() {
        Some(last) if in_flight(last) => *last = measurement,
        _ => result.measurements.push(measurement),
    }
}

/// Why a completed metric failed, errored or was inconclusive (Argo's
/// `assessMetricFailureInconclusiveOrError`: the later check wins).
fn limit_breach(rules: &MetricRules, result: &MetricResult) -> Option<(AnalysisPhase, String)> {
    let get = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
    let (failed, inconclusive, errors) = (
        get(result.failed),
        get(result.inconclusive),
        get(result.consecutive_error),
    );
    let mut breach = None;
    // No limit (`failureLimit: -1`): failed measurements never fail the metric by count.
    if let Some(limit) = rules.failure_limit
        && failed > limit
    {
        breach = Some((
            AnalysisPhase::Failed,
            format!("failed ({failed}) > failureLimit ({limit})"),
        ));
    }
    if inconclusive > rules.inconclusive_limit {
        breach = Some((
            AnalysisPhase::Inconclusive,
            format!(
                "inconclusive ({inconclusive}) > inconclusiveLimit ({})",
                rules.inconclusive_limit
            ),
        ));
    }
    if errors > rules.consecutive_error_limit {
        breach = Some((
            AnalysisPhase::Error,
            format!(
                "consecutiveErrors ({errors}) > consecutiveErrorLimit ({})",
                rules.consecutive_error_limit
            ),
        ));
    }
    breach
}

/// The phase of one metric from its measurements and limits (Argo's `assessMetricStatus`).
fn metric_phase(rules: &MetricRules, result: &MetricResult, terminating: bool) -> AnalysisPhase {
    if result.phase.is_completed() {
        return result.phase;
    }
    let Some(last) = result.measurements.last() else {
        return if terminating {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Pending
        };
    };
    if in_flight(last) || !last.phase.is_completed() {
        return AnalysisPhase::Running;
    }
    if let Some((phase, _)) = limit_breach(rules, result) {
        return phase;
    }
    let in_a_row = u32::try_from(result.consecutive_success.unwrap_or(0)).unwrap_or(0);
    let success_applies = rules.consecutive_success_limit > 0;
    if success_applies && in_a_row >= rules.consecutive_success_limit {
        return AnalysisPhase::Successful;
    }
    if rules.count.is_some_and(|count| taken(result) >= count) {
        // The count is reached without the successes in a row: with a failure limit that was
        // not broken that is Inconclusive, without one it is Failed (Argo's
        // `assessMetricStatus`).
        return match (success_applies, rules.failure_limit) {
            (true, Some(_)) => AnalysisPhase::Inconclusive,
            (true, None) => AnalysisPhase::Failed,
            (false, _) => AnalysisPhase::Successful,
        };
    }
    if terminating {
        return AnalysisPhase::Successful;
    }
    AnalysisPhase::Running
}

/// Counts in a summary as Argo writes them (zero counts omitted).
#[derive(Default)]
struct Tally {
    count: i32,
    successful: i32,
    failed: i32,
    inconclusive: i32,
    error: i32,
}

impl Tally {
    fn add(&mut self, phase: AnalysisPhase) {
        match phase {
            AnalysisPhase::Failed => self.failed += 1,
            AnalysisPhase::Inconclusive => self.inconclusive += 1,
            AnalysisPhase::Error => self.error += 1,
            _ => self.successful += 1,
        }
    }

    fn summary(&self) -> RunSummary {
        let some = |n: i32| (n != 0).then_some(n);
        RunSummary {
            count: some(self.count),
            successful: some(self.successful),
            failed: some(self.failed),
            inconclusive: some(self.inconclusive),
            error: some(self.error),
        }
    }
}

/// Assesses the run after the measurements of this reconcile were recorded: each metric's
/// phase, the run's phase (the worst of the metrics that are not dry runs, once all are
/// complete; a terminated run is Successful unless something already failed), the summaries,
/// the message, `startedAt`/`completedAt`, retention, and when anything is next due.
///
/// A metric that fails ends the run in the same assessment, without waiting for measurements
/// of other metrics still in flight: [`due`] then terminates those. A completed run keeps its
/// phase and message; its metrics' phases and the summaries still follow those terminations.
pub fn assess(rules: &RunRules, status: &mut AnalysisRunStatus, now: Timestamp) -> Assessment {
    let was_completed = status.phase.is_completed();
    if status.started_at.is_none() {
        status.started_at = Some(Time(now));
    }
    // A metric failing now makes the run terminating, which decides the metrics that wait on
    // nothing but termination (unbounded, or not yet measured): assess again in that case.
    let mut terminating = is_terminating(rules, status);
    update_metric_phases(rules, status, terminating);
    if !terminating && is_terminating(rules, status) {
        terminating = true;
        update_metric_phases(rules, status, terminating);
    }
    let verdict = summarise(rules, status, terminating);
    if !was_completed && verdict.0 != status.phase {
        tracing::debug!(from = ?status.phase, to = ?verdict.0, "run phase");
        status.phase = verdict.0;
        status.message = verdict.1;
        if status.phase.is_completed() {
            status.completed_at = Some(Time(now));
        }
    }
    let trimmed = trim(rules, status);
    Assessment {
        next_due: next_due(rules, status, now),
        trimmed,
        completed_now: !was_completed && status.phase.is_completed(),
    }
}

/// Sets each metric's phase from its measurements and limits; a metric's message becomes its
/// last measurement's when its phase changes.
fn update_metric_phases(rules: &RunRules, status: &mut AnalysisRunStatus, terminating: bool) {
    for metric in &rules.metrics {
        let Some(result) = status
            .metric_results
            .iter_mut()
            .find(|r| r.name == metric.name())
        else {
            continue;
        };
        let phase = metric_phase(metric, result, terminating);
        if phase != result.phase {
            tracing::debug!(metric = metric.name(), from = ?result.phase, to = ?phase, "metric phase");
            if let Some(last) = result.measurements.last() {
                result.message.clone_from(&last.message);
            }
            result.phase = phase;
        }
    }
}

/// The summaries, and the phase and message the run's metrics give it.
fn summarise(
    rules: &RunRules,
    status: &mut AnalysisRunStatus,
    terminating: bool,
) -> (AnalysisPhase, Option<String>) {
    let mut worst: Option<(AnalysisPhase, Option<String>)> = None;
    let mut all_completed = true;
    let (mut run, mut dry) = (Tally::default(), Tally::default());
    for metric in &rules.metrics {
        if metric.dry_run {
            dry.count += 1;
        } else {
            run.count += 1;
        }
        let Some(result) = status
            .metric_results
            .iter_mut()
            .find(|r| r.name == metric.name())
        else {
            all_completed = false;
            continue;
        };
        let phase = result.phase;
        if !phase.is_completed() {
            all_completed = false;
            continue;
        }
        let breach = limit_breach(metric, result);
        let tally_phase = breach.as_ref().map_or(AnalysisPhase::Successful, |b| b.0);
        if metric.dry_run {
            dry.add(tally_phase);
            worst.get_or_insert((AnalysisPhase::Successful, None));
            if let Some((_, why)) = &breach {
                result.message = Some(format!("Metric assessed {phase:?} due to {why}"));
            }
            continue;
        }
        run.add(tally_phase);
        if worst
            .as_ref()
            .is_none_or(|(w, _)| severity(phase, *w) == Ordering::Greater)
        {
            let message = breach.map(|(_, why)| {
                let mut m = format!(
                    "Metric \"{}\" assessed {phase:?} due to {why}",
                    metric.name()
                );
                if let Some(detail) = result.message.as_deref().filter(|d| !d.is_empty()) {
                    m.push_str(&format!(": \"Error Message: {detail}\""));
                }
                m
            });
            worst = Some((phase, message));
        }
    }
    status.run_summary = Some(run.summary());
    status.dry_run_summary = Some(dry.summary());
    let terminated_message = rules.terminate.then(|| "Run Terminated".to_owned());
    match worst {
        Some((phase, message)) if terminating || all_completed => {
            (phase, message.or(terminated_message))
        }
        None if terminating => (AnalysisPhase::Successful, terminated_message),
        _ => (AnalysisPhase::Running, None),
    }
}

/// Trims each metric's measurements to its retention, oldest first.
fn trim(rules: &RunRules, status: &mut AnalysisRunStatus) -> Vec<(String, usize)> {
    let mut trimmed = Vec::new();
    for result in &mut status.metric_results {
        let Some(metric) = rules.metric(&result.name) else {
            continue;
        };
        let excess = result.measurements.len().saturating_sub(metric.retention);
        if excess > 0 {
            result.measurements.drain(..excess);
            trimmed.push((result.name.clone(), metric.retention));
        }
    }
    trimmed
}

/// Marks a run whose spec cannot be measured: phase Error with the reason, once.
pub fn invalid(status: &mut AnalysisRunStatus, error: &SpecError, now: Timestamp) {
    let message = format!("Analysis spec invalid: {error}");
    if status.phase == AnalysisPhase::Error && status.message.as_deref() == Some(message.as_str()) {
        return;
    }
    status.phase = AnalysisPhase::Error;
    status.message = Some(message);
    status.started_at.get_or_insert(Time(now));
    status.completed_at = Some(Time(now));
}

/// An Error measurement, for a provider that could not measure (or arguments that could not be
/// resolved): the counters treat it as any other error.
pub fn error_measurement(message: impl Into<String>, now: Timestamp) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error,
        message: Some(message.into()),
        started_at: Some(Time(now)),
        finished_at: Some(Time(now)),
        ..Measurement::default()
    }
}

#[cfg(test)]
mod tests;

/// A measurement in flight, finished because its run ended.
pub fn terminated(mut measurement: Measurement, now: Timestamp) -> Measurement {
    measurement.phase = AnalysisPhase::Successful;
    measurement.message = Some("Metric Terminated".to_owned());
    measurement.finished_at = Some(Time(now));
    measurement.resume_at = None;
    measurement
}
