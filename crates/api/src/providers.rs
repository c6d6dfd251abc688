//! Metric providers: where an analysis metric takes its measurements from. A metric has
//! exactly one provider, so the provider is an enum keyed like Argo's (`prometheus: {…}`).

use std::collections::BTreeMap;

use k8s_openapi::{api::batch::v1::JobSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CloudWatchMetric, DatadogMetric, GraphiteMetric, InfluxdbMetric, KayentaMetric, NewRelicMetric,
    SkyWalkingMetric, WavefrontMetric, keyed::one_key_map,
};

/// `metric.provider`: exactly one source of measurements.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(rename_all = "camelCase")]
pub enum MetricProvider {
    /// A PromQL query.
    Prometheus(PrometheusMetric),
    /// An HTTP request whose JSON response is the result.
    Web(WebMetric),
    /// A Kubernetes Job: success or failure of the Job is the result (boxed: a Job spec is large).
    Job(Box<JobMetric>),
    /// A Datadog query.
    Datadog(DatadogMetric),
    /// A New Relic NRQL query.
    NewRelic(NewRelicMetric),
    /// A Wavefront query.
    Wavefront(WavefrontMetric),
    /// A Kayenta canary judgement.
    Kayenta(KayentaMetric),
    /// Amazon CloudWatch metric data queries.
    CloudWatch(CloudWatchMetric),
    /// A Graphite query.
    Graphite(GraphiteMetric),
    /// An InfluxDB Flux query.
    Influxdb(InfluxdbMetric),
    /// An Apache SkyWalking query.
    #[schemars(rename = "skywalking")]
    SkyWalking(SkyWalkingMetric),
    /// Metric plugins by plugin name, each with its own free-form configuration.
    Plugin(
        #[schemars(schema_with = "super::schema::open_object")] BTreeMap<String, serde_json::Value>,
    ),
}

impl MetricProvider {
    /// The provider's key as written in manifests (`prometheus`, `newRelic`, …).
    pub fn key(&self) -> &'static str {
        match self {
            MetricProvider::Prometheus(_) => "prometheus",
            MetricProvider::Web(_) => "web",
            MetricProvider::Job(_) => "job",
            MetricProvider::Datadog(_) => "datadog",
            MetricProvider::NewRelic(_) => "newRelic",
            MetricProvider::Wavefront(_) => "wavefront",
            MetricProvider::Kayenta(_) => "kayenta",
            MetricProvider::CloudWatch(_) => "cloudWatch",
            MetricProvider::Graphite(_) => "graphite",
            MetricProvider::Influxdb(_) => "influxdb",
            MetricProvider::SkyWalking(_) => "skywalking",
            MetricProvider::Plugin(_) => "plugin",
        }
    }
}

one_key_map!(MetricProvider, "a metric provider", {
    Prometheus => "prometheus",
    Web => "web",
    Job => "job",
    Datadog => "datadog",
    NewRelic => "newRelic",
    Wavefront => "wavefront",
    Kayenta => "kayenta",
    CloudWatch => "cloudWatch",
    Graphite => "graphite",
    Influxdb => "influxdb",
    SkyWalking => "skywalking",
    Plugin => "plugin",
});

/// A Prometheus query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The PromQL query; `{{args.*}}` placeholders are substituted first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Query timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout: Option<i64>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Extra HTTP headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebMetricHeader>,
    /// How to authenticate (AWS SigV4 or OAuth2 client credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Run the query over a range of time instead of at one instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<PrometheusRangeQuery>,
}

/// `prometheus.rangeQuery`: the range of a range query (each may hold `{{args.*}}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct PrometheusRangeQuery {
    /// Start of the range, an expression such as `now() - duration("5m")`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End of the range, an expression such as `now()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Resolution step, such as `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// Authentication for Prometheus and web metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct Authentication {
    /// Sign requests with AWS SigV4 (Amazon Managed Prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<Sigv4Config>,
    /// Fetch a bearer token with the OAuth2 client-credentials flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
}

/// AWS SigV4 signing settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sigv4Config {
    /// AWS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// AWS credentials profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// IAM role to assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// OAuth2 client-credentials settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Config {
    /// Token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret (usually `{{args.*}}` from a Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Scopes to request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// An HTTP header sent with a metric request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct WebMetricHeader {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// An HTTP request whose (JSON) response is the measurement.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// URL to call.
    pub url: String,
    /// HTTP method (GET by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<WebMethod>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebMetricHeader>,
    /// Request body as text (POST and PUT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Request body as JSON (POST and PUT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::any_json")]
    pub json_body: Option<serde_json::Value>,
    /// Request timeout in seconds (10 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout_seconds: Option<i64>,
    /// JSONPath selecting the result in the response (`{$}` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// How to authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

/// The HTTP methods a web metric may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum WebMethod {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
}

/// A Job run as a metric.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct JobMetric {
    /// Labels and annotations of the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The Job's spec.
    pub spec: JobSpec,
}
