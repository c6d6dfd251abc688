//! A real Graphite (graphite-web and whisper from PyPI) for the graphite provider's tests.
//!
//! [`ensure_installed`] puts graphite-web 1.1.10, whisper 1.1.10 and a Django it supports into
//! a Python virtual environment in the shared cache (once; keyed by the pinned requirements and
//! the Python that made it); `cargo xtask test` runs it and names the environment's Python in
//! `SLUICE_TEST_GRAPHITE`. [`Graphite::start`] serves graphite-web with Django's server on a
//! free port of 127.0.0.1, with a storage directory of its own (whisper files, its database,
//! its log), and returns once the render API answers; the test writes datapoints into whisper
//! files ([`Graphite::write`]) and reads the requests Graphite received from its log
//! ([`Graphite::requests`]). Dropping it kills the server and removes its directory.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::process::{LogMode, Process, free_port};
use anyhow::{Context, Result, bail};

use crate::paths;

/// graphite-web's version.
pub const VERSION: &str = "1.1.10";

/// Everything installed, pinned: graphite-web 1.1.10 requires `Django>=1.8,<3.1`, and
/// cairocffi (its PNG renderer, loaded at import; Debian's libcairo2 is on the machine).
pub const REQUIREMENTS: &[&str] = &[
    "graphite-web==1.1.10",
    "whisper==1.1.10",
    "Django==3.0.14",
    "django-tagging==0.4.3",
    "asgiref==3.13.0",
    "sqlparse==0.6.1",
    "pytz==2026.6",
    "pyparsing==3.3.3",
    "six==1.17.0",
    "urllib3==2.8.0",
    "cairocffi==1.7.1",
    "cffi==2.1.1",
    "pycparser==3.12",
];

/// The Python that makes the environment (`sys.executable` and `sys.version`), part of the key.
fn host_python() -> Result<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable, sys.version)"])
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The cache directory of the environment for the Python `python` (built or not).
fn env_dir(python: &str) -> PathBuf {
    let mut input = REQUIREMENTS.join("\n").into_bytes();
    input.extend_from_slice(python.as_bytes());
    let key = format!("{:016x}", crate::gobuild::fnv1a(&input));
    paths::cache_root()
        .join("python")
        .join(format!("graphite-{VERSION}-{}", &key[..8]))
}

/// The Python of the cached environment, installing graphite-web, whisper and Django into it
/// first when it is not there (a minute, from PyPI).
pub fn ensure_installed() -> Result<PathBuf> {
    crate::preflight::check(&[crate::preflight::Tool::Python])?;
    let dir = env_dir(&host_python()?);
    let python = dir.join("bin").join("python");
    if python.exists() {
        return Ok(python);
    }
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    eprintln!(
        "installing graphite-web {VERSION} into {} (first time only)",
        dir.display()
    );
    crate::gobuild::run_quiet(Command::new("python3").args(["-m", "venv"]).arg(&partial))
        .context("creating the Graphite virtual environment")?;
    crate::gobuild::run_quiet(
        Command::new(partial.join("bin").join("python"))
            // Installs into the environment, not graphite-web's historical /opt/graphite prefix.
            .env("GRAPHITE_NO_PREFIX", "1")
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
            ])
            .args(REQUIREMENTS),
    )
    .context("installing graphite-web from PyPI")?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    // The environment's `bin/python` (a link to the host's) finds it by its own place, so it
    // works once moved; its scripts' first lines do not, and nothing here runs them.
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("moving the environment into {}", dir.display()))?;
    Ok(python)
}

/// The environment's Python: the one `cargo xtask test` installs and names in
/// `SLUICE_TEST_GRAPHITE`.
fn python() -> Result<PathBuf> {
    std::env::var_os("SLUICE_TEST_GRAPHITE")
        .map(PathBuf::from)
        .context("SLUICE_TEST_GRAPHITE is not set")
}

