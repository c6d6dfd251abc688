//! Metric providers: where measurements come from. One trait, [`Provider`], one file per
//! implementation, and [`Providers`], the registry that picks the implementation from a
//! metric's `provider` key. Adding a provider touches its own file and this one (a field, an
//! arm in [`Providers::for_metric`], an entry in [`SUPPORTED`]).
//!
//! Providers are the edge: they read the clock and do I/O. Every failure becomes an Error
//! measurement with a message (never a panic, never a success), so an unreachable metrics
//! server ends in an Error run, not a promotion. Every answer read from outside is bounded
//! ([`body`]): its size, the time waited for it, where redirects lead, the hosts web metrics
//! reach, and the size of what is stored in the run's status.

pub mod aws;
pub mod body;
pub mod cloudwatch;
pub mod datadog;
pub mod graphite;
pub mod influxdb;
pub mod job;
pub mod kayenta;
pub mod newrelic;
pub mod prometheus;
pub mod skywalking;
pub mod wavefront;
pub mod web;

use std::{
    collections::BTreeMap,
    sync::{Arc, Once},
    time::Duration,
};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice_analysis::{
    condition::MetricValue,
    limits::AnalysisLimits,
    plan::{Task, error_measurement, terminated},
    rules::SUPPORTED,
};
use sluice_api::{AnalysisPhase, Measurement, Metric, MetricProvider};

use crate::analysis::evaluator::Evaluator;

/// Where the providers that read their credentials from the controller's own namespace
/// (datadog, newRelic, wavefront, influxdb, as Argo does) look when the process says nothing:
/// `POD_NAMESPACE` (the chart sets it), else Argo's default namespace.
pub fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "argo-rollouts".to_owned())
}

/// What every provider is built from: the shared pieces of the registry.
#[derive(Clone)]
pub struct Context {
    /// The Kubernetes client (Job metrics, provider Secrets); `None` in tests of HTTP providers.
    pub client: Option<kube::Client>,
    /// The bounds of every measurement (answer size, timeouts, allowed hosts).
    pub limits: AnalysisLimits,
    /// Evaluates a metric's conditions.
    pub evaluator: Arc<Evaluator>,
    /// The controller's namespace, where provider Secrets are read.
    pub namespace: String,
    /// The AWS settings (region, credentials, endpoints) cloudWatch and Prometheus' sigv4 use.
    pub aws: aws::AwsEnv,
}

/// How long a provider waits for a Secret it reads before measuring.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The data of the Secret `name` in `namespace`, as text (keys whose value is not UTF-8 are
/// left out), read within [`READ_TIMEOUT`]; a missing Secret or a failed read is the message
/// of an Error measurement.
pub async fn read_secret(
    client: Option<&kube::Client>,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    use k8s_openapi::api::core::v1::Secret;
    let client =
        client.ok_or_else(|| format!("reading Secret {namespace}/{name}: no Kubernetes client"))?;
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let secret = tokio::time::timeout(READ_TIMEOUT, api.get_opt(name))
        .await
        .map_err(|_| {
            format!(
                "reading Secret {namespace}/{name}: no answer within {}",
                body::show_duration(READ_TIMEOUT)
            )
        })?
        .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))?
        .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
    let mut data: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
    for (key, value) in secret.data.unwrap_or_default() {
        if let Ok(text) = String::from_utf8(value.0) {
            data.insert(key, text);
        }
    }
    Ok(data)
}

/// Sends `request` and reads the answer within `timeout` and `max_bytes`: its status and
/// body, or why not (`no answer from <what> within 10s`, the transport error, an answer too
/// large). The status is the caller's to judge.
pub async fn exchange(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    max_bytes: usize,
    what: &str,
) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
    let work = async move {
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let answer = body::read_bounded(response, max_bytes).await?;
        Ok::<_, String>((status, answer))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        format!(
            "no answer from {what} within {}",
            body::show_duration(timeout)
        )
    })?
}

/// The AnalysisRun a measurement belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRef {
    /// The run's name.
    pub name: String,
    /// Its namespace (where Jobs and Secrets are).
    pub namespace: String,
    /// Its uid (Jobs are owned by it and named after it).
    pub uid: String,
    /// When the run started (`status.startedAt`); `None` before its first pass is recorded.
    pub started_at: Option<Timestamp>,
}

impl RunRef {
    /// The reference of a run object.
    pub fn of(run: &sluice_api::AnalysisRun) -> Self {
        Self {
            name: run.metadata.name.clone().unwrap_or_default(),
            namespace: run.metadata.namespace.clone().unwrap_or_default(),
            uid: run.metadata.uid.clone().unwrap_or_default(),
            started_at: run
                .status
                .as_ref()
                .and_then(|s| s.started_at.as_ref())
                .map(|t| t.0),
        }
    }
}

