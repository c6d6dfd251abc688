//! The skywalking provider against a local server speaking SkyWalking OAP's GraphQL API
//! (`POST /graphql`; the OAP is a Java server that cannot be built here). Every request is
//! recorded, so a wrong path, header, query or `duration` fails the test. Conditions read the
//! answer's `data` as Argo's documentation writes them; GraphQL errors, no data, refusals,
//! malformed answers, an unreachable or silent server and a metric without interval are
//! Errors; and whole runs end Successful and Failed.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri, header},
};
use jiff::civil::DateTime;
use serde_json::{Value, json};
use sluice_analysis::{
    args::{self, NoSecrets},
    limits::AnalysisLimits,
};
use sluice_api::{AnalysisPhase, Metric};

use super::{drive, measure, measure_within, message, metric, web::WebServer};

/// A request the server received.
#[derive(Clone, Debug)]
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// How the fake OAP answers: a status and a body, after a delay.
#[derive(Clone, Debug)]
struct Script {
    status: StatusCode,
    body: String,
    delay: Duration,
}

/// The answer of the OAP to the documentation's apdex query, its values `apdex` each.
fn apdex_answer(apdex: &[i64]) -> String {
    let values: Vec<Value> = apdex
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i.to_string(), "value": v}))
        .collect();
    json!({"data": {"service_apdex": {"label": null, "values": {"values": values}}}}).to_string()
}

/// A fake SkyWalking OAP: answers by its script and records every request.
struct Oap {
    server: WebServer,
    script: Arc<Mutex<Script>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Oap {
    fn start(body: String) -> Self {
        let script = Arc::new(Mutex::new(Script {
            status: StatusCode::OK,
            body,
            delay: Duration::ZERO,
        }));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (s, r) = (script.clone(), received.clone());
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (script, received) = (s.clone(), r.clone());
                async move {
                    received.lock().unwrap().push(Received {
                        method: method.clone(),
                        path: uri.path().to_owned(),
                        headers,
                        body,
                    });
                    let script = script.lock().unwrap().clone();
                    tokio::time::sleep(script.delay).await;
                    if (method, uri.path()) != (Method::POST, "/graphql") {
                        return (
                            StatusCode::NOT_FOUND,
                            [(header::CONTENT_TYPE, "text/plain")],
                            String::new(),
                        );
                    }
                    (
                        script.status,
                        [(header::CONTENT_TYPE, "application/json")],
                        script.body,
                    )
                }
            },
        );
        Self {
            server: WebServer::serve("127.0.0.1", app, Arc::default()),
            script,
            received,
        }
    }

    fn url(&self) -> String {
        self.server.url("")
    }

    fn answer(&self, status: StatusCode, body: &str) {
        let mut script = self.script.lock().unwrap();
        script.status = status;
        script.body = body.to_owned();
    }

    fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

/// The documentation's apdex query, for the service `{{args.service-name}}`.
const APDEX_QUERY: &str = r#"query queryData($duration: Duration!) {
  service_apdex: readMetricsValues(
    condition: { name: "service_apdex", entity: { scope: Service, serviceName: "{{ args.service-name }}", normal: true } },
    duration: $duration) {
      label values { values { value } }
    }
}"#;

/// The documentation's condition, as written there (expr's `.value` shorthand for `#.value`):
/// every apdex value at least 9900.
const ALL_ABOVE: &str = "all(result.service_apdex.values.values, {asFloat(.value) >= 9900})";

/// A skywalking metric as Argo's documentation writes one, its arguments substituted.
fn skywalking_metric(address: &str, change: impl FnOnce(&mut Value)) -> Metric {
    let mut m = json!({
        "name": "apdex",
        "interval": "5m",
        "successCondition": ALL_ABOVE,
        "failureLimit": 0,
        "provider": {"skywalking": {
            "interval": "3m",
            "address": address,
            "query": APDEX_QUERY,
        }},
    });
    change(&mut m);
    let args: Vec<sluice_api::Argument> =
        serde_json::from_value(json!([{"name": "service-name", "value": "reviews"}])).unwrap();
    let resolved = args::resolve_args(&args, &NoSecrets, None).unwrap();
    args::substitute_metric(&metric(m), &resolved).expect("arguments substituted")
}

