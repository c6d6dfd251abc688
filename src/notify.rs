//! Notifications, the controller's side: every event the Rollout controller records goes
//! through [`Notifier::notify`], which queues it; a [`Worker`] of its own works out what the
//! event sends with `sluice-notify` (Argo Rollouts' configuration, triggers, subscriptions and
//! templates) and delivers it.
//!
//! - **Never slows a rollout.** `notify` only `try_send`s into a bounded queue
//!   ([`QUEUE_CAPACITY`]); a full queue drops the event, counted in
//!   `sluice_notifications_dropped_total` and logged. Reading the configuration, rendering and
//!   sending happen in the worker, [`MAX_IN_FLIGHT`] deliveries at a time.
//! - **Retried.** A failed delivery is tried again after 1 s, 2 s, 4 s, 8 s ([`ATTEMPTS`] in
//!   all); every failed attempt counts in `notification_send_error`, a delivered notification
//!   in `notification_send_success` (Argo's names and labels: namespace, name, type, reason) and
//!   its time in `notification_send`.
//! - **At most once.** The Rollout controller records an event only after the status write that
//!   makes it true succeeded, and a restarted controller or a new leader reads that status and
//!   does not record it again; so each event is queued once. A notification still queued or
//!   being retried when the process is killed is lost, never sent twice. On a clean stop the
//!   worker keeps delivering until the controller has stopped recording and the queue is empty,
//!   within [`SHUTDOWN_GRACE`].
//! - **Configuration.** The ConfigMap `argo-rollouts-notification-configmap` and the Secret
//!   `argo-rollouts-notification-secret` in the controller's namespace (`POD_NAMESPACE`, else
//!   `argo-rollouts`), read again after a change: a metadata watch of those two objects by name
//!   tells (no request while nothing changes; `get`, `list` and `watch` on just those two names),
//!   and while that watch is down the configuration is read again when older than [`CONFIG_TTL`],
//!   so a change applies without a restart either way. A malformed entry is logged as a
//!   warning once per version of the ConfigMap and left out; a problem with a trigger a Rollout
//!   fires (a template that does not render, an unknown service) is also a Warning event
//!   (`NotificationFailed`) on that Rollout.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::events::Recorder;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, Resource,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};
use tracing::{debug, info, warn};

use sluice_api::Rollout;
use sluice_notify::{CONFIG_MAP, Config, Delivery, Event, SECRET, services::Sender};

use crate::{
    metrics::Metrics,
    runtime::{self, Note},
};

/// How many events may wait for the worker.
pub const QUEUE_CAPACITY: usize = 1024;
/// How many deliveries run at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// How many times one delivery is tried.
pub const ATTEMPTS: u32 = 5;
/// The wait before the first retry; doubled each time.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How long the configuration read from the cluster is used before it is read again while the
/// watch that tells of its changes is down.
pub const CONFIG_TTL: Duration = Duration::from_secs(3);
/// How long the worker keeps delivering once a stop is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(12);
/// The reason of the Warning event on a Rollout whose notification could not be worked out.
pub const NOTIFICATION_FAILED: &str = "NotificationFailed";

/// One event to notify of.
struct Job {
    namespace: String,
    name: String,
    event: Event,
    object: k8s_openapi::api::core::v1::ObjectReference,
    queued: Instant,
}

/// The Rollout controller's handle: queues events, never waits.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// A notifier and the worker that delivers what it queues, reading the configuration from
    /// `namespace`.
    pub fn new(
        client: Client,
        recorder: Recorder,
        namespace: String,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Self, Worker)> {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let sender = Sender::new().map_err(anyhow::Error::msg)?;
        let worker = Worker {
            recorder,
            client,
            namespace,
            jobs,
            sender,
            metrics: metrics.clone(),
            config: Mutex::new(None),
            freshness: Arc::default(),
        };
        Ok((Self { queue, metrics }, worker))
    }

    /// Queues the event `reason` just recorded on `rollout` (which carries the status the event
    /// describes); drops it, counted and logged, when the queue is full.
    pub fn notify(&self, rollout: &Rollout, type_: &str, reason: &str) {
        let namespace = rollout.metadata.namespace.clone().unwrap_or_default();
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let Ok(json) = serde_json::to_value(rollout) else {
            return;
        };
        let job = Job {
            object: rollout.object_ref(&()),
            namespace,
            name,
            event: Event {
                rollout: json,
                reason: reason.to_owned(),
                type_: type_.to_owned(),
            },
            queued: Instant::now(),
        };
        if let Err(e) = self.queue.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            self.metrics.notification_dropped();
            warn!(
                namespace = job.namespace,
                rollout = job.name,
                reason,
                "notification queue full; event dropped"
            );
        }
    }
}

/// What the watch of the configuration's objects tells the readers of it.
#[derive(Default)]
struct Freshness {
    /// The watch is up: no change is missed while it is.
    watching: AtomicBool,
    /// The ConfigMap or the Secret changed (or the watch started again) since the last read.
    changed: AtomicBool,
}

