//! Starting and stopping the cluster's processes: each in its own process group, its output in
//! `logs/<name>.log`, its pid in `pids/<name>.pid`, so `down` can stop exactly what `up` started.

use std::{
    ffi::OsString,
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A process of the cluster, known by name.
pub struct Proc {
    /// Short name: the pid and log file names.
    pub name: &'static str,
    dir: PathBuf,
}

impl Proc {
    /// The process `name` of the cluster whose state lives in `dir`.
    pub fn new(dir: &Path, name: &'static str) -> Self {
        Self {
            name,
            dir: dir.to_path_buf(),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pids").join(format!("{}.pid", self.name))
    }

    /// The log file of the process.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", self.name))
    }

    /// The recorded pid, if the process is still alive (and is still the program we started).
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesised command name; a zombie has exited.
        let state = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next())?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let started_by_us = String::from_utf8_lossy(&cmdline).contains(self.name);
        (state != Some('Z') && started_by_us).then_some(pid)
    }

    /// Starts `program args…` in its own process group, detached from the caller.
    ///
    /// The returned [`Started`] is how the caller learns that the process died while it waits for
    /// it: `running_pid` cannot tell so soon after the start, because `spawn` returns before the
    /// kernel has set up the new program's arguments, and its `/proc/<pid>/cmdline` reads empty
    /// for a moment.
    pub fn start(&self, program: &Path, args: &[OsString]) -> Result<Started> {
        for sub in ["pids", "logs"] {
            std::fs::create_dir_all(self.dir.join(sub))?;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_file())
            .with_context(|| format!("opening {}", self.log_file().display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        std::fs::write(self.pid_file(), child.id().to_string())?;
        Ok(Started {
            name: self.name,
            log: self.log_file(),
            child,
        })
    }

    /// Stops the process (SIGTERM, then SIGKILL after `grace`) and forgets its pid.
    pub fn stop(&self, grace: Duration) -> Result<bool> {
        let Some(pid) = self.running_pid() else {
            let _ = std::fs::remove_file(self.pid_file());
            return Ok(false);
        };
        signal(pid, "TERM")?;
        let deadline = Instant::now() + grace;
        while self.running_pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.running_pid().is_some() {
            signal(pid, "KILL")?;
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::remove_file(self.pid_file()).ok();
        Ok(true)
    }

    /// Resident memory of the process in bytes, from `/proc/<pid>/status`.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.running_pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

/// A process this invocation started, and can therefore wait for.
pub struct Started {
    name: &'static str,
    log: PathBuf,
    child: Child,
}

impl Started {
    /// Fails, with the exit status and the end of the log, when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            );
        }
        Ok(())
    }
}

/// The last `lines` lines of a log file, for error messages.
fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

/// Fails when something already listens on a port the cluster needs.
pub fn ensure_port_free(port: u16, what: &str) -> Result<()> {
    if std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
    {
        bail!(
            "127.0.0.1:{port} ({what}) is already in use by a process this checkout did not start; \
             is another checkout's cluster running? (`cargo xtask cluster down` there)"
        );
    }
    Ok(())
}
