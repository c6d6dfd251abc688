//! The `graphite` provider: Graphite's render API (`GET <address>/render?<query>&format=json`),
//! its answer read up to `limits.max_response_bytes` and parsed here.
//!
//! As in Argo Rollouts, `query` is the render API's own parameters (`target=...`, and `from=`,
//! `until=` when the template gives them; Graphite's defaults otherwise): every run of
//! whitespace in it becomes one space, its parameters are sorted and re-encoded as Go's
//! `url.Values` does, and `format=json` is set (replacing any other `format`). The path is
//! `render` under the address's own path (`http://host/graphite` asks `/graphite/render`).
//! `result` is an array of the non-null values of the **first** series Graphite answers, in
//! time order (`result[0]` is the oldest); other series are ignored. The value recorded is that
//! array as Argo writes it, six decimals each (`[1.500000,2.500000]`). An answer with no series,
//! or whose first series has no datapoints, is an Error (`no values found`). Graphite has no
//! authentication in Argo; a user and password written in the address are sent as basic
//! authentication, as Go's HTTP client does, and never shown in a message. Argo waits 10 s;
//! so does Sluice, at most `limits.max_timeout`.
//!
//! Sluice differs where Argo would judge nothing or panic: a first series whose datapoints are
//! all null is an Error (`no values found`), where Argo evaluates the conditions on `[]`; an
//! answer with no series is an Error, where Argo's provider indexes past the end; an answer
//! outside 2xx is an Error (Argo only refuses 4xx and 5xx).

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use sluice_analysis::{condition::MetricValue, limits::AnalysisLimits, plan::error_measurement};
use sluice_api::{GraphiteMetric, Measurement, Metric, MetricProvider};

use crate::analysis::evaluator::Evaluator;

use super::{Context, Provider, ProviderError, RunRef, body, exchange, measured, query_failed};

/// How long a query may take (Argo's client timeout), at most `limits.max_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Queries Graphite servers; the HTTP client is shared by every measurement.
pub struct GraphiteProvider {
    http: super::HttpClients,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

impl GraphiteProvider {
    /// Builds the provider from the registry's shared pieces.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        Ok(Self {
            http: super::HttpClients::new(&context.limits)?,
            evaluator: context.evaluator.clone(),
            limits: context.limits.clone(),
        })
    }

    /// Runs the metric's query: the values of its first series, and their text.
    async fn query(&self, spec: &GraphiteMetric) -> Result<(Vec<f64>, String), String> {
        let address = spec
            .address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .ok_or("graphite address is not set")?;
        let parsed = reqwest::Url::parse(address)
            .map_err(|e| format!("graphite address {address:?} is not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "graphite address {} must be an http or https URL with a host",
                without_credentials(&parsed)
            ));
        }
        let query = spec
            .query
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .ok_or("graphite query is empty")?;
        let url = render_url(&parsed, query);
        let shown = without_credentials(&url);
        let timeout = body::capped_timeout(None, DEFAULT_TIMEOUT, self.limits.max_timeout);
        tracing::debug!(url = %shown, "querying graphite");
        let request = self.http.get(None).get(url);
        let (status, answer) =
            exchange(request, timeout, self.limits.max_response_bytes, "graphite")
                .await
                .map_err(|e| format!("graphite query {shown}: {e}"))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
            return Err(format!(
                "graphite answered {status} to {shown}: {}",
                text.trim()
            ));
        }
        let values = parse_render(&answer)?;
        let text = show_values(&values);
        Ok((values, text))
    }
}

/// An address as a message may show it: without a user and password written in it.
fn without_credentials(address: &reqwest::Url) -> String {
    let mut shown = address.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// Every run of whitespace (Go's `\s`: tab, newline, form feed, carriage return, space) as one
/// space, as Argo trims a query before sending it.
fn collapse_whitespace(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut in_space = false;
    for c in query.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c') {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// One `%XX` or `+` decoded as Go's `url.QueryUnescape` does; `None` for a malformed escape.
fn query_unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Text encoded as Go's `url.QueryEscape` does: letters, digits and `-_.~` kept, space as `+`,
/// every other byte as `%XX`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The render API's query string for a metric's `query`, as Argo builds it: whitespace
/// collapsed, anything after a `#` dropped (Go reads it as a fragment), the parameters parsed
/// as Go's `url.ParseQuery` does (a pair with `;` or a malformed escape is dropped),
/// `format=json` set, and all of them encoded sorted by name.
pub fn render_query(query: &str) -> String {
    let collapsed = collapse_whitespace(query);
    let raw = collapsed.split('#').next().unwrap_or_default();
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((query_unescape(key)?, query_unescape(value)?))
        })
        .filter(|(key, _)| key != "format")
        .collect();
    pairs.push(("format".to_owned(), "json".to_owned()));
    // A stable sort keeps the order of a parameter's values (`target=a&target=b`).
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The render URL under an address (which may have a path prefix).
fn render_url(address: &reqwest::Url, query: &str) -> reqwest::Url {
    let mut url = address.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/render"));
    url.set_query(Some(&render_query(query)));
    url.set_fragment(None);
    url
}

/// A datapoint's value: a number, a number written as a string, or null (no value).
fn datapoint_value(point: &serde_json::Value) -> Result<Option<f64>, String> {
    let pair = point.as_array().filter(|p| p.len() == 2).ok_or_else(|| {
        format!("graphite answered a datapoint that is not [value, time]: {point}")
    })?;
    match &pair[0] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("graphite answered a value that is not a number: {n}")),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("graphite answered a value that is not a number: {s:?}")),
        other => Err(format!(
            "graphite answered a value that is not a number: {other}"
        )),
    }
}

