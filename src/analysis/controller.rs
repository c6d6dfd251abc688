//! The AnalysisRun controller: watches runs (and the Jobs they own), takes one [`run_pass`] per
//! reconcile, writes the status when it changed, and requeues exactly when the next measurement
//! is due. A completed run with nothing in flight costs nothing: it is not requeued, and only a
//! change to it wakes it again.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, TryStreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::PostParams,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{Event, EventType, Recorder, Reporter},
        reflector, watcher,
    },
};
use tracing::{info, warn};

use super::{
    args::secret_names,
    evaluator::Evaluator,
    limits::AnalysisLimits,
    pass::run_pass,
    providers::{Providers, job::RUN_UID_LABEL, key},
};
use crate::{
    api::{AnalysisPhase, AnalysisRun, AnalysisRunStatus, INSTANCE_ID_LABEL},
    error::is_not_found,
    metrics::Metrics,
};

/// What the AnalysisRun controller watches.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Only this namespace; every namespace when `None`.
    pub namespace: Option<String>,
    /// Runs reconciled at once.
    pub concurrency: u16,
    /// Only runs labelled with this controller instance id (and, without one, only unlabelled
    /// runs), as for Rollouts, so two installations never measure the same run.
    pub instance_id: Option<String>,
    /// The bounds of every measurement and evaluation.
    pub limits: AnalysisLimits,
}

struct Context {
    client: Client,
    providers: Providers,
    metrics: Arc<Metrics>,
    recorder: Recorder,
}

/// Runs the AnalysisRun controller until `shutdown` resolves; in-flight passes finish first.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let (runs, jobs): (Api<AnalysisRun>, Api<Job>) = match config.namespace.as_deref() {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let evaluator = Evaluator::new(config.limits.condition.clone());
    let providers = Providers::new(Some(client.clone()), &config.limits, evaluator)
        .map_err(|e| anyhow::anyhow!("building the metric providers: {e}"))?;
    let reporter = Reporter {
        controller: "sluice".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        providers,
        metrics,
    });
    // Runs through a reflector of our own, so a deletion drops the run's metric series.
    let (store, writer) = reflector::store::<AnalysisRun>();
    let forget = context.metrics.clone();
    let selector = match config.instance_id.as_deref() {
        Some(id) => format!("{INSTANCE_ID_LABEL}={id}"),
        None => format!("!{INSTANCE_ID_LABEL}"),
    };
    let events = watcher(
        runs,
        watcher::Config::default().any_semantic().labels(&selector),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching AnalysisRuns failed; retrying"))
    .modify(crate::rollout::trim)
    .reflect(writer)
    .inspect_ok(move |event| {
        if let watcher::Event::Delete(run) = event {
            forget.forget_analysis_run(&run.namespace().unwrap_or_default(), &run.name_any());
        }
    })
    .applied_objects();
    let shutdown = shutdown.shared();
    let controller = Controller::for_stream(events, store)
        // Only the Jobs runs create (labelled with the run's uid), never every Job.
        .owns(jobs, watcher::Config::default().labels(RUN_UID_LABEL))
        .with_config(controller::Config::default().concurrency(config.concurrency.max(1)))
        .graceful_shutdown_on(shutdown.clone())
        .run(metered_reconcile, error_policy, context)
        .for_each(|_| future::ready(()));
    // A stop that comes before the first list of runs is in would leave kube-runtime waiting
    // for a cache nobody fills any more: in-flight passes get a grace period, then it is over.
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controller => info!("analysis controller stopped"),
        () = deadline => warn!("analysis controller stopped after {SHUTDOWN_GRACE:?} of grace"),
    }
    Ok(())
}

/// How long in-flight passes may take to finish once a stop is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a pass could not be written.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("reading Secret {name} for AnalysisRun {run}: {source}")]
    Secret {
        name: String,
        run: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of AnalysisRun {run}: {source}")]
    Status {
        run: String,
        #[source]
        source: kube::Error,
    },
}

/// [`reconcile`], with the API requests it made recorded in `sluice_reconcile_kube_requests`.
async fn metered_reconcile(run: Arc<AnalysisRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let metrics = ctx.metrics.clone();
    let (result, requests) = crate::client::counting_requests(reconcile(run, ctx)).await;
    metrics.reconcile_requests("analysisrun", requests);
    result
}

async fn reconcile(run: Arc<AnalysisRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let before = run.status.clone().unwrap_or_default();
    record_metrics(&ctx.metrics, &run, &before);
    if before.phase.is_completed()
        && super::plan::settled(&before)
        && run.metadata.deletion_timestamp.is_none()
    {
        // Nothing in flight and nothing will be due: no work until the run changes.
        return Ok(Action::await_change());
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

    let pass = run_pass(&run, &ctx.providers, &source, None).await;
    if pass.status != before {
        let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
        let mut updated = (*run).clone();
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
            Err(source) => return Err(Error::Status { run: name, source }),
        }
        record_metrics(&ctx.metrics, &run, &pass.status);
    }
    if pass.completed_now {
        let phase = pass.status.phase;
        let type_ = if matches!(phase, AnalysisPhase::Failed | AnalysisPhase::Error) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let event = Event {
            type_,
            reason: format!("AnalysisRun{phase:?}"),
            note: pass
                .status
                .message
                .clone()
                .or_else(|| Some(format!("AnalysisRun completed {phase:?}"))),
            action: "Analyse".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &run.object_ref(&())).await {
            warn!(run = %name, error = %e, "recording an event failed");
        }
    }
    Ok(match pass.requeue_at {
        Some(at) => Action::requeue(
            at.duration_since(Timestamp::now())
                .unsigned_abs()
                .max(Duration::from_millis(100)),
        ),
        None => Action::await_change(),
    })
}

/// `analysis_run_info` and `analysis_run_metric_phase` for a run.
fn record_metrics(metrics: &Metrics, run: &AnalysisRun, status: &AnalysisRunStatus) {
    let phase_of = |metric: &str| {
        status
            .metric_results
            .iter()
            .find(|r| r.name == metric)
            .map_or(AnalysisPhase::Pending, |r| r.phase)
    };
    let series = run
        .spec
        .metrics
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                key(&m.provider).to_string(),
                format!("{:?}", phase_of(&m.name)),
            )
        })
        .collect();
    metrics.set_analysis_run(
        &run.namespace().unwrap_or_default(),
        &run.name_any(),
        &format!("{:?}", status.phase),
        series,
    );
}

fn error_policy(run: Arc<AnalysisRun>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(run = %run.name_any(), error = %error, "analysis pass failed; retrying");
    ctx.metrics.reconcile_error(
        &run.namespace().unwrap_or_default(),
        &run.name_any(),
        "AnalysisRunFailed",
    );
    Action::requeue(Duration::from_secs(5))
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}
