//! Hostile objects next to a healthy canary: AnalysisRuns and Rollouts written to exhaust the
//! controller (huge ranges, deep nesting, evaluations without end, a 100 MB answer, zero
//! intervals, colliding Job names, numbers that overflow). The healthy canary completes, the
//! controller's memory stays under 128 MiB throughout (read from /proc, reported), and every
//! bad object ends with a message that names its fault.
#[allow(dead_code)] // the canary tests use the rest of it
#[path = "canary/setup.rs"]
mod setup;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    routing::get,
};
use futures::StreamExt;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, ListParams, PostParams},
};
use serde_json::{Value, json};
use setup::{Setup, rollout, status};
use sluice_api::{AnalysisPhase, AnalysisRun, Rollout, RolloutPhase};

/// A local metrics server: `/ok` answers a healthy JSON document, `/huge` 100 MB, `/wide` a
/// value of 900 KB (under the answer cap, far over what a status should store), `/count` counts
/// the requests it receives.
struct Server {
    addr: SocketAddr,
    counted: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> Self {
        let counted = Arc::new(AtomicUsize::new(0));
        let count = counted.clone();
        let app = Router::new()
            .route("/ok", get(|| async { json!({ "ok": true }).to_string() }))
            .route(
                "/huge",
                get(|| async {
                    let chunk = Bytes::from(vec![b'7'; 1024 * 1024]);
                    let stream = futures::stream::repeat(chunk)
                        .take(100)
                        .map(Ok::<_, std::io::Error>);
                    Body::from_stream(stream)
                }),
            )
            .route(
                "/wide",
                get(|| async { json!({ "v": "w".repeat(900 * 1024) }).to_string() }),
            )
            .route(
                "/count",
                get(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    async { json!({ "ok": true }).to_string() }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the metrics server");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, counted }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The resident memory of a process in bytes, from /proc.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples the controller's RSS every 100 ms until stopped; the peak is read at the end.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicUsize>,
}

impl RssWatch {
    fn start(pid: u32) -> Self {
        let (peak, stop, samples) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (p, s, n) = (peak.clone(), stop.clone(), samples.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Some(bytes) = rss(pid) {
                    p.fetch_max(bytes, Ordering::SeqCst);
                    n.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            peak,
            stop,
            samples,
        }
    }

    fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::SeqCst);
        (
            self.peak.load(Ordering::SeqCst),
            self.samples.load(Ordering::SeqCst),
        )
    }
}

/// A web metric of `name` calling `url`, decided by `condition`.
fn web_metric(name: &str, url: &str, condition: &str, extra: Value) -> Value {
    let mut metric = json!({
        "name": name,
        "successCondition": condition,
        "provider": { "web": { "url": url, "jsonPath": "{$}" } }
    });
    if let (Some(m), Some(e)) = (metric.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    metric
}

/// An object as written, not read into Sluice's types first: hostile input need not parse.
fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("an object")
}

fn run(name: &str, metrics: Value) -> DynamicObject {
    object(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": { "name": name },
        "spec": { "metrics": metrics }
    }))
}

/// The API of a kind for objects as written.
fn raw<K: kube::Resource<DynamicType = ()>>(t: &Setup) -> Api<DynamicObject> {
    Api::namespaced_with(
        t.ns.client.clone(),
        &t.ns.name,
        &ApiResource::erase::<K>(&()),
    )
}

