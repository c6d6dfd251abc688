//! The `cloudWatch` provider: Amazon CloudWatch `GetMetricData` over the metric's
//! `metricDataQueries`, for the window `[now - interval, now]` (`interval` defaults to 5m, as in
//! Argo Rollouts).
//!
//! The wire protocol is AWS JSON 1.0, which CloudWatch accepts besides the query protocol (the
//! AWS CLI speaks it): `POST /` to the CloudWatch endpoint with
//! `Content-Type: application/x-amz-json-1.0`, `X-Amz-Target:
//! GraniteServiceVersion20100801.GetMetricData` and a JSON body (`MetricDataQueries`, `StartTime`
//! and `EndTime` in epoch seconds, `NextToken`), signed with SigV4 (signing name `monitoring`).
//! Region, credentials and endpoint come from the process as the AWS SDKs find them
//! ([`super::aws`]).
//!
//! As in Argo, the conditions see `result`, the answer's `MetricDataResults` with the SDK's field
//! names: one map per query returning data, with `Id`, `Label`, `StatusCode`, `Values` (newest
//! first, CloudWatch's default order), `Timestamps` and `Messages` (`Code`, `Value`). So
//! `all(result[0].Values, {# <= 0.01})` and `result[0].Values[0] < 5` work unchanged.
//!
//! Where Sluice differs from Argo, to stay safe:
//! - an answer with no datapoint at all is an Error, not a `result` on which `all(...)` holds
//!   vacuously; a result whose `StatusCode` is `Forbidden` or `InternalError` is an Error too;
//! - `NextToken` is followed (at most [`MAX_PAGES`] pages, each read within
//!   `limits.max_response_bytes`; more is an Error) and the pages merged by `Id`, where Argo
//!   reads the first page only;
//! - `Timestamps` are RFC 3339 text (`2024-05-01T12:00:00Z`), where Argo's are Go times;
//! - the whole measurement (STS included) is bounded by 30s (at most `limits.max_timeout`), and
//!   a throttled or refused call is an Error at once (the run's error retry applies), where the
//!   SDK would retry by itself.
//!
//! The measurement's value is the `Values` of each result as Argo shows them (`[[0.5 0.2] [1]]`);
//! the answer's top-level `Messages`, if any, are kept in its metadata under `messages`.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_analysis::{
    condition::{MetricValue, format_float},
    limits::AnalysisLimits,
    plan::error_measurement,
};
use sluice_api::{
    CloudWatchMetric, CloudWatchMetricDataQuery, Measurement, Metric, MetricProvider,
};

use crate::analysis::evaluator::Evaluator;

use super::{
    Context, Provider, ProviderError, RunRef,
    aws::{Aws, Service, Signable, sign},
    body, exchange, measured, query_failed,
};

/// The window queried when the metric gives no `interval` (Argo's default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How long a measurement may take, STS and every page included (at most `limits.max_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most pages of one answer followed through `NextToken`.
pub const MAX_PAGES: usize = 10;
/// The operation, as AWS JSON 1.0 names it.
pub const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
/// The content type of AWS JSON 1.0.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Queries CloudWatch; the HTTP client and the cache of temporary credentials are shared by
/// every measurement.
pub struct CloudWatchProvider {
    aws: Aws,
    http: reqwest::Client,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

impl CloudWatchProvider {
    /// Builds the provider with the context's AWS settings.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        let clients = super::HttpClients::new(&context.limits)?;
        let http = clients.get(None).clone();
        Ok(Self {
            aws: Aws::new(
                context.aws.clone(),
                http.clone(),
                context.limits.max_response_bytes,
            ),
            http,
            evaluator: context.evaluator.clone(),
            limits: context.limits.clone(),
        })
    }

