//! One error type for both controllers; each variant says whether it passes on its own (retry
//! with backoff) and carries a short reason shared by logs, events and metrics.

use sluice_api::vocab::reason;
use std::time::Duration;

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write to the API failed.
    #[error("{action}: {source}")]
    Write {
        /// What was being done, e.g. `scaling ReplicaSet web-5d8f to 3`.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The API refused to create the ReplicaSet of a new version (a quota, an admission webhook,
    /// a validation error): reported on the rollout as Argo Rollouts does, `ReplicaSetCreateError`.
    #[error("Failed to create new replica set \"{name}\": {}", api_message(source))]
    CreateReplicaSet {
        /// The ReplicaSet.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The name a new object needs is taken by one that is not it (another owner, another pod
    /// template): `status.collisionCount` moves the hash, so the next attempt gets another name.
    #[error("hash collision: {0}")]
    Collision(String),
    /// Someone else changed the rollout's status between our read and our write.
    #[error("the status of {0} changed while it was being reconciled; planning again")]
    Conflict(String),
    /// The caches are not filled yet.
    #[error("waiting for the caches to fill: {0}")]
    NotReady(String),
    /// A traffic router's objects cannot carry what the plan decided (one missing, no route
    /// naming the Services, another writer changing it back).
    #[error("traffic router {router}: {message}")]
    Router {
        /// The router (`gatewayAPI`, `traefik`, …).
        router: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// A Secret an AnalysisRun's arguments read could not be fetched.
    #[error("reading Secret {name} for AnalysisRun {run}: {source}")]
    Secret {
        /// The Secret.
        name: String,
        /// The run.
        run: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The short reason for logs, events and the `reason` label of error metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Write { .. } => reason::WRITE_FAILED,
            Self::CreateReplicaSet { .. } => reason::REPLICA_SET_CREATE_ERROR,
            Self::Collision(_) => reason::HASH_COLLISION,
            Self::Conflict(_) => reason::CONFLICT,
            Self::NotReady(_) => reason::NOT_READY,
            Self::Secret { .. } => reason::SECRET_UNAVAILABLE,
            Self::Router { .. } => reason::TRAFFIC_ROUTING_ERROR,
        }
    }

    /// How long to wait before trying again when the error passes on its own (a conflict, caches
    /// filling); `None` for a failure that may last (a refused write), which backs off per rollout
    /// ([`Backoff`]).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Conflict(_) => Some(Duration::from_millis(50)),
            Self::NotReady(_) => Some(Duration::from_millis(500)),
            Self::Write { source, .. } if is_conflict(source) => Some(Duration::from_millis(50)),
            Self::Write { .. }
            | Self::CreateReplicaSet { .. }
            | Self::Collision(_)
            | Self::Secret { .. }
            | Self::Router { .. } => None,
        }
    }

    /// The failure in words for a person: the API server's own message, without the client's
    /// wrapping of it.
    pub fn message(&self) -> String {
        match self {
            Self::Write { action, source } => format!("{action}: {}", api_message(source)),
            other => other.to_string(),
        }
    }

    /// Whether the failure is worth telling the user on the rollout (a condition and a Warning
    /// event): not a conflict or the caches filling, which pass on their own.
    pub fn is_reported(&self) -> bool {
        self.retry_after().is_none()
    }
}

/// The API server's own words for a failed request (its Status message), else the error.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Per-key retry delays after failures that may last: doubling from `base` up to `cap`, and back
/// to `base` after a success, so a rollout whose writes keep being refused is retried less and
/// less often instead of every few seconds forever, and one that recovers is not held back.
#[derive(Debug)]
pub struct Backoff<K> {
    failures: std::sync::Mutex<std::collections::HashMap<K, u32>>,
    base: Duration,
    cap: Duration,
}

impl<K: std::hash::Hash + Eq> Backoff<K> {
    /// A backoff starting at `base` and never waiting more than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            failures: std::sync::Mutex::default(),
            base,
            cap,
        }
    }

    /// Notes one more failure for `key`; returns how long to wait before the next attempt.
    pub fn failed(&self, key: K) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key).or_insert(0);
        let delay = self
            .base
            .saturating_mul(2_u32.saturating_pow(*count))
            .min(self.cap);
        *count = count.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`: it succeeded (or is gone).
    pub fn reset(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// Whether an API error is a 409 Conflict.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether an API error says the object already exists.
pub fn is_already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// Whether an API error says the object does not exist.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_writes_back_off_doubling_per_key_up_to_the_cap_and_start_over_after_a_success() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (0..6).map(|_| backoff.failed("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(
            backoff.failed("b"),
            Duration::from_secs(1),
            "another rollout starts at the base"
        );
        backoff.reset(&"a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(1));
    }

    #[test]
    fn only_failures_that_may_last_are_reported_and_backed_off() {
        let refused = kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            message: "exceeded quota: q, requested: count/replicasets.apps=1".into(),
            ..kube::core::Status::default()
        }));
        let create = Error::CreateReplicaSet {
            name: "web-abc".into(),
            source: refused,
        };
        assert!(create.is_reported());
        assert_eq!(create.reason(), "ReplicaSetCreateError");
        assert_eq!(
            create.to_string(),
            "Failed to create new replica set \"web-abc\": exceeded quota: q, requested: count/replicasets.apps=1"
        );
        assert!(!Error::Conflict("web".into()).is_reported());
        assert!(!Error::NotReady("caches".into()).is_reported());
    }
}
