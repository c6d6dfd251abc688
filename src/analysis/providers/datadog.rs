//! The `datadog` provider: a metrics query through Datadog's API, as Argo Rollouts v1.9.1 asks
//! it.
//!
//! - `apiVersion: v1` (the default, as Argo's CRD writes it): `GET <address>/api/v1/query` with
//!   `from`, `query` and `to` (Unix seconds, `to` now, `from` now minus `interval`). `result` is
//!   the value of the last point of the first series; no series or no point is `nil` (the
//!   conditions see it: `default(result, 0) < 10`), as in Argo.
//! - `apiVersion: v2`: `POST <address>/api/v2/query/scalar` with a `scalar_request` whose
//!   `queries` are the metric's `queries` (or its `query`, named `query`), each with `aggregator`
//!   (default `last`) and `data_source: metrics`, its `formulas` the metric's `formula`, and
//!   `from`/`to` in milliseconds. `result` is the first value of the first column; no column, no
//!   value or a `null` value (Datadog's "no data", e.g. `0/0`) is `nil`, as in Argo. An answer
//!   whose `data.errors` is set is an Error.
//! - `interval` is the window queried (default `5m`); `query` and `queries` are exclusive, v1
//!   takes only `query` and no `aggregator`, `formula` needs `queries`, and several `queries`
//!   need a `formula`: each broken rule is an Error before anything is sent.
//! - Credentials, as Argo finds them: with `secretRef.name`, only that Secret, in the controller's
//!   namespace or, with `namespaced: true`, in the run's; otherwise `DD_API_KEY`, `DD_APP_KEY`
//!   and `DD_ADDRESS` when all three are set, else the Secret `datadog` in the controller's
//!   namespace. A Secret gives `api-key`, `app-key` (both needed) and optionally `address`
//!   (default `https://api.datadoghq.com`). They are sent as `DD-API-KEY` and
//!   `DD-APPLICATION-KEY`.
//! - The request waits at most 10 s (Argo's HTTP client timeout), capped at
//!   `limits.max_timeout`; the answer is read up to `limits.max_response_bytes`. 401/403 and any
//!   other status but 200 are Errors.
//!
//! Sluice differs where Argo would judge something it never read: a `null` value in a v1 point
//! is `nil` (Argo's decoder makes it `0`, which could pass `result < 0.01`); a v1 answer carrying
//! `error` is an Error; a grouped v2 answer (`by {tag}`, a `group` column) is an Error naming
//! why (Argo 1.9.1 fails to decode it); an unknown `apiVersion` or `aggregator` is an Error
//! (Argo's CRD refuses them). A server's error text is shown only from Datadog's `errors` list,
//! with the keys redacted, never the raw body.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json::{Value, json};
use sluice_analysis::{
    condition::{MetricValue, format_float},
    limits::AnalysisLimits,
    plan::error_measurement,
};
use sluice_api::{DatadogMetric, Measurement, Metric, MetricProvider};

use crate::analysis::evaluator::Evaluator;

use super::{
    Context, Provider, ProviderError, RunRef, body, exchange, measured, query_failed, read_secret,
};

/// The Secret Argo reads Datadog credentials from when the metric names none.
pub const SECRET_NAME: &str = "datadog";
/// Where queries go when the credentials name no address (Argo's default).
pub const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";
/// How long a query may take (Argo's HTTP client timeout for Datadog).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The window queried when the metric gives no `interval` (the default of Argo's CRD).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How a v2 query reduces its series when the metric names no `aggregator` (Argo's default).
pub const DEFAULT_AGGREGATOR: &str = "last";
/// The aggregators Argo's CRD accepts.
const AGGREGATORS: [&str; 9] = [
    "avg",
    "min",
    "max",
    "sum",
    "last",
    "percentile",
    "mean",
    "l2norm",
    "area",
];

