//! The workspace's own binaries (the `sluice` controller, the `kubectl-sluice` plugin), built by
//! cargo on demand: a test needs the binaries of other packages, which cargo does not hand it,
//! and the demo and the benchmarks need the controller built before they start it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use anyhow::{Context, Result, bail};

use crate::paths;

/// A cargo command for the workspace (the cargo running us, when there is one).
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(paths::repo_root());
    cmd
}

/// Builds `bin` of `package` (incremental: a no-op when fresh) in the checkout's `target/`,
/// in release mode or not, and returns its path.
pub fn build(package: &str, bin: &str, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo build -p {package}"))?;
    if !status.success() {
        bail!("cargo build -p {package} --bin {bin} failed: {status}");
    }
    let profile = if release { "release" } else { "debug" };
    Ok(paths::repo_root().join("target").join(profile).join(bin))
}

/// `bin` of `package`, built for the running test's profile once per test process, from where
/// cargo puts it: beside the test's own directory (`target/<profile>/deps/<test>` ->
/// `target/<profile>/<bin>`). Fails the test when it does not build.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{package}/{bin}");
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo build for {bin}: {e}"));
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    let path = profile_dir.join(bin);
    built.insert(key, path.clone());
    path
}
