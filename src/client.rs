//! The controller's Kubernetes client: configuration from kubeconfig files (merged as kubectl
//! merges `KUBECONFIG`) or the pod's service account, behind a client-side rate limit so that a
//! storm of rollouts never floods the API server, and a meter that counts every request by verb
//! and resource, and per reconcile ([`counting_requests`]).

use std::{
    cell::Cell,
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use anyhow::Context as _;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::{Client, client::ClientBuilder};
use tower::{Layer, Service};

use crate::metrics::{ApiRequest, Metrics};

/// Where the configuration comes from and how fast the client may go.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Kubeconfig file(s), separated as in `KUBECONFIG`; `None`: the default file or in-cluster.
    pub kubeconfig: Option<String>,
    /// Context to use instead of the current one.
    pub context: Option<String>,
    /// Sustained requests per second; 0 disables the limit.
    pub qps: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Where every request is counted (`sluice_kube_requests_total`,
    /// `controller_clientset_k8s_request_total`); `None`: not counted.
    pub metrics: Option<Arc<Metrics>>,
}

/// A client for `options`, rate limited to `qps` with bursts of `burst` requests.
pub async fn client(options: &ClientOptions) -> anyhow::Result<Client> {
    let mut config =
        sluice_kube::config(options.kubeconfig.as_deref(), options.context.clone()).await?;
    // Named in the API server's audit log and request metrics.
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
    ));
    let builder = ClientBuilder::try_from(config)
        .context("creating the Kubernetes client")?
        .with_layer(&MeterLayer(options.metrics.clone()));
    match quota(options.qps, options.burst) {
        Some(quota) => Ok(builder.with_layer(&TokenBucketLayer::new(quota)).build()),
        None => Ok(builder.build()),
    }
}

tokio::task_local! {
    /// The requests made so far by the work [`counting_requests`] runs.
    static TALLY: Cell<u32>;
}

/// Runs `work` and returns its output with the number of API requests it made through a client of
/// [`client`]. The count follows the future, not the task, so reconciles that interleave on one
/// task are counted apart, and the controllers' watches (their own futures) are never counted.
pub async fn counting_requests<F: Future>(work: F) -> (F::Output, u32) {
    TALLY
        .scope(Cell::new(0), async {
            let output = work.await;
            (output, TALLY.with(Cell::get))
        })
        .await
}

/// Counts each request once its response (or error) comes back: in `sluice_kube_requests_total`
/// by verb, resource and status and in `controller_clientset_k8s_request_total` as Argo labels
/// it (see [`Metrics::api_request`]), and in the tally of the [`counting_requests`] it belongs to.
#[derive(Clone)]
struct MeterLayer(Option<Arc<Metrics>>);

impl<S> Layer<S> for MeterLayer {
    type Service = Meter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Meter {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service of [`MeterLayer`].
struct Meter<S> {
    inner: S,
    metrics: Option<Arc<Metrics>>,
}

impl<S, B, RB> Service<axum::http::Request<B>> for Meter<S>
where
    S: Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let classified = classify(request.method(), request.uri());
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        // kube's client hands `call` to a buffer task but polls the returned future in the
        // caller's, which is where the tally of a reconcile lives.
        Box::pin(async move {
            let result = response.await;
            let status = result.as_ref().map_or(0, |r| r.status().as_u16());
            if let Some(metrics) = metrics {
                metrics.api_request(&classified, status);
            }
            let _ = TALLY.try_with(|tally| tally.set(tally.get().saturating_add(1)));
            result
        })
    }
}

/// A request to the Kubernetes API as the metrics label it, read off its method and path: the
/// verb as RBAC and the audit log name it, the resource and subresource (`rollouts` and
/// `status`), the namespace and the object's name when the path has them.
fn classify(method: &axum::http::Method, uri: &axum::http::Uri) -> ApiRequest {
    use axum::http::Method;
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // `/api/v1/…` or `/apis/<group>/<version>/…`; anything else (`/version`) is its own resource.
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    // `namespaces/<ns>/<resource>…`, but `namespaces/<name>` is the namespace itself.
    let (namespace, rest) = match rest {
        ["namespaces", namespace, tail @ ..] if !tail.is_empty() => ((*namespace).to_owned(), tail),
        _ => (String::new(), rest),
    };
    let (resource, name, subresource) = match rest {
        [] => (uri.path().to_owned(), None, None),
        [resource] => ((*resource).to_owned(), None, None),
        [resource, name] => ((*resource).to_owned(), Some((*name).to_owned()), None),
        [resource, name, sub, ..] => (
            (*resource).to_owned(),
            Some((*name).to_owned()),
            Some((*sub).to_owned()),
        ),
    };
    let watch = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    let named = name.is_some();
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    ApiRequest {
        verb,
        resource,
        subresource,
        namespace,
        name,
    }
}

/// A token bucket as client-go's: `burst` requests may go at once, and a token comes back every
/// `1/qps` seconds, so after a burst the next request waits one interval, not a whole window.
fn quota(qps: f64, burst: u32) -> Option<Quota> {
    if !(qps.is_finite() && qps > 0.0) {
        return None;
    }
    let burst = NonZeroU32::new(burst.max(1))?;
    Quota::with_period(Duration::from_secs_f64(1.0 / qps)).map(|q| q.allow_burst(burst))
}

/// Rate limits the client's requests with a [`quota`] token bucket.
#[derive(Clone)]
struct TokenBucketLayer(Arc<DefaultDirectRateLimiter>);

