//! The `prometheus` provider: an instant query (`GET <address>/api/v1/query`), its answer read
//! up to `limits.max_response_bytes` (a larger one is an Error, never held whole) and parsed
//! here.
//!
//! As in Argo Rollouts, an instant vector becomes an array `result` (one number per series, in
//! Prometheus' order; an empty vector is `[]`, so `len(result) == 0` tests for "no data"), and
//! a scalar becomes a number. NaN stays NaN (`isNaN(result[0])` tests for it; every comparison
//! with NaN is false). A range vector or a string is an Error, as is any failure to ask.
//!
//! The address comes from the metric or, as in Argo, from `ARGO_ROLLOUTS_PROMETHEUS_ADDRESS`.
//! Basic authentication is written in the address (`https://user:password@host`), a bearer
//! token as an `Authorization` header, or fetched with `authentication.oauth2` (client
//! credentials). `timeout` (seconds, default 30, at most `limits.max_timeout`) bounds both
//! Prometheus' evaluation and the whole request.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use sluice_analysis::{
    condition::{MetricValue, format_float},
    limits::AnalysisLimits,
    plan::error_measurement,
};
use sluice_api::{
    Measurement, Metric, MetricProvider, PrometheusMetric, vocab::RESOLVED_QUERY_KEY,
};

use crate::analysis::evaluator::Evaluator;

use super::{
    Provider, ProviderError, RunRef, TokenBounds, body, error_chain, measured, oauth2_token,
};

/// Environment variable giving the address when a metric has none (Argo's name).
pub const ADDRESS_ENV: &str = "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS";
/// Timeout when the metric gives none (Argo's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Queries Prometheus servers; the HTTP clients are shared by every measurement.
pub struct PrometheusProvider {
    http: super::HttpClients,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

impl PrometheusProvider {
    /// Builds the HTTP clients (one verifying certificates, one for `insecure: true`).
    pub fn new(limits: &AnalysisLimits, evaluator: Arc<Evaluator>) -> Result<Self, ProviderError> {
        Ok(Self {
            http: super::HttpClients::new(limits)?,
            evaluator,
            limits: limits.clone(),
        })
    }

    /// Runs the metric's query and returns its result as a condition sees it, and as text.
    async fn query(&self, spec: &PrometheusMetric) -> Result<(MetricValue, String), String> {
        let address = match spec.address.as_deref().filter(|a| !a.trim().is_empty()) {
            Some(address) => address.trim().to_owned(),
            None => std::env::var(ADDRESS_ENV)
                .ok()
                .filter(|a| !a.trim().is_empty())
                .ok_or_else(|| {
                    format!("prometheus address is not configured (set address or {ADDRESS_ENV})")
                })?,
        };
        let parsed = reqwest::Url::parse(&address)
            .map_err(|e| format!("prometheus address {address:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "prometheus address {address:?} must be an http or https URL with a host"
            ));
        }
        let query = spec
            .query
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .ok_or("prometheus query is empty")?;
        if spec
            .authentication
            .as_ref()
            .is_some_and(|a| a.sigv4.is_some())
        {
            return Err("sigv4 authentication is not supported by Sluice".to_owned());
        }
        let timeout = body::capped_timeout(spec.timeout, DEFAULT_TIMEOUT, self.limits.max_timeout);
        let mut url = query_url(&parsed);
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("timeout", &format!("{}ms", timeout.as_millis()));
        let http = self.http.get(spec.insecure);
        let mut request = http.get(url);
        for header in &spec.headers {
            let name = reqwest::header::HeaderName::from_bytes(header.key.as_bytes())
                .map_err(|e| format!("header name {:?}: {e}", header.key))?;
            let value = reqwest::header::HeaderValue::from_str(&header.value)
                .map_err(|e| format!("header {:?} value: {e}", header.key))?;
            request = request.header(name, value);
        }
        let max_bytes = self.limits.max_response_bytes;
        let work = async move {
            if let Some(oauth2) = spec.authentication.as_ref().and_then(|a| a.oauth2.as_ref()) {
                let bounds = TokenBounds {
                    max_bytes,
                    allowed_hosts: None,
                };
                let token = oauth2_token(http, oauth2, bounds).await?;
                let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| format!("oauth2 token: {e}"))?;
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            let response = request.send().await.map_err(|e| error_chain(&e))?;
            let status = response.status();
            let answer = body::read_bounded(response, max_bytes).await?;
            Ok::<_, String>((status, answer))
        };
        let (status, answer) = tokio::time::timeout(timeout, work).await.map_err(|_| {
            format!(
                "no answer from {} within {}",
                without_credentials(&parsed),
                body::show_duration(timeout)
            )
        })??;
        parse_answer(status, &answer)
    }
}

