//! The Experiment controller: ReplicaSets of an experiment's templates, its Services and its
//! AnalysisRuns, as [`sluice_plan::experiment::plan`] decides.
//!
//! Experiments are few and short-lived, so this controller caches nothing but the Experiments
//! themselves: what each one owns is read by name on each reconcile (a GET per template and per
//! analysis), and the ReplicaSets and runs wake it through metadata-only watches.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use futures::{FutureExt, StreamExt, TryStreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Service};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{
        DeleteParams, ObjectMeta, PartialObjectMeta, Patch, PatchParams, PostParams, Preconditions,
    },
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::{
        Controller, WatchStreamExt, controller::Action, events::EventType, reflector, watcher,
    },
};
use serde_json::json;
use sluice_analysis::args::{ArgsError, merge_args};
use sluice_api::{
    AnalysisRun, AnalysisRunSpec, AnalysisTemplateRef, Argument, Experiment, ExperimentStatus,
    vocab::{
        EXPERIMENT_ANALYSIS_LABEL, EXPERIMENT_NAME_ANNOTATION, INSTANCE_ID_LABEL,
        POD_TEMPLATE_HASH_LABEL, TERMINATED_BY_CONTROLLER, TERMINATED_LABEL,
    },
};
use sluice_plan::experiment::{
    ExperimentAction, ExperimentObserved, ExperimentPlan, ExperimentRunView, plan,
};
use tracing::{debug, warn};

use crate::{
    error::{Error, is_already_exists, is_conflict, is_not_found},
    events::Recorder,
    metrics::Metrics,
    rollout::apply::FIELD_MANAGER,
    runtime::{self, Key, Note, Retry, Scope, key_of, meta_of},
};

/// How long reconciles in flight may take to finish once a stop is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The `action` of the Experiment controller's events.
const ACTION: &str = "Experiment";

struct Context {
    client: Client,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    retry: Retry,
}

/// A watched experiment: the experiment, or what could be read of one the types cannot read.
type Guarded = DeserializeGuard<Experiment>;

/// Runs the Experiment controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    recorder: Recorder,
    scope: Scope,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let experiments: Api<Guarded> = scope.api(&client);
    let (sets, runs): (
        Api<PartialObjectMeta<ReplicaSet>>,
        Api<PartialObjectMeta<AnalysisRun>>,
    ) = (scope.api(&client), scope.api(&client));
    let context = Arc::new(Context {
        recorder,
        client,
        metrics,
        retry: Retry::default(),
    });
    let selector = scope.instance_selector();
    let shutdown = shutdown.shared();
    // Experiments through a reflector of our own, so a deletion drops the experiment's metric
    // series, and a new full list (after the watch was interrupted) drops those of experiments
    // deleted meanwhile.
    let (store, writer) = reflector::store::<Guarded>();
    let listed = store.clone();
    let forget = context.clone();
    let experiment_events = watcher(
        experiments,
        watcher::Config::default().any_semantic().labels(&selector),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching Experiments failed; retrying"))
    .reflect(writer)
    .inspect_ok(move |event| forget_gone(&forget.metrics, &forget.retry, &listed, event))
    .applied_objects();
    // Owned objects through their metadata only: a change to one wakes its experiment, which
    // then reads what it needs by name.
    let owned_sets = watcher(
        sets,
        watcher::Config::default()
            .any_semantic()
            .labels(POD_TEMPLATE_HASH_LABEL),
    )
    .default_backoff()
    .touched_objects();
    let owned_runs = watcher(
        runs,
        watcher::Config::default()
            .any_semantic()
            .labels(EXPERIMENT_ANALYSIS_LABEL),
    )
    .default_backoff()
    .touched_objects();
    let controller = Controller::for_stream(experiment_events, store)
        .owns_stream(owned_sets)
        .owns_stream(owned_runs)
        .with_config(scope.controller_config())
        .graceful_shutdown_on(shutdown.clone())
        .run(metered_reconcile, error_policy, context)
        .for_each(|_| future::ready(()));
    runtime::drain_within(
        "experiment controller",
        controller,
        shutdown,
        SHUTDOWN_GRACE,
    )
    .await;
    Ok(())
}

