//! The `wavefront` provider: a query through Wavefront's chart API, as Argo Rollouts v1.9.1
//! (through its Go client) asks it.
//!
//! - `GET https://<address>/api/v2/chart/api` with `q` (the query), `s` and `e` (both the
//!   measurement's start, epoch milliseconds, whole seconds), `g=s`, `p=1`, `i=true` (series
//!   whose points lie outside that instant are returned), and `autoEvents`, `listmode`, `strict`
//!   and `includeObsoleteMetrics` all `false`; headers `Authorization: Bearer <token>` and
//!   `Accept: application/json`.
//! - The token is the value stored under the metric's `address` in the Secret
//!   `wavefront-api-tokens` of the controller's namespace; no such key is an Error.
//! - Each series gives the value of its point closest to the measurement's start (the first
//!   of equally close ones). One series is a number `result`; several are an array, in
//!   Wavefront's order. No series is an Error ("No TimeSeries found in response from
//!   Wavefront"). `value` is written with two decimals (`0.95`, `[0.95,0.50]`), and the
//!   measurement's metadata keeps, as Argo's does, the `timestamps` of the points used, their
//!   `drift` from the start in seconds, and Wavefront's `warnings`.
//! - A status outside 200–204 is an Error. The request waits 30 s (Argo's client sets none),
//!   capped at `limits.max_timeout`; the answer is read up to `limits.max_response_bytes`.
//!
//! Sluice differs where Argo's client would invent a value: a series without points, or whose
//! closest point is `null`, is an Error (Argo reads `0`). It does not retry a `406`. An address
//! may also be written with its scheme (`http://wavefront-proxy.monitoring:8080`, a proxy in the
//! cluster): its token is then the one stored under the address's host (a Secret key cannot
//! hold `:` or `/`). Error messages show Wavefront's `message` with the token redacted, never a
//! raw body.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use sluice_analysis::{condition::MetricValue, limits::AnalysisLimits, plan::error_measurement};
use sluice_api::{Measurement, Metric, MetricProvider, WavefrontMetric};

use crate::analysis::evaluator::Evaluator;

use super::{Context, Provider, ProviderError, RunRef, body, exchange, measured, read_secret};

/// The Secret holding one token per Wavefront address (Argo's name).
pub const SECRET_NAME: &str = "wavefront-api-tokens";
/// How long a query may take (Argo's client sets no timeout; Sluice's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Queries Wavefront; the HTTP client is shared by every measurement.
pub struct WavefrontProvider {
    http: super::HttpClients,
    client: Option<kube::Client>,
    namespace: String,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

/// A metric's address: where queries go, and the Secret keys its token may be stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Address {
    url: reqwest::Url,
    keys: Vec<String>,
}

