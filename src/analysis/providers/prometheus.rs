//! The `prometheus` provider: an instant query (`GET <address>/api/v1/query`) or, with
//! `rangeQuery`, a range query (`GET <address>/api/v1/query_range`), its answer read up to
//! `limits.max_response_bytes` (a larger one is an Error, never held whole) and parsed here.
//!
//! As in Argo Rollouts, an instant vector becomes an array `result` (one number per series, in
//! Prometheus' order; an empty vector is `[]`, so `len(result) == 0` tests for "no data"), and
//! a scalar becomes a number. NaN stays NaN (`isNaN(result[0])` tests for it; every comparison
//! with NaN is false). A range vector or a string is an Error, as is any failure to ask.
//!
//! A range query's matrix becomes, as in Argo, one flat array of every sample of every series
//! (series in Prometheus' order, each series' samples oldest first), so Argo's documented
//! `all(result, # < 1000)` checks every value returned. `rangeQuery.start` and `end` are the
//! forms Argo documents, `now()` optionally followed by `+` or `-` `duration("<Go duration>")`
//! terms (`now() - duration("5m")`); `step` is a Go duration (`1m`, `30s`). Argo evaluates
//! start and end with expr; Sluice reads them with a small strict parser of those forms
//! instead ([`range_time`]): an expression written by a tenant is then bounded in time and
//! memory by construction (at most [`MAX_TIME_EXPRESSION_BYTES`], no evaluator to run in the
//! controller, and both ends read at the same `now`), and anything else is an Error naming the
//! forms accepted.
//!
//! The address comes from the metric or, as in Argo, from `ARGO_ROLLOUTS_PROMETHEUS_ADDRESS`.
//! Basic authentication is written in the address (`https://user:password@host`), a bearer
//! token as an `Authorization` header, or fetched with `authentication.oauth2` (client
//! credentials). `authentication.sigv4` (Amazon Managed Prometheus) signs the request with
//! SigV4 for the service `aps`, in `sigv4.region` (else `AWS_REGION`), with the credentials the
//! AWS SDKs would find (`sigv4.profile` if given) and, with `sigv4.roleArn`, the role assumed
//! with them through STS ([`super::aws`]). Argo signs when the address contains
//! `aps-workspaces`, whether or not `sigv4` is written; Sluice signs in that case too, and
//! also when `sigv4` is written for another address (an AMP workspace behind a proxy), where
//! Argo would send the request unsigned. `timeout` (seconds, default 30, at most
//! `limits.max_timeout`) bounds both Prometheus' evaluation and the whole request, STS included.
//! Query strings are encoded as SigV4 canonicalises them (`%20`), signed or not.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::Deserialize;
use sluice_analysis::{
    condition::{MetricValue, format_float},
    limits::AnalysisLimits,
    plan::error_measurement,
};
use sluice_api::{
    Measurement, Metric, MetricProvider, PrometheusMetric, PrometheusRangeQuery,
    vocab::RESOLVED_QUERY_KEY,
};

use crate::analysis::evaluator::Evaluator;

use super::{
    Context, Provider, ProviderError, RunRef, TokenBounds,
    aws::{self, Aws},
    body, error_chain, measured, oauth2_token, query_failed,
};

/// Environment variable giving the address when a metric has none (Argo's name).
pub const ADDRESS_ENV: &str = "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS";
/// Timeout when the metric gives none (Argo's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The SigV4 signing name of Amazon Managed Prometheus.
pub const AMP_SERVICE: &str = "aps";
/// What Argo looks for in an address to sign its requests with SigV4.
pub const AMP_HOST_MARK: &str = "aps-workspaces";
/// The longest `rangeQuery.start` or `end` expression read.
pub const MAX_TIME_EXPRESSION_BYTES: usize = 256;

/// Queries Prometheus servers; the HTTP clients and AWS credentials are shared by every
/// measurement.
pub struct PrometheusProvider {
    http: super::HttpClients,
    aws: Aws,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

/// The range of a range query, resolved at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Range {
    start: Timestamp,
    end: Timestamp,
    step: Duration,
}

