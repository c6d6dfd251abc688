//! The providers against real servers: Debian's Prometheus scraping an exporter the test sets
//! (here), a local HTTP server (`web.rs`), and Jobs on the local cluster (`job.rs`). Conditions
//! are evaluated end to end, and whole runs are driven through the pure plan with the real
//! providers. No mocks of Prometheus.

#[path = "analysis_providers/cloudwatch.rs"]
mod cloudwatch;
#[path = "analysis_providers/datadog.rs"]
mod datadog;
#[path = "analysis_providers/graphite.rs"]
mod graphite;
#[path = "analysis_providers/influxdb.rs"]
mod influxdb;
#[path = "analysis_providers/job.rs"]
mod job;
#[path = "analysis_providers/kayenta.rs"]
mod kayenta;
#[path = "analysis_providers/newrelic.rs"]
mod newrelic;
#[path = "analysis_providers/skywalking.rs"]
mod skywalking;
#[path = "analysis_providers/wavefront.rs"]
mod wavefront;
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
    let dd = metric(json!({"name": "d", "provider": {"plugin": {"argoproj-labs/sample": {}}}}));
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

/// A range query's metric against `address`: `query` from `start` to `end` every `step`.
fn range_metric(address: &str, query: &str, range: [&str; 3], conditions: Value) -> Metric {
    let mut m = prometheus_metric(address, query, conditions);
    if let sluice_api::MetricProvider::Prometheus(p) = &mut m.provider {
        p.range_query = Some(sluice_api::PrometheusRangeQuery {
            start: Some(range[0].into()),
            end: Some(range[1].into()),
            step: Some(range[2].into()),
        });
    }
    m
}