/// Queries Datadog; the HTTP client is shared by every measurement.
pub struct DatadogProvider {
    http: super::HttpClients,
    client: Option<kube::Client>,
    namespace: String,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

/// The Datadog API a metric speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ApiVersion {
    V1,
    V2,
}

/// Where to send a query and the keys to send with it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Credentials {
    address: Option<String>,
    api_key: String,
    app_key: String,
}

impl Credentials {
    /// The keys, for redaction.
    fn secrets(&self) -> [&str; 2] {
        [&self.api_key, &self.app_key]
    }
}

/// The API version a metric asks for: `v1` when it says nothing (Argo's CRD default).
fn api_version(spec: &DatadogMetric) -> Result<ApiVersion, String> {
    match spec.api_version.as_deref().map(str::trim) {
        None | Some("") | Some("v1") => Ok(ApiVersion::V1),
        Some("v2") => Ok(ApiVersion::V2),
        Some(other) => Err(format!(
            "datadog apiVersion {other:?} is not supported: use v1 or v2"
        )),
    }
}

/// Argo's rules on `query`, `queries`, `formula` and `aggregator`, checked before anything is
/// read or sent.
fn validate(spec: &DatadogMetric, version: ApiVersion) -> Result<(), String> {
    let query = spec.query.as_deref().is_some_and(|q| !q.trim().is_empty());
    let formula = spec
        .formula
        .as_deref()
        .is_some_and(|f| !f.trim().is_empty());
    let aggregator = spec.aggregator.as_deref().filter(|a| !a.is_empty());
    if !query && spec.queries.is_empty() {
        return Err("datadog metric must have either a query or queries".into());
    }
    if query && !spec.queries.is_empty() {
        return Err("datadog metric cannot have both a query and queries".into());
    }
    if version == ApiVersion::V1 && !query {
        return Err(
            "datadog query is empty: apiVersion v1 only supports the query field (use v2 for queries)"
                .into(),
        );
    }
    if formula && spec.queries.is_empty() {
        return Err("datadog formula is only valid when queries are set".into());
    }
    if !formula && spec.queries.len() > 1 {
        return Err("datadog metric with multiple queries must include a formula".into());
    }
    match (version, aggregator) {
        (ApiVersion::V1, Some(_)) => Err("datadog aggregator is not supported in v1".into()),
        (ApiVersion::V2, Some(a)) if !AGGREGATORS.contains(&a) => Err(format!(
            "datadog aggregator {a:?} is not supported: use one of {}",
            AGGREGATORS.join(", ")
        )),
        _ => Ok(()),
    }
}

/// Credentials from the environment, as Argo reads them: `DD_API_KEY`, `DD_APP_KEY` and
/// `DD_ADDRESS` must all be set (the address may be empty), and both keys non-empty.
fn credentials_from_env(var: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
    let api_key = var("DD_API_KEY")?;
    let app_key = var("DD_APP_KEY")?;
    let address = var("DD_ADDRESS")?;
    (!api_key.is_empty() && !app_key.is_empty()).then_some(Credentials {
        address: Some(address),
        api_key,
        app_key,
    })
}

/// Credentials from a Secret's data: `api-key` and `app-key` (both non-empty), `address`.
fn credentials_from_secret(data: &BTreeMap<String, String>) -> Option<Credentials> {
    let api_key = data.get("api-key").filter(|k| !k.is_empty())?;
    let app_key = data.get("app-key").filter(|k| !k.is_empty())?;
    Some(Credentials {
        address: data.get("address").cloned(),
        api_key: api_key.clone(),
        app_key: app_key.clone(),
    })
}

/// The base URL queries go to: the credentials' address, or Datadog's.
fn base_url(address: Option<&str>) -> Result<reqwest::Url, String> {
    let written = address
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or(DEFAULT_ADDRESS);
    let url = reqwest::Url::parse(written)
        .map_err(|e| format!("datadog address {written:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "datadog address {written:?} must be an http or https URL with a host"
        ));
    }
    Ok(url)
}

