//! The controller's Kubernetes client: configuration from kubeconfig files (merged as kubectl
//! merges `KUBECONFIG`) or the pod's service account, behind a client-side rate limit so that a
//! storm of rollouts never floods the API server.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use kube::{
    Client,
    client::ClientBuilder,
    config::{KubeConfigOptions, Kubeconfig},
};
use tower::limit::RateLimitLayer;

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
    match rate(options.qps, options.burst) {
        Some((requests, per)) => Ok(builder
            .with_layer(&RateLimitLayer::new(requests, per))
            .build()),
        None => Ok(builder.build()),
    }
}

/// The rate limit as `requests` per `per`: `burst` requests per the time `qps` takes to earn
/// them back, so the sustained rate is `qps` and up to `burst` requests may go at once.
fn rate(qps: f64, burst: u32) -> Option<(u64, Duration)> {
    if !(qps.is_finite() && qps > 0.0) {
        return None;
    }
    let burst = burst.max(1);
    Some((
        u64::from(burst),
        Duration::from_secs_f64(f64::from(burst) / qps),
    ))
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
    fn the_rate_earns_a_burst_back_at_qps() {
        assert_eq!(rate(50.0, 100), Some((100, Duration::from_secs(2))));
        assert_eq!(rate(20.0, 0), Some((1, Duration::from_millis(50))));
    }

    #[test]
    fn zero_or_nonsense_qps_means_no_limit() {
        assert_eq!(rate(0.0, 100), None);
        assert_eq!(rate(-1.0, 100), None);
        assert_eq!(rate(f64::NAN, 100), None);
    }
}
