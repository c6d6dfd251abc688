//! The `kayenta` provider: a canary judgement by Spinnaker's Kayenta, started by one
//! measurement and polled until Kayenta has scored it.
//!
//! As in Argo Rollouts v1.9:
//! 1. the canary configuration is found by name: `GET <address>/canaryConfig?application=
//!    &configurationAccountName=` answers a list of `{id, name, ...}`, and the `id` of the one
//!    named `canaryConfigName` is used (none of that name is an Error);
//! 2. the judgement is started: `POST <address>/canary/<id>?application=&metricsAccountName=
//!    &configurationAccountName=&storageAccountName=` with the JSON body
//!    `{"scopes": {<name>: {"controlScope": {scope, region, step, start, end}, "experimentScope":
//!    {...}}}, "thresholds": {"pass": .., "marginal": ..}}`; the answer's `canaryExecutionId` is
//!    kept in the measurement's `metadata`, which stays Running with `resumeAt` 15 s later;
//! 3. each resume reads `GET <address>/canary/<canaryExecutionId>`: `complete: false` waits
//!    15 s more; `complete: true` gives the score `result.judgeResult.score.score`, cut to an
//!    integer (the measurement's `value`): at or above `threshold.pass` the measurement is
//!    Successful, at or above `threshold.marginal` Inconclusive, below it Failed.
//!
//! `successCondition` and `failureCondition` play no part (Kayenta judges; Argo ignores them
//! too). A scope without `start` takes the start of the analysis (the run's `startedAt`, or now
//! on its first pass) with `lookback: true`, else now minus the metric's `interval` (no
//! `interval` is then an Error); without `end` it takes now; `start` (and `end`) must be given
//! in both scopes of a pair or in neither. Times are RFC 3339 in UTC, to the second.
//! `{{args.*}}` in the fields are substituted before the provider sees the metric. Kayenta has
//! no credentials in Argo; as with Argo's Go client, a user and password written in the address
//! are sent as basic authentication (and never shown in a message).
//!
//! Bounds: each request waits at most 15 s (Argo's HTTP client timeout), never more than
//! `limits.max_timeout`, and reads at most `limits.max_response_bytes`. A judgement still not
//! complete [`JUDGEMENT_DEADLINE`] (30 min) after the measurement started is an Error, so a
//! stuck judgement never holds a run Running for ever (Argo polls without end).
//!
//! Where Sluice differs from Argo:
//! - the configuration lookup asks the `configurationAccountName` for its configurations; Argo
//!   sends the `storageAccountName` in that parameter. The judgement is started from the
//!   configuration account, so wherever Argo's lookup works (the config is loadable there) this
//!   one does too, and it also works when the two accounts differ;
//! - an answer outside 2xx, one without `complete`, without a score or without a
//!   `canaryExecutionId` (Argo keeps `<nil>` as the id), and a configuration that is not found
//!   (Argo starts a judgement of config `""`) are Errors naming what was asked; query
//!   parameters and path segments are URL-encoded;
//! - when the run ends with the judgement in flight ([`Provider::terminate`]), Kayenta is asked
//!   once more: a complete judgement gives its real verdict, otherwise the measurement is an
//!   Error (`Metric Terminated` before Kayenta had judged), never the Successful measurement the
//!   trait's default records: a judgement that was never made must not count as a pass. (Argo
//!   leaves it Running.)

use std::{collections::BTreeMap, time::Duration};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use sluice_analysis::{limits::AnalysisLimits, plan::error_measurement};
use sluice_api::{
    AnalysisPhase, KayentaMetric, KayentaScopeDetail, KayentaThreshold, Measurement, Metric,
    MetricProvider,
};

use super::{Context, HttpClients, Provider, ProviderError, RunRef, body, exchange, query_failed};

/// How long each request to Kayenta may take (Argo's HTTP client timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time between two looks at a judgement in flight (Argo's resume delay).
pub const POLL_INTERVAL: Duration = Duration::from_secs(15);
/// How long after its start a judgement may stay incomplete before the measurement is an Error.
pub const JUDGEMENT_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// The measurement metadata key holding Kayenta's execution id (Argo's name).
pub const EXECUTION_ID_KEY: &str = "canaryExecutionId";

