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
//!
//! Every metric is measured within the controller's [`AnalysisLimits`] ([`rules::bound_metric`]),
//! and no Secret value leaves a pass: the whole status it returns (messages, values, metadata)
//! and every log line it writes are redacted ([`ResolvedArgs::redact`]).

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice_analysis::{
    args::{self, ArgsError, ResolvedArgs, SecretSource},
    limits::AnalysisLimits,
    plan,
    rules::{self, RunRules},
};
use sluice_api::{AnalysisPhase, AnalysisRun, AnalysisRunStatus, vocab::ADJUSTED_METADATA_KEY};

use super::providers::{self, Providers, RunRef};

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

/// [`run_pass_within`] the default [`AnalysisLimits`].
pub async fn run_pass(
    run: &AnalysisRun,
    providers: &Providers,
    secrets: &(dyn SecretSource + Sync),
    rollout: Option<&serde_json::Value>,
) -> Pass {
    run_pass_within(run, providers, secrets, rollout, &AnalysisLimits::default()).await
}

/// Measures what is due for `run` and assesses it, each metric bounded by `limits`. Never
/// fails: problems become Error measurements or an Error run, except a Secret that could not
/// be read, which leaves the status as it was and asks to be retried in [`SECRET_RETRY`].
///
/// `rollout` is the Rollout's JSON when the controller has it (a `fieldRef` argument left in
/// the run is read from it).
pub async fn run_pass_within(
    run: &AnalysisRun,
    providers: &Providers,
    secrets: &(dyn SecretSource + Sync),
    rollout: Option<&serde_json::Value>,
    limits: &AnalysisLimits,
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
    let rules = match RunRules::within(&run.spec, limits) {
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
        let rules = rules.metric(&due.metric)?;
        let template = run.spec.metrics.iter().find(|m| m.name == due.metric);
        let attempt = plan::attempt(&status, &due.metric);
        let (resolved, run_ref) = (&resolved, &run_ref);
        Some(async move {
            // The rules refuse a name the spec does not hold as written; should one slip
            // through, an Error measurement keeps the plan moving (never a silent requeue).
            let substituted = match template {
                Some(template) => args::substitute_metric(template, resolved),
                None => Err(ArgsError::InvalidMetric {
                    metric: due.metric.clone(),
                    message: "no metric of this name in the run's spec".to_owned(),
                }),
            };
            let (measurement, mut metadata) = match substituted {
                Ok(mut metric) => {
                    rules::bound_metric(&mut metric, limits);
                    let m = providers.perform(run_ref, &metric, due.task, attempt).await;
                    (m, providers.metadata_of(&metric))
                }
                Err(e) => (
                    plan::error_measurement(e.to_string(), Timestamp::now()),
                    Default::default(),
                ),
            };
            if !rules.adjusted.is_empty() {
                metadata.insert(ADJUSTED_METADATA_KEY.to_owned(), rules.adjusted.join("; "));
            }
            // Cut after redaction, so a cut never leaves the start of a secret behind.
            let measurement = providers::bounded(
                redact_measurement(resolved, measurement),
                limits.max_value_bytes,
            );
            (rules, (measurement, metadata))
        })
    });
    for (rules, (measurement, metadata)) in join_all(work).await {
        // The message is logged here, redacted, rather than by the provider.
        tracing::debug!(
            run = %run_ref.name,
            metric = rules.name(),
            phase = ?measurement.phase,
            message = measurement.message.as_deref().unwrap_or_default(),
            "measured"
        );
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
    redact_status(&resolved, &mut status);
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
        let error = resolved.redact(&e.to_string());
        tracing::warn!(run = %run_ref.name, metric = %metric.name, %error, "cleaning up after measurements");
    }
}

/// A measurement with every Secret value masked: message, value and metadata.
fn redact_measurement(
    resolved: &ResolvedArgs,
    mut measurement: sluice_api::Measurement,
) -> sluice_api::Measurement {
    if !resolved.has_secrets() {
        return measurement;
    }
    let redact = |text: &mut String| *text = resolved.redact(text);
    if let Some(message) = measurement.message.as_mut() {
        redact(message);
    }
    if let Some(value) = measurement.value.as_mut() {
        redact(value);
    }
    measurement.metadata.values_mut().for_each(redact);
    measurement
}

