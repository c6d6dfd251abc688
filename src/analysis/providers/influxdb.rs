//! The `influxdb` provider: a Flux query (`POST <address>/api/v2/query?org=<org>`), its
//! annotated CSV answer read up to `limits.max_response_bytes` and parsed here.
//!
//! As in Argo Rollouts (which uses influxdb-client-go v2): the address, token and organisation
//! come from the Secret named by `profile` (default `influxdb`) in the controller's namespace,
//! keys `address`, `authToken` and `org`, all three required. The request carries
//! `Authorization: Token <authToken>` and `Content-Type: application/json`, and its body is
//! the client's: `{"query": ..., "type": "flux", "dialect": {"annotations": ["datatype",
//! "group", "default"], "delimiter": ",", "header": true}}`. The path is `api/v2/query` under
//! the address's own path. `result` is an array of the `_value` of every record of every table,
//! in the answer's order, typed by the `#datatype` annotation (double → number, long and
//! unsignedLong → integer, boolean, string; times, durations and base64 as the text InfluxDB
//! wrote; an empty cell takes the column's `#default`, else null), so conditions read
//! `result[0]`. The value recorded is that array as Go prints it (`[0.5 0.25]`). An answer
//! with no record is an Error (`no results returned from flux query`), as is an answer outside
//! 2xx (with InfluxDB's message). Argo waits 30 s; so does Sluice, at most `limits.max_timeout`.
//!
//! Sluice differs where Argo would judge part of an answer: annotated CSV that does not parse
//! (a row whose width is not its table's, a value that is not of its column's type, rows before
//! any annotation), and an error table that InfluxDB writes mid-answer, are Errors, where Argo
//! evaluates the conditions on the records read before them. The request asks no gzip
//! (`Accept-Encoding`), so InfluxDB answers plain CSV; the content is the same.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::Serialize;
use sluice_analysis::{
    condition::{MetricValue, format_float},
    limits::AnalysisLimits,
    plan::error_measurement,
};
use sluice_api::{InfluxdbMetric, Measurement, Metric, MetricProvider};

use crate::analysis::evaluator::Evaluator;

use super::{
    Context, Provider, ProviderError, RunRef, body, exchange, measured, query_failed, read_secret,
};

/// The Secret read when a metric names no `profile` (Argo's default).
pub const DEFAULT_PROFILE: &str = "influxdb";
/// How long a query may take (Argo's default), at most `limits.max_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs Flux queries on InfluxDB; the HTTP client is shared by every measurement.
pub struct InfluxdbProvider {
    http: super::HttpClients,
    client: Option<kube::Client>,
    namespace: String,
    evaluator: Arc<Evaluator>,
    limits: AnalysisLimits,
}

/// Where and as whom a profile's Secret says to query.
struct Profile {
    address: reqwest::Url,
    token: String,
    org: String,
}

/// The request body, in influxdb-client-go's field order.
#[derive(Serialize)]
struct QueryBody<'a> {
    query: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    dialect: Dialect,
}

/// The CSV dialect influxdb-client-go asks for: every annotation, a header row, commas.
#[derive(Serialize)]
struct Dialect {
    annotations: [&'static str; 3],
    delimiter: &'static str,
    header: bool,
}

impl InfluxdbProvider {
    /// Builds the provider from the registry's shared pieces.
    pub fn new(context: &Context) -> Result<Self, ProviderError> {
        Ok(Self {
            http: super::HttpClients::new(&context.limits)?,
            client: context.client.clone(),
            namespace: context.namespace.clone(),
            evaluator: context.evaluator.clone(),
            limits: context.limits.clone(),
        })
    }

    /// The profile of a metric, from its Secret in the controller's namespace.
    async fn profile(&self, spec: &InfluxdbMetric) -> Result<Profile, String> {
        let name = spec
            .profile
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_PROFILE);
        let data = read_secret(self.client.as_ref(), &self.namespace, name).await?;
        let get = |key: &str| {
            data.get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let (Some(address), Some(token), Some(org)) =
            (get("address"), get("authToken"), get("org"))
        else {
            let missing: Vec<&str> = ["address", "authToken", "org"]
                .into_iter()
                .filter(|k| get(k).is_none())
                .collect();
            return Err(format!(
                "Secret {}/{name}: authToken, org, or address not found (missing: {})",
                self.namespace,
                missing.join(", ")
            ));
        };
        let parsed = reqwest::Url::parse(&address).map_err(|e| {
            format!(
                "Secret {}/{name}: address is not a valid URL: {e}",
                self.namespace
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "Secret {}/{name}: address {} must be an http or https URL with a host",
                self.namespace,
                without_credentials(&parsed)
            ));
        }
        Ok(Profile {
            address: parsed,
            token,
            org,
        })
    }

