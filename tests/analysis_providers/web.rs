//! The web provider against a local HTTP server: jsonPath forms, conditions on JSON and text,
//! bodies, headers with Secrets, errors and timeouts.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode, header},
    routing::{get, post},
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use serde_json::{Value, json};
use sluice::{
    analysis::args,
    api::{AnalysisPhase, Metric},
};

use super::{measure, message, metric};

/// A local HTTP server with the endpoints the web tests call, on a thread and runtime of its
/// own; records the last request to `/echo`.
struct WebServer {
    addr: SocketAddr,
    last: Arc<Mutex<Option<(HeaderMap, Bytes)>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebServer {
    fn start() -> Self {
        let last: Arc<Mutex<Option<(HeaderMap, Bytes)>>> = Arc::default();
        let recorded = last.clone();
        let json = |body: &'static str| ([(header::CONTENT_TYPE, "application/json")], body);
        let app =
            Router::new()
                .route(
                    "/ok",
                    get(move || async move {
                        json(r#"{"data": {"ok": true, "successPercent": 0.95}}"#)
                    }),
                )
                .route("/text", get(|| async { "healthy" }))
                .route(
                    "/broken",
                    get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
                )
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "late"
                    }),
                )
                .route(
                    "/private",
                    get(|headers: HeaderMap| async move {
                        match headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) {
                            Some(b"Bearer s3cr3t") => (StatusCode::OK, r#"{"ok": true}"#),
                            _ => (StatusCode::UNAUTHORIZED, r#"{"ok": false}"#),
                        }
                    }),
                )
                .route(
                    "/token",
                    post(|body: Bytes| async move {
                        let form = String::from_utf8_lossy(&body).into_owned();
                        let expected = [
                            "grant_type=client_credentials",
                            "client_id=sluice",
                            "client_secret=pa%24%24",
                            "scope=read+metrics",
                        ];
                        if expected.iter().all(|part| form.contains(part)) {
                            (StatusCode::OK, r#"{"access_token": "s3cr3t"}"#)
                        } else {
                            (StatusCode::BAD_REQUEST, r#"{"error": "invalid_client"}"#)
                        }
                    }),
                )
                .route(
                    "/echo",
                    post(move |headers: HeaderMap, body: Bytes| {
                        *recorded.lock().unwrap() = Some((headers, body.clone()));
                        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
                    }),
                );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Self {
            addr,
            last,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn web_metric(web: Value, conditions: Value) -> Metric {
    let mut m = json!({"name": "web", "provider": {"web": web}});
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

#[tokio::test]
async fn web_json_paths_and_conditions() {
    let server = WebServer::start();
    for path in ["{$.data.ok}", "{.data.ok}", "$.data.ok"] {
        let m = measure(&web_metric(
            json!({"url": server.url("/ok"), "jsonPath": path}),
            json!({"successCondition": "result == true"}),
        ))
        .await;
        assert_eq!(m.phase, AnalysisPhase::Successful, "{path}: {m:?}");
        assert_eq!(m.value.as_deref(), Some("true"));
    }
    let m = measure(&web_metric(
        json!({"url": server.url("/ok"), "jsonPath": "{$.data}"}),
        json!({"successCondition": "result.ok && result.successPercent >= 0.90"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    let m = measure(&web_metric(
        json!({"url": server.url("/ok"), "jsonPath": "{$.data.successPercent}"}),
        json!({"successCondition": "result >= 0.99", "failureCondition": "result < 0.5"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Inconclusive, "{m:?}");
    // The whole body by default; a path selecting nothing is an Error.
    let m = measure(&web_metric(
        json!({"url": server.url("/ok")}),
        json!({"successCondition": "result.data.ok"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    let m = measure(&web_metric(
        json!({"url": server.url("/ok"), "jsonPath": "{$.data.missing}"}),
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    // Text that is not JSON is a string result.
    let m = measure(&web_metric(
        json!({"url": server.url("/text")}),
        json!({"successCondition": "result == \"healthy\""}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
}

#[tokio::test]
async fn web_errors_timeouts_and_bodies() {
    let server = WebServer::start();
    let m = measure(&web_metric(
        json!({"url": server.url("/broken")}),
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "received non 2xx response code: 500");

    let started = std::time::Instant::now();
    let m = measure(&web_metric(
        json!({"url": server.url("/slow"), "timeoutSeconds": 1}),
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{m:?}");

    let m = measure(&web_metric(
        json!({"url": server.url("/ok"), "body": "x"}),
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("POST or PUT"), "{m:?}");

    // POST with jsonBody: sent as JSON with its content type.
    let m = measure(&web_metric(
        json!({
            "url": server.url("/echo"),
            "method": "POST",
            "jsonBody": {"service": "web", "limit": 3},
            "jsonPath": "{$.limit}",
        }),
        json!({"successCondition": "result == 3"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    let (headers, body) = server.last.lock().unwrap().clone().expect("a request");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent, json!({"service": "web", "limit": 3}));

    // POST with a text body.
    let m = measure(&web_metric(
        json!({"url": server.url("/echo"), "method": "POST", "body": "{\"n\": 7}", "jsonPath": "{$.n}"}),
        json!({"successCondition": "result == 7"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
}

#[tokio::test]
async fn web_headers_take_secrets_that_messages_never_show() {
    let server = WebServer::start();
    let template = web_metric(
        json!({
            "url": "{{args.base}}/private",
            "headers": [{"key": "Authorization", "value": "Bearer {{ args.token }}"}],
            "jsonPath": "{$.ok}",
        }),
        json!({"successCondition": "result"}),
    );
    let args: Vec<sluice::api::Argument> = serde_json::from_value(json!([
        {"name": "base", "value": format!("http://{}", server.addr)},
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]))
    .unwrap();
    let secret = |token: &str| Secret {
        data: Some(BTreeMap::from([(
            "token".to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    let secrets = BTreeMap::from([("creds".to_owned(), secret("s3cr3t"))]);
    let resolved = args::resolve_args(&args, &secrets, None).unwrap();
    let m = measure(&args::substitute_metric(&template, &resolved).unwrap()).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");

    let wrong = BTreeMap::from([("creds".to_owned(), secret("wrong"))]);
    let resolved = args::resolve_args(&args, &wrong, None).unwrap();
    let m = measure(&args::substitute_metric(&template, &resolved).unwrap()).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(
        resolved.redact("Bearer wrong was refused"),
        "Bearer ***** was refused"
    );
}

#[tokio::test]
async fn web_oauth2_client_credentials_fetch_a_bearer_token() {
    let server = WebServer::start();
    let oauth2 = |secret: &str| {
        web_metric(
            json!({
                "url": server.url("/private"),
                "jsonPath": "{$.ok}",
                "authentication": {"oauth2": {
                    "tokenUrl": server.url("/token"),
                    "clientId": "sluice",
                    "clientSecret": secret,
                    "scopes": ["read", "metrics"],
                }},
            }),
            json!({"successCondition": "result"}),
        )
    };
    let m = measure(&oauth2("pa$$")).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    let m = measure(&oauth2("wrong")).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("oauth2"), "{m:?}");
}