/// Reads an address as Argo writes it (`example.wavefront.com`, https implied), or with a
/// scheme (a Sluice extension); the token keys are the address as written, then its host.
fn parse_address(written: &str) -> Result<Address, String> {
    let written = written.trim();
    if written.is_empty() {
        return Err("wavefront address is empty".into());
    }
    let full = if written.contains("://") {
        written.to_owned()
    } else {
        format!("https://{written}")
    };
    let mut url = reqwest::Url::parse(&full)
        .map_err(|e| format!("wavefront address {written:?} is not valid: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "wavefront address {written:?} must be a host name or an http or https URL"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("wavefront address {written:?} has no host"))?
        .to_owned();
    url.set_path("/api/v2/chart/api");
    url.set_query(None);
    url.set_fragment(None);
    let mut keys = vec![written.to_owned()];
    if host != written {
        keys.push(host);
    }
    Ok(Address { url, keys })
}

/// The chart-API query of `query` at `start_ms`, with the parameters Argo's client sends, in
/// the order its encoder writes them.
fn query_url(address: &Address, query: &str, start_ms: i64) -> reqwest::Url {
    let mut url = address.url.clone();
    let start = start_ms.to_string();
    url.query_pairs_mut()
        .append_pair("autoEvents", "false")
        .append_pair("e", &start)
        .append_pair("g", "s")
        .append_pair("i", "true")
        .append_pair("includeObsoleteMetrics", "false")
        .append_pair("listmode", "false")
        .append_pair("p", "1")
        .append_pair("q", query)
        .append_pair("s", &start)
        .append_pair("strict", "false");
    url
}

/// `text` with every secret replaced by `***`.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |t, s| t.replace(s, "***"))
}

/// What Wavefront's answer gives the measurement: the value and its text, and the metadata.
#[derive(Debug, PartialEq)]
struct Reading {
    value: MetricValue,
    text: String,
    metadata: BTreeMap<String, String>,
}

/// The point of `points` closest to `start` (epoch seconds): its timestamp, value and drift.
fn closest(points: &[Value], start: f64) -> Result<(f64, f64, f64), String> {
    let mut best: Option<(f64, &Value, f64)> = None;
    for point in points {
        let pair = point.as_array().map(Vec::as_slice);
        let Some([time, value]) = pair else {
            return Err(format!(
                "wavefront answered a point that is not [time, value]: {point}"
            ));
        };
        let time = time.as_f64().ok_or_else(|| {
            format!("wavefront answered a point time that is not a number: {time}")
        })?;
        let drift = time - start;
        if best.is_none_or(|(_, _, d)| drift.abs() < d.abs()) {
            best = Some((time, value, drift));
        }
    }
    let (time, value, drift) = best.ok_or("wavefront answered a series without points")?;
    let value = value.as_f64().ok_or_else(|| {
        format!("wavefront answered no value for the point closest to the measurement ({value})")
    })?;
    Ok((time, value, drift))
}

/// The result of a chart-API answer, the series' closest points to `start` (epoch seconds).
fn parse_answer(
    status: reqwest::StatusCode,
    answer: &[u8],
    start: i64,
    secrets: &[&str],
) -> Result<Reading, (String, BTreeMap<String, String>)> {
    let parsed = serde_json::from_slice::<Value>(answer);
    if !(200..=204).contains(&status.as_u16()) {
        let detail = parsed
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.pointer("/status/message"))
                    .and_then(Value::as_str)
                    .map(|m| body::truncate(redact(m.trim(), secrets), 300))
            })
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Err((format!("server returned {status}{detail}"), BTreeMap::new()));
    }
    let parsed = parsed.map_err(|e| {
        (
            format!("wavefront answered JSON that is not a query result: {e}"),
            BTreeMap::new(),
        )
    })?;
    let mut metadata = BTreeMap::new();
    if let Some(warnings) = parsed
        .get("warnings")
        .and_then(Value::as_str)
        .filter(|w| !w.is_empty())
    {
        metadata.insert("warnings".to_owned(), redact(warnings, secrets));
    }
    let series = match parsed.get("timeseries") {
        Some(Value::Array(series)) => series.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => {
            return Err((
                "wavefront answered timeseries that is not a list".into(),
                metadata,
            ));
        }
    };
    if series.is_empty() {
        return Err((
            "No TimeSeries found in response from Wavefront".into(),
            metadata,
        ));
    }
    let mut points = Vec::with_capacity(series.len());
    for s in series {
        let data = s
            .get("data")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let point = closest(data, start as f64).map_err(|e| (e, metadata.clone()))?;
        points.push(point);
    }
    let list = |f: &dyn Fn(&(f64, f64, f64)) -> String| {
        let items: Vec<String> = points.iter().map(f).collect();
        if let [one] = items.as_slice() {
            one.clone()
        } else {
            format!("[{}]", items.join(","))
        }
    };
    metadata.insert("timestamps".to_owned(), list(&|p| (p.0 as i64).to_string()));
    metadata.insert("drift".to_owned(), list(&|p| (p.2 as i64).to_string()));
    let text = list(&|p| format!("{:.2}", p.1));
    let value = match points.as_slice() {
        [one] => MetricValue::Float(one.1),
        _ => MetricValue::from(points.iter().map(|p| p.1).collect::<Vec<_>>()),
    };
    Ok(Reading {
        value,
        text,
        metadata,
    })
}

impl WavefrontProvider {
    /// Builds the HTTP client; tokens are read with the context's client, in its namespace.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        Ok(Self {
            http: super::HttpClients::new(&context.limits)?,
            client: context.client.clone(),
            namespace: context.namespace.clone(),
            evaluator: context.evaluator.clone(),
            limits: context.limits.clone(),
        })
    }

    /// Runs the metric's query at `started` and returns what the measurement records.
    async fn query(
        &self,
        spec: &WavefrontMetric,
        started: Timestamp,
    ) -> Result<Reading, (String, BTreeMap<String, String>)> {
        let fail = |message: String| (message, BTreeMap::new());
        let query = spec
            .query
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| fail("wavefront query is empty".into()))?;
        let address = parse_address(spec.address.as_deref().unwrap_or_default()).map_err(fail)?;
        let tokens = read_secret(self.client.as_ref(), &self.namespace, SECRET_NAME)
            .await
            .map_err(|e| fail(format!("wavefront token: {e}")))?;
        let token = address
            .keys
            .iter()
            .find_map(|k| tokens.get(k))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                fail(format!(
                    "wavefront API token not found: Secret {}/{SECRET_NAME} has no key {:?}",
                    self.namespace, address.keys[0]
                ))
            })?;
        let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| fail("the wavefront token is not a valid header value".into()))?;
        bearer.set_sensitive(true);
        let start = started.as_second();
        let url = query_url(&address, query, start.saturating_mul(1000));
        let request = self
            .http
            .get(None)
            .get(url)
            .header(reqwest::header::AUTHORIZATION, bearer)
            .header(reqwest::header::ACCEPT, "application/json");
        let timeout = body::capped_timeout(None, DEFAULT_TIMEOUT, self.limits.max_timeout);
        tracing::debug!(address = %address.url, "querying wavefront");
        let what = format!("wavefront at {}", address.url);
        let secrets = [token.as_str()];
        let (status, answer) = exchange(request, timeout, self.limits.max_response_bytes, &what)
            .await
            .map_err(|e| fail(redact(&e, &secrets)))?;
        parse_answer(status, &answer, start, &secrets)
    }
}