impl Freshness {
    /// Whether a configuration read `age` ago is still the one in the cluster: while the watch
    /// is up, until it tells of a change; while it is down, for [`CONFIG_TTL`].
    fn current(&self, age: Duration) -> bool {
        if self.watching.load(Ordering::Acquire) {
            !self.changed.load(Ordering::Acquire)
        } else {
            age < CONFIG_TTL
        }
    }
}

/// Tells `freshness` of every change to the configuration's ConfigMap and Secret in `namespace`
/// (metadata only, each watched by name), and whether the watch is up; runs until dropped.
async fn watch_config(client: Client, namespace: String, freshness: Arc<Freshness>) {
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let maps: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<PartialObjectMeta<Secret>> = Api::namespaced(client, &namespace);
    let map_changes = watcher(maps, by_name(CONFIG_MAP))
        .default_backoff()
        .map_ok(drop);
    let secret_changes = watcher(secrets, by_name(SECRET))
        .default_backoff()
        .map_ok(drop);
    let mut changes = std::pin::pin!(futures::stream::select(map_changes, secret_changes));
    while let Some(change) = changes.next().await {
        match change {
            Ok(()) => {
                freshness.changed.store(true, Ordering::Release);
                freshness.watching.store(true, Ordering::Release);
            }
            Err(e) => {
                freshness.watching.store(false, Ordering::Release);
                warn!(
                    namespace,
                    error = %e,
                    "watching the notification configuration failed; reading it every few seconds meanwhile"
                );
            }
        }
    }
}

/// The configuration last read, and when.
struct Cached {
    read: Instant,
    config: Arc<Config>,
    /// The ConfigMap's resourceVersion and the Secret's, to report problems once per version.
    version: String,
}

/// Delivers what the [`Notifier`] queues.
pub struct Worker {
    client: Client,
    recorder: Recorder,
    namespace: String,
    jobs: mpsc::Receiver<Job>,
    sender: Sender,
    metrics: Arc<Metrics>,
    config: Mutex<Option<Cached>>,
    freshness: Arc<Freshness>,
}

impl Worker {
    /// Delivers until every [`Notifier`] is dropped and the queue is empty; once `stop`
    /// resolves, for [`SHUTDOWN_GRACE`] at most (what is left then is dropped and logged).
    pub async fn run(self, stop: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            client,
            recorder,
            namespace,
            mut jobs,
            sender,
            metrics,
            config,
            freshness,
        } = self;
        // Aborted when the worker returns.
        let _watch = AbortOnDrop(tokio::spawn(watch_config(
            client.clone(),
            namespace.clone(),
            freshness.clone(),
        )));
        let shared = Arc::new(Shared {
            client,
            recorder,
            namespace,
            sender,
            metrics,
            config,
            freshness,
        });
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut in_flight = JoinSet::new();
        let deadline = async {
            stop.await;
            debug!("notifications: stopping; delivering what is queued");
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { break };
                    let shared = shared.clone();
                    let slots = slots.clone();
                    in_flight.spawn(async move {
                        let Ok(_slot) = slots.acquire_owned().await else { return };
                        shared.handle(job).await;
                    });
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = &mut deadline => {
                    let left = jobs.len() + in_flight.len();
                    if left > 0 {
                        warn!(left, "notifications: stopped with deliveries left; they are dropped (at most once)");
                    }
                    in_flight.abort_all();
                    return Ok(());
                }
            }
        }
        // The controller stopped recording: finish what is in flight, within the grace.
        loop {
            tokio::select! {
                next = in_flight.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    warn!(left = in_flight.len(), "notifications: stopped with deliveries left; they are dropped (at most once)");
                    in_flight.abort_all();
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What every delivery shares.
struct Shared {
    client: Client,
    recorder: Recorder,
    namespace: String,
    sender: Sender,
    metrics: Arc<Metrics>,
    config: Mutex<Option<Cached>>,
    freshness: Arc<Freshness>,
}

impl Shared {
    /// Works out what one event sends and delivers it.
    async fn handle(&self, job: Job) {
        let config = self.config().await;
        let (deliveries, problems) = sluice_notify::plan(&config, &job.event);
        for problem in problems {
            warn!(
                namespace = job.namespace,
                rollout = job.name,
                reason = job.event.reason,
                problem,
                "notification not sent"
            );
            let note = Note {
                type_: kube::runtime::events::EventType::Warning,
                reason: NOTIFICATION_FAILED,
                message: &problem,
                action: "Notify",
            };
            runtime::publish(&self.recorder, &job.object, note).await;
        }
        let mut running = JoinSet::new();
        for delivery in deliveries {
            let Some(service) = config.services.get(&delivery.destination.service).cloned() else {
                continue;
            };
            let sender = self.sender.clone();
            let metrics = self.metrics.clone();
            let (namespace, name) = (job.namespace.clone(), job.name.clone());
            let (type_, reason) = (job.event.type_.clone(), job.event.reason.clone());
            let queued = job.queued;
            running.spawn(async move {
                let about = About {
                    namespace: &namespace,
                    name: &name,
                    type_: &type_,
                    reason: &reason,
                    queued,
                };
                deliver(&sender, &service, &delivery, &metrics, &about).await;
            });
        }
        while running.join_next().await.is_some() {}
    }

    /// The configuration, read again after a change (or when older than [`CONFIG_TTL`] while the
    /// watch is down); the last one read when the cluster cannot be read.
    async fn config(&self) -> Arc<Config> {
        {
            let cached = self.config.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = cached
                .as_ref()
                .filter(|c| self.freshness.current(c.read.elapsed()))
            {
                return cached.config.clone();
            }
        }
        // A change seen from here on is read by the next delivery.
        self.freshness.changed.store(false, Ordering::Release);
        let read = read_config(&self.client, &self.namespace).await;
        let mut cached = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok((config, version)) => {
                let changed = cached.as_ref().is_none_or(|c| c.version != version);
                if changed {
                    for problem in &config.problems {
                        warn!(
                            namespace = self.namespace,
                            configmap = CONFIG_MAP,
                            key = problem.key,
                            problem = problem.message,
                            "notification configuration entry left out"
                        );
                    }
                    info!(
                        namespace = self.namespace,
                        triggers = config.triggers.len(),
                        templates = config.templates.len(),
                        services = config.services.len(),
                        "notification configuration read"
                    );
                }
                let config = Arc::new(config);
                *cached = Some(Cached {
                    read: Instant::now(),
                    config: config.clone(),
                    version,
                });
                config
            }
            Err(e) => {
                warn!(
                    namespace = self.namespace,
                    error = format!("{e:#}"),
                    "reading the notification configuration failed"
                );
                cached
                    .as_ref()
                    .map(|c| c.config.clone())
                    .unwrap_or_default()
            }
        }
    }
}

/// Reads the ConfigMap and the Secret (either may be missing: no notifications, or no
/// secrets); returns the configuration and the objects' versions.
async fn read_config(client: &Client, namespace: &str) -> anyhow::Result<(Config, String)> {
    use anyhow::Context as _;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let map = maps
        .get_opt(CONFIG_MAP)
        .await
        .with_context(|| format!("reading ConfigMap {namespace}/{CONFIG_MAP}"))?;
    let Some(map) = map else {
        return Ok((Config::default(), String::new()));
    };
    let secret = secrets
        .get_opt(SECRET)
        .await
        .with_context(|| format!("reading Secret {namespace}/{SECRET}"))?;
    let data = map.data.unwrap_or_default();
    let secret_data: BTreeMap<String, String> = secret
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    let version = format!(
        "{}/{}",
        map.metadata.resource_version.unwrap_or_default(),
        secret
            .and_then(|s| s.metadata.resource_version)
            .unwrap_or_default()
    );
    Ok((Config::parse(&data, &secret_data), version))
}

/// The event a delivery is about, for metrics and logs.
#[derive(Clone, Copy)]
struct About<'a> {
    namespace: &'a str,
    name: &'a str,
    type_: &'a str,
    reason: &'a str,
    /// When the event was queued.
    queued: Instant,
}

