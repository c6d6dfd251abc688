//! Canary rollouts end to end on the local cluster, with the `sluice` binary watching each test's
//! namespace: ReplicaSets, steps, Services, the controls users and Argo CD write, Argo CD's health
//! fields, and a controller killed in the middle of a rollout.
mod experiment;
mod routed;
mod setup;
mod workload;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::{ResourceExt, api::ListParams};
use serde_json::json;
use setup::{Setup, condition, create_service, paused_by_step, rollout, status, step};
use sluice_api::{
    ConditionStatus, RolloutConditionType, RolloutPhase,
    vocab::{MANAGED_BY_ROLLOUTS_ANNOTATION, POD_TEMPLATE_HASH_LABEL},
};
use sluice_testkit::Controller;

#[tokio::test]
async fn a_new_rollout_gets_one_full_replica_set_and_is_healthy_for_argo_cd() {
    let t = Setup::new("canary-first").await;
    t.create(rollout(
        3,
        json!([{ "setWeight": 50 }, { "pause": {} }]),
        json!({}),
    ))
    .await;
    let healthy = t.healthy().await;

    let sets = t.sets().await;
    assert_eq!(sets.len(), 1, "one ReplicaSet for one template");
    let rs = &sets[0];
    let hash = rs.labels()[POD_TEMPLATE_HASH_LABEL].clone();
    assert_eq!(rs.name_any(), format!("app-{hash}"));
    assert_eq!(rs.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(
        rs.spec.as_ref().map(|s| &s.selector.match_labels),
        Some(&Some(BTreeMap::from([
            ("app".to_string(), "app".to_string()),
            (POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone()),
        ])))
    );
    assert_eq!(
        rs.annotations().get("rollout.argoproj.io/revision"),
        Some(&"1".to_string())
    );
    let owner = &rs.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Rollout", "app", Some(true))
    );

    // What Argo CD's health check and `kubectl get rollout` read.
    let s = status(&healthy);
    assert_eq!(s.stable_rs.as_deref(), Some(hash.as_str()));
    assert_eq!(s.current_pod_hash.as_deref(), Some(hash.as_str()));
    assert_eq!(
        s.current_step_index,
        Some(2),
        "a first rollout skips its steps"
    );
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas),
        (Some(3), Some(3), Some(3))
    );
    assert_eq!(
        condition(&healthy, RolloutConditionType::Available).map(|c| c.0),
        Some(ConditionStatus::True)
    );
    assert_eq!(
        condition(&healthy, RolloutConditionType::Progressing),
        Some((ConditionStatus::True, "NewReplicaSetAvailable".into()))
    );

    // Both Services select the one version, and say who manages them.
    for name in ["app-stable", "app-canary"] {
        assert_eq!(t.selected(name).await.as_deref(), Some(hash.as_str()));
        let service = t.ns.api::<Service>().get(name).await.expect("the Service");
        assert_eq!(
            service.annotations().get(MANAGED_BY_ROLLOUTS_ANNOTATION),
            Some(&"app".to_string())
        );
    }
    // One event for the first deploy, naming the set it created.
    let created = format!("Created ReplicaSet app-{hash} (revision 1) with 3 replicas");
    let event = t
        .wait_event_where("the first deploy's event", |e| {
            e.message.as_deref().is_some_and(|m| m.contains(&created))
        })
        .await;
    assert_eq!(
        event.reason.as_deref(),
        Some("RolloutCompleted"),
        "{event:?}"
    );
    let metrics = t.controller.get("/metrics").await.expect("a scrape");
    assert!(
        metrics.contains(&format!(
            r#"rollout_info{{namespace="{}",name="app",strategy="canary",phase="Completed"}} 1"#,
            t.ns.name
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_canary_walks_its_steps_pauses_until_promoted_and_becomes_stable() {
    let t = Setup::new("canary-steps").await;
    let steps = json!([
        { "setWeight": 20 },
        { "pause": {} },
        { "setWeight": 60 },
        { "pause": { "duration": "2s" } },
    ]);
    t.create(rollout(
        5,
        steps,
        json!({ "maxSurge": 1, "maxUnavailable": 0 }),
    ))
    .await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");

    t.set_image("example/app:2").await;
    let paused = t
        .wait(30, "the canary paused at step 1", |r| {
            step(r) == Some(1) && paused_by_step(r)
        })
        .await;
    let canary = status(&paused).current_pod_hash.expect("a canary hash");
    assert_ne!(canary, stable);
    assert_eq!(status(&paused).phase, Some(RolloutPhase::Paused));
    assert_eq!(
        t.replicas().await,
        BTreeMap::from([(stable.clone(), 4), (canary.clone(), 1)]),
        "20% of 5 pods on the canary"
    );
    assert_eq!(t.selected("app-canary").await, Some(canary.clone()));
    assert_eq!(t.selected("app-stable").await, Some(stable.clone()));
    let weights = status(&paused)
        .canary
        .and_then(|c| c.weights)
        .expect("weights");
    assert_eq!((weights.canary.weight, weights.stable.weight), (20, 80));

    // Stays paused: nothing moves while nobody promotes.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let still = t.rollouts.get("app").await.expect("the rollout");
    assert_eq!(step(&still), Some(1));

    // Promote as `kubectl argo rollouts promote` and Argo CD's "resume" action do.
    t.patch_status(json!({ "pauseConditions": null })).await;
    t.wait(30, "the timed pause at step 3", |r| step(r) == Some(3))
        .await;
    assert_eq!(
        t.replicas().await,
        BTreeMap::from([(stable.clone(), 2), (canary.clone(), 3)])
    );
    let done = t.healthy().await;
    let s = status(&done);
    assert_eq!(s.stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(s.current_step_index, Some(4));
    assert_eq!(
        t.replicas().await,
        BTreeMap::from([(stable, 0), (canary.clone(), 5)])
    );
    assert_eq!(t.selected("app-stable").await, Some(canary.clone()));
    assert_eq!(t.selected("app-canary").await, Some(canary));
    t.wait_event("RolloutCompleted").await;
}

#[tokio::test]
async fn promote_full_skips_the_remaining_steps() {
    let t = Setup::new("canary-full").await;
    let steps = json!([{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 40 }, { "pause": {} }]);
    t.create(rollout(4, steps, json!({}))).await;
    t.healthy().await;
    t.set_image("example/app:2").await;
    let paused = t
        .wait(30, "paused at step 1", |r| {
            step(r) == Some(1) && paused_by_step(r)
        })
        .await;
    let canary = status(&paused).current_pod_hash.expect("a canary hash");

    t.patch_status(json!({ "promoteFull": true })).await;
    let done = t.healthy().await;
    assert_eq!(status(&done).stable_rs, Some(canary));
    assert_eq!(status(&done).current_step_index, Some(4));
}

#[tokio::test]
async fn abort_returns_everything_to_stable_and_retry_starts_over() {
    let t = Setup::new("canary-abort").await;
    let steps = json!([{ "setWeight": 50 }, { "pause": {} }]);
    t.create(rollout(4, steps, json!({}))).await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");
    t.set_image("example/app:2").await;
    let paused = t.wait(30, "paused at step 1", paused_by_step).await;
    let canary = status(&paused).current_pod_hash.expect("a canary hash");
    assert_eq!(t.selected("app-canary").await, Some(canary.clone()));

    t.patch_status(json!({ "abort": true })).await;
    let aborted = t
        .wait(30, "the abort carried out", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
                && status(r).available_replicas == Some(4)
        })
        .await;
    assert_eq!(
        condition(&aborted, RolloutConditionType::Progressing),
        Some((ConditionStatus::False, "RolloutAborted".into()))
    );
    assert!(status(&aborted).aborted_at.is_some());
    assert_eq!(status(&aborted).stable_rs, Some(stable.clone()));
    sluice_testkit::wait(
        async {
            loop {
                if t.replicas().await.get(&canary) == Some(&0) {
                    return Ok::<_, ()>(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        },
        30,
        "the canary ReplicaSet at 0",
    )
    .await;
    assert_eq!(t.replicas().await.get(&stable), Some(&4));
    assert_eq!(t.selected("app-canary").await, Some(stable.clone()));
    assert_eq!(t.selected("app-stable").await, Some(stable.clone()));

    // The aborted revision is not retried on its own.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(t.replicas().await.get(&canary), Some(&0));

    // Retry: clear the abort; the canary starts again from the first step.
    t.patch_status(json!({ "abort": false })).await;
    let retried = t
        .wait(30, "the retried canary paused at step 1", |r| {
            step(r) == Some(1) && paused_by_step(r) && status(r).abort != Some(true)
        })
        .await;
    assert_eq!(status(&retried).phase, Some(RolloutPhase::Paused));
    assert_eq!(
        t.replicas().await,
        BTreeMap::from([(stable, 2), (canary, 2)])
    );
}

#[tokio::test]
async fn a_canary_that_never_becomes_ready_keeps_stable_serving_and_misses_its_deadline() {
    let t = Setup::new("canary-deadline").await;
    let mut manifest = rollout(
        4,
        json!([{ "setWeight": 50 }, { "pause": {} }]),
        json!({ "maxSurge": 1, "maxUnavailable": 0 }),
    );
    manifest["spec"]["progressDeadlineSeconds"] = json!(4);
    manifest["spec"]["progressDeadlineAbort"] = json!(true);
    t.create(manifest).await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");

    // The new version's pods never pass their readiness probe.
    t.patch_spec(json!({ "spec": { "template": { "metadata": {
        "annotations": { "sluice.dev/pod-fate": "never-ready" }
    } } } }))
    .await;
    let degraded = t
        .wait(30, "the progress deadline exceeded", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
        })
        .await;
    let canary = status(&degraded).current_pod_hash.expect("a canary hash");
    assert_ne!(canary, stable);
    assert_eq!(
        condition(&degraded, RolloutConditionType::Progressing).map(|c| c.1),
        Some("ProgressDeadlineExceeded".to_string())
    );
    // progressDeadlineAbort: the rollout is aborted, and stable never lost a pod.
    t.wait(30, "aborted after the deadline", |r| {
        status(r).abort == Some(true)
    })
    .await;
    let replicas = t.replicas().await;
    assert_eq!(replicas.get(&stable), Some(&4), "{replicas:?}");
    assert_eq!(t.selected("app-canary").await, Some(stable.clone()));
    assert_eq!(t.selected("app-stable").await, Some(stable));
}

#[tokio::test]
async fn spec_paused_holds_the_rollout_and_unpausing_resumes_it() {
    let t = Setup::new("canary-paused").await;
    let steps =
        json!([{ "setWeight": 25 }, { "pause": { "duration": "1s" } }, { "setWeight": 75 }]);
    t.create(rollout(4, steps, json!({}))).await;
    t.healthy().await;

    t.patch_spec(json!({ "spec": { "paused": true } })).await;
    t.set_image("example/app:2").await;
    let held = t
        .wait(30, "the paused rollout reported Paused", |r| {
            status(r).phase == Some(RolloutPhase::Paused)
                && status(r).observed_generation == r.metadata.generation.map(|g| g.to_string())
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let canary = status(&held).current_pod_hash.expect("a canary hash");
    assert_eq!(
        t.replicas().await.get(&canary).copied().unwrap_or(0),
        0,
        "a paused rollout does not start its canary"
    );

    t.patch_spec(json!({ "spec": { "paused": false } })).await;
    let done = t.healthy().await;
    assert_eq!(status(&done).stable_rs, Some(canary));
}

#[tokio::test]
async fn a_missing_service_is_an_invalid_spec_condition_and_nothing_is_scaled() {
    let t = Setup::new("canary-missing-svc").await;
    t.create(rollout(
        2,
        json!([{ "setWeight": 50 }]),
        json!({ "canaryService": "app-preview" }),
    ))
    .await;
    let invalid = t
        .wait(30, "the InvalidSpec condition", |r| {
            condition(r, RolloutConditionType::InvalidSpec).is_some()
        })
        .await;
    let message = status(&invalid).message.unwrap_or_default();
    assert!(message.contains("app-preview"), "{message}");
    assert_eq!(status(&invalid).phase, Some(RolloutPhase::Degraded));
    assert!(
        t.sets().await.is_empty(),
        "nothing created for an invalid spec"
    );
    t.wait_event("InvalidSpec").await;

    // Creating the Service is enough: the rollout proceeds.
    create_service(&t.ns, "app-preview").await;
    let healthy = t.healthy().await;
    assert!(condition(&healthy, RolloutConditionType::InvalidSpec).is_none());
}

#[tokio::test]
async fn a_controller_killed_mid_rollout_resumes_where_it_was() {
    let mut t = Setup::new("canary-restart").await;
    let steps = json!([{ "setWeight": 50 }, { "pause": { "duration": "4s" } }, { "setWeight": 75 }, { "pause": {} }]);
    t.create(rollout(4, steps, json!({}))).await;
    t.healthy().await;
    t.set_image("example/app:2").await;
    let pausing = t
        .wait(30, "the timed pause", |r| {
            step(r) == Some(1) && paused_by_step(r)
        })
        .await;
    let started = status(&pausing).pause_conditions[0].start_time.clone();

    t.controller.kill();
    t.controller = Controller::start(&t.ns.name).await;
    // The timed pause keeps its start and ends on time; the next pause waits for a promote.
    let next = t
        .wait(30, "the indefinite pause at step 3", |r| {
            step(r) == Some(3) && paused_by_step(r)
        })
        .await;
    assert!(status(&next).pause_conditions[0].start_time.0 >= started.0);
    let canary = status(&next).current_pod_hash.expect("a canary hash");
    assert_eq!(t.sets().await.len(), 2, "no ReplicaSet created twice");
    assert_eq!(t.replicas().await.get(&canary), Some(&3));
}

#[tokio::test]
async fn a_controller_killed_right_after_each_change_never_does_anything_twice() {
    let mut t = Setup::new("canary-kill-points").await;
    let steps = json!([{ "setWeight": 50 }, { "pause": {} }, { "setWeight": 75 }, { "pause": { "duration": "1s" } }]);
    t.create(rollout(4, steps, json!({}))).await;
    t.healthy().await;

    // Killed at once after the image change: the canary set may or may not exist yet.
    t.set_image("example/app:2").await;
    t.controller.kill();
    t.controller = Controller::start(&t.ns.name).await;
    let paused = t
        .wait(30, "paused at step 1", |r| {
            step(r) == Some(1) && paused_by_step(r)
        })
        .await;
    assert_eq!(t.sets().await.len(), 2, "one canary ReplicaSet, not two");

    // Killed at once after a promote: the step runs once, the next pause holds.
    t.patch_status(json!({ "pauseConditions": null })).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    t.controller.kill();
    t.controller = Controller::start(&t.ns.name).await;
    let done = t.healthy().await;
    assert_eq!(status(&done).current_step_index, Some(4));
    assert_eq!(status(&done).stable_rs, status(&paused).current_pod_hash);

    // Killed in the middle of an abort of the next version.
    t.set_image("example/app:3").await;
    t.wait(30, "paused at step 1 again", paused_by_step).await;
    t.patch_status(json!({ "abort": true })).await;
    t.controller.kill();
    t.controller = Controller::start(&t.ns.name).await;
    let aborted = t
        .wait(30, "aborted", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
                && status(r).available_replicas == Some(4)
        })
        .await;
    assert_eq!(status(&aborted).stable_rs, status(&done).stable_rs);
    assert_eq!(t.sets().await.len(), 3, "one set per version");
}

#[tokio::test]
async fn changing_the_image_back_to_stable_rolls_back_at_once() {
    let t = Setup::new("canary-rollback").await;
    t.create(rollout(
        4,
        json!([{ "setWeight": 25 }, { "pause": {} }]),
        json!({}),
    ))
    .await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");
    t.set_image("example/app:2").await;
    t.wait(30, "paused at step 1", paused_by_step).await;

    t.set_image("example/app:1").await;
    let back = t.healthy().await;
    assert_eq!(status(&back).stable_rs, Some(stable.clone()));
    assert_eq!(status(&back).current_pod_hash, Some(stable.clone()));
    sluice_testkit::wait(
        async {
            loop {
                let replicas = t.replicas().await;
                if replicas.values().sum::<i32>() == 4 && replicas.get(&stable) == Some(&4) {
                    return Ok::<_, ()>(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        },
        30,
        "the canary scaled away",
    )
    .await;
}

#[tokio::test]
async fn rolling_back_inside_the_rollback_window_skips_the_steps_and_says_so() {
    let t = Setup::new("canary-window").await;
    let mut manifest = rollout(4, json!([{ "setWeight": 25 }, { "pause": {} }]), json!({}));
    manifest["spec"]["rollbackWindow"] = json!({ "revisions": 2 });
    t.create(manifest).await;
    let first = status(&t.healthy().await).stable_rs.expect("a stable hash");
    t.set_image("example/app:2").await;
    t.wait(30, "paused at step 1", paused_by_step).await;
    t.patch_status(json!({ "promoteFull": true })).await;
    let second = status(&t.healthy().await).stable_rs.expect("a stable hash");
    assert_ne!(first, second);

    // Back to the first version, one revision back: inside the window, so no step holds it.
    t.set_image("example/app:1").await;
    let back = t.healthy().await;
    assert_eq!(status(&back).stable_rs, Some(first));
    assert_eq!(status(&back).current_step_index, Some(2));
    t.wait_event("RollbackWithinWindow").await;
}

#[tokio::test]
async fn without_steps_a_rolling_update_respects_surge_and_unavailable() {
    let t = Setup::new("canary-rolling").await;
    t.create(rollout(
        4,
        json!([]),
        json!({ "maxSurge": 1, "maxUnavailable": 0 }),
    ))
    .await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");
    t.set_image("example/app:2").await;
    // Sample the sets while the update runs: never more than 5 pods, never fewer than 4 available.
    let watch_sets = async {
        loop {
            let sets = t.sets().await;
            let desired: i32 = sets
                .iter()
                .map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
                .sum();
            let shape: Vec<_> = sets
                .iter()
                .map(|s| {
                    (
                        s.name_any(),
                        s.spec.as_ref().and_then(|s| s.replicas),
                        s.status.as_ref().and_then(|s| s.available_replicas),
                    )
                })
                .collect();
            assert!(desired <= 5, "more than replicas + maxSurge: {shape:?}");
            let r = t.rollouts.get("app").await.expect("the rollout");
            if status(&r).phase == Some(RolloutPhase::Healthy)
                && status(&r).stable_rs.as_deref() != Some(stable.as_str())
            {
                return Ok::<_, ()>(r);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let done = sluice_testkit::wait(watch_sets, 60, "the rolling update").await;
    let new = status(&done).stable_rs.expect("the new stable");
    assert_eq!(t.replicas().await, BTreeMap::from([(stable, 0), (new, 4)]));
}

#[tokio::test]
async fn restart_at_replaces_every_pod_and_records_it() {
    let t = Setup::new("canary-restart-at").await;
    t.create(rollout(
        3,
        json!([{ "setWeight": 50 }, { "pause": {} }]),
        json!({}),
    ))
    .await;
    let healthy = t.healthy().await;
    let hash = status(&healthy).stable_rs.expect("a stable hash");
    let at = sluice_testkit::restart_time().await;
    t.patch_spec(json!({ "spec": { "restartAt": at.to_string() } }))
        .await;
    let restarted = t
        .wait(60, "status.restartedAt", |r| {
            status(r).restarted_at.is_some_and(|s| s.0 >= at)
        })
        .await;
    assert_eq!(
        status(&restarted).stable_rs,
        Some(hash.clone()),
        "no new version"
    );
    let pods =
        t.ns.api::<k8s_openapi::api::core::v1::Pod>()
            .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
            .await
            .expect("pods");
    let live: Vec<_> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(live.len(), 3);
    for pod in live {
        let created = pod.metadata.creation_timestamp.as_ref().expect("a time").0;
        assert!(created >= at, "{} was not restarted", pod.name_any());
    }
    t.wait_event("RolloutRestarted").await;
}

#[tokio::test]
async fn set_canary_scale_sizes_the_canary_apart_from_its_weight() {
    let t = Setup::new("canary-scale").await;
    let steps = json!([
        { "setCanaryScale": { "replicas": 3 } },
        { "setWeight": 10 },
        { "pause": {} },
    ]);
    t.create(rollout(10, steps, json!({}))).await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");
    t.set_image("example/app:2").await;
    let paused = t
        .wait(30, "paused at step 2", |r| {
            step(r) == Some(2) && paused_by_step(r)
        })
        .await;
    let canary = status(&paused).current_pod_hash.expect("a canary hash");
    let replicas = t.replicas().await;
    assert_eq!(replicas.get(&canary), Some(&3), "{replicas:?}");
    // Without a traffic router pods are the traffic: the stable set leaves room for 10%.
    assert_eq!(replicas.get(&stable), Some(&9), "{replicas:?}");
}

#[tokio::test]
async fn a_rollout_left_by_argo_rollouts_is_adopted_without_rolling_its_pods_again() {
    let mut t = Setup::new("canary-adopt").await;
    // Argo Rollouts ran this Rollout: stop Sluice while the scene is set.
    t.controller.kill();
    let created = t
        .create(rollout(
            3,
            json!([{ "setWeight": 50 }, { "pause": {} }]),
            json!({}),
        ))
        .await;
    let argo = "6b8f9d7c54";
    let mut template = created.spec.template.clone().expect("a template");
    template
        .metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), argo.into());
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "metadata": {
            "name": format!("app-{argo}"),
            "labels": { "app": "app", POD_TEMPLATE_HASH_LABEL: argo },
            "annotations": { "rollout.argoproj.io/revision": "1" },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "app",
                "uid": created.metadata.uid, "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "app", POD_TEMPLATE_HASH_LABEL: argo } },
            "template": template
        }
    }))
    .expect("a ReplicaSet");
    t.ns.api::<k8s_openapi::api::apps::v1::ReplicaSet>()
        .create(&kube::api::PostParams::default(), &rs)
        .await
        .expect("creating Argo's ReplicaSet");
    t.patch_status(json!({
        "currentPodHash": argo, "stableRS": argo, "currentStepIndex": 2,
        "observedGeneration": created.metadata.generation.expect("a generation").to_string(),
        "phase": "Healthy"
    }))
    .await;

    t.controller = Controller::start(&t.ns.name).await;
    // Argo's status already reads Healthy; Sluice's first status write adds the selector and the
    // replica counts, after the actions of the same reconcile.
    let healthy = t
        .wait(30, "Sluice's first status of the adopted rollout", |r| {
            let s = status(r);
            s.phase == Some(RolloutPhase::Healthy)
                && s.selector.is_some()
                && s.available_replicas == Some(3)
        })
        .await;
    assert_eq!(status(&healthy).stable_rs.as_deref(), Some(argo));
    let sets = t.sets().await;
    assert_eq!(sets.len(), 1, "the same pods are not rolled out again");
    assert!(
        sets[0]
            .annotations()
            .contains_key("sluice.dev/template-hash"),
        "the adopted set records Sluice's hash of its template"
    );
    assert_eq!(t.selected("app-stable").await.as_deref(), Some(argo));

    // The next version is a canary as usual.
    t.set_image("example/app:2").await;
    let paused = t.wait(30, "paused at step 1", paused_by_step).await;
    assert_ne!(status(&paused).current_pod_hash.as_deref(), Some(argo));
    assert_eq!(t.sets().await.len(), 2);
}

#[tokio::test]
async fn through_zero_length_pauses_the_sets_only_ever_move_forward() {
    use futures::TryStreamExt;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use kube::runtime::{WatchStreamExt, watcher};

    let t = Setup::new("canary-forward").await;
    let steps = json!([
        { "setWeight": 20 }, { "pause": { "duration": "0s" } },
        { "setWeight": 60 }, { "pause": { "duration": "0s" } },
        { "setWeight": 80 },
    ]);
    t.create(rollout(5, steps, json!({}))).await;
    // Several updates back to back, as a pipeline makes them: each step is taken once, so the
    // new set is only ever scaled up and the old one only down, never a step back and forth.
    for version in 2..=4 {
        let old = status(&t.healthy().await).stable_rs.expect("a stable hash");
        let seen = std::sync::Mutex::new(BTreeMap::<String, Vec<i32>>::new());
        let record = async {
            let sets = watcher(t.ns.api::<ReplicaSet>(), watcher::Config::default());
            let mut sets = std::pin::pin!(sets.touched_objects());
            while let Some(rs) = sets.try_next().await.expect("watching ReplicaSets") {
                let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL).cloned();
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let mut seen = seen.lock().expect("not poisoned");
                let history = seen.entry(hash.unwrap_or_default()).or_default();
                if history.last() != Some(&replicas) {
                    history.push(replicas);
                }
            }
        };
        let image = format!("example/app:{version}");
        let done = async {
            t.set_image(&image).await;
            let r = t
                .wait(60, "the update to finish", |r| {
                    let s = status(r);
                    s.phase == Some(RolloutPhase::Healthy)
                        && s.stable_rs.is_some()
                        && s.stable_rs.as_deref() != Some(old.as_str())
                })
                .await;
            let new = status(&r).stable_rs.expect("the new stable");
            // The last scale-down may come on the watch a moment after the status.
            for _ in 0..100 {
                let finished = {
                    let seen = seen.lock().expect("not poisoned");
                    let last = |hash: &str| seen.get(hash).and_then(|h| h.last().copied());
                    (last(&new), last(&old)) == (Some(5), Some(0))
                };
                if finished {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            new
        };
        let new = tokio::select! {
            () = record => panic!("the ReplicaSet watch ended"),
            new = done => new,
        };
        let seen = seen.into_inner().expect("not poisoned");
        let up = &seen[&new];
        let down = &seen[&old];
        assert!(
            up.is_sorted(),
            "update to {image}: the new set went {up:?}, old {down:?}"
        );
        assert!(
            down.iter().rev().is_sorted(),
            "update to {image}: the old set went {down:?}, new {up:?}"
        );
        assert_eq!(
            (up.last(), down.last()),
            (Some(&5), Some(&0)),
            "all of {image}"
        );
    }
}
