//! The canary and blue/green examples under Argo CD: health through the steps, the Rollout
//! actions, self-heal and the diff modes, and server-side apply.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use sluice_testkit::manifests::status;

use crate::app::{App, MANUAL_PAUSE, Policy, canary, example, pods_of, stays_synced};

#[tokio::test]
async fn a_synced_canary_is_synced_and_healthy() {
    let mut app = App::new(
        "argocd-sync",
        &canary("1.0"),
        "guestbook",
        Policy::automated(),
    )
    .await;
    let view = app.healthy(120).await;
    assert_eq!(view.rollout_message, "", "{view:?}");
}

#[tokio::test]
async fn a_commit_pauses_at_the_manual_step_and_actions_move_it_on() {
    let mut app = App::new(
        "argocd-steps",
        &canary("1.0"),
        "guestbook",
        Policy::automated(),
    )
    .await;
    app.healthy(120).await;
    let first = app.seen.len();

    app.commit(&canary("1.1"), "guestbook 1.1").await;
    app.at_manual_pause().await;
    assert!(
        app.seen[first..].iter().any(|v| v.rollout == "Progressing"),
        "never Progressing on the way to the pause: {:#?}",
        app.seen
    );
    let actions = app.actions().await;
    for (action, enabled) in [
        ("resume", true),
        ("promote-full", true),
        ("abort", true),
        ("retry", false),
    ] {
        assert!(
            actions.contains(&(action.to_string(), enabled)),
            "{action} should be {}: {actions:?}",
            if enabled { "enabled" } else { "disabled" }
        );
    }

    // resume: past the manual pause, to the next steps.
    app.action("resume").await;
    app.wait_rollout(60, "the canary past its manual pause", |r| {
        status(r).current_step_index > Some(MANUAL_PAUSE)
    })
    .await;
    // promote-full: the remaining steps skipped.
    app.action("promote-full").await;
    app.healthy(120).await;
    let r = app.get_rollout().await;
    assert_eq!(
        sluice_testkit::manifests::image(&r),
        "ghcr.io/example/guestbook:1.1"
    );
}

#[tokio::test]
async fn abort_is_degraded_and_retry_restarts_the_update() {
    let mut app = App::new(
        "argocd-abort",
        &canary("1.0"),
        "guestbook",
        Policy::automated(),
    )
    .await;
    app.healthy(120).await;
    app.commit(&canary("1.1"), "guestbook 1.1").await;
    app.at_manual_pause().await;

    app.action("abort").await;
    let view = app
        .wait(60, "Degraded after abort", |v| v.is("Synced", "Degraded"))
        .await;
    assert!(
        !view.rollout_message.is_empty(),
        "Degraded without a message: {view:?}"
    );
    app.wait_rollout(60, "the canary scaled away after abort", |r| {
        let s = status(r);
        s.abort == Some(true) && s.updated_replicas == Some(0)
    })
    .await;
    let actions = app.actions().await;
    assert!(
        actions.contains(&("retry".to_string(), true)),
        "{actions:?}"
    );

    app.action("retry").await;
    app.wait_rollout(60, "the update restarted", |r| {
        let s = status(r);
        s.abort != Some(true) && s.updated_replicas > Some(0)
    })
    .await;
    // The Application's health follows the Rollout's at its next reconciliation.
    app.wait(60, "no longer Degraded after retry", |v| {
        v.health != "Degraded" && v.rollout != "Degraded"
    })
    .await;
    let degraded_until = app.seen.len();
    app.at_manual_pause().await;
    assert!(
        app.seen[degraded_until..]
            .iter()
            .all(|v| v.health != "Degraded" && v.rollout != "Degraded"),
        "Degraded again after retry: {:#?}",
        app.seen
    );
    app.action("promote-full").await;
    app.healthy(120).await;
}

