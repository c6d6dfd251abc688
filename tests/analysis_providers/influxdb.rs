//! The influxdb provider against a real InfluxDB 1.13 (built with Flux; `/api/v2/query`
//! answers annotated CSV) that the test writes points to, with the profile Secrets on the local
//! cluster: `_value`s as `result`, the request InfluxDB received (through a recording proxy:
//! method, path, org, token, content type, body), profiles, InfluxDB's own errors, no data,
//! missing credentials, an unreachable or silent server, and whole runs through the plan.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
};
use jiff::Timestamp;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::PostParams;
use serde_json::{Value, json};
use sluice::analysis::{
    pass::run_pass,
    providers::{Providers, RunRef, ensure_crypto_provider},
};
use sluice_analysis::{args::NoSecrets, limits::AnalysisLimits, plan};
use sluice_api::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric,
};
use sluice_testkit::{
    TestNamespace,
    influxdb::{BUCKET, Influxdb},
};

use super::{message, metric, web::WebServer};

/// One request as the proxy received it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// A proxy in front of InfluxDB that records every request before forwarding it.
struct Recorder {
    server: WebServer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn start(upstream: String) -> Self {
        ensure_crypto_provider();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = seen.clone();
        let http = reqwest::Client::new();
        let app = Router::new().fallback(move |request: Request| {
            let (recorded, http, upstream) = (recorded.clone(), http.clone(), upstream.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                recorded.lock().unwrap().push(Seen {
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    headers: parts.headers.clone(),
                    body: body.clone(),
                });
                let mut forward = http.request(parts.method, format!("{upstream}{}", parts.uri));
                for (name, value) in &parts.headers {
                    if name != "host" {
                        forward = forward.header(name, value);
                    }
                }
                let Ok(answer) = forward.body(body).send().await else {
                    return Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Body::empty())
                        .unwrap();
                };
                let status = answer.status();
                let content_type = answer.headers().get("content-type").cloned();
                let bytes = answer.bytes().await.unwrap_or_default();
                let mut response = Response::builder().status(status);
                if let Some(content_type) = content_type {
                    response = response.header("content-type", content_type);
                }
                response.body(Body::from(bytes)).unwrap()
            }
        });
        Self {
            server: WebServer::serve("127.0.0.1", app, Default::default()),
            seen,
        }
    }

    fn url(&self) -> String {
        self.server.url("")
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

/// `app=web` errors rate 0.5 then 0.25 (30 and 20 s ago), `app=api` 2.0 (20 s ago), and an
/// integer count 7 (10 s ago).
async fn influxdb_with_points() -> Influxdb {
    let influxdb = Influxdb::start().await;
    let now = Timestamp::now().as_second();
    influxdb
        .write(&format!(
            "errors,app=web rate=0.5 {}\nerrors,app=web rate=0.25 {}\nerrors,app=api rate=2.0 {}\nrequests,app=web count=7i {}\n",
            now - 30,
            now - 20,
            now - 20,
            now - 10
        ))
        .await;
    influxdb
}

/// A profile Secret in the test's namespace.
async fn profile(ns: &TestNamespace, name: &str, data: &[(&str, &str)]) {
    let data: BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the profile Secret");
}

/// Providers that read profile Secrets in the test's namespace, within `limits`.
fn providers(ns: &TestNamespace, limits: &AnalysisLimits) -> Providers {
    super::datadog::providers_in(ns, limits.clone())
}

async fn measure_in(ns: &TestNamespace, metric: &Metric) -> Measurement {
    providers(ns, &AnalysisLimits::default())
        .measure(&RunRef::default(), metric, 1)
        .await
}

fn influx_metric(profile: Option<&str>, query: &str, conditions: Value) -> Metric {
    let mut provider = json!({"query": query});
    if let Some(p) = profile {
        provider["profile"] = json!(p);
    }
    let mut m = json!({"name": "m", "provider": {"influxdb": provider}});
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

fn flux(filter: &str) -> String {
    format!(
        "from(bucket: \"{BUCKET}\")\n  |> range(start: -5m)\n  |> filter(fn: (r) => {filter})\n"
    )
}

#[tokio::test]
async fn influxdb_values_of_a_flux_query_are_the_result() {
    let influxdb = influxdb_with_points().await;
    let recorder = Recorder::start(influxdb.url());
    let ns = TestNamespace::new("influxdb-values").await;
    let token = influxdb.token();
    profile(
        &ns,
        "influxdb",
        &[
            ("address", &recorder.url()),
            ("authToken", &token),
            ("org", "my-org"),
        ],
    )
    .await;
    let web_errors = flux("r._measurement == \"errors\" and r.app == \"web\"");

    let m = measure_in(
        &ns,
        &influx_metric(
            None,
            &web_errors,
            json!({"successCondition": "len(result) == 2 && result[0] == 0.5 && result[1] <= 0.25"}),
        ),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[0.5 0.25]"));
    assert!(m.started_at.is_some() && m.finished_at.is_some());

    // The request is influxdb-client-go's.
    let seen = recorder.last();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.uri.path(), "/api/v2/query");
    assert_eq!(seen.uri.query(), Some("org=my-org"));
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Token {token}")
    );
    assert_eq!(seen.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&seen.body).expect("a JSON body");
    assert_eq!(
        body,
        json!({
            "query": web_errors,
            "type": "flux",
            "dialect": {"annotations": ["datatype", "group", "default"], "delimiter": ",", "header": true},
        })
    );

    let m = measure_in(
        &ns,
        &influx_metric(
            None,
            &web_errors,
            json!({"successCondition": "result[1] > 0.3"}),
        ),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // Several tables (one per app), each reduced by Flux: every table's values, in order.
    let m = measure_in(
        &ns,
        &influx_metric(
            None,
            &format!("{}  |> mean()\n", flux("r._measurement == \"errors\"")),
            json!({"successCondition": "len(result) == 2 && result[0] == 2 && result[1] == 0.375"}),
        ),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[2 0.375]"));

    // An integer field is an integer; another profile names another Secret (and org).
    profile(
        &ns,
        "my-influxdb",
        &[
            ("address", &recorder.url()),
            ("authToken", &token),
            ("org", "team b"),
        ],
    )
    .await;
    let m = measure_in(
        &ns,
        &influx_metric(
            Some("my-influxdb"),
            &flux("r._measurement == \"requests\""),
            json!({"successCondition": "len(result) == 1 && result[0] == 7"}),
        ),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[7]"));
    assert_eq!(recorder.last().uri.query(), Some("org=team+b"));
}

#[tokio::test]
async fn influxdb_errors_no_data_and_missing_credentials_are_errors() {
    let influxdb = influxdb_with_points().await;
    let ns = TestNamespace::new("influxdb-errors").await;
    let url = influxdb.url();
    let token = influxdb.token();
    let always = json!({"successCondition": "true"});
    let errors = flux("r._measurement == \"errors\"");

    // No Secret, and a Secret without the organisation.
    let m = measure_in(&ns, &influx_metric(None, &errors, always.clone())).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        message(&m),
        format!("Secret {}/influxdb not found", ns.name)
    );
    profile(&ns, "no-org", &[("address", &url), ("authToken", &token)]).await;
    let m = measure_in(&ns, &influx_metric(Some("no-org"), &errors, always.clone())).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("authToken, org, or address not found (missing: org)"),
        "{m:?}"
    );

    // A wrong token: InfluxDB refuses, and no token appears in the message.
    profile(
        &ns,
        "wrong",
        &[
            ("address", &url),
            ("authToken", "admin:not-the-password"),
            ("org", "o"),
        ],
    )
    .await;
    let m = measure_in(&ns, &influx_metric(Some("wrong"), &errors, always.clone())).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("401 Unauthorized"), "{m:?}");
    assert!(message(&m).contains("authorization failed"), "{m:?}");
    assert!(!message(&m).contains("not-the-password"), "{m:?}");

    profile(
        &ns,
        "influxdb",
        &[("address", &url), ("authToken", &token), ("org", "o")],
    )
    .await;
    // No point in the range: no record.
    let m = measure_in(
        &ns,
        &influx_metric(None, &flux("r._measurement == \"nothing\""), always.clone()),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "no results returned from flux query");

    // Flux that does not compile, and a bucket that does not exist: InfluxDB's reasons.
    let m = measure_in(&ns, &influx_metric(None, "from(bucket: ", always.clone())).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("compilation failed"), "{m:?}");
    let m = measure_in(
        &ns,
        &influx_metric(
            None,
            "from(bucket: \"nope/autogen\") |> range(start: -5m)",
            always.clone(),
        ),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("no database"), "{m:?}");

    // A condition on a value that is not there is never a success.
    let m = measure_in(
        &ns,
        &influx_metric(None, &errors, json!({"successCondition": "result[9] < 1"})),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");

    // An empty query.
    let m = measure_in(&ns, &influx_metric(None, " ", always.clone())).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("query is empty"), "{m:?}");
}