/// Why a provider could not be set up or clean up.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The metric names a provider Sluice does not implement.
    #[error(
        "the {0} provider is not supported by Sluice (supported: {supported})",
        supported = SUPPORTED.join(", ")
    )]
    Unsupported(&'static str),
    /// Job metrics need a Kubernetes client, and the registry was built without one.
    #[error("the job provider needs a Kubernetes client")]
    NoClient,
    /// An HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// A Kubernetes call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// A source of measurements.
///
/// Methods return boxed futures so that the registry can hand out `&dyn Provider`. A method
/// never fails: a failure is an Error measurement carrying the reason.
pub trait Provider: Send + Sync {
    /// The provider's name for logs (`prometheus`).
    fn kind(&self) -> &'static str;

    /// Data about the metric stored once on its result (e.g. the resolved query).
    fn metadata(&self, _metric: &Metric) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Takes a new measurement of `metric` (arguments substituted, Secrets included).
    /// `attempt` numbers the run's measurements of this metric from 1 (`count + error + 1`)
    /// and names what the measurement creates (a Job). A measurement left in flight (phase
    /// Running, no `finishedAt`) sets `resumeAt`.
    fn measure<'a>(
        &'a self,
        run: &'a RunRef,
        metric: &'a Metric,
        attempt: u32,
    ) -> BoxFuture<'a, Measurement>;

    /// Looks again at a measurement in flight. Providers that finish within `measure` keep the
    /// default, which returns it unchanged.
    fn resume<'a>(
        &'a self,
        _run: &'a RunRef,
        _metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(std::future::ready(measurement))
    }

    /// Stops a measurement in flight because the run is ending; the default finishes it as
    /// Successful with the message `Metric Terminated`, as Argo does.
    fn terminate<'a>(
        &'a self,
        _run: &'a RunRef,
        _metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(std::future::ready(terminated(
            measurement,
            Timestamp::now(),
        )))
    }

    /// Deletes what old measurements left behind, keeping the newest `limit` (called when the
    /// plan trims a metric's measurements).
    fn garbage_collect<'a>(
        &'a self,
        _run: &'a RunRef,
        _metric: &'a Metric,
        _limit: usize,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The run has completed: releases everything the metric's measurements created.
    fn finish<'a>(
        &'a self,
        _run: &'a RunRef,
        _metric: &'a Metric,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The measurement of a value: its phase from the metric's conditions (an evaluation error is
/// an Error measurement), `value` recorded as text.
pub async fn measured(
    evaluator: &Evaluator,
    metric: &Metric,
    value: &MetricValue,
    text: String,
    started: Timestamp,
) -> Measurement {
    let assessed = evaluator.assess(metric, value).await;
    let now = Timestamp::now();
    match assessed {
        Ok(phase) => Measurement {
            phase,
            started_at: Some(Time(started)),
            finished_at: Some(Time(now)),
            value: Some(text),
            ..Measurement::default()
        },
        Err(e) => Measurement {
            value: Some(text),
            ..error_measurement(e.to_string(), now)
        },
    }
}

/// The Error measurement of a query that failed (`message` says why), begun at `started`;
/// logged at debug level, since the run's status shows the message.
pub fn query_failed(
    kind: &str,
    metric: &Metric,
    started: Timestamp,
    message: String,
) -> Measurement {
    tracing::debug!(metric = %metric.name, provider = kind, error = %message, "query failed");
    let mut m = error_measurement(message, Timestamp::now());
    m.started_at = Some(Time(started));
    m
}

/// A measurement whose `value` and `message` are cut to `max` bytes (at a char boundary, the
/// cut marked), so a run's status never grows past what etcd stores, whatever a server answered.
pub fn bounded(mut measurement: Measurement, max: usize) -> Measurement {
    measurement.value = measurement.value.map(|v| body::truncate(v, max));
    measurement.message = measurement.message.map(|m| body::truncate(m, max));
    measurement
}

/// An error with its causes, for a measurement's message (`a: b: c`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The two HTTP clients a provider shares between its measurements: one that verifies
/// certificates, and one for metrics that say `insecure: true`.
pub struct HttpClients {
    verifying: reqwest::Client,
    insecure: reqwest::Client,
}

impl HttpClients {
    /// Builds both clients, named `sluice/<version>` in the servers' logs, following redirects
    /// only to the same host and port ([`body::redirect_policy`]). Providers end their own wait
    /// at their timeout (at most `limits.max_timeout`, with their own message); the clients'
    /// timeout, a second longer, is a backstop for a request that forgets to.
    pub fn new(limits: &AnalysisLimits) -> Result<Self, ProviderError> {
        ensure_crypto_provider();
        let backstop = limits.max_timeout.saturating_add(Duration::from_secs(1));
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(insecure)
                .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
                .redirect(body::redirect_policy())
                .timeout(backstop)
                .build()
                .map_err(ProviderError::Http)
        };
        Ok(Self {
            verifying: build(false)?,
            insecure: build(true)?,
        })
    }

    /// The client for a metric whose `insecure` is `insecure`.
    pub fn get(&self, insecure: Option<bool>) -> &reqwest::Client {
        if insecure.unwrap_or(false) {
            &self.insecure
        } else {
            &self.verifying
        }
    }
}

