//! A child process whose output goes to a log file: the controller under test, the demo's and
//! the benchmark's controllers. It is killed when dropped, so no test or command leaves one
//! behind, and it can be sampled (RSS, CPU) as the benchmarks measure it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A running child process logging to a file; killed on drop if still running.
pub struct Process {
    child: Child,
    log: PathBuf,
}

/// One reading of a process, for the benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Resident memory, bytes.
    pub rss: u64,
    /// User + system CPU time so far, seconds.
    pub cpu: f64,
}

/// How a process's log file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMode {
    /// Start the file afresh.
    Truncate,
    /// Add to it (a restarted process keeps its earlier lines).
    Append,
}

impl Process {
    /// Spawns `cmd` with stdin closed and stdout and stderr in `log`; returns the process and the
    /// log's length before it started (where its own lines begin).
    pub fn spawn(cmd: &mut Command, log: &Path, mode: LogMode) -> Result<(Self, u64)> {
        let file = std::fs::File::options()
            .create(true)
            .write(true)
            .append(mode == LogMode::Append)
            .truncate(mode == LogMode::Truncate)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let start = file.metadata().map_or(0, |m| m.len());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
        let process = Self {
            child,
            log: log.to_path_buf(),
        };
        Ok((process, start))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails when the controller has exited, naming its log.
    pub fn check(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the controller exited ({status}); see {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Kills the process at once (SIGKILL), as a crash or an evicted pod would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, as Kubernetes would, and waits up to `grace` (`None`: as long as it takes)
    /// for the exit, then kills it; returns whether it exited 0 within the grace.
    pub fn terminate(&mut self, grace: Option<Duration>) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let Some(grace) = grace else {
            return self.child.wait().is_ok_and(|s| s.success());
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Resident memory and CPU time from `/proc`; fails when the process has exited.
    pub fn sample(&mut self) -> Result<Sample> {
        self.check()?;
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
        Ok(Sample {
            rss: rss_kib * 1024,
            cpu: (ticks(11) + ticks(12)) / clock_ticks_per_second(),
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// `sysconf(_SC_CLK_TCK)`, read once with `getconf` (100 on Linux unless configured otherwise).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A free port on 127.0.0.1 (free now; a process started next binds it).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