/// `route` under the address (which may have a path prefix of its own).
fn endpoint(base: &reqwest::Url, route: &str) -> reqwest::Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{route}"));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The v1 query URL: `from`, `query`, `to` (in the order Argo's encoder writes them).
fn v1_url(base: &reqwest::Url, query: &str, from: i64, to: i64) -> reqwest::Url {
    let mut url = endpoint(base, "/api/v1/query");
    url.query_pairs_mut()
        .append_pair("from", &from.to_string())
        .append_pair("query", query)
        .append_pair("to", &to.to_string());
    url
}

/// The body of a v2 scalar query over `[from_ms, to_ms]`.
fn v2_body(spec: &DatadogMetric, from_ms: i64, to_ms: i64) -> Value {
    let single;
    let queries = match spec.query.as_deref().filter(|q| !q.trim().is_empty()) {
        Some(query) => {
            single = BTreeMap::from([("query".to_owned(), query.to_owned())]);
            &single
        }
        None => &spec.queries,
    };
    let aggregator = spec
        .aggregator
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or(DEFAULT_AGGREGATOR);
    let formulas: Vec<Value> = spec
        .formula
        .iter()
        .filter(|f| !f.trim().is_empty())
        .map(|f| json!({"formula": f}))
        .collect();
    json!({
        "data": {
            "attributes": {
                "from": from_ms,
                "to": to_ms,
                "queries": queries
                    .iter()
                    .map(|(name, query)| json!({
                        "aggregator": aggregator,
                        "data_source": "metrics",
                        "name": name,
                        "query": query,
                    }))
                    .collect::<Vec<_>>(),
                "formulas": formulas,
            },
            "type": "scalar_request",
        }
    })
}

/// `text` with every secret replaced by `***`.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |t, s| t.replace(s, "***"))
}

/// The messages of Datadog's `{"errors": [...]}`, keys redacted, for a message; `None` when the
/// answer has none (its raw body is never shown).
fn error_list(answer: &Value, secrets: &[&str]) -> Option<String> {
    let text = match answer.get("errors")? {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        _ => return None,
    };
    let text = redact(text.trim(), secrets);
    (!text.is_empty()).then(|| body::truncate(text, 300))
}

/// An answer's status judged as Argo does: only 200 is an answer.
fn check_status(
    status: reqwest::StatusCode,
    answer: &[u8],
    secrets: &[&str],
) -> Result<(), String> {
    if status == reqwest::StatusCode::OK {
        return Ok(());
    }
    let detail = serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| error_list(&v, secrets))
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let code = status.as_u16();
    if matches!(code, 401 | 403) {
        Err(format!(
            "received authentication error response code: {code}{detail}"
        ))
    } else {
        Err(format!("received non 2xx response code: {code}{detail}"))
    }
}

/// The result of a v1 answer: the value of the last point of the first series, `nil` when
/// there is none.
fn parse_v1(
    status: reqwest::StatusCode,
    answer: &[u8],
    secrets: &[&str],
) -> Result<(MetricValue, String), String> {
    check_status(status, answer, secrets)?;
    let parsed: Value = serde_json::from_slice(answer)
        .map_err(|e| format!("datadog answered JSON that is not a query result: {e}"))?;
    if let Some(error) = parsed
        .get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        return Err(format!("datadog: {}", redact(error, secrets)));
    }
    let series = match parsed.get("series") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(series)) => series.clone(),
        Some(_) => return Err("datadog answered series that is not a list".into()),
    };
    let points = match series.first().map(|s| s.get("pointlist")) {
        None => None,
        Some(None | Some(Value::Null)) => Some(Vec::new()),
        Some(Some(Value::Array(points))) => Some(points.clone()),
        Some(Some(_)) => return Err("datadog answered a pointlist that is not a list".into()),
    };
    let Some(last) = points.as_ref().and_then(|p| p.last()) else {
        // No data: nil, the series shown as Argo shows them.
        let shown: Vec<Value> = series
            .iter()
            .map(|s| json!({"pointlist": s.get("pointlist").cloned().unwrap_or(Value::Null)}))
            .collect();
        return Ok((MetricValue::Nil, Value::Array(shown).to_string()));
    };
    match last.as_array().map(Vec::as_slice) {
        Some([_, Value::Null]) => Ok((MetricValue::Nil, "null".to_owned())),
        Some([_, value]) => {
            let value = value.as_f64().ok_or_else(|| {
                format!("datadog answered a point value that is not a number: {value}")
            })?;
            Ok((MetricValue::Float(value), format_float(value)))
        }
        _ => Err("Datadog datapoint does not have 2 values".into()),
    }
}

