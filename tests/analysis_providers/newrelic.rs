//! The newRelic provider against a local server that speaks New Relic's NerdGraph API (one
//! GraphQL endpoint, the `API-Key` header, an NRQL query's rows or GraphQL `errors`), its
//! profiles in Secrets on the local cluster: rows as maps and lists, errors, bounds, the key
//! never shown, and whole runs through the plan.

use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{Value, json};
use sluice_analysis::limits::AnalysisLimits;
use sluice_api::{AnalysisPhase, Metric};
use sluice_testkit::TestNamespace;

use super::{
    datadog::{Received, Script, drive, providers_in, put_secret, run_ref, vendor_server},
    message, metric,
    web::WebServer,
};

/// The personal API key the NerdGraph server accepts.
const API_KEY: &str = "NRAK-S3CR3T-0001";

/// NerdGraph's judgement of a request: the key (401, the key shown back, as a careless server
/// might), the endpoint, and the GraphQL document and variables of an NRQL query (400).
fn nerdgraph(r: &Received) -> Result<(), (u16, String)> {
    let refuse =
        |status: u16, why: String| Err((status, json!({"errors": [{"message": why}]}).to_string()));
    if r.header("API-Key") != API_KEY {
        return refuse(401, format!("Invalid API key: {}", r.header("API-Key")));
    }
    if r.path != "/graphql" || r.method != Method::POST {
        return refuse(404, "Not found".into());
    }
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return refuse(400, "invalid JSON".into());
    };
    let document = body["query"].as_str().unwrap_or_default();
    let variables = &body["variables"];
    let document_ok = [
        "actor",
        "account(id: $accountId)",
        "nrql(query: $query, timeout: $timeout)",
        "results",
    ]
    .iter()
    .all(|part| document.contains(part));
    if document_ok
        && variables["accountId"].is_i64()
        && variables["query"].as_str().is_some_and(|q| !q.is_empty())
        && variables["timeout"].is_i64()
    {
        Ok(())
    } else {
        refuse(400, "Validation error: not an NRQL query".into())
    }
}