/// Starts and polls Kayenta canary judgements; the HTTP client is shared by every measurement.
pub struct KayentaProvider {
    http: HttpClients,
    limits: AnalysisLimits,
}

/// What fills the `start` and `end` a scope leaves empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// When the measurement started: the default `end`, and the base of the sliding `start`.
    pub now: Timestamp,
    /// When the analysis started (`lookback: true`); `None` before its first pass is recorded.
    pub run_started: Option<Timestamp>,
    /// The metric's `interval` (the sliding window without `lookback`).
    pub interval: Option<Duration>,
}

/// The body of `POST /canary/<id>` (Kayenta's `CanaryExecutionRequest`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExecutionRequest {
    /// The scope pairs by name.
    pub scopes: BTreeMap<String, ScopePair>,
    /// The score thresholds.
    pub thresholds: Thresholds,
}

/// A control and an experiment scope (Kayenta's `CanaryScopePair`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopePair {
    /// The baseline.
    pub control_scope: Scope,
    /// The canary.
    pub experiment_scope: Scope,
}

/// One scope as Kayenta reads it, times filled in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scope {
    /// The scope expression.
    pub scope: String,
    /// The region.
    pub region: String,
    /// The step in seconds.
    pub step: i64,
    /// The start, RFC 3339.
    pub start: String,
    /// The end, RFC 3339.
    pub end: String,
}

/// The score thresholds sent with the judgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// Score at or above which the canary passes.
    pub pass: i64,
    /// Score below which it fails.
    pub marginal: i64,
}

/// A time as the judgement request carries it: RFC 3339 in UTC, to the second (Argo's format).
pub fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The judgement request for `spec`, empty times filled from `window` as Argo does.
pub fn execution_request(spec: &KayentaMetric, window: Window) -> Result<ExecutionRequest, String> {
    let mut scopes = BTreeMap::new();
    for pair in &spec.scopes {
        let (control, experiment) = (&pair.control_scope, &pair.experiment_scope);
        if control.start.is_empty() != experiment.start.is_empty() {
            return Err(format!(
                "scope {:?}: controlScope.start and experimentScope.start must both be set or both be empty",
                pair.name
            ));
        }
        if control.end.is_empty() != experiment.end.is_empty() {
            return Err(format!(
                "scope {:?}: controlScope.end and experimentScope.end must both be set or both be empty",
                pair.name
            ));
        }
        let start = if control.start.is_empty() {
            Some(default_start(spec, window)?)
        } else {
            None
        };
        let end = rfc3339(window.now);
        let fill = |detail: &KayentaScopeDetail| Scope {
            scope: detail.scope.clone(),
            region: detail.region.clone(),
            step: detail.step,
            start: start.clone().unwrap_or_else(|| detail.start.clone()),
            end: if detail.end.is_empty() {
                end.clone()
            } else {
                detail.end.clone()
            },
        };
        scopes.insert(
            pair.name.clone(),
            ScopePair {
                control_scope: fill(control),
                experiment_scope: fill(experiment),
            },
        );
    }
    Ok(ExecutionRequest {
        scopes,
        thresholds: Thresholds {
            pass: spec.threshold.pass,
            marginal: spec.threshold.marginal,
        },
    })
}

/// The `start` of a scope that gives none: the analysis' start with `lookback`, else now minus
/// the metric's interval.
fn default_start(spec: &KayentaMetric, window: Window) -> Result<String, String> {
    if spec.lookback == Some(true) {
        return Ok(rfc3339(window.run_started.unwrap_or(window.now)));
    }
    let interval = window.interval.ok_or(
        "a scope without start needs the metric's interval (start = now - interval), or lookback: true",
    )?;
    let start = SignedDuration::try_from(interval)
        .ok()
        .and_then(|d| window.now.checked_sub(d).ok())
        .ok_or_else(|| format!("interval {}s reaches before any time", interval.as_secs()))?;
    Ok(rfc3339(start))
}

/// One entry of `GET /canaryConfig`.
#[derive(Deserialize)]
struct ConfigSummary {
    id: Option<String>,
    name: Option<String>,
}

