//! The Rollout controller: reconcile = observe -> plan -> apply -> status.
//!
//! Watched: Rollouts (read through a `DeserializeGuard`, so one malformed object never stops
//! the watch), the ReplicaSets that carry a pod-template-hash label, and Services (a Service
//! change wakes the rollouts that name it). The caches keep projections of them ([`cache`]):
//! what the controller reads, not the typed objects.

pub mod apply;
pub mod cache;
pub mod observe;
pub mod routers;

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, TryStreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, Resource, ResourceExt,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{
        Controller, PredicateConfig, WatchStreamExt,
        controller::Action as Requeue,
        events::EventType as KubeEventType,
        predicates,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use sluice_api::{
    AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Experiment, Rollout,
    vocab::{POD_TEMPLATE_HASH_LABEL, ROLLOUT_TYPE_LABEL, reason},
};
use sluice_plan::EventType;

use self::{
    cache::{CachedRollout, CachedService, CachedSet, SetCache},
    observe::{Caches, OwnWrites, observe},
};
use crate::{
    error::Error,
    events::Recorder,
    metrics::{self, Metrics},
    notify::Notifier,
    runtime::{self, Key, Note, Retry, Scope, trim},
    server::Health,
};

/// Settings of the Rollout controller that come from the command line: its [`Scope`].
pub type Config = Scope;

/// What every reconcile shares.
struct Context {
    client: Client,
    /// Which caches hold their first full list ([`Filled::ALL`] when all do).
    caches_filled: watch::Receiver<u8>,
    caches: Caches,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Status writes the Rollout cache may not show yet.
    own_writes: Arc<OwnWrites>,
    /// Count-only status changes waiting for the next write.
    lagging: Arc<apply::LaggingCounts>,
    /// When to try a failed reconcile again, per rollout.
    retry: Arc<Retry>,
    /// The router objects Sluice put back after another writer changed them.
    drift: Arc<routers::Drift>,
    /// Queues every recorded event for notifications.
    notifier: Notifier,
}

/// Runs the Rollout controller until `shutdown` resolves; in-flight reconciles then get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn run(
    client: Client,
    recorder: Recorder,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    notifier: Notifier,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let rollouts: Api<CachedRollout> = config.api(&client);
    let (sets, services) = (
        config.api::<CachedSet>(&client),
        config.api::<CachedService>(&client),
    );
    // Readiness comes from the streams' first InitDone, not Store::wait_until_ready: a store's
    // readiness wakes only the last task that polled it (a oneshot inside kube-runtime), and the
    // Controller's runner already waits on the Rollout store.
    let (filled, caches_filled) = Filled::new(health);
    let set_cache = SetCache::default();
    let set_events = watcher(
        sets,
        watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching ReplicaSets failed; retrying"))
    .inspect_ok({
        let cache = set_cache.clone();
        move |event| cache.apply(event)
    })
    .inspect_ok(filled.on_init_done(Filled::REPLICA_SETS, "ReplicaSets"))
    .touched_objects();
    let (service_store, service_writer) = reflector::store::<CachedService>();
    let service_events = watcher(services, watcher::Config::default())
        .default_backoff()
        .inspect_err(|e| warn!(error = %e, "watching Services failed; retrying"))
        .reflect(service_writer)
        .inspect_ok(filled.on_init_done(Filled::SERVICES, "Services"))
        .touched_objects();

    // Runs through a deserialisation guard too: one the types cannot read must not stop the
    // watch (and with it every rollout's readiness); the plan sees it as an Error run.
    let runs: Api<DeserializeGuard<AnalysisRun>> = config.api(&client);
    let (run_store, run_writer) = reflector::store::<DeserializeGuard<AnalysisRun>>();
    let run_events = watcher(runs, watcher::Config::default().labels(ROLLOUT_TYPE_LABEL))
        .default_backoff()
        .inspect_err(|e| warn!(error = %e, "watching AnalysisRuns failed; retrying"))
        .modify(|guard: &mut DeserializeGuard<AnalysisRun>| {
            trim(guard);
            if let Ok(run) = guard.0.as_mut() {
                trim_analysis_run(run);
            }
        })
        .reflect(run_writer)
        .inspect_ok(filled.on_init_done(Filled::ANALYSIS_RUNS, "AnalysisRuns"))
        .touched_objects();

    // The analysis templates rollouts name, so a rollout naming one that is missing, invalid or
    // asking for arguments it does not give is invalid at once, and valid again as soon as the
    // template is mended. Through a deserialisation guard: a template the types cannot read is
    // that template's problem, not the watch's.
    let (template_store, template_writer) =
        reflector::store::<DeserializeGuard<AnalysisTemplate>>();
    let template_events = watcher(
        config.api::<DeserializeGuard<AnalysisTemplate>>(&client),
        watcher::Config::default(),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching AnalysisTemplates failed; retrying"))
    .modify(trim)
    .reflect(template_writer)
    .inspect_ok(filled.on_init_done(Filled::TEMPLATES, "AnalysisTemplates"))
    .touched_objects();
    let (cluster_template_store, cluster_template_writer) =
        reflector::store::<DeserializeGuard<ClusterAnalysisTemplate>>();
    let cluster_template_events = watcher(
        Api::<DeserializeGuard<ClusterAnalysisTemplate>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching ClusterAnalysisTemplates failed; retrying"))
    .modify(trim)
    .reflect(cluster_template_writer)
    .inspect_ok(filled.on_init_done(Filled::CLUSTER_TEMPLATES, "ClusterAnalysisTemplates"))
    .touched_objects();

    // The Experiments of experiment steps: their metadata wakes the rollout that owns them (a
    // status change moves the resourceVersion); a reconcile lists the ones it needs.
    let experiment_events = watcher(
        config.api::<PartialObjectMeta<Experiment>>(&client),
        watcher::Config::default().labels(ROLLOUT_TYPE_LABEL),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching Experiments failed; retrying"))
    .touched_objects();

    // The Deployments a workloadRef names change their template without touching the Rollout:
    // their metadata is watched (no cache; a reconcile reads the one it needs), and only a new
    // generation (a spec change, not a status update) wakes the rollouts naming them.
    let deployment_events = watcher(
        config.api::<PartialObjectMeta<Deployment>>(&client),
        watcher::Config::default(),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching Deployments failed; retrying"))
    .touched_objects()
    .predicate_filter(predicates::generation, PredicateConfig::default());

    // Rollouts through a reflector of our own, so a deletion (which never reaches `reconcile`)
    // drops the rollout's metric series.
    let (rollout_store, rollout_writer) = reflector::store::<CachedRollout>();
    let own_writes = Arc::new(OwnWrites::default());
    let lagging = Arc::new(apply::LaggingCounts::default());
    let retry = Arc::new(Retry::default());
    let drift = Arc::new(routers::Drift::default());
    let mut known = Known::default();
    let forget = Forget {
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        own_writes: own_writes.clone(),
        lagging: lagging.clone(),
        retry: retry.clone(),
        drift: drift.clone(),
    };
    // Another installation's Rollouts are filtered out by the API server, never cached.
    let selector = config.instance_selector();
    let rollout_events = watcher(
        rollouts,
        watcher::Config::default().any_semantic().labels(&selector),
    )
    .default_backoff()
    .inspect_err(|e| warn!(error = %e, "watching Rollouts failed; retrying"))
    .reflect(rollout_writer)
    .inspect_ok(filled.on_init_done(Filled::ROLLOUTS, "Rollouts"))
    .inspect_ok(move |event| forget.gone(&mut known, event))
    .applied_objects();
    let controller = Controller::for_stream(rollout_events, rollout_store.clone())
        .with_config(config.controller_config());

    let context = Arc::new(Context {
        recorder,
        client,
        caches_filled,
        caches: Caches {
            replica_sets: set_cache,
            services: service_store,
            analysis_runs: run_store,
            templates: template_store,
            cluster_templates: cluster_template_store,
        },
        metrics,
        own_writes,
        lagging,
        retry,
        drift,
        notifier,
    });
    let shutdown = shutdown.shared();
    let controller = controller
        .owns_stream(set_events)
        .owns_stream(run_events)
        .owns_stream(experiment_events)
        .watches_stream(service_events, {
            let store = rollout_store.clone();
            move |service: CachedService| rollouts_naming(&store, &service)
        })
        .watches_stream(template_events, {
            let store = rollout_store.clone();
            move |template: DeserializeGuard<AnalysisTemplate>| {
                let namespace = template.namespace();
                rollouts_using(&store, namespace.as_deref(), &template.name_any(), false)
            }
        })
        .watches_stream(deployment_events, {
            let store = rollout_store.clone();
            move |deployment: PartialObjectMeta<Deployment>| rollouts_over(&store, &deployment)
        })
        .watches_stream(
            cluster_template_events,
            move |template: DeserializeGuard<ClusterAnalysisTemplate>| {
                rollouts_using(&rollout_store, None, &template.name_any(), true)
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(metered_reconcile, error_policy, context)
        .for_each(|_| future::ready(()));
    runtime::drain_within("rollout controller", controller, shutdown, SHUTDOWN_GRACE).await;
    Ok(())
}

/// How long in-flight reconciles may take to finish once a stop is asked for: every request they
/// make is bounded well below it, and together with the analysis controller's grace the process
/// ends within a pod's default 30 s termination grace period.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Tracks which caches hold their first full list, and marks the controller ready when all do.
#[derive(Clone)]
struct Filled {
    bits: Arc<watch::Sender<u8>>,
    health: Arc<Health>,
}

impl Filled {
    const ROLLOUTS: u8 = 1;
    const REPLICA_SETS: u8 = 2;
    const SERVICES: u8 = 4;
    const ANALYSIS_RUNS: u8 = 8;
    const TEMPLATES: u8 = 16;
    const CLUSTER_TEMPLATES: u8 = 32;
    const ALL: u8 = Self::ROLLOUTS
        | Self::REPLICA_SETS
        | Self::SERVICES
        | Self::ANALYSIS_RUNS
        | Self::TEMPLATES
        | Self::CLUSTER_TEMPLATES;

    fn new(health: Arc<Health>) -> (Self, watch::Receiver<u8>) {
        let (bits, receiver) = watch::channel(0);
        let filled = Self {
            bits: Arc::new(bits),
            health,
        };
        (filled, receiver)
    }

    /// A stream inspector that marks `bit` at the stream's first `InitDone`.
    fn on_init_done<K>(
        &self,
        bit: u8,
        what: &'static str,
    ) -> impl FnMut(&watcher::Event<K>) + use<K> {
        let this = self.clone();
        move |event| {
            if matches!(event, watcher::Event::InitDone) {
                this.mark(bit, what);
            }
        }
    }

    fn mark(&self, bit: u8, what: &'static str) {
        self.bits.send_if_modified(|bits| {
            if *bits & bit != 0 {
                return false;
            }
            *bits |= bit;
            debug!(cache = what, "cache filled");
            if *bits == Self::ALL {
                info!("caches filled; reconciling");
                self.health.set_ready(true);
            }
            true
        });
    }
}

/// The rollouts the Rollout watch has shown, so that a re-list (a watch restarted after an error
/// or a timeout) that no longer holds one counts as its deletion: no delete event is ever sent
/// for a rollout deleted while the watch was down.
#[derive(Debug, Default)]
struct Known {
    /// The rollouts the watch shows now.
    live: HashSet<Key>,
    /// The rollouts of a re-list in progress.
    relisted: Option<HashSet<Key>>,
}

impl Known {
    /// Takes one watch event; returns the rollouts it shows gone, sorted.
    fn gone<K: Resource>(&mut self, event: &watcher::Event<K>) -> Vec<Key> {
        let key = |object: &K| {
            let meta = object.meta();
            (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        };
        match event {
            watcher::Event::Apply(object) => {
                self.live.insert(key(object));
                Vec::new()
            }
            watcher::Event::Delete(object) => {
                let key = key(object);
                self.live.remove(&key);
                vec![key]
            }
            watcher::Event::Init => {
                self.relisted = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                self.relisted
                    .get_or_insert_with(HashSet::new)
                    .insert(key(object));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = self.relisted.take().unwrap_or_default();
                let mut gone: Vec<Key> = self.live.difference(&listed).cloned().collect();
                gone.sort();
                self.live = listed;
                gone
            }
        }
    }
}

/// What the controller keeps per rollout outside the caches, dropped when a rollout is gone.
struct Forget {
    recorder: Recorder,
    metrics: Arc<Metrics>,
    own_writes: Arc<OwnWrites>,
    lagging: Arc<apply::LaggingCounts>,
    retry: Arc<Retry>,
    drift: Arc<routers::Drift>,
}

impl Forget {
    /// Drops the metric series and notes of the rollouts `event` shows gone (deleted, or missing
    /// from a re-list).
    fn gone<K: Resource>(&self, known: &mut Known, event: &watcher::Event<K>) {
        for (namespace, name) in known.gone(event) {
            debug!(
                namespace,
                rollout = name,
                "rollout gone; dropping its metric series"
            );
            self.metrics.forget_rollout(&namespace, &name);
            self.recorder.forget("Rollout", &namespace, &name);
            self.own_writes.forget(&namespace, &name);
            self.lagging.written(&namespace, &name);
            self.drift.forget(&namespace, &name);
            self.retry.succeeded(&(namespace, name));
        }
    }
}

/// An AnalysisRun as `plan` reads it: labels, owner, `spec.terminate`, phase and message; the
/// metrics and measurements (most of its size) are dropped.
fn trim_analysis_run(run: &mut AnalysisRun) {
    run.spec.metrics.clear();
    run.spec.args.clear();
    if let Some(status) = run.status.as_mut() {
        status.metric_results.clear();
    }
}

/// The rollouts in the Service's namespace whose strategy names it.
fn rollouts_naming(
    store: &reflector::Store<CachedRollout>,
    service: &CachedService,
) -> Vec<ObjectRef<CachedRollout>> {
    let (namespace, name) = (service.namespace(), service.name_any());
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == namespace && r.names_service(&name))
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// The rollouts whose `workloadRef` names the Deployment.
fn rollouts_over(
    store: &reflector::Store<CachedRollout>,
    deployment: &PartialObjectMeta<Deployment>,
) -> Vec<ObjectRef<CachedRollout>> {
    let (namespace, name) = (deployment.namespace(), deployment.name_any());
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == namespace && r.over_deployment(&name))
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// The rollouts whose strategy names the template `name` (a ClusterAnalysisTemplate when
/// `cluster`, else an AnalysisTemplate in `namespace`).
fn rollouts_using(
    store: &reflector::Store<CachedRollout>,
    namespace: Option<&str>,
    name: &str,
    cluster: bool,
) -> Vec<ObjectRef<CachedRollout>> {
    store
        .state()
        .iter()
        .filter(|r| cluster || r.namespace().as_deref() == namespace)
        .filter(|r| r.uses_template(name, cluster))
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// [`reconcile`], with the API requests it made recorded in `sluice_reconcile_kube_requests`.
async fn metered_reconcile(
    cached: Arc<CachedRollout>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let metrics = ctx.metrics.clone();
    let retry = ctx.retry.clone();
    let key = (cached.namespace().unwrap_or_default(), cached.name_any());
    let (result, requests) = crate::client::counting_requests(reconcile(cached, ctx)).await;
    metrics.reconcile_requests("rollout", requests);
    if result.is_ok() {
        retry.succeeded(&key);
    }
    result
}

/// Puts an unreadable Rollout's fault on its status (Degraded, an `InvalidSpec` condition), as
/// for any invalid spec, so Argo CD and `kubectl sluice` show it; written once per fault: the
/// status is read as written first, since the types cannot read it.
async fn report_unreadable(client: &Client, invalid: &kube::core::error_boundary::InvalidObject) {
    let meta = &invalid.metadata;
    let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
        return;
    };
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &kube::api::ApiResource::erase::<Rollout>(&()),
    );
    let message = runtime::unreadable_message::<Rollout>(invalid);
    let phase_message = format!("{}: {message}", reason::INVALID_SPEC);
    match api.get_status(name).await {
        Ok(current) if current.data["status"]["message"] == phase_message.as_str() => return,
        Ok(_) => {}
        Err(e) => {
            warn!(namespace, name, error = %e, "reading an unreadable Rollout's status failed");
            return;
        }
    }
    let now = Timestamp::now().to_string();
    let status = serde_json::json!({ "status": {
        "phase": "Degraded",
        "message": phase_message,
        "observedGeneration": meta.generation.map(|g| g.to_string()),
        "conditions": [{
            "type": reason::INVALID_SPEC,
            "status": "True",
            "reason": reason::INVALID_SPEC,
            "message": message,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        }],
    }});
    if let Err(e) = api
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
    {
        warn!(namespace, name, error = %e, "reporting an unreadable Rollout failed");
    }
}

async fn reconcile(cached: Arc<CachedRollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let rollout = match cached.read() {
        Ok(rollout) => rollout,
        Err(invalid) => {
            let (namespace, name) = runtime::key_of(&invalid.metadata);
            ctx.metrics
                .rollout_event(&namespace, &name, "Warning", reason::INVALID_SPEC);
            runtime::report_unreadable::<Rollout>(&ctx.recorder, &invalid, ACTION).await;
            report_unreadable(&ctx.client, &invalid).await;
            return Ok(Requeue::await_change());
        }
    };
    let rollout = &rollout;
    let (namespace, name) = (rollout.namespace().unwrap_or_default(), rollout.name_any());
    let _timer = ctx.metrics.reconcile_timer(&namespace, &name);
    if ctx
        .caches_filled
        .clone()
        .wait_for(|filled| *filled == Filled::ALL)
        .await
        .is_err()
    {
        return Err(Error::NotReady("ReplicaSet and Service caches".into()));
    }
    if ctx.own_writes.behind(rollout) {
        // The watch brings our last status write in a moment, and wakes this rollout again.
        debug!(
            namespace,
            rollout = name,
            "cache behind our status write; waiting for it"
        );
        return Ok(Requeue::requeue(BEHIND_RETRY));
    }
    // The one clock read of a reconcile: `plan` takes the time as an argument.
    let now = Timestamp::now();
    let mut observed = observe(rollout, &ctx.caches);
    observed.workload = observe::read_workload(&ctx.client, rollout)
        .await
        .map_err(|source| Error::Write {
            action: format!("reading the Deployment Rollout {name}'s workloadRef names"),
            source,
        })?;
    observed.experiments = observe::read_experiments(&ctx.client, rollout)
        .await
        .map_err(|source| Error::Write {
            action: format!("listing the Experiments of Rollout {name}"),
            source,
        })?;
    observe::fill_stable_template(&ctx.client, rollout, &mut observed)
        .await
        .map_err(|source| Error::Write {
            action: format!("reading the stable ReplicaSet of Rollout {name} for its experiment"),
            source,
        })?;
    if sluice_plan::restart::pending(rollout, now) {
        let pods = observe::list_pods(&ctx.client, rollout).await;
        observed.pods = Some(pods.map_err(|source| Error::Write {
            action: format!("listing the pods of Rollout {name} for its restart"),
            source,
        })?);
    }
    let routed = match routers::of(rollout) {
        Some(list) => {
            let probe = routers::probe(rollout);
            let read = routers::Routers::read(&ctx.client, list, &probe).await?;
            let weight = read.canary_weight(&probe);
            if let Err(e) = &weight {
                debug!(namespace, rollout = name, error = %e, "router weight unknown");
            }
            observed.traffic = Some(sluice_plan::traffic::TrafficView {
                canary_weight: weight.ok(),
            });
            Some(read)
        }
        None => None,
    };
    let plan = sluice_plan::plan(rollout, &observed, now);

    for action in &plan.actions {
        info!(namespace, rollout = name, %action, "applying");
    }
    // A status change that only moves the pod counts waits for the next change that matters (or
    // a few seconds), also in a reconcile that scaled or created sets on the way to a step: those
    // changes have no status of their own, and their Event waits for the step's as well.
    let quiet = plan
        .events
        .iter()
        .all(|event| crate::events::leads_up_to_a_step(event.reason));
    let counts_wait = quiet
        .then(|| {
            ctx.lagging
                .wait(rollout, &plan.status, std::time::Instant::now())
        })
        .flatten();
    let applied = match apply::apply_actions(&ctx.client, rollout, &plan).await {
        Ok(()) => match route(&ctx, rollout, routed.as_ref(), &plan).await {
            Ok(()) if counts_wait.is_some() => Ok(false),
            Ok(()) => {
                ctx.lagging.written(&namespace, &name);
                apply::write_status(&ctx.client, rollout, &plan.status).await
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match applied {
        Ok(true) => ctx.own_writes.wrote(rollout),
        Ok(false) => {}
        Err(error) => {
            // The plan's events did not happen; the failure is what the user hears of.
            if error.is_reported() {
                report_failure(&ctx, rollout, &error, now).await;
            }
            return Err(error);
        }
    }
    // The events describe the status just written: notifications render that one.
    let written = (!plan.events.is_empty()).then(|| {
        let mut written = rollout.clone();
        written.status = Some(plan.status.clone());
        written
    });
    for event in &plan.events {
        info!(
            namespace,
            rollout = name,
            reason = event.reason,
            message = event.message,
            "event"
        );
    }
    let about = written.as_ref().unwrap_or(rollout);
    let events_due = record(&ctx, about, &plan.events).await;
    ctx.metrics.set_rollout(
        &namespace,
        &name,
        metrics::strategy_label(&rollout.spec),
        metrics::phase_label(&plan.status),
    );
    ctx.metrics.set_rollout_replicas(
        &namespace,
        &name,
        metrics::replicas_of(&rollout.spec, &plan.status),
    );
    // Changes waiting for their step's Event are sent by then at the latest.
    let requeue = [plan.requeue_after, events_due, counts_wait]
        .into_iter()
        .flatten()
        .min();
    Ok(requeue.map_or_else(Requeue::await_change, Requeue::requeue))
}

/// Records a plan's events, the changes leading up to a step gathered into the step's one Event
/// ([`crate::events`]); counts each in `rollout_events_total` and queues each for notifications,
/// as [`publish`] does. Answers when the gathered changes are due, if any wait.
async fn record(
    ctx: &Context,
    rollout: &Rollout,
    events: &[sluice_plan::Event],
) -> Option<std::time::Duration> {
    let (namespace, name) = (rollout.namespace().unwrap_or_default(), rollout.name_any());
    let notes: Vec<Note<'_>> = events
        .iter()
        .map(|event| {
            let (type_, type_name) = kube_type(event.type_);
            ctx.metrics
                .rollout_event(&namespace, &name, type_name, event.reason);
            ctx.notifier.notify(rollout, type_name, event.reason);
            Note {
                type_,
                reason: event.reason,
                message: &event.message,
                action: ACTION,
            }
        })
        .collect();
    ctx.recorder
        .record(&rollout.object_ref(&()), &notes, true)
        .await
}

fn kube_type(type_: EventType) -> (KubeEventType, &'static str) {
    match type_ {
        EventType::Normal => (KubeEventType::Normal, "Normal"),
        EventType::Warning => (KubeEventType::Warning, "Warning"),
    }
}

/// Records an event on the rollout, counts it in `rollout_events_total`, and queues it for
/// notifications (Argo sends on the events it records; every caller records only after the
/// writes that make the event true succeeded).
async fn publish(ctx: &Context, rollout: &Rollout, type_: EventType, reason: &str, message: &str) {
    let (type_, type_name) = kube_type(type_);
    ctx.metrics.rollout_event(
        &rollout.namespace().unwrap_or_default(),
        &rollout.name_any(),
        type_name,
        reason,
    );
    ctx.notifier.notify(rollout, type_name, reason);
    let note = Note {
        type_,
        reason,
        message,
        action: ACTION,
    };
    runtime::publish(&ctx.recorder, &rollout.object_ref(&()), note).await;
}

/// The `action` of the Rollout controller's events.
const ACTION: &str = "Reconcile";

/// Writes what the plan decided into the rollout's router objects, after its actions (a Service
/// points at its version before the weight sends it requests); a put-back is reported.
async fn route(
    ctx: &Context,
    rollout: &Rollout,
    routed: Option<&routers::Routers>,
    plan: &sluice_plan::Plan,
) -> Result<(), Error> {
    let (Some(routers), Some(desired)) = (routed, plan.traffic.as_ref()) else {
        return Ok(());
    };
    let notes = routers
        .write(&ctx.client, rollout, desired, &ctx.drift)
        .await?;
    for note in notes {
        publish(
            ctx,
            rollout,
            EventType::Warning,
            reason::TRAFFIC_ROUTING_PUT_BACK,
            &note,
        )
        .await;
    }
    Ok(())
}

/// Tells the user why a reconcile stopped, where they look: over the status as it was (the
/// plan's changes did not happen), a `ReplicaFailure` condition with the API's message, or for a
/// hash collision a higher `status.collisionCount` (the next attempt names the new version's
/// objects differently); and a Warning event. The next plan whose writes succeed clears it.
async fn report_failure(ctx: &Context, rollout: &Rollout, error: &Error, now: Timestamp) {
    let (namespace, name) = (rollout.namespace().unwrap_or_default(), rollout.name_any());
    let prev = rollout.status.clone().unwrap_or_default();
    let (status, message) = match error {
        Error::Collision(why) => {
            let status = sluice_plan::status::bump_collision(&prev);
            let message = format!(
                "Found a hash collision for Rollout {name}: {why}; bumping collisionCount from {} to {}",
                prev.collision_count.unwrap_or(0),
                status.collision_count.unwrap_or(0)
            );
            (status, message)
        }
        other => {
            let message = other.message();
            let status = sluice_plan::status::with_failure(&prev, other.reason(), &message, now);
            (status, message)
        }
    };
    warn!(
        namespace,
        rollout = name,
        reason = error.reason(),
        message,
        "reconcile failed"
    );
    match apply::write_status(&ctx.client, rollout, &status).await {
        Ok(true) => ctx.own_writes.wrote(rollout),
        Ok(false) => {}
        Err(e) => warn!(
            namespace,
            rollout = name,
            error = %e,
            "could not report the failure in the rollout's status"
        ),
    }
    publish(ctx, rollout, EventType::Warning, error.reason(), &message).await;
}

/// When a reconcile that found the cache behind our own status write looks again, should the
/// watch event that normally wakes it never come (it always does; this is a fallback).
const BEHIND_RETRY: Duration = Duration::from_secs(1);

fn error_policy(cached: Arc<CachedRollout>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let (namespace, name) = (cached.namespace().unwrap_or_default(), cached.name_any());
    ctx.metrics
        .reconcile_error(&namespace, &name, error.reason());
    // A failure that may last waits longer each time in a row (reset by a success); one that
    // passes on its own is retried soon.
    let delay = ctx.retry.after((namespace.clone(), name.clone()), error);
    match error {
        Error::Conflict(_) => info!(namespace, rollout = name, "{error}"),
        _ => warn!(
            namespace,
            rollout = name,
            reason = error.reason(),
            retry_in = ?delay,
            "{error}"
        ),
    }
    Requeue::requeue(delay)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn guarded(spec: serde_json::Value) -> DeserializeGuard<Rollout> {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {
                "name": "app",
                "namespace": "default",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a\":\"copy\"}",
                    "notes": "kept",
                },
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": { "f:spec": { "f:replicas": {} } },
                }],
            },
            "spec": spec,
        }))
        .expect("a guard reads any object")
    }

    fn in_shop(name: &str) -> Rollout {
        let mut rollout = Rollout::new(name, sluice_api::RolloutSpec::default());
        rollout.metadata.namespace = Some("shop".into());
        rollout
    }

    #[tokio::test]
    async fn a_rollout_missing_from_a_relist_loses_its_metric_series_as_a_deleted_one_does() {
        let metrics = Arc::new(Metrics::new());
        let forget = Forget {
            recorder: crate::events::tests::recorder(),
            metrics: metrics.clone(),
            own_writes: Arc::default(),
            lagging: Arc::default(),
            retry: Arc::default(),
            drift: Arc::default(),
        };
        let mut known = Known::default();
        let series = |name: &str| format!("name=\"{name}\"");
        forget.gone(&mut known, &watcher::Event::<Rollout>::Init);
        for name in ["kept", "gone", "deleted"] {
            metrics.set_rollout("shop", name, "canary", "Healthy");
            forget.gone(&mut known, &watcher::Event::InitApply(in_shop(name)));
        }
        forget.gone(&mut known, &watcher::Event::<Rollout>::InitDone);
        forget.gone(&mut known, &watcher::Event::Delete(in_shop("deleted")));
        let text = metrics.encode();
        assert!(!text.contains(&series("deleted")), "{text}");
        assert!(text.contains(&series("gone")), "{text}");

        // The watch restarts; "gone" was deleted meanwhile, so no delete event ever comes.
        forget.gone(&mut known, &watcher::Event::<Rollout>::Init);
        forget.gone(&mut known, &watcher::Event::InitApply(in_shop("kept")));
        assert!(
            metrics.encode().contains(&series("gone")),
            "nothing is dropped before the re-list is complete"
        );
        forget.gone(&mut known, &watcher::Event::<Rollout>::InitDone);
        let text = metrics.encode();
        assert!(text.contains(&series("kept")), "{text}");
        assert!(!text.contains(&series("gone")), "{text}");

        // A rollout created after the re-list is known too.
        forget.gone(&mut known, &watcher::Event::Apply(in_shop("new")));
        assert_eq!(
            known.gone(&watcher::Event::Delete(in_shop("new"))),
            [("shop".to_string(), "new".to_string())]
        );
    }

    #[test]
    fn cached_rollouts_keep_neither_managed_fields_nor_kubectl_s_copy_whether_valid_or_not() {
        let valid = json!({
            "selector": { "matchLabels": { "app": "app" } },
            "template": { "metadata": { "labels": { "app": "app" } }, "spec": { "containers": [{ "name": "app", "image": "app:1" }] } },
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }] } },
        });
        let cached = CachedRollout::of(guarded(valid));
        assert_eq!(cached.meta().managed_fields, None);
        let read = cached.read().expect("a valid Rollout reads back");
        assert_eq!(read.metadata.managed_fields, None);
        let annotations = read.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["notes"],
            "only kubectl's copy goes"
        );
        assert!(
            read.spec.template.is_some_and(|t| t.spec.is_some()),
            "the pod template stays: new ReplicaSets are built from it"
        );

        let cached = CachedRollout::of(guarded(json!({ "replicas": "three" })));
        let invalid = cached.read().expect_err("unreadable");
        assert_eq!(invalid.metadata.managed_fields, None);
        assert_eq!(invalid.metadata.annotations, None);
        assert_eq!(invalid.metadata.name.as_deref(), Some("app"));
    }
}
