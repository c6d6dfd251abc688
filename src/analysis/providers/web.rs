//! The `web` provider: an HTTP request whose JSON answer, at `jsonPath`, is `result`.
//!
//! As in Argo Rollouts: GET by default, POST or PUT with `body` or `jsonBody` (not both, and
//! not with GET), `headers`, `timeoutSeconds` (default 10), `insecure`, `authentication.oauth2`;
//! an answer outside 2xx is an Error; `jsonPath` is written as Kubernetes' JSONPath templates
//! are (`{$.data.ok}`, `{.data.ok}`), braces optional, `{$}` (the whole body) by default, and
//! the first value it selects is the result (none is an Error).
//!
//! Sluice differs where Argo trusts the server: an answer that is not JSON is the string
//! `result` evaluated by the conditions, where Argo calls it Successful without evaluating
//! them (a measurement that was never judged must not promote a rollout); the answer is read up
//! to `limits.max_response_bytes` and a larger one is an Error; `timeoutSeconds` is capped at
//! `limits.max_timeout`; redirects are followed only to the same host and port; and with
//! `limits.web_allowed_hosts`, a URL (or OAuth2 token URL) to another host is an Error before
//! anything is sent.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json_path::JsonPath;
use sluice_analysis::{condition::MetricValue, limits::AnalysisLimits, plan::error_measurement};
use sluice_api::{Measurement, Metric, MetricProvider, WebMethod, WebMetric};

use crate::analysis::evaluator::Evaluator;

use super::{
    Provider, ProviderError, RunRef, TokenBounds, body, error_chain, measured, oauth2_token,
    oauth2_token_url, query_failed,
};

/// Timeout when the metric gives none (Argo's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls web endpoints; the HTTP clients are shared by every measurement.
pub struct WebProvider {
    http: super::HttpClients,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

/// Parses a `jsonPath` as Argo users write it: `{$.data.ok}`, `{.data.ok}`, `$.data.ok`,
/// `.data.ok`, or nothing (the whole body).
pub fn parse_json_path(written: Option<&str>) -> Result<JsonPath, String> {
    let trimmed = written.map(str::trim).unwrap_or_default();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(trimmed)
        .trim();
    let path = if inner.is_empty() {
        "$".to_owned()
    } else if inner.starts_with('.') || inner.starts_with('[') {
        format!("${inner}")
    } else {
        inner.to_owned()
    };
    JsonPath::parse(&path).map_err(|e| format!("jsonPath {trimmed:?} is not valid: {e}"))
}

/// The result of a web metric from its answer's body: the first value at the path.
pub fn select(body: &[u8], path: &JsonPath) -> Result<(MetricValue, String), String> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        let text = String::from_utf8_lossy(body).into_owned();
        return Ok((MetricValue::String(text.clone()), text));
    };
    let value = path
        .query(&json)
        .first()
        .ok_or("result of web metric produced no value")?;
    Ok((MetricValue::from(value), value.to_string()))
}

impl WebProvider {
    /// Builds the HTTP clients (one verifying certificates, one for `insecure: true`).
    pub fn new(limits: &AnalysisLimits, evaluator: Arc<Evaluator>) -> Result<Self, ProviderError> {
        Ok(Self {
            http: super::HttpClients::new(limits)?,
            evaluator,
            limits: limits.clone(),
        })
    }

    /// Sends the request and selects the result.
    async fn call(&self, spec: &WebMetric) -> Result<(MetricValue, String), String> {
        let path = parse_json_path(spec.json_path.as_deref())?;
        let method = spec.method.unwrap_or(WebMethod::Get);
        let has_body = spec.body.as_deref().is_some_and(|b| !b.is_empty());
        if has_body && spec.json_body.is_some() {
            return Err(
                "use either body or jsonBody; both cannot exist for a web metric payload".into(),
            );
        }
        if (has_body || spec.json_body.is_some()) && method == WebMethod::Get {
            return Err("body/jsonBody can only be used with the POST or PUT methods".into());
        }
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| format!("url {:?} is not valid: {e}", spec.url))?;
        let allowed = self.limits.web_allowed_hosts.as_deref();
        body::check_host(allowed, &url)?;
        let oauth2 = spec.authentication.as_ref().and_then(|a| a.oauth2.as_ref());
        if let Some(oauth2) = oauth2 {
            oauth2_token_url(oauth2, allowed)?;
        }
        let timeout = body::capped_timeout(
            spec.timeout_seconds,
            DEFAULT_TIMEOUT,
            self.limits.max_timeout,
        );
        let max_bytes = self.limits.max_response_bytes;
        let http = self.http.get(spec.insecure);
        let mut request = match method {
            WebMethod::Get => http.get(url),
            WebMethod::Post => http.post(url),
            WebMethod::Put => http.put(url),
        };
        for header in &spec.headers {
            request = request.header(header.key.as_str(), header.value.as_str());
        }
        if let Some(json) = &spec.json_body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json.to_string());
        } else if let Some(body) = spec.body.clone().filter(|b| !b.is_empty()) {
            request = request.body(body);
        }
        let work = async move {
            if let Some(oauth2) = oauth2 {
                let bounds = TokenBounds {
                    max_bytes,
                    allowed_hosts: allowed,
                };
                let token = oauth2_token(http, oauth2, bounds).await?;
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| error_chain(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!(
                    "received non 2xx response code: {}",
                    status.as_u16()
                ));
            }
            body::read_bounded(response, max_bytes).await
        };
        // One deadline for the OAuth2 call, the request and reading the answer.
        let body = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| format!("no answer within {}", body::show_duration(timeout)))??;
        select(&body, &path)
    }
}

impl Provider for WebProvider {
    fn kind(&self) -> &'static str {
        "web"
    }

    fn measure<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::Web(spec) = &metric.provider else {
                return error_measurement("not a web metric", started);
            };
            match self.call(spec).await {
                Ok((value, text)) => measured(&self.evaluator, metric, &value, text, started).await,
                Err(message) => query_failed(self.kind(), metric, started, message),
            }
        })
    }
}
