//! The providers against real servers: Debian's Prometheus scraping an exporter the test sets
//! (here), a local HTTP server (`web.rs`), and Jobs on the local cluster (`job.rs`). Conditions
//! are evaluated end to end, and whole runs are driven through the pure plan with the real
//! providers. No mocks of Prometheus.

#[path = "analysis_providers/job.rs"]
mod job;
#[path = "analysis_providers/web.rs"]
mod web;

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use sluice::analysis::{
    evaluator::Evaluator,
    pass::run_pass,
    providers::{Providers, RunRef},
};
use sluice_analysis::{
    args::{self, NoSecrets},
    limits::AnalysisLimits,
    plan::{self, Task},
};
use sluice_api::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric,
};
use sluice_testkit::prometheus::Prometheus;

fn metric(value: Value) -> Metric {
    serde_json::from_value(value).expect("a metric")
}

fn prometheus_metric(address: &str, query: &str, conditions: Value) -> Metric {
    let mut m = json!({
        "name": "m",
        "provider": {"prometheus": {"address": address, "query": query, "timeout": 5}},
    });
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

async fn measure(metric: &Metric) -> Measurement {
    measure_within(&AnalysisLimits::default(), metric).await
}

/// One measurement by providers built within `limits`, as the controller stores it.
async fn measure_within(limits: &AnalysisLimits, metric: &Metric) -> Measurement {
    let providers =
        Providers::new(None, limits, Evaluator::new(Default::default())).expect("providers");
    providers.measure(&RunRef::default(), metric, 1).await
}

fn message(m: &Measurement) -> &str {
    m.message.as_deref().unwrap_or_default()
}

/// A Prometheus whose exporter serves 95 good and 5 failed requests, scraped.
async fn prometheus_with_requests() -> Prometheus {
    let prometheus = Prometheus::start().await;
    prometheus
        .exporter
        .set("http_requests_total{code=\"200\"}", 95.0);
    prometheus
        .exporter
        .set("http_requests_total{code=\"500\"}", 5.0);
    prometheus
        .wait_for("http_requests_total", 30, |v| v.len() == 2)
        .await;
    prometheus
}

const ERROR_RATE: &str = "sum(http_requests_total{code=~\"5..\"}) / sum(http_requests_total)";

#[tokio::test]
async fn prometheus_vectors_scalars_empty_results_and_errors() {
    let prometheus = prometheus_with_requests().await;
    let url = prometheus.url();

    // An instant vector of one series: result[0].
    let m = measure(&prometheus_metric(
        &url,
        ERROR_RATE,
        json!({"successCondition": "result[0] < 0.1"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[0.05]"));
    assert!(m.started_at.is_some() && m.finished_at.is_some());
    let m = measure(&prometheus_metric(
        &url,
        ERROR_RATE,
        json!({"successCondition": "result[0] < 0.01"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // Several series: one number each, in Prometheus' order.
    let m = measure(&prometheus_metric(
        &url,
        "sort(http_requests_total)",
        json!({"successCondition": "len(result) == 2 && all(result, {# > 0}) && result[1] == 95"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[5,95]"));

    // A scalar is a number.
    let m = measure(&prometheus_metric(
        &url,
        "scalar(sum(http_requests_total))",
        json!({"successCondition": "result > 99 && result < 101"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("100"));

    // No series: an empty array; a condition indexing it is an Error, never a success.
    let empty = |conditions| prometheus_metric(&url, "no_such_metric", conditions);
    let m = measure(&empty(json!({"successCondition": "len(result) == 0"}))).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[]"));
    let m = measure(&empty(json!({"successCondition": "result[0] < 0.1"}))).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    let m = measure(&empty(json!({"failureCondition": "result[0] > 0.1"}))).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");

    // A query Prometheus refuses, and a range vector: Errors with Prometheus' reason.
    let m = measure(&prometheus_metric(&url, "sum(", json!({}))).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("parse error"), "{m:?}");
    let m = measure(&prometheus_metric(
        &url,
        "http_requests_total[1m]",
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("range vector"), "{m:?}");
}

#[tokio::test]
async fn prometheus_nan_is_a_number_conditions_can_test() {
    let prometheus = Prometheus::start().await;
    prometheus.exporter.set("errors_total", 0.0);
    prometheus.exporter.set("requests_total", 0.0);
    prometheus
        .wait_for("requests_total", 30, |v| v == [0.0])
        .await;
    let url = prometheus.url();
    let ratio = "sum(errors_total) / sum(requests_total)";
    let m = measure(&prometheus_metric(
        &url,
        ratio,
        json!({"successCondition": "isNaN(result[0]) || result[0] < 0.1"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[NaN]"));
    // Every comparison with NaN is false: a bare threshold fails, as in Argo.
    let m = measure(&prometheus_metric(
        &url,
        ratio,
        json!({"successCondition": "result[0] < 0.1"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");
    let m = measure(&prometheus_metric(
        &url,
        "scalar(sum(errors_total) / sum(requests_total))",
        json!({"successCondition": "isNaN(result)"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
}

#[tokio::test]
async fn prometheus_unreachable_or_silent_is_an_error() {
    let mut prometheus = Prometheus::start().await;
    let url = prometheus.url();
    let up = prometheus_metric(&url, "up", json!({"successCondition": "result[0] == 1"}));
    assert_eq!(measure(&up).await.phase, AnalysisPhase::Successful);
    prometheus.stop();
    let m = measure(&up).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(!message(&m).is_empty());

    // A server that accepts and never answers: the timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let address = format!("http://{}", silent.local_addr().unwrap());
    let mut slow = prometheus_metric(&address, "up", json!({}));
    if let sluice_api::MetricProvider::Prometheus(p) = &mut slow.provider {
        p.timeout = Some(1);
    }
    let started = std::time::Instant::now();
    let m = measure(&slow).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("within 1s"), "{m:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // No address at all.
    let m = measure(&metric(
        json!({"name": "m", "provider": {"prometheus": {"query": "up"}}}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("address"), "{m:?}");
}

#[tokio::test]
async fn prometheus_queries_take_arguments_headers_and_basic_auth_in_the_address() {
    let prometheus = prometheus_with_requests().await;
    let with_credentials = format!("http://user:secret@{}", prometheus.addr);
    let template = metric(json!({
        "name": "errors",
        "successCondition": "result[0] == {{args.expected}}",
        "provider": {"prometheus": {
            "address": with_credentials,
            "query": "sum(http_requests_total{code=\"{{ args.code }}\"})",
            "headers": [{"key": "X-Scope-OrgID", "value": "{{args.tenant}}"}],
        }},
    }));
    let args: Vec<sluice_api::Argument> = serde_json::from_value(json!([
        {"name": "code", "value": "500"},
        {"name": "expected", "value": "5"},
        {"name": "tenant", "value": "team-a"},
    ]))
    .unwrap();
    let resolved = args::resolve_args(&args, &NoSecrets, None).unwrap();
    let metric = args::substitute_metric(&template, &resolved).unwrap();
    let providers = Providers::new(
        None,
        &AnalysisLimits::default(),
        Evaluator::new(Default::default()),
    )
    .unwrap();
    assert_eq!(
        providers.metadata_of(&metric)["ResolvedPrometheusQuery"],
        "sum(http_requests_total{code=\"500\"})"
    );
    let m = measure(&metric).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");

    let mut bad_header = metric.clone();
    if let sluice_api::MetricProvider::Prometheus(p) = &mut bad_header.provider {
        p.headers[0].key = "bad header".into();
    }
    let m = measure(&bad_header).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("header name"), "{m:?}");
}

/// Drives a run through [`run_pass`] with the real providers until it completes, sleeping
/// until each requeue time, as the controller does.
async fn drive(spec: Value) -> AnalysisRunStatus {
    let spec: AnalysisRunSpec = serde_json::from_value(spec).expect("a run spec");
    let mut run = AnalysisRun::new("run", spec);
    let providers = Providers::new(
        None,
        &AnalysisLimits::default(),
        Evaluator::new(Default::default()),
    )
    .expect("providers");
    for _ in 0..30 {
        let pass = run_pass(&run, &providers, &NoSecrets, None).await;
        let status = pass.status.clone();
        run.status = Some(pass.status);
        if status.phase.is_completed() && plan::settled(&status) {
            assert!(
                pass.completed_now,
                "the pass that completes the run says so"
            );
            return status;
        }
        if let Some(next) = pass.requeue_at {
            let wait = next.duration_since(Timestamp::now());
            tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
        }
    }
    panic!("the run did not complete: {:?}", run.status);
}

#[tokio::test]
async fn a_run_passes_and_fails_end_to_end_against_prometheus() {
    let prometheus = prometheus_with_requests().await;
    let spec = |threshold: &str| {
        json!({
            "args": [{"name": "threshold", "value": threshold}],
            "metrics": [{
                "name": "error-rate",
                "interval": "1s",
                "count": 2,
                "successCondition": "result[0] <= {{args.threshold}}",
                "provider": {"prometheus": {"address": prometheus.url(), "query": ERROR_RATE}},
            }],
        })
    };
    let passed = drive(spec("0.1")).await;
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));
    assert_eq!(result.measurements.len(), 2);
    assert_eq!(
        result.metadata["ResolvedPrometheusQuery"], ERROR_RATE,
        "the resolved query is kept"
    );

    // The error rate rises: the run fails at the first measurement.
    prometheus
        .exporter
        .set("http_requests_total{code=\"500\"}", 95.0);
    prometheus
        .wait_for("sum(http_requests_total)", 30, |v| v == [190.0])
        .await;
    let failed = drive(spec("0.1")).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)")
    );
}

#[tokio::test]
async fn a_run_against_a_stopped_prometheus_ends_in_error_never_success() {
    let mut prometheus = Prometheus::start().await;
    let address = prometheus.url();
    prometheus.stop();
    let status = drive(json!({
        "metrics": [{
            "name": "error-rate",
            "successCondition": "result[0] < 0.1",
            // One error in a row tolerated, so the test does not wait 4 retries of 10 s.
            "consecutiveErrorLimit": 1,
            "provider": {"prometheus": {"address": address, "query": ERROR_RATE}},
        }],
    }))
    .await;
    assert_eq!(status.phase, AnalysisPhase::Error, "{status:?}");
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with(
            "Metric \"error-rate\" assessed Error due to consecutiveErrors (2) > consecutiveErrorLimit (1)"
        ),
        "{message}"
    );
    assert!(message.contains("Error Message"), "{message}");
}

#[tokio::test]
async fn tasks_for_an_unknown_provider_are_errors() {
    let providers = Providers::new(
        None,
        &AnalysisLimits::default(),
        Evaluator::new(Default::default()),
    )
    .unwrap();
    let dd = metric(json!({"name": "d", "provider": {"datadog": {"query": "x"}}}));
    let inflight = Measurement {
        phase: AnalysisPhase::Running,
        ..Measurement::default()
    };
    let m = providers
        .perform(&RunRef::default(), &dd, Task::Resume(inflight), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error);
    assert!(m.finished_at.is_some());
}

#[tokio::test]
async fn a_pass_reports_invalid_specs_and_unresolvable_arguments() {
    let providers = Providers::new(
        None,
        &AnalysisLimits::default(),
        Evaluator::new(Default::default()),
    )
    .unwrap();
    let web =
        json!({"name": "m", "provider": {"web": {"url": "http://127.0.0.1:1/{{args.path}}"}}});

    // Invalid: an Error run at once, once.
    let spec: AnalysisRunSpec = serde_json::from_value(json!({"metrics": []})).unwrap();
    let mut run = AnalysisRun::new("invalid", spec);
    let pass = run_pass(&run, &providers, &NoSecrets, None).await;
    assert_eq!(pass.status.phase, AnalysisPhase::Error);
    assert_eq!(
        pass.status.message.as_deref(),
        Some("Analysis spec invalid: no metrics specified")
    );
    assert!(pass.completed_now && pass.requeue_at.is_none());
    run.status = Some(pass.status.clone());
    let again = run_pass(&run, &providers, &NoSecrets, None).await;
    assert_eq!(again.status, pass.status);
    assert!(!again.completed_now);

    // A Secret that does not exist: an Error run, as in Argo.
    let spec: AnalysisRunSpec = serde_json::from_value(json!({
        "args": [{"name": "path", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}],
        "metrics": [web.clone()],
    }))
    .unwrap();
    let run = AnalysisRun::new("secret", spec);
    let pass = run_pass(&run, &providers, &NoSecrets, None).await;
    assert_eq!(pass.status.phase, AnalysisPhase::Error);
    assert_eq!(
        pass.status.message.as_deref(),
        Some("Unable to resolve metric arguments: args.path: Secret \"gone\" not found")
    );

    // A Secret that cannot be read now: nothing changes, try again soon.
    let unavailable = |_: &str| -> Result<Option<k8s_openapi::api::core::v1::Secret>, String> {
        Err("the API server is unavailable".into())
    };
    let pass = run_pass(&run, &providers, &unavailable, None).await;
    assert_eq!(pass.status, AnalysisRunStatus::default());
    assert!(pass.requeue_at.is_some() && !pass.completed_now);

    // A server that refuses: an Error measurement, retried in 10 s, the run still Running.
    let spec: AnalysisRunSpec = serde_json::from_value(json!({
        "args": [{"name": "path", "value": "x"}],
        "metrics": [web],
    }))
    .unwrap();
    let run = AnalysisRun::new("refused", spec);
    let before = Timestamp::now();
    let pass = run_pass(&run, &providers, &NoSecrets, None).await;
    assert_eq!(pass.status.phase, AnalysisPhase::Running);
    let result = &pass.status.metric_results[0];
    assert_eq!((result.error, result.consecutive_error), (Some(1), Some(1)));
    let retry = pass.requeue_at.expect("a retry").duration_since(before);
    assert!(retry.as_secs() >= 9 && retry.as_secs() <= 11, "{retry:?}");
}

#[tokio::test]
async fn prometheus_answers_larger_than_the_cap_are_errors() {
    // Prometheus itself: two series fit the default cap, not a cap of 100 bytes.
    let prometheus = prometheus_with_requests().await;
    let series = prometheus_metric(
        &prometheus.url(),
        "sort(http_requests_total)",
        json!({"successCondition": "len(result) == 2"}),
    );
    assert_eq!(measure(&series).await.phase, AnalysisPhase::Successful);
    let small = AnalysisLimits {
        max_response_bytes: 100,
        ..AnalysisLimits::default()
    };
    let m = measure_within(&small, &series).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "answer larger than 100 bytes");

    // A server that answers a query without end: refused once 1 MiB has been counted.
    let endless = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(|| async {
            use futures::StreamExt;
            let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
            let body = futures::stream::repeat(chunk).map(Ok::<_, std::io::Error>);
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(body),
            )
        }),
    );
    let server = web::WebServer::serve("127.0.0.1", endless, Default::default());
    let started = std::time::Instant::now();
    let m = measure(&prometheus_metric(&server.url(""), "up", json!({}))).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "answer larger than 1048576 bytes");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn prometheus_waits_no_longer_than_the_controllers_cap() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let address = format!("http://user:pa55@{}", silent.local_addr().unwrap());
    let mut patient = prometheus_metric(&address, "up", json!({}));
    if let sluice_api::MetricProvider::Prometheus(p) = &mut patient.provider {
        p.timeout = Some(3600);
    }
    let capped = AnalysisLimits {
        max_timeout: Duration::from_secs(1),
        ..AnalysisLimits::default()
    };
    let started = std::time::Instant::now();
    let m = tokio::time::timeout(Duration::from_secs(10), measure_within(&capped, &patient))
        .await
        .expect("the measurement ends within the controller's cap, not the template's hour");
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).ends_with("within 1s"), "{m:?}");
    assert!(
        !message(&m).contains("pa55"),
        "the password is not shown: {m:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}
