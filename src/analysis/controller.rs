//! The AnalysisRun controller: watches runs (and the Jobs they own), takes one [`run_pass`] per
//! reconcile, writes the status when it changed, and requeues exactly when the next measurement
//! is due. A completed run with nothing in flight costs nothing: it is not requeued, and only a
//! change to it wakes it again.
//!
//! No run can take the controller down: runs are watched through `DeserializeGuard`, so one
//! that the types cannot read is reported (a Warning event, its status Error) instead of
//! failing every list of runs; a run's reconcile errors and series are its own
//! (`analysis_run_*`), dropped when it is deleted; and a stop gives the passes in flight
//! [`SHUTDOWN_GRACE`], then drops them unwritten (the next leader measures again).

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, TryStreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::{
        Controller, WatchStreamExt, controller::Action, events::EventType, reflector, watcher,
    },
};
use sluice_analysis::{args::secret_names, limits::AnalysisLimits};
use sluice_api::{AnalysisPhase, AnalysisRun, AnalysisRunStatus, vocab::RUN_UID_LABEL};
use tracing::{info, warn};

use super::{evaluator::Evaluator, pass::run_pass_within, providers::Providers};
use crate::{
    error::{Error, is_conflict, is_not_found},
    events::Recorder,
    metrics::{Metrics, RunMetric},
    runtime::{self, Key, Note, Retry, Scope, key_of, meta_of},
};

/// What the AnalysisRun controller watches, and the bounds of what it measures.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Which runs, and how many at once: the same settings as the Rollout controller's.
    pub scope: Scope,
    /// The bounds of every measurement and evaluation.
    pub limits: AnalysisLimits,
}

struct Context {
    client: Client,
    providers: Providers,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    limits: AnalysisLimits,
    /// When to try a failed pass again, per run.
    retry: Retry,
}

/// A watched run: the run, or what could be read of one the types cannot read.
type Guarded = DeserializeGuard<AnalysisRun>;

/// Runs the AnalysisRun controller until `shutdown` resolves; passes in flight then get
/// [`SHUTDOWN_GRACE`] to finish and are dropped after it, their results unwritten.
pub async fn run(
    client: Client,
    recorder: Recorder,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let (runs, jobs): (Api<Guarded>, Api<Job>) =
        (config.scope.api(&client), config.scope.api(&client));
    let evaluator = Evaluator::new(config.limits.condition.clone());
    let providers = Providers::new(Some(client.clone()), &config.limits, evaluator)
        .map_err(|e| anyhow::anyhow!("building the metric providers: {e}"))?;
    let context = Arc::new(Context {
        recorder,
        client,
        providers,
        metrics,
        limits: config.limits.clone(),
        retry: Retry::default(),
    });
    // Runs through a reflector of our own, so a deletion drops the run's metric series, and a
    // new full list (after the watch was interrupted) drops those of runs deleted meanwhile.
    let (store, writer) = reflector::store::<Guarded>();
    let listed = store.clone();
    let forget = context.clone();
    let selector = config.scope.instance_selector();
    let events = watcher(
        runs,
        watcher::Config::default().any_semantic().labels(&selector),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching AnalysisRuns failed; retrying"))
    .modify(crate::runtime::trim)
    .reflect(writer)
    .inspect_ok(move |event| match event {
        watcher::Event::Delete(run) => {
            let (namespace, name) = key_of(meta_of(run));
            forget.metrics.forget_analysis_run(&namespace, &name);
            forget.retry.succeeded(&(namespace, name));
        }
        watcher::Event::InitDone => {
            // The reflector has swapped the new list in by now.
            let present: std::collections::BTreeSet<(String, String)> = listed
                .state()
                .iter()
                .map(|run| key_of(meta_of(run)))
                .collect();
            forget.metrics.retain_analysis_runs(|namespace, name| {
                present.contains(&(namespace.to_owned(), name.to_owned()))
            });
        }
        _ => {}
    })
    .applied_objects();
    let shutdown = shutdown.shared();
    let controller = Controller::for_stream(events, store)
        // Only the Jobs runs create (labelled with the run's uid), never every Job.
        .owns(jobs, watcher::Config::default().labels(RUN_UID_LABEL))
        .with_config(config.scope.controller_config())
        .graceful_shutdown_on(shutdown.clone())
        .run(metered_reconcile, error_policy, context)
        .for_each(|_| future::ready(()));
    crate::runtime::drain_within("analysis controller", controller, shutdown, SHUTDOWN_GRACE).await;
    Ok(())
}

/// How long in-flight passes may take to finish once a stop is asked for; a measurement still
/// waiting then (a web metric's long timeout) is dropped, so the process ends well within a
/// pod's termination grace period.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// [`reconcile`], timed in `analysis_run_reconcile` and with the API requests it made recorded
/// in `sluice_reconcile_kube_requests`.
async fn metered_reconcile(run: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let shared = ctx.clone();
    let key = key_of(meta_of(&run));
    let _timer = ctx.metrics.analysis_run_reconcile_timer(&key.0, &key.1);
    let (result, requests) = crate::client::counting_requests(async move {
        match &run.0 {
            Ok(readable) => reconcile(readable, ctx).await,
            Err(invalid) => unreadable(invalid, &ctx).await,
        }
    })
    .await;
    shared.metrics.reconcile_requests("analysisrun", requests);
    if result.is_ok() {
        shared.retry.succeeded(&key);
    }
    result
}

/// A run the types cannot read (a field of the wrong type, a duration that is not one): a
/// Warning event and an Error status say why, once per change of the run; nothing else waits
/// on it.
async fn unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = key_of(&invalid.metadata);
    let message = runtime::unreadable_message::<AnalysisRun>(invalid);
    let api: Api<Guarded> = Api::namespaced(ctx.client.clone(), &namespace);
    let status = serde_json::json!({ "status": { "phase": "Error", "message": message } });
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(source) => return Err(status_write(&name, source)),
    }
    runtime::report_unreadable::<AnalysisRun>(&ctx.recorder, invalid, ACTION).await;
    Ok(Action::await_change())
}