#[tokio::test]
async fn influxdb_unreachable_silent_or_too_large_is_an_error() {
    let mut influxdb = influxdb_with_points().await;
    let ns = TestNamespace::new("influxdb-down").await;
    profile(
        &ns,
        "influxdb",
        &[
            ("address", &influxdb.url()),
            ("authToken", &influxdb.token()),
            ("org", "o"),
        ],
    )
    .await;
    let errors = influx_metric(
        None,
        &flux("r._measurement == \"errors\""),
        json!({"successCondition": "len(result) == 3"}),
    );
    assert_eq!(
        measure_in(&ns, &errors).await.phase,
        AnalysisPhase::Successful
    );

    let small = AnalysisLimits {
        max_response_bytes: 100,
        ..AnalysisLimits::default()
    };
    let m = providers(&ns, &small)
        .measure(&RunRef::default(), &errors, 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).ends_with("answer larger than 100 bytes"),
        "{m:?}"
    );

    influxdb.stop();
    let m = measure_in(&ns, &errors).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(!message(&m).is_empty());

    // A server that accepts and never answers: the wait ends at the controller's cap.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    profile(
        &ns,
        "silent",
        &[
            (
                "address",
                &format!("http://{}", silent.local_addr().unwrap()),
            ),
            ("authToken", "admin:pa55"),
            ("org", "o"),
        ],
    )
    .await;
    let capped = AnalysisLimits {
        max_timeout: Duration::from_secs(1),
        ..AnalysisLimits::default()
    };
    let started = std::time::Instant::now();
    let m = providers(&ns, &capped)
        .measure(
            &RunRef::default(),
            &influx_metric(Some("silent"), "from(bucket: \"b\")", json!({})),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).ends_with("no answer from influxdb within 1s"),
        "{m:?}"
    );
    assert!(!message(&m).contains("pa55"), "{m:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Drives a run through [`run_pass`] with providers reading the namespace's Secrets until it
/// completes, sleeping until each requeue time, as the controller does.
async fn drive_in(ns: &TestNamespace, spec: Value) -> AnalysisRunStatus {
    let spec: AnalysisRunSpec = serde_json::from_value(spec).expect("a run spec");
    let mut run = AnalysisRun::new("run", spec);
    let providers = providers(ns, &AnalysisLimits::default());
    for _ in 0..30 {
        let pass = run_pass(&run, &providers, &NoSecrets, None).await;
        let status = pass.status.clone();
        run.status = Some(pass.status);
        if status.phase.is_completed() && plan::settled(&status) {
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
async fn a_run_passes_and_fails_end_to_end_against_influxdb() {
    let influxdb = influxdb_with_points().await;
    let ns = TestNamespace::new("influxdb-run").await;
    profile(
        &ns,
        "influxdb",
        &[
            ("address", &influxdb.url()),
            ("authToken", &influxdb.token()),
            ("org", "o"),
        ],
    )
    .await;
    let spec = |threshold: &str| {
        json!({
            "args": [{"name": "threshold", "value": threshold}, {"name": "app", "value": "web"}],
            "metrics": [{
                "name": "error-rate",
                "interval": "1s",
                "count": 2,
                "successCondition": "result[0] <= {{args.threshold}}",
                "provider": {"influxdb": {"query": format!(
                    "{}  |> mean()\n",
                    flux("r._measurement == \"errors\" and r.app == \"{{ args.app }}\"")
                )}},
            }],
        })
    };
    let passed = drive_in(&ns, spec("0.5")).await;
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));
    assert_eq!(result.measurements[0].value.as_deref(), Some("[0.375]"));

    let failed = drive_in(&ns, spec("0.1")).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)")
    );
}