/// The values of the first series of a render answer (`[{"target": ..., "datapoints":
/// [[value, time], ...]}, ...]`), nulls left out; no series, no datapoints, or only nulls is an
/// Error.
pub fn parse_render(answer: &[u8]) -> Result<Vec<f64>, String> {
    let series: Vec<serde_json::Value> = serde_json::from_slice(answer)
        .map_err(|e| format!("graphite answered something that is not a list of series: {e}"))?;
    let first = series
        .first()
        .ok_or("no values found: graphite answered no series")?;
    let target = first
        .get("target")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("the first series");
    let points = match first.get("datapoints") {
        Some(serde_json::Value::Array(points)) => points.as_slice(),
        Some(serde_json::Value::Null) | None => &[],
        Some(other) => {
            return Err(format!(
                "graphite answered datapoints that are not a list: {other}"
            ));
        }
    };
    if points.is_empty() {
        return Err(format!("no values found: {target} has no datapoints"));
    }
    let values = points
        .iter()
        .map(datapoint_value)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<f64>>();
    if values.is_empty() {
        return Err(format!(
            "no values found: every datapoint of {target} is null"
        ));
    }
    Ok(values)
}

/// The values as Argo records them: `[1.500000,2.500000]`.
pub fn show_values(values: &[f64]) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
    format!("[{}]", shown.join(","))
}

impl Provider for GraphiteProvider {
    fn kind(&self) -> &'static str {
        "graphite"
    }

    fn measure<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::Graphite(spec) = &metric.provider else {
                return error_measurement("not a graphite metric", started);
            };
            match self.query(spec).await {
                Ok((values, text)) => {
                    measured(
                        &self.evaluator,
                        metric,
                        &MetricValue::from(values),
                        text,
                        started,
                    )
                    .await
                }
                Err(message) => query_failed(self.kind(), metric, started, message),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_collapsed_parsed_sorted_and_asked_as_json() {
        let query = "target=summarize(\n  asPercent(\n    sumSeries(a.b.*),\n    sumSeries(a.*.*)\n  ),\n  '5min',\n  'avg'\n)\n";
        assert_eq!(
            render_query(query),
            "format=json&target=summarize%28+asPercent%28+sumSeries%28a.b.%2A%29%2C+sumSeries%28a.%2A.%2A%29+%29%2C+%275min%27%2C+%27avg%27+%29+"
        );
        // Parameters sorted by name, a name's values kept in order, `format` replaced.
        assert_eq!(
            render_query("until=now&target=b&from=-5min&target=a&format=png"),
            "format=json&from=-5min&target=b&target=a&until=now"
        );
        // Escapes decoded then encoded again; malformed pairs dropped as Go drops them.
        assert_eq!(
            render_query("target=a%2Eb+c&bad=%zz&x;y=1&&from=-1h#frag"),
            "format=json&from=-1h&target=a.b+c"
        );
    }

    #[test]
    fn the_render_url_is_under_the_address_path() {
        let url = |a: &str| {
            render_url(&reqwest::Url::parse(a).unwrap(), "target=x")
                .as_str()
                .to_owned()
        };
        assert_eq!(
            url("http://graphite:8080"),
            "http://graphite:8080/render?format=json&target=x"
        );
        assert_eq!(
            url("https://h/graphite/?old=1"),
            "https://h/graphite/render?format=json&target=x"
        );
        let address = reqwest::Url::parse("http://u:p4ss@h/").unwrap();
        assert_eq!(without_credentials(&address), "http://h/");
    }

    #[test]
    fn the_first_series_values_are_the_result_nulls_left_out() {
        let answer = br#"[
            {"target": "a", "datapoints": [[null, 1], [1.5, 2], ["2.5", 3], [3, 4], [null, 5]]},
            {"target": "b", "datapoints": [[9, 1]]}
        ]"#;
        let values = parse_render(answer).unwrap();
        assert_eq!(values, vec![1.5, 2.5, 3.0]);
        assert_eq!(show_values(&values), "[1.500000,2.500000,3.000000]");
    }

    #[test]
    fn no_series_no_datapoints_only_nulls_and_bad_answers_are_errors() {
        let err = |a: &[u8]| parse_render(a).unwrap_err();
        assert!(err(b"[]").contains("no values found"));
        assert!(err(br#"[{"target": "a", "datapoints": []}]"#).contains("a has no datapoints"));
        assert!(err(br#"[{"target": "a", "datapoints": [[null, 1]]}]"#).contains("null"));
        assert!(err(b"{}").contains("not a list of series"));
        assert!(err(b"<html>").contains("not a list of series"));
        assert!(err(br#"[{"datapoints": [[1]]}]"#).contains("not [value, time]"));
        assert!(err(br#"[{"datapoints": [["x", 1]]}]"#).contains("not a number"));
        assert!(err(br#"[{"datapoints": [[true, 1]]}]"#).contains("not a number"));
        assert!(err(br#"[{"datapoints": 3}]"#).contains("not a list"));
    }

    #[test]
    fn whitespace_is_collapsed_as_go_does() {
        assert_eq!(collapse_whitespace("a \n\t b\r\n"), "a b ");
        assert_eq!(query_escape("a b*~"), "a+b%2A~");
        assert_eq!(query_unescape("a%41+b").as_deref(), Some("aA b"));
        assert_eq!(query_unescape("%4"), None);
    }
}