    /// Asks CloudWatch for the metric's data, every page, within the timeout.
    async fn query(&self, spec: &CloudWatchMetric) -> Result<Answer, String> {
        let queries = data_queries(&spec.metric_data_queries)?;
        let interval = spec
            .interval
            .as_ref()
            .map_or(DEFAULT_INTERVAL, sluice_api::Duration::as_std);
        let timeout = body::capped_timeout(None, DEFAULT_TIMEOUT, self.limits.max_timeout);
        let work = async {
            let region = self.aws.region(None)?;
            let credentials = self.aws.credentials(None, None, &region).await?;
            let url = self.aws.endpoint(Service::CloudWatch, &region)?;
            let end = Timestamp::now();
            let start = end
                .checked_sub(jiff::SignedDuration::try_from(interval).map_err(|e| e.to_string())?)
                .map_err(|e| format!("cloudWatch interval {interval:?}: {e}"))?;
            let mut answer = Answer::default();
            let mut next_token: Option<String> = None;
            for page in 1..=MAX_PAGES {
                let body = request_body(&queries, start, end, next_token.as_deref());
                let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
                let signable = Signable {
                    method: "POST",
                    url: &url,
                    headers: &headers,
                    body: body.as_bytes(),
                };
                let mut request = self
                    .http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .header("x-amz-target", TARGET);
                for (name, value) in sign(
                    &signable,
                    &credentials,
                    &region,
                    Service::CloudWatch.signing_name(),
                    SystemTime::now(),
                )? {
                    request = request.header(name, value);
                }
                let (status, bytes) = exchange(
                    request.body(body),
                    timeout,
                    self.limits.max_response_bytes,
                    "cloudWatch",
                )
                .await
                .map_err(|e| format!("cloudWatch GetMetricData at {url}: {e}"))?;
                let parsed = parse_page(status, &bytes)?;
                next_token = parsed.next_token.clone().filter(|t| !t.is_empty());
                answer.add(parsed);
                match &next_token {
                    None => return Ok(answer),
                    Some(_) => tracing::debug!(page, "cloudWatch answered a NextToken"),
                }
            }
            Err(format!(
                "cloudWatch GetMetricData answered more than {MAX_PAGES} pages; narrow the \
                 queries or the interval"
            ))
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            format!(
                "no answer from cloudWatch within {}",
                body::show_duration(timeout)
            )
        })?
    }
}

/// The metric's queries as GetMetricData's `MetricDataQueries`, field by field as Argo sends
/// them (absent fields left out).
fn data_queries(queries: &[CloudWatchMetricDataQuery]) -> Result<Vec<Value>, String> {
    if queries.is_empty() {
        return Err("cloudWatch metricDataQueries is empty".to_owned());
    }
    let period = |i: usize, p: &sluice_api::IntOrString| {
        p.as_int().ok_or_else(|| {
            format!("cloudWatch metricDataQueries[{i}]: period {p:?} is not a number of seconds")
        })
    };
    queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let id =
                q.id.as_deref()
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| format!("cloudWatch metricDataQueries[{i}]: id is not set"))?;
            let mut out = serde_json::Map::new();
            out.insert("Id".into(), json!(id));
            if let Some(expression) = &q.expression {
                out.insert("Expression".into(), json!(expression));
            }
            if let Some(label) = &q.label {
                out.insert("Label".into(), json!(label));
            }
            if let Some(stat) = &q.metric_stat {
                let mut metric = serde_json::Map::new();
                if let Some(m) = &stat.metric {
                    if let Some(namespace) = &m.namespace {
                        metric.insert("Namespace".into(), json!(namespace));
                    }
                    if let Some(name) = &m.metric_name {
                        metric.insert("MetricName".into(), json!(name));
                    }
                    if !m.dimensions.is_empty() {
                        let dimensions: Vec<Value> = m
                            .dimensions
                            .iter()
                            .map(|d| json!({"Name": d.name, "Value": d.value}))
                            .collect();
                        metric.insert("Dimensions".into(), json!(dimensions));
                    }
                }
                let mut metric_stat = serde_json::Map::new();
                metric_stat.insert("Metric".into(), Value::Object(metric));
                if let Some(p) = &stat.period {
                    metric_stat.insert("Period".into(), json!(period(i, p)?));
                }
                if let Some(s) = &stat.stat {
                    metric_stat.insert("Stat".into(), json!(s));
                }
                if let Some(unit) = stat.unit.as_deref().filter(|u| !u.is_empty()) {
                    metric_stat.insert("Unit".into(), json!(unit));
                }
                out.insert("MetricStat".into(), Value::Object(metric_stat));
            }
            if let Some(p) = &q.period {
                out.insert("Period".into(), json!(period(i, p)?));
            }
            if let Some(return_data) = q.return_data {
                out.insert("ReturnData".into(), json!(return_data));
            }
            Ok(Value::Object(out))
        })
        .collect()
}