const LAST_MINUTE: [&str; 3] = [r#"now() - duration("1m")"#, "now()", "15s"];

#[tokio::test]
async fn prometheus_range_queries_give_every_sample_of_the_matrix() {
    let prometheus = prometheus_with_requests().await;
    let url = prometheus.url();
    let errors = "sum(http_requests_total{code=\"500\"})";

    // Every sample of the range: `all` checks each one, as Argo's docs advise.
    let m = measure(&range_metric(
        &url,
        errors,
        LAST_MINUTE,
        json!({"successCondition": "len(result) >= 1 && all(result, {# == 5})"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert!(
        m.value.as_deref().unwrap_or_default().starts_with("[5"),
        "{m:?}"
    );
    let m = measure(&range_metric(
        &url,
        errors,
        LAST_MINUTE,
        json!({"successCondition": "all(result, {# < 5})"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // Several series: their samples one after the other, in one array.
    let m = measure(&range_metric(
        &url,
        "sort(http_requests_total)",
        LAST_MINUTE,
        json!({"successCondition": "any(result, {# == 95}) && any(result, {# == 5}) && all(result, {# == 5 || # == 95})"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");

    // An expression Sluice does not read, a step that is not a duration, a range Prometheus
    // refuses: Errors naming what was asked.
    let m = measure(&range_metric(
        &url,
        errors,
        ["now() - 5m", "now()", "15s"],
        json!({"successCondition": "true"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).starts_with("prometheus rangeQuery.start \"now() - 5m\""),
        "{m:?}"
    );
    let m = measure(&range_metric(
        &url,
        errors,
        ["now()", "now()", "often"],
        json!({}),
    ))
    .await;
    assert!(message(&m).contains("rangeQuery.step"), "{m:?}");
    let m = measure(&range_metric(
        &url,
        errors,
        ["now()", r#"now() - duration("1h")"#, "15s"],
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).starts_with("bad_data"), "{m:?}");
}

/// A Prometheus metric signed for Amazon Managed Prometheus in us-west-2.
fn amp_metric(address: &str, sigv4: Value, conditions: Value) -> Metric {
    let mut m = prometheus_metric(address, ERROR_RATE, conditions);
    if let sluice_api::MetricProvider::Prometheus(p) = &mut m.provider {
        p.authentication = Some(serde_json::from_value(json!({"sigv4": sigv4})).unwrap());
    }
    m
}

#[tokio::test]
async fn prometheus_sigv4_signs_for_amazon_managed_prometheus() {
    let prometheus = prometheus_with_requests().await;
    let aws = cloudwatch::FakeAws::start(cloudwatch::Answer::Garbage);
    *aws.state.upstream.lock().unwrap() = Some(prometheus.url());
    let address = aws.url("/workspaces/ws-1");
    let limits = AnalysisLimits::default();
    let measure_as = |env: sluice::analysis::providers::aws::AwsEnv, metric: Metric| {
        let providers = cloudwatch::providers_with(env, &limits);
        async move { providers.measure(&RunRef::default(), &metric, 1).await }
    };

    // Signed with the process' keys for `aps` in the metric's region: the front checks the
    // signature and forwards to Prometheus.
    let signed = amp_metric(
        &address,
        json!({"region": "us-west-2"}),
        json!({"successCondition": "result[0] < 0.1"}),
    );
    let m = measure_as(aws.static_env(), signed.clone()).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[0.05]"));
    let failing = amp_metric(
        &address,
        json!({"region": "us-west-2"}),
        json!({"successCondition": "result[0] < 0.01"}),
    );
    assert_eq!(
        measure_as(aws.static_env(), failing).await.phase,
        AnalysisPhase::Failed
    );
    let request = aws.requests("/workspaces/ws-1/api/v1/query?").remove(0);
    assert_eq!(request.method, "GET");
    assert!(
        request.path_and_query.starts_with(
            "/workspaces/ws-1/api/v1/query?query=sum%28http_requests_total%7Bcode%3D~%225..%22%7D%29%20%2F%20"
        ),
        "{}",
        request.path_and_query
    );
    let authorization = request.headers["authorization"].to_str().unwrap();
    assert!(
        authorization.contains(&format!("Credential={}/", cloudwatch::ACCESS_KEY))
            && authorization.contains("/us-west-2/aps/aws4_request"),
        "{authorization}"
    );

    // Wrong keys: AMP refuses, an Error, never a value.
    let wrong = sluice::analysis::providers::aws::AwsEnv {
        secret_access_key: Some("wrong".into()),
        ..aws.static_env()
    };
    let m = measure_as(wrong, signed.clone()).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("prometheus answered 403 Forbidden")
            && message(&m).contains("signature we calculated does not match"),
        "{m:?}"
    );
    // The region of the process when the metric gives none; no region anywhere, no
    // credentials: Errors before anything is sent.
    let no_region = amp_metric(
        &address,
        json!({}),
        json!({"successCondition": "result[0] < 0.1"}),
    );
    let west = sluice::analysis::providers::aws::AwsEnv {
        region: Some("us-west-2".into()),
        ..aws.static_env()
    };
    let m = measure_as(west, no_region.clone()).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    let nowhere = sluice::analysis::providers::aws::AwsEnv {
        region: None,
        ..aws.static_env()
    };
    let m = measure_as(nowhere, no_region).await;
    assert!(
        message(&m).contains("sigv4: AWS region is not configured"),
        "{m:?}"
    );
    let m = measure_as(aws.endpoints(), signed.clone()).await;
    assert!(
        message(&m).contains("sigv4: no AWS credentials found"),
        "{m:?}"
    );

    // roleArn: the role is assumed with the process' keys (a signed STS AssumeRole) and the
    // query signed with the temporary keys and their session token.
    let with_role = amp_metric(
        &address,
        json!({"region": "us-west-2", "roleArn": cloudwatch::ROLE_ARN}),
        json!({"successCondition": "result[0] < 0.1"}),
    );
    let m = measure_as(aws.static_env(), with_role).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    let sts = aws.requests("/sts");
    assert_eq!(sts.len(), 1);
    assert!(String::from_utf8_lossy(&sts[0].body).contains("Action=AssumeRole&"));
    assert!(
        sts[0].headers["authorization"]
            .to_str()
            .unwrap()
            .contains("/us-west-2/sts/aws4_request")
    );
    let last = aws.requests("/workspaces/").pop().unwrap();
    assert!(
        last.headers["authorization"]
            .to_str()
            .unwrap()
            .contains("Credential=ASIATEMP0/")
    );
    assert_eq!(last.headers["x-amz-security-token"], "temp-token-0");

    // A range query is signed too, its start, end and step in the signed query string.
    let mut range = range_metric(
        &address,
        "sum(http_requests_total)",
        LAST_MINUTE,
        json!({"successCondition": "all(result, {# == 100})"}),
    );
    if let (sluice_api::MetricProvider::Prometheus(p), sluice_api::MetricProvider::Prometheus(s)) =
        (&mut range.provider, &signed.provider)
    {
        p.authentication = s.authentication.clone();
    }
    let m = measure_as(aws.static_env(), range).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    let request = aws
        .requests("/workspaces/ws-1/api/v1/query_range?")
        .remove(0);
    let query: std::collections::HashMap<String, String> =
        reqwest::Url::parse(&format!("http://x{}", request.path_and_query))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
    let start: f64 = query["start"].parse().unwrap();
    let end: f64 = query["end"].parse().unwrap();
    assert_eq!(end - start, 60.0, "{query:?}");
    assert!((Timestamp::now().as_second() as f64 - end).abs() < 30.0);
    assert_eq!(query["step"], "15");
    assert_eq!(query["timeout"], "5000ms");
    assert_eq!(query["query"], "sum(http_requests_total)");
}
