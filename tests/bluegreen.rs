//! Blue/green rollouts end to end on the local cluster: the preview and active Services (read
//! back through the EndpointSlices the cluster builds from them, so "serves" means the pods a
//! client would reach), manual and automatic promotion, the scale-down delay, abort and retry, a
//! second update while the first waits, and a controller killed between the stages.
#[allow(dead_code)] // the canary tests use the rest of it
#[path = "canary/setup.rs"]
mod setup;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use k8s_openapi::api::{core::v1::Pod, discovery::v1::EndpointSlice};
use kube::{ResourceExt, api::ListParams};
use serde_json::{Value, json};
use setup::{Setup, blue_green_rollout as rollout, condition, create_service, status};
use sluice_api::{
    PauseReason, Rollout, RolloutConditionType, RolloutPhase, vocab::POD_TEMPLATE_HASH_LABEL,
};
use sluice_testkit::Controller;

/// A namespace with the Services `app-active` and `app-preview` and a running controller.
async fn setup(test: &str) -> Setup {
    let t = Setup::new(test).await;
    for name in ["app-active", "app-preview"] {
        create_service(&t.ns, name).await;
    }
    t
}

fn paused_for_promotion(r: &Rollout) -> bool {
    status(r)
        .pause_conditions
        .iter()
        .any(|c| c.reason == PauseReason::BlueGreenPause)
}

fn active_selector(r: &Rollout) -> Option<String> {
    status(r).blue_green.and_then(|b| b.active_selector)
}

/// The pods a Service sends traffic to, as its EndpointSlices list them (ready endpoints only).
async fn served(t: &Setup, service: &str) -> BTreeSet<String> {
    let slices =
        t.ns.api::<EndpointSlice>()
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
            .await
            .expect("listing EndpointSlices");
    slices
        .items
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect()
}