/// An address as a message may show it: without the user and password written in it.
fn without_credentials(address: &reqwest::Url) -> String {
    let mut shown = address.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// The URL of the instant-query API under a Prometheus address (which may have a path prefix,
/// `http://host/prometheus`), without the credentials' effect on anything but the request.
fn query_url(address: &reqwest::Url) -> reqwest::Url {
    let mut url = address.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/api/v1/query"));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The body of an answer of Prometheus' HTTP API.
#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// The result of an instant query, by its `resultType`.
#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar(Sample),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

/// One series of an instant vector: its sample (`value`), or a native histogram.
#[derive(Deserialize)]
struct Series {
    value: Option<Sample>,
}

/// `[<unix time>, "<value>"]`.
#[derive(Deserialize)]
struct Sample(serde::de::IgnoredAny, String);

impl Sample {
    fn number(&self) -> Result<f64, String> {
        self.1.parse().map_err(|_| {
            format!(
                "prometheus answered a sample that is not a number: {:?}",
                self.1
            )
        })
    }
}

/// The result of a query from Prometheus' answer: a vector is an array of numbers, a scalar a
/// number; an error answer carries Prometheus' reason (`bad_data: parse error ...`).
fn parse_answer(
    status: reqwest::StatusCode,
    answer: &[u8],
) -> Result<(MetricValue, String), String> {
    let parsed: Answer = serde_json::from_slice(answer).map_err(|e| {
        if status.is_success() {
            format!("prometheus answered JSON that is not a query result: {e}")
        } else {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            format!("prometheus answered {status}: {}", text.trim())
        }
    })?;
    if parsed.status != "success" {
        return Err(format!(
            "{}: {}",
            parsed.error_type.as_deref().unwrap_or("error"),
            parsed.error.as_deref().unwrap_or("no reason given")
        ));
    }
    match parsed.data {
        Some(Data::Vector(series)) => {
            let values = series
                .iter()
                .map(|s| {
                    s.value.as_ref().map_or_else(
                        || Err("native histogram samples are not supported".to_owned()),
                        Sample::number,
                    )
                })
                .collect::<Result<Vec<f64>, String>>()?;
            let text = format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| format_float(*v))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            Ok((MetricValue::from(values), text))
        }
        Some(Data::Scalar(sample)) => {
            let value = sample.number()?;
            Ok((MetricValue::Float(value), format_float(value)))
        }
        Some(Data::Matrix(_)) => Err(
            "Prometheus metric type not supported: the query returned a range vector; use an instant query"
                .to_owned(),
        ),
        Some(Data::String(_)) => {
            Err("Prometheus metric type not supported: the query returned a string".to_owned())
        }
        None => Err("prometheus answered success without data".to_owned()),
    }
}

impl Provider for PrometheusProvider {
    fn kind(&self) -> &'static str {
        "prometheus"
    }

    fn metadata(&self, metric: &Metric) -> BTreeMap<String, String> {
        match &metric.provider {
            MetricProvider::Prometheus(p) => p
                .query
                .iter()
                .filter(|q| !q.is_empty())
                .map(|q| (RESOLVED_QUERY_KEY.to_owned(), q.clone()))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    fn measure<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::Prometheus(spec) = &metric.provider else {
                return error_measurement("not a prometheus metric", started);
            };
            match self.query(spec).await {
                Ok((value, text)) => measured(&self.evaluator, metric, &value, text, started).await,
                Err(message) => {
                    tracing::debug!(metric = %metric.name, "prometheus query failed");
                    let mut m = error_measurement(message, Timestamp::now());
                    m.started_at = Some(Time(started));
                    m
                }
            }
        })
    }
}