impl PrometheusProvider {
    /// Builds the HTTP clients (one verifying certificates, one for `insecure: true`), with the
    /// context's AWS settings for `sigv4`.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        let limits = &context.limits;
        let http = super::HttpClients::new(limits)?;
        let aws = Aws::new(
            context.aws.clone(),
            http.get(None).clone(),
            limits.max_response_bytes,
        );
        Ok(Self {
            http,
            aws,
            evaluator: context.evaluator.clone(),
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
        let sigv4 = spec.authentication.as_ref().and_then(|a| a.sigv4.as_ref());
        let oauth2 = spec.authentication.as_ref().and_then(|a| a.oauth2.as_ref());
        let signed = sigv4.is_some() || address.contains(AMP_HOST_MARK);
        if signed && oauth2.is_some() {
            return Err(
                "prometheus authentication: sigv4 and oauth2 cannot be used together".to_owned(),
            );
        }
        let range = spec
            .range_query
            .as_ref()
            .map(|r| range_of(r, Timestamp::now()))
            .transpose()?;
        let timeout = body::capped_timeout(spec.timeout, DEFAULT_TIMEOUT, self.limits.max_timeout);
        let timeout_text = format!("{}ms", timeout.as_millis());
        let mut url = api_url(
            &parsed,
            if range.is_some() {
                "query_range"
            } else {
                "query"
            },
        );
        let range_text = range.map(|r| {
            (
                unix_seconds(r.start),
                unix_seconds(r.end),
                format_float(r.step.as_secs_f64()),
            )
        });
        let mut pairs = vec![("query", query)];
        if let Some((start, end, step)) = &range_text {
            pairs.extend([
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", step.as_str()),
            ]);
        }
        pairs.push(("timeout", timeout_text.as_str()));
        url.set_query(Some(&aws::query_string(&pairs)));
        let mut headers = Vec::with_capacity(spec.headers.len());
        for header in &spec.headers {
            let name = reqwest::header::HeaderName::from_bytes(header.key.as_bytes())
                .map_err(|e| format!("header name {:?}: {e}", header.key))?;
            let value = reqwest::header::HeaderValue::from_str(&header.value)
                .map_err(|e| format!("header {:?} value: {e}", header.key))?;
            headers.push((name, value));
        }
        let http = self.http.get(spec.insecure);
        let max_bytes = self.limits.max_response_bytes;
        let work = async move {
            let mut request = http.get(url.clone());
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            if let Some(oauth2) = oauth2 {
                let bounds = TokenBounds {
                    max_bytes,
                    allowed_hosts: None,
                };
                let token = oauth2_token(http, oauth2, bounds).await?;
                let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| format!("oauth2 token: {e}"))?;
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            if signed {
                for (name, value) in self.signature(sigv4, &url, &headers).await? {
                    request = request.header(name, value);
                }
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
        parse_answer(status, &answer, range.is_some())
    }

    /// The SigV4 headers of a GET of `url` with `headers` for Amazon Managed Prometheus.
    async fn signature(
        &self,
        sigv4: Option<&sluice_api::Sigv4Config>,
        url: &reqwest::Url,
        headers: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)],
    ) -> Result<Vec<(String, String)>, String> {
        let region = self
            .aws
            .region(sigv4.and_then(|s| s.region.as_deref()))
            .map_err(|e| format!("sigv4: {e}"))?;
        let credentials = self
            .aws
            .credentials(
                sigv4.and_then(|s| s.profile.as_deref()),
                sigv4.and_then(|s| s.role_arn.as_deref()),
                &region,
            )
            .await
            .map_err(|e| format!("sigv4: {e}"))?;
        let signed_headers: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        // The signed host is the one sent: never with the user and password of the address.
        let mut url = url.clone();
        let _ = url.set_password(None);
        let _ = url.set_username("");
        let signable = aws::Signable {
            method: "GET",
            url: &url,
            headers: &signed_headers,
            body: b"",
        };
        aws::sign(
            &signable,
            &credentials,
            &region,
            AMP_SERVICE,
            std::time::SystemTime::now(),
        )
        .map_err(|e| format!("sigv4: {e}"))
    }
}

/// The range of `rangeQuery` at `now`: both ends read with [`range_time`] at the same instant.
fn range_of(range: &PrometheusRangeQuery, now: Timestamp) -> Result<Range, String> {
    let field = |name: &str, value: Option<&String>| {
        value
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("prometheus rangeQuery.{name} is not set"))
            .map(str::to_owned)
    };
    let start_text = field("start", range.start.as_ref())?;
    let end_text = field("end", range.end.as_ref())?;
    let step_text = field("step", range.step.as_ref())?;
    let start = range_time(&start_text, now)
        .map_err(|e| format!("prometheus rangeQuery.start {start_text:?}: {e}"))?;
    let end = range_time(&end_text, now)
        .map_err(|e| format!("prometheus rangeQuery.end {end_text:?}: {e}"))?;
    let step = go_duration(&step_text)
        .ok()
        .and_then(|(negative, step)| (!negative && !step.is_zero()).then_some(step))
        .ok_or_else(|| {
            format!("prometheus rangeQuery.step {step_text:?} is not a positive duration (1m, 30s)")
        })?;
    Ok(Range { start, end, step })
}

