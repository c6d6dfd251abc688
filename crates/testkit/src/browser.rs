//! A headless Chromium driven through chromedriver (WebDriver, with `fantoccini`), and the
//! plugin's dashboard started as a process: the dashboard's browser test and its benchmark
//! drive the same page the same way.
//!
//! Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`, installed by
//! `.ci/run` and checked by the preflight); `CHROMEDRIVER` and `CHROMIUM` override their paths.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// A headless Chromium with a fresh profile (nothing cached), ended with its session on drop.
pub struct Browser {
    _driver: Child,
    /// The WebDriver session.
    pub client: Client,
    profile: PathBuf,
    /// chromedriver's port and the session's id, to end the session (and so Chromium) on drop.
    port: u16,
    session: String,
}

impl Drop for Browser {
    /// Ends the session synchronously (a panicking test drops its runtime before any async
    /// close could run): chromedriver then quits Chromium, which would outlive it otherwise.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            if conn.write_all(request.as_bytes()).is_ok() {
                let _ = conn.read_to_end(&mut Vec::new());
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session of a headless Chromium.
    pub async fn start() -> Result<Self> {
        let driver_path =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if !Path::new(&driver_path).exists() || !Path::new(&chromium).exists() {
            bail!("{driver_path} or {chromium} missing: apt-get install chromium chromium-driver");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for chromedriver")?
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {driver_path}"))?;
        let profile =
            std::env::temp_dir().join(crate::namespace::unique_name("sluice-dashboard-chromium"));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,760",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let caps = caps.as_object().cloned().unwrap_or_default();
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = eventually(30, "chromedriver accepting a session", || {
            let (caps, webdriver) = (caps.clone(), webdriver.clone());
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&webdriver)
                    .await
                    .ok()
            }
        })
        .await?;
        let session = client
            .session_id()
            .await
            .context("reading the WebDriver session's id")?
            .context("no WebDriver session")?;
        Ok(Self {
            _driver: driver,
            client,
            profile,
            port,
            session,
        })
    }

    /// Waits until an element matches `css` (up to 90 s: a loaded 2-core machine is slow).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(90))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Runs `js` in the page and returns what it returns.
    pub async fn script(&self, js: &str) -> Value {
        self.client
            .execute(js, vec![])
            .await
            .unwrap_or_else(|e| panic!("running {js}: {e}"))
    }
}

/// `kubectl sluice dashboard` running on a free port, killed on drop.
pub struct Dashboard {
    _process: Child,
    /// The printed address, e.g. `http://127.0.0.1:41234/`.
    pub url: String,
}

impl Dashboard {
    /// Starts the plugin at `binary` as `dashboard --port 0 ARGS` against the local cluster and
    /// waits for the address it prints.
    pub async fn start(binary: &Path, args: &[&str]) -> Result<Self> {
        let mut process = Command::new(binary)
            .args(["dashboard", "--port", "0"])
            .args(args)
            .env("KUBECONFIG", crate::kubeconfig())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} dashboard", binary.display()))?;
        let stdout = process.stdout.take().context("the dashboard's stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .context("the dashboard printed no address within 30 s")?
        .context("reading the dashboard's stdout")?
        .context("the dashboard ended before printing its address")?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no address in {line:?}"))?
            .to_string();
        Ok(Self {
            _process: process,
            url,
        })
    }

    /// The URL of `path` on the dashboard.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// Polls `check` every 200 ms until it gives a value, failing after `seconds`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    seconds: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {seconds} s: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