/// The run's phase and its message with those of its metrics and measurements, once it has
/// ended; read as written, since a hostile run need not parse.
async fn ended(t: &Setup, name: &str, seconds: u64) -> (String, String) {
    let runs = raw::<AnalysisRun>(t);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let run = runs.get(name).await.expect("the run");
        let status = &run.data["status"];
        let phase = status["phase"].as_str().unwrap_or_default().to_owned();
        if ["Successful", "Failed", "Error", "Inconclusive"].contains(&phase.as_str()) {
            let mut text = status["message"].as_str().unwrap_or_default().to_owned();
            for result in status["metricResults"].as_array().into_iter().flatten() {
                text.push_str(" | ");
                text.push_str(result["message"].as_str().unwrap_or_default());
                for m in result["measurements"].as_array().into_iter().flatten() {
                    text.push_str(" | ");
                    text.push_str(m["message"].as_str().unwrap_or_default());
                }
            }
            return (phase, text);
        }
        assert!(Instant::now() < deadline, "{name} did not end: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn hostile_objects_neither_exhaust_the_controller_nor_stop_a_healthy_canary() {
    let server = Server::start().await;
    let t = Setup::new("hostile").await;
    let watch = RssWatch::start(t.controller.pid());
    let started = Instant::now();

    // The healthy canary: a step analysis on the local server, then the rest of the steps.
    let healthy_analysis = json!({
        "templates": [{ "templateName": "healthy" }]
    });
    let template: sluice_api::AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": { "name": "healthy" },
        "spec": { "metrics": [web_metric(
            "ok", &server.url("/ok"), "result.ok == true",
            json!({ "interval": "1s", "count": 2 })
        )] }
    }))
    .expect("a template");
    t.ns.api::<sluice_api::AnalysisTemplate>()
        .create(&PostParams::default(), &template)
        .await
        .expect("creating the healthy template");
    let steps = json!([{ "setWeight": 50 }, { "analysis": healthy_analysis }, { "setWeight": 80 }]);
    t.create(rollout(2, steps, json!({}))).await;
    let first = status(&t.healthy().await).stable_rs;

    // The hostile runs, all at once.
    let runs = raw::<AnalysisRun>(&t);
    // Within the size cap, far past the nesting cap (a parser that recursed on it would
    // overflow its stack).
    let deep = format!("{}1{} == 1", "(".repeat(1500), ")".repeat(1500));
    let hostile = [
        (
            "huge-range",
            json!([web_metric(
                "m",
                &server.url("/ok"),
                "len(0..200000000) > 0",
                json!({})
            )]),
        ),
        (
            "endless-evaluation",
            json!([web_metric(
                "m",
                &server.url("/ok"),
                "len(map(0..1000, {map(0..1000, {map(0..1000, {#})})})) > 0",
                json!({})
            )]),
        ),
        (
            "deep-nesting",
            json!([web_metric("m", &server.url("/ok"), &deep, json!({}))]),
        ),
        (
            "huge-answer",
            json!([web_metric("m", &server.url("/huge"), "true", json!({}))]),
        ),
        (
            "wide-value",
            json!([web_metric(
                "m",
                &server.url("/wide"),
                "len(result.v) > 0",
                json!({})
            )]),
        ),
        (
            "zero-interval",
            json!([web_metric(
                "m",
                &server.url("/count"),
                "result.ok == true",
                json!({ "interval": "0s", "count": 4 })
            )]),
        ),
        (
            "overflowing-interval",
            json!([web_metric(
                "m",
                &server.url("/ok"),
                "true",
                json!({ "interval": "99999999999999999999h", "count": 2 })
            )]),
        ),
    ];
    for (name, metrics) in &hostile {
        runs.create(&PostParams::default(), &run(name, metrics.clone()))
            .await
            .unwrap_or_else(|e| panic!("creating the run {name}: {e}"));
    }
    // A Rollout whose numbers overflow.
    let mut overflowing = rollout(
        1,
        json!([{ "pause": { "duration": "99999999999999999999h" } }]),
        json!({ "canaryService": null, "stableService": null }),
    );
    overflowing["metadata"]["name"] = json!("overflowing");
    overflowing["spec"]["selector"]["matchLabels"]["app"] = json!("overflowing");
    overflowing["spec"]["template"]["metadata"]["labels"]["app"] = json!("overflowing");
    overflowing["spec"]["progressDeadlineSeconds"] = json!(2147483647);
    raw::<Rollout>(&t)
        .create(&PostParams::default(), &object(overflowing))
        .await
        .expect("creating the overflowing Rollout");

    // The healthy canary goes through while they run.
    t.set_image("example/app:2").await;
    t.wait(120, "the healthy canary completed", |r| {
        status(r).phase == Some(RolloutPhase::Healthy)
            && status(r).stable_rs == status(r).current_pod_hash
            && status(r).stable_rs != first
    })
    .await;
    let healthy_after = started.elapsed();
    let step_runs: Vec<AnalysisRun> =
        t.ns.api::<AnalysisRun>()
            .list(&ListParams::default().labels("rollout-type=Step"))
            .await
            .expect("listing the canary's runs")
            .items;
    assert_eq!(
        step_runs
            .iter()
            .map(|r| r.status.as_ref().map(|s| s.phase))
            .collect::<Vec<_>>(),
        [Some(AnalysisPhase::Successful)],
        "the healthy canary's one step run passed"
    );

    // Every bad object ends, with a message that names its fault.
    let expectations: [(&str, &str, &[&str]); 7] = [
        (
            "huge-range",
            "Error",
            &["range 0..200000000", "limit is 100000"],
        ),
        ("endless-evaluation", "Error", &["time budget of 500ms"]),
        (
            "deep-nesting",
            "Error",
            &["nests 1500 levels", "limit is 32"],
        ),
        ("huge-answer", "Error", &["larger than 1048576 bytes"]),
        ("wide-value", "Successful", &[]),
        ("zero-interval", "Successful", &[]),
        ("overflowing-interval", "Error", &["too large"]),
    ];
    for (name, phase, words) in expectations {
        let (got, message) = ended(&t, name, 120).await;
        eprintln!("{name}: {got:?}: {message}");
        assert_eq!(got, phase, "{name}: {message}");
        for word in words {
            assert!(
                message.to_lowercase().contains(word),
                "{name}: the message names its fault ({word}): {message}"
            );
        }
    }
    // The wide value is stored cut, so the run's status stays small.
    let wide = runs.get("wide-value").await.expect("the run");
    let stored = serde_json::to_vec(&wide.data["status"])
        .expect("json")
        .len();
    assert!(stored < 64 * 1024, "the status holds {stored} bytes");
    // A zero interval is no hot loop: the server saw the measurements the count asks for.
    let calls = server.counted.load(Ordering::SeqCst);
    assert!(calls <= 5, "zero-interval called the server {calls} times");

    // The Rollout that cannot be read is reported on its status, as an invalid spec.
    let rollouts = raw::<Rollout>(&t);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = rollouts.get("overflowing").await.expect("the Rollout").data["status"].clone();
        if status["phase"] == "Degraded" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "overflowing not reported: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("InvalidSpec") && message.contains("too large"),
        "{status}"
    );

    let (peak, samples) = watch.finish();
    eprintln!(
        "controller RSS peak {:.1} MiB over {samples} samples; healthy canary done after {:.1}s",
        peak as f64 / (1024.0 * 1024.0),
        healthy_after.as_secs_f64()
    );
    assert!(samples > 10, "the RSS was sampled ({samples} samples)");
    assert!(
        peak < 128 * 1024 * 1024,
        "the controller's RSS peaked at {peak} bytes"
    );
}
