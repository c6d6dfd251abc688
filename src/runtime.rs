//! The runtime both controllers are built on, so that they are mirror images: which objects they
//! handle ([`Scope`]), how a watched custom resource is read (through `DeserializeGuard`, trimmed
//! of what no decision reads), how a failed reconcile is retried ([`Retry`]: the error's own
//! delay, else a per-object backoff), how events are recorded ([`publish`]) and an unreadable
//! object reported ([`report_unreadable`]), and how a stop drains the work in flight
//! ([`drain_within`]).

use std::{future::Future, time::Duration};

use k8s_openapi::{
    NamespaceResourceScope, api::core::v1::ObjectReference,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, Resource,
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::{controller, events::EventType},
};
use sluice_api::{
    model::{NOTE_LIMIT, cut},
    vocab::{INSTANCE_ID_LABEL, LAST_APPLIED_ANNOTATION, reason},
};
use tracing::{info, warn};

use crate::{
    error::{Backoff, Error},
    events::Recorder,
};

/// Which objects a controller handles and how many at once; both controllers take the same
/// command-line settings.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only this namespace; every namespace when `None`.
    pub namespace: Option<String>,
    /// Objects reconciled at once.
    pub concurrency: u16,
    /// Only objects labelled with this controller instance id (and, without one, only unlabelled
    /// objects), so two installations never handle the same object.
    pub instance_id: Option<String>,
}

impl Scope {
    /// An API handle over the namespace the controller watches, or over all of them.
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self.namespace.as_deref() {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }

    /// The label selector that keeps another installation's objects out of the watch: the API
    /// server filters them, so they are never cached.
    pub fn instance_selector(&self) -> String {
        match self.instance_id.as_deref() {
            Some(id) => format!("{INSTANCE_ID_LABEL}={id}"),
            None => format!("!{INSTANCE_ID_LABEL}"),
        }
    }

    /// kube-runtime's controller settings for this scope.
    pub fn controller_config(&self) -> controller::Config {
        controller::Config::default().concurrency(self.concurrency.max(1))
    }
}

/// A watched object's namespace and name: the key of its backoff, metric series and notes.
pub type Key = (String, String);

/// The key of an object's metadata.
pub fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// A guarded object's metadata, whether or not the rest of it could be read.
pub fn meta_of<K: Resource>(guard: &DeserializeGuard<K>) -> &ObjectMeta {
    match &guard.0 {
        Ok(object) => object.meta(),
        Err(invalid) => &invalid.metadata,
    }
}

/// Drops what no decision reads from a cached object: its managed fields and kubectl's
/// last-applied copy, often the larger part of a small object; a guarded object (readable or
/// not) is trimmed through its metadata. Status writes replace everything but the status from
/// the controller's own copy, so nothing dropped is written.
pub fn trim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// One event to record on an object.
#[derive(Clone, Copy, Debug)]
pub struct Note<'a> {
    /// Normal or Warning.
    pub type_: EventType,
    /// The short reason (from [`sluice_api::vocab::reason`]).
    pub reason: &'a str,
    /// What happened, in words; cut to what the API accepts.
    pub message: &'a str,
    /// What the controller was doing (`Reconcile`, `Analyse`).
    pub action: &'a str,
}

/// Records an event at once, its note cut by bytes to what the API accepts; a failure to record
/// is logged, never a failed reconcile.
pub async fn publish(recorder: &Recorder, reference: &ObjectReference, note: Note<'_>) {
    recorder.publish(reference, note).await;
}

/// The message for an object the types cannot read, cut to what a condition or event accepts.
pub fn unreadable_message<K: Resource<DynamicType = ()>>(invalid: &InvalidObject) -> String {
    cut(
        &format!("the {} cannot be read: {}", K::kind(&()), invalid.error),
        NOTE_LIMIT,
    )
}