async fn reconcile(run: &AnalysisRun, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let before = run.status.clone().unwrap_or_default();
    record_metrics(&ctx.metrics, run, &before);
    if before.phase.is_completed()
        && sluice_analysis::plan::settled(&before)
        && run.metadata.deletion_timestamp.is_none()
    {
        // Nothing in flight and nothing will be due: no work until the run changes, or until
        // its ttlStrategy says it is to be deleted.
        return expire(run, &ctx, &before).await;
    }

    // Secrets are read only for runs whose arguments name them, once per pass.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut fetched: BTreeMap<String, Result<Option<Secret>, String>> = BTreeMap::new();
    for secret in secret_names(&run.spec.args) {
        let got = secrets.get_opt(secret).await;
        let got = got.map_err(|source| Error::Secret {
            name: secret.to_string(),
            run: name.clone(),
            source,
        });
        fetched.insert(secret.to_string(), got.map_err(|e| e.to_string()));
    }
    let source = |secret: &str| fetched.get(secret).cloned().unwrap_or(Ok(None));

    let pass = run_pass_within(run, &ctx.providers, &source, None, &ctx.limits).await;
    if pass.status != before {
        let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
        let mut updated = run.clone();
        updated.status = Some(pass.status.clone());
        let result = api
            .replace_status(&name, &PostParams::default(), &updated)
            .await;
        match result {
            Ok(_) => {}
            // Changed meanwhile (terminated, deleted): the watch brings the new version.
            Err(e) if is_conflict(&e) || is_not_found(&e) => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(source) => return Err(status_write(&name, source)),
        }
        record_metrics(&ctx.metrics, run, &pass.status);
    }
    if pass.completed_now {
        let phase = pass.status.phase;
        let type_ = if matches!(phase, AnalysisPhase::Failed | AnalysisPhase::Error) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let reason = format!("AnalysisRun{phase:?}");
        let completed = format!("AnalysisRun completed {phase:?}");
        let note = Note {
            type_,
            reason: &reason,
            message: pass.status.message.as_deref().unwrap_or(&completed),
            action: ACTION,
        };
        runtime::publish(&ctx.recorder, &run.object_ref(&()), note).await;
    }
    if pass.status.phase.is_completed() && pass.requeue_at.is_none() {
        return expire(run, &ctx, &pass.status).await;
    }
    Ok(match pass.requeue_at {
        Some(at) => Action::requeue(requeue_after(at, Timestamp::now(), &ctx.limits)),
        None => Action::await_change(),
    })
}