/// Where an OAuth2 token may be fetched from, and how much of the answer is read.
#[derive(Clone, Copy, Debug)]
pub struct TokenBounds<'a> {
    /// The most bytes read of the token endpoint's answer.
    pub max_bytes: usize,
    /// The hosts the token URL may name (`None`: any).
    pub allowed_hosts: Option<&'a [String]>,
}

/// The token URL of an OAuth2 configuration, checked against the allowed hosts before anything
/// is sent.
pub fn oauth2_token_url(
    config: &sluice_api::OAuth2Config,
    allowed_hosts: Option<&[String]>,
) -> Result<reqwest::Url, String> {
    let written = config
        .token_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or("oauth2: tokenUrl is not set")?;
    let url = reqwest::Url::parse(written)
        .map_err(|e| format!("oauth2: tokenUrl {written:?} is not valid: {e}"))?;
    body::check_host(allowed_hosts, &url).map_err(|e| format!("oauth2: {e}"))?;
    Ok(url)
}

/// A bearer token from an OAuth2 token endpoint (client-credentials flow), for the prometheus
/// and web providers' `authentication.oauth2`; the answer is read within `bounds`.
pub async fn oauth2_token(
    http: &reqwest::Client,
    config: &sluice_api::OAuth2Config,
    bounds: TokenBounds<'_>,
) -> Result<String, String> {
    let url = oauth2_token_url(config, bounds.allowed_hosts)?;
    let scopes = config.scopes.join(" ");
    let mut params = vec![("grant_type", "client_credentials")];
    params.extend(config.client_id.as_deref().map(|v| ("client_id", v)));
    params.extend(
        config
            .client_secret
            .as_deref()
            .map(|v| ("client_secret", v)),
    );
    if !scopes.is_empty() {
        params.push(("scope", scopes.as_str()));
    }
    // The url crate's form encoding, reached through reqwest's re-export.
    let body = reqwest::Url::parse_with_params("http://form.invalid/", &params)
        .map_err(|e| format!("oauth2: encoding the request: {e}"))?
        .query()
        .unwrap_or_default()
        .to_owned();
    let response = http
        .post(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("oauth2: requesting a token from {url}: {}", error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("oauth2: {url} answered {status}"));
    }
    let answer = body::read_bounded(response, bounds.max_bytes)
        .await
        .map_err(|e| format!("oauth2: reading the token from {url}: {e}"))?;
    let body: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("oauth2: the answer of {url} is not JSON: {e}"))?;
    body.get("access_token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("oauth2: {url} answered without an access_token"))
}

/// Makes sure rustls has a process-wide crypto provider before reqwest builds a client.
///
/// reqwest is built with `rustls-no-provider` (one TLS stack, ring, as kube uses) and panics
/// without one; kube's rustls configuration installs ring, the only provider compiled in, as
/// the process default when none is set. Calling it once here makes the providers independent
/// of whether a kube client was built first (tests, the kubectl plugin).
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use kube::client::ConfigExt;
        let Ok(uri) = "https://localhost".parse() else {
            return;
        };
        if let Ok(config) = kube::Config::new(uri).rustls_client_config() {
            let _ = (**config.crypto_provider()).clone().install_default();
        }
    });
}

/// The registry: one instance of each provider, shared by every run (HTTP connections are
/// pooled across measurements).
pub struct Providers {
    prometheus: prometheus::PrometheusProvider,
    web: web::WebProvider,
    job: Option<job::JobProvider>,
    datadog: datadog::DatadogProvider,
    new_relic: newrelic::NewRelicProvider,
    wavefront: wavefront::WavefrontProvider,
    kayenta: kayenta::KayentaProvider,
    cloud_watch: cloudwatch::CloudWatchProvider,
    graphite: graphite::GraphiteProvider,
    influxdb: influxdb::InfluxdbProvider,
    skywalking: skywalking::SkyWalkingProvider,
    max_value_bytes: usize,
}