/// Drops what the controller keeps of the experiments `event` shows gone: deleted, or missing
/// from a new full list (deleted while the watch was interrupted); `listed` is the reflector's
/// store, which holds the new list by the time its `InitDone` comes.
fn forget_gone(
    metrics: &Metrics,
    retry: &Retry,
    listed: &reflector::Store<Guarded>,
    event: &watcher::Event<Guarded>,
) {
    match event {
        watcher::Event::Delete(experiment) => {
            let (namespace, name) = key_of(meta_of(experiment));
            metrics.forget_experiment(&namespace, &name);
            retry.succeeded(&(namespace, name));
        }
        watcher::Event::InitDone => {
            let present: BTreeSet<Key> = listed
                .state()
                .iter()
                .map(|experiment| key_of(meta_of(experiment)))
                .collect();
            metrics.retain_experiments(|namespace, name| {
                present.contains(&(namespace.to_owned(), name.to_owned()))
            });
        }
        _ => {}
    }
}

/// [`reconcile`], timed in `experiment_reconcile` and with the API requests it made recorded in
/// `sluice_reconcile_kube_requests`.
async fn metered_reconcile(experiment: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let shared = ctx.clone();
    let key = key_of(meta_of(&experiment));
    let _timer = ctx.metrics.experiment_reconcile_timer(&key.0, &key.1);
    let (result, requests) = crate::client::counting_requests(async move {
        match &experiment.0 {
            Ok(readable) => reconcile(readable, &ctx).await,
            Err(invalid) => unreadable(invalid, &ctx).await,
        }
    })
    .await;
    shared.metrics.reconcile_requests("experiment", requests);
    if result.is_ok() {
        shared.retry.succeeded(&key);
    }
    result
}

/// An experiment the types cannot read: an Error phase and a Warning event say why.
async fn unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = key_of(&invalid.metadata);
    let message = runtime::unreadable_message::<Experiment>(invalid);
    let api: Api<Guarded> = Api::namespaced(ctx.client.clone(), &namespace);
    let status = json!({ "status": { "phase": "Error", "message": message } });
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(source) => return Err(status_write(&name, source)),
    }
    ctx.metrics.set_experiment(&namespace, &name, "Error");
    runtime::report_unreadable::<Experiment>(&ctx.recorder, invalid, ACTION).await;
    Ok(Action::await_change())
}

async fn reconcile(experiment: &Experiment, ctx: &Context) -> Result<Action, Error> {
    if experiment.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let observed = observe(experiment, &ctx.client).await?;
    let decided = plan(experiment, &observed, Timestamp::now());
    apply(experiment, &decided, ctx).await?;
    let before = experiment.status.clone().unwrap_or_default();
    if decided.status != before {
        write_status(experiment, &decided.status, &ctx.client).await?;
    }
    let phase = decided
        .status
        .phase
        .map_or_else(String::new, |p| format!("{p:?}"));
    ctx.metrics.set_experiment(
        &experiment.namespace().unwrap_or_default(),
        &experiment.name_any(),
        &phase,
    );
    for event in &decided.events {
        let type_ = match event.type_ {
            sluice_plan::EventType::Normal => EventType::Normal,
            sluice_plan::EventType::Warning => EventType::Warning,
        };
        let note = Note {
            type_,
            reason: event.reason,
            message: &event.message,
            action: ACTION,
        };
        runtime::publish(&ctx.recorder, &experiment.object_ref(&()), note).await;
    }
    Ok(match decided.requeue_after {
        Some(after) => Action::requeue(after.max(Duration::from_millis(200))),
        None => Action::await_change(),
    })
}

/// The ReplicaSet, Service and run names an experiment's objects have.
fn set_name(experiment: &str, template: &str) -> String {
    format!("{experiment}-{template}")
}