/// Delivers one notification, retrying with backoff; counts each attempt.
async fn deliver(
    sender: &Sender,
    service: &sluice_notify::services::Service,
    delivery: &Delivery,
    metrics: &Metrics,
    about: &About<'_>,
) {
    let About {
        namespace,
        name,
        type_,
        reason,
        queued,
    } = *about;
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let started = Instant::now();
        match sender
            .send(service, &delivery.notification, &delivery.destination)
            .await
        {
            Ok(()) => {
                metrics.notification_sent(
                    namespace,
                    name,
                    type_,
                    reason,
                    started.elapsed().as_secs_f64(),
                );
                info!(
                    namespace,
                    rollout = name,
                    trigger = delivery.trigger,
                    service = delivery.destination.service,
                    recipient = delivery.destination.recipient,
                    attempt,
                    delay_ms = u64::try_from(queued.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "notification sent"
                );
                return;
            }
            Err(e) => {
                metrics.notification_failed(namespace, name, type_, reason);
                let last = attempt == ATTEMPTS;
                warn!(
                    namespace,
                    rollout = name,
                    trigger = delivery.trigger,
                    service = delivery.destination.service,
                    recipient = delivery.destination.recipient,
                    attempt,
                    error = %e,
                    retry_in = ?(!last).then_some(wait),
                    "notification failed"
                );
                if last {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_read_again_after_a_change_or_every_few_seconds_without_a_watch() {
        let freshness = Freshness::default();
        let (young, old) = (Duration::from_secs(1), CONFIG_TTL + Duration::from_secs(1));
        assert!(
            freshness.current(young),
            "no watch yet: a young read is used"
        );
        assert!(
            !freshness.current(old),
            "no watch yet: an old read is read again"
        );
        freshness.watching.store(true, Ordering::Release);
        assert!(freshness.current(old), "a watch that told of no change");
        freshness.changed.store(true, Ordering::Release);
        assert!(!freshness.current(young), "a change is read at once");
        freshness.changed.store(false, Ordering::Release);
        freshness.watching.store(false, Ordering::Release);
        assert!(
            !freshness.current(old),
            "the watch failed: read every few seconds again"
        );
    }
}
