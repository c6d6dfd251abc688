//! The `newRelic` provider: an NRQL query through New Relic's NerdGraph (GraphQL) API, as Argo
//! Rollouts v1.9.1 asks it.
//!
//! - `POST <nerdgraph>` with the header `API-Key: <personal-api-key>` and the GraphQL document
//!   `actor { account(id: $accountId) { nrql(query: $query, timeout: $timeout) { results } } }`,
//!   the account, the NRQL `query` and its `timeout` (seconds, default 5, NerdGraph's own) passed
//!   as variables.
//! - The profile is the Secret named by `profile` (default `newrelic`) in the controller's
//!   namespace: `personal-api-key` and `account-id` (a number) are needed; `region` (`us`, the
//!   default, or `eu`) picks `https://api.newrelic.com/graphql` or
//!   `https://api.eu.newrelic.com/graphql`, and `base-url-nerdgraph` replaces it (a proxy).
//!   `base-url-rest` is accepted and unused: NRQL goes through NerdGraph only, as in Argo.
//! - `result`, as Argo gives it: one row is that row's map (`result.successRate`,
//!   `result['average.duration']`), several rows (`TIMESERIES`, `FACET`) are the list of maps
//!   (`result[0].count`). No row, or one empty row, is an Error ("no results returned from NRQL
//!   query"). `value` is the JSON of `result`. The resolved query is kept in the result's
//!   metadata under `ResolvedNewRelicQuery`.
//! - A GraphQL `errors` answer, a status outside 2xx, a missing `nrql` are Errors. The request
//!   waits 30 s (at least the NRQL timeout and 5 s more), capped at `limits.max_timeout`; the
//!   answer is read up to `limits.max_response_bytes`.
//!
//! Sluice differs from Argo in small ways: an unknown `region` goes to the US endpoint as
//! Argo's client does, with a warning logged; a `timeout` that is not positive is an Error
//! rather than sent; the request is not retried. Error messages show NerdGraph's `errors`
//! messages with the key redacted, never a raw body.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json::{Value, json};
use sluice_analysis::{condition::MetricValue, limits::AnalysisLimits, plan::error_measurement};
use sluice_api::{Measurement, Metric, MetricProvider, NewRelicMetric};

use crate::analysis::evaluator::Evaluator;

use super::{
    Context, Provider, ProviderError, RunRef, body, exchange, measured, query_failed, read_secret,
};

/// The Secret read when the metric names no `profile` (Argo's default).
pub const DEFAULT_PROFILE: &str = "newrelic";
/// NerdGraph in the US region (the default).
pub const US_NERDGRAPH: &str = "https://api.newrelic.com/graphql";
/// NerdGraph in the EU region.
pub const EU_NERDGRAPH: &str = "https://api.eu.newrelic.com/graphql";
/// The NRQL timeout sent when the metric gives none (NerdGraph's and Argo's default), seconds.
pub const DEFAULT_NRQL_TIMEOUT: i64 = 5;
/// How long the request may take at least (the HTTP timeout of New Relic's Go client).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The metadata key of the resolved query (Argo's name).
pub const RESOLVED_QUERY_KEY: &str = "ResolvedNewRelicQuery";
/// The GraphQL document: one NRQL query, its rows only.
const NRQL_DOCUMENT: &str = "query ($accountId: Int!, $query: Nrql!, $timeout: Seconds) { actor { account(id: $accountId) { nrql(query: $query, timeout: $timeout) { results } } } }";

/// Queries New Relic; the HTTP client is shared by every measurement.
pub struct NewRelicProvider {
    http: super::HttpClients,
    client: Option<kube::Client>,
    namespace: String,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

/// An access profile, from its Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Profile {
    api_key: String,
    account_id: i64,
    endpoint: reqwest::Url,
}

