//! `kubectl sluice dashboard` end to end, against the local cluster: the plugin binary serves the
//! page; the controller moves the rollouts. One test reads the JSON and SSE endpoints and checks
//! the cross-site protection with a plain HTTP client; one drives a real headless Chromium
//! through chromedriver (promote and abort from the page, live updates without a reload, the
//! rollout page's ReplicaSets and measurements).
//!
//! Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`); CHROMEDRIVER and
//! CHROMIUM override their paths. SLUICE_UPDATE_SCREENSHOT=1 writes the list page's screenshot
//! to docs/dashboard.png (it always goes to target/dashboard.png).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use fantoccini::{Locator, key::Key};
use futures::TryStreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::{
    ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::{AnalysisRun, PauseReason, Rollout, RolloutPhase, vocab::POD_TEMPLATE_HASH_LABEL};
use sluice_testkit::{
    Controller, TestNamespace,
    browser::{Browser, Dashboard},
    manifests,
};

// ---- the cluster -----------------------------------------------------------------------------

/// A canary Rollout `name` of `replicas` pods: `setWeight: 50`, then an indefinite pause.
fn canary(name: &str, replicas: i32) -> Rollout {
    let manifest = manifests::canary(
        name,
        replicas,
        "example/app:1",
        json!([{ "setWeight": 50 }, { "pause": {} }]),
    );
    serde_json::from_value(manifest).expect("a Rollout")
}

fn status(r: &Rollout) -> sluice_api::RolloutStatus {
    manifests::status(r)
}

async fn wait_for(ns: &TestNamespace, name: &str, what: &str, ok: impl Fn(&Rollout) -> bool) {
    ns.wait_for(name, 90, what, move |r: Option<&Rollout>| {
        r.is_some_and(&ok)
    })
    .await;
}

fn paused_at_first_pause(r: &Rollout) -> bool {
    let s = status(r);
    s.current_step_index == Some(1)
        && s.phase == Some(RolloutPhase::Paused)
        && s.pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::CanaryPauseStep)
}

/// Creates the rollout, waits until it is Healthy, changes its image and waits until it stands
/// paused after `setWeight: 50`.
async fn paused_canary(ns: &TestNamespace, name: &str) -> Rollout {
    let rollouts = ns.api::<Rollout>();
    rollouts
        .create(&PostParams::default(), &canary(name, 2))
        .await
        .expect("creating the Rollout");
    wait_for(ns, name, "the rollout Healthy", |r| {
        status(r).phase == Some(RolloutPhase::Healthy) && manifests::observed(r)
    })
    .await;
    rollouts
        .patch(
            name,
            &PatchParams::default(),
            &manifests::image_patch("example/app:2"),
        )
        .await
        .expect("changing the image");
    wait_for(
        ns,
        name,
        "the canary paused at step 1",
        paused_at_first_pause,
    )
    .await;
    rollouts.get(name).await.expect("reading the rollout")
}

/// An AnalysisRun of `rollout`'s canary with one metric and four measurements, written as the
/// controller would have (its initial delay keeps the controller from measuring it itself).
async fn analysis_run(ns: &TestNamespace, rollout: &Rollout, name: &str) {
    let hash = status(rollout).current_pod_hash.expect("a canary hash");
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {
            "name": name,
            "labels": { POD_TEMPLATE_HASH_LABEL: hash },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "name": rollout.name_any(),
                "uid": rollout.uid().expect("a uid"),
            }],
        },
        "spec": { "metrics": [{
            "name": "success-rate",
            "initialDelay": "1h",
            "successCondition": "result[0] >= 0.95",
            "failureCondition": "result[0] < 0.8",
            "provider": { "web": { "url": "http://127.0.0.1:9/rate" } },
        }] },
    }))
    .expect("an AnalysisRun");
    let runs = ns.api::<AnalysisRun>();
    runs.create(&PostParams::default(), &run)
        .await
        .expect("creating the AnalysisRun");
    let at = |s: u32| format!("2026-01-01T10:0{s}:00Z");
    let measurements: Vec<Value> = [("0.99", "Successful"), ("0.97", "Successful"), ("0.91", "Inconclusive"), ("0.98", "Successful")]
        .iter()
        .zip(0u32..)
        .map(|((value, phase), i)| {
            json!({ "phase": phase, "value": format!("[{value}]"), "startedAt": at(i), "finishedAt": at(i) })
        })
        .collect();
    let status = json!({ "status": {
        "phase": "Successful",
        "startedAt": at(0),
        "metricResults": [{
            "name": "success-rate", "phase": "Successful", "measurements": measurements,
            "count": 4, "successful": 3, "inconclusive": 1,
        }],
    }});
    runs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("writing the measurements");
}