/// A completed run's `ttlStrategy`: deleted once its TTL has passed, else looked at again then.
/// A run a Rollout owns is left to the Rollout (its history limits delete it, and deleting one
/// whose verdict the Rollout has not read yet would make it start the analysis again).
async fn expire(
    run: &AnalysisRun,
    ctx: &Context,
    status: &sluice_api::AnalysisRunStatus,
) -> Result<Action, Error> {
    let owned_by_rollout = run
        .owner_references()
        .iter()
        .any(|o| o.kind == "Rollout" && o.api_version.starts_with("argoproj.io/"));
    let Some(at) = sluice_analysis::plan::expires_at(&run.spec, status) else {
        return Ok(Action::await_change());
    };
    if owned_by_rollout {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    if at > now {
        return Ok(Action::requeue(requeue_after(at, now, &ctx.limits)));
    }
    let (namespace, name) = (run.namespace().unwrap_or_default(), run.name_any());
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = DeleteParams {
        // This run, not one created since under the same name.
        preconditions: Some(Preconditions {
            uid: run.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            info!(namespace, run = name, phase = ?status.phase, "deleted: its ttlStrategy has passed");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(Action::await_change()),
        Err(source) => Err(Error::Write {
            action: format!("deleting AnalysisRun {name} after its ttlStrategy"),
            source,
        }),
    }
}

/// The wait before looking at a run again that wants to be looked at `at`: exactly then, or,
/// when that is already past (a provider that left a measurement in flight without a future
/// `resumeAt`), the shortest interval, so that nothing can make a hot loop.
fn requeue_after(at: Timestamp, now: Timestamp, limits: &AnalysisLimits) -> Duration {
    let floor = Duration::from_millis(100);
    let wait = at.duration_since(now);
    if wait.is_positive() {
        wait.unsigned_abs().max(floor)
    } else {
        limits.min_interval.max(floor)
    }
}

/// `analysis_run_info`, `analysis_run_metric_type` and `analysis_run_metric_phase` for a run.
fn record_metrics(metrics: &Metrics, run: &AnalysisRun, status: &AnalysisRunStatus) {
    let phase_of = |metric: &str| {
        status
            .metric_results
            .iter()
            .find(|r| r.name == metric)
            .map_or(AnalysisPhase::Pending, |r| r.phase)
    };
    let dry_run = crate::metrics::dry_run_metrics(&run.spec);
    let series = run
        .spec
        .metrics
        .iter()
        .map(|m| RunMetric {
            name: m.name.clone(),
            type_: crate::metrics::provider_type(&m.provider),
            dry_run: dry_run.contains(m.name.as_str()),
            phase: format!("{:?}", phase_of(&m.name)),
        })
        .collect();
    metrics.set_analysis_run(
        &run.namespace().unwrap_or_default(),
        &run.name_any(),
        &format!("{:?}", status.phase),
        series,
    );
}

/// The `action` of the AnalysisRun controller's events.
const ACTION: &str = "Analyse";

/// The error of a run's status write the API refused.
fn status_write(run: &str, source: kube::Error) -> Error {
    Error::Write {
        action: format!("writing the status of AnalysisRun {run}"),
        source,
    }
}

fn error_policy(run: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let (namespace, name): Key = key_of(meta_of(&run));
    ctx.metrics
        .analysis_run_reconcile_error(&namespace, &name, error.reason());
    let delay = ctx.retry.after((namespace.clone(), name.clone()), error);
    warn!(namespace, run = name, reason = error.reason(), retry_in = ?delay, error = %error, "analysis pass failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_due_in_the_past_is_not_looked_at_in_a_loop() {
        let limits = AnalysisLimits::default();
        let now = Timestamp::from_second(1_700_000_000).expect("a time");
        let at = |ms: i64| {
            now.checked_add(jiff::SignedDuration::from_millis(ms))
                .expect("a time")
        };
        assert_eq!(
            requeue_after(at(2500), now, &limits),
            Duration::from_millis(2500)
        );
        assert_eq!(
            requeue_after(at(10), now, &limits),
            Duration::from_millis(100)
        );
        for past in [0, -10, -5000] {
            assert_eq!(
                requeue_after(at(past), now, &limits),
                limits.min_interval,
                "{past}"
            );
        }
    }
}
