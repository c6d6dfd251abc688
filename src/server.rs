//! The controller's HTTP endpoints: `/healthz` (liveness), `/readyz` (readiness) and `/metrics`
//! (OpenMetrics text), served by axum on one address.
//!
//! Binding is separate from serving, so the process fails fast with a clear message when the
//! address is taken, and a caller that binds port 0 learns the real port before serving.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// The content type of the OpenMetrics text format that `/metrics` serves.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the controller is ready: `/readyz` answers 200 when it is and 503 otherwise.
/// Starts not ready; the controller sets it once its caches are synced.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the controller ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the controller is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// A bound, not yet serving, HTTP server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics and health address {addr}"))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("reading the address bound for {addr}"))?;
        Ok(Self { listener, addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight and returns.
    pub async fn run(
        self,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, router(metrics, health))
            .with_graceful_shutdown(shutdown)
            .await
            .with_context(|| format!("serving HTTP on {}", self.addr))
    }
}

/// Binds `addr` and serves until `shutdown` resolves; see [`Server`] to learn a port-0 address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::bind(addr)
        .await?
        .run(metrics, health, shutdown)
        .await
}

/// The routes, for embedding in another server or testing without a socket.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(health))
        .route("/metrics", get(metrics_text).with_state(metrics))
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::oneshot,
    };

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connecting");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("sending");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reading");
        response
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics_until_shutdown() {
        let (metrics, health) = (Arc::new(Metrics::new()), Arc::new(Health::default()));
        metrics.set_rollout("shop", "web", "canary", "Progressing");
        let server = Server::bind(([127, 0, 0, 1], 0).into())
            .await
            .expect("binding");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(metrics, health.clone(), async {
            let _ = stopped.await;
        }));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let scrape = get(addr, "/metrics").await;
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        assert!(
            scrape
                .to_ascii_lowercase()
                .contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")),
            "{scrape}"
        );
        assert!(scrape.contains(r#"rollout_info{namespace="shop",name="web""#));
        assert!(get(addr, "/nothing").await.starts_with("HTTP/1.1 404"));

        stop.send(()).expect("the server is running");
        serving
            .await
            .expect("the server task")
            .expect("a clean shutdown");
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error_naming_it() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = taken.local_addr().expect("an address");
        let error = Server::bind(addr).await.expect_err("the port is taken");
        assert!(
            format!("{error:#}").contains(&addr.to_string()),
            "{error:#}"
        );
    }
}
