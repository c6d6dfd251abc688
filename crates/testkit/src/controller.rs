//! The `sluice` controller under test: one process watching one test namespace, built from this
//! checkout, its log in `target/test-logs/<namespace>.log`, stopped when dropped (and the end of
//! its log printed when the test failed).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    access, binaries, paths,
    process::{LogMode, Process},
};

/// A `sluice` controller process watching one test namespace.
pub struct Controller {
    process: Process,
    namespace: String,
    /// The address of `/metrics`, `/healthz` and `/readyz`.
    pub addr: SocketAddr,
    /// The log file.
    pub log: PathBuf,
}

impl Controller {
    /// Starts the controller for `namespace` and waits until it reports ready (caches filled).
    pub async fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &access::kubeconfig(), &[]).await
    }

    /// Starts the controller for `namespace` with another kubeconfig (another identity) and
    /// extra flags, and waits until it reports ready.
    pub async fn start_with(namespace: &str, kubeconfig: &Path, args: &[&str]) -> Self {
        Self::start_with_env(namespace, kubeconfig, args, &[]).await
    }

    /// Starts the controller as [`Controller::start_with`] does, with environment variables
    /// (`POD_NAMESPACE`: where it reads its notification configuration and provider Secrets).
    pub async fn start_with_env(
        namespace: &str,
        kubeconfig: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = paths::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("creating target/test-logs");
        let log = dir.join(format!("{namespace}.log"));
        // Port 0: the controller picks a free port and logs it, so no other process can take
        // the port between the test choosing it and the controller binding it.
        let mut cmd = Command::new(binaries::workspace_binary("sluice", "sluice"));
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .args(["--namespace", namespace, "--log-format", "json"])
            .args(["--log-level", "info,sluice=debug"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .envs(env.iter().copied());
        // A restart appends to the same log: its own lines start at `start`.
        let (process, start) = Process::spawn(&mut cmd, &log, LogMode::Append)
            .unwrap_or_else(|e| panic!("starting sluice: {e:#}"));
        let mut controller = Self {
            process,
            namespace: namespace.to_string(),
            addr: ([127, 0, 0, 1], 0).into(),
            log,
        };
        controller.addr = controller.announced_addr(start).await;
        controller.wait_ready().await;
        controller
    }

    /// The address the controller logged on starting (`metrics_addr` of "starting sluice"),
    /// read from the log after byte `start`.
    async fn announced_addr(&mut self, start: u64) -> SocketAddr {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let own = text
                .get(usize::try_from(start).unwrap_or(0)..)
                .unwrap_or_default();
            let announced = String::from_utf8_lossy(own)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| line["message"] == "starting sluice")
                .and_then(|line| line["metrics_addr"].as_str()?.parse().ok());
            if let Some(addr) = announced {
                return addr;
            }
            if let Some(status) = self.process.exited() {
                panic!(
                    "sluice exited ({status}) before it started:\n{}",
                    self.log_tail(40)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sluice did not start within 30 s:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.process.exited() {
                panic!(
                    "sluice exited ({status}) before it was ready:\n{}",
                    self.log_tail(40)
                );
            }
            if self
                .get("/readyz")
                .await
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sluice was not ready within 30 s:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The whole HTTP response to `GET path`, or `None` when nothing answers.
    pub async fn get(&self, path: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills the process at once (SIGKILL), as a crash or an evicted pod would end it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends SIGTERM and waits (up to 20 s) for the exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        self.process.terminate(Some(Duration::from_secs(20)))
    }

    /// The last `lines` lines of the controller's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- the end of sluice's log for {} ({}):\n{}",
                self.namespace,
                self.log.display(),
                self.log_tail(60)
            );
        }
        self.kill();
    }
}
