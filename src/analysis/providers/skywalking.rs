//! The `skywalking` provider: a GraphQL query to Apache SkyWalking's OAP server, whose `data`
//! is `result`.
//!
//! As in Argo Rollouts: `POST <address>/graphql` with the JSON body `{"query": <query>,
//! "variables": {"duration": {"start", "end", "step": "MINUTE"}}}` (headers `Content-Type` and
//! `Accept: application/json; charset=utf-8`, as Argo's GraphQL client sends them), where `end`
//! is now and `start` now minus the metric's `skywalking.interval`, both written as SkyWalking
//! reads a MINUTE step (`2006-01-02 1504`) in the controller's local time zone (SkyWalking reads
//! them in its own; both are UTC in most clusters). The query declares the variable
//! (`query q($duration: Duration!) { ... }`). The answer's `data` is `result` as it is, so a
//! query aliasing a field `service_apdex` is read as `result.service_apdex.values.values`; the
//! measurement's value is that `data` as JSON. An answer with GraphQL `errors`, without
//! `data` (or `data: null`), or not JSON is an Error, as is any failure to ask; `interval` is
//! required (Argo fails without it). SkyWalking has no credentials in Argo; as with Argo's Go
//! client, a user and password written in the address are sent as basic authentication (and
//! never shown in a message).
//!
//! Bounds: the request waits at most 30 s (Argo's query timeout), never more than
//! `limits.max_timeout`, and reads at most `limits.max_response_bytes`.
//!
//! Sluice differs where Argo trusts the server: an answer outside 2xx is an Error even when its
//! body parses (Argo's client only refuses one it cannot decode), and every GraphQL error is
//! reported, not only the first. The address may end with `/` or carry a path prefix.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_analysis::{condition::MetricValue, limits::AnalysisLimits, plan::error_measurement};
use sluice_api::{Measurement, Metric, MetricProvider, SkyWalkingMetric};

use crate::analysis::evaluator::Evaluator;

use super::{
    Context, HttpClients, Provider, ProviderError, RunRef, body, exchange, measured, query_failed,
};

/// Timeout of a query (Argo's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The step of the `duration` variable (Argo always asks for minutes).
pub const STEP: &str = "MINUTE";
/// How SkyWalking reads a time at a MINUTE step.
pub const MINUTE_FORMAT: &str = "%Y-%m-%d %H%M";
/// What GraphQL clients send and accept (Argo's client's headers).
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Queries SkyWalking OAP servers; the HTTP client is shared by every measurement.
pub struct SkyWalkingProvider {
    http: HttpClients,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

/// The `duration` variable of a query over the `interval` that ends at `now`.
pub fn duration_variable(now: &Zoned, interval: Duration) -> Result<Value, String> {
    let start = SignedDuration::try_from(interval)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .ok_or_else(|| format!("interval {}s reaches before any time", interval.as_secs()))?;
    Ok(json!({
        "start": start.strftime(MINUTE_FORMAT).to_string(),
        "end": now.strftime(MINUTE_FORMAT).to_string(),
        "step": STEP,
    }))
}

/// The body of a GraphQL request for `query` with its `duration`.
pub fn request_body(query: &str, duration: Value) -> Value {
    json!({"query": query, "variables": {"duration": duration}})
}

/// A GraphQL answer: its `data` and `errors`.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

/// One GraphQL error.
#[derive(Deserialize)]
struct GraphQlError {
    #[serde(default)]
    message: String,
}

/// The result of a query from SkyWalking's answer: its `data`, as the conditions see it and as
/// JSON text. Errors, no data, an answer outside 2xx or not JSON are the message of an Error.
pub fn parse_answer(
    status: reqwest::StatusCode,
    answer: &[u8],
) -> Result<(MetricValue, String), String> {
    let parsed: Answer = serde_json::from_slice(answer).map_err(|e| {
        if status.is_success() {
            format!("skywalking answered something that is not a GraphQL response: {e}")
        } else {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            format!("skywalking answered {status}: {}", text.trim())
        }
    })?;
    if !parsed.errors.is_empty() {
        let messages: Vec<&str> = parsed
            .errors
            .iter()
            .take(5)
            .map(|e| e.message.as_str())
            .collect();
        let more = parsed.errors.len().saturating_sub(messages.len());
        let mut message = format!("graphql: {}", messages.join("; "));
        if more > 0 {
            message.push_str(&format!(" (and {more} more errors)"));
        }
        if !status.is_success() {
            message = format!("skywalking answered {status}: {message}");
        }
        return Err(message);
    }
    if !status.is_success() {
        return Err(format!("skywalking answered {status}"));
    }
    if parsed.data.is_null() {
        return Err("no results returned from SkyWalking query".into());
    }
    Ok((MetricValue::from(&parsed.data), parsed.data.to_string()))
}

/// The GraphQL endpoint under an OAP address (`http://oap:12800` → `http://oap:12800/graphql`).
fn graphql_url(address: &str) -> Result<reqwest::Url, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("skywalking address is not set".into());
    }
    let mut url = reqwest::Url::parse(address)
        .map_err(|e| format!("skywalking address {address:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "skywalking address {address:?} must be an http or https URL with a host"
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push("graphql");
    }
    Ok(url)
}

/// A URL as a message shows it: without user and password.
fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