/// What the cluster holds for `experiment`: its objects, each read by name and kept only when
/// the experiment controls it; and, while its runs are still to be created, whether each
/// analysis's templates can be found.
async fn observe(experiment: &Experiment, client: &Client) -> Result<ExperimentObserved, Error> {
    let namespace = experiment.namespace().unwrap_or_default();
    let name = experiment.name_any();
    let uid = experiment.uid().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
    let mut observed = ExperimentObserved::default();
    for template in &experiment.spec.templates {
        let set = set_name(&name, &template.name);
        let got = sets.get_opt(&set).await.map_err(|e| read_error(&set, e))?;
        if let Some(found) = got.filter(|s| controlled_by(s.owner_references(), &uid)) {
            observed.replica_sets.insert(template.name.clone(), found);
        }
        if let Some(service) = &template.service {
            let service_name = service
                .name
                .clone()
                .unwrap_or_else(|| set_name(&name, &template.name));
            let got = services
                .get_opt(&service_name)
                .await
                .map_err(|e| read_error(&service_name, e))?;
            if got.is_some_and(|s| controlled_by(s.owner_references(), &uid)) {
                observed
                    .services
                    .insert(template.name.clone(), service_name);
            }
        }
    }
    for analysis in &experiment.spec.analyses {
        let run = set_name(&name, &analysis.name);
        let got = runs.get_opt(&run).await.map_err(|e| read_error(&run, e))?;
        match got.filter(|r| controlled_by(r.owner_references(), &uid)) {
            Some(found) => {
                observed
                    .runs
                    .insert(analysis.name.clone(), ExperimentRunView::of(&found));
            }
            None if !experiment_completed(experiment) => {
                let refs = [template_ref(analysis)];
                if let Err(problem) =
                    crate::analysis::templates::read_merged(client, &namespace, &refs).await?
                {
                    observed
                        .analysis_problems
                        .push(format!("analysis {}: {problem}", analysis.name));
                }
            }
            None => {}
        }
    }
    Ok(observed)
}

/// Whether the experiment's recorded phase is final.
fn experiment_completed(experiment: &Experiment) -> bool {
    experiment
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_completed())
}

/// The template reference of an experiment's analysis.
fn template_ref(analysis: &sluice_api::ExperimentAnalysisTemplateRef) -> AnalysisTemplateRef {
    AnalysisTemplateRef {
        template_name: analysis.template_name.clone(),
        cluster_scope: analysis.cluster_scope,
    }
}

