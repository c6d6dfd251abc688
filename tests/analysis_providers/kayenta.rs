//! The kayenta provider against a local server speaking Kayenta's documented API (Kayenta is a
//! Spinnaker Java service that cannot be built here): `GET /canaryConfig`, `POST
//! /canary/<configId>`, `GET /canary/<executionId>`. Every request is recorded, so a wrong
//! path, query, header or body fails the test. Judgements pass, fail, are inconclusive, wait,
//! are terminated, end in Errors (refusals, malformed answers, no score, an unreachable or
//! silent server, a judgement past its deadline), look back to the run's start read from the
//! cluster, and whole runs end Successful and Failed.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri, header},
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use sluice::analysis::{
    evaluator::Evaluator,
    pass::run_pass,
    providers::{
        Providers, RunRef,
        kayenta::{EXECUTION_ID_KEY, JUDGEMENT_DEADLINE, POLL_INTERVAL},
    },
};
use sluice_analysis::{
    args::{self, NoSecrets},
    limits::AnalysisLimits,
    plan::Task,
};
use sluice_api::{AnalysisPhase, AnalysisRun, Measurement, Metric};

use super::{drive, message, metric, web::WebServer};

/// A request the server received.
#[derive(Clone, Debug)]
struct Received {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the fake Kayenta answers.
#[derive(Clone, Debug)]
struct Script {
    /// The answer to `GET /canaryConfig`.
    configs: Value,
    /// How many looks at a judgement answer `complete: false` before it completes.
    pending_polls: usize,
    /// The status answered once complete.
    result: Value,
    /// Every request answered with this status and body instead.
    refuse: Option<(StatusCode, &'static str)>,
    /// The answer to starting a judgement.
    started: Value,
    /// Wait this long before answering.
    delay: Duration,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            configs: json!([
                {"id": "cfg-other", "name": "other", "applications": ["guestbook"]},
                {"id": "cfg-1", "name": "my-test", "updatedTimestamp": 1, "applications": ["guestbook"]},
            ]),
            pending_polls: 0,
            result: scored(95.0),
            refuse: None,
            started: json!({"canaryExecutionId": "exec-42"}),
            delay: Duration::ZERO,
        }
    }
}

/// A complete judgement with this score, as Kayenta's `CanaryExecutionStatusResponse` has it.
fn scored(score: f64) -> Value {
    json!({
        "complete": true,
        "status": "succeeded",
        "result": {"judgeResult": {
            "judgeName": "NetflixACAJudge-v1.0",
            "score": {"score": score, "classification": "Pass", "classificationReason": ""},
        }},
    })
}

/// A fake Kayenta: answers by its script and records every request.
struct Kayenta {
    server: WebServer,
    script: Arc<Mutex<Script>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Kayenta {
    fn start(script: Script) -> Self {
        let script = Arc::new(Mutex::new(script));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let polls = Arc::new(Mutex::new(0usize));
        let (s, r) = (script.clone(), received.clone());
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (script, received, polls) = (s.clone(), r.clone(), polls.clone());
                async move {
                    let query = reqwest::Url::parse(&format!("http://kayenta{uri}"))
                        .map(|u| u.query_pairs().into_owned().collect())
                        .unwrap_or_default();
                    received.lock().unwrap().push(Received {
                        method: method.clone(),
                        path: uri.path().to_owned(),
                        query,
                        headers,
                        body,
                    });
                    let script = script.lock().unwrap().clone();
                    tokio::time::sleep(script.delay).await;
                    let json = |status: StatusCode, body: String| {
                        (status, [(header::CONTENT_TYPE, "application/json")], body)
                    };
                    if let Some((status, body)) = script.refuse {
                        return json(status, body.to_owned());
                    }
                    match (method, uri.path()) {
                        (Method::GET, "/canaryConfig") => {
                            json(StatusCode::OK, script.configs.to_string())
                        }
                        (Method::POST, "/canary/cfg-1") => {
                            json(StatusCode::OK, script.started.to_string())
                        }
                        (Method::GET, "/canary/exec-42") => {
                            let mut polls = polls.lock().unwrap();
                            *polls += 1;
                            if *polls <= script.pending_polls {
                                json(
                                    StatusCode::OK,
                                    json!({"complete": false, "status": "running"}).to_string(),
                                )
                            } else {
                                json(StatusCode::OK, script.result.to_string())
                            }
                        }
                        _ => json(
                            StatusCode::NOT_FOUND,
                            json!({"message": "no such thing"}).to_string(),
                        ),
                    }
                }
            },
        );
        let server = WebServer::serve("127.0.0.1", app, Arc::default());
        Self {
            server,
            script,
            received,
        }
    }

    fn url(&self) -> String {
        self.server.url("")
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.script.lock().unwrap());
    }
}

