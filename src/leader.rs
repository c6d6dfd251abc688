//! Leader election on a `coordination.k8s.io` Lease: of several controller processes exactly one
//! reconciles, and another takes over within the lease duration when it dies.
//!
//! The Lease is held and renewed by `kube-lease-manager`. A process that loses the Lease stops at
//! once (its caller exits, cutting the writes in flight), so two leaders never write at the same
//! time: nobody else may take the Lease before it expires, and the leader steps down before that.
//!
//! The manager only says the Lease is lost when a renewal is answered with someone else's Lease;
//! a renewal that fails or hangs (the API server unreachable from here) never says anything, while
//! the Lease expires and another process takes it. So a watchdog also reads the Lease, each read
//! bounded by a timeout, and steps down when no renewal is confirmed within the lease duration
//! minus a margin ([`LeaderElection::hold`]).

use std::{
    future::Future,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

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
    /// Ends with the reason to step down when no renewal is confirmed in time.
    watchdog: JoinHandle<String>,
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
        let manager = LeaseManagerBuilder::new(client.clone(), &self.lease)
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
                // The Lease may have been won in the moment the signal came (the write landed,
                // its answer not yet read): handed over now, not left to expire.
                release_if_held(&client, &self.namespace, &self.lease, &self.identity).await;
                return Ok(None);
            }
        }
        info!(identity = self.identity, "became the leader");
        let leases: Api<Lease> = Api::namespaced(client, &self.namespace);
        let (lease, identity) = (self.lease.clone(), self.identity.clone());
        let look_timeout = self.look_timeout();
        let look = move || {
            let (leases, lease, identity) = (leases.clone(), lease.clone(), identity.clone());
            async move { look(&leases, &lease, &identity).await }
        };
        let watchdog = tokio::spawn(watchdog(
            look,
            SystemTime::now(),
            self.hold(),
            self.duration.saturating_sub(self.grace),
            self.look_period(),
            look_timeout,
        ));
        Ok(Some(Leadership {
            held,
            task,
            watchdog,
        }))
    }

    /// How long after its last confirmed renewal this process still counts as the leader: the
    /// lease duration minus a margin (half the grace, at least a second when the grace allows it),
    /// so it stops before the Lease expires and another process may take it. The manager renews
    /// `grace` before expiry, so a renewal that works lands well before this.
    pub fn hold(&self) -> Duration {
        let margin = (self.grace / 2).max(Duration::from_secs(1).min(self.grace));
        self.duration.saturating_sub(margin)
    }

    /// How often the watchdog reads the Lease.
    fn look_period(&self) -> Duration {
        (self.grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// The longest one read of the Lease (or one renewal) may take.
    pub fn look_timeout(&self) -> Duration {
        (self.grace / 2).max(Duration::from_millis(200))
    }
}

/// What one read of the Lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// This process holds it, last renewed then.
    Held(SystemTime),
    /// Another process holds it, or nobody does.
    NotHeld,
}

/// Clears the Lease's holder if it is `identity`, on condition nothing changed since it was read
/// (the patch carries the resourceVersion read, so it fails once another process took the Lease);
/// a failure is logged: the Lease then expires.
async fn release_if_held(client: &Client, namespace: &str, lease: &str, identity: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let version = match leases.get_opt(lease).await {
        Ok(Some(found))
            if found
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(identity) =>
        {
            found.metadata.resource_version
        }
        Ok(_) => return,
        Err(e) => {
            warn!(lease, error = %e, "could not read the Lease to release it");
            return;
        }
    };
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": version },
        "spec": { "holderIdentity": null },
    });
    let params = kube::api::PatchParams::default();
    match leases
        .patch(lease, &params, &kube::api::Patch::Merge(&patch))
        .await
    {
        Ok(_) => info!(
            lease,
            identity, "released the Lease won as the process stopped"
        ),
        Err(e) => warn!(lease, error = %e, "could not release the Lease; it expires instead"),
    }
}

/// Reads the Lease: who holds it and when it was renewed.
async fn look(leases: &Api<Lease>, lease: &str, identity: &str) -> Result<Seen, String> {
    let found = leases.get(lease).await.map_err(|e| e.to_string())?;
    let spec = found.spec.unwrap_or_default();
    match (spec.holder_identity.as_deref(), spec.renew_time) {
        (Some(holder), Some(renewed)) if holder == identity => {
            Ok(Seen::Held(SystemTime::from(renewed.0)))
        }
        _ => Ok(Seen::NotHeld),
    }
}

