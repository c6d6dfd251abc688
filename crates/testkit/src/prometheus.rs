//! A real Prometheus server (built from its Go module) for the analysis tests and benchmarks.
//!
//! [`Server::start`] runs one on a free port of 127.0.0.1 with a storage directory and a
//! configuration of its own, killed and removed on drop; the benchmarks use it as it is. For the
//! tests, [`Prometheus::start`] runs one whose configuration scrapes an in-process [`Exporter`]
//! every second, and returns once the target is up. The test sets the exporter's series
//! ([`Exporter::set`]) and waits until Prometheus has scraped them ([`Prometheus::wait_for`]).
//! Dropping the server kills it and removes its directory; [`Prometheus::stop`] kills it
//! earlier (a Prometheus that goes away mid-run).

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};

/// The series an [`Exporter`] serves, by series text (`name{label="v"}`).
type Series = Arc<Mutex<BTreeMap<String, f64>>>;

/// An HTTP server answering `/metrics` in Prometheus' text format with the values the test
/// set. It runs on a thread and runtime of its own, so it answers whatever the test does.
pub struct Exporter {
    /// Where it listens.
    pub addr: SocketAddr,
    series: Series,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Starts an exporter with no series on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the exporter");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the exporter's address");
        let series: Series = Arc::default();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = series.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the exporter's runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let text = render(&served);
                        async move {
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4",
                                )],
                                text,
                            )
                        }
                    }),
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Self {
            addr,
            series,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Sets a series, e.g. `set("http_requests_total{code=\"500\"}", 3.0)`.
    pub fn set(&self, series: &str, value: f64) {
        self.series
            .lock()
            .expect("the exporter's series")
            .insert(series.to_owned(), value);
    }

    /// Stops serving a series (Prometheus marks it stale at the next scrape).
    pub fn remove(&self, series: &str) {
        self.series
            .lock()
            .expect("the exporter's series")
            .remove(series);
    }
}

/// The text format of the series: one `series value` line each.
fn render(series: &Series) -> String {
    let series = series.lock().expect("the exporter's series");
    let mut text = String::new();
    for (name, value) in series.iter() {
        let value = if value.is_nan() {
            "NaN".to_owned()
        } else if value.is_infinite() {
            if *value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
        } else {
            value.to_string()
        };
        text.push_str(&format!("{name} {value}\n"));
    }
    text
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A Prometheus process on a free port of 127.0.0.1 with a directory of its own (configuration,
/// storage, log), which is killed and removed on drop.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Server {
    /// Starts `binary` with the configuration `config` (YAML), in a directory under the
    /// system's temporary one named after `label`; does not wait for it to answer.
    pub fn start(binary: &Path, config: &str, label: &str) -> Result<Self> {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("a free port")?;
        let dir = std::env::temp_dir().join(format!("sluice-{label}-{}", addr.port()));
        std::fs::create_dir_all(dir.join("data")).context("the Prometheus directory")?;
        std::fs::write(dir.join("prometheus.yml"), config)
            .context("the Prometheus configuration")?;
        let log =
            std::fs::File::create(dir.join("prometheus.log")).context("the Prometheus log")?;
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            addr,
            dir,
        })
    }

    /// The server's base URL, as a metric's `address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Prometheus' own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Kills the server now; its address then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Prometheus server scraping one [`Exporter`] every second, for a test.
pub struct Prometheus {
    server: Server,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The exporter it scrapes.
    pub exporter: Exporter,
    http: reqwest::Client,
}

/// The Prometheus binary: the one `cargo xtask test` builds and names in
/// `SLUICE_TEST_PROMETHEUS`, else `prometheus` on PATH.
fn binary() -> PathBuf {
    std::env::var_os("SLUICE_TEST_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"))
}

impl Prometheus {
    /// Starts Prometheus and an exporter, and waits (up to 30 s) until the exporter is scraped.
    pub async fn start() -> Self {
        crate::access::ensure_crypto_provider();
        let exporter = Exporter::start();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr
        );
        let label = format!("prometheus-{}", std::process::id());
        let server = Server::start(&binary(), &config, &label).unwrap_or_else(|e| {
            panic!("{e:#}; run the tests with `cargo xtask test`, which builds Prometheus")
        });
        let prometheus = Self {
            addr: server.addr,
            server,
            exporter,
            http: reqwest::Client::new(),
        };
        prometheus
            .wait_for("up{job=\"exporter\"}", 30, |v| v == [1.0])
            .await;
        prometheus
    }

    /// The server's base URL, as a metric's `address`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The values of an instant query's vector (`None` when Prometheus does not answer one).
    pub async fn query(&self, query: &str) -> Option<Vec<f64>> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url()),
            [("query", query)],
        )
        .ok()?;
        let body: serde_json::Value = self.http.get(url).send().await.ok()?.json().await.ok()?;
        body["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| s["value"][1].as_str()?.parse().ok())
            .collect()
    }

    /// Waits until the query's values satisfy `ready` (e.g. a value the exporter was just given
    /// has been scraped), failing the test after `seconds`.
    pub async fn wait_for(&self, query: &str, seconds: u64, ready: impl Fn(&[f64]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut last = None;
        loop {
            if let Some(values) = self.query(query).await {
                if ready(&values) {
                    return;
                }
                last = Some(values);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus did not answer {query:?} as expected within {seconds} s (last: {last:?}); its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Prometheus' own log.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Kills the server now; its address then refuses connections.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- Prometheus' log:\n{}", self.log());
        }
    }
}