// ---- the dashboard ---------------------------------------------------------------------------

/// The plugin's dashboard of the test's namespace.
async fn dashboard(ns: &TestNamespace) -> Dashboard {
    Dashboard::start(
        Path::new(env!("CARGO_BIN_EXE_kubectl-sluice")),
        &["-n", &ns.name],
    )
    .await
    .expect("starting kubectl sluice dashboard")
}

/// Polls `check` every 200 ms until it gives a value, failing after `seconds`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    seconds: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads SSE events from a response until one named `name` whose data satisfies `ok`.
async fn next_event<B: AsRef<[u8]>>(
    events: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    buffer: &mut String,
    name: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let found = async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let field = |f: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(f))
                        .map(|v| v.trim_start().to_string())
                };
                if field("event:").as_deref() == Some(name) {
                    let data: Value = serde_json::from_str(&field("data:").unwrap_or_default())
                        .expect("JSON data");
                    if ok(&data) {
                        return data;
                    }
                }
            }
            let chunk = events
                .try_next()
                .await
                .expect("reading the event stream")
                .expect("the stream stays open");
            buffer.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), found)
        .await
        .unwrap_or_else(|_| panic!("no {name} event within 60 s"))
}

fn row<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["rows"].as_array()?.iter().find(|r| r["name"] == name)
}