/// The JSON body of one GetMetricData call.
fn request_body(
    queries: &[Value],
    start: Timestamp,
    end: Timestamp,
    next_token: Option<&str>,
) -> String {
    let mut body = json!({
        "MetricDataQueries": queries,
        "StartTime": start.as_second(),
        "EndTime": end.as_second(),
    });
    if let (Some(token), Some(map)) = (next_token, body.as_object_mut()) {
        map.insert("NextToken".into(), json!(token));
    }
    body.to_string()
}

/// One page of a GetMetricData answer.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Page {
    #[serde(default)]
    metric_data_results: Vec<DataResult>,
    next_token: Option<String>,
    #[serde(default)]
    messages: Vec<Message>,
}

/// One `MetricDataResult`.
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
struct DataResult {
    id: Option<String>,
    label: Option<String>,
    status_code: Option<String>,
    #[serde(default)]
    timestamps: Vec<f64>,
    #[serde(default)]
    values: Vec<Number>,
    #[serde(default)]
    messages: Vec<Message>,
}

/// A datapoint: AWS JSON writes NaN and the infinities as strings.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Number {
    Float(f64),
    Text(NonFinite),
}

/// `"NaN"`, `"Infinity"`, `"-Infinity"`.
#[derive(Deserialize, Clone, Copy)]
enum NonFinite {
    NaN,
    Infinity,
    #[serde(rename = "-Infinity")]
    NegativeInfinity,
}

impl Number {
    fn value(self) -> f64 {
        match self {
            Self::Float(f) => f,
            Self::Text(NonFinite::NaN) => f64::NAN,
            Self::Text(NonFinite::Infinity) => f64::INFINITY,
            Self::Text(NonFinite::NegativeInfinity) => f64::NEG_INFINITY,
        }
    }
}

/// A `MessageData`.
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
struct Message {
    code: Option<String>,
    value: Option<String>,
}

/// An AWS JSON error body: `__type` (`prefix#Code`) and `message`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type", alias = "code")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// Every page of an answer, merged by `Id` in the order results first appeared.
#[derive(Default)]
struct Answer {
    results: Vec<DataResult>,
    messages: Vec<Message>,
}

impl Answer {
    /// Adds a page: datapoints of a known `Id` are appended to its result, its status replaced.
    fn add(&mut self, page: Page) {
        for result in page.metric_data_results {
            match self
                .results
                .iter_mut()
                .find(|r| r.id.is_some() && r.id == result.id)
            {
                Some(known) => {
                    known.timestamps.extend(result.timestamps);
                    known.values.extend(result.values);
                    known.messages.extend(result.messages);
                    if result.status_code.is_some() {
                        known.status_code = result.status_code;
                    }
                }
                None => self.results.push(result),
            }
        }
        self.messages.extend(page.messages);
    }
}

