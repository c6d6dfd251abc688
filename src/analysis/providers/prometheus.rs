//! The `prometheus` provider: an instant query through `prometheus-http-query`.
//!
//! As in Argo Rollouts, an instant vector becomes an array `result` (one number per series, in
//! Prometheus' order; an empty vector is `[]`, so `len(result) == 0` tests for "no data"), and
//! a scalar becomes a number. NaN stays NaN (`isNaN(result[0])` tests for it; every comparison
//! with NaN is false). A range vector or a string is an Error, as is any failure to ask.
//!
//! The address comes from the metric or, as in Argo, from `ARGO_ROLLOUTS_PROMETHEUS_ADDRESS`.
//! Basic authentication is written in the address (`https://user:password@host`), a bearer
//! token as an `Authorization` header, or fetched with `authentication.oauth2` (client
//! credentials). `timeout` (seconds, default 30) bounds both Prometheus' evaluation and the
//! whole request.

use std::{collections::BTreeMap, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prometheus_http_query::{Client, response::Data};

use std::sync::Arc;

use crate::analysis::{evaluator::Evaluator, limits::AnalysisLimits};

use super::{Provider, ProviderError, RunRef, error_chain, measured, oauth2_token};
use crate::{
    analysis::{
        condition::{MetricValue, format_float},
        plan::error_measurement,
    },
    api::{Measurement, Metric, MetricProvider, PrometheusMetric},
};

/// Environment variable giving the address when a metric has none (Argo's name).
pub const ADDRESS_ENV: &str = "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS";
/// Timeout when the metric gives none (Argo's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Key of the resolved query in the metric result's metadata (Argo's name).
pub const RESOLVED_QUERY_KEY: &str = "ResolvedPrometheusQuery";

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
            http: super::HttpClients::new()?,
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
        let timeout = spec
            .timeout
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let http = self.http.get(spec.insecure);
        let client = Client::from(http.clone(), &address).map_err(|e| error_chain(&e))?;
        let mut request = client
            .query(query)
            .timeout(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        for header in &spec.headers {
            let name = reqwest::header::HeaderName::from_bytes(header.key.as_bytes())
                .map_err(|e| format!("header name {:?}: {e}", header.key))?;
            let value = reqwest::header::HeaderValue::from_str(&header.value)
                .map_err(|e| format!("header {:?} value: {e}", header.key))?;
            request = request.header(name, value);
        }
        let work = async move {
            if let Some(oauth2) = spec.authentication.as_ref().and_then(|a| a.oauth2.as_ref()) {
                let token = oauth2_token(http, oauth2).await?;
                let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| format!("oauth2 token: {e}"))?;
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            request.get().await.map_err(|e| error_chain(&e))
        };
        let response = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| format!("no answer from {address} within {}s", timeout.as_secs()))??;
        match response.data() {
            Data::Vector(series) => {
                let values: Vec<f64> = series.iter().map(|s| s.sample().value()).collect();
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
            Data::Scalar(sample) => Ok((
                MetricValue::Float(sample.value()),
                format_float(sample.value()),
            )),
            Data::Matrix(_) => Err(
                "Prometheus metric type not supported: the query returned a range vector; use an instant query"
                    .to_owned(),
            ),
        }
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
                    tracing::debug!(metric = %metric.name, %message, "prometheus query failed");
                    let mut m = error_measurement(message, Timestamp::now());
                    m.started_at = Some(Time(started));
                    m
                }
            }
        })
    }
}