/// The id of the configuration named `name` in the answer of `GET /canaryConfig`.
pub fn config_id(answer: &[u8], name: &str) -> Result<String, String> {
    let configs: Vec<ConfigSummary> = serde_json::from_slice(answer)
        .map_err(|e| format!("the canary configurations answered are not a JSON list: {e}"))?;
    configs
        .into_iter()
        .find(|c| c.name.as_deref() == Some(name))
        .and_then(|c| c.id.filter(|id| !id.is_empty()))
        .ok_or_else(|| format!("canary config {name:?} not found"))
}

/// The `canaryExecutionId` of the answer to `POST /canary/<id>`.
pub fn execution_id(answer: &[u8]) -> Result<String, String> {
    let body: serde_json::Value = serde_json::from_slice(answer)
        .map_err(|e| format!("the answer to starting the judgement is not JSON: {e}"))?;
    body.get(EXECUTION_ID_KEY)
        .and_then(serde_json::Value::as_str)
        .filter(|id| !id.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "Kayenta started no judgement: the answer has no canaryExecutionId".into())
}

/// Where a judgement stands, from `GET /canary/<canaryExecutionId>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Not complete yet.
    Pending,
    /// Complete, with this score (cut to an integer, as Argo does).
    Scored(i64),
}

/// Reads the status of a judgement: `complete`, then `result.judgeResult.score.score`. A
/// complete judgement without a score (Kayenta failed to judge) is an Error carrying Kayenta's
/// status and exception.
pub fn judgement(answer: &[u8]) -> Result<Judgement, String> {
    let body: serde_json::Value = serde_json::from_slice(answer)
        .map_err(|e| format!("the judgement's status is not JSON: {e}"))?;
    let complete = body
        .get("complete")
        .and_then(serde_json::Value::as_bool)
        .ok_or("the judgement's status has no complete flag")?;
    if !complete {
        return Ok(Judgement::Pending);
    }
    let score = body
        .pointer("/result/judgeResult/score/score")
        .and_then(serde_json::Value::as_f64);
    match score {
        Some(score) => Ok(Judgement::Scored(score.trunc() as i64)),
        None => {
            let mut message = "the judgement completed without a score".to_owned();
            if let Some(status) = body.get("status").and_then(serde_json::Value::as_str) {
                message.push_str(&format!(" (status {status})"));
            }
            if let Some(exception) = body.get("exception").filter(|e| !e.is_null()) {
                let text = exception.to_string();
                message.push_str(": ");
                message.push_str(&body::truncate(text, 512));
            }
            Err(message)
        }
    }
}

/// The phase of a score against the thresholds: Successful at or above `pass`, Inconclusive at
/// or above `marginal`, Failed below.
pub fn phase_of(score: i64, threshold: &KayentaThreshold) -> AnalysisPhase {
    if score >= threshold.pass {
        AnalysisPhase::Successful
    } else if score >= threshold.marginal {
        AnalysisPhase::Inconclusive
    } else {
        AnalysisPhase::Failed
    }
}

/// The Kayenta address as a URL: http or https with a host.
fn base_url(address: &str) -> Result<reqwest::Url, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("kayenta address is not set".into());
    }
    let url = reqwest::Url::parse(address)
        .map_err(|e| format!("kayenta address {address:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "kayenta address {address:?} must be an http or https URL with a host"
        ));
    }
    Ok(url)
}

