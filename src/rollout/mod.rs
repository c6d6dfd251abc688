//! The Rollout controller: reconcile = observe -> plan -> apply -> status.
//!
//! Watched: Rollouts (wrapped in `DeserializeGuard`, so one malformed object never stops the
//! watch), the ReplicaSets that carry a pod-template-hash label, and Services (a Service
//! change wakes the rollouts that name it). The caches keep trimmed objects: no
//! managedFields, no last-applied annotation.

pub mod apply;
pub mod observe;
pub mod plan;

use std::{future::Future, sync::Arc};

use futures::{StreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{ObjectReference, Service},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action as Requeue},
        events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tracing::{info, warn};

use self::{
    observe::{Caches, observe, service_names},
    plan::EventType,
};
use crate::{
    api::{POD_TEMPLATE_HASH_LABEL, Rollout},
    error::Error,
    metrics::Metrics,
    server::Health,
};

/// Settings of the Rollout controller that come from the command line.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How many Rollouts are reconciled at once.
    pub concurrency: u16,
}

/// What every reconcile shares.
struct Context {
    client: Client,
    caches: Caches,
    metrics: Arc<Metrics>,
    recorder: Recorder,
}

/// Runs the Rollout controller until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let (rollouts, sets, services) = match config.namespace.as_deref() {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let rollouts: Api<DeserializeGuard<Rollout>> = rollouts;
    let (set_store, set_writer) = reflector::store::<ReplicaSet>();
    let set_events = watcher(
        sets,
        watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
    )
    .default_backoff()
    .modify(trim)
    .reflect(set_writer)
    .touched_objects();
    let (service_store, service_writer) = reflector::store::<Service>();
    let service_events = watcher(services, watcher::Config::default())
        .default_backoff()
        .modify(trim)
        .reflect(service_writer)
        .touched_objects();

    let controller = Controller::new(rollouts, watcher::Config::default().any_semantic())
        .with_config(controller::Config::default().concurrency(config.concurrency.max(1)));
    let rollout_store = controller.store();
    let ready = {
        let (rollout_store, set_store, service_store) = (
            rollout_store.clone(),
            set_store.clone(),
            service_store.clone(),
        );
        async move {
            let _ = future::join3(
                rollout_store.wait_until_ready(),
                set_store.wait_until_ready(),
                service_store.wait_until_ready(),
            )
            .await;
            info!("caches filled; reconciling");
            health.set_ready(true);
        }
    };
    tokio::spawn(ready);

    let reporter = Reporter {
        controller: "sluice".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        caches: Caches {
            replica_sets: set_store,
            services: service_store,
        },
        metrics,
    });
    controller
        .owns_stream(set_events)
        .watches_stream(service_events, move |service: Service| {
            rollouts_naming(&rollout_store, &service)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|_| future::ready(()))
        .await;
    info!("rollout controller stopped");
    Ok(())
}

/// Drops what the caches never read, to keep memory flat at scale.
fn trim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The rollouts in the Service's namespace whose strategy names it.
fn rollouts_naming(
    store: &reflector::Store<DeserializeGuard<Rollout>>,
    service: &Service,
) -> Vec<ObjectRef<DeserializeGuard<Rollout>>> {
    let (namespace, name) = (service.namespace(), service.name_any());
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|r| r.namespace() == namespace && service_names(r).contains(&name))
        .map(|r| ObjectRef::new(&r.name_any()).within(namespace.as_deref().unwrap_or_default()))
        .collect()
}

async fn reconcile(
    guard: Arc<DeserializeGuard<Rollout>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let rollout = match &guard.0 {
        Ok(rollout) => rollout,
        Err(invalid) => {
            let meta = &invalid.metadata;
            warn!(namespace = meta.namespace.as_deref(), name = meta.name.as_deref(), error = %invalid.error, "cannot read Rollout");
            let reference = ObjectReference {
                api_version: Some("argoproj.io/v1alpha1".into()),
                kind: Some("Rollout".into()),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                ..ObjectReference::default()
            };
            let event = KubeEvent {
                type_: KubeEventType::Warning,
                reason: "InvalidSpec".into(),
                note: Some(
                    format!("the Rollout cannot be read: {}", invalid.error)
                        .chars()
                        .take(1000)
                        .collect(),
                ),
                action: "Reconcile".into(),
                secondary: None,
            };
            let _ = ctx.recorder.publish(&event, &reference).await;
            return Ok(Requeue::await_change());
        }
    };
    let (namespace, name) = (rollout.namespace().unwrap_or_default(), rollout.name_any());
    let _timer = ctx.metrics.reconcile_timer(&namespace, &name);
    if ctx.caches.replica_sets.wait_until_ready().await.is_err()
        || ctx.caches.services.wait_until_ready().await.is_err()
    {
        return Err(Error::NotReady("ReplicaSet and Service caches".into()));
    }
    let observed = observe(rollout, &ctx.caches);
    // The one clock read of a reconcile: `plan` takes the time as an argument.
    let plan = plan::plan(rollout, &observed, Timestamp::now());

    for action in &plan.actions {
        info!(namespace, rollout = name, %action, "applying");
    }
    apply::apply_actions(&ctx.client, rollout, &plan, &ctx.metrics).await?;
    apply::write_status(&ctx.client, rollout, &plan, &ctx.metrics).await?;
    let reference = rollout.object_ref(&());
    for event in &plan.events {
        info!(
            namespace,
            rollout = name,
            reason = event.reason,
            message = event.message,
            "event"
        );
        let published = KubeEvent {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.into(),
            note: Some(event.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&published, &reference).await {
            warn!(namespace, rollout = name, error = %e, "could not record an event");
        }
    }
    let strategy = if rollout.spec.blue_green().is_some() {
        "blueGreen"
    } else {
        "canary"
    };
    let phase = plan
        .status
        .phase
        .map_or("Progressing".to_string(), |p| format!("{p:?}"));
    ctx.metrics.set_rollout(&namespace, &name, strategy, &phase);
    Ok(plan
        .requeue_after
        .map_or_else(Requeue::await_change, Requeue::requeue))
}

fn error_policy(
    guard: Arc<DeserializeGuard<Rollout>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Requeue {
    let (namespace, name) = guard
        .0
        .as_ref()
        .map(|r| (r.namespace().unwrap_or_default(), r.name_any()))
        .unwrap_or_default();
    ctx.metrics
        .reconcile_error(&namespace, &name, error.reason());
    match error {
        Error::Conflict(_) => info!(namespace, rollout = name, "{error}"),
        _ => warn!(
            namespace,
            rollout = name,
            reason = error.reason(),
            "{error}"
        ),
    }
    Requeue::requeue(error.retry_after())
}