/// A kayenta metric as Argo's documentation writes one, against `address`.
fn kayenta_metric(address: &str, change: impl FnOnce(&mut Value)) -> Metric {
    let mut m = json!({
        "name": "mann-whitney",
        "provider": {"kayenta": {
            "address": address,
            "application": "guestbook",
            "canaryConfigName": "my-test",
            "metricsAccountName": "prom-account",
            "configurationAccountName": "config-account",
            "storageAccountName": "storage-account",
            "threshold": {"pass": 90, "marginal": 75},
            "scopes": [{
                "name": "default",
                "controlScope": {
                    "scope": "app=guestbook and rollouts-pod-template-hash={{args.stable-hash}}",
                    "region": "us-west-2",
                    "step": 60,
                    "start": "2025-03-01T10:00:00Z",
                    "end": "2025-03-01T11:00:00Z",
                },
                "experimentScope": {
                    "scope": "app=guestbook and rollouts-pod-template-hash={{args.canary-hash}}",
                    "region": "us-west-2",
                    "step": 60,
                    "start": "2025-03-01T10:00:00Z",
                    "end": "2025-03-01T11:00:00Z",
                },
            }],
        }},
    });
    change(&mut m);
    let template = metric(m);
    let args: Vec<sluice_api::Argument> = serde_json::from_value(json!([
        {"name": "stable-hash", "value": "6c54544bf9"},
        {"name": "canary-hash", "value": "7d8f9a0b1c"},
    ]))
    .unwrap();
    let resolved = args::resolve_args(&args, &NoSecrets, None).unwrap();
    args::substitute_metric(&template, &resolved).expect("arguments substituted")
}

fn providers_within(limits: &AnalysisLimits) -> Providers {
    Providers::new(None, limits, Evaluator::new(Default::default())).expect("providers")
}

fn providers() -> Providers {
    providers_within(&AnalysisLimits::default())
}

async fn resume(providers: &Providers, metric: &Metric, m: Measurement) -> Measurement {
    providers
        .perform(&RunRef::default(), metric, Task::Resume(m), 0)
        .await
}

async fn terminate(providers: &Providers, metric: &Metric, m: Measurement) -> Measurement {
    providers
        .perform(&RunRef::default(), metric, Task::Terminate(m), 0)
        .await
}

fn seconds_until(at: &Option<Time>) -> i64 {
    let at = at.as_ref().expect("resumeAt").0;
    at.duration_since(Timestamp::now()).as_secs()
}

