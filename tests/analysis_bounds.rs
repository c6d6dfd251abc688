//! AnalysisRuns that must not take the analysis controller down, on the local cluster: a run
//! the controller's types cannot read neither blocks its start nor the other runs (it is
//! reported Error with the reason), a deleted run leaves no series on `/metrics`, and a completed
//! run is deleted when its `ttlStrategy` says so.

use std::time::Duration;

use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, PostParams},
};
use serde_json::json;
use sluice_api::{AnalysisPhase, AnalysisRun};
use sluice_testkit::{Controller, TestNamespace, install_crds};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// A server answering every request with `{"ok":true}`; returns its URL.
async fn answering_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}/ok", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0; 4096];
                let _ = stream.read(&mut buffer).await;
                let body = "{\"ok\":true}";
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

/// A run of one web metric calling `url` once, which succeeds when the answer's `ok` is true.
fn run(name: &str, url: &str) -> AnalysisRun {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": { "name": name },
        "spec": { "metrics": [{
            "name": "ok",
            "successCondition": "result == true",
            "provider": { "web": { "url": url, "jsonPath": "{$.ok}" } },
        }] },
    }))
    .expect("an AnalysisRun")
}

async fn successful(t: &TestNamespace, name: &str) -> AnalysisRun {
    t.wait_for::<AnalysisRun>(
        name,
        30,
        "the run to succeed",
        |run: Option<&AnalysisRun>| {
            run.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.phase == AnalysisPhase::Successful)
        },
    )
    .await
}

#[tokio::test]
async fn an_unreadable_run_blocks_neither_the_start_nor_other_runs() {
    let t = TestNamespace::new("analysis-unreadable").await;
    install_crds(&t.client).await;
    let url = answering_server().await;
    // The schema takes any string as a duration; the controller's types do not.
    let runs: Api<DynamicObject> = Api::namespaced_with(
        t.client.clone(),
        &t.name,
        &ApiResource::erase::<AnalysisRun>(&()),
    );
    let unreadable: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": { "name": "unreadable" },
        "spec": { "metrics": [{
            "name": "ok", "interval": "5 fortnights", "count": 2,
            "provider": { "web": { "url": url } },
        }] },
    }))
    .expect("an object");
    runs.create(&PostParams::default(), &unreadable)
        .await
        .expect("the API server takes the run");
    t.api::<AnalysisRun>()
        .create(&PostParams::default(), &run("before", &url))
        .await
        .expect("creating a run");

    // Both were there when the controller started: the readable one is measured.
    let _controller = Controller::start(&t.name).await;
    successful(&t, "before").await;
    // One created afterwards too.
    t.api::<AnalysisRun>()
        .create(&PostParams::default(), &run("after", &url))
        .await
        .expect("creating a run");
    successful(&t, "after").await;

    // The unreadable one says why, in its status.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let object = runs.get("unreadable").await.expect("reading the run");
        let status = &object.data["status"];
        if status["phase"] == "Error" {
            let message = status["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("cannot be read") && message.contains("5 fortnights"),
                "{message}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unreadable run was not reported: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_deleted_run_leaves_no_series() {
    let t = TestNamespace::new("analysis-series").await;
    install_crds(&t.client).await;
    let url = answering_server().await;
    let controller = Controller::start(&t.name).await;
    t.api::<AnalysisRun>()
        .create(&PostParams::default(), &run("counted", &url))
        .await
        .expect("creating a run");
    successful(&t, "counted").await;
    let series = format!(
        r#"analysis_run_info{{namespace="{}",name="counted""#,
        t.name
    );
    let scrape = async || controller.get("/metrics").await.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !scrape().await.contains(&series) {
        assert!(tokio::time::Instant::now() < deadline, "no {series} series");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    t.api::<AnalysisRun>()
        .delete("counted", &DeleteParams::default())
        .await
        .expect("deleting the run");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape().await;
        if !text.contains(r#"name="counted""#) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted run's series are still served:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Rollout controller's own watch of the runs it created (labelled `rollout-type`) reads
/// them whole: one unreadable run fails every list of them, so the controller never reports
/// ready and no Rollout in scope is reconciled. Fixed by watching them through
/// `DeserializeGuard` in `src/rollout/mod.rs`, as the analysis controller does.
#[tokio::test]
async fn an_unreadable_run_of_a_rollout_does_not_block_the_rollout_controller() {
    let t = TestNamespace::new("rollout-unreadable-run").await;
    install_crds(&t.client).await;
    let runs: Api<DynamicObject> = Api::namespaced_with(
        t.client.clone(),
        &t.name,
        &ApiResource::erase::<AnalysisRun>(&()),
    );
    let unreadable: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": { "name": "unreadable", "labels": { "rollout-type": "Step" } },
        "spec": { "metrics": [{
            "name": "ok", "interval": "5 fortnights", "count": 2,
            "provider": { "web": { "url": "http://127.0.0.1:1/" } },
        }] },
    }))
    .expect("an object");
    runs.create(&PostParams::default(), &unreadable)
        .await
        .expect("the API server takes the run");
    // Waits for /readyz, which needs every cache filled.
    let _controller = Controller::start(&t.name).await;
}

/// `ttlStrategy`: a run is deleted once the TTL of its outcome has passed after completion; one
/// whose TTL covers another outcome stays.
#[tokio::test]
async fn a_completed_run_is_deleted_when_its_ttl_has_passed() {
    let t = TestNamespace::new("analysis-ttl").await;
    install_crds(&t.client).await;
    let url = answering_server().await;
    let _controller = Controller::start(&t.name).await;
    let with_ttl = |name: &str, ttl: serde_json::Value| {
        let mut run = run(name, &url);
        run.spec.ttl_strategy = Some(serde_json::from_value(ttl).expect("a ttlStrategy"));
        run
    };
    let runs = t.api::<AnalysisRun>();
    for run in [
        with_ttl(
            "short",
            json!({ "secondsAfterSuccess": 2, "secondsAfterCompletion": 3600 }),
        ),
        with_ttl("kept", json!({ "secondsAfterFailure": 1 })),
    ] {
        runs.create(&PostParams::default(), &run)
            .await
            .expect("creating a run");
    }
    let short = successful(&t, "short").await;
    successful(&t, "kept").await;
    let completed = short
        .status
        .and_then(|s| s.completed_at)
        .expect("a completion time")
        .0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while runs
        .get_opt("short")
        .await
        .expect("reading the run")
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run outlived its 2 s TTL by 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        jiff::Timestamp::now().duration_since(completed).as_secs() >= 2,
        "deleted before its TTL"
    );
    assert!(
        runs.get_opt("kept")
            .await
            .expect("reading the run")
            .is_some(),
        "a Successful run with only a failure TTL was deleted"
    );
}