/// Carries out the plan's actions, each idempotent.
async fn apply(
    experiment: &Experiment,
    decided: &ExperimentPlan,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = experiment.namespace().unwrap_or_default();
    let client = &ctx.client;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let patch_params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    for action in &decided.actions {
        debug!(experiment = experiment.name_any(), ?action, "applying");
        match action {
            ExperimentAction::CreateReplicaSet(set) => {
                let name = set.name_any();
                match sets.create(&post, set).await {
                    Ok(_) => {}
                    Err(e) if is_already_exists(&e) => {}
                    Err(source) => {
                        return Err(write_error(format!("creating ReplicaSet {name}"), source));
                    }
                }
            }
            ExperimentAction::ScaleReplicaSet { name, to, .. } => {
                let patch = json!({ "spec": { "replicas": to } });
                match sets.patch(name, &patch_params, &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(source) => {
                        return Err(write_error(
                            format!("scaling ReplicaSet {name} to {to}"),
                            source,
                        ));
                    }
                }
            }
            ExperimentAction::CreateService(service) => {
                let name = service.name_any();
                match services.create(&post, service).await {
                    Ok(_) => {}
                    Err(e) if is_already_exists(&e) => {}
                    Err(source) => {
                        return Err(write_error(format!("creating Service {name}"), source));
                    }
                }
            }
            ExperimentAction::DeleteService { name } => {
                // Only the Service this experiment controls, and that very one (a Service of the
                // same name created since is someone else's).
                let found = services
                    .get_opt(name)
                    .await
                    .map_err(|e| read_error(name, e))?;
                let Some(found) = found.filter(|s| {
                    controlled_by(s.owner_references(), &experiment.uid().unwrap_or_default())
                }) else {
                    continue;
                };
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: found.uid(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match services.delete(name, &params).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(source) => {
                        return Err(write_error(format!("deleting Service {name}"), source));
                    }
                }
            }
            ExperimentAction::CreateAnalysisRun { name, analysis } => {
                create_run(experiment, &decided.status, name, *analysis, ctx).await?;
            }
            ExperimentAction::TerminateAnalysisRun { name } => {
                // Marked as the controller's doing: such a run is never evidence of a pass.
                let patch = json!({
                    "metadata": { "labels": { TERMINATED_LABEL: TERMINATED_BY_CONTROLLER } },
                    "spec": { "terminate": true },
                });
                match runs.patch(name, &patch_params, &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(source) => {
                        return Err(write_error(
                            format!("terminating AnalysisRun {name}"),
                            source,
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Creates the run of the experiment's analysis number `index`: its templates merged, the
/// experiment's arguments (with `{{templates.NAME.podTemplateHash}}` replaced by that template's
/// hash) merged in. Templates that cannot make a run still give one, in Error, saying why, so
/// the experiment reports it.
async fn create_run(
    experiment: &Experiment,
    status: &ExperimentStatus,
    name: &str,
    index: usize,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(analysis) = experiment.spec.analyses.get(index) else {
        return Ok(());
    };
    let namespace = experiment.namespace().unwrap_or_default();
    let merged =
        crate::analysis::templates::read_merged(&ctx.client, &namespace, &[template_ref(analysis)])
            .await?;
    let hashes: BTreeMap<&str, &str> = status
        .template_statuses
        .iter()
        .filter_map(|t| Some((t.name.as_str(), t.pod_template_hash.as_deref()?)))
        .collect();
    let resolved = merged.and_then(|template| {
        let incoming: Vec<Argument> = analysis
            .args
            .iter()
            .map(|arg| Argument {
                value: arg
                    .value
                    .as_deref()
                    .map(|v| with_template_hashes(v, &hashes)),
                ..arg.clone()
            })
            .collect();
        Ok::<_, ArgsError>(AnalysisRunSpec {
            args: merge_args(&incoming, &template.args)?,
            metrics: template.metrics.clone(),
            dry_run: [experiment.spec.dry_run.clone(), template.dry_run.clone()].concat(),
            measurement_retention: [
                experiment.spec.measurement_retention.clone(),
                template.measurement_retention.clone(),
            ]
            .concat(),
            terminate: None,
            ttl_strategy: None,
        })
    });
    let (spec, error) = match resolved {
        Ok(spec) => (spec, None),
        Err(e) => (AnalysisRunSpec::default(), Some(e.to_string())),
    };
    let mut labels =
        BTreeMap::from([(EXPERIMENT_ANALYSIS_LABEL.to_string(), analysis.name.clone())]);
    if let Some(id) = experiment.labels().get(INSTANCE_ID_LABEL) {
        labels.insert(INSTANCE_ID_LABEL.to_string(), id.clone());
    }
    let mut annotations = BTreeMap::from([(
        EXPERIMENT_NAME_ANNOTATION.to_string(),
        experiment.name_any(),
    )]);
    if let Some(extra) = experiment.spec.analysis_run_metadata.as_ref() {
        // Sluice's own keys win: they are how the experiment finds its runs.
        for (key, value) in &extra.labels {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
        for (key, value) in &extra.annotations {
            annotations
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    let run = AnalysisRun {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: experiment.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match runs.create(&post, &run).await {
        Ok(_) => {}
        // Created by an earlier attempt whose status write did not land; `observe` reads it.
        Err(e) if is_already_exists(&e) => return Ok(()),
        Err(source) => return Err(write_error(format!("creating AnalysisRun {name}"), source)),
    }
    if let Some(message) = error {
        crate::rollout::apply::report_unrunnable(&runs, name, &message).await?;
    }
    Ok(())
}

/// `value` with every `{{templates.NAME.podTemplateHash}}` replaced by that template's hash;
/// an unknown template's placeholder is left as written (the run then measures it literally
/// and the user sees it in the run's arguments).
fn with_template_hashes(value: &str, hashes: &BTreeMap<&str, &str>) -> String {
    let mut out = value.to_string();
    for (template, hash) in hashes {
        for spaced in [
            format!("{{{{templates.{template}.podTemplateHash}}}}"),
            format!("{{{{ templates.{template}.podTemplateHash }}}}"),
        ] {
            out = out.replace(&spaced, hash);
        }
    }
    out
}

/// Writes the status (a merge patch of the status subresource: only Sluice writes it).
async fn write_status(
    experiment: &Experiment,
    status: &ExperimentStatus,
    client: &Client,
) -> Result<(), Error> {
    let name = experiment.name_any();
    let api: Api<Experiment> =
        Api::namespaced(client.clone(), &experiment.namespace().unwrap_or_default());
    let mut updated = experiment.clone();
    updated.status = Some(status.clone());
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        // Changed meanwhile: the watch brings the new version and the plan runs again.
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
        Err(source) => Err(status_write(&name, source)),
    }
}

/// Whether the owner references name `uid` as the controller.
fn controlled_by(
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    uid: &str,
) -> bool {
    owners
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

fn write_error(action: String, source: kube::Error) -> Error {
    Error::Write { action, source }
}

fn read_error(name: &str, source: kube::Error) -> Error {
    Error::Write {
        action: format!("reading {name}"),
        source,
    }
}

fn status_write(experiment: &str, source: kube::Error) -> Error {
    Error::Write {
        action: format!("writing the status of Experiment {experiment}"),
        source,
    }
}

fn error_policy(experiment: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let (namespace, name): Key = key_of(meta_of(&experiment));
    ctx.metrics
        .experiment_reconcile_error(&namespace, &name, error.reason());
    let delay = ctx.retry.after((namespace.clone(), name.clone()), error);
    warn!(namespace, experiment = name, reason = error.reason(), retry_in = ?delay, error = %error, "experiment reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(name: &str) -> Guarded {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Experiment",
            "metadata": { "name": name, "namespace": "shop" },
            "spec": { "templates": [] },
        }))
        .expect("a guard reads any object")
    }

    #[test]
    fn a_deleted_experiment_and_one_missing_from_a_relist_lose_their_metric_series() {
        let metrics = Metrics::new();
        let retry = Retry::default();
        let (store, mut writer) = reflector::store::<Guarded>();
        let mut see = |event: watcher::Event<Guarded>| {
            writer.apply_watcher_event(&event);
            forget_gone(&metrics, &retry, &store, &event);
        };
        for name in ["kept", "deleted", "gone"] {
            metrics.set_experiment("shop", name, "Running");
        }
        see(watcher::Event::Init);
        for name in ["kept", "deleted", "gone"] {
            see(watcher::Event::InitApply(experiment(name)));
        }
        see(watcher::Event::InitDone);
        see(watcher::Event::Delete(experiment("deleted")));
        let text = metrics.encode();
        assert!(!text.contains(r#"name="deleted""#), "{text}");
        assert!(text.contains(r#"name="gone""#), "{text}");
        // The watch restarts; "gone" was deleted meanwhile, so no delete event ever comes.
        see(watcher::Event::Init);
        see(watcher::Event::InitApply(experiment("kept")));
        see(watcher::Event::InitDone);
        let text = metrics.encode();
        assert!(
            text.contains(r#"experiment_info{namespace="shop",name="kept",phase="Running"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"name="gone""#), "{text}");
    }

    #[test]
    fn template_hash_placeholders_become_the_hashes_of_those_templates() {
        let hashes = BTreeMap::from([("baseline", "5d8f"), ("canary", "77c4")]);
        assert_eq!(
            with_template_hashes(
                "rollouts_pod_template_hash=\"{{templates.baseline.podTemplateHash}}\",other=\"{{ templates.canary.podTemplateHash }}\"",
                &hashes
            ),
            "rollouts_pod_template_hash=\"5d8f\",other=\"77c4\""
        );
        assert_eq!(
            with_template_hashes("{{templates.gone.podTemplateHash}}", &hashes),
            "{{templates.gone.podTemplateHash}}"
        );
    }
}