/// The profile in a Secret's data, or why it is unusable (never showing the key).
fn profile_from(data: &BTreeMap<String, String>, secret: &str) -> Result<Profile, String> {
    let api_key = data.get("personal-api-key").filter(|k| !k.is_empty());
    let account = data
        .get("account-id")
        .map(|a| a.trim())
        .filter(|a| !a.is_empty());
    let (Some(api_key), Some(account)) = (api_key, account) else {
        return Err(format!(
            "newRelic profile {secret}: account-id or personal-api-key not found"
        ));
    };
    let account_id = account.parse::<i64>().map_err(|e| {
        format!("newRelic profile {secret}: could not parse account-id {account:?}: {e}")
    })?;
    let written = match data
        .get("base-url-nerdgraph")
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
    {
        Some(url) => url,
        None => {
            let region = data.get("region").map(|r| r.trim().to_ascii_lowercase());
            match region.as_deref() {
                None | Some("") | Some("us") => US_NERDGRAPH,
                Some("eu") => EU_NERDGRAPH,
                Some(other) => {
                    tracing::warn!(profile = %secret, region = %other, "unknown New Relic region; using us");
                    US_NERDGRAPH
                }
            }
        }
    };
    let endpoint = reqwest::Url::parse(written).map_err(|e| {
        format!("newRelic profile {secret}: base-url-nerdgraph {written:?} is not a URL: {e}")
    })?;
    if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
        return Err(format!(
            "newRelic profile {secret}: base-url-nerdgraph {written:?} must be an http or https URL with a host"
        ));
    }
    Ok(Profile {
        api_key: api_key.clone(),
        account_id,
        endpoint,
    })
}

/// The NRQL timeout to send: the metric's, positive, or the default.
fn nrql_timeout(spec: &NewRelicMetric) -> Result<i64, String> {
    match spec.timeout {
        None => Ok(DEFAULT_NRQL_TIMEOUT),
        Some(t) if t > 0 => Ok(t),
        Some(t) => Err(format!(
            "newRelic timeout {t} must be a positive number of seconds"
        )),
    }
}

/// The GraphQL request body.
fn request_body(account_id: i64, query: &str, timeout: i64) -> Value {
    json!({
        "query": NRQL_DOCUMENT,
        "variables": {"accountId": account_id, "query": query, "timeout": timeout},
    })
}

/// `text` with every secret replaced by `***`.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |t, s| t.replace(s, "***"))
}

/// The messages of a GraphQL `errors` list, keys redacted; `None` when there are none.
fn graphql_errors(answer: &Value, secrets: &[&str]) -> Option<String> {
    let errors = answer.get("errors")?.as_array()?;
    let text = errors
        .iter()
        .map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_owned)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let text = redact(text.trim(), secrets);
    (!text.is_empty()).then(|| body::truncate(text, 300))
}

/// `value` with the keys of every map sorted, as Argo's encoder writes maps.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&fields[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The result of a NerdGraph answer: one row's map, or the list of rows.
fn parse_answer(
    status: reqwest::StatusCode,
    answer: &[u8],
    secrets: &[&str],
) -> Result<(MetricValue, String), String> {
    let parsed = serde_json::from_slice::<Value>(answer);
    if !status.is_success() {
        let detail = parsed
            .ok()
            .and_then(|v| graphql_errors(&v, secrets))
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(format!(
            "received non 2xx response code: {}{detail}",
            status.as_u16()
        ));
    }
    let parsed = parsed
        .map_err(|e| format!("New Relic answered JSON that is not a NerdGraph result: {e}"))?;
    if let Some(errors) = graphql_errors(&parsed, secrets) {
        return Err(format!("NerdGraph: {errors}"));
    }
    let results = match parsed.pointer("/data/actor/account/nrql/results") {
        Some(Value::Array(results)) => results,
        Some(Value::Null) | None => {
            return Err(
                "NerdGraph answered no NRQL results (data.actor.account.nrql is missing)".into(),
            );
        }
        Some(_) => return Err("NerdGraph answered NRQL results that are not a list".into()),
    };
    let result = match results.as_slice() {
        [] => return Err("no results returned from NRQL query".into()),
        [row] => match row {
            Value::Object(fields) if fields.is_empty() => {
                return Err("no results returned from NRQL query".into());
            }
            Value::Object(_) => row.clone(),
            other => {
                return Err(format!(
                    "NerdGraph answered a row that is not a map: {other}"
                ));
            }
        },
        _ => Value::Array(results.clone()),
    };
    Ok((MetricValue::from(&result), sorted(&result).to_string()))
}