impl TokenBucketLayer {
    fn new(quota: Quota) -> Self {
        Self(Arc::new(RateLimiter::direct(quota)))
    }
}

impl<S> Layer<S> for TokenBucketLayer {
    type Service = TokenBucket<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenBucket {
            inner,
            limiter: self.0.clone(),
            wait: None,
            permitted: false,
        }
    }
}

/// The service of [`TokenBucketLayer`]: ready once a token is taken and the inner service is.
struct TokenBucket<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    permitted: bool,
}

impl<S: Service<R>, R> Service<R> for TokenBucket<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            let limiter = self.limiter.clone();
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(async move { limiter.until_ready().await }));
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
            self.permitted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.permitted = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_comes_back_every_interval_and_a_burst_may_go_at_once() {
        let bucket = quota(50.0, 100).expect("a quota");
        assert_eq!(bucket.replenish_interval(), Duration::from_millis(20));
        assert_eq!(bucket.burst_size().get(), 100);
        assert_eq!(quota(20.0, 0).map(|q| q.burst_size().get()), Some(1));
    }

    #[test]
    fn requests_are_named_by_the_verb_and_resource_rbac_would_name() {
        use axum::http::{Method, Uri};
        // (method, path, verb, resource label, namespace, name)
        let cases = [
            (
                Method::GET,
                "/apis/argoproj.io/v1alpha1/rollouts?watch=true&resourceVersion=1",
                "watch",
                "rollouts",
                "",
                None,
            ),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/shop/replicasets?labelSelector=a",
                "list",
                "replicasets",
                "shop",
                None,
            ),
            (
                Method::PUT,
                "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web/status",
                "update",
                "rollouts/status",
                "shop",
                Some("web"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/shop/replicasets/web-6d4f",
                "patch",
                "replicasets",
                "shop",
                Some("web-6d4f"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/shop/pods/web-1/eviction",
                "create",
                "pods/eviction",
                "shop",
                Some("web-1"),
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events",
                "create",
                "events",
                "shop",
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/shop",
                "get",
                "namespaces",
                "",
                Some("shop"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/shop/secrets/token",
                "get",
                "secrets",
                "shop",
                Some("token"),
            ),
            (
                Method::DELETE,
                "/apis/batch/v1/namespaces/shop/jobs/run-1",
                "delete",
                "jobs",
                "shop",
                Some("run-1"),
            ),
            (
                Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases/sluice",
                "get",
                "leases",
                "ops",
                Some("sluice"),
            ),
            (
                Method::GET,
                "/apis/argoproj.io/v1alpha1/clusteranalysistemplates/shared",
                "get",
                "clusteranalysistemplates",
                "",
                Some("shared"),
            ),
        ];
        for (method, uri, verb, resource, namespace, name) in cases {
            let uri: Uri = uri.parse().expect("a valid URI");
            let request = classify(&method, &uri);
            assert_eq!(
                (
                    request.verb,
                    request.resource_label(),
                    request.namespace.as_str(),
                    request.name.as_deref()
                ),
                (verb, resource.to_owned(), namespace, name),
                "{method} {uri}"
            );
        }
    }

    /// A request through a client's meter shows in both request series, Argo's labelled as Argo
    /// labels it.
    #[tokio::test]
    async fn a_metered_request_is_counted_in_sluice_s_series_and_argo_s() {
        use axum::http::{Request, Response, StatusCode};
        let metrics = Arc::new(Metrics::new());
        let mut meter =
            MeterLayer(Some(metrics.clone())).layer(tower::service_fn(|_: Request<()>| async {
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::NOT_FOUND;
                Ok::<_, std::convert::Infallible>(response)
            }));
        let request = Request::get("/api/v1/namespaces/shop/services/web")
            .body(())
            .expect("a request");
        meter.call(request).await.expect("a response");
        let text = metrics.encode();
        for line in [
            r#"sluice_kube_requests_total{verb="get",resource="services",status_code="404"} 1"#,
            r#"controller_clientset_k8s_request_total{kind="services",namespace="shop",name="N/A",verb="Get",status_code="404"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_reconcile_counts_its_own_requests_and_no_one_else_s() {
        use axum::http::{Request, Response};
        let mut meter = MeterLayer(None).layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }));
        let mut calls = Vec::new();
        for _ in 0..3 {
            calls.push(meter.call(Request::new(())));
        }
        let [first, second, third] = <[_; 3]>::try_from(calls).ok().expect("three calls");
        // Two requests awaited inside the counted work, one outside it.
        let ((), inside) = counting_requests(async {
            first.await.expect("a response");
            second.await.expect("a response");
        })
        .await;
        third.await.expect("a response");
        assert_eq!(inside, 2);
        let ((), none) = counting_requests(async {}).await;
        assert_eq!(none, 0);
    }

    #[test]
    fn zero_or_nonsense_qps_means_no_limit() {
        assert!(quota(0.0, 100).is_none());
        assert!(quota(-1.0, 100).is_none());
        assert!(quota(f64::NAN, 100).is_none());
    }

    #[test]
    fn after_a_burst_the_bucket_is_empty_until_a_token_comes_back() {
        let limiter = RateLimiter::direct(quota(50.0, 100).expect("a quota"));
        for _ in 0..100 {
            assert!(limiter.check().is_ok(), "the burst goes at once");
        }
        assert!(limiter.check().is_err(), "the bucket is empty");
    }
}