#[tokio::test]
async fn a_judgement_is_started_polled_and_scored_as_argo_asks_for_it() {
    let kayenta = Kayenta::start(Script {
        pending_polls: 1,
        ..Script::default()
    });
    let providers = providers();
    let metric = kayenta_metric(&kayenta.url(), |_| {});

    // Starting: the config looked up by name, the judgement started; the measurement waits.
    let m = providers.measure(&RunRef::default(), &metric, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");
    assert_eq!(m.metadata[EXECUTION_ID_KEY], "exec-42");
    assert!(m.started_at.is_some() && m.finished_at.is_none() && m.value.is_none());
    let wait = seconds_until(&m.resume_at);
    assert!((13..=15).contains(&wait), "resumeAt {wait}s away");

    let received = kayenta.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let lookup = &received[0];
    assert_eq!(
        (&lookup.method, lookup.path.as_str()),
        (&Method::GET, "/canaryConfig")
    );
    assert_eq!(
        lookup.query,
        BTreeMap::from([
            ("application".to_owned(), "guestbook".to_owned()),
            (
                "configurationAccountName".to_owned(),
                "config-account".to_owned()
            ),
        ])
    );
    let start = &received[1];
    assert_eq!(
        (&start.method, start.path.as_str()),
        (&Method::POST, "/canary/cfg-1")
    );
    assert_eq!(
        start.query,
        BTreeMap::from([
            ("application".to_owned(), "guestbook".to_owned()),
            ("metricsAccountName".to_owned(), "prom-account".to_owned()),
            (
                "configurationAccountName".to_owned(),
                "config-account".to_owned()
            ),
            (
                "storageAccountName".to_owned(),
                "storage-account".to_owned()
            ),
        ])
    );
    assert_eq!(start.headers[header::CONTENT_TYPE], "application/json");
    let scope = |hash: &str| {
        json!({
            "scope": format!("app=guestbook and rollouts-pod-template-hash={hash}"),
            "region": "us-west-2",
            "step": 60,
            "start": "2025-03-01T10:00:00Z",
            "end": "2025-03-01T11:00:00Z",
        })
    };
    assert_eq!(
        start.json(),
        json!({
            "scopes": {"default": {
                "controlScope": scope("6c54544bf9"),
                "experimentScope": scope("7d8f9a0b1c"),
            }},
            "thresholds": {"pass": 90, "marginal": 75},
        })
    );

    // Not complete yet: looked at again 15 s later, the execution id kept.
    let m = resume(&providers, &metric, m).await;
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");
    assert_eq!(m.metadata[EXECUTION_ID_KEY], "exec-42");
    assert!(m.finished_at.is_none());
    let wait = seconds_until(&m.resume_at);
    assert!((13..=15).contains(&wait), "resumeAt {wait}s away");

    // Complete: the score decides.
    let m = resume(&providers, &metric, m).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("95"));
    assert!(m.finished_at.is_some() && m.resume_at.is_none() && m.message.is_none());
    assert_eq!(m.metadata[EXECUTION_ID_KEY], "exec-42");
    let received = kayenta.received();
    assert_eq!(received.len(), 4);
    for poll in &received[2..] {
        assert_eq!(
            (&poll.method, poll.path.as_str()),
            (&Method::GET, "/canary/exec-42")
        );
        assert!(poll.query.is_empty(), "{poll:?}");
    }
}

#[tokio::test]
async fn scores_fail_or_are_inconclusive_below_the_thresholds() {
    let kayenta = Kayenta::start(Script::default());
    let providers = providers();
    let metric = kayenta_metric(&kayenta.url(), |_| {});
    // Conditions play no part: Kayenta judges.
    let mut with_condition = metric.clone();
    with_condition.success_condition = Some("false".into());
    for (score, phase, value) in [
        (40.0, AnalysisPhase::Failed, "40"),
        (74.99, AnalysisPhase::Failed, "74"),
        (75.0, AnalysisPhase::Inconclusive, "75"),
        (89.9, AnalysisPhase::Inconclusive, "89"),
        (90.0, AnalysisPhase::Successful, "90"),
    ] {
        kayenta.script(|s| s.result = scored(score));
        let m = providers
            .measure(&RunRef::default(), &with_condition, 1)
            .await;
        assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");
        let m = resume(&providers, &with_condition, m).await;
        assert_eq!(
            (m.phase, m.value.as_deref()),
            (phase, Some(value)),
            "{score}: {m:?}"
        );
    }
}

