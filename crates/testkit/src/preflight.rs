//! What the developer commands need on the machine, checked once before anything is built, so
//! that a missing tool is one clear message with the command that provides it, not an error
//! ten minutes into a build.

use std::process::Command;

use anyhow::{Result, bail};

/// The oldest Go that builds the pinned modules (their `go.mod` files say `go 1.26.0`).
const GO_MIN: (u32, u32) = (1, 26);

/// A tool a command needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Go, to build the cluster, Helm, Prometheus and the peer from their modules.
    Go,
    /// openssl, for the cluster's certificates.
    Openssl,
    /// git, which Argo CD's repo server runs on the tests' repositories.
    Git,
    /// redis-server, Argo CD's cache (Argo CD runs beside the cluster for the tests).
    Redis,
    /// python3 with venv and pip, to install graphite-web (the graphite provider's tests).
    Python,
    /// Debian's chromium and chromium-driver, which the dashboard's browser test drives.
    Chromium,
}

/// Everything the cluster and the demo need.
pub const ALL: &[Tool] = &[Tool::Go, Tool::Openssl];

/// What the test suite needs besides the cluster and Argo CD.
pub const TESTS: &[Tool] = &[Tool::Python, Tool::Chromium];

/// Everything Argo CD needs besides what the cluster needs (`argocd up`, the tests).
pub const ARGOCD: &[Tool] = &[Tool::Git, Tool::Redis];

impl Tool {
    /// Why the tool is missing, with the command that provides it; `None` when it is there.
    fn problem(self) -> Option<String> {
        match self {
            Tool::Go => {
                let out = Command::new("go").arg("version").output().ok();
                let text = out
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
                let fix = "install Go 1.26 or newer from https://go.dev/dl (Debian's golang-go is older) and put it on PATH";
                match text.as_deref().map(go_version) {
                    None => Some(format!("Go is not on PATH: {fix}")),
                    Some(Some(v)) if v < GO_MIN => Some(format!(
                        "Go {}.{} is too old for the pinned modules: {fix}",
                        v.0, v.1
                    )),
                    Some(_) => None,
                }
            }
            Tool::Openssl => {
                let ok = Command::new("openssl")
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success());
                (!ok).then(|| {
                    "openssl is not on PATH (it makes the cluster's certificates): apt-get install openssl, or your system's openssl package".to_string()
                })
            }
            Tool::Git => (!answers("git", "--version")).then(|| {
                "git is not on PATH (Argo CD's repo server reads the tests' repositories with it): apt-get install -y git".to_string()
            }),
            Tool::Redis => (!answers("redis-server", "--version")).then(|| {
                "redis-server is not on PATH (Argo CD's cache, for the Argo CD tests): apt-get install -y redis-server".to_string()
            }),
            Tool::Python => {
                let ok = Command::new("python3")
                    .args(["-c", "import venv, ensurepip"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                (!ok).then(|| {
                    "python3 with venv and pip is not on PATH (graphite-web is installed from PyPI for the graphite tests): apt-get install -y python3 python3-venv".to_string()
                })
            }
            Tool::Chromium => {
                let path = |var: &str, default: &str| {
                    std::env::var_os(var).map_or_else(|| default.into(), std::path::PathBuf::from)
                };
                let found = path("CHROMIUM", "/usr/bin/chromium").is_file()
                    && path("CHROMEDRIVER", "/usr/bin/chromedriver").is_file();
                (!found).then(|| {
                    "chromium and chromedriver are not installed (the dashboard's browser test drives them): apt-get install -y --no-install-recommends chromium chromium-driver".to_string()
                })
            }
        }
    }
}

/// Whether `program arg` runs and succeeds.
fn answers(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `(major, minor)` of `go version` output such as `go version go1.26.8 linux/amd64`; a
/// version it cannot read (a development build) is taken as new enough.
fn go_version(text: &str) -> Option<(u32, u32)> {
    let version = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("go"))
        .find(|v| v.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Fails with every missing tool at once, each with the command that fixes it.
pub fn check(tools: &[Tool]) -> Result<()> {
    let problems: Vec<String> = tools.iter().filter_map(|t| t.problem()).collect();
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "this machine lacks what the command needs:\n  - {}",
        problems.join("\n  - ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions_are_read_from_go_version_output() {
        assert_eq!(go_version("go version go1.26.8 linux/amd64"), Some((1, 26)));
        assert_eq!(go_version("go version go1.25 linux/amd64"), Some((1, 25)));
        assert_eq!(
            go_version("go version go1.27rc1 darwin/arm64"),
            Some((1, 27))
        );
        assert!(go_version("go version go1.25.3 linux/amd64").unwrap() < GO_MIN);
        assert_eq!(go_version("go version devel +abc linux/amd64"), None);
    }
}
