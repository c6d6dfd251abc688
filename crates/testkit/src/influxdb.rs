//! A real InfluxDB 1.x (`influxd`, built from its Go module with Flux, see
//! [`crate::gobuild::INFLUXDB`]) for the influxdb provider's tests.
//!
//! [`Influxdb::start`] runs one on a free port of 127.0.0.1 with a directory of its own
//! (configuration, meta, data, WAL, log), Flux enabled (`/api/v2/query` answers annotated CSV)
//! and authentication on, creates an admin user and the database [`DATABASE`], and returns once
//! it answers. InfluxDB 1.x takes `Authorization: Token <user>:<password>` as a v2 client's
//! token ([`Influxdb::token`]) and reads the database's default retention policy as the bucket
//! [`BUCKET`]. The test writes points in line protocol ([`Influxdb::write`]). Dropping it kills
//! the server and removes its directory; [`Influxdb::stop`] kills it earlier.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::process::{LogMode, Process, free_port};
use anyhow::{Context, Result};

/// The database the tests write to.
pub const DATABASE: &str = "sluice";
/// The Flux bucket of [`DATABASE`]'s default retention policy.
pub const BUCKET: &str = "sluice/autogen";
/// The admin user InfluxDB is started with.
pub const USER: &str = "admin";
/// The admin user's password.
pub const PASSWORD: &str = "s3cret-pass";

/// An `influxd` process on 127.0.0.1 with a directory of its own, killed and removed on drop.
pub struct Influxdb {
    process: Option<Process>,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    dir: PathBuf,
    http: reqwest::Client,
}

/// The influxd binary: the one `cargo xtask test` builds and names in `SLUICE_TEST_INFLUXD`.
fn binary() -> Result<PathBuf> {
    std::env::var_os("SLUICE_TEST_INFLUXD")
        .map(PathBuf::from)
        .context("SLUICE_TEST_INFLUXD is not set")
}

/// A free port of 127.0.0.1, as an address.
fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// The configuration: everything under `dir`, both listeners on loopback, Flux and
/// authentication on, no reporting, no self-monitoring.
fn config(dir: &Path, http: SocketAddr, rpc: SocketAddr) -> String {
    let d = |sub: &str| dir.join(sub).display().to_string();
    format!(
        "reporting-disabled = true\n\
         bind-address = \"{rpc}\"\n\
         [meta]\n  dir = \"{meta}\"\n\
         [data]\n  dir = \"{data}\"\n  wal-dir = \"{wal}\"\n  query-log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [continuous_queries]\n  enabled = false\n\
         [http]\n  bind-address = \"{http}\"\n  auth-enabled = true\n  flux-enabled = true\n  \
         log-enabled = true\n  flux-log-enabled = true\n\
         [logging]\n  level = \"info\"\n",
        meta = d("meta"),
        data = d("data"),
        wal = d("wal"),
    )
}

impl Influxdb {
    /// Starts influxd, waits (up to 60 s) until it answers, creates the admin user and the
    /// database.
    pub async fn start() -> Self {
        crate::access::ensure_crypto_provider();
        let binary = binary().unwrap_or_else(|e| {
            panic!("{e:#}; run the tests with `cargo xtask test`, which builds influxd")
        });
        let influxdb = Self::spawn(&binary).unwrap_or_else(|e| panic!("starting influxd: {e:#}"));
        influxdb.wait_ready(Duration::from_secs(60)).await;
        // With authentication on and no user yet, InfluxDB takes this one statement unauthenticated.
        influxdb
            .influxql(&format!(
                "CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES"
            ))
            .await;
        influxdb
            .influxql(&format!("CREATE DATABASE {DATABASE}"))
            .await;
        influxdb
    }

    fn spawn(binary: &Path) -> Result<Self> {
        let addr = free_addr()?;
        let rpc = free_addr()?;
        let dir = std::env::temp_dir().join(format!(
            "sluice-influxdb-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir).context("the InfluxDB directory")?;
        std::fs::write(dir.join("influxdb.conf"), config(&dir, addr, rpc))
            .context("the InfluxDB configuration")?;
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("-config")
            .arg(dir.join("influxdb.conf"))
            .env("INFLUXDB_REPORTING_DISABLED", "true");
        let (process, _) =
            Process::spawn(&mut command, &dir.join("influxdb.log"), LogMode::Truncate)?;
        Ok(Self {
            process: Some(process),
            addr,
            dir,
            http: reqwest::Client::new(),
        })
    }

    /// Waits until `/ping` answers, failing the test after `limit` or when influxd exits.
    async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let answer = self
                .http
                .get(format!("{}/ping", self.url()))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "influxd did not answer within {limit:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The server's base URL, as the `address` of an influxdb profile.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The v2 token InfluxDB 1.x takes for the admin user (`user:password`).
    pub fn token(&self) -> String {
        format!("{USER}:{PASSWORD}")
    }

    /// Runs an InfluxQL statement as the admin user, failing the test unless it succeeds.
    pub async fn influxql(&self, statement: &str) {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/query", self.url()), [("q", statement)])
                .expect("an InfluxQL URL");
        let answer = self
            .http
            .post(url)
            .basic_auth(USER, Some(PASSWORD))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("InfluxQL {statement:?}: {e}"));
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(
            status.is_success() && !text.contains("\"error\""),
            "InfluxQL {statement:?}: {status} {text}"
        );
    }

    /// Writes points in line protocol (`cpu,host=a usage=0.5 1700000000`, times in seconds)
    /// into [`DATABASE`], failing the test unless InfluxDB takes them.
    pub async fn write(&self, lines: &str) {
        let answer = self
            .http
            .post(format!("{}/write?db={DATABASE}&precision=s", self.url()))
            .basic_auth(USER, Some(PASSWORD))
            .body(lines.to_owned())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("writing points: {e}"));
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "writing points: {status} {text}");
    }

    /// InfluxDB's own log (with one access-log line per request and each Flux query).
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("influxdb.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Kills the server now; its address then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

impl Drop for Influxdb {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- InfluxDB's log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