#[tokio::test]
async fn refusals_and_malformed_answers_are_errors_naming_what_was_asked() {
    let kayenta = Kayenta::start(Script::default());
    let providers = providers();
    let metric = kayenta_metric(&kayenta.url(), |_| {});
    let run = RunRef::default();
    let measure = || providers.measure(&run, &metric, 1);

    // No config of that name: no judgement is started.
    kayenta.script(|s| s.configs = json!([{"id": "x", "name": "other"}]));
    let m = measure().await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("canary config \"my-test\" not found")
            && message(&m).contains("config-account"),
        "{m:?}"
    );
    assert!(m.started_at.is_some() && m.finished_at.is_some());
    assert!(kayenta.received().iter().all(|r| r.method == Method::GET));

    // The lookup answers something that is not a list.
    kayenta.script(|s| s.configs = json!({"oops": true}));
    let m = measure().await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("not a JSON list"), "{m:?}");

    // Kayenta refuses: the status and its reason.
    kayenta.script(|s| {
        *s = Script::default();
        s.refuse = Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"message": "No configuration service was configured."}"#,
        ));
    });
    let m = measure().await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("500") && message(&m).contains("No configuration service"),
        "{m:?}"
    );

    // A start without an execution id.
    kayenta.script(|s| {
        *s = Script::default();
        s.started = json!({"status": "ok"});
    });
    let m = measure().await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("canaryExecutionId"), "{m:?}");

    // Polls: a refusal, no complete flag, a complete judgement without a score.
    kayenta.script(|s| *s = Script::default());
    let started = measure().await;
    assert_eq!(started.phase, AnalysisPhase::Running, "{started:?}");
    for (change, expected) in [
        (
            Box::new(|s: &mut Script| s.refuse = Some((StatusCode::NOT_FOUND, "")))
                as Box<dyn Fn(&mut Script)>,
            "404",
        ),
        (
            Box::new(|s: &mut Script| s.result = json!({"status": "running"})),
            "complete",
        ),
        (
            Box::new(|s: &mut Script| {
                s.result = json!({"complete": true, "status": "terminal",
                    "exception": {"details": {"error": "metrics store unreachable"}}});
            }),
            "metrics store unreachable",
        ),
    ] {
        kayenta.script(|s| {
            *s = Script::default();
            change(s);
        });
        let m = resume(&providers, &metric, started.clone()).await;
        assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
        assert!(message(&m).contains(expected), "{expected}: {m:?}");
        assert!(message(&m).contains("exec-42"), "{m:?}");
        assert!(m.finished_at.is_some() && m.resume_at.is_none());
        assert_eq!(m.started_at, started.started_at, "the start is kept");
    }

    // A measurement in flight without its execution id.
    let mut lost = started.clone();
    lost.metadata.clear();
    let m = resume(&providers, &metric, lost).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains(EXECUTION_ID_KEY), "{m:?}");

    // An answer larger than the controller reads.
    kayenta.script(|s| {
        *s = Script::default();
        s.configs = json!(
            (0..100)
                .map(|i| json!({"id": i.to_string(), "name": "padding"}))
                .collect::<Vec<_>>()
        );
    });
    let small = AnalysisLimits {
        max_response_bytes: 256,
        ..AnalysisLimits::default()
    };
    let m = providers_within(&small)
        .measure(&RunRef::default(), &metric, 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("larger than 256 bytes"), "{m:?}");

    // A bad address.
    let m = providers
        .measure(
            &RunRef::default(),
            &kayenta_metric("kayenta:8090", |_| {}),
            1,
        )
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("address"), "{m:?}");
}

#[tokio::test]
async fn an_unreachable_or_silent_kayenta_is_an_error_within_the_timeout() {
    let providers = providers();
    // Nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://kayenta:hunter2@{}", closed.local_addr().unwrap());
    drop(closed);
    let m = providers
        .measure(&RunRef::default(), &kayenta_metric(&address, |_| {}), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("/canaryConfig"), "{m:?}");
    assert!(
        !message(&m).contains("hunter2"),
        "a password in the address is never shown"
    );

    // A server that answers too late: the controller's longest timeout (1 s here) ends the
    // wait, for a start and for a poll.
    let kayenta = Kayenta::start(Script::default());
    let metric = kayenta_metric(&kayenta.url(), |_| {});
    let started = providers.measure(&RunRef::default(), &metric, 1).await;
    assert_eq!(started.phase, AnalysisPhase::Running, "{started:?}");
    kayenta.script(|s| s.delay = Duration::from_secs(5));
    let hasty = providers_within(&AnalysisLimits {
        max_timeout: Duration::from_secs(1),
        ..AnalysisLimits::default()
    });
    let clock = Instant::now();
    let m = hasty.measure(&RunRef::default(), &metric, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("within 1s"), "{m:?}");
    let m = resume(&hasty, &metric, started).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("within 1s"), "{m:?}");
    assert!(
        clock.elapsed() < Duration::from_secs(4),
        "{:?}",
        clock.elapsed()
    );
}

