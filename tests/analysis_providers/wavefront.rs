//! The wavefront provider against a local server that speaks Wavefront's chart API (`GET
//! /api/v2/chart/api`, a bearer token, series of `[time, value]` points), its tokens in the
//! Secret `wavefront-api-tokens` on the local cluster: the point closest to the measurement,
//! one series or several, errors, bounds, the token never shown, and whole runs through the
//! plan.
//!
//! Argo writes an address as a host (`example.wavefront.com`, https implied); the local server
//! is reached as `http://127.0.0.1:<port>`, its token stored under its host `127.0.0.1`.

use std::time::{Duration, Instant};

use axum::http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};
use sluice_analysis::limits::AnalysisLimits;
use sluice_api::{AnalysisPhase, Metric};
use sluice_testkit::TestNamespace;

use super::{
    datadog::{Received, Script, drive, providers_in, put_secret, run_ref, vendor_server},
    message, metric,
    web::WebServer,
};

/// The token the chart API accepts.
const TOKEN: &str = "wf-t0ken-s3cr3t-5555";

/// Wavefront's judgement of a request: the token (401, the header shown back, as a careless
/// server might), the route, and the chart-API parameters (400).
fn chart_api(r: &Received) -> Result<(), (u16, String)> {
    let refuse = |status: u16, why: String| {
        Err((
            status,
            json!({"status": {"result": "ERROR", "message": why, "code": status}}).to_string(),
        ))
    };
    if r.header("authorization") != format!("Bearer {TOKEN}") {
        return refuse(
            401,
            format!("{} is not a valid token", r.header("authorization")),
        );
    }
    if r.path != "/api/v2/chart/api" || r.method != Method::GET {
        return refuse(404, "Not found".into());
    }
    let millis = |k: &str| r.query.get(k).and_then(|v| v.parse::<i64>().ok());
    let known_granularity = r
        .query
        .get("g")
        .is_some_and(|g| ["d", "h", "m", "s"].contains(&g.as_str()));
    if r.query.get("q").is_some_and(|q| !q.is_empty()) && millis("s").is_some() && known_granularity
    {
        Ok(())
    } else {
        refuse(400, "q, s and g are required".into())
    }
}