/// The result of a v2 answer: the first value of the first column, `nil` when there is none or
/// it is `null`.
fn parse_v2(
    status: reqwest::StatusCode,
    answer: &[u8],
    secrets: &[&str],
) -> Result<(MetricValue, String), String> {
    check_status(status, answer, secrets)?;
    let parsed: Value = serde_json::from_slice(answer)
        .map_err(|e| format!("datadog answered JSON that is not a scalar result: {e}"))?;
    let data = parsed.get("data").unwrap_or(&Value::Null);
    if let Some(errors) = error_list(data, secrets) {
        return Err(format!("There were errors in your query: {errors}"));
    }
    let columns = match data.pointer("/attributes/columns") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(columns)) => columns.clone(),
        Some(_) => return Err("datadog answered columns that are not a list".into()),
    };
    if columns
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some("group"))
    {
        return Err(
            "datadog answered a grouped result (a query `by {tag}`): Sluice, as Argo Rollouts v1.9, reads one value; aggregate the groups in the query or formula"
                .into(),
        );
    }
    let values = match columns.first().map(|c| c.get("values")) {
        None => return Ok((MetricValue::Nil, "[]".to_owned())),
        Some(None | Some(Value::Null)) => Vec::new(),
        Some(Some(Value::Array(values))) => values.clone(),
        Some(Some(_)) => return Err("datadog answered column values that are not a list".into()),
    };
    match values.first() {
        None | Some(Value::Null) => Ok((MetricValue::Nil, Value::Array(values).to_string())),
        Some(value) => {
            let value = value
                .as_f64()
                .ok_or_else(|| format!("datadog answered a value that is not a number: {value}"))?;
            Ok((MetricValue::Float(value), format_float(value)))
        }
    }
}

