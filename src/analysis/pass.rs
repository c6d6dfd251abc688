//! One pass over an AnalysisRun: the pure plan and the providers put together, so that the
//! controller only fetches, calls [`run_pass`], writes the status when it changed, and requeues
//! at [`Pass::requeue_at`].
//!
//! The steps, each in its module: the rules of the run ([`RunRules`]: an invalid spec is an
//! Error, once), its arguments ([`args::resolve_args`]: Secrets through a [`SecretSource`]),
//! the measurements due ([`plan::due`]), the providers measuring them concurrently
//! ([`Providers::perform`]), their messages redacted of Secret values, [`plan::record`],
//! [`plan::assess`], garbage collection of what trimmed measurements left, and once the run is
//! complete with nothing in flight, [`Provider::finish`](super::providers::Provider::finish)
//! (Jobs deleted).

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    args::{self, ArgsError, SecretSource},
    plan,
    providers::{Providers, RunRef},
    rules::RunRules,
};
use crate::api::{AnalysisPhase, AnalysisRun, AnalysisRunStatus};

/// How long to wait before trying again when a Secret could not be read.
pub const SECRET_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// What one pass over a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Pass {
    /// The run's status after the pass; write it when it differs from the one read.
    pub status: AnalysisRunStatus,
    /// When to look at the run again; `None`: only when it (or one of its Jobs) changes.
    pub requeue_at: Option<Timestamp>,
    /// The run reached a final phase in this pass: record an event
    /// (`AnalysisRun<Phase>`, Warning for Failed and Error).
    pub completed_now: bool,
}

/// Measures what is due for `run` and assesses it. Never fails: problems become Error
/// measurements or an Error run, except a Secret that could not be read, which leaves the
/// status as it was and asks to be retried in [`SECRET_RETRY`].
///
/// `rollout` is the Rollout's JSON when the controller has it (a `fieldRef` argument left in
/// the run is read from it).
pub async fn run_pass(
    run: &AnalysisRun,
    providers: &Providers,
    secrets: &(dyn SecretSource + Sync),
    rollout: Option<&serde_json::Value>,
) -> Pass {
    let before = run.status.clone().unwrap_or_default();
    let mut status = before.clone();
    let now = Timestamp::now();
    let run_ref = RunRef::of(run);
    if plan::settled(&status) {
        return Pass {
            status,
            requeue_at: None,
            completed_now: false,
        };
    }
    let rules = match RunRules::new(&run.spec) {
        Ok(rules) => rules,
        Err(e) => {
            tracing::warn!(run = %run_ref.name, error = %e, "analysis spec invalid");
            plan::invalid(&mut status, &e, now);
            return Pass {
                completed_now: !before.phase.is_completed(),
                status,
                requeue_at: None,
            };
        }
    };
    let resolved = match args::resolve_args(&run.spec.args, secrets, rollout) {
        Ok(resolved) => resolved,
        Err(e) if e.is_transient() => {
            tracing::info!(run = %run_ref.name, error = %e, "retrying: a Secret could not be read");
            return Pass {
                status,
                requeue_at: Some(now.checked_add(SECRET_RETRY).unwrap_or(now)),
                completed_now: false,
            };
        }
        Err(e) => return unresolvable(status, &before, &e, now),
    };

    let due = plan::due(&rules, &status, now);
    let work = due.into_iter().filter_map(|due| {
        let template = run.spec.metrics.iter().find(|m| m.name == due.metric)?;
        let rules = rules.metric(&due.metric)?;
        let attempt = plan::attempt(&status, &due.metric);
        let (resolved, run_ref) = (&resolved, &run_ref);
        Some(async move {
            let mut measurement = match args::substitute_metric(template, resolved) {
                Ok(metric) => {
                    let m = providers.perform(run_ref, &metric, due.task, attempt).await;
                    (m, providers.metadata_of(&metric))
                }
                Err(e) => (
                    plan::error_measurement(e.to_string(), Timestamp::now()),
                    Default::default(),
                ),
            };
            measurement.0.message = measurement.0.message.map(|m| resolved.redact(&m));
            (rules, measurement)
        })
    });
    for (rules, (measurement, metadata)) in join_all(work).await {
        tracing::debug!(run = %run_ref.name, metric = rules.name(), phase = ?measurement.phase, "measured");
        plan::record(rules, &mut status, measurement, metadata, Timestamp::now());
    }
    let assessment = plan::assess(&rules, &mut status, Timestamp::now());

    for (name, limit) in &assessment.trimmed {
        collect(run, providers, &run_ref, &resolved, name, Some(*limit)).await;
    }
    if plan::settled(&status) {
        for metric in &run.spec.metrics {
            collect(run, providers, &run_ref, &resolved, &metric.name, None).await;
        }
    }
    if assessment.completed_now {
        tracing::info!(run = %run_ref.name, phase = ?status.phase, "analysis completed");
    }
    Pass {
        status,
        requeue_at: assessment.next_due,
        completed_now: assessment.completed_now,
    }
}

/// Arguments that cannot be resolved (a missing Secret or key): the run is an Error, as in
/// Argo.
fn unresolvable(
    mut status: AnalysisRunStatus,
    before: &AnalysisRunStatus,
    error: &ArgsError,
    now: Timestamp,
) -> Pass {
    let message = format!("Unable to resolve metric arguments: {error}");
    if status.message.as_deref() != Some(message.as_str()) {
        tracing::warn!(%message, "analysis arguments unresolvable");
        status.phase = AnalysisPhase::Error;
        status.message = Some(message);
        status.started_at.get_or_insert(Time(now));
        status.completed_at = Some(Time(now));
    }
    Pass {
        completed_now: !before.phase.is_completed(),
        status,
        requeue_at: None,
    }
}

/// Garbage-collects a metric's leftovers (keeping `limit`), or releases them all (`None`).
async fn collect(
    run: &AnalysisRun,
    providers: &Providers,
    run_ref: &RunRef,
    resolved: &args::ResolvedArgs,
    metric: &str,
    limit: Option<usize>,
) {
    let Some(template) = run.spec.metrics.iter().find(|m| m.name == metric) else {
        return;
    };
    let Ok(metric) = args::substitute_metric(template, resolved) else {
        return;
    };
    let Ok(provider) = providers.for_metric(&metric) else {
        return;
    };
    let outcome = match limit {
        Some(limit) => provider.garbage_collect(run_ref, &metric, limit).await,
        None => provider.finish(run_ref, &metric).await,
    };
    if let Err(e) = outcome {
        tracing::warn!(run = %run_ref.name, metric = %metric.name, error = %e, "cleaning up after measurements");
    }
}