/// The running pods of one version.
async fn pods_of(t: &Setup, hash: &str) -> BTreeSet<String> {
    t.ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
        .await
        .expect("listing pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect()
}

/// Waits until the Service serves exactly the `replicas` pods of version `hash`.
async fn wait_serves(t: &Setup, service: &str, hash: &str, replicas: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (served, pods) = (served(t, service).await, pods_of(t, hash).await);
        if pods.len() == replicas && served == pods {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} serves {served:?}, not the {replicas} pods of {hash}: {pods:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deploys the first version and waits until it is Healthy; returns its hash.
async fn deployed(t: &Setup, replicas: i32, extra: Value) -> String {
    t.create(rollout(replicas, extra)).await;
    let r = t.healthy().await;
    status(&r).stable_rs.expect("a stable hash")
}

/// Changes the image and waits until the new version is previewed and paused for promotion.
async fn previewed(t: &Setup) -> (Rollout, String) {
    t.set_image("example/app:2").await;
    let r = t
        .wait(30, "the preview paused for promotion", paused_for_promotion)
        .await;
    let new = status(&r).current_pod_hash.expect("a current hash");
    (r, new)
}

async fn promote(t: &Setup) {
    t.patch_status(json!({ "pauseConditions": null })).await;
}

#[tokio::test]
async fn a_first_deploy_points_both_services_at_the_first_replica_set() {
    let t = setup("bg-first").await;
    let hash = deployed(&t, 2, json!({})).await;
    assert_eq!(
        t.selected("app-active").await.as_deref(),
        Some(hash.as_str())
    );
    assert_eq!(
        t.selected("app-preview").await.as_deref(),
        Some(hash.as_str())
    );
    wait_serves(&t, "app-active", &hash, 2).await;
    wait_serves(&t, "app-preview", &hash, 2).await;
    let r = t.healthy().await;
    let bg = status(&r).blue_green.expect("blueGreen status");
    assert_eq!(bg.active_selector.as_deref(), Some(hash.as_str()));
    assert_eq!(bg.preview_selector.as_deref(), Some(hash.as_str()));
}

#[tokio::test]
async fn manual_promotion_previews_the_new_pods_then_switches_the_active_service() {
    let t = setup("bg-manual").await;
    let old = deployed(
        &t,
        2,
        json!({ "autoPromotionEnabled": false, "scaleDownDelaySeconds": 3 }),
    )
    .await;
    let (paused, new) = previewed(&t).await;
    assert_eq!(status(&paused).phase, Some(RolloutPhase::Paused));
    // The preview serves the new pods, the active one the old pods, until promotion.
    wait_serves(&t, "app-preview", &new, 2).await;
    wait_serves(&t, "app-active", &old, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        t.selected("app-active").await.as_deref(),
        Some(old.as_str())
    );

    let promoted_at = Instant::now();
    promote(&t).await;
    let r = t
        .wait(30, "the active selector switched", |r| {
            active_selector(r).as_deref() == Some(new.as_str())
        })
        .await;
    let switch = promoted_at.elapsed();
    println!(
        "promote -> active selector switched: {} ms",
        switch.as_millis()
    );
    assert_eq!(
        t.selected("app-active").await.as_deref(),
        Some(new.as_str())
    );
    assert_eq!(status(&r).stable_rs.as_deref(), Some(new.as_str()));
    wait_serves(&t, "app-active", &new, 2).await;

    // The old version stays up for the scale-down delay, then goes.
    let left = Instant::now();
    assert_eq!(
        t.replicas().await.get(&old),
        Some(&2),
        "scaled down before the delay"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.replicas().await.get(&old) != Some(&0) {
        assert!(
            Instant::now() < deadline,
            "the old set was never scaled down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "scaled down after {:?}, before the 3 s delay",
        left.elapsed()
    );
    t.healthy().await;
}

#[tokio::test]
async fn auto_promotion_with_and_without_seconds() {
    let t = setup("bg-auto").await;
    let old = deployed(&t, 2, json!({ "scaleDownDelaySeconds": 1 })).await;
    t.set_image("example/app:2").await;
    let r = t
        .wait(30, "the active Service switched without a pause", |r| {
            active_selector(r).is_some_and(|h| h != old)
        })
        .await;
    assert!(status(&r).pause_conditions.is_empty());
    let new = status(&r).current_pod_hash.expect("a hash");
    t.healthy().await;
    wait_serves(&t, "app-active", &new, 2).await;

    // With autoPromotionSeconds the rollout waits that long in the preview, then promotes.
    t.patch_spec(json!({ "spec": { "strategy": { "blueGreen": { "autoPromotionSeconds": 3 } } } }))
        .await;
    t.healthy().await;
    t.set_image("example/app:3").await;
    let paused = t
        .wait(30, "the timed pause before promotion", paused_for_promotion)
        .await;
    let newest = status(&paused).current_pod_hash.expect("a hash");
    assert_eq!(active_selector(&paused).as_deref(), Some(new.as_str()));
    let r = t
        .wait(30, "the automatic promotion", |r| {
            active_selector(r).as_deref() == Some(newest.as_str())
        })
        .await;
    let start = status(&paused).pause_conditions[0].start_time.0;
    let waited = r
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == RolloutConditionType::Paused)
        })
        .map(|c| c.last_transition_time.0.duration_since(start).as_secs_f64());
    assert!(
        waited.is_some_and(|w| w >= 2.5),
        "promoted {waited:?} s after the pause began, before autoPromotionSeconds"
    );
}

#[tokio::test]
async fn abort_returns_both_services_to_stable_and_retry_starts_over() {
    let t = setup("bg-abort").await;
    let old = deployed(
        &t,
        2,
        json!({ "autoPromotionEnabled": false, "abortScaleDownDelaySeconds": 2 }),
    )
    .await;
    let (_, new) = previewed(&t).await;
    wait_serves(&t, "app-preview", &new, 2).await;

    t.patch_status(json!({ "abort": true })).await;
    let r = t
        .wait(30, "the rollout aborted", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
        })
        .await;
    assert!(
        status(&r)
            .message
            .is_some_and(|m| m.contains("RolloutAborted"))
    );
    assert_eq!(
        condition(&r, RolloutConditionType::Progressing)
            .map(|c| c.1)
            .as_deref(),
        Some("RolloutAborted")
    );
    wait_serves(&t, "app-preview", &old, 2).await;
    assert_eq!(
        t.selected("app-active").await.as_deref(),
        Some(old.as_str())
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.replicas().await.get(&new) != Some(&0) {
        assert!(
            Instant::now() < deadline,
            "the aborted preview was never scaled down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        t.replicas().await.get(&old),
        Some(&2),
        "the stable set was touched"
    );

    // Retry: the preview comes back and waits for promotion again.
    t.patch_status(json!({ "abort": false })).await;
    t.wait(30, "the preview paused again", paused_for_promotion)
        .await;
    wait_serves(&t, "app-preview", &new, 2).await;
    promote(&t).await;
    t.wait(30, "the promotion after retry", |r| {
        active_selector(r).as_deref() == Some(new.as_str())
    })
    .await;
}

#[tokio::test]
async fn a_second_update_while_the_first_waits_replaces_the_waiting_set() {
    let t = setup("bg-second").await;
    let old = deployed(&t, 2, json!({ "autoPromotionEnabled": false })).await;
    let (_, first) = previewed(&t).await;
    t.set_image("example/app:3").await;
    let r = t
        .wait(30, "the newest version previewed", |r| {
            paused_for_promotion(r) && status(r).current_pod_hash.is_some_and(|h| h != first)
        })
        .await;
    let second = status(&r).current_pod_hash.expect("a hash");
    wait_serves(&t, "app-preview", &second, 2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.replicas().await.get(&first) != Some(&0) {
        assert!(Instant::now() < deadline, "the replaced preview was leaked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        t.selected("app-active").await.as_deref(),
        Some(old.as_str())
    );
    assert_eq!(t.replicas().await.get(&old), Some(&2));
}

#[tokio::test]
async fn a_controller_restarted_before_promotion_and_during_the_delay_keeps_its_place() {
    let mut t = setup("bg-restart").await;
    let old = deployed(
        &t,
        2,
        json!({ "autoPromotionEnabled": false, "scaleDownDelaySeconds": 6 }),
    )
    .await;
    let (paused, new) = previewed(&t).await;
    let since = status(&paused).pause_conditions[0].start_time.clone();

    // Killed between preview and promotion: the new one waits for promotion as well.
    t.controller.kill();
    t.controller = Controller::start(&t.ns.name).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = t.wait(10, "still paused", paused_for_promotion).await;
    assert_eq!(status(&r).pause_conditions[0].start_time, since);
    assert_eq!(
        t.selected("app-active").await.as_deref(),
        Some(old.as_str())
    );
    assert_eq!(t.sets().await.len(), 2, "no ReplicaSet created twice");

    promote(&t).await;
    t.wait(30, "the switch", |r| {
        active_selector(r).as_deref() == Some(new.as_str())
    })
    .await;
    let switched = Instant::now();
    // Killed during the scale-down delay: the deadline on the ReplicaSet still holds.
    t.controller.kill();
    t.controller = Controller::start(&t.ns.name).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if switched.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            t.replicas().await.get(&old),
            Some(&2),
            "scaled down before the delay"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.replicas().await.get(&old) != Some(&0) {
        assert!(
            Instant::now() < deadline,
            "the old set was never scaled down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(switched.elapsed() >= Duration::from_secs(5));
    t.healthy().await;
}

#[tokio::test]
async fn a_missing_active_service_is_an_invalid_spec_and_nothing_is_scaled() {
    let t = setup("bg-invalid").await;
    let old = deployed(&t, 2, json!({})).await;
    t.patch_spec(json!({ "spec": { "strategy": { "blueGreen": { "activeService": "nope" } } } }))
        .await;
    t.set_image("example/app:2").await;
    let r = t
        .wait(30, "the InvalidSpec condition", |r| {
            condition(r, RolloutConditionType::InvalidSpec).is_some()
        })
        .await;
    assert!(
        status(&r)
            .message
            .is_some_and(|m| m.contains("\"nope\" not found"))
    );
    assert_eq!(status(&r).phase, Some(RolloutPhase::Degraded));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replicas = t.replicas().await;
    assert_eq!(replicas.len(), 1, "a set was created: {replicas:?}");
    assert_eq!(replicas.get(&old), Some(&2));
}

/// The value of label `key` on each running pod of version `hash`.
async fn labels_of(t: &Setup, hash: &str, key: &str) -> Vec<Option<String>> {
    t.ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
        .await
        .expect("listing pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.labels().get(key).cloned())
        .collect()
}

#[tokio::test]
async fn active_and_preview_metadata_move_with_the_services() {
    let t = setup("bg-metadata").await;
    let old = deployed(
        &t,
        2,
        json!({
            "autoPromotionEnabled": false,
            "activeMetadata": { "labels": { "role": "active" } },
            "previewMetadata": { "labels": { "role": "preview" } }
        }),
    )
    .await;
    let role = |v: &str| vec![Some(v.to_string()); 2];
    let deadline = Instant::now() + Duration::from_secs(30);
    while labels_of(&t, &old, "role").await != role("active") {
        assert!(
            Instant::now() < deadline,
            "the active pods never got their label"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, new) = previewed(&t).await;
    assert_eq!(labels_of(&t, &new, "role").await, role("preview"));
    promote(&t).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (now_new, now_old) = (
            labels_of(&t, &new, "role").await,
            labels_of(&t, &old, "role").await,
        );
        if now_new == role("active") && now_old.iter().all(Option::is_none) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "labels did not move: new {now_new:?}, old {now_old:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
