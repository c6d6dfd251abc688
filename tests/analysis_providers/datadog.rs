//! The datadog provider against a local server that speaks Datadog's metrics API (the v1 query
//! and the v2 scalar query, checking the keys and the request's shape as Datadog does), its
//! credentials in Secrets on the local cluster: values, no data, errors, bounds, the keys never
//! shown, and whole runs through the plan.
//!
//! Also the pieces the other vendor tests (`newrelic.rs`, `wavefront.rs`) share: a scripted
//! vendor server that records what it receives, providers whose controller namespace is a test
//! namespace, Secrets, and a run driven to its verdict.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::IntoResponse,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use sluice::analysis::{
    evaluator::Evaluator,
    pass::run_pass,
    providers::{Context, Providers, RunRef},
};
use sluice_analysis::{args::NoSecrets, limits::AnalysisLimits, plan};
use sluice_api::{AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, Metric};
use sluice_testkit::TestNamespace;

use super::{message, metric, web::WebServer};

/// One request as the vendor server received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What a vendor server answers once a request passed its checks: status, body, and a delay.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

/// The requests a vendor server received and the answer it gives next.
#[derive(Clone)]
pub struct Script {
    received: Arc<Mutex<Vec<Received>>>,
    reply: Arc<Mutex<Reply>>,
}

impl Script {
    pub fn new() -> Self {
        Self {
            received: Arc::default(),
            reply: Arc::new(Mutex::new(Reply {
                status: 200,
                body: "{}".into(),
                delay: Duration::ZERO,
            })),
        }
    }

    /// Answers `status` with `body` from now on.
    pub fn answer(&self, status: u16, body: impl Into<String>) {
        self.answer_after(Duration::ZERO, status, body);
    }

    /// Answers `status` with `body` after `delay` from now on.
    pub fn answer_after(&self, delay: Duration, status: u16, body: impl Into<String>) {
        *self.reply.lock().unwrap() = Reply {
            status,
            body: body.into(),
            delay,
        };
    }

    /// The last request received.
    pub fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the server received a request")
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// How a vendor judges a request before answering it: `Err((status, body))` refuses it, as
/// the vendor's API would.
pub type Check = fn(&Received) -> Result<(), (u16, String)>;

/// A local server speaking a vendor's API: every request is recorded, judged by `check`, then
/// answered as `script` says.
pub fn vendor_server(script: &Script, check: Check) -> WebServer {
    let script = script.clone();
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let script = script.clone();
            async move {
                let url = reqwest::Url::parse(&format!("http://vendor{uri}")).expect("a URI");
                let received = Received {
                    method,
                    path: uri.path().to_owned(),
                    query: url.query_pairs().into_owned().collect(),
                    headers,
                    body,
                };
                script.received.lock().unwrap().push(received.clone());
                let reply = script.reply.lock().unwrap().clone();
                let (status, body) = match check(&received) {
                    Ok(()) => {
                        tokio::time::sleep(reply.delay).await;
                        (reply.status, reply.body)
                    }
                    Err(refusal) => refusal,
                };
                (
                    StatusCode::from_u16(status).expect("a status"),
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }
        },
    );
    WebServer::serve("127.0.0.1", app, Arc::default())
}

/// Providers whose controller namespace (where provider Secrets are read) is `ns`.
pub fn providers_in(ns: &TestNamespace, limits: AnalysisLimits) -> Providers {
    Providers::with(Context {
        client: Some(ns.client.clone()),
        limits,
        evaluator: Evaluator::new(Default::default()),
        namespace: ns.name.clone(),
        aws: Default::default(),
    })
    .expect("providers")
}

/// Creates (or replaces) the Secret `name` in `ns` with `data`.
pub async fn put_secret(ns: &TestNamespace, name: &str, data: &[(&str, &str)]) {
    let api = ns.api::<Secret>();
    let _ = api.delete(name, &DeleteParams::default()).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .expect("a secret");
    api.create(&PostParams::default(), &secret)
        .await
        .expect("creating the secret");
}

/// The run `run` in `namespace` (metrics' Secrets may be the run's).
pub fn run_ref(namespace: &str) -> RunRef {
    RunRef {
        name: "run".into(),
        namespace: namespace.into(),
        uid: "0000".into(),
        started_at: None,
    }
}