/// Writes whisper files: `argv[1]` the file, then `time:value` pairs; a new file keeps one
/// datapoint a second for an hour.
const WRITE_SCRIPT: &str = r#"
import os, sys, whisper
path = sys.argv[1]
os.makedirs(os.path.dirname(path), exist_ok=True)
if not os.path.exists(path):
    whisper.create(path, [(1, 3600)])
points = [(int(t), float(v)) for t, v in (p.split(":") for p in sys.argv[2:])]
whisper.update_many(path, points)
"#;

/// graphite-web served by Django's server on 127.0.0.1, with a storage directory of its own.
pub struct Graphite {
    process: Option<Process>,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
    python: PathBuf,
}

impl Graphite {
    /// Starts graphite-web and waits (up to 60 s) until its render API answers.
    pub async fn start() -> Self {
        let python = python().unwrap_or_else(|e| {
            panic!("{e:#}; run the tests with `cargo xtask test`, which installs Graphite")
        });
        let graphite = Self::spawn(&python).unwrap_or_else(|e| panic!("starting Graphite: {e:#}"));
        graphite.wait_ready(Duration::from_secs(60)).await;
        graphite
    }

    fn spawn(python: &Path) -> Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let dir = std::env::temp_dir().join(format!(
            "sluice-graphite-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(dir.join("storage").join("whisper"))
            .context("the Graphite storage directory")?;
        std::fs::create_dir_all(dir.join("storage").join("log").join("webapp"))
            .context("the Graphite log directory")?;
        std::fs::write(
            dir.join("sluice_graphite_settings.py"),
            "SECRET_KEY = 'sluice-test-graphite'\n",
        )
        .context("the Graphite settings")?;
        let mut command = Command::new(python);
        command
            .args(["-m", "django", "runserver", "--noreload"])
            .arg(addr.to_string())
            .env("DJANGO_SETTINGS_MODULE", "graphite.settings")
            .env("GRAPHITE_SETTINGS_MODULE", "sluice_graphite_settings")
            .env("GRAPHITE_STORAGE_DIR", dir.join("storage"))
            .env("PYTHONPATH", &dir)
            .env("PYTHONUNBUFFERED", "1");
        let (process, _) =
            Process::spawn(&mut command, &dir.join("graphite.log"), LogMode::Truncate)?;
        Ok(Self {
            process: Some(process),
            addr,
            dir,
            python: python.to_path_buf(),
        })
    }

    /// Waits until the render API answers, failing the test after `limit` or when the server
    /// exits.
    async fn wait_ready(&self, limit: Duration) {
        crate::access::ensure_crypto_provider();
        let http = reqwest::Client::new();
        let probe = format!("{}/render?target=sluice.ready&format=json", self.url());
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let answer = http
                .get(&probe)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Graphite did not answer within {limit:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The server's base URL, as a metric's `address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes datapoints (`(unix seconds, value)`) of a metric (`app.errors`) into its whisper
    /// file, creating it (one point a second, kept an hour) if needed.
    pub fn write(&self, metric: &str, points: &[(i64, f64)]) {
        let mut path = self.dir.join("storage").join("whisper");
        for part in metric.split('.') {
            path.push(part);
        }
        path.set_extension("wsp");
        let out = Command::new(&self.python)
            .args(["-c", WRITE_SCRIPT])
            .arg(&path)
            .args(points.iter().map(|(t, v)| format!("{t}:{v}")))
            .output()
            .expect("running whisper");
        assert!(
            out.status.success(),
            "writing {metric}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The requests Graphite logged, as request lines (`GET /render?... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| {
                let start = line.find('"')? + 1;
                let end = start + line[start..].find('"')?;
                Some(line[start..end].to_owned())
            })
            .collect()
    }

    /// Graphite's own log (Django's server: one line per request, and any traceback).
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("graphite.log"))
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

impl Drop for Graphite {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- Graphite's log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