impl NewRelicProvider {
    /// Builds the HTTP client; profiles are read with the context's client, in its namespace.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        Ok(Self {
            http: super::HttpClients::new(&context.limits)?,
            client: context.client.clone(),
            namespace: context.namespace.clone(),
            evaluator: context.evaluator.clone(),
            limits: context.limits.clone(),
        })
    }

    /// Runs the metric's NRQL query and returns its result as a condition sees it, and as text.
    async fn query(&self, spec: &NewRelicMetric) -> Result<(MetricValue, String), String> {
        if spec.query.trim().is_empty() {
            return Err("newRelic query is empty".into());
        }
        let timeout = nrql_timeout(spec)?;
        let secret = spec
            .profile
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_PROFILE);
        let data = read_secret(self.client.as_ref(), &self.namespace, secret)
            .await
            .map_err(|e| format!("newRelic profile: {e}"))?;
        let profile = profile_from(&data, &format!("{}/{secret}", self.namespace))?;
        let mut key = reqwest::header::HeaderValue::from_str(&profile.api_key)
            .map_err(|_| "newRelic personal-api-key is not a valid header value".to_owned())?;
        key.set_sensitive(true);
        let request = self
            .http
            .get(None)
            .post(profile.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("API-Key", key)
            .body(request_body(profile.account_id, &spec.query, timeout).to_string());
        let wait = DEFAULT_TIMEOUT
            .max(Duration::from_secs(timeout.unsigned_abs()).saturating_add(Duration::from_secs(5)))
            .min(self.limits.max_timeout);
        tracing::debug!(endpoint = %profile.endpoint, account = profile.account_id, "querying New Relic");
        let what = format!("New Relic at {}", profile.endpoint);
        let secrets = [profile.api_key.as_str()];
        let (status, answer) = exchange(request, wait, self.limits.max_response_bytes, &what)
            .await
            .map_err(|e| redact(&e, &secrets))?;
        parse_answer(status, &answer, &secrets)
    }
}