#[tokio::test]
async fn endpoints_serve_json_and_events_and_refuse_cross_site_writes() {
    let ns = TestNamespace::new("dashboard-api").await;
    sluice_testkit::install_crds(&ns.client).await;
    let rollouts = ns.api::<Rollout>();
    rollouts
        .create(&PostParams::default(), &canary("app", 0))
        .await
        .expect("creating the Rollout");
    let dashboard = dashboard(&ns).await;
    let http = reqwest::Client::new();

    // The page: compiled in, with its security headers; another Host is refused.
    let page = http.get(&dashboard.url).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("text");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(page.text().await.expect("html").contains("assets/app.js"));
    let rebound = http
        .get(&dashboard.url)
        .header("host", "attacker.example")
        .send()
        .await
        .expect("GET with another Host");
    assert_eq!(rebound.status(), 421);
    let gz = http
        .get(dashboard.at("assets/app.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET app.js");
    assert_eq!(gz.headers()["content-encoding"], "gzip");

    // The list, once the watches have listed.
    let list = eventually(30, "the list showing the rollout", || async {
        let list: Value = http
            .get(dashboard.at("api/rollouts"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        row(&list, "app").is_some().then_some(list)
    })
    .await;
    let app = row(&list, "app").expect("the row");
    assert_eq!(app["strategy"], "Canary");
    assert_eq!(app["status"], "Progressing", "no controller: not observed");
    assert_eq!(app["paused"], false);

    // Changes are pushed: spec.paused shows as a delta after the list's change number.
    let response = http
        .get(dashboard.at(&format!("api/events?since={}", list["seq"])))
        .send()
        .await
        .expect("GET api/events");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream();
    let mut buffer = String::new();
    rollouts
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "paused": true } })),
        )
        .await
        .expect("pausing");
    let delta = next_event(&mut events, &mut buffer, "delta", |d| {
        row(d, "app").is_some_and(|r| r["paused"] == true)
    })
    .await;
    assert_eq!(delta["full"], false, "{delta}");

    // A rollout's detail, once and pushed.
    let detail: Value = http
        .get(dashboard.at(&format!("api/rollouts/{}/app", ns.name)))
        .send()
        .await
        .expect("GET detail")
        .json()
        .await
        .expect("JSON");
    assert_eq!(detail["row"]["name"], "app");
    assert_eq!(detail["containers"], json!(["app"]));
    let mut detail_events = http
        .get(dashboard.at(&format!("api/rollouts/{}/app/events", ns.name)))
        .send()
        .await
        .expect("GET detail events")
        .bytes_stream();
    let mut detail_buffer = String::new();
    next_event(&mut detail_events, &mut detail_buffer, "detail", |d| {
        d["row"]["paused"] == true
    })
    .await;

    // Writes: refused without the header, from another origin or site, and outside the namespace.
    let promote = dashboard.at(&format!("api/rollouts/{}/app/actions/promote", ns.name));
    let post = |url: &str, headers: &[(&str, &str)]| {
        let mut request = http.post(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send()
    };
    let host_origin = dashboard.url.trim_end_matches('/').to_string();
    for (headers, why) in [
        (vec![], "no X-Sluice-Dashboard header"),
        (
            vec![
                ("x-sluice-dashboard", "1"),
                ("origin", "http://attacker.example"),
            ],
            "another origin",
        ),
        (
            vec![
                ("x-sluice-dashboard", "1"),
                ("origin", host_origin.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
            "another site",
        ),
    ] {
        let refused = post(&promote, &headers).await.expect("POST");
        assert_eq!(refused.status(), 403, "{why}");
    }
    let before = rollouts.get("app").await.expect("the rollout");
    assert!(before.spec.is_paused(), "nothing was written");
    let elsewhere = post(
        &dashboard.at("api/rollouts/kube-system/app/actions/abort"),
        &[("x-sluice-dashboard", "1")],
    )
    .await
    .expect("POST");
    assert_eq!(
        elsewhere.status(),
        404,
        "a namespace the dashboard does not show"
    );
    let unknown = post(
        &dashboard.at(&format!("api/rollouts/{}/app/actions/delete", ns.name)),
        &[("x-sluice-dashboard", "1")],
    )
    .await
    .expect("POST");
    assert_eq!(unknown.status(), 404);

    // The page's own write: the same message as `kubectl sluice promote`, and the same patch.
    let done = post(
        &promote,
        &[
            ("x-sluice-dashboard", "1"),
            ("origin", host_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await
    .expect("POST promote");
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.expect("JSON");
    // No controller here, so the canary stands at step 0: as Argo's, promote also moves it on.
    assert_eq!(
        body["message"],
        "rollout \"app\" promoted (was paused by spec.paused): now at step 1/2"
    );
    assert!(
        !rollouts
            .get("app")
            .await
            .expect("the rollout")
            .spec
            .is_paused()
    );
    // Promoting again: not paused, so the canary moves to its next step, as the command does.
    let again = post(&promote, &[("x-sluice-dashboard", "1")])
        .await
        .expect("POST");
    assert_eq!(again.status(), 200);
    let moved = ns.api::<Rollout>().get("app").await.expect("the rollout");
    assert_eq!(status(&moved).current_step_index, Some(2));

    // set-image: a JSON body, capped.
    let set_image = dashboard.at(&format!("api/rollouts/{}/app/actions/set-image", ns.name));
    let not_json = http
        .post(&set_image)
        .header("x-sluice-dashboard", "1")
        .body("app=example/app:3")
        .send()
        .await
        .expect("POST");
    assert_eq!(not_json.status(), 415);
    let huge = http
        .post(&set_image)
        .header("x-sluice-dashboard", "1")
        .json(&json!({ "container": "app", "image": "x".repeat(20_000) }))
        .send()
        .await
        .expect("POST");
    assert_eq!(huge.status(), 413);
    let set = http
        .post(&set_image)
        .header("x-sluice-dashboard", "1")
        .json(&json!({ "container": "app", "image": "example/app:3" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(set.status(), 200);
    assert_eq!(
        manifests::image(&rollouts.get("app").await.expect("the rollout")),
        "example/app:3"
    );

    // The rollout's deletion ends its detail stream; the list says it is gone.
    rollouts
        .delete("app", &Default::default())
        .await
        .expect("deleting");
    next_event(&mut detail_events, &mut detail_buffer, "deleted", |_| true).await;
    next_event(&mut events, &mut buffer, "delta", |d| {
        d["gone"]
            .as_array()
            .is_some_and(|g| g.iter().any(|k| k[1] == "app"))
    })
    .await;
}

// ---- the browser -----------------------------------------------------------------------------

#[tokio::test]
async fn the_page_promotes_and_aborts_rollouts_live_without_a_reload() {
    let ns = TestNamespace::new("dashboard-browser").await;
    sluice_testkit::install_crds(&ns.client).await;
    let _controller = Controller::start(&ns.name).await;
    let (shop, cart) = tokio::join!(paused_canary(&ns, "shop"), paused_canary(&ns, "cart"));
    let _ = shop;
    analysis_run(&ns, &cart, "cart-canary-1").await;
    let dashboard = dashboard(&ns).await;
    let browser = Browser::start().await.expect("starting Chromium");
    let b = &browser;

    // The list: both paused at step 1 of 2, with the canary's share of traffic.
    b.client
        .goto(&dashboard.url)
        .await
        .expect("opening the list");
    b.find(r#"tr[data-name="shop"][data-status="Paused"]"#)
        .await;
    let cart_row = b
        .find(r#"tr[data-name="cart"][data-status="Paused"]"#)
        .await;
    let text = cart_row.text().await.expect("the row's text");
    assert!(text.contains("1/2"), "{text}");
    assert!(text.contains("canary 50"), "{text}");
    assert!(text.contains("example/app:2"), "{text}");
    // Let the live indicator settle before the screenshot.
    b.find("#live.on").await;
    let png = b.client.screenshot().await.expect("a screenshot");
    let root = sluice_testkit::repo_root();
    std::fs::write(root.join("target/dashboard.png"), &png).expect("writing the screenshot");
    if std::env::var_os("SLUICE_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(root.join("docs/dashboard.png"), &png).expect("writing docs/dashboard.png");
    }

    // Promote, with the keyboard only: Enter on the button, Enter on the dialog's Confirm.
    b.script("window.sluiceNoReload = true; return true").await;
    let promote = b
        .find(r#"tr[data-name="shop"] button[data-action="promote"]"#)
        .await;
    promote
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("Enter on Promote");
    b.find("dialog#confirm[open]").await;
    let focused = b
        .client
        .active_element()
        .await
        .expect("the focused element");
    assert_eq!(
        focused.attr("id").await.expect("its id").as_deref(),
        Some("confirm-ok"),
        "the dialog focuses its Confirm button"
    );
    focused
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("Enter on Confirm");
    b.find(r#"tr[data-name="shop"][data-status="Healthy"]"#)
        .await;
    assert_eq!(
        b.script("return window.sluiceNoReload === true").await,
        json!(true),
        "the page was not reloaded"
    );
    let healthy = ns.api::<Rollout>().get("shop").await.expect("shop");
    assert_eq!(
        status(&healthy).stable_rs,
        status(&healthy).current_pod_hash
    );

    // The rollout page: ReplicaSets with their roles, the run's measurements against its
    // conditions.
    b.find(r#"tr[data-name="cart"] a"#)
        .await
        .click()
        .await
        .expect("following the link");
    b.find(r#"tr[data-replicaset] .role-canary"#).await;
    b.find(r#"tr[data-replicaset] .role-stable"#).await;
    let sets = b
        .client
        .find_all(Locator::Css("tr[data-replicaset]"))
        .await
        .expect("the ReplicaSets");
    assert_eq!(sets.len(), 2);
    let run = b.find(r#"[data-run="cart-canary-1"]"#).await;
    let points = run
        .find_all(Locator::Css("svg circle.pt"))
        .await
        .expect("the plotted measurements");
    assert_eq!(points.len(), 4);
    let run_text = run.text().await.expect("the run's text");
    assert!(
        run_text.contains("Success when result[0] >= 0.95"),
        "{run_text}"
    );
    assert!(
        run_text.contains("Failure when result[0] < 0.8"),
        "{run_text}"
    );
    assert!(run_text.contains("3 successful"), "{run_text}");
    let label = run
        .find(Locator::Css("svg"))
        .await
        .expect("the chart")
        .attr("aria-label")
        .await
        .expect("its label");
    assert_eq!(
        label.as_deref(),
        Some("success-rate: 4 measurements, the last [0.98] (Successful)")
    );
    b.script("document.querySelector('[data-run]').scrollIntoView(); return true")
        .await;
    std::fs::write(
        root.join("target/dashboard-rollout.png"),
        b.client.screenshot().await.expect("a screenshot"),
    )
    .expect("writing the screenshot");

    // Abort from the rollout page, confirmed with the mouse: Degraded, pushed.
    b.script("window.sluiceNoReload = true; return true").await;
    b.find(r#"button[data-action="abort"]:not([disabled])"#)
        .await
        .click()
        .await
        .expect("clicking Abort");
    b.find("dialog#confirm[open]").await;
    b.find("#confirm-ok")
        .await
        .click()
        .await
        .expect("confirming");
    b.find("dl.summary .badge.s-Degraded").await;
    b.find(r#"button[data-action="retry"]:not([disabled])"#)
        .await;
    assert_eq!(
        b.script("return window.sluiceNoReload === true").await,
        json!(true),
        "the page was not reloaded"
    );
    assert_eq!(
        status(&ns.api::<Rollout>().get("cart").await.expect("cart")).abort,
        Some(true)
    );
    b.client
        .goto(&dashboard.url)
        .await
        .expect("back to the list");
    b.find(r#"tr[data-name="cart"][data-status="Degraded"]"#)
        .await;
    b.find(r#"tr[data-name="cart"] button[data-action="retry"]"#)
        .await;

    // The ReplicaSets the page showed are the rollout's.
    let owned = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels("app=cart"))
        .await
        .expect("listing ReplicaSets");
    assert_eq!(owned.items.len(), 2);
}