impl SkyWalkingProvider {
    /// Builds the HTTP client.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        Ok(Self {
            http: HttpClients::new(&context.limits)?,
            evaluator: context.evaluator.clone(),
            limits: context.limits.clone(),
        })
    }

    /// Runs the metric's query and returns its `data` as a condition sees it, and as text.
    async fn query(&self, spec: &SkyWalkingMetric) -> Result<(MetricValue, String), String> {
        let url = graphql_url(spec.address.as_deref().unwrap_or_default())?;
        let query = spec
            .query
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .ok_or("skywalking query is empty")?;
        let interval = spec
            .interval
            .as_ref()
            .ok_or("skywalking interval is not set: it gives the duration the query reads")?;
        let duration = duration_variable(&Zoned::now(), interval.as_std())?;
        let body = serde_json::to_vec(&request_body(query, duration))
            .map_err(|e| format!("encoding the query: {e}"))?;
        let timeout = body::capped_timeout(None, DEFAULT_TIMEOUT, self.limits.max_timeout);
        let what = format!("skywalking at {}", shown(&url));
        let request = self
            .http
            .get(None)
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, JSON_UTF8)
            .header(reqwest::header::ACCEPT, JSON_UTF8)
            .body(body);
        let (status, answer) =
            exchange(request, timeout, self.limits.max_response_bytes, &what).await?;
        parse_answer(status, &answer)
    }
}

impl Provider for SkyWalkingProvider {
    fn kind(&self) -> &'static str {
        "skywalking"
    }

    fn measure<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::SkyWalking(spec) = &metric.provider else {
                return error_measurement("not a skywalking metric", started);
            };
            match self.query(spec).await {
                Ok((value, text)) => measured(&self.evaluator, metric, &value, text, started).await,
                Err(message) => query_failed(self.kind(), metric, started, message),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn the_duration_covers_the_interval_in_minutes() {
        let now: Zoned = "2025-03-01T12:07:45+00:00[UTC]".parse().unwrap();
        assert_eq!(
            duration_variable(&now, Duration::from_secs(180)).unwrap(),
            json!({"start": "2025-03-01 1204", "end": "2025-03-01 1207", "step": "MINUTE"})
        );
        // Across midnight, in the zone given.
        let now: Zoned = "2025-03-01T00:30:00+01:00[Europe/Paris]".parse().unwrap();
        assert_eq!(
            duration_variable(&now, Duration::from_secs(3600)).unwrap()["start"],
            "2025-02-28 2330"
        );
        assert_eq!(
            request_body("query q { a }", json!({"step": "MINUTE"})),
            json!({"query": "query q { a }", "variables": {"duration": {"step": "MINUTE"}}})
        );
    }

    #[test]
    fn data_is_the_result() {
        let (value, text) = parse_answer(
            StatusCode::OK,
            br#"{"data": {"service_apdex": {"label": null, "values": {"values": [{"value": 9950}]}}}}"#,
        )
        .unwrap();
        assert_eq!(
            text,
            r#"{"service_apdex":{"label":null,"values":{"values":[{"value":9950}]}}}"#
        );
        assert_eq!(
            value,
            MetricValue::from(
                &json!({"service_apdex": {"label": null, "values": {"values": [{"value": 9950}]}}})
            )
        );
    }

    #[test]
    fn errors_no_data_and_refusals_are_errors() {
        let e = parse_answer(
            StatusCode::OK,
            br#"{"data": null, "errors": [{"message": "Validation error of type FieldUndefined"}, {"message": "second"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "graphql: Validation error of type FieldUndefined; second"
        );
        let e = parse_answer(StatusCode::OK, br#"{"data": null}"#).unwrap_err();
        assert_eq!(e, "no results returned from SkyWalking query");
        assert!(parse_answer(StatusCode::OK, br#"{}"#).is_err());
        let e = parse_answer(StatusCode::OK, b"<html>").unwrap_err();
        assert!(e.contains("not a GraphQL response"), "{e}");
        let e = parse_answer(StatusCode::BAD_GATEWAY, b"upstream down").unwrap_err();
        assert_eq!(e, "skywalking answered 502 Bad Gateway: upstream down");
        let e =
            parse_answer(StatusCode::INTERNAL_SERVER_ERROR, br#"{"data": {"a": 1}}"#).unwrap_err();
        assert!(e.contains("500"), "{e}");
        let many = json!({"errors": (0..8).map(|i| json!({"message": format!("e{i}")})).collect::<Vec<_>>()});
        let e = parse_answer(StatusCode::OK, many.to_string().as_bytes()).unwrap_err();
        assert!(e.ends_with("(and 3 more errors)"), "{e}");
    }

    #[test]
    fn the_endpoint_is_graphql_under_the_address() {
        let url = |a: &str| graphql_url(a).map(|u| u.to_string());
        assert_eq!(url("http://oap:12800").unwrap(), "http://oap:12800/graphql");
        assert_eq!(
            url("http://oap:12800/").unwrap(),
            "http://oap:12800/graphql"
        );
        assert_eq!(url("https://oap/sw/").unwrap(), "https://oap/sw/graphql");
        assert!(url("").is_err());
        assert!(url("oap:12800").is_err());
        assert!(!shown(&graphql_url("http://u:pw@oap").unwrap()).contains("pw"));
    }
}