/// When leadership renewed at `renewed` ends, `hold` later, as an instant of this process.
fn deadline(renewed: SystemTime, hold: Duration) -> Instant {
    let until = renewed + hold;
    let left = until
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// Reads the Lease every `period` (each read given at most `look_timeout`) and returns why to step
/// down: the Lease is seen held by another, or no renewal is confirmed within `hold` of the last
/// one. A read that fails or hangs confirms nothing; the deadline does not wait for it.
///
/// After a confirmed renewal the next is not due for `quiet` (the manager renews `grace` before
/// expiry), so the Lease is not read again before then: a healthy leader reads it about once
/// per renewal, not every `period`.
async fn watchdog<F, Fut>(
    mut look: F,
    renewed: SystemTime,
    hold: Duration,
    quiet: Duration,
    period: Duration,
    look_timeout: Duration,
) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen, String>>,
{
    let mut until = deadline(renewed, hold);
    let mut next_due = deadline(renewed, quiet);
    loop {
        let wait = next_due
            .saturating_duration_since(Instant::now())
            .max(period);
        let step = async {
            tokio::time::sleep(wait).await;
            tokio::time::timeout(look_timeout, look()).await
        };
        match tokio::time::timeout_at(until.into(), step).await {
            Err(_) => {
                return format!(
                    "the Lease was not renewed within {} s of its last renewal",
                    hold.as_secs_f32()
                );
            }
            Ok(Err(_)) => warn!(
                timeout = ?look_timeout,
                "reading the leader Lease timed out"
            ),
            Ok(Ok(Err(error))) => warn!(error, "could not read the leader Lease"),
            Ok(Ok(Ok(Seen::NotHeld))) => return "another process holds the Lease".into(),
            Ok(Ok(Ok(Seen::Held(at)))) => {
                until = until.max(deadline(at, hold));
                next_due = next_due.max(deadline(at, quiet));
            }
        }
    }
}

impl Leadership {
    /// Resolves when the Lease is lost (taken, or not renewed in time), with why.
    pub async fn lost(&mut self) -> String {
        tokio::select! {
            _ = self.held.wait_for(|held| !*held) => "another process took the Lease".into(),
            why = &mut self.watchdog => why.unwrap_or_else(|e| format!("the Lease watchdog failed: {e}")),
        }
    }

    /// Gives the Lease up, so that another process takes over at once rather than after expiry.
    pub async fn release(self) {
        self.watchdog.abort();
        drop(self.held);
        match self.task.await {
            Ok(Ok(_)) => info!("released the leader Lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "the leader election task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    const HOLD: Duration = Duration::from_millis(600);
    const PERIOD: Duration = Duration::from_millis(50);
    const LOOK_TIMEOUT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn a_renewal_that_hangs_ends_leadership_at_the_deadline() {
        let started = Instant::now();
        let why = watchdog(
            std::future::pending::<Result<Seen, String>>,
            SystemTime::now(),
            HOLD,
            Duration::ZERO,
            PERIOD,
            LOOK_TIMEOUT,
        )
        .await;
        let took = started.elapsed();
        assert!(why.contains("not renewed"), "{why}");
        assert!(
            took >= HOLD - Duration::from_millis(20) && took < HOLD + Duration::from_millis(300),
            "stepped down after {took:?}, the deadline was {HOLD:?}"
        );
    }

    #[tokio::test]
    async fn failing_reads_do_not_extend_leadership() {
        let started = Instant::now();
        let why = watchdog(
            || async { Err::<Seen, _>("connection refused".to_string()) },
            SystemTime::now(),
            HOLD,
            Duration::ZERO,
            PERIOD,
            LOOK_TIMEOUT,
        )
        .await;
        assert!(why.contains("not renewed"), "{why}");
        assert!(started.elapsed() < HOLD + Duration::from_millis(300));
    }

    #[tokio::test]
    async fn confirmed_renewals_keep_leadership_and_another_holder_ends_it_at_once() {
        let looks = Arc::new(AtomicUsize::new(0));
        let counted = looks.clone();
        let started = Instant::now();
        let why = watchdog(
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    // Renewed at every read for three deadlines' worth, then taken.
                    if PERIOD * u32::try_from(n).unwrap_or(u32::MAX) < HOLD * 3 {
                        Ok(Seen::Held(SystemTime::now()))
                    } else {
                        Ok(Seen::NotHeld)
                    }
                }
            },
            SystemTime::now(),
            HOLD,
            Duration::ZERO,
            PERIOD,
            LOOK_TIMEOUT,
        )
        .await;
        assert_eq!(why, "another process holds the Lease");
        assert!(
            started.elapsed() > HOLD * 2,
            "held past the first deadline while renewals were confirmed"
        );
    }

    #[tokio::test]
    async fn a_healthy_leader_reads_the_lease_about_once_per_renewal_not_every_period() {
        // Renewed every QUIET (the manager's cadence); the deadline is HOLD after a renewal.
        const QUIET: Duration = Duration::from_millis(400);
        let looks = Arc::new(AtomicUsize::new(0));
        let counted = looks.clone();
        let start = SystemTime::now();
        let watched = watchdog(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    // The latest renewal the manager made on its cadence.
                    let since = SystemTime::now().duration_since(start).unwrap_or_default();
                    let renewals = since.as_millis() / QUIET.as_millis();
                    let at = start + QUIET * u32::try_from(renewals).unwrap_or(0);
                    Ok(Seen::Held(at))
                }
            },
            start,
            HOLD,
            QUIET,
            PERIOD,
            LOOK_TIMEOUT,
        );
        let ran = tokio::time::timeout(Duration::from_secs(2), watched).await;
        assert!(ran.is_err(), "still the leader: {ran:?}");
        let n = looks.load(Ordering::SeqCst);
        // 2 s of 400 ms renewals: 5 renewals; every 50 ms would be 40 reads.
        assert!((4..=12).contains(&n), "{n} reads of the Lease in 2 s");
    }

    #[test]
    fn the_leader_steps_down_before_the_lease_expires_and_after_the_manager_renews() {
        let election = |duration: u64, grace: u64| LeaderElection {
            namespace: "sluice".into(),
            lease: "sluice-controller".into(),
            identity: "me".into(),
            duration: Duration::from_secs(duration),
            grace: Duration::from_secs(grace),
        };
        for (duration, grace) in [(15, 5), (4, 2), (30, 10)] {
            let e = election(duration, grace);
            assert!(e.hold() < e.duration, "{duration}/{grace}: {:?}", e.hold());
            assert!(
                e.hold() > e.duration - e.grace,
                "{duration}/{grace}: the manager renews at {:?}, the deadline is {:?}",
                e.duration - e.grace,
                e.hold()
            );
            assert!(e.look_timeout() < e.grace);
        }
    }
}