/// The instant a `rangeQuery.start` or `end` expression names at `now`. Accepted: `now()`,
/// followed by any number of `+` or `-` `duration("<Go duration>")` terms (quotes `"`, `'` or
/// a backtick), whitespace anywhere between tokens; nothing else.
pub fn range_time(expression: &str, now: Timestamp) -> Result<Timestamp, String> {
    const FORMS: &str = "write now() or now() - duration(\"5m\")";
    if expression.len() > MAX_TIME_EXPRESSION_BYTES {
        return Err(format!(
            "longer than {MAX_TIME_EXPRESSION_BYTES} bytes; {FORMS}"
        ));
    }
    let mut rest = expression.trim_start();
    let eat = |token: &str, rest: &mut &str| match rest.strip_prefix(token) {
        Some(after) => {
            *rest = after.trim_start();
            true
        }
        None => false,
    };
    if !(eat("now", &mut rest) && eat("(", &mut rest) && eat(")", &mut rest)) {
        return Err(format!("not a time Sluice can read; {FORMS}"));
    }
    let mut time = now;
    while !rest.is_empty() {
        let minus = if eat("-", &mut rest) {
            true
        } else if eat("+", &mut rest) {
            false
        } else {
            return Err(format!("unexpected {rest:?}; {FORMS}"));
        };
        if !(eat("duration", &mut rest) && eat("(", &mut rest)) {
            return Err(format!("expected duration(\"…\") at {rest:?}; {FORMS}"));
        }
        let quote = rest
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
            .ok_or_else(|| format!("expected a quoted duration at {rest:?}; {FORMS}"))?;
        let inner = &rest[quote.len_utf8()..];
        let close = inner
            .find(quote)
            .ok_or_else(|| format!("unterminated string at {rest:?}"))?;
        let written = &inner[..close];
        rest = inner[close + quote.len_utf8()..].trim_start();
        if !eat(")", &mut rest) {
            return Err(format!("expected \")\" at {rest:?}; {FORMS}"));
        }
        let (negative, length) = go_duration(written)?;
        let signed = jiff::SignedDuration::try_from(length)
            .map_err(|e| format!("duration {written:?}: {e}"))?;
        time = if minus != negative {
            time.checked_sub(signed)
        } else {
            time.checked_add(signed)
        }
        .map_err(|e| format!("duration {written:?} leads out of the calendar: {e}"))?;
    }
    Ok(time)
}