/// Drives the run of `spec` in `namespace` through [`run_pass`] with `providers` until it
/// completes, sleeping until each requeue time, as the controller does.
pub async fn drive(providers: &Providers, namespace: &str, spec: Value) -> AnalysisRunStatus {
    let spec: AnalysisRunSpec = serde_json::from_value(spec).expect("a run spec");
    let mut run = AnalysisRun::new("run", spec);
    run.metadata.namespace = Some(namespace.to_owned());
    for _ in 0..30 {
        let pass = run_pass(&run, providers, &NoSecrets, None).await;
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

/// The API key and application key the Datadog server accepts.
const API_KEY: &str = "dd-api-s3cr3t-1111";
const APP_KEY: &str = "dd-app-s3cr3t-2222";

/// A number of seconds or milliseconds in a query parameter or body.
fn number(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_i64)
}

/// Datadog's judgement of a request: the keys (403, the key shown back, as a careless server
/// might), the route and method (404/405), the v1 parameters and the v2 body (400).
fn datadog(r: &Received) -> Result<(), (u16, String)> {
    let refuse = |status: u16, why: String| Err((status, json!({"errors": [why]}).to_string()));
    if r.header("DD-API-KEY") != API_KEY || r.header("DD-APPLICATION-KEY") != APP_KEY {
        return refuse(
            403,
            format!("Forbidden: API key {} is not valid", r.header("DD-API-KEY")),
        );
    }
    match (r.path.as_str(), &r.method) {
        ("/api/v1/query", &Method::GET) => {
            let time = |k: &str| r.query.get(k).and_then(|v| v.parse::<i64>().ok());
            match (time("from"), time("to"), r.query.get("query")) {
                (Some(from), Some(to), Some(q)) if from <= to && !q.is_empty() => Ok(()),
                _ => refuse(400, "from, to and query are required".into()),
            }
        }
        ("/api/v2/query/scalar", &Method::POST) => {
            let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
                return refuse(400, "invalid JSON".into());
            };
            let attributes = &body["data"]["attributes"];
            let queries_ok = attributes["queries"].as_array().is_some_and(|qs| {
                !qs.is_empty()
                    && qs.iter().all(|q| {
                        q["data_source"] == "metrics"
                            && q["name"].is_string()
                            && q["query"].is_string()
                            && q["aggregator"].is_string()
                    })
            });
            let window_ok = matches!(
                (number(attributes.get("from")), number(attributes.get("to"))),
                (Some(from), Some(to)) if from <= to
            );
            if body["data"]["type"] == "scalar_request"
                && queries_ok
                && window_ok
                && attributes["formulas"].is_array()
            {
                Ok(())
            } else {
                refuse(400, "invalid scalar request".into())
            }
        }
        ("/api/v1/query" | "/api/v2/query/scalar", _) => refuse(405, "Method not allowed".into()),
        _ => refuse(404, "Not found".into()),
    }
}

