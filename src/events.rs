//! Kubernetes events, published off the reconcile path.
//!
//! A reconcile queues its events and returns; one task per controller publishes them in the
//! order they came, as client-go's event broadcaster does. A rollout's next step never waits on
//! an event's round trip, and when the API server is slow, events wait in the queue rather than
//! holding up rollouts. A full queue drops new events (counted in `sluice_events_dropped_total`):
//! an event is a note for people, never state the controller relies on.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, Recorder, Reporter},
};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// How many events may wait to be published; client-go's broadcaster keeps 1,000.
const QUEUE: usize = 1000;

/// How long the events still queued at shutdown may take to be published.
pub const DRAIN_AT_MOST: Duration = Duration::from_secs(3);

/// The queue of one controller's events; cheap to clone, shared by every reconcile.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<(Event, ObjectReference)>,
    metrics: Arc<Metrics>,
}

impl Events {
    /// Starts publishing as `reporter`. The task ends once every clone of the returned `Events`
    /// is dropped and the queue is empty; await it (bounded by [`DRAIN_AT_MOST`]) at shutdown.
    pub fn start(
        client: Client,
        reporter: Reporter,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (events, queued) = Self::new(QUEUE, metrics);
        let recorder = Recorder::new(client, reporter);
        (events, tokio::spawn(publish_all(recorder, queued)))
    }

    fn new(
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::Receiver<(Event, ObjectReference)>) {
        let (queue, queued) = mpsc::channel(capacity);
        (Self { queue, metrics }, queued)
    }

    /// Queues `event` about `regarding` and returns at once; drops it when the queue is full.
    pub fn publish(&self, event: Event, regarding: ObjectReference) {
        let (why, (event, regarding)) = match self.queue.try_send((event, regarding)) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(dropped)) => ("the event queue is full", dropped),
            // Only once the publisher has stopped, at shutdown.
            Err(mpsc::error::TrySendError::Closed(dropped)) => {
                ("the event publisher stopped", dropped)
            }
        };
        self.metrics.event_dropped();
        warn!(
            namespace = regarding.namespace.as_deref(),
            name = regarding.name.as_deref(),
            reason = event.reason,
            why,
            "dropping an event"
        );
    }
}

/// Publishes queued events one after another until the queue is closed and empty.
async fn publish_all(recorder: Recorder, mut queued: mpsc::Receiver<(Event, ObjectReference)>) {
    while let Some((event, regarding)) = queued.recv().await {
        if let Err(e) = recorder.publish(&event, &regarding).await {
            warn!(
                namespace = regarding.namespace.as_deref(),
                name = regarding.name.as_deref(),
                reason = event.reason,
                error = %e,
                "could not record an event"
            );
        }
    }
    debug!("event queue drained");
}

/// Waits for `publishing` (from [`Events::start`]) to drain the queue, at most [`DRAIN_AT_MOST`].
pub async fn drain(publishing: JoinHandle<()>, controller: &str) {
    match tokio::time::timeout(DRAIN_AT_MOST, publishing).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(controller, error = %e, "the event publisher failed"),
        Err(_) => warn!(
            controller,
            "events still queued after {DRAIN_AT_MOST:?} at shutdown were not published"
        ),
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::events::EventType;

    use super::*;

    fn event(reason: &str) -> (Event, ObjectReference) {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: None,
            action: "Reconcile".into(),
            secondary: None,
        };
        let regarding = ObjectReference {
            name: Some("app".into()),
            ..ObjectReference::default()
        };
        (event, regarding)
    }

    #[tokio::test]
    async fn a_full_queue_drops_new_events_instead_of_waiting_and_counts_them() {
        let metrics = Arc::new(Metrics::new());
        let (events, mut queued) = Events::new(2, metrics.clone());
        for reason in ["First", "Second", "Third"] {
            let (event, regarding) = event(reason);
            events.publish(event, regarding);
        }
        let kept: Vec<String> = [queued.recv().await, queued.recv().await]
            .into_iter()
            .map(|e| e.expect("an event").0.reason)
            .collect();
        assert_eq!(kept, ["First", "Second"], "kept in order");
        assert!(queued.try_recv().is_err(), "the third was dropped");
        assert!(
            metrics.encode().contains("sluice_events_dropped_total 1"),
            "{}",
            metrics.encode()
        );
    }
}