/// `segments` appended to the address' path, without its query.
fn endpoint(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A URL as a message shows it: without user and password.
fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// `at + d`, saturating.
fn later(at: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl KayentaProvider {
    /// Builds the HTTP client.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        Ok(Self {
            http: HttpClients::new(&context.limits)?,
            limits: context.limits.clone(),
        })
    }

    /// Sends `request` within the timeout and size bounds; an answer outside 2xx is an Error
    /// with the start of its body (Kayenta explains its refusals there).
    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Vec<u8>, String> {
        let timeout = body::capped_timeout(None, DEFAULT_TIMEOUT, self.limits.max_timeout);
        let (status, answer) =
            exchange(request, timeout, self.limits.max_response_bytes, what).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
            let text = text.trim();
            return Err(if text.is_empty() {
                format!("{what} answered {status}")
            } else {
                format!("{what} answered {status}: {text}")
            });
        }
        Ok(answer)
    }

    /// Finds the configuration, starts the judgement and returns its execution id.
    async fn start(
        &self,
        spec: &KayentaMetric,
        metric: &Metric,
        run: &RunRef,
        now: Timestamp,
    ) -> Result<String, String> {
        let base = base_url(&spec.address)?;
        let window = Window {
            now,
            run_started: run.started_at,
            interval: metric.interval.as_ref().map(sluice_api::Duration::as_std),
        };
        let request = execution_request(spec, window)?;
        let http = self.http.get(None);

        let mut lookup = endpoint(&base, &["canaryConfig"]);
        lookup
            .query_pairs_mut()
            .append_pair("application", &spec.application)
            .append_pair("configurationAccountName", &spec.configuration_account_name);
        let what = format!("Kayenta's canary configurations ({})", shown(&lookup));
        let answer = self.call(http.get(lookup), &what).await?;
        let id = config_id(&answer, &spec.canary_config_name).map_err(|e| {
            format!(
                "{e} for application {:?} in configuration account {:?}",
                spec.application, spec.configuration_account_name
            )
        })?;

        let mut url = endpoint(&base, &["canary", &id]);
        url.query_pairs_mut()
            .append_pair("application", &spec.application)
            .append_pair("metricsAccountName", &spec.metrics_account_name)
            .append_pair("configurationAccountName", &spec.configuration_account_name)
            .append_pair("storageAccountName", &spec.storage_account_name);
        let body = serde_json::to_vec(&request)
            .map_err(|e| format!("encoding the judgement request: {e}"))?;
        let what = format!("Kayenta starting a judgement ({})", shown(&url));
        let post = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let answer = self.call(post, &what).await?;
        execution_id(&answer).map_err(|e| format!("{what}: {e}"))
    }

    /// Asks Kayenta where the judgement `id` stands.
    async fn poll(&self, spec: &KayentaMetric, id: &str) -> Result<Judgement, String> {
        let base = base_url(&spec.address)?;
        let url = endpoint(&base, &["canary", id]);
        let what = format!("Kayenta's judgement {id} ({})", shown(&url));
        let answer = self.call(self.http.get(None).get(url), &what).await?;
        judgement(&answer).map_err(|e| format!("{what}: {e}"))
    }

    /// A measurement in flight, looked at now: finished with its verdict, still in flight, or
    /// an Error. `ending` is the run ending: no more waiting.
    async fn look(&self, metric: &Metric, m: Measurement, ending: bool) -> Measurement {
        let now = Timestamp::now();
        let MetricProvider::Kayenta(spec) = &metric.provider else {
            return failed(m, "not a kayenta metric".into(), now);
        };
        let Some(id) = m.metadata.get(EXECUTION_ID_KEY).cloned() else {
            return failed(
                m,
                format!("the measurement in flight has no {EXECUTION_ID_KEY}"),
                now,
            );
        };
        let polled = self.poll(spec, &id).await;
        let now = Timestamp::now();
        match polled {
            Ok(Judgement::Scored(score)) => {
                tracing::debug!(metric = %metric.name, id = %id, score, "kayenta judgement scored");
                Measurement {
                    phase: phase_of(score, &spec.threshold),
                    value: Some(score.to_string()),
                    message: None,
                    finished_at: Some(Time(now)),
                    resume_at: None,
                    ..m
                }
            }
            Ok(Judgement::Pending) if ending => failed(
                m,
                format!(
                    "Metric Terminated: the run ended before Kayenta's judgement {id} completed; no verdict was taken"
                ),
                now,
            ),
            Ok(Judgement::Pending) => {
                let Some(started) = m.started_at.as_ref().map(|t| t.0) else {
                    return failed(
                        m,
                        format!("the measurement of judgement {id} has no startedAt"),
                        now,
                    );
                };
                let deadline = later(started, JUDGEMENT_DEADLINE);
                if now >= deadline {
                    tracing::info!(metric = %metric.name, id = %id, "kayenta judgement past its deadline");
                    return failed(
                        m,
                        format!(
                            "Kayenta's judgement {id} did not complete within {} of its start",
                            show_minutes(JUDGEMENT_DEADLINE)
                        ),
                        now,
                    );
                }
                Measurement {
                    phase: AnalysisPhase::Running,
                    resume_at: Some(Time(later(now, POLL_INTERVAL).min(deadline))),
                    ..m
                }
            }
            Err(message) if ending => failed(m, format!("Metric Terminated: {message}"), now),
            Err(message) => failed(m, message, now),
        }
    }
}