impl DatadogProvider {
    /// Builds the HTTP client; Secrets are read with the context's client, in its namespace.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        Ok(Self {
            http: super::HttpClients::new(&context.limits)?,
            client: context.client.clone(),
            namespace: context.namespace.clone(),
            evaluator: context.evaluator.clone(),
            limits: context.limits.clone(),
        })
    }

    /// The credentials of a metric, looked for where Argo looks.
    async fn credentials(&self, run: &RunRef, spec: &DatadogMetric) -> Result<Credentials, String> {
        let reference = spec.secret_ref.as_ref();
        let name = reference
            .and_then(|r| r.name.as_deref())
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let namespaced = reference.and_then(|r| r.namespaced).unwrap_or(false);
        if namespaced && name.is_none() {
            return Err("datadog secretRef.namespaced needs secretRef.name".into());
        }
        if let Some(name) = name {
            let namespace = if namespaced {
                if run.namespace.is_empty() {
                    return Err(format!(
                        "datadog secretRef {name} is namespaced, and the run's namespace is unknown"
                    ));
                }
                run.namespace.as_str()
            } else {
                self.namespace.as_str()
            };
            let data = read_secret(self.client.as_ref(), namespace, name)
                .await
                .map_err(|e| format!("datadog credentials: {e}"))?;
            return credentials_from_secret(&data).ok_or_else(|| {
                format!("datadog credentials: Secret {namespace}/{name} has no api-key and app-key")
            });
        }
        if let Some(found) = credentials_from_env(|v| std::env::var(v).ok()) {
            return Ok(found);
        }
        let namespace = self.namespace.as_str();
        match read_secret(self.client.as_ref(), namespace, SECRET_NAME).await {
            Ok(data) => credentials_from_secret(&data).ok_or_else(|| {
                format!(
                    "datadog credentials: Secret {namespace}/{SECRET_NAME} has no api-key and app-key"
                )
            }),
            Err(e) => Err(format!(
                "datadog credentials not found: DD_API_KEY, DD_APP_KEY and DD_ADDRESS are not all set, and {e}"
            )),
        }
    }

    /// Runs the metric's query and returns its result as a condition sees it, and as text.
    async fn query(
        &self,
        run: &RunRef,
        spec: &DatadogMetric,
        now: Timestamp,
    ) -> Result<(MetricValue, String), String> {
        let version = api_version(spec)?;
        validate(spec, version)?;
        let credentials = self.credentials(run, spec).await?;
        let base = base_url(credentials.address.as_deref())?;
        let interval = spec
            .interval
            .as_ref()
            .map_or(DEFAULT_INTERVAL, sluice_api::Duration::as_std);
        let to = now.as_second();
        let from = to.saturating_sub(i64::try_from(interval.as_secs()).unwrap_or(i64::MAX));
        let http = self.http.get(None);
        let request = match version {
            ApiVersion::V1 => {
                let query = spec.query.as_deref().unwrap_or_default();
                http.get(v1_url(&base, query, from, to))
            }
            ApiVersion::V2 => http.post(endpoint(&base, "/api/v2/query/scalar")).body(
                v2_body(spec, from.saturating_mul(1000), to.saturating_mul(1000)).to_string(),
            ),
        };
        let header = |value: &str, name: &str| {
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("datadog {name} is not a valid header value"))?;
            value.set_sensitive(true);
            Ok::<_, String>(value)
        };
        let request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("DD-API-KEY", header(&credentials.api_key, "api-key")?)
            .header(
                "DD-APPLICATION-KEY",
                header(&credentials.app_key, "app-key")?,
            );
        let timeout = body::capped_timeout(None, DEFAULT_TIMEOUT, self.limits.max_timeout);
        tracing::debug!(api_version = ?version, address = %base, "querying datadog");
        let what = format!("datadog at {base}");
        let (status, answer) = exchange(request, timeout, self.limits.max_response_bytes, &what)
            .await
            .map_err(|e| redact(&e, &credentials.secrets()))?;
        match version {
            ApiVersion::V1 => parse_v1(status, &answer, &credentials.secrets()),
            ApiVersion::V2 => parse_v2(status, &answer, &credentials.secrets()),
        }
    }
}