/// A page from CloudWatch's answer, or why there is none (`403 Forbidden:
/// SignatureDoesNotMatch: ...`).
fn parse_page(status: reqwest::StatusCode, answer: &[u8]) -> Result<Page, String> {
    if !status.is_success() {
        let reason = serde_json::from_slice::<ErrorBody>(answer)
            .ok()
            .filter(|e| e.kind.is_some() || e.message.is_some())
            .map(|e| {
                let kind = e.kind.unwrap_or_default();
                let code = kind.rsplit('#').next().unwrap_or_default().to_owned();
                format!(
                    "{}: {}",
                    if code.is_empty() { "error" } else { &code },
                    e.message.as_deref().unwrap_or("no reason given")
                )
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
                    .trim()
                    .to_owned()
            });
        return Err(format!(
            "cloudWatch GetMetricData answered {status}: {reason}"
        ));
    }
    serde_json::from_slice(answer)
        .map_err(|e| format!("cloudWatch answered JSON that is not a GetMetricData result: {e}"))
}

/// `result` as the conditions see it and the value as Argo shows it, from the merged answer;
/// no datapoint at all, or a result CloudWatch could not compute, is an Error.
fn value_of(answer: &Answer) -> Result<(MetricValue, String), String> {
    let ids = || {
        answer
            .results
            .iter()
            .map(|r| r.id.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if answer.results.iter().all(|r| r.values.is_empty()) {
        return Err(if answer.results.is_empty() {
            "cloudWatch returned no results (do the queries set returnData?)".to_owned()
        } else {
            format!("cloudWatch returned no datapoints for {}", ids())
        });
    }
    if let Some(bad) = answer.results.iter().find(|r| {
        matches!(
            r.status_code.as_deref(),
            Some("Forbidden" | "InternalError")
        )
    }) {
        let messages: Vec<String> = bad
            .messages
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    m.code.as_deref().unwrap_or_default(),
                    m.value.as_deref().unwrap_or_default()
                )
            })
            .collect();
        return Err(format!(
            "cloudWatch answered {} for {}{}",
            bad.status_code.as_deref().unwrap_or_default(),
            bad.id.as_deref().unwrap_or_default(),
            if messages.is_empty() {
                String::new()
            } else {
                format!(" ({})", messages.join("; "))
            }
        ));
    }
    let text = |v: Option<&String>| v.map_or(MetricValue::Nil, |s| MetricValue::String(s.clone()));
    let results = answer
        .results
        .iter()
        .map(|r| {
            let timestamps = r
                .timestamps
                .iter()
                .map(|t| {
                    // CloudWatch's timestamps are whole seconds; milliseconds keep any fraction.
                    let millis = (t * 1000.0).round() as i64;
                    Timestamp::from_millisecond(millis)
                        .map(|t| MetricValue::String(t.to_string()))
                        .map_err(|e| format!("cloudWatch answered a timestamp {t}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let messages = r
                .messages
                .iter()
                .map(|m| {
                    MetricValue::Map(BTreeMap::from([
                        ("Code".to_owned(), text(m.code.as_ref())),
                        ("Value".to_owned(), text(m.value.as_ref())),
                    ]))
                })
                .collect();
            Ok(MetricValue::Map(BTreeMap::from([
                ("Id".to_owned(), text(r.id.as_ref())),
                ("Label".to_owned(), text(r.label.as_ref())),
                ("Messages".to_owned(), MetricValue::Array(messages)),
                ("StatusCode".to_owned(), text(r.status_code.as_ref())),
                ("Timestamps".to_owned(), MetricValue::Array(timestamps)),
                (
                    "Values".to_owned(),
                    MetricValue::from(r.values.iter().map(|v| v.value()).collect::<Vec<_>>()),
                ),
            ])))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let shown = answer
        .results
        .iter()
        .map(|r| {
            let values: Vec<String> = r.values.iter().map(|v| format_float(v.value())).collect();
            format!("[{}]", values.join(" "))
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok((MetricValue::Array(results), format!("[{shown}]")))
}

/// The answer's top-level messages as Argo keeps them in the measurement's metadata.
fn messages_metadata(messages: &[Message]) -> Option<String> {
    (!messages.is_empty()).then(|| {
        let shown: Vec<String> = messages
            .iter()
            .map(|m| {
                format!(
                    "{{Code:{} Value:{}}}",
                    m.code.as_deref().unwrap_or_default(),
                    m.value.as_deref().unwrap_or_default()
                )
            })
            .collect();
        format!("[{}]", shown.join(" "))
    })
}

impl Provider for CloudWatchProvider {
    fn kind(&self) -> &'static str {
        "cloudWatch"
    }

    fn measure<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::CloudWatch(spec) = &metric.provider else {
                return error_measurement("not a cloudWatch metric", started);
            };
            let answer = self.query(spec).await;
            let valued = answer
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|a| value_of(a).map(|v| (v, messages_metadata(&a.messages))));
            match valued {
                Ok(((value, text), messages)) => {
                    if let Some(messages) = &messages {
                        tracing::warn!(metric = %metric.name, %messages, "cloudWatch returned messages");
                    }
                    let mut m = measured(&self.evaluator, metric, &value, text, started).await;
                    m.metadata
                        .extend(messages.map(|v| ("messages".to_owned(), v)));
                    m
                }
                Err(message) => query_failed(self.kind(), metric, started, message),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(value: Value) -> Vec<CloudWatchMetricDataQuery> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn queries_are_sent_field_by_field() {
        let sent = data_queries(&queries(json!([
            {"id": "rate", "expression": "errors / requests", "label": "Error rate"},
            {"id": "errors", "returnData": false, "metricStat": {
                "metric": {"namespace": "app", "metricName": "errors",
                           "dimensions": [{"name": "Service", "value": "api"}]},
                "period": 300, "stat": "Sum", "unit": "Count"}},
            {"id": "p", "period": "60", "metricStat": {"metric": {"namespace": "n"}, "stat": "p99"}},
        ])))
        .unwrap();
        assert_eq!(
            Value::Array(sent),
            json!([
                {"Id": "rate", "Expression": "errors / requests", "Label": "Error rate"},
                {"Id": "errors", "ReturnData": false, "MetricStat": {
                    "Metric": {"Namespace": "app", "MetricName": "errors",
                               "Dimensions": [{"Name": "Service", "Value": "api"}]},
                    "Period": 300, "Stat": "Sum", "Unit": "Count"}},
                {"Id": "p", "Period": 60, "MetricStat": {"Metric": {"Namespace": "n"}, "Stat": "p99"}},
            ])
        );
        assert!(
            data_queries(&[])
                .unwrap_err()
                .contains("metricDataQueries is empty")
        );
        assert!(
            data_queries(&queries(json!([{"expression": "1"}])))
                .unwrap_err()
                .contains("metricDataQueries[0]: id is not set")
        );
        assert!(
            data_queries(&queries(json!([{"id": "a", "period": "five"}])))
                .unwrap_err()
                .contains("period")
        );
        let start: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let end: Timestamp = "2024-05-01T12:05:00Z".parse().unwrap();
        let body: Value =
            serde_json::from_str(&request_body(&[json!({"Id": "a"})], start, end, Some("t")))
                .unwrap();
        assert_eq!(
            body,
            json!({"MetricDataQueries": [{"Id": "a"}], "StartTime": 1714564800, "EndTime": 1714565100, "NextToken": "t"})
        );
    }

    fn answer(pages: &[Value]) -> Answer {
        let mut answer = Answer::default();
        for page in pages {
            answer.add(parse_page(reqwest::StatusCode::OK, page.to_string().as_bytes()).unwrap());
        }
        answer
    }

    #[test]
    fn results_keep_the_sdks_field_names() {
        let a = answer(&[json!({
            "MetricDataResults": [{
                "Id": "rate", "Label": "Error rate", "StatusCode": "Complete",
                "Timestamps": [1714565100, 1714564800], "Values": [0.5, "NaN"],
                "Messages": [{"Code": "ArithmeticError", "Value": "divide by zero"}],
            }],
            "Messages": [{"Code": "MaxMetricsExceeded", "Value": "too many"}],
        })]);
        let (value, text) = value_of(&a).unwrap();
        assert_eq!(text, "[[0.5 NaN]]");
        let MetricValue::Array(results) = &value else {
            panic!("{value:?}")
        };
        let MetricValue::Map(first) = &results[0] else {
            panic!()
        };
        assert_eq!(first["Id"], MetricValue::String("rate".into()));
        assert_eq!(first["StatusCode"], MetricValue::String("Complete".into()));
        assert_eq!(
            first["Timestamps"],
            MetricValue::Array(vec![
                MetricValue::String("2024-05-01T12:05:00Z".into()),
                MetricValue::String("2024-05-01T12:00:00Z".into())
            ])
        );
        let MetricValue::Array(values) = &first["Values"] else {
            panic!()
        };
        assert_eq!(values[0], MetricValue::Float(0.5));
        assert!(matches!(values[1], MetricValue::Float(f) if f.is_nan()));
        assert_eq!(
            messages_metadata(&a.messages).as_deref(),
            Some("[{Code:MaxMetricsExceeded Value:too many}]")
        );
    }

    #[test]
    fn pages_are_merged_by_id() {
        let a = answer(&[
            json!({"MetricDataResults": [
                {"Id": "a", "StatusCode": "PartialData", "Timestamps": [3, 2], "Values": [3, 2]},
                {"Id": "b", "StatusCode": "PartialData", "Timestamps": [3], "Values": [30]},
            ], "NextToken": "next"}),
            json!({"MetricDataResults": [
                {"Id": "a", "StatusCode": "Complete", "Timestamps": [1], "Values": [1]},
                {"Id": "b", "StatusCode": "Complete", "Timestamps": [], "Values": []},
            ]}),
        ]);
        let (_, text) = value_of(&a).unwrap();
        assert_eq!(text, "[[3 2 1] [30]]");
        assert_eq!(a.results[0].status_code.as_deref(), Some("Complete"));
    }

    #[test]
    fn no_data_errors_and_refusals() {
        let empty = answer(&[json!({"MetricDataResults": [
            {"Id": "rate", "StatusCode": "Complete", "Timestamps": [], "Values": []}]})]);
        assert_eq!(
            value_of(&empty).unwrap_err(),
            "cloudWatch returned no datapoints for rate"
        );
        assert!(
            value_of(&answer(&[json!({"MetricDataResults": []})]))
                .unwrap_err()
                .contains("no results")
        );
        let forbidden = answer(&[json!({"MetricDataResults": [
            {"Id": "a", "StatusCode": "Complete", "Values": [1], "Timestamps": [1]},
            {"Id": "b", "StatusCode": "Forbidden", "Values": [], "Timestamps": [],
             "Messages": [{"Code": "Forbidden", "Value": "no access to account 1"}]}]})]);
        assert_eq!(
            value_of(&forbidden).unwrap_err(),
            "cloudWatch answered Forbidden for b (Forbidden: no access to account 1)"
        );
        let refused = parse_page(
            reqwest::StatusCode::FORBIDDEN,
            br#"{"__type":"com.amazon.coral.service#SignatureDoesNotMatch","message":"The request signature we calculated does not match"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(
            refused,
            "cloudWatch GetMetricData answered 403 Forbidden: SignatureDoesNotMatch: The request signature we calculated does not match"
        );
        let throttled = parse_page(
            reqwest::StatusCode::BAD_REQUEST,
            br#"{"__type":"Throttling","Message":"Rate exceeded"}"#,
        )
        .err()
        .unwrap();
        assert!(
            throttled.ends_with("Throttling: Rate exceeded"),
            "{throttled}"
        );
        let html = parse_page(
            reqwest::StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
        )
        .err()
        .unwrap();
        assert!(
            html.ends_with("502 Bad Gateway: <html>bad gateway</html>"),
            "{html}"
        );
        assert!(
            parse_page(reqwest::StatusCode::OK, b"not json")
                .err()
                .unwrap()
                .contains("not a GetMetricData result")
        );
    }
}
