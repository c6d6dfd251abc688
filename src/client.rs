//! The controller's Kubernetes client: configuration from kubeconfig files (merged as kubectl
//! merges `KUBECONFIG`) or the pod's service account, behind a client-side rate limit so that a
//! storm of rollouts never floods the API server.

use std::{
    future::Future,
    num::NonZeroU32,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use anyhow::Context as _;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::{
    Client,
    client::ClientBuilder,
    config::{KubeConfigOptions, Kubeconfig},
};
use tower::{Layer, Service};

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
}

/// A client for `options`, rate limited to `qps` with bursts of `burst` requests.
pub async fn client(options: &ClientOptions) -> anyhow::Result<Client> {
    let mut config = config(options.kubeconfig.as_deref(), options.context.clone()).await?;
    // Named in the API server's audit log and request metrics.
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
    ));
    let builder = ClientBuilder::try_from(config).context("creating the Kubernetes client")?;
    match quota(options.qps, options.burst) {
        Some(quota) => Ok(builder.with_layer(&TokenBucketLayer::new(quota)).build()),
        None => Ok(builder.build()),
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

/// The configuration from `kubeconfig` (a path list like `KUBECONFIG`, merged in order) and
/// `context`, else from the default kubeconfig or the in-cluster service account.
pub async fn config(
    kubeconfig: Option<&str>,
    context: Option<String>,
) -> anyhow::Result<kube::Config> {
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    match kubeconfig.filter(|paths| !paths.is_empty()) {
        Some(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in std::env::split_paths(paths).filter(|p| !p.as_os_str().is_empty()) {
                let file = read_kubeconfig(&path)?;
                merged = Some(match merged {
                    Some(first) => first
                        .merge(file)
                        .with_context(|| format!("merging kubeconfig {}", path.display()))?,
                    None => file,
                });
            }
            let merged = merged.context("--kubeconfig names no file")?;
            kube::Config::from_custom_kubeconfig(merged, &options)
                .await
                .with_context(|| format!("loading the Kubernetes configuration from {paths}"))
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("loading the default kubeconfig (~/.kube/config) for --context"),
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, \
             or run in a cluster with a service account",
        ),
    }
}

fn read_kubeconfig(path: &Path) -> anyhow::Result<Kubeconfig> {
    Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))
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
