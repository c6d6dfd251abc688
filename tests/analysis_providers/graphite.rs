//! The graphite provider against a real Graphite (graphite-web 1.1.10 over whisper files the
//! test writes): the first series' non-null values as `result`, the request Graphite received
//! (read from its log), Graphite's own errors, no data, an unreachable or silent server, and
//! whole runs through the plan.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use sluice_analysis::limits::AnalysisLimits;
use sluice_api::{AnalysisPhase, Metric};
use sluice_testkit::graphite::Graphite;

use super::{drive, measure, measure_within, message, metric};

fn graphite_metric(address: &str, query: &str, conditions: Value) -> Metric {
    let mut m = json!({
        "name": "m",
        "provider": {"graphite": {"address": address, "query": query}},
    });
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

/// A Graphite holding `app.errors` = 1, 2, 3 (30, 20 and 10 s ago) and `app.requests` = 100, 200
/// (20 and 10 s ago).
async fn graphite_with_data() -> Graphite {
    let graphite = Graphite::start().await;
    let now = Timestamp::now().as_second();
    graphite.write(
        "app.errors",
        &[(now - 30, 1.0), (now - 20, 2.0), (now - 10, 3.0)],
    );
    graphite.write("app.requests", &[(now - 20, 100.0), (now - 10, 200.0)]);
    graphite
}

/// Waits (up to 5 s: Django logs a request once it has answered it) until Graphite's log has
/// the request line `line`, failing the test otherwise.
async fn received(graphite: &Graphite, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let requests = graphite.requests();
        if requests.iter().any(|r| r == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Graphite did not receive {line:?}; it received {requests:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn graphite_first_series_values_are_the_result() {
    let graphite = graphite_with_data().await;
    let url = graphite.url();
    let query = "target=app.errors&from=-5min&until=now";

    let m = measure(&graphite_metric(
        &url,
        query,
        json!({"successCondition": "len(result) == 3 && result[0] == 1 && result[2] < 5"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[1.000000,2.000000,3.000000]"));
    assert!(m.started_at.is_some() && m.finished_at.is_some());
    // Graphite received exactly Argo's request: the parameters sorted, format=json added.
    received(
        &graphite,
        "GET /render?format=json&from=-5min&target=app.errors&until=now HTTP/1.1",
    )
    .await;

    let m = measure(&graphite_metric(
        &url,
        query,
        json!({"successCondition": "result[2] < 1"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // Several series: only the first (Graphite sorts them: app.errors, then app.requests).
    let m = measure(&graphite_metric(
        &url,
        "target=app.*&from=-5min",
        json!({"successCondition": "len(result) == 3 && all(result, {# < 10})"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");

    // A template's query over several lines, as Argo's docs write one: whitespace collapsed,
    // Graphite's functions applied. app.errors as a percent of all app.* at each time: 100
    // (30 s ago, no requests yet), 2 / 102, then 3 / 203.
    let m = measure(&graphite_metric(
        &url,
        "target=asPercent(\n  app.errors,\n  sumSeries(\n    app.*\n  )\n)&from=-5min",
        json!({"successCondition":
            "len(result) == 3 && result[0] == 100 && result[2] > 1.47 && result[2] < 1.48"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    received(
        &graphite,
        "GET /render?format=json&from=-5min&target=asPercent%28+app.errors%2C+sumSeries%28+app.%2A+%29+%29 HTTP/1.1",
    )
    .await;
}

#[tokio::test]
async fn graphite_no_data_and_graphite_errors_are_errors() {
    let graphite = graphite_with_data().await;
    let url = graphite.url();
    let always = json!({"successCondition": "true"});

    // No series at all.
    let m = measure(&graphite_metric(
        &url,
        "target=no.such.metric",
        always.clone(),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("no values found"), "{m:?}");

    // A series whose datapoints are all null (nothing written in that window).
    let m = measure(&graphite_metric(
        &url,
        "target=app.errors&from=-50min&until=-40min",
        always.clone(),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("every datapoint of app.errors is null"),
        "{m:?}"
    );

    // Graphite refuses a query (400) and fails on one (500): Errors with its status.
    let m = measure(&graphite_metric(
        &url,
        "target=noSuchFunction(app.errors)",
        always.clone(),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("400 Bad Request"), "{m:?}");
    assert!(message(&m).contains("unknown function"), "{m:?}");
    let m = measure(&graphite_metric(
        &url,
        "target=divideSeries(app.errors)",
        always.clone(),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("500 Internal Server Error"), "{m:?}");

    // A condition on no value is never a success.
    let m = measure(&graphite_metric(
        &url,
        "target=app.errors&from=-5min",
        json!({"successCondition": "result[5] < 1"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");

    // No address, no query.
    let m = measure(&metric(
        json!({"name": "m", "provider": {"graphite": {"query": "target=a"}}}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("address"), "{m:?}");
    let m = measure(&graphite_metric(&url, " ", always.clone())).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("query is empty"), "{m:?}");
}

#[tokio::test]
async fn graphite_unreachable_silent_or_too_large_is_an_error() {
    let mut graphite = graphite_with_data().await;
    let up = graphite_metric(
        &graphite.url(),
        "target=app.errors&from=-5min",
        json!({"successCondition": "result[0] == 1"}),
    );
    assert_eq!(measure(&up).await.phase, AnalysisPhase::Successful);

    // An answer larger than the controller's cap.
    let small = AnalysisLimits {
        max_response_bytes: 100,
        ..AnalysisLimits::default()
    };
    let m = measure_within(&small, &up).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        message(&m),
        format!(
            "graphite query {}/render?format=json&from=-5min&target=app.errors: answer larger than 100 bytes",
            graphite.url()
        )
    );

    graphite.stop();
    let m = measure(&up).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(!message(&m).is_empty());

    // A server that accepts and never answers: the wait ends at the controller's cap.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let address = format!("http://user:pa55@{}", silent.local_addr().unwrap());
    let capped = AnalysisLimits {
        max_timeout: Duration::from_secs(1),
        ..AnalysisLimits::default()
    };
    let started = std::time::Instant::now();
    let m = measure_within(&capped, &graphite_metric(&address, "target=a", json!({}))).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).ends_with("no answer from graphite within 1s"),
        "{m:?}"
    );
    assert!(
        !message(&m).contains("pa55"),
        "the password is not shown: {m:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_run_passes_and_fails_end_to_end_against_graphite() {
    let graphite = graphite_with_data().await;
    let spec = |threshold: &str| {
        json!({
            "args": [{"name": "threshold", "value": threshold}, {"name": "series", "value": "errors"}],
            "metrics": [{
                "name": "errors",
                "interval": "1s",
                "count": 2,
                "successCondition": "all(result, {# <= {{args.threshold}}})",
                "provider": {"graphite": {
                    "address": graphite.url(),
                    "query": "target=app.{{args.series}}&from=-5min",
                }},
            }],
        })
    };
    let passed = drive(spec("3")).await;
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));
    assert_eq!(
        result.measurements[0].value.as_deref(),
        Some("[1.000000,2.000000,3.000000]")
    );

    let failed = drive(spec("2")).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Metric \"errors\" assessed Failed due to failed (1) > failureLimit (0)")
    );
}