impl Providers {
    /// Builds every provider within `limits`, reading provider Secrets in
    /// [`default_namespace`]; without a client, Job metrics and providers that read Secrets
    /// measure as Errors.
    pub fn new(
        client: Option<kube::Client>,
        limits: &AnalysisLimits,
        evaluator: Arc<Evaluator>,
    ) -> Result<Self, ProviderError> {
        Self::with(Context {
            client,
            limits: limits.clone(),
            evaluator,
            namespace: default_namespace(),
            aws: aws::AwsEnv::from_env(),
        })
    }

    /// Builds every provider from `context`.
    pub fn with(context: Context) -> Result<Self, ProviderError> {
        ensure_crypto_provider();
        let limits = &context.limits;
        Ok(Self {
            prometheus: prometheus::PrometheusProvider::new(&context)?,
            web: web::WebProvider::new(limits, context.evaluator.clone())?,
            job: context.client.clone().map(job::JobProvider::new),
            datadog: datadog::DatadogProvider::new(&context)?,
            new_relic: newrelic::NewRelicProvider::new(&context)?,
            wavefront: wavefront::WavefrontProvider::new(&context)?,
            kayenta: kayenta::KayentaProvider::new(&context)?,
            cloud_watch: cloudwatch::CloudWatchProvider::new(&context)?,
            graphite: graphite::GraphiteProvider::new(&context)?,
            influxdb: influxdb::InfluxdbProvider::new(&context)?,
            skywalking: skywalking::SkyWalkingProvider::new(&context)?,
            max_value_bytes: limits.max_value_bytes,
        })
    }

    /// The provider for a metric.
    pub fn for_metric(&self, metric: &Metric) -> Result<&dyn Provider, ProviderError> {
        Ok(match &metric.provider {
            MetricProvider::Prometheus(_) => &self.prometheus,
            MetricProvider::Web(_) => &self.web,
            MetricProvider::Job(_) => self.job.as_ref().ok_or(ProviderError::NoClient)?,
            MetricProvider::Datadog(_) => &self.datadog,
            MetricProvider::NewRelic(_) => &self.new_relic,
            MetricProvider::Wavefront(_) => &self.wavefront,
            MetricProvider::Kayenta(_) => &self.kayenta,
            MetricProvider::CloudWatch(_) => &self.cloud_watch,
            MetricProvider::Graphite(_) => &self.graphite,
            MetricProvider::Influxdb(_) => &self.influxdb,
            MetricProvider::SkyWalking(_) => &self.skywalking,
            other => return Err(ProviderError::Unsupported(other.key())),
        })
    }

    /// Takes a measurement with the metric's provider, or records why there is none.
    pub async fn measure(&self, run: &RunRef, metric: &Metric, attempt: u32) -> Measurement {
        self.perform(run, metric, Task::Measure, attempt).await
    }

    /// Carries out one task of the plan with the metric's provider; without one, a new
    /// measurement is an Error and one in flight is terminated. Whatever the provider returns,
    /// its value and message are cut to `limits.max_value_bytes` ([`bounded`]).
    pub async fn perform(
        &self,
        run: &RunRef,
        metric: &Metric,
        task: Task,
        attempt: u32,
    ) -> Measurement {
        bounded(
            self.perform_unbounded(run, metric, task, attempt).await,
            self.max_value_bytes,
        )
    }

    async fn perform_unbounded(
        &self,
        run: &RunRef,
        metric: &Metric,
        task: Task,
        attempt: u32,
    ) -> Measurement {
        let provider = match self.for_metric(metric) {
            Ok(provider) => provider,
            Err(e) => {
                let now = Timestamp::now();
                return match task {
                    Task::Measure => error_measurement(e.to_string(), now),
                    Task::Resume(m) | Task::Terminate(m) => Measurement {
                        phase: AnalysisPhase::Error,
                        message: Some(e.to_string()),
                        finished_at: Some(Time(now)),
                        resume_at: None,
                        ..m
                    },
                };
            }
        };
        match task {
            Task::Measure => provider.measure(run, metric, attempt).await,
            Task::Resume(m) => provider.resume(run, metric, m).await,
            Task::Terminate(m) => provider.terminate(run, metric, m).await,
        }
    }

    /// The provider's metadata for a metric's result (none for an unsupported provider).
    pub fn metadata_of(&self, metric: &Metric) -> BTreeMap<String, String> {
        self.for_metric(metric)
            .map(|p| p.metadata(metric))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