fn dd_metric(spec: Value, conditions: Value) -> Metric {
    let mut m = json!({"name": "dd", "provider": {"datadog": spec}});
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

/// A namespace whose Secret `datadog` points at `server` with the keys it accepts.
async fn namespace_with_datadog(test: &str, server: &WebServer) -> TestNamespace {
    let ns = TestNamespace::new(test).await;
    put_secret(
        &ns,
        "datadog",
        &[
            ("address", &server.url("")),
            ("api-key", API_KEY),
            ("app-key", APP_KEY),
        ],
    )
    .await;
    ns
}

fn v1_series(points: Value) -> String {
    json!({"status": "ok", "res_type": "time_series", "series": [{"metric": "m", "pointlist": points}]})
        .to_string()
}

fn v2_values(values: Value) -> String {
    json!({"data": {"type": "scalar_response", "attributes": {"columns": [
        {"name": "a", "type": "number", "values": values, "meta": {"unit": null}}
    ]}}})
    .to_string()
}

/// Now, in Unix seconds.
fn now() -> i64 {
    Timestamp::now().as_second()
}

#[tokio::test]
async fn datadog_v1_and_v2_queries_speak_datadogs_api() {
    let script = Script::new();
    let server = vendor_server(&script, datadog);
    let ns = namespace_with_datadog("datadog-api", &server).await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let run = run_ref(&ns.name);
    let measure = |m: Metric| {
        let providers = &providers;
        let run = &run;
        async move { providers.measure(run, &m, 1).await }
    };

    // v1 (the default): the last point of the first series, over the last 5 minutes.
    script.answer(
        200,
        v1_series(json!([
            [1_700_000_000_000i64, 0.5],
            [1_700_000_060_000i64, 0.004]
        ])),
    );
    let query = "sum:requests.error.rate{service:checkout}";
    let m = measure(dd_metric(
        json!({"query": query}),
        json!({"successCondition": "result < 0.01"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("0.004"));
    let r = script.last();
    assert_eq!(
        (r.method.clone(), r.path.as_str()),
        (Method::GET, "/api/v1/query")
    );
    assert_eq!(r.query["query"], query);
    let (from, to): (i64, i64) = (
        r.query["from"].parse().unwrap(),
        r.query["to"].parse().unwrap(),
    );
    assert_eq!(to - from, 300, "the default interval is 5m");
    assert!((to - now()).abs() <= 5, "to is now: {to}");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("DD-API-KEY"), API_KEY);
    assert_eq!(r.header("DD-APPLICATION-KEY"), APP_KEY);

    // The condition false: Failed; the interval is the window asked.
    let m = measure(dd_metric(
        json!({"apiVersion": "v1", "query": query, "interval": "2m"}),
        json!({"successCondition": "result < 0.001"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");
    let r = script.last();
    assert_eq!(
        r.query["to"].parse::<i64>().unwrap() - r.query["from"].parse::<i64>().unwrap(),
        120
    );

    // No series: nil, which default() turns into a number; a bare comparison is an Error.
    script.answer(200, json!({"status": "ok", "series": []}).to_string());
    let m = measure(dd_metric(
        json!({"query": query}),
        json!({"successCondition": "default(result, 0) < 1"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[]"));
    let m = measure(dd_metric(
        json!({"query": query}),
        json!({"successCondition": "result < 1"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");

    // v2: named queries and a formula, reduced by `last`, over milliseconds.
    script.answer(200, v2_values(json!([0.02])));
    let m = measure(dd_metric(
        json!({
            "apiVersion": "v2",
            "interval": "10m",
            "queries": {"a": "sum:errors{*}.as_count()", "b": "sum:hits{*}.as_count()"},
            "formula": "a / b",
        }),
        json!({"successCondition": "result <= 0.05"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("0.02"));
    let r = script.last();
    assert_eq!(
        (r.method.clone(), r.path.as_str()),
        (Method::POST, "/api/v2/query/scalar")
    );
    assert_eq!(r.header("DD-API-KEY"), API_KEY);
    let body = r.json();
    assert_eq!(body["data"]["type"], "scalar_request");
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["formulas"], json!([{"formula": "a / b"}]));
    assert_eq!(
        attributes["queries"],
        json!([
            {"aggregator": "last", "data_source": "metrics", "name": "a", "query": "sum:errors{*}.as_count()"},
            {"aggregator": "last", "data_source": "metrics", "name": "b", "query": "sum:hits{*}.as_count()"},
        ])
    );
    let (from, to) = (
        number(attributes.get("from")).unwrap(),
        number(attributes.get("to")).unwrap(),
    );
    assert_eq!(to - from, 600_000, "v2 windows are in milliseconds");
    assert!((to / 1000 - now()).abs() <= 5);

    // v2 with a single query and an aggregator; a failing value.
    script.answer(200, v2_values(json!([7.0])));
    let m = measure(dd_metric(
        json!({"apiVersion": "v2", "query": "max:restarts{app:x}", "aggregator": "sum"}),
        json!({"failureCondition": "result > 4"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");
    assert_eq!(
        script.last().json()["data"]["attributes"]["queries"],
        json!([{"aggregator": "sum", "data_source": "metrics", "name": "query", "query": "max:restarts{app:x}"}])
    );

    // v2 "no data" (a null value, or none): nil, as in Argo.
    for empty in [json!([null]), json!([])] {
        script.answer(200, v2_values(empty.clone()));
        let m = measure(dd_metric(
            json!({"apiVersion": "v2", "query": "q"}),
            json!({"successCondition": "default(result, 0) < 5"}),
        ))
        .await;
        assert_eq!(m.phase, AnalysisPhase::Successful, "{empty}: {m:?}");
        let m = measure(dd_metric(
            json!({"apiVersion": "v2", "query": "q"}),
            json!({"successCondition": "result < 5"}),
        ))
        .await;
        assert_eq!(m.phase, AnalysisPhase::Error, "{empty}: {m:?}");
    }

    // Datadog's own error in the answer.
    script.answer(
        200,
        json!({"data": {"errors": "Invalid query input: unknown metric"}}).to_string(),
    );
    let m = measure(dd_metric(
        json!({"apiVersion": "v2", "query": "q"}),
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        message(&m),
        "There were errors in your query: Invalid query input: unknown metric"
    );
}

#[tokio::test]
async fn datadog_failures_are_errors_bounded_and_never_show_the_keys() {
    let script = Script::new();
    let server = vendor_server(&script, datadog);
    let ns = namespace_with_datadog("datadog-errors", &server).await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let run = run_ref(&ns.name);
    let query = json!({"query": "avg:cpu{*}"});
    let pass = json!({"successCondition": "true"});

    // A server error and an answer that is not JSON: Errors, never a success.
    script.answer(500, "upstream failed");
    let m = providers
        .measure(&run, &dd_metric(query.clone(), pass.clone()), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "received non 2xx response code: 500");
    assert!(m.started_at.is_some() && m.finished_at.is_some());
    script.answer(200, "<html>maintenance</html>");
    let m = providers
        .measure(&run, &dd_metric(query.clone(), pass.clone()), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("not a query result"), "{m:?}");

    // Keys the server refuses, shown back in its error: the message never carries them.
    put_secret(
        &ns,
        "wrong-keys",
        &[
            ("address", &server.url("")),
            ("api-key", "dd-wrong-key-4242"),
            ("app-key", "dd-wrong-app-4343"),
        ],
    )
    .await;
    script.answer(200, v1_series(json!([[1, 0.0]])));
    let wrong = dd_metric(
        json!({"query": "avg:cpu{*}", "secretRef": {"name": "wrong-keys"}}),
        pass.clone(),
    );
    let m = providers.measure(&run, &wrong, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).starts_with("received authentication error response code: 403"),
        "{m:?}"
    );
    assert!(message(&m).contains("Forbidden"), "{m:?}");
    assert_eq!(
        script.last().header("DD-API-KEY"),
        "dd-wrong-key-4242",
        "the server saw the key"
    );
    let shown = format!("{m:?}");
    assert!(
        !shown.contains("dd-wrong-key-4242") && !shown.contains("dd-wrong-app-4343"),
        "{shown}"
    );

    // Missing credentials: the named Secret does not exist, or has no keys; namespaced without
    // a name. Nothing is sent.
    let before = script.count();
    let m = providers
        .measure(
            &run,
            &dd_metric(
                json!({"query": "q", "secretRef": {"name": "absent"}}),
                pass.clone(),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains(&format!("Secret {}/absent not found", ns.name)),
        "{m:?}"
    );
    put_secret(&ns, "keyless", &[("address", &server.url(""))]).await;
    let m = providers
        .measure(
            &run,
            &dd_metric(
                json!({"query": "q", "secretRef": {"name": "keyless"}}),
                pass.clone(),
            ),
            1,
        )
        .await;
    assert!(message(&m).contains("has no api-key and app-key"), "{m:?}");
    let m = providers
        .measure(
            &run,
            &dd_metric(
                json!({"query": "q", "secretRef": {"namespaced": true}}),
                pass.clone(),
            ),
            1,
        )
        .await;
    assert!(message(&m).contains("needs secretRef.name"), "{m:?}");
    // Broken specs are refused before anything is read or sent.
    for (spec, why) in [
        (
            json!({"query": "q", "queries": {"a": "x"}, "apiVersion": "v2"}),
            "both",
        ),
        (json!({"queries": {"a": "x"}}), "v1 only"),
        (
            json!({"apiVersion": "v2", "queries": {"a": "x", "b": "y"}}),
            "formula",
        ),
        (
            json!({"query": "q", "aggregator": "sum"}),
            "not supported in v1",
        ),
    ] {
        let m = providers
            .measure(&run, &dd_metric(spec.clone(), pass.clone()), 1)
            .await;
        assert_eq!(m.phase, AnalysisPhase::Error, "{spec}");
        assert!(message(&m).contains(why), "{spec}: {m:?}");
    }
    assert_eq!(
        script.count(),
        before,
        "no request for missing credentials or broken specs"
    );

    // A server that does not answer: the controller's longest wait ends the measurement.
    script.answer_after(Duration::from_secs(4), 200, v1_series(json!([[1, 0.0]])));
    let capped = providers_in(
        &ns,
        AnalysisLimits {
            max_timeout: Duration::from_secs(1),
            ..AnalysisLimits::default()
        },
    );
    let started = Instant::now();
    let m = capped
        .measure(&run, &dd_metric(query.clone(), pass.clone()), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).ends_with("within 1s"), "{m:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // An answer larger than the cap.
    script.answer(
        200,
        v1_series(json!((0..200).map(|i| json!([i, 0.5])).collect::<Vec<_>>())),
    );
    let small = providers_in(
        &ns,
        AnalysisLimits {
            max_response_bytes: 100,
            ..AnalysisLimits::default()
        },
    );
    let m = small
        .measure(&run, &dd_metric(query.clone(), pass.clone()), 1)
        .await;
    assert_eq!(message(&m), "answer larger than 100 bytes");

    // Nothing listens at the address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    put_secret(
        &ns,
        "nowhere",
        &[
            ("address", &address),
            ("api-key", API_KEY),
            ("app-key", APP_KEY),
        ],
    )
    .await;
    let m = providers
        .measure(
            &run,
            &dd_metric(
                json!({"query": "q", "secretRef": {"name": "nowhere"}}),
                pass.clone(),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(!message(&m).is_empty());
}

#[tokio::test]
async fn datadog_secret_refs_read_the_controllers_or_the_runs_namespace() {
    let script = Script::new();
    let server = vendor_server(&script, datadog);
    let controller = TestNamespace::new("datadog-controller").await;
    let app = TestNamespace::new("datadog-app").await;
    // The same Secret name in both namespaces, with the keys told apart by the address path.
    let creds = |prefix: &str| {
        [
            ("address".to_owned(), server.url(prefix)),
            ("api-key".to_owned(), API_KEY.to_owned()),
            ("app-key".to_owned(), APP_KEY.to_owned()),
        ]
    };
    for (ns, prefix) in [(&controller, ""), (&app, "/app")] {
        let data = creds(prefix);
        let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        put_secret(ns, "dd-creds", &pairs).await;
    }
    let providers = providers_in(&controller, AnalysisLimits::default());
    let run = run_ref(&app.name);
    script.answer(200, v1_series(json!([[1, 1.0]])));

    let m = providers
        .measure(
            &run,
            &dd_metric(
                json!({"query": "q", "secretRef": {"name": "dd-creds"}}),
                json!({"successCondition": "result == 1"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(
        script.last().path,
        "/api/v1/query",
        "the controller's Secret"
    );

    let namespaced = json!({"query": "q", "secretRef": {"name": "dd-creds", "namespaced": true}});
    let m = providers
        .measure(
            &run,
            &dd_metric(
                namespaced.clone(),
                json!({"successCondition": "result == 1"}),
            ),
            1,
        )
        .await;
    assert_eq!(script.last().path, "/app/api/v1/query", "the run's Secret");
    // The app's address has a prefix the server does not serve: Datadog's 404.
    assert_eq!(
        message(&m),
        "received non 2xx response code: 404: Not found"
    );

    // Without a secretRef, the controller's Secret `datadog`; absent here.
    let m = providers
        .measure(&run, &dd_metric(json!({"query": "q"}), json!({})), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains(&format!("Secret {}/datadog not found", controller.name)),
        "{m:?}"
    );
}

#[tokio::test]
async fn a_datadog_run_passes_and_fails_end_to_end() {
    let script = Script::new();
    let server = vendor_server(&script, datadog);
    let ns = namespace_with_datadog("datadog-run", &server).await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let spec = json!({
        "metrics": [{
            "name": "error-rate",
            "interval": "1s",
            "count": 2,
            "successCondition": "default(result, 0) < 0.01",
            "provider": {"datadog": {"apiVersion": "v2", "interval": "5m", "queries": {
                "a": "sum:errors{*}.as_count()", "b": "sum:hits{*}.as_count()"}, "formula": "a / b"}},
        }],
    });
    script.answer(200, v2_values(json!([0.001])));
    let passed = drive(&providers, &ns.name, spec.clone()).await;
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));
    assert_eq!(result.measurements[0].value.as_deref(), Some("0.001"));

    script.answer(200, v2_values(json!([0.2])));
    let failed = drive(&providers, &ns.name, spec).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)")
    );
}