#[tokio::test]
async fn a_judgement_that_never_completes_ends_in_error_at_its_deadline() {
    let kayenta = Kayenta::start(Script {
        pending_polls: usize::MAX,
        ..Script::default()
    });
    let providers = providers();
    let metric = kayenta_metric(&kayenta.url(), |_| {});
    let m = providers.measure(&RunRef::default(), &metric, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");

    // Started almost the whole deadline ago: the next look is at the deadline, not later.
    let deadline = SignedDuration::try_from(JUDGEMENT_DEADLINE).unwrap();
    let almost = Measurement {
        started_at: Some(Time(
            Timestamp::now() - deadline + SignedDuration::from_secs(5),
        )),
        ..m.clone()
    };
    let m2 = resume(&providers, &metric, almost).await;
    assert_eq!(m2.phase, AnalysisPhase::Running, "{m2:?}");
    let wait = seconds_until(&m2.resume_at);
    assert!(wait <= 5, "resumeAt {wait}s away, past the deadline");

    // Past the deadline: an Error, never Running for ever.
    let late = Measurement {
        started_at: Some(Time(Timestamp::now() - deadline)),
        ..m
    };
    let m = resume(&providers, &metric, late).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("did not complete within 30m"), "{m:?}");
    assert!(m.finished_at.is_some() && m.resume_at.is_none());
    assert_eq!(POLL_INTERVAL, Duration::from_secs(15));
}

#[tokio::test]
async fn a_terminated_judgement_is_never_a_pass() {
    let kayenta = Kayenta::start(Script {
        pending_polls: 1,
        ..Script::default()
    });
    let providers = providers();
    let metric = kayenta_metric(&kayenta.url(), |_| {});
    let m = providers.measure(&RunRef::default(), &metric, 1).await;
    // Kayenta has not judged: an Error, with the reason.
    let t = terminate(&providers, &metric, m.clone()).await;
    assert_eq!(t.phase, AnalysisPhase::Error, "{t:?}");
    assert!(
        message(&t).starts_with("Metric Terminated") && message(&t).contains("exec-42"),
        "{t:?}"
    );
    assert!(t.finished_at.is_some() && t.resume_at.is_none());
    // Kayenta has judged meanwhile: its verdict, whatever it is.
    kayenta.script(|s| s.result = scored(20.0));
    let t = terminate(&providers, &metric, m).await;
    assert_eq!(
        (t.phase, t.value.as_deref()),
        (AnalysisPhase::Failed, Some("20")),
        "{t:?}"
    );

    // Through the plan: a run terminated with the judgement in flight records the Error; the
    // run itself ends as the plan ends terminated runs (Argo's `Run Terminated`).
    kayenta.script(|s| {
        *s = Script {
            pending_polls: usize::MAX,
            ..Script::default()
        }
    });
    let spec = serde_json::from_value(run_spec(&kayenta.url())).unwrap();
    let mut run = AnalysisRun::new("terminated", spec);
    let pass = run_pass(&run, &providers, &NoSecrets, None).await;
    let in_flight = &pass.status.metric_results[0].measurements[0];
    assert_eq!(in_flight.phase, AnalysisPhase::Running, "{in_flight:?}");
    run.status = Some(pass.status);
    run.spec.terminate = Some(true);
    let pass = run_pass(&run, &providers, &NoSecrets, None).await;
    let result = &pass.status.metric_results[0];
    let last = &result.measurements[0];
    assert_eq!(last.phase, AnalysisPhase::Error, "{last:?}");
    assert!(message(last).starts_with("Metric Terminated"), "{last:?}");
    assert_eq!(
        (result.successful, result.error),
        (None, Some(1)),
        "{result:?}"
    );
    assert_eq!(pass.status.message.as_deref(), Some("Run Terminated"));
    // The plan's rule, not the measurement's: a terminated run with nothing Failed is
    // Successful (`metric_phase` when terminating), whatever its last measurement was.
    assert_eq!(pass.status.phase, AnalysisPhase::Successful);
}