impl Provider for DatadogProvider {
    fn kind(&self) -> &'static str {
        "datadog"
    }

    fn measure<'a>(
        &'a self,
        run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::Datadog(spec) = &metric.provider else {
                return error_measurement("not a datadog metric", started);
            };
            match self.query(run, spec, started).await {
                Ok((value, text)) => measured(&self.evaluator, metric, &value, text, started).await,
                Err(message) => query_failed(self.kind(), metric, started, message),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> DatadogMetric {
        serde_json::from_value(value).expect("a datadog metric")
    }

    const OK: reqwest::StatusCode = reqwest::StatusCode::OK;

    #[test]
    fn the_api_version_is_v1_unless_v2_is_asked() {
        assert_eq!(api_version(&spec(json!({}))), Ok(ApiVersion::V1));
        assert_eq!(
            api_version(&spec(json!({"apiVersion": "v1"}))),
            Ok(ApiVersion::V1)
        );
        assert_eq!(
            api_version(&spec(json!({"apiVersion": "v2"}))),
            Ok(ApiVersion::V2)
        );
        assert!(
            api_version(&spec(json!({"apiVersion": "v3"})))
                .unwrap_err()
                .contains("v1 or v2")
        );
    }

    #[test]
    fn argos_rules_on_query_queries_formula_and_aggregator() {
        let check = |v: Value| {
            let s = spec(v);
            validate(&s, api_version(&s).unwrap())
        };
        assert_eq!(check(json!({"query": "avg:x{*}"})), Ok(()));
        assert_eq!(
            check(json!({"apiVersion": "v2", "queries": {"a": "x", "b": "y"}, "formula": "a/b"})),
            Ok(())
        );
        assert_eq!(
            check(json!({"apiVersion": "v2", "queries": {"a": "x"}})),
            Ok(())
        );
        for (bad, why) in [
            (json!({}), "either a query or queries"),
            (
                json!({"apiVersion": "v2", "query": "x", "queries": {"a": "x"}}),
                "both",
            ),
            (json!({"queries": {"a": "x"}, "formula": "a"}), "v1 only"),
            (
                json!({"apiVersion": "v2", "query": "x", "formula": "a"}),
                "formula",
            ),
            (
                json!({"apiVersion": "v2", "queries": {"a": "x", "b": "y"}}),
                "multiple queries",
            ),
            (
                json!({"query": "x", "aggregator": "sum"}),
                "not supported in v1",
            ),
            (
                json!({"apiVersion": "v2", "query": "x", "aggregator": "median"}),
                "not supported",
            ),
        ] {
            let e = check(bad.clone()).expect_err(&bad.to_string());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_come_from_all_three_env_vars_or_a_secret() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            credentials_from_env(env(&[
                ("DD_API_KEY", "a"),
                ("DD_APP_KEY", "b"),
                ("DD_ADDRESS", "")
            ])),
            Some(Credentials {
                address: Some(String::new()),
                api_key: "a".into(),
                app_key: "b".into()
            })
        );
        // All three must be set, and both keys non-empty.
        assert_eq!(
            credentials_from_env(env(&[("DD_API_KEY", "a"), ("DD_APP_KEY", "b")])),
            None
        );
        assert_eq!(
            credentials_from_env(env(&[
                ("DD_API_KEY", ""),
                ("DD_APP_KEY", "b"),
                ("DD_ADDRESS", "")
            ])),
            None
        );
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let found = credentials_from_secret(&data(&[("api-key", "a"), ("app-key", "b")])).unwrap();
        assert_eq!(found.address, None);
        assert_eq!(credentials_from_secret(&data(&[("api-key", "a")])), None);
    }

    #[test]
    fn requests_are_written_as_argo_writes_them() {
        let base = base_url(None).unwrap();
        assert_eq!(base.as_str(), "https://api.datadoghq.com/");
        let url = v1_url(&base, "avg:cpu{env:prod} by {host}", 700, 1000);
        assert_eq!(url.path(), "/api/v1/query");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("from".into(), "700".into()),
                ("query".into(), "avg:cpu{env:prod} by {host}".into()),
                ("to".into(), "1000".into())
            ]
        );
        let prefixed = base_url(Some("http://proxy:8080/dd/")).unwrap();
        assert_eq!(
            endpoint(&prefixed, "/api/v2/query/scalar").as_str(),
            "http://proxy:8080/dd/api/v2/query/scalar"
        );
        assert!(base_url(Some("ftp://x")).is_err());
        assert!(base_url(Some("not a url")).is_err());

        let single = v2_body(&spec(json!({"apiVersion": "v2", "query": "q"})), 1, 2);
        assert_eq!(
            single,
            json!({"data": {"type": "scalar_request", "attributes": {
                "from": 1, "to": 2, "formulas": [],
                "queries": [{"aggregator": "last", "data_source": "metrics", "name": "query", "query": "q"}],
            }}})
        );
        let formula = v2_body(
            &spec(
                json!({"apiVersion": "v2", "queries": {"b": "y", "a": "x"}, "formula": "a/b", "aggregator": "sum"}),
            ),
            1,
            2,
        );
        assert_eq!(
            formula["data"]["attributes"]["formulas"],
            json!([{"formula": "a/b"}])
        );
        assert_eq!(
            formula["data"]["attributes"]["queries"][0],
            json!({"aggregator": "sum", "data_source": "metrics", "name": "a", "query": "x"})
        );
    }

    #[test]
    fn v1_answers_are_the_last_point_or_nil() {
        let parse = |body: &str| parse_v1(OK, body.as_bytes(), &[]);
        assert_eq!(
            parse(
                r#"{"status": "ok", "series": [{"pointlist": [[1000, 0.5], [2000, 0.25]]}, {"pointlist": [[1, 9]]}]}"#
            ),
            Ok((MetricValue::Float(0.25), "0.25".to_owned()))
        );
        assert_eq!(
            parse(r#"{"series": []}"#),
            Ok((MetricValue::Nil, "[]".to_owned()))
        );
        assert_eq!(
            parse(r#"{"series": [{"pointlist": []}]}"#),
            Ok((MetricValue::Nil, r#"[{"pointlist":[]}]"#.to_owned()))
        );
        assert_eq!(
            parse(r#"{"series": [{"pointlist": [[1000, null]]}]}"#),
            Ok((MetricValue::Nil, "null".to_owned()))
        );
        assert!(parse(r#"{"series": [{"pointlist": [[1000]]}]}"#).is_err());
        assert!(parse(r#"{"series": [{"pointlist": [[1000, "x"]]}]}"#).is_err());
        assert!(
            parse(r#"{"status": "error", "error": "bad query"}"#)
                .unwrap_err()
                .contains("bad query")
        );
        assert!(parse("<html>").unwrap_err().contains("not a query result"));
    }

    #[test]
    fn v2_answers_are_the_first_value_or_nil() {
        let parse = |body: &str| parse_v2(OK, body.as_bytes(), &[]);
        assert_eq!(
            parse(
                r#"{"data": {"type": "scalar_response", "attributes": {"columns": [{"name": "a", "type": "number", "values": [0.01], "meta": {}}]}}}"#
            ),
            Ok((MetricValue::Float(0.01), "0.01".to_owned()))
        );
        for (empty, shown) in [
            (
                r#"{"data": {"attributes": {"columns": [{"values": []}]}}}"#,
                "[]",
            ),
            (
                r#"{"data": {"attributes": {"columns": [{"values": [null]}]}}}"#,
                "[null]",
            ),
            (r#"{"data": {"attributes": {"columns": []}}}"#, "[]"),
            (r#"{"data": {}}"#, "[]"),
        ] {
            assert_eq!(
                parse(empty),
                Ok((MetricValue::Nil, shown.to_owned())),
                "{empty}"
            );
        }
        assert!(
            parse(r#"{"data": {"errors": "unknown metric"}}"#)
                .unwrap_err()
                .contains("There were errors in your query: unknown metric")
        );
        assert!(
            parse(r#"{"data": {"attributes": {"columns": [{"type": "group", "values": [["a"]]}, {"type": "number", "values": [1]}]}}}"#)
                .unwrap_err()
                .contains("grouped")
        );
        assert!(parse("[").is_err());
    }

    #[test]
    fn error_statuses_never_show_the_keys() {
        let body = br#"{"errors": ["Forbidden: key s3cr3t-api is not valid for s3cr3t-app"]}"#;
        let e = parse_v2(
            reqwest::StatusCode::FORBIDDEN,
            body,
            &["s3cr3t-api", "s3cr3t-app"],
        )
        .unwrap_err();
        assert!(
            e.starts_with("received authentication error response code: 403"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = parse_v1(
            reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            b"raw page s3cr3t-api",
            &["s3cr3t-api"],
        )
        .unwrap_err();
        assert_eq!(e, "received non 2xx response code: 500");
        // 2xx other than 200 is not an answer either (as in Argo).
        assert!(parse_v1(reqwest::StatusCode::ACCEPTED, b"{}", &[]).is_err());
    }
}
