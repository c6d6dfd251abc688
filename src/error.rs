//! One error type for the controllers; each variant says whether it passes on its own (retry
//! with backoff) and carries a short reason shared by logs, events and metrics.

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
    /// Someone else changed the rollout's status between our read and our write.
    #[error("the status of {0} changed while it was being reconciled; planning again")]
    Conflict(String),
    /// The caches are not filled yet.
    #[error("waiting for the caches to fill: {0}")]
    NotReady(String),
}

impl Error {
    /// The short reason for logs, events and the `reason` label of error metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Write { .. } => "WriteFailed",
            Self::Conflict(_) => "Conflict",
            Self::NotReady(_) => "NotReady",
        }
    }

    /// How long to wait before trying again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Conflict(_) => Duration::from_millis(50),
            Self::NotReady(_) => Duration::from_millis(500),
            Self::Write { source, .. } if is_conflict(source) => Duration::from_millis(50),
            Self::Write { .. } => Duration::from_secs(5),
        }
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
