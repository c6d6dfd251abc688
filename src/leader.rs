//! Leader election on a `coordination.k8s.io` Lease: of several controller processes exactly one
//! reconciles, and another takes over within the lease duration when it dies.
//!
//! The Lease is held and renewed by `kube-lease-manager`. A process that loses the Lease stops at
//! once (its caller exits), so two leaders never write at the same time: the old leader stops
//! renewing `grace` before the Lease expires, and nobody else may take it before it expires.

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};
use tracing::info;

/// Which Lease to contend for, and as whom.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease: String,
    /// This process's name in the Lease (the pod name in a cluster).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How long before expiry the holder renews.
    pub grace: Duration,
}

/// The Lease, held.
pub struct Leadership {
    held: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl LeaderElection {
    /// The identity of this process: `POD_NAME` in a cluster, else host name and pid.
    pub fn default_identity() -> String {
        std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "sluice".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// Waits until this process holds the Lease; `None` when `shutdown` resolves first.
    pub async fn acquire(
        &self,
        client: Client,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<Option<Leadership>> {
        let seconds = |d: Duration| d.as_secs().max(1);
        let manager = LeaseManagerBuilder::new(client, &self.lease)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(seconds(self.duration))
            .with_grace(seconds(self.grace))
            .with_field_manager("sluice")
            .build()
            .await
            .with_context(|| {
                format!(
                    "preparing leader election on Lease {}/{}",
                    self.namespace, self.lease
                )
            })?;
        let (mut held, task) = manager.watch().await;
        info!(
            lease = format!("{}/{}", self.namespace, self.lease),
            identity = self.identity,
            "waiting to become the leader"
        );
        let won = tokio::select! {
            won = held.wait_for(|held| *held) => Some(won.map(drop)),
            () = shutdown => None,
        };
        match won {
            Some(won) => {
                won.context("leader election stopped before this process won the Lease")?;
            }
            None => {
                drop(held);
                let _ = task.await;
                return Ok(None);
            }
        }
        info!(identity = self.identity, "became the leader");
        Ok(Some(Leadership { held, task }))
    }
}

impl Leadership {
    /// Resolves when the Lease is lost (not renewed in time, or taken).
    pub async fn lost(&mut self) {
        let _ = self.held.wait_for(|held| !*held).await;
    }

    /// Gives the Lease up, so that another process takes over at once rather than after expiry.
    pub async fn release(self) {
        drop(self.held);
        match self.task.await {
            Ok(Ok(_)) => info!("released the leader Lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "the leader election task failed"),
        }
    }
}