    /// Runs the metric's query: the `_value`s of its records, and their text.
    async fn query(&self, spec: &InfluxdbMetric) -> Result<(Vec<MetricValue>, String), String> {
        let query = spec
            .query
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .ok_or("influxdb query is empty")?;
        let profile = self.profile(spec).await?;
        let url = query_url(&profile.address, &profile.org);
        let shown = without_credentials(&url);
        let body = serde_json::to_vec(&QueryBody {
            query,
            kind: "flux",
            dialect: Dialect {
                annotations: ["datatype", "group", "default"],
                delimiter: ",",
                header: true,
            },
        })
        .map_err(|e| format!("encoding the influxdb query: {e}"))?;
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Token {}", profile.token))
                .map_err(|_| "the authToken is not a valid header value".to_owned())?;
        authorization.set_sensitive(true);
        let request = self
            .http
            .get(None)
            .post(url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let timeout = body::capped_timeout(None, DEFAULT_TIMEOUT, self.limits.max_timeout);
        tracing::debug!(url = %shown, "querying influxdb");
        let (status, answer) =
            exchange(request, timeout, self.limits.max_response_bytes, "influxdb")
                .await
                .map_err(|e| format!("influxdb query {shown}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "influxdb answered {status} to {shown}: {}",
                error_message(&answer)
            ));
        }
        let values = parse_csv(&answer)?;
        if values.is_empty() {
            return Err("no results returned from flux query".to_owned());
        }
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

/// The query URL under an address (which may have a path prefix): `api/v2/query?org=<org>`.
fn query_url(address: &reqwest::Url, org: &str) -> reqwest::Url {
    let mut url = address.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/api/v2/query"));
    url.set_query(None);
    url.set_fragment(None);
    url.query_pairs_mut().append_pair("org", org);
    url
}

/// InfluxDB's reason in an error answer: `message` (v2) or `error` (1.x) of its JSON, else the
/// start of the text.
fn error_message(answer: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    field("message")
        .or_else(|| field("error"))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
                .trim()
                .to_owned()
        })
}

/// One column of an annotated CSV table.
#[derive(Clone, Default)]
struct Column {
    name: String,
    datatype: String,
    default: String,
}

/// Where the reader is in a table's preamble.
#[derive(PartialEq)]
enum State {
    /// Reading records (or about to meet a new table's annotations).
    Normal,
    /// Reading annotation rows; the first row without one is the header.
    Annotation,
    /// The table is an error table: the next row holds InfluxDB's error.
    Error,
}

/// A cell as its column's type says, as influxdb-client-go reads it; an empty cell is null.
fn typed(text: &str, column: &Column) -> Result<MetricValue, String> {
    if text.is_empty() {
        return Ok(MetricValue::Nil);
    }
    let bad = || {
        format!(
            "influxdb answered {text:?} in column {} of type {}",
            column.name, column.datatype
        )
    };
    Ok(match column.datatype.as_str() {
        "string" | "dateTime:RFC3339" | "dateTime:RFC3339Nano" | "duration" | "base64Binary" => {
            MetricValue::String(text.to_owned())
        }
        "double" => MetricValue::Float(text.parse::<f64>().map_err(|_| bad())?),
        "boolean" => MetricValue::Bool(!text.eq_ignore_ascii_case("false")),
        "long" => MetricValue::Int(text.parse::<i64>().map_err(|_| bad())?),
        "unsignedLong" => {
            let n = text.parse::<u64>().map_err(|_| bad())?;
            i64::try_from(n).map_or(MetricValue::Float(n as f64), MetricValue::Int)
        }
        other => {
            return Err(format!(
                "influxdb answered column {} of unknown data type {other:?}",
                column.name
            ));
        }
    })
}

/// The `_value` of every record of an annotated CSV answer (`#datatype`, `#group`, `#default`
/// rows, a header, records; tables one after another), in order. An error table
/// (`,error,reference`) is an Error with InfluxDB's message.
pub fn parse_csv(answer: &[u8]) -> Result<Vec<MetricValue>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(answer);
    let mut columns: Option<Vec<Column>> = None;
    let mut state = State::Normal;
    let mut datatype_found = false;
    let mut values = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| format!("influxdb answered CSV that does not parse: {e}"))?;
        if row.len() <= 1 {
            continue;
        }
        let first = row.get(0).unwrap_or_default();
        if first.starts_with('#') && state == State::Normal {
            columns = Some(vec![Column::default(); row.len() - 1]);
            state = State::Annotation;
            datatype_found = false;
        }
        let Some(table) = columns.as_mut() else {
            return Err("influxdb answered CSV without annotations".to_owned());
        };
        if row.len() - 1 != table.len() {
            return Err(format!(
                "influxdb answered a row of {} columns in a table of {}",
                row.len() - 1,
                table.len()
            ));
        }
        let cells = row.iter().skip(1);
        match first {
            "#datatype" => {
                datatype_found = true;
                table
                    .iter_mut()
                    .zip(cells)
                    .for_each(|(c, v)| c.datatype = v.to_owned());
            }
            "#default" => table
                .iter_mut()
                .zip(cells)
                .for_each(|(c, v)| c.default = v.to_owned()),
            "" => match state {
                State::Annotation => {
                    if !datatype_found {
                        return Err("influxdb answered a table without #datatype".to_owned());
                    }
                    if row.get(1) == Some("error") {
                        state = State::Error;
                    } else {
                        table
                            .iter_mut()
                            .zip(cells)
                            .for_each(|(c, v)| c.name = v.to_owned());
                        state = State::Normal;
                    }
                }
                State::Error => {
                    let message = row
                        .get(1)
                        .filter(|m| !m.is_empty())
                        .unwrap_or("unknown query error");
                    let reference = row
                        .get(2)
                        .filter(|r| !r.is_empty())
                        .map(|r| format!(" (reference {r})"))
                        .unwrap_or_default();
                    return Err(format!("influxdb query failed: {message}{reference}"));
                }
                State::Normal => {
                    let mut value = MetricValue::Nil;
                    for (column, cell) in table.iter().zip(cells) {
                        let text = if cell.is_empty() {
                            column.default.as_str()
                        } else {
                            cell
                        };
                        let typed = typed(text, column)?;
                        if column.name == "_value" {
                            value = typed;
                        }
                    }
                    values.push(value);
                }
            },
            // `#group`, and annotations this reader does not use.
            _ => {}
        }
    }
    if state == State::Error {
        return Err("influxdb query failed: unknown query error".to_owned());
    }
    Ok(values)
}