impl Provider for NewRelicProvider {
    fn kind(&self) -> &'static str {
        "newRelic"
    }

    fn metadata(&self, metric: &Metric) -> BTreeMap<String, String> {
        match &metric.provider {
            MetricProvider::NewRelic(spec) if !spec.query.is_empty() => {
                BTreeMap::from([(RESOLVED_QUERY_KEY.to_owned(), spec.query.clone())])
            }
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
            let MetricProvider::NewRelic(spec) = &metric.provider else {
                return error_measurement("not a newRelic metric", started);
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

    const OK: reqwest::StatusCode = reqwest::StatusCode::OK;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn answer(results: Value) -> Vec<u8> {
        json!({"data": {"actor": {"account": {"nrql": {"results": results}}}}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn profiles_pick_the_region_or_the_proxy() {
        let base = [("personal-api-key", "NRAK-1"), ("account-id", "12345")];
        let us = profile_from(&data(&base), "ns/newrelic").unwrap();
        assert_eq!(us.endpoint.as_str(), US_NERDGRAPH);
        assert_eq!(us.account_id, 12345);
        let mut eu = base.to_vec();
        eu.push(("region", "EU"));
        assert_eq!(
            profile_from(&data(&eu), "p").unwrap().endpoint.as_str(),
            EU_NERDGRAPH
        );
        let mut unknown = base.to_vec();
        unknown.push(("region", "prod"));
        assert_eq!(
            profile_from(&data(&unknown), "p")
                .unwrap()
                .endpoint
                .as_str(),
            US_NERDGRAPH
        );
        let mut proxy = base.to_vec();
        proxy.extend([
            ("region", "eu"),
            ("base-url-nerdgraph", "http://proxy:8080/graphql"),
            ("base-url-rest", "http://proxy:8080/v2"),
        ]);
        assert_eq!(
            profile_from(&data(&proxy), "p").unwrap().endpoint.as_str(),
            "http://proxy:8080/graphql"
        );

        let e = profile_from(&data(&[("personal-api-key", "NRAK-1")]), "ns/nr").unwrap_err();
        assert!(
            e.contains("account-id or personal-api-key not found"),
            "{e}"
        );
        let e = profile_from(
            &data(&[("personal-api-key", "NRAK-1"), ("account-id", "abc")]),
            "ns/nr",
        )
        .unwrap_err();
        assert!(e.contains("could not parse account-id"), "{e}");
        assert!(!e.contains("NRAK"), "{e}");
        let mut bad = base.to_vec();
        bad.push(("base-url-nerdgraph", "example.com/query"));
        assert!(profile_from(&data(&bad), "p").is_err());
    }

    #[test]
    fn the_request_carries_the_account_query_and_timeout_as_variables() {
        let body = request_body(7, "SELECT count(*) FROM Transaction", 10);
        assert_eq!(
            body["variables"],
            json!({"accountId": 7, "query": "SELECT count(*) FROM Transaction", "timeout": 10})
        );
        let document = body["query"].as_str().unwrap();
        assert!(document.contains("nrql(query: $query, timeout: $timeout) { results }"));
        assert_eq!(nrql_timeout(&NewRelicMetric::default()), Ok(5));
        let spec = |t| NewRelicMetric {
            timeout: Some(t),
            ..NewRelicMetric::default()
        };
        assert_eq!(nrql_timeout(&spec(30)), Ok(30));
        assert!(nrql_timeout(&spec(0)).is_err());
    }

    #[test]
    fn one_row_is_a_map_and_several_a_list() {
        let (value, text) = parse_answer(
            OK,
            &answer(json!([{"successRate": 0.99, "average.duration": 1.5}])),
            &[],
        )
        .unwrap();
        assert!(matches!(value, MetricValue::Map(_)));
        assert_eq!(text, r#"{"average.duration":1.5,"successRate":0.99}"#);
        let (value, text) =
            parse_answer(OK, &answer(json!([{"count": 10}, {"count": 20}])), &[]).unwrap();
        assert!(matches!(value, MetricValue::Array(ref rows) if rows.len() == 2));
        assert_eq!(text, r#"[{"count":10},{"count":20}]"#);
        for empty in [json!([]), json!([{}])] {
            assert_eq!(
                parse_answer(OK, &answer(empty), &[]).unwrap_err(),
                "no results returned from NRQL query"
            );
        }
    }

    #[test]
    fn errors_are_errors_and_never_show_the_key() {
        let e = parse_answer(
            OK,
            br#"{"data": {"actor": {"account": {"nrql": null}}}, "errors": [{"message": "NRDB query duration exceeded the set timeout"}]}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(e, "NerdGraph: NRDB query duration exceeded the set timeout");
        let e = parse_answer(
            reqwest::StatusCode::UNAUTHORIZED,
            br#"{"errors": [{"message": "Invalid API key: NRAK-SECRET"}]}"#,
            &["NRAK-SECRET"],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "received non 2xx response code: 401: Invalid API key: ***"
        );
        let e = parse_answer(
            reqwest::StatusCode::BAD_GATEWAY,
            b"<html>NRAK-SECRET</html>",
            &["NRAK-SECRET"],
        )
        .unwrap_err();
        assert_eq!(e, "received non 2xx response code: 502");
        assert!(parse_answer(OK, b"{", &[]).is_err());
        assert!(parse_answer(OK, br#"{"data": {"actor": {"account": null}}}"#, &[]).is_err());
        assert!(parse_answer(OK, &answer(json!([1])), &[]).is_err());
    }
}