fn nr_metric(spec: Value, conditions: Value) -> Metric {
    let mut m = json!({"name": "nr", "provider": {"newRelic": spec}});
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

/// NerdGraph's answer carrying `results`.
fn rows(results: Value) -> String {
    json!({"data": {"actor": {"account": {"nrql": {"results": results}}}}}).to_string()
}

/// A namespace whose profile Secret `newrelic` sends queries to `server` for account 12345.
async fn namespace_with_profile(test: &str, server: &WebServer) -> TestNamespace {
    let ns = TestNamespace::new(test).await;
    put_secret(
        &ns,
        "newrelic",
        &[
            ("personal-api-key", API_KEY),
            ("account-id", "12345"),
            ("region", "eu"),
            ("base-url-nerdgraph", &server.url("/graphql")),
        ],
    )
    .await;
    ns
}

const QUERY: &str = "FROM Transaction SELECT percentage(count(*), WHERE httpResponseCode != 500) AS successRate WHERE appName = 'checkout'";

#[tokio::test]
async fn newrelic_nrql_queries_go_through_nerdgraph() {
    let script = Script::new();
    let server = vendor_server(&script, nerdgraph);
    let ns = namespace_with_profile("newrelic-api", &server).await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let run = run_ref(&ns.name);

    // One row: its map.
    script.answer(200, rows(json!([{"successRate": 99.5}])));
    let success = nr_metric(
        json!({"query": QUERY}),
        json!({"successCondition": "result.successRate >= 95"}),
    );
    let m = providers.measure(&run, &success, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some(r#"{"successRate":99.5}"#));
    let r = script.last();
    assert_eq!(
        (r.method.clone(), r.path.as_str()),
        (Method::POST, "/graphql")
    );
    assert_eq!(r.header("API-Key"), API_KEY);
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    assert_eq!(
        body["variables"],
        json!({"accountId": 12345, "query": QUERY, "timeout": 5}),
        "the default NRQL timeout is 5 s"
    );
    assert_eq!(
        providers.metadata_of(&success)["ResolvedNewRelicQuery"],
        QUERY
    );

    // The condition false: Failed.
    let m = providers
        .measure(
            &run,
            &nr_metric(
                json!({"query": QUERY}),
                json!({"successCondition": "result.successRate >= 99.9"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // Several rows (TIMESERIES, FACET): the list; the metric's timeout is sent.
    script.answer(
        200,
        rows(json!([{"count": 10, "facet": "a"}, {"count": 30, "facet": "b"}])),
    );
    let m = providers
        .measure(
            &run,
            &nr_metric(
                json!({"query": "SELECT count(*) FROM Transaction FACET appName", "timeout": 30}),
                json!({"successCondition": "len(result) == 2 && result[1].count == 30"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(
        m.value.as_deref(),
        Some(r#"[{"count":10,"facet":"a"},{"count":30,"facet":"b"}]"#)
    );
    assert_eq!(script.last().json()["variables"]["timeout"], 30);

    // Function names as keys: result['average.duration'].
    script.answer(200, rows(json!([{"average.duration": 12.34}])));
    let m = providers
        .measure(
            &run,
            &nr_metric(
                json!({"query": "SELECT average(duration) FROM Transaction"}),
                json!({"successCondition": "result['average.duration'] < 15"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");

    // Another profile: its own Secret, its own account.
    put_secret(
        &ns,
        "team-b",
        &[
            ("personal-api-key", API_KEY),
            ("account-id", "777"),
            ("base-url-nerdgraph", &server.url("/graphql")),
        ],
    )
    .await;
    let m = providers
        .measure(
            &run,
            &nr_metric(
                json!({"query": QUERY, "profile": "team-b"}),
                json!({"successCondition": "true"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(script.last().json()["variables"]["accountId"], 777);

    // No rows, an empty row, and GraphQL errors: Errors.
    for empty in [json!([]), json!([{}])] {
        script.answer(200, rows(empty.clone()));
        let m = providers.measure(&run, &success, 1).await;
        assert_eq!(m.phase, AnalysisPhase::Error, "{empty}: {m:?}");
        assert_eq!(message(&m), "no results returned from NRQL query");
    }
    script.answer(
        200,
        json!({"data": {"actor": {"account": {"nrql": null}}},
               "errors": [{"message": "NRDB query duration exceeded the set timeout", "extensions": {"errorClass": "TIMEOUT"}}]})
        .to_string(),
    );
    let m = providers.measure(&run, &success, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        message(&m),
        "NerdGraph: NRDB query duration exceeded the set timeout"
    );
}

#[tokio::test]
async fn newrelic_failures_are_errors_bounded_and_never_show_the_key() {
    let script = Script::new();
    let server = vendor_server(&script, nerdgraph);
    let ns = namespace_with_profile("newrelic-errors", &server).await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let run = run_ref(&ns.name);
    let any = nr_metric(json!({"query": QUERY}), json!({"successCondition": "true"}));

    script.answer(503, "down");
    let m = providers.measure(&run, &any, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "received non 2xx response code: 503");
    script.answer(200, "{\"data\": ");
    let m = providers.measure(&run, &any, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("not a NerdGraph result"), "{m:?}");

    // A key the server refuses and shows back: never in the message.
    put_secret(
        &ns,
        "wrong",
        &[
            ("personal-api-key", "NRAK-WRONG-9999"),
            ("account-id", "1"),
            ("base-url-nerdgraph", &server.url("/graphql")),
        ],
    )
    .await;
    script.answer(200, rows(json!([{"x": 1}])));
    let m = providers
        .measure(
            &run,
            &nr_metric(
                json!({"query": QUERY, "profile": "wrong"}),
                json!({"successCondition": "true"}),
            ),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        message(&m),
        "received non 2xx response code: 401: Invalid API key: ***"
    );
    assert_eq!(
        script.last().header("API-Key"),
        "NRAK-WRONG-9999",
        "the server saw the key"
    );
    assert!(!format!("{m:?}").contains("NRAK-WRONG-9999"));

    // Missing or broken profiles, and a timeout that is not positive: nothing is sent.
    let before = script.count();
    let m = providers
        .measure(
            &run,
            &nr_metric(json!({"query": QUERY, "profile": "absent"}), json!({})),
            1,
        )
        .await;
    assert!(
        message(&m).contains(&format!("Secret {}/absent not found", ns.name)),
        "{m:?}"
    );
    put_secret(&ns, "no-account", &[("personal-api-key", API_KEY)]).await;
    let m = providers
        .measure(
            &run,
            &nr_metric(json!({"query": QUERY, "profile": "no-account"}), json!({})),
            1,
        )
        .await;
    assert!(
        message(&m).contains("account-id or personal-api-key not found"),
        "{m:?}"
    );
    put_secret(
        &ns,
        "bad-account",
        &[("personal-api-key", API_KEY), ("account-id", "twelve")],
    )
    .await;
    let m = providers
        .measure(
            &run,
            &nr_metric(json!({"query": QUERY, "profile": "bad-account"}), json!({})),
            1,
        )
        .await;
    assert!(message(&m).contains("could not parse account-id"), "{m:?}");
    assert!(!message(&m).contains(API_KEY));
    let m = providers
        .measure(
            &run,
            &nr_metric(json!({"query": QUERY, "timeout": 0}), json!({})),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("positive"), "{m:?}");
    assert_eq!(script.count(), before);

    // A silent server: the controller's longest wait ends it; an answer past the cap.
    script.answer_after(Duration::from_secs(4), 200, rows(json!([{"x": 1}])));
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
    script.answer(
        200,
        rows(json!(
            (0..100).map(|i| json!({"count": i})).collect::<Vec<_>>()
        )),
    );
    let small = providers_in(
        &ns,
        AnalysisLimits {
            max_response_bytes: 256,
            ..AnalysisLimits::default()
        },
    );
    let m = small.measure(&run, &any, 1).await;
    assert_eq!(message(&m), "answer larger than 256 bytes");
}

#[tokio::test]
async fn a_newrelic_run_passes_and_fails_end_to_end() {
    let script = Script::new();
    let server = vendor_server(&script, nerdgraph);
    let ns = namespace_with_profile("newrelic-run", &server).await;
    let providers = providers_in(&ns, AnalysisLimits::default());
    let spec = json!({
        "metrics": [{
            "name": "success-rate",
            "interval": "1s",
            "count": 2,
            "successCondition": "result.successRate >= 0.95",
            "provider": {"newRelic": {"query": QUERY, "timeout": 10}},
        }],
    });
    script.answer(200, rows(json!([{"successRate": 0.99}])));
    let passed = drive(&providers, &ns.name, spec.clone()).await;
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));
    assert_eq!(result.metadata["ResolvedNewRelicQuery"], QUERY);

    script.answer(200, rows(json!([{"successRate": 0.5}])));
    let failed = drive(&providers, &ns.name, spec).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
}