/// Tells the user about an object the types cannot read (a field of the wrong type, a duration
/// that is not one): a warning in the log and a Warning `InvalidSpec` event on the object. Each
/// controller also puts the fault on the object's status, in its own shape.
pub async fn report_unreadable<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    invalid: &InvalidObject,
    action: &str,
) {
    let meta = &invalid.metadata;
    warn!(
        namespace = meta.namespace.as_deref(),
        name = meta.name.as_deref(),
        kind = %K::kind(&()),
        error = %invalid.error,
        "cannot read object"
    );
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    };
    let message = unreadable_message::<K>(invalid);
    let note = Note {
        type_: EventType::Warning,
        reason: reason::INVALID_SPEC,
        message: &message,
        action,
    };
    publish(recorder, &reference, note).await;
}

/// The first wait after a failure that may last; it doubles with each failure in a row.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between attempts after failures that may last.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// When to try a failed reconcile again, the same rule for both controllers: an error that
/// passes on its own (a conflict, caches filling) after its own short delay; one that may last
/// (a refused write, an unreadable Secret) after a per-object backoff, doubling from 1 s to
/// 5 minutes and starting over after a success.
#[derive(Debug)]
pub struct Retry {
    backoff: Backoff<Key>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
        }
    }
}

impl Retry {
    /// How long to wait after `error` stopped the reconcile of `key`.
    pub fn after(&self, key: Key, error: &Error) -> Duration {
        error
            .retry_after()
            .unwrap_or_else(|| self.backoff.failed(key))
    }

    /// A reconcile of `key` succeeded (or the object is gone): its next failure starts over.
    pub fn succeeded(&self, key: &Key) {
        self.backoff.reset(key);
    }
}

/// Runs a controller until it ends after `shutdown`, but waits at most `grace` once `shutdown`
/// has come: kube-runtime holds its reconciles until the watched store's first list is in, so a
/// stop that comes before that list would otherwise wait for a cache nobody fills any more, and
/// a reconcile still waiting on a slow answer is cut rather than outliving the pod's termination
/// grace period. A cut reconcile is a controller killed between two writes, which the plan
/// resumes from what it reads.
pub async fn drain_within(
    name: &str,
    controller: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = controller => info!("{name} stopped"),
        () = deadline => warn!(grace = ?grace, "{name} stopped with work still in flight after its grace period"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller that never ends once stopped (its store never filled) still lets the process
    /// stop: after the grace, not never.
    #[tokio::test]
    async fn a_stop_ends_a_controller_that_would_wait_forever() {
        let stuck = std::future::pending::<()>();
        let drained = drain_within("stuck", stuck, async {}, Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("the drain ends after its grace");
    }

    /// Work that finishes within the grace is waited for, not cut.
    #[tokio::test]
    async fn a_stop_waits_for_work_that_finishes_within_the_grace() {
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let work = {
            let finished = finished.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        };
        drain_within("busy", work, async {}, Duration::from_secs(30)).await;
        assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    }

    fn forbidden() -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            message: "secrets \"db\" is forbidden".into(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn both_controllers_retry_a_passing_error_soon_and_back_off_from_one_that_may_last() {
        let retry = Retry::default();
        let run = || ("shop".to_owned(), "web-1".to_owned());
        let secret = || Error::Secret {
            name: "db".into(),
            run: "web-1".into(),
            source: forbidden(),
        };
        // A conflict passes on its own: soon, and it does not grow.
        for _ in 0..3 {
            assert_eq!(
                retry.after(run(), &Error::Conflict("web-1".into())),
                Duration::from_millis(50)
            );
        }
        // An unreadable Secret may last: 1 s, 2 s, 4 s … for this run only.
        let waits: Vec<u64> = (0..3)
            .map(|_| retry.after(run(), &secret()).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4]);
        let other = ("shop".to_owned(), "web-2".to_owned());
        assert_eq!(retry.after(other, &secret()), Duration::from_secs(1));
        // A success (or the run's deletion) starts it over.
        retry.succeeded(&run());
        assert_eq!(retry.after(run(), &secret()), Duration::from_secs(1));
    }

    #[test]
    fn the_instance_selector_keeps_other_installations_objects_out() {
        let labelled = Scope {
            instance_id: Some("blue".into()),
            ..Scope::default()
        };
        assert_eq!(
            labelled.instance_selector(),
            format!("{INSTANCE_ID_LABEL}=blue")
        );
        assert_eq!(
            Scope::default().instance_selector(),
            format!("!{INSTANCE_ID_LABEL}")
        );
    }
}