/// A measurement in flight finished as an Error, its start and execution id kept.
fn failed(m: Measurement, message: String, now: Timestamp) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error,
        message: Some(message),
        finished_at: Some(Time(now)),
        resume_at: None,
        ..m
    }
}

/// A whole number of minutes as a message shows it (`30m`).
fn show_minutes(d: Duration) -> String {
    format!("{}m", d.as_secs() / 60)
}

impl Provider for KayentaProvider {
    fn kind(&self) -> &'static str {
        "kayenta"
    }

    fn measure<'a>(
        &'a self,
        run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::Kayenta(spec) = &metric.provider else {
                return error_measurement("not a kayenta metric", started);
            };
            match self.start(spec, metric, run, started).await {
                Ok(id) => {
                    tracing::debug!(metric = %metric.name, id = %id, "kayenta judgement started");
                    Measurement {
                        phase: AnalysisPhase::Running,
                        started_at: Some(Time(started)),
                        metadata: BTreeMap::from([(EXECUTION_ID_KEY.to_owned(), id)]),
                        resume_at: Some(Time(later(Timestamp::now(), POLL_INTERVAL))),
                        ..Measurement::default()
                    }
                }
                Err(message) => query_failed(self.kind(), metric, started, message),
            }
        })
    }

    fn resume<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(self.look(metric, measurement, false))
    }

    fn terminate<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(self.look(metric, measurement, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(lookback: Option<bool>, start: &str, end: &str) -> KayentaMetric {
        serde_json::from_value(serde_json::json!({
            "address": "http://kayenta:8090",
            "application": "guestbook",
            "canaryConfigName": "my-test",
            "metricsAccountName": "prometheus",
            "configurationAccountName": "configs",
            "storageAccountName": "storage",
            "threshold": {"pass": 90, "marginal": 75},
            "lookback": lookback,
            "scopes": [{
                "name": "default",
                "controlScope": {"scope": "hash=a", "region": "eu", "step": 60, "start": start, "end": end},
                "experimentScope": {"scope": "hash=b", "region": "eu", "step": 60, "start": start, "end": end},
            }],
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn window(interval: Option<u64>) -> Window {
        Window {
            now: at("2025-03-01T12:00:00.750Z"),
            run_started: Some(at("2025-03-01T11:00:00Z")),
            interval: interval.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_request_carries_scopes_and_thresholds_as_argo_sends_them() {
        let request = execution_request(
            &spec(None, "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z"),
            window(None),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({
                "scopes": {"default": {
                    "controlScope": {"scope": "hash=a", "region": "eu", "step": 60,
                        "start": "2025-01-01T00:00:00Z", "end": "2025-01-01T01:00:00Z"},
                    "experimentScope": {"scope": "hash=b", "region": "eu", "step": 60,
                        "start": "2025-01-01T00:00:00Z", "end": "2025-01-01T01:00:00Z"},
                }},
                "thresholds": {"pass": 90, "marginal": 75},
            })
        );
    }

    #[test]
    fn empty_times_slide_with_the_interval_or_look_back_to_the_runs_start() {
        let scope = |r: &ExecutionRequest| r.scopes["default"].experiment_scope.clone();
        let sliding = execution_request(&spec(None, "", ""), window(Some(300))).unwrap();
        assert_eq!(scope(&sliding).start, "2025-03-01T11:55:00Z");
        assert_eq!(scope(&sliding).end, "2025-03-01T12:00:00Z");
        assert_eq!(
            sliding.scopes["default"].control_scope.start,
            "2025-03-01T11:55:00Z"
        );
        let lookback = execution_request(&spec(Some(true), "", ""), window(Some(300))).unwrap();
        assert_eq!(scope(&lookback).start, "2025-03-01T11:00:00Z");
        assert_eq!(scope(&lookback).end, "2025-03-01T12:00:00Z");
        // The run's first pass: the analysis starts now.
        let first = Window {
            run_started: None,
            ..window(None)
        };
        let lookback = execution_request(&spec(Some(true), "", ""), first).unwrap();
        assert_eq!(scope(&lookback).start, "2025-03-01T12:00:00Z");
        // Without lookback and without interval there is no window.
        let e = execution_request(&spec(Some(false), "", ""), window(None)).unwrap_err();
        assert!(e.contains("interval"), "{e}");
        // An end given, a start not.
        let r =
            execution_request(&spec(None, "", "2025-01-01T01:00:00Z"), window(Some(60))).unwrap();
        assert_eq!(scope(&r).start, "2025-03-01T11:59:00Z");
        assert_eq!(scope(&r).end, "2025-01-01T01:00:00Z");
    }

    #[test]
    fn a_start_in_one_scope_of_a_pair_only_is_refused() {
        let mut half = spec(None, "2025-01-01T00:00:00Z", "");
        half.scopes[0].experiment_scope.start.clear();
        let e = execution_request(&half, window(Some(60))).unwrap_err();
        assert!(e.contains("start must both be set"), "{e}");
        let mut half = spec(None, "", "2025-01-01T00:00:00Z");
        half.scopes[0].control_scope.end.clear();
        let e = execution_request(&half, window(Some(60))).unwrap_err();
        assert!(e.contains("end must both be set"), "{e}");
    }

    #[test]
    fn the_config_is_found_by_name() {
        let list = br#"[{"id": "a1", "name": "other", "applications": ["x"]},
                        {"id": "b2", "name": "my-test", "updatedTimestamp": 1}]"#;
        assert_eq!(config_id(list, "my-test").unwrap(), "b2");
        assert!(
            config_id(list, "missing")
                .unwrap_err()
                .contains("not found")
        );
        assert!(config_id(b"[]", "my-test").is_err());
        assert!(
            config_id(b"{}", "my-test")
                .unwrap_err()
                .contains("JSON list")
        );
        assert!(config_id(br#"[{"name": "my-test"}]"#, "my-test").is_err());
    }

    #[test]
    fn the_execution_id_must_be_a_string() {
        assert_eq!(
            execution_id(br#"{"canaryExecutionId": "01ABC"}"#).unwrap(),
            "01ABC"
        );
        assert!(execution_id(br#"{}"#).is_err());
        assert!(execution_id(br#"{"canaryExecutionId": ""}"#).is_err());
        assert!(execution_id(br#"{"canaryExecutionId": null}"#).is_err());
        assert!(execution_id(b"not json").is_err());
    }

    #[test]
    fn judgements_are_pending_scored_or_errors() {
        assert_eq!(
            judgement(br#"{"complete": false, "status": "running"}"#),
            Ok(Judgement::Pending)
        );
        assert_eq!(
            judgement(
                br#"{"complete": true, "result": {"judgeResult": {"score": {"score": 89.9}}}}"#
            ),
            Ok(Judgement::Scored(89))
        );
        assert!(
            judgement(br#"{"status": "running"}"#)
                .unwrap_err()
                .contains("complete")
        );
        let e = judgement(
            br#"{"complete": true, "status": "terminal", "exception": {"details": {"error": "no metrics"}}}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("without a score") && e.contains("terminal") && e.contains("no metrics"),
            "{e}"
        );
        assert!(judgement(b"<html>").is_err());
    }

    #[test]
    fn scores_against_thresholds() {
        let t = KayentaThreshold {
            pass: 90,
            marginal: 75,
        };
        assert_eq!(phase_of(100, &t), AnalysisPhase::Successful);
        assert_eq!(phase_of(90, &t), AnalysisPhase::Successful);
        assert_eq!(phase_of(89, &t), AnalysisPhase::Inconclusive);
        assert_eq!(phase_of(75, &t), AnalysisPhase::Inconclusive);
        assert_eq!(phase_of(74, &t), AnalysisPhase::Failed);
        assert_eq!(phase_of(0, &t), AnalysisPhase::Failed);
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_segments() {
        let base = base_url("http://user:pw@kayenta:8090/api/").unwrap();
        assert_eq!(
            endpoint(&base, &["canary", "a b/c"]).path(),
            "/api/canary/a%20b%2Fc"
        );
        assert!(!shown(&base).contains("pw"));
        assert!(base_url("").is_err());
        assert!(base_url("ftp://kayenta").is_err());
        assert!(base_url("kayenta:8090").is_err());
    }
}