/// One value as Go's `fmt.Sprint` shows it.
fn show_value(value: &MetricValue) -> String {
    match value {
        MetricValue::Nil => "<nil>".to_owned(),
        MetricValue::Bool(b) => b.to_string(),
        MetricValue::Int(i) => i.to_string(),
        MetricValue::Float(f) => format_float(*f),
        MetricValue::String(s) => s.clone(),
        MetricValue::Array(items) => {
            let shown: Vec<String> = items.iter().map(show_value).collect();
            format!("[{}]", shown.join(" "))
        }
        MetricValue::Map(map) => {
            let shown: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", show_value(v)))
                .collect();
            format!("map[{}]", shown.join(" "))
        }
    }
}

/// The values as Argo records them (`fmt.Sprint` of the array): `[0.5 0.25]`.
pub fn show_values(values: &[MetricValue]) -> String {
    show_value(&MetricValue::Array(values.to_vec()))
}

impl Provider for InfluxdbProvider {
    fn kind(&self) -> &'static str {
        "influxdb"
    }

    fn measure<'a>(
        &'a self,
        _run: &'a RunRef,
        metric: &'a Metric,
        _attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let started = Timestamp::now();
            let MetricProvider::Influxdb(spec) = &metric.provider else {
                return error_measurement("not an influxdb metric", started);
            };
            match self.query(spec).await {
                Ok((values, text)) => {
                    measured(
                        &self.evaluator,
                        metric,
                        &MetricValue::Array(values),
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

    const ANSWER: &str = "#datatype,string,long,dateTime:RFC3339,double,string\r\n\
        #group,false,false,false,false,true\r\n\
        #default,_result,,,,\r\n\
        ,result,table,_time,_value,app\r\n\
        ,,0,2026-12-03T06:42:03Z,0.5,web\r\n\
        ,,0,2026-12-03T06:42:13Z,0.25,web\r\n\
        \r\n\
        #datatype,string,long,dateTime:RFC3339,long,boolean,unsignedLong\r\n\
        #group,false,false,false,false,false,false\r\n\
        #default,_result,,,7,,\r\n\
        ,result,table,_time,_value,ok,big\r\n\
        ,,1,2026-12-03T06:42:13Z,3,true,18446744073709551615\r\n\
        ,,1,2026-12-03T06:42:23Z,,FALSE,1\r\n\
        \r\n";

    #[test]
    fn values_of_every_table_are_the_result_typed_by_their_annotations() {
        let values = parse_csv(ANSWER.as_bytes()).unwrap();
        assert_eq!(
            values,
            vec![
                MetricValue::Float(0.5),
                MetricValue::Float(0.25),
                MetricValue::Int(3),
                MetricValue::Int(7),
            ]
        );
        assert_eq!(show_values(&values), "[0.5 0.25 3 7]");
    }

    #[test]
    fn cells_are_typed_as_the_go_client_types_them() {
        let column = |datatype: &str| Column {
            name: "_value".into(),
            datatype: datatype.into(),
            default: String::new(),
        };
        assert!(matches!(typed("NaN", &column("double")), Ok(MetricValue::Float(f)) if f.is_nan()));
        assert_eq!(
            typed("+Inf", &column("double")).unwrap(),
            MetricValue::Float(f64::INFINITY)
        );
        assert_eq!(
            typed("x", &column("boolean")).unwrap(),
            MetricValue::Bool(true)
        );
        assert_eq!(
            typed("a,b", &column("string")).unwrap(),
            MetricValue::String("a,b".into())
        );
        assert_eq!(
            typed("1h2m", &column("duration")).unwrap(),
            MetricValue::String("1h2m".into())
        );
        assert_eq!(typed("", &column("double")).unwrap(), MetricValue::Nil);
        assert!(
            typed("1.5", &column("long"))
                .unwrap_err()
                .contains("type long")
        );
        assert!(
            typed("1", &column("decimal"))
                .unwrap_err()
                .contains("unknown data type")
        );
    }

    #[test]
    fn an_error_table_and_malformed_csv_are_errors() {
        let error = "#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,\"failed to execute query: boom\",897\n";
        assert_eq!(
            parse_csv(error.as_bytes()).unwrap_err(),
            "influxdb query failed: failed to execute query: boom (reference 897)"
        );
        // Records read before the error table do not make a result.
        let partial = format!("{ANSWER}{error}");
        assert!(parse_csv(partial.as_bytes()).is_err());
        assert!(
            parse_csv(b",result,table,_value\n,,0,1\n")
                .unwrap_err()
                .contains("without annotations")
        );
        let short =
            "#datatype,string,double\n#group,false,false\n#default,,\n,result,_value\n,,1,2\n";
        assert!(parse_csv(short.as_bytes()).unwrap_err().contains("columns"));
        let untyped = "#group,false,false\n,result,_value\n,,1\n";
        assert!(
            parse_csv(untyped.as_bytes())
                .unwrap_err()
                .contains("#datatype")
        );
        let bad =
            "#datatype,string,double\n#group,false,false\n#default,,\n,result,_value\n,,abc\n";
        assert!(
            parse_csv(bad.as_bytes())
                .unwrap_err()
                .contains("of type double")
        );
    }

    #[test]
    fn an_empty_answer_has_no_values_and_missing_value_columns_are_null() {
        assert_eq!(parse_csv(b"").unwrap(), vec![]);
        assert_eq!(parse_csv(b"\r\n").unwrap(), vec![]);
        let no_value = "#datatype,string,long,double\n#group,false,false,false\n#default,_result,,\n,result,table,mean\n,,0,1.5\n";
        assert_eq!(
            parse_csv(no_value.as_bytes()).unwrap(),
            vec![MetricValue::Nil]
        );
        assert_eq!(show_values(&[MetricValue::Nil]), "[<nil>]");
    }

    #[test]
    fn the_request_is_influxdb_client_go_s() {
        let url = |a: &str| {
            query_url(&reqwest::Url::parse(a).unwrap(), "my org")
                .as_str()
                .to_owned()
        };
        assert_eq!(
            url("http://influx:8086"),
            "http://influx:8086/api/v2/query?org=my+org"
        );
        assert_eq!(
            url("https://h/influx/?x=1"),
            "https://h/influx/api/v2/query?org=my+org"
        );
        let body = serde_json::to_string(&QueryBody {
            query: "from(bucket: \"b\")",
            kind: "flux",
            dialect: Dialect {
                annotations: ["datatype", "group", "default"],
                delimiter: ",",
                header: true,
            },
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"query":"from(bucket: \"b\")","type":"flux","dialect":{"annotations":["datatype","group","default"],"delimiter":",","header":true}}"#
        );
        assert_eq!(
            error_message(br#"{"code":"invalid","message":"bad"}"#),
            "bad"
        );
        assert_eq!(
            error_message(br#"{"error":"authorization failed"}"#),
            "authorization failed"
        );
        assert_eq!(error_message(b" oops "), "oops");
    }
}
