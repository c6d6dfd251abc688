//! The local cluster does what every other test relies on: pods of a ReplicaSet are scheduled onto
//! kwok's nodes and become Ready, and pods can be told to fail.

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::api::{ListParams, PostParams};
use sluice_testkit::TestNamespace;

fn replica_set(name: &str, replicas: i32, annotations: serde_json::Value) -> ReplicaSet {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name }, "annotations": annotations },
                "spec": { "containers": [{ "name": "app", "image": "ghcr.io/example/app:1.0" }] }
            }
        }
    }))
    .expect("a ReplicaSet")
}

fn ready_pods(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

#[tokio::test]
async fn a_replica_set_of_three_gets_three_ready_pods() {
    let ns = TestNamespace::new("rs-ready").await;
    let rs = ns.api::<ReplicaSet>();
    rs.create(
        &PostParams::default(),
        &replica_set("web", 3, serde_json::json!({})),
    )
    .await
    .expect("creating the ReplicaSet");

    let ready = ns
        .wait_for("web", 30, "3 ready replicas", |rs: Option<&ReplicaSet>| {
            rs.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.ready_replicas == Some(3))
        })
        .await;
    assert_eq!(ready.status.and_then(|s| s.available_replicas), Some(3));

    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("listing pods");
    assert_eq!(pods.items.len(), 3);
    assert_eq!(ready_pods(&pods.items), 3);
    assert!(
        pods.items.iter().all(|p| p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| n.starts_with("kwok-node-"))),
        "every pod is scheduled on a kwok node"
    );
}

#[tokio::test]
async fn a_pod_template_can_choose_to_never_become_ready() {
    let ns = TestNamespace::new("rs-unready").await;
    let rs = ns.api::<ReplicaSet>();
    let broken = replica_set(
        "broken",
        2,
        serde_json::json!({ "sluice.dev/pod-fate": "never-ready" }),
    );
    rs.create(&PostParams::default(), &broken)
        .await
        .expect("creating the ReplicaSet");

    // Both pods run, yet neither is Ready: the situation a canary of a broken release creates.
    let pods = ns.api::<Pod>();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let list = pods
            .list(&ListParams::default().labels("app=broken"))
            .await
            .expect("listing pods");
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if running == 2 {
            assert_eq!(
                ready_pods(&list.items),
                0,
                "no pod of a never-ready template is Ready"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "2 running pods within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let status = rs
        .get("broken")
        .await
        .expect("reading the ReplicaSet")
        .status
        .expect("a status");
    assert_eq!(status.ready_replicas.unwrap_or(0), 0);
}