#[tokio::test]
async fn the_query_is_posted_with_its_duration_and_data_is_the_result() {
    let oap = Oap::start(apdex_answer(&[9950, 10000]));
    // Basic credentials written in the address are sent, as Go's client sends them.
    let address = format!("{}/", oap.url()).replace("http://", "http://oap:pw@");
    let m = measure(&skywalking_metric(&address, |_| {})).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(
        m.value.as_deref(),
        Some(
            r#"{"service_apdex":{"label":null,"values":{"values":[{"id":"0","value":9950},{"id":"1","value":10000}]}}}"#
        )
    );
    assert!(m.started_at.is_some() && m.finished_at.is_some());

    let request = oap.last();
    assert_eq!(
        (request.method, request.path.as_str()),
        (Method::POST, "/graphql")
    );
    assert_eq!(
        request.headers[header::CONTENT_TYPE],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        request.headers[header::ACCEPT],
        "application/json; charset=utf-8"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body["query"].as_str().unwrap(),
        APDEX_QUERY.replace("{{ args.service-name }}", "reviews")
    );
    let duration = &body["variables"]["duration"];
    assert_eq!(duration["step"], "MINUTE");
    let minute = |v: &Value| {
        DateTime::strptime("%Y-%m-%d %H%M", v.as_str().expect("a time")).expect("a MINUTE time")
    };
    let (start, end) = (minute(&duration["start"]), minute(&duration["end"]));
    assert_eq!(
        end.duration_since(start),
        jiff::SignedDuration::from_mins(3),
        "{duration}"
    );
    // The end is now, in the controller's time zone, to the minute.
    let now = jiff::Zoned::now().datetime();
    assert!(
        now.duration_since(end).as_secs() < 120 && now >= end,
        "{end} vs {now}"
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn conditions_fail_on_data_and_graphql_errors_are_errors() {
    let oap = Oap::start(apdex_answer(&[9950, 9000]));
    let metric = skywalking_metric(&oap.url(), |_| {});
    let m = measure(&metric).await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // A failure condition and a success condition on the same data: neither holds.
    let both = skywalking_metric(&oap.url(), |m| {
        m["failureCondition"] = json!("result.service_apdex.values.values[0].value < 5000");
    });
    let m = measure(&both).await;
    assert_eq!(m.phase, AnalysisPhase::Inconclusive, "{m:?}");

    // GraphQL errors (HTTP 200): an Error with the server's messages.
    oap.answer(
        StatusCode::OK,
        r#"{"data": null, "errors": [{"message": "Validation error of type FieldUndefined: Field 'readMetricsValue' in type 'Query' is undefined", "locations": [{"line": 2, "column": 3}]}]}"#,
    );
    let m = measure(&metric).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).starts_with("graphql: Validation error of type FieldUndefined"),
        "{m:?}"
    );
    assert!(m.value.is_none());

    // No data: never judged.
    oap.answer(StatusCode::OK, r#"{"data": null}"#);
    let m = measure(&metric).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "no results returned from SkyWalking query");

    // Data whose shape the condition does not find: an Error, not a pass.
    oap.answer(StatusCode::OK, r#"{"data": {"service_apdex": null}}"#);
    let m = measure(&metric).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");

    // A refusal, even with a body that parses; and an answer that is not JSON.
    oap.answer(StatusCode::SERVICE_UNAVAILABLE, &apdex_answer(&[10000]));
    let m = measure(&metric).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("503"), "{m:?}");
    oap.answer(StatusCode::OK, "<html>gateway</html>");
    let m = measure(&metric).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("not a GraphQL response"), "{m:?}");

    // An answer larger than the controller reads.
    oap.answer(StatusCode::OK, &apdex_answer(&[10000; 200]));
    let small = AnalysisLimits {
        max_response_bytes: 512,
        ..AnalysisLimits::default()
    };
    let m = measure_within(&small, &metric).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("larger than 512 bytes"), "{m:?}");
}

#[tokio::test]
async fn a_metric_without_interval_query_or_address_is_an_error() {
    let oap = Oap::start(apdex_answer(&[10000]));
    let without = |field: &'static str| {
        skywalking_metric(&oap.url(), move |m| {
            m["provider"]["skywalking"]
                .as_object_mut()
                .unwrap()
                .remove(field);
        })
    };
    for (field, expected) in [
        ("interval", "interval is not set"),
        ("query", "query is empty"),
        ("address", "address is not set"),
    ] {
        let m = measure(&without(field)).await;
        assert_eq!(m.phase, AnalysisPhase::Error, "{field}: {m:?}");
        assert!(message(&m).contains(expected), "{field}: {m:?}");
    }
    assert!(oap.received.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn an_unreachable_or_silent_oap_is_an_error_within_the_timeout() {
    // Nothing listens; a password written in the address never shows in the message.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://oap:hunter2@{}", closed.local_addr().unwrap());
    drop(closed);
    let m = measure(&skywalking_metric(&address, |_| {})).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("/graphql"), "{m:?}");
    assert!(!message(&m).contains("hunter2"), "{m:?}");

    let oap = Oap::start(apdex_answer(&[10000]));
    oap.script.lock().unwrap().delay = Duration::from_secs(5);
    let hasty = AnalysisLimits {
        max_timeout: Duration::from_secs(1),
        ..AnalysisLimits::default()
    };
    let clock = Instant::now();
    let m = measure_within(&hasty, &skywalking_metric(&oap.url(), |_| {})).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("within 1s"), "{m:?}");
    assert!(
        clock.elapsed() < Duration::from_secs(3),
        "{:?}",
        clock.elapsed()
    );
}

#[tokio::test]
async fn whole_runs_pass_and_fail_on_skywalking_data() {
    let good = Oap::start(apdex_answer(&[9990, 9995]));
    let bad = Oap::start(apdex_answer(&[9990, 8000]));
    let spec = |oap: &Oap| {
        let m = skywalking_metric(&oap.url(), |m| {
            m["interval"] = json!("1s");
            m["count"] = json!(2);
        });
        json!({"metrics": [m]})
    };
    let (passed, failed) = tokio::join!(drive(spec(&good)), drive(spec(&bad)));
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));
    assert_eq!(good.received.lock().unwrap().len(), 2);

    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Metric \"apdex\" assessed Failed due to failed (1) > failureLimit (0)")
    );
}