impl Provider for WavefrontProvider {
    fn kind(&self) -> &'static str {
        "wavefront"
    }

    fn measure<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::Wavefront(spec) = &metric.provider else {
                return error_measurement("not a wavefront metric", started);
            };
            match self.query(spec, started).await {
                Ok(reading) => Measurement {
                    metadata: reading.metadata,
                    ..measured(
                        &self.evaluator,
                        metric,
                        &reading.value,
                        reading.text,
                        started,
                    )
                    .await
                },
                Err((message, metadata)) => {
                    tracing::debug!(metric = %metric.name, %message, "wavefront query failed");
                    Measurement {
                        started_at: Some(Time(started)),
                        metadata,
                        ..error_measurement(message, Timestamp::now())
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OK: reqwest::StatusCode = reqwest::StatusCode::OK;

    fn parse(body: Value, start: i64) -> Result<Reading, (String, BTreeMap<String, String>)> {
        parse_answer(OK, body.to_string().as_bytes(), start, &[])
    }

    #[test]
    fn addresses_are_hosts_as_argo_writes_them_or_urls() {
        let argo = parse_address("example.wavefront.com").unwrap();
        assert_eq!(
            argo.url.as_str(),
            "https://example.wavefront.com/api/v2/chart/api"
        );
        assert_eq!(argo.keys, ["example.wavefront.com"]);
        let proxy = parse_address("http://127.0.0.1:8080").unwrap();
        assert_eq!(proxy.url.as_str(), "http://127.0.0.1:8080/api/v2/chart/api");
        assert_eq!(proxy.keys, ["http://127.0.0.1:8080", "127.0.0.1"]);
        assert!(parse_address("").is_err());
        assert!(parse_address("ftp://x").is_err());
    }

    #[test]
    fn the_query_has_argos_parameters() {
        let address = parse_address("example.wavefront.com").unwrap();
        let url = query_url(&address, "ts(cpu)", 1_700_000_000_000);
        assert_eq!(
            url.query(),
            Some(
                "autoEvents=false&e=1700000000000&g=s&i=true&includeObsoleteMetrics=false&listmode=false&p=1&q=ts%28cpu%29&s=1700000000000&strict=false"
            )
        );
    }

    #[test]
    fn each_series_gives_its_point_closest_to_the_start() {
        let one = parse(
            json!({"timeseries": [{"label": "a", "data": [[90, 0.5], [101, 0.951], [120, 0.1]]}]}),
            100,
        )
        .unwrap();
        assert_eq!(one.value, MetricValue::Float(0.951));
        assert_eq!(one.text, "0.95");
        assert_eq!(one.metadata["timestamps"], "101");
        assert_eq!(one.metadata["drift"], "1");
        // Equally close: the first wins.
        let tie = parse(
            json!({"timeseries": [{"data": [[99, 1.0], [101, 2.0]]}]}),
            100,
        )
        .unwrap();
        assert_eq!(tie.value, MetricValue::Float(1.0));
        let two = parse(
            json!({"timeseries": [{"data": [[100, 1.0]]}, {"data": [[95, 2.5]]}], "warnings": "slow"}),
            100,
        )
        .unwrap();
        assert_eq!(two.value, MetricValue::from(vec![1.0, 2.5]));
        assert_eq!(two.text, "[1.00,2.50]");
        assert_eq!(two.metadata["drift"], "[0,-5]");
        assert_eq!(two.metadata["warnings"], "slow");
    }

    #[test]
    fn no_series_no_points_and_null_values_are_errors() {
        let (e, metadata) = parse(
            json!({"timeseries": [], "warnings": "No query provided"}),
            1,
        )
        .unwrap_err();
        assert_eq!(e, "No TimeSeries found in response from Wavefront");
        assert_eq!(metadata["warnings"], "No query provided");
        assert!(parse(json!({}), 1).is_err());
        assert!(parse(json!({"timeseries": [{"data": []}]}), 1).is_err());
        assert!(parse(json!({"timeseries": [{"data": [[1, null]]}]}), 1).is_err());
        assert!(parse(json!({"timeseries": [{"data": [[1]]}]}), 1).is_err());
        assert!(parse_answer(OK, b"<html>", 1, &[]).is_err());
    }

    #[test]
    fn error_statuses_never_show_the_token() {
        let (e, _) = parse_answer(
            reqwest::StatusCode::UNAUTHORIZED,
            br#"{"status": {"result": "ERROR", "message": "token wf-s3cr3t is not valid", "code": 401}}"#,
            1,
            &["wf-s3cr3t"],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "server returned 401 Unauthorized: token *** is not valid"
        );
        let (e, _) = parse_answer(
            reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            b"wf-s3cr3t",
            1,
            &["wf-s3cr3t"],
        )
        .unwrap_err();
        assert_eq!(e, "server returned 500 Internal Server Error");
        assert!(parse_answer(reqwest::StatusCode::NO_CONTENT, b"{}", 1, &[]).is_err());
    }
}