#[tokio::test]
async fn blue_green_is_suspended_until_promoted() {
    let bluegreen = |version: &str| {
        example("bluegreen.yaml", "checkout").replace(
            "ghcr.io/example/checkout:2.3.0",
            &format!("ghcr.io/example/checkout:{version}"),
        )
    };
    let mut app = App::new(
        "argocd-bluegreen",
        &bluegreen("2.3.0"),
        "checkout",
        Policy::automated(),
    )
    .await;
    app.healthy(120).await;

    app.commit(&bluegreen("2.4.0"), "checkout 2.4.0").await;
    app.wait(120, "Suspended waiting for promotion", |v| {
        v.is("Synced", "Suspended")
    })
    .await;
    let r = app.get_rollout().await;
    let s = status(&r);
    assert_ne!(
        s.current_pod_hash, s.stable_rs,
        "Suspended before the new version came up: {s:?}"
    );
    app.action("resume").await;
    app.healthy(120).await;
}

#[tokio::test]
async fn restart_replaces_the_pods_and_stays_synced() {
    let mut app = App::new(
        "argocd-restart",
        &canary("1.0"),
        "guestbook",
        Policy::self_heal(),
    )
    .await;
    app.healthy(120).await;
    let hash = status(&app.get_rollout().await)
        .current_pod_hash
        .expect("a current pod hash");
    let before = pods_of(&app, &hash).await;
    assert_eq!(before.len(), 5, "{before:?}");

    // `restart` writes spec.restartAt, which is not in Git: selfHeal must leave it.
    app.action("restart").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let view = app.get(false).await;
        if let Err(broken) = stays_synced(&view) {
            panic!("{broken} during the restart; seen:\n{:#?}", app.seen);
        }
        let now = pods_of(&app, &hash).await;
        if now.len() == 5 && now.iter().all(|p| !before.contains(p)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pods were not all replaced within 120 s: before {before:?}, now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = app.get_rollout().await;
    assert!(r.spec.restart_at.is_some(), "restartAt was reverted");
    app.wait_until(
        120,
        "Synced and Healthy after the restart",
        |v| v.is("Synced", "Healthy"),
        stays_synced,
    )
    .await;
}

/// A canary synced by an Application with `selfHeal`, with client-side or server-side diff:
/// never OutOfSync through the rollout and after it, and neither a manual sync nor a self-heal
/// during the canary restarts it.
async fn self_heal(test: &str, server_side_diff: bool) {
    let policy = Policy {
        server_side_diff,
        ..Policy::self_heal()
    };
    let mut app = App::new(test, &canary("1.0"), "guestbook", policy).await;
    if server_side_diff {
        // Server-side diff predicts the live Service from a dry-run apply of Git's, and a
        // Service's selector is atomic for server-side apply: the key Sluice added to it is
        // predicted gone. The Services are OutOfSync until that key is ignored.
        app.ignore_the_selector_key_once_seen().await;
    }
    app.healthy(120).await;
    app.hold(15, "Healthy", stays_synced).await;

    app.commit(&canary("1.1"), "guestbook 1.1").await;
    app.at_manual_pause_with(stays_synced).await;
    let paused = status(&app.get_rollout().await);
    let hash = paused.current_pod_hash.clone().expect("a current pod hash");
    let pods = pods_of(&app, &hash).await;
    assert!(!pods.is_empty(), "no canary pods at the pause");

    // A sync by hand during the canary: nothing to change, nothing restarted.
    app.sync_by_hand(|v| {
        stays_synced(v)?;
        (v.rollout == "Suspended")
            .then_some(())
            .ok_or(format!("not Suspended: {v:?}"))
    })
    .await;

    // Drift in a field Git owns: self-heal writes it back, and the canary stays where it was.
    let patch = json!({ "spec": { "revisionHistoryLimit": 4 } });
    app.rollouts
        .patch(
            "guestbook",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("changing revisionHistoryLimit behind Argo CD's back");
    app.wait_rollout(90, "self-heal restoring revisionHistoryLimit", |r| {
        r.spec.revision_history_limit == Some(3)
    })
    .await;
    // The write-back is a new generation: Argo CD's health check says Progressing until Sluice
    // has observed it, and nothing else (no new pods, no new steps).
    app.hold(10, "Suspended after self-heal", |v| {
        let observing = v.rollout == "Progressing"
            && v.rollout_message == "Waiting for rollout spec update to be observed";
        (v.rollout == "Suspended" || observing)
            .then_some(())
            .ok_or(format!("{v:?}"))
    })
    .await;
    app.wait(60, "Synced and Suspended after self-heal", |v| {
        v.is("Synced", "Suspended")
    })
    .await;
    let after = status(&app.get_rollout().await);
    assert_eq!(after.current_step_index, Some(MANUAL_PAUSE), "{after:?}");
    assert_eq!(after.current_pod_hash, paused.current_pod_hash, "{after:?}");
    assert_eq!(
        pods_of(&app, &hash).await,
        pods,
        "the canary's pods were replaced"
    );

    app.promote_full_to_healthy().await;
    // After the update: the old ReplicaSet scaled down, the Services' selectors moved.
    app.hold(15, "Healthy after the update", |v| {
        stays_synced(v)?;
        (v.health == "Healthy")
            .then_some(())
            .ok_or(format!("{v:?}"))
    })
    .await;
}

#[tokio::test]
async fn self_heal_stays_synced_and_keeps_the_canary() {
    self_heal("argocd-selfheal", false).await;
}

#[tokio::test]
async fn self_heal_with_server_side_diff_stays_synced_and_keeps_the_canary() {
    self_heal("argocd-ssd", true).await;
}

/// Every selector the Services of the namespace were seen with, from a watch: `(service, has
/// Sluice's pod template hash key)`, in order.
struct Selectors {
    seen: Arc<Mutex<Vec<(String, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Selectors {
    fn watch(app: &App) -> Self {
        let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let record = seen.clone();
        let services = app.ns.api::<Service>();
        let task = tokio::spawn(async move {
            let events = watcher(services, watcher::Config::default()).applied_objects();
            let mut events = std::pin::pin!(events);
            while let Some(Ok(service)) = events.next().await {
                let keyed = service
                    .spec
                    .and_then(|s| s.selector)
                    .is_some_and(|s| s.contains_key("rollouts-pod-template-hash"));
                let name = service.metadata.name.unwrap_or_default();
                record.lock().unwrap().push((name, keyed));
            }
        });
        Self { seen, task }
    }

    /// The Services seen without the key since the watch started.
    fn unkeyed(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(_, keyed)| !keyed)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl Drop for Selectors {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Argo CD's server-side apply (`ServerSideApply=true`) applies with `--force-conflicts`, and a
/// Service's selector is one atomic field: the key Sluice added makes both Services OutOfSync, and
/// a sync (self-heal's too) puts Git's selector back over it. With that key ignored and the sync
/// respecting ignored fields, as docs/argocd.md says, no sync ever takes it away and the
/// Application stays Synced through a canary.
#[tokio::test]
async fn server_side_apply_keeps_the_selector_key_when_it_is_ignored_and_respected() {
    let policy = Policy {
        sync_options: vec!["ServerSideApply=true", "RespectIgnoreDifferences=true"],
        ..Policy::self_heal()
    };
    let mut app = App::new("argocd-ssa", &canary("1.0"), "guestbook", policy).await;
    app.ignore_the_selector_key_once_seen().await;
    app.healthy(120).await;
    app.settled_with_the_key().await;
    let selectors = Selectors::watch(&app);

    app.commit(&canary("1.1"), "guestbook 1.1").await;
    app.at_manual_pause_with(stays_synced).await;
    app.sync_by_hand(stays_synced).await;
    app.promote_full_to_healthy().await;
    assert_eq!(
        selectors.unkeyed(),
        Vec::<String>::new(),
        "a sync took Sluice's key out of a Service's selector"
    );
}