fn wf_metric(address: &str, query: &str, conditions: Value) -> Metric {
    let mut m =
        json!({"name": "wf", "provider": {"wavefront": {"address": address, "query": query}}});
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

/// Wavefront's answer with one series per list of `(seconds from now, value)` points.
fn series(all: &[&[(i64, Value)]]) -> String {
    let now = Timestamp::now().as_second();
    json!({
        "query": "q",
        "name": "q",
        "granularity": 1,
        "timeseries": all.iter().enumerate().map(|(i, points)| json!({
            "label": format!("series-{i}"),
            "host": "web-1",
            "tags": {"env": "prod"},
            "data": points.iter().map(|(offset, v)| json!([now + offset, v])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "stats": {"keys": 1, "points": 1},
    })
    .to_string()
}

/// A namespace whose `wavefront-api-tokens` holds the server's token under its host.
async fn namespace_with_token(test: &str) -> TestNamespace {
    let ns = TestNamespace::new(test).await;
    put_secret(&ns, "wavefront-api-tokens", &[("127.0.0.1", TOKEN)]).await;
    ns
}

const QUERY: &str = r#"sum(rate(ts("istio.requestcount.count", response_code!=500))) / sum(rate(ts("istio.requestcount.count")))"#;

#[tokio::test]
async fn wavefront_queries_speak_the_chart_api() {
    let script = Script::new();
    let server = vendor_server(&script, chart_api);
    let address = server.url("");
    let ns = namespace_with_token("wavefront-api").await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let run = run_ref(&ns.name);

    // One series: its point closest to the measurement, and where it was.
    script.answer(
        200,
        series(&[&[(-600, json!(0.1)), (-1, json!(0.971)), (300, json!(0.2))]]),
    );
    let m = providers
        .measure(
            &run,
            &wf_metric(
                &address,
                QUERY,
                json!({"successCondition": "result >= 0.95"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("0.97"));
    let drift: i64 = m.metadata["drift"].parse().unwrap();
    assert!((-3..=1).contains(&drift), "{m:?}");
    assert!(m.metadata["timestamps"].parse::<i64>().is_ok(), "{m:?}");
    let r = script.last();
    assert_eq!(
        (r.method.clone(), r.path.as_str()),
        (Method::GET, "/api/v2/chart/api")
    );
    assert_eq!(r.header("authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(r.header("accept"), "application/json");
    assert_eq!(r.query["q"], QUERY);
    let start: i64 = r.query["s"].parse().unwrap();
    assert_eq!(
        r.query["e"], r.query["s"],
        "the window is the measurement's instant"
    );
    assert_eq!(start % 1000, 0, "whole seconds, in milliseconds");
    assert!((start / 1000 - Timestamp::now().as_second()).abs() <= 5);
    for (key, value) in [
        ("g", "s"),
        ("p", "1"),
        ("i", "true"),
        ("strict", "false"),
        ("autoEvents", "false"),
        ("listmode", "false"),
        ("includeObsoleteMetrics", "false"),
    ] {
        assert_eq!(r.query[key], value, "{key}");
    }

    // The condition false: Failed.
    let m = providers
        .measure(
            &run,
            &wf_metric(
                &address,
                QUERY,
                json!({"successCondition": "result >= 0.99"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // Several series: an array, in Wavefront's order; its warnings kept.
    let mut answer: Value =
        serde_json::from_str(&series(&[&[(0, json!(0.97))], &[(-30, json!(0.5))]])).unwrap();
    answer["warnings"] = json!("some series were sampled");
    script.answer(200, answer.to_string());
    let m = providers
        .measure(
            &run,
            &wf_metric(
                &address,
                QUERY,
                json!({"successCondition": "len(result) == 2 && all(result, {# > 0.4})"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[0.97,0.50]"));
    assert_eq!(m.metadata["warnings"], "some series were sampled");
    assert!(m.metadata["drift"].starts_with('['), "{m:?}");
}

#[tokio::test]
async fn wavefront_failures_are_errors_bounded_and_never_show_the_token() {
    let script = Script::new();
    let server = vendor_server(&script, chart_api);
    let address = server.url("");
    let ns = namespace_with_token("wavefront-errors").await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let run = run_ref(&ns.name);
    let any = wf_metric(&address, QUERY, json!({"successCondition": "true"}));

    // No series, a series without points, a null closest value: Errors, never a success.
    script.answer(
        200,
        json!({"timeseries": [], "warnings": "No metrics matching"}).to_string(),
    );
    let m = providers.measure(&run, &any, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        message(&m),
        "No TimeSeries found in response from Wavefront"
    );
    assert_eq!(m.metadata["warnings"], "No metrics matching");
    script.answer(200, series(&[&[]]));
    assert_eq!(
        providers.measure(&run, &any, 1).await.phase,
        AnalysisPhase::Error
    );
    script.answer(200, series(&[&[(0, Value::Null)]]));
    assert_eq!(
        providers.measure(&run, &any, 1).await.phase,
        AnalysisPhase::Error
    );

    // A server error and an answer that is not JSON.
    script.answer(500, "boom");
    let m = providers.measure(&run, &any, 1).await;
    assert_eq!(message(&m), "server returned 500 Internal Server Error");
    script.answer(200, "<html>");
    let m = providers.measure(&run, &any, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("not a query result"), "{m:?}");

    // A token the server refuses and shows back: never in the message.
    let other = TestNamespace::new("wavefront-wrong").await;
    put_secret(
        &other,
        "wavefront-api-tokens",
        &[("127.0.0.1", "wf-wrong-7777")],
    )
    .await;
    script.answer(200, series(&[&[(0, json!(1.0))]]));
    let m = providers_in(&other, AnalysisLimits::default())
        .measure(&run, &any, 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        message(&m),
        "server returned 401 Unauthorized: Bearer *** is not a valid token"
    );
    assert_eq!(
        script.last().header("authorization"),
        "Bearer wf-wrong-7777"
    );
    assert!(!format!("{m:?}").contains("wf-wrong-7777"));

    // No token for the address, no Secret at all, no query: nothing is sent.
    let before = script.count();
    let elsewhere = format!("http://127.0.0.2:{}", server.addr.port());
    let m = providers
        .measure(&run, &wf_metric(&elsewhere, QUERY, json!({})), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("API token not found"), "{m:?}");
    let bare = TestNamespace::new("wavefront-bare").await;
    let m = providers_in(&bare, AnalysisLimits::default())
        .measure(&run, &any, 1)
        .await;
    assert!(
        message(&m).contains("wavefront-api-tokens not found"),
        "{m:?}"
    );
    let m = providers
        .measure(&run, &wf_metric(&address, " ", json!({})), 1)
        .await;
    assert!(message(&m).contains("query is empty"), "{m:?}");
    assert_eq!(script.count(), before);

    // A silent server: the controller's longest wait; an answer past the cap.
    script.answer_after(Duration::from_secs(4), 200, series(&[&[(0, json!(1.0))]]));
    let capped = providers_in(
        &ns,
        AnalysisLimits {
            max_timeout: Duration::from_secs(1),
            ..AnalysisLimits::default()
        },
    );
    let started = Instant::now();
    let m = capped.measure(&run, &any, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).ends_with("within 1s"), "{m:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let point: &[(i64, Value)] = &[(0, json!(1.0))];
    script.answer(200, series(&[point; 20]));
    let small = providers_in(
        &ns,
        AnalysisLimits {
            max_response_bytes: 200,
            ..AnalysisLimits::default()
        },
    );
    assert_eq!(
        message(&small.measure(&run, &any, 1).await),
        "answer larger than 200 bytes"
    );
}

#[tokio::test]
async fn a_wavefront_run_passes_and_fails_end_to_end() {
    let script = Script::new();
    let server: WebServer = vendor_server(&script, chart_api);
    let ns = namespace_with_token("wavefront-run").await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let spec = json!({
        "metrics": [{
            "name": "success-rate",
            "interval": "1s",
            "count": 2,
            "successCondition": "result >= 0.95",
            "provider": {"wavefront": {"address": server.url(""), "query": QUERY}},
        }],
    });
    script.answer(200, series(&[&[(0, json!(0.99))]]));
    let passed = drive(&providers, &ns.name, spec.clone()).await;
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));

    script.answer(200, series(&[&[(0, json!(0.5))]]));
    let failed = drive(&providers, &ns.name, spec).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
}