/// The whole status with every Secret value masked, whatever put it there (a measurement, a
/// provider's metadata, a message built from them), so none reaches the API, an event or a log.
fn redact_status(resolved: &ResolvedArgs, status: &mut AnalysisRunStatus) {
    if !resolved.has_secrets() {
        return;
    }
    let redact = |text: &mut String| *text = resolved.redact(text);
    if let Some(message) = status.message.as_mut() {
        redact(message);
    }
    for result in &mut status.metric_results {
        if let Some(message) = result.message.as_mut() {
            redact(message);
        }
        result.metadata.values_mut().for_each(redact);
        let measurements = std::mem::take(&mut result.measurements);
        result.measurements = measurements
            .into_iter()
            .map(|m| redact_measurement(resolved, m))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{ByteString, api::core::v1::Secret};
    use serde_json::json;

    use super::*;
    use crate::analysis::evaluator::Evaluator;
    use sluice_analysis::args::NoSecrets;
    use sluice_api::{AnalysisRunSpec, Measurement, MetricResult};

    fn providers() -> Providers {
        Providers::new(
            None,
            &AnalysisLimits::default(),
            Evaluator::new(Default::default()),
        )
        .expect("providers")
    }

    fn run(spec: serde_json::Value) -> AnalysisRun {
        let spec: AnalysisRunSpec = serde_json::from_value(spec).expect("a run spec");
        AnalysisRun::new("run", spec)
    }

    const SECRET: &str = "p@ss w/rd\"1";

    fn secrets() -> BTreeMap<String, Secret> {
        let secret = Secret {
            data: Some([("token".to_owned(), ByteString(SECRET.as_bytes().to_vec()))].into()),
            ..Secret::default()
        };
        [("creds".to_owned(), secret)].into()
    }

    /// Whether any form of [`SECRET`] is in the text.
    fn betrays(text: &str) -> bool {
        let percent = "p%40ss%20w%2Frd%221";
        let partly = "p@ss%20w/rd%221";
        let json_escaped = "p@ss w/rd\\\"1";
        [SECRET, percent, partly, json_escaped]
            .iter()
            .any(|form| text.contains(form))
    }

    #[tokio::test]
    async fn a_placeholder_in_a_metric_name_ends_the_run_in_error() {
        let run = run(json!({
            "args": [{"name": "service", "value": "web"}],
            "metrics": [{
                "name": "rate-{{args.service}}", "interval": "1s",
                "provider": {"web": {"url": "http://127.0.0.1:1/"}},
            }],
        }));
        let pass = run_pass(&run, &providers(), &NoSecrets, None).await;
        assert_eq!(pass.status.phase, AnalysisPhase::Error);
        let message = pass.status.message.unwrap_or_default();
        assert!(message.contains("{{args.service}}"), "{message}");
        assert_eq!(pass.requeue_at, None, "an Error run is not requeued");
        assert!(pass.completed_now);
    }

    #[tokio::test]
    async fn no_secret_value_reaches_the_status_in_any_encoding() {
        let run = run(json!({
            "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
            "metrics": [{
                "name": "m",
                "provider": {"web": {"url": "http://127.0.0.1:1/q?key={{args.token}}"}},
            }],
        }));
        let pass = run_pass(&run, &providers(), &secrets(), None).await;
        let text = serde_json::to_string(&pass.status).expect("a status");
        let measurement = &pass.status.metric_results[0].measurements[0];
        assert_eq!(measurement.phase, AnalysisPhase::Error);
        let message = measurement.message.as_deref().unwrap_or_default();
        assert!(
            message.contains("*****"),
            "the URL is in the message: {message}"
        );
        assert!(!betrays(&text), "{text}");
    }

    #[test]
    fn a_whole_status_is_redacted() {
        let resolved = args::resolve_args(
            &serde_json::from_value::<Vec<sluice_api::Argument>>(json!([
                {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            ]))
            .expect("arguments"),
            &secrets(),
            None,
        )
        .expect("resolved");
        let leak = |prefix: &str| format!("{prefix} p%40ss%20w%2Frd%221 {}", json!(SECRET));
        let mut status = AnalysisRunStatus {
            message: Some(leak("run")),
            metric_results: vec![MetricResult {
                name: "m".into(),
                message: Some(leak("metric")),
                metadata: [("query".to_owned(), leak("metadata"))].into(),
                measurements: vec![Measurement {
                    message: Some(leak("message")),
                    value: Some(leak("value")),
                    metadata: [("job".to_owned(), leak("job"))].into(),
                    ..Measurement::default()
                }],
                ..MetricResult::default()
            }],
            ..AnalysisRunStatus::default()
        };
        assert!(betrays(&serde_json::to_string(&status).unwrap_or_default()));
        redact_status(&resolved, &mut status);
        let text = serde_json::to_string(&status).expect("a status");
        assert!(!betrays(&text), "{text}");
        assert_eq!(status.message.as_deref(), Some("run ***** \"*****\""));
    }

    #[tokio::test]
    async fn an_adjusted_interval_is_noted_in_the_metric_result() {
        let run = run(json!({
            "metrics": [{
                "name": "m", "interval": "0s",
                "provider": {"web": {"url": "http://127.0.0.1:1/"}},
            }],
        }));
        let pass = run_pass(&run, &providers(), &NoSecrets, None).await;
        let note = pass.status.metric_results[0]
            .metadata
            .get(ADJUSTED_METADATA_KEY)
            .cloned()
            .unwrap_or_default();
        assert!(note.contains("interval 0s raised to 1s"), "{note:?}");
    }
}
