//! The web provider against a local HTTP server: jsonPath forms, conditions on JSON and text,
//! bodies, headers with Secrets, errors and timeouts; and the bounds of every answer: its size
//! (with and without Content-Length), the value stored, redirects, the allowed hosts and the
//! controller's longest timeout.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;

use axum::{
    Router,
    body::{Body, Bytes},
    http::{HeaderMap, StatusCode, header},
    middleware::{Next, from_fn},
    response::Redirect,
    routing::{get, post},
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use serde_json::{Value, json};
use sluice_analysis::{args, limits::AnalysisLimits};
use sluice_api::{AnalysisPhase, Metric};

use super::{measure, measure_within, message, metric};

/// A local HTTP server with the endpoints the web tests call, on a thread and runtime of its
/// own; records the last request to `/echo` and counts every request it receives.
pub struct WebServer {
    pub addr: SocketAddr,
    last: Arc<Mutex<Option<(HeaderMap, Bytes)>>>,
    /// How many requests arrived, whatever their path.
    pub requests: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An answer of `chunks` chunks of 64 KiB of `7`s (endless without a count), adding each chunk
/// to `sent` as the server produces it; with `length`, announced by Content-Length.
fn streamed(
    chunks: Option<usize>,
    length: Option<u64>,
    sent: Arc<AtomicUsize>,
) -> axum::response::Response {
    let chunk = Bytes::from(vec![b'7'; 64 * 1024]);
    let stream = futures::stream::repeat(chunk)
        .take(chunks.unwrap_or(usize::MAX))
        .map(move |c| {
            sent.fetch_add(c.len(), Ordering::SeqCst);
            Ok::<_, std::io::Error>(c)
        });
    let mut response = axum::response::Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    if let Some(length) = length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length.into());
    }
    response
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
        Self::serve("127.0.0.1", app, last)
    }

    /// Serves `app` on a free port of `ip` (any 127.0.0.x is this machine).
    pub fn serve(ip: &str, app: Router, last: Arc<Mutex<Option<(HeaderMap, Bytes)>>>) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let app = app.layer(from_fn(move |request, next: Next| {
            counted.fetch_add(1, Ordering::SeqCst);
            next.run(request)
        }));
        let listener = std::net::TcpListener::bind(format!("{ip}:0")).expect("a listener");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            // Stopping drops the runtime and with it every open connection: a client that
            // stopped reading an endless answer does not keep the server (and the test) waiting.
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            addr,
            last,
            requests,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
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
    let args: Vec<sluice_api::Argument> = serde_json::from_value(json!([
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

/// Limits as the controller's defaults, but for the changes `f` makes.
fn limits(f: impl FnOnce(&mut AnalysisLimits)) -> AnalysisLimits {
    let mut limits = AnalysisLimits::default();
    f(&mut limits);
    limits
}

#[tokio::test]
async fn web_answers_larger_than_the_cap_are_errors_never_read_whole() {
    let huge_sent = Arc::new(AtomicUsize::new(0));
    let endless_sent = Arc::new(AtomicUsize::new(0));
    let (huge, endless) = (huge_sent.clone(), endless_sent.clone());
    const HUGE: u64 = 100 * 1024 * 1024;
    let app = Router::new()
        .route(
            "/huge",
            get(move || {
                let sent = huge.clone();
                async move { streamed(Some(1600), Some(HUGE), sent) }
            }),
        )
        .route(
            "/endless",
            get(move || {
                let sent = endless.clone();
                async move { streamed(None, None, sent) }
            }),
        )
        .route(
            "/echo",
            post(|body: Bytes| async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
        );
    let server = WebServer::serve("127.0.0.1", app, Arc::default());

    // 100 MB announced by Content-Length: refused at once, never downloaded.
    let started = Instant::now();
    let m = measure(&web_metric(json!({"url": server.url("/huge")}), json!({}))).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{:?}", m.message);
    assert_eq!(message(&m), "answer larger than 1048576 bytes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let sent = huge_sent.load(Ordering::SeqCst);
    assert!(
        sent < 20 * 1024 * 1024,
        "the server sent {sent} bytes of 100 MB"
    );

    // Chunked, without Content-Length, never ending: refused once 1 MiB has been counted.
    let started = Instant::now();
    let m = measure(&web_metric(
        json!({"url": server.url("/endless")}),
        json!({}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{:?}", m.message);
    assert_eq!(message(&m), "answer larger than 1048576 bytes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(endless_sent.load(Ordering::SeqCst) > 1024 * 1024);

    // The cap is exact: an answer of the cap is read, one byte more is not.
    let small = limits(|l| l.max_response_bytes = 1000);
    let echo = |n: usize| {
        web_metric(
            json!({"url": server.url("/echo"), "method": "POST",
                   "body": format!("\"{}\"", "x".repeat(n - 2))}),
            json!({"successCondition": format!("len(result) == {}", n - 2)}),
        )
    };
    let m = measure_within(&small, &echo(1000)).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{:?}", m.message);
    let m = measure_within(&small, &echo(1001)).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{:?}", m.message);
    assert_eq!(message(&m), "answer larger than 1000 bytes");
}

#[tokio::test]
async fn web_values_longer_than_the_cap_are_cut_in_the_status() {
    let value = "é".repeat(50_000);
    let body = json!({"v": value}).to_string();
    let app = Router::new().route(
        "/big",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let server = WebServer::serve("127.0.0.1", app, Arc::default());
    // The condition sees the whole value; the status keeps its first 16 KiB, marked as cut.
    let m = measure(&web_metric(
        json!({"url": server.url("/big"), "jsonPath": "{$.v}"}),
        json!({"successCondition": "len(result) == 50000"}),
    ))
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{:?}", m.message);
    let stored = m.value.expect("a value");
    let kept = stored
        .strip_suffix("…(cut at 16384 bytes)")
        .unwrap_or_else(|| panic!("no cut marker at the end of {} bytes", stored.len()));
    assert!(
        kept.len() <= 16_384 && kept.len() > 16_000,
        "{}",
        kept.len()
    );
    assert!(format!("\"{value}\"").starts_with(kept));
}

#[tokio::test]
async fn web_redirects_only_to_the_same_host_and_port() {
    let target = || {
        Router::new().route(
            "/ok",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"ok": true}"#,
                )
            }),
        )
    };
    let other_port = WebServer::serve("127.0.0.1", target(), Arc::default());
    let other_host = WebServer::serve("127.0.0.2", target(), Arc::default());
    let (to_port, to_host) = (other_port.url("/ok"), other_host.url("/ok"));
    let app = target()
        .route("/to-self", get(|| async { Redirect::temporary("/ok") }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/to-port",
            get(move || async move { Redirect::temporary(&to_port) }),
        )
        .route(
            "/to-host",
            get(move || async move { Redirect::temporary(&to_host) }),
        );
    let server = WebServer::serve("127.0.0.1", app, Arc::default());
    let with_key = |path: &str| {
        web_metric(
            json!({"url": server.url(path), "jsonPath": "{$.ok}",
                   "headers": [{"key": "X-Api-Key", "value": "k3y"}]}),
            json!({"successCondition": "result"}),
        )
    };

    let m = measure(&with_key("/to-self")).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{:?}", m.message);
    for path in ["/to-port", "/to-host"] {
        let m = measure(&with_key(path)).await;
        assert_eq!(m.phase, AnalysisPhase::Error, "{path}: {:?}", m.message);
        assert!(message(&m).contains("refused"), "{path}: {}", message(&m));
    }
    assert_eq!(
        other_port.requests.load(Ordering::SeqCst),
        0,
        "the key went to another port"
    );
    assert_eq!(
        other_host.requests.load(Ordering::SeqCst),
        0,
        "the key went to another host"
    );
    let before = server.requests.load(Ordering::SeqCst);
    let m = measure(&with_key("/loop")).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{:?}", m.message);
    assert!(message(&m).contains("redirects"), "{}", message(&m));
    assert_eq!(
        server.requests.load(Ordering::SeqCst) - before,
        4,
        "the first request and 3 hops"
    );
}

#[tokio::test]
async fn web_hosts_outside_the_allow_list_are_refused_before_sending() {
    let server = WebServer::start();
    let only = |hosts: &[&str]| {
        limits(|l| l.web_allowed_hosts = Some(hosts.iter().map(|h| h.to_string()).collect()))
    };
    let listed = only(&["metrics.example.com", "*.example.org", "localhost"]);
    let echo = web_metric(
        json!({"url": server.url("/echo"), "method": "POST", "body": "{\"n\": 1}", "jsonPath": "{$.n}"}),
        json!({"successCondition": "result == 1"}),
    );
    let m = measure_within(&listed, &echo).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{:?}", m.message);
    assert_eq!(
        message(&m),
        "host 127.0.0.1 is not in the controller's allowed hosts for web metrics"
    );

    // A listed metric host, with its OAuth2 token URL on an unlisted one.
    let oauth2 = web_metric(
        json!({
            "url": format!("http://localhost:{}/private", server.addr.port()),
            "jsonPath": "{$.ok}",
            "authentication": {"oauth2": {
                "tokenUrl": server.url("/token"),
                "clientId": "sluice", "clientSecret": "pa$$", "scopes": ["read", "metrics"],
            }},
        }),
        json!({"successCondition": "result"}),
    );
    let m = measure_within(&listed, &oauth2).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{:?}", m.message);
    assert_eq!(
        message(&m),
        "oauth2: host 127.0.0.1 is not in the controller's allowed hosts for web metrics"
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "nothing was sent"
    );
    assert!(server.last.lock().unwrap().is_none());

    // Listed: measured as usual.
    let m = measure_within(&only(&["127.0.0.1"]), &echo).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{:?}", m.message);
    let m = measure_within(&only(&["127.0.0.1", "localhost"]), &oauth2).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{:?}", m.message);
}

#[tokio::test]
async fn web_timeouts_never_exceed_the_controllers_cap() {
    let server = WebServer::start();
    let capped = limits(|l| l.max_timeout = Duration::from_secs(1));
    let started = Instant::now();
    let m = measure_within(
        &capped,
        &web_metric(
            json!({"url": server.url("/slow"), "timeoutSeconds": 3600}),
            json!({}),
        ),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{:?}", m.message);
    assert_eq!(message(&m), "no answer within 1s");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