#[tokio::test]
async fn empty_times_slide_over_the_metrics_interval() {
    let kayenta = Kayenta::start(Script::default());
    let providers = providers();
    let without_times = |interval: Option<&str>| {
        kayenta_metric(&kayenta.url(), |m| {
            if let Some(interval) = interval {
                m["interval"] = json!(interval);
            }
            for side in ["controlScope", "experimentScope"] {
                let scope = &mut m["provider"]["kayenta"]["scopes"][0][side];
                scope.as_object_mut().unwrap().remove("start");
                scope.as_object_mut().unwrap().remove("end");
            }
        })
    };
    let before = Timestamp::now();
    let m = providers
        .measure(&RunRef::default(), &without_times(Some("5m")), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");
    let body = kayenta.received().last().unwrap().json();
    let pair = &body["scopes"]["default"];
    let time = |v: &Value| v.as_str().unwrap().parse::<Timestamp>().unwrap();
    let (start, end) = (
        time(&pair["controlScope"]["start"]),
        time(&pair["controlScope"]["end"]),
    );
    assert_eq!(
        pair["experimentScope"]["start"],
        pair["controlScope"]["start"]
    );
    assert_eq!(pair["experimentScope"]["end"], pair["controlScope"]["end"]);
    assert_eq!(end.duration_since(start), SignedDuration::from_secs(300));
    assert!(
        end.duration_since(before).as_secs().abs() <= 2,
        "{end} vs {before}"
    );
    assert!(pair["controlScope"]["end"].as_str().unwrap().ends_with('Z'));

    // Without an interval, the window is unknown.
    let m = providers
        .measure(&RunRef::default(), &without_times(None), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("interval"), "{m:?}");
}

#[tokio::test]
async fn lookback_starts_the_window_at_the_runs_start() {
    let kayenta = Kayenta::start(Script::default());
    let metric = kayenta_metric(&kayenta.url(), |m| {
        m["provider"]["kayenta"]["lookback"] = json!(true);
        for side in ["controlScope", "experimentScope"] {
            let scope = &mut m["provider"]["kayenta"]["scopes"][0][side];
            scope.as_object_mut().unwrap().remove("start");
        }
    });
    let run = |status: Value| -> AnalysisRun {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisRun",
            "metadata": {"name": "lookback", "namespace": "shop"},
            "spec": {"metrics": [metric]},
            "status": status,
        }))
        .unwrap()
    };
    let providers = providers_within(&AnalysisLimits::default());
    let sent_start = |k: &Kayenta| {
        let body = k.received().last().unwrap().json();
        let pair = body["scopes"]["default"].clone();
        assert_eq!(
            pair["experimentScope"]["start"],
            pair["controlScope"]["start"]
        );
        assert_eq!(
            pair["controlScope"]["end"], "2025-03-01T11:00:00Z",
            "a given end is kept"
        );
        pair["controlScope"]["start"].as_str().unwrap().to_owned()
    };

    // The run's first pass (no startedAt yet): the analysis starts now.
    let before = Timestamp::now();
    let first = run(json!({"phase": "Pending"}));
    let m = providers.measure(&RunRef::of(&first), &metric, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");
    let start: Timestamp = sent_start(&kayenta).parse().unwrap();
    assert!(start.duration_since(before).as_secs().abs() <= 2, "{start}");

    // Later passes: the run's startedAt, whatever the interval.
    let later = run(json!({"phase": "Running", "startedAt": "2025-03-01T09:30:00Z"}));
    let m = providers.measure(&RunRef::of(&later), &metric, 2).await;
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");
    assert_eq!(sent_start(&kayenta), "2025-03-01T09:30:00Z");
}

/// An AnalysisRun spec of one kayenta metric, judged `count` times, against `address`.
fn run_spec(address: &str) -> Value {
    let m = kayenta_metric(address, |_| {});
    json!({"metrics": [m]})
}

#[tokio::test]
async fn whole_runs_pass_and_fail_on_kayentas_score() {
    // Each judgement completes at the first look, 15 s after it started (Argo's delay).
    let good = Kayenta::start(Script::default());
    let bad = Kayenta::start(Script {
        result: scored(30.0),
        ..Script::default()
    });
    let (passed, failed) = tokio::join!(drive(run_spec(&good.url())), drive(run_spec(&bad.url())));

    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(1), Some(1)));
    assert_eq!(result.measurements[0].value.as_deref(), Some("95"));
    assert_eq!(result.measurements[0].metadata[EXECUTION_ID_KEY], "exec-42");
    assert_eq!(good.received().len(), 3, "lookup, start, one look");

    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Metric \"mann-whitney\" assessed Failed due to failed (1) > failureLimit (0)")
    );
    assert_eq!(
        failed.metric_results[0].measurements[0].value.as_deref(),
        Some("30")
    );
}