/// A Go duration (`time.ParseDuration`: `5m`, `1h30m`, `-90s`, `0`) as a sign and a length.
fn go_duration(written: &str) -> Result<(bool, Duration), String> {
    let (negative, unsigned) = match written.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, written.strip_prefix('+').unwrap_or(written)),
    };
    if unsigned == "0" {
        return Ok((negative, Duration::ZERO));
    }
    // Go refuses a number without a unit; Sluice's own parser would read it as seconds.
    if unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "duration {written:?} has no unit; use ns, us, ms, s, m or h"
        ));
    }
    sluice_api::Duration::parse(unsigned)
        .map(|d| (negative, d.as_std()))
        .map_err(|e| e.to_string())
}

/// A time as Prometheus' API reads it: Unix seconds, to the millisecond.
fn unix_seconds(time: Timestamp) -> String {
    let millis = time.as_millisecond();
    format!(
        "{}{}.{:03}",
        if millis < 0 { "-" } else { "" },
        (millis / 1000).unsigned_abs(),
        (millis % 1000).unsigned_abs()
    )
}

/// An address as a message may show it: without the user and password written in it.
fn without_credentials(address: &reqwest::Url) -> String {
    let mut shown = address.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// The URL of the query API `endpoint` (`query`, `query_range`) under a Prometheus address
/// (which may have a path prefix, `http://host/prometheus`).
fn api_url(address: &reqwest::Url, endpoint: &str) -> reqwest::Url {
    let mut url = address.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/api/v1/{endpoint}"));
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

/// The result of a query, by its `resultType`.
#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar(Sample),
    Matrix(Vec<RangeSeries>),
    String(serde::de::IgnoredAny),
}

/// One series of an instant vector: its sample (`value`), or a native histogram.
#[derive(Deserialize)]
struct Series {
    value: Option<Sample>,
}

/// One series of a range vector: its samples (`values`), or native histograms.
#[derive(Deserialize)]
struct RangeSeries {
    #[serde(default)]
    values: Vec<Sample>,
    histograms: Option<serde::de::IgnoredAny>,
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

/// Numbers as the array a condition sees and as text (`[0.05,NaN]`).
fn array(values: Vec<f64>) -> (MetricValue, String) {
    let text = format!(
        "[{}]",
        values
            .iter()
            .map(|v| format_float(*v))
            .collect::<Vec<_>>()
            .join(",")
    );
    (MetricValue::from(values), text)
}

/// The result of a query from Prometheus' answer: a vector is an array of numbers, a scalar a
/// number and, for a range query (`range`), a matrix the array of all its samples; an error
/// answer carries Prometheus' reason (`bad_data: parse error ...`).
fn parse_answer(
    status: reqwest::StatusCode,
    answer: &[u8],
    range: bool,
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
        Some(Data::Vector(series)) if !range => {
            let values = series
                .iter()
                .map(|s| {
                    s.value.as_ref().map_or_else(
                        || Err("native histogram samples are not supported".to_owned()),
                        Sample::number,
                    )
                })
                .collect::<Result<Vec<f64>, String>>()?;
            Ok(array(values))
        }
        Some(Data::Scalar(sample)) if !range => {
            let value = sample.number()?;
            Ok((MetricValue::Float(value), format_float(value)))
        }
        Some(Data::Matrix(series)) if range => {
            let mut values = Vec::new();
            for s in &series {
                if s.values.is_empty() && s.histograms.is_some() {
                    return Err("native histogram samples are not supported".to_owned());
                }
                for sample in &s.values {
                    values.push(sample.number()?);
                }
            }
            Ok(array(values))
        }
        Some(Data::Matrix(_)) => Err(
            "Prometheus metric type not supported: the query returned a range vector; use an instant query"
                .to_owned(),
        ),
        Some(Data::String(_)) => {
            Err("Prometheus metric type not supported: the query returned a string".to_owned())
        }
        Some(Data::Vector(_) | Data::Scalar(_)) => Err(
            "Prometheus metric type not supported: the range query did not return a matrix"
                .to_owned(),
        ),
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
                Err(message) => query_failed(self.kind(), metric, started, message),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn range_times_are_the_forms_argo_documents() {
        let now = at("2024-05-01T12:00:00Z");
        assert_eq!(range_time("now()", now), Ok(now));
        assert_eq!(
            range_time(r#"now() - duration("5m")"#, now),
            Ok(at("2024-05-01T11:55:00Z"))
        );
        assert_eq!(
            range_time("  now ( ) -duration( '1h30m' )+ duration(`30s`) ", now),
            Ok(at("2024-05-01T10:30:30Z"))
        );
        assert_eq!(
            range_time(r#"now() + duration("-90s")"#, now),
            Ok(at("2024-05-01T11:58:30Z"))
        );
        assert_eq!(
            range_time(r#"now() - duration("1.5h")"#, now),
            Ok(at("2024-05-01T10:30:00Z"))
        );
        for bad in [
            "",
            "now",
            "now() - 5m",
            r#"now() * duration("5m")"#,
            r#"duration("5m")"#,
            r#"now() - duration("5")"#,
            r#"now() - duration("5d")"#,
            r#"now() - duration("5m"#,
            r#"now() - duration("5m") x"#,
            r#"date("2024-01-01")"#,
            r#"now() - duration("1000000000h")"#,
        ] {
            assert!(range_time(bad, now).is_err(), "{bad:?}");
        }
        let long = format!("now(){}", r#" - duration("1s")"#.repeat(20));
        assert!(range_time(&long, now).unwrap_err().contains("longer than"));
    }

    #[test]
    fn a_range_needs_start_end_and_a_positive_step() {
        let now = at("2024-05-01T12:00:00Z");
        let range = |start: &str, end: &str, step: &str| {
            let written = PrometheusRangeQuery {
                start: Some(start.into()),
                end: Some(end.into()),
                step: Some(step.into()),
            };
            range_of(&written, now)
        };
        assert_eq!(
            range(r#"now() - duration("5m")"#, "now()", "1m"),
            Ok(Range {
                start: at("2024-05-01T11:55:00Z"),
                end: now,
                step: Duration::from_secs(60),
            })
        );
        assert!(
            range("now()", "now()", "0s")
                .unwrap_err()
                .contains("positive")
        );
        assert!(range("now()", "now()", "soon").is_err());
        assert!(
            range("yesterday", "now()", "1m")
                .unwrap_err()
                .starts_with("prometheus rangeQuery.start \"yesterday\"")
        );
        assert!(
            range_of(&PrometheusRangeQuery::default(), now)
                .unwrap_err()
                .contains("rangeQuery.start is not set")
        );
        assert_eq!(
            unix_seconds(at("2024-05-01T12:00:00.25Z")),
            "1714564800.250"
        );
    }

    #[test]
    fn a_matrix_is_every_sample_of_every_series() {
        let ok = reqwest::StatusCode::OK;
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"code":"200"},"values":[[1714564800,"95"],[1714564860,"96"]]},
            {"metric":{"code":"500"},"values":[[1714564800,"5"],[1714564860,"NaN"]]}]}}"#;
        let (value, text) = parse_answer(ok, matrix, true).unwrap();
        assert_eq!(text, "[95,96,5,NaN]");
        assert!(matches!(&value, MetricValue::Array(v) if v.len() == 4));
        let empty = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse_answer(ok, empty, true).unwrap().1, "[]");
        assert!(
            parse_answer(ok, matrix, false)
                .unwrap_err()
                .contains("range vector")
        );
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(
            parse_answer(ok, vector, true)
                .unwrap_err()
                .contains("did not return a matrix")
        );
        let histograms = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"histograms":[[1,{"count":"1"}]]}]}}"#;
        assert!(
            parse_answer(ok, histograms, true)
                .unwrap_err()
                .contains("histogram")
        );
        let refused = br#"{"status":"error","errorType":"bad_data","error":"end timestamp must not be before start time"}"#;
        assert_eq!(
            parse_answer(reqwest::StatusCode::BAD_REQUEST, refused, true).unwrap_err(),
            "bad_data: end timestamp must not be before start time"
        );
    }
}
