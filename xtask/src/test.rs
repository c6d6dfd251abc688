//! `cargo xtask test`: the whole suite, with the test binaries run side by side.
//!
//! The cluster tests spend most of their time waiting on controllers and kwok, not on the CPU, so
//! `cargo test`'s one-binary-at-a-time leaves the machine idle: the suite's binaries took 24
//! minutes one after the other on 2 cores. Here cargo builds them once, and a few lanes take the
//! binaries longest first; each binary's output goes to its own log, shown whole when it fails.
//! Every test already runs in a namespace of its own, so the binaries do not meet.

use std::{
    collections::VecDeque,
    fs,
    io::BufRead,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sluice_testkit::paths;

/// The binaries that take longest (measured on CI), started first so that no long one starts
/// last and keeps the others' lanes waiting; the rest follow in cargo's order.
const LONGEST_FIRST: &[&str] = &[
    "canary",
    "argocd",
    "dashboard",
    "plugin",
    "analysis",
    "analysis_providers",
    "routers",
    "bluegreen",
    "hostile",
    "operations",
    "crds",
    "traffic",
    "sluice_api",
    "sluice_analysis",
];

/// One test executable cargo built.
struct Binary {
    /// The target's name (`canary`, `sluice_plan`, …).
    name: String,
    /// What cargo prints for it: `tests/canary/main.rs` or `unittests src/lib.rs (sluice-plan)`.
    label: String,
    executable: PathBuf,
    /// The package's directory: cargo runs each test binary from there.
    package_dir: PathBuf,
}

/// How one binary ended.
struct Outcome {
    label: String,
    passed: bool,
    summary: String,
    elapsed: Duration,
    log: PathBuf,
}

/// Builds every test binary of the workspace and runs them in `lanes` at once with `env`, then
/// the doctests; fails naming each binary that failed, after all have run.
pub fn run_all(env: &[(&str, String)], lanes: usize) -> Result<()> {
    let binaries = build()?;
    let logs = paths::repo_root().join("target/test-logs/binaries");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let queue = Mutex::new(order(binaries));
    let outcomes = Mutex::new(Vec::new());
    let started = Instant::now();
    println!(
        "==> running the test binaries, {lanes} at a time (logs in {})",
        logs.display()
    );
    std::thread::scope(|scope| {
        for _ in 0..lanes {
            scope.spawn(|| {
                loop {
                    let Some(binary) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let outcome = run_one(&binary, env, &logs);
                    report(&outcome);
                    outcomes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(outcome);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    // Doctests are compiled and run by rustdoc, which only cargo drives.
    let doctests = Command::new(cargo())
        .current_dir(paths::repo_root())
        .args(["test", "--workspace", "--doc", "--quiet"])
        .status()
        .context("running cargo test --doc")?;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    println!(
        "==> {} test binaries in {:.0} s: {} passed, {} failed",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        outcomes.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|o| o.label.as_str()).collect();
        bail!("test binaries failed: {}", names.join(", "));
    }
    if !doctests.success() {
        bail!("the doctests failed: {doctests}");
    }
    Ok(())
}

/// The cargo running us, when there is one.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `cargo test --workspace --no-run`, read as JSON: every test executable with its package.
fn build() -> Result<Vec<Binary>> {
    let mut child = Command::new(cargo())
        .current_dir(paths::repo_root())
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test --no-run")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut binaries = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(binary) = binary_of(&message) {
            binaries.push(binary);
        }
    }
    let status = child.wait().context("waiting for cargo test --no-run")?;
    if !status.success() {
        bail!("building the tests failed: {status}");
    }
    Ok(binaries)
}

/// The test executable a `compiler-artifact` message announces, if it is one.
fn binary_of(message: &serde_json::Value) -> Option<Binary> {
    if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
        return None;
    }
    let executable = PathBuf::from(message["executable"].as_str()?);
    let target = &message["target"];
    let name = target["name"].as_str()?.to_string();
    let package_dir = Path::new(message["manifest_path"].as_str()?)
        .parent()?
        .to_path_buf();
    let source = Path::new(target["src_path"].as_str()?);
    let relative = source
        .strip_prefix(&package_dir)
        .unwrap_or(source)
        .display();
    let label = if target["kind"][0] == "test" {
        relative.to_string()
    } else {
        format!("unittests {relative} ({})", package_of(message)?)
    };
    Some(Binary {
        name,
        label,
        executable,
        package_dir,
    })
}

/// The package's name in a cargo message: its `package_id` is `path+file:///…#name@version`
/// (cargo 1.77 and newer) or `name version (source)`.
fn package_of(message: &serde_json::Value) -> Option<&str> {
    let id = message["package_id"].as_str()?;
    match id.split_once('#') {
        Some((_, rest)) => rest.split('@').next(),
        None => id.split(' ').next(),
    }
}

/// The binaries in [`LONGEST_FIRST`]'s order, then the rest as cargo built them.
fn order(mut binaries: Vec<Binary>) -> VecDeque<Binary> {
    let rank = |b: &Binary| {
        LONGEST_FIRST
            .iter()
            .position(|n| *n == b.name)
            .unwrap_or(LONGEST_FIRST.len())
    };
    binaries.sort_by_key(rank);
    binaries.into()
}

/// Runs one binary as cargo would (from its package's directory), its output to its log.
fn run_one(binary: &Binary, env: &[(&str, String)], logs: &Path) -> Outcome {
    let file_name = binary
        .label
        .replace(['/', ' ', '(', ')'], "_")
        .replace("__", "_");
    let log = logs.join(format!("{file_name}.log"));
    let started = Instant::now();
    let status = fs::File::create(&log).and_then(|out| {
        let err = out.try_clone()?;
        Command::new(&binary.executable)
            .current_dir(&binary.package_dir)
            .env("CARGO_MANIFEST_DIR", &binary.package_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
    });
    let elapsed = started.elapsed();
    let output = fs::read_to_string(&log).unwrap_or_default();
    let summary = output
        .lines()
        .rev()
        .find(|l| l.starts_with("test result:"))
        .map(str::to_string);
    let (passed, summary) = match status {
        Ok(status) => (
            status.success(),
            summary.unwrap_or_else(|| format!("exited with {status}, no test result")),
        ),
        Err(e) => (
            false,
            format!("could not run {}: {e}", binary.executable.display()),
        ),
    };
    Outcome {
        label: binary.label.clone(),
        passed,
        summary,
        elapsed,
        log,
    }
}

/// One line per binary as it ends, then its tests as `cargo test` lists them (so whoever reads
/// the output, person or CI, sees each test and each `test result:` line as cargo prints them);
/// the whole log of one that failed.
fn report(outcome: &Outcome) {
    use std::io::Write as _;
    let verdict = if outcome.passed { "ok" } else { "FAILED" };
    let log = fs::read_to_string(&outcome.log).unwrap_or_default();
    // One block per binary: the lanes end at any time and must not interleave their lines.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{verdict:6} {:<48} {:>6.1} s  {}",
        outcome.label,
        outcome.elapsed.as_secs_f64(),
        outcome.summary
    );
    if outcome.passed {
        for line in libtest_lines(&log) {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    } else {
        let _ = writeln!(
            out,
            "---- {} ({}) ----\n{log}\n---- end of {} ----",
            outcome.label,
            outcome.log.display(),
            outcome.label
        );
    }
}

/// The lines libtest writes for a binary (`running N tests`, one `test … ok` a test, the
/// `test result:` line), without what the tests themselves logged between them.
fn libtest_lines(log: &str) -> impl Iterator<Item = &str> {
    log.lines().filter(|line| {
        line.starts_with("running ")
            || line.starts_with("test result:")
            || (line.starts_with("test ")
                && [" ... ok", " ... ignored", " ... FAILED"]
                    .iter()
                    .any(|end| line.ends_with(end)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_artifact_becomes_a_binary_run_from_its_package() {
        let message = serde_json::json!({
            "reason": "compiler-artifact",
            "manifest_path": "/w/crates/plan/Cargo.toml",
            "package_id": "path+file:///w/crates/plan#sluice-plan@0.1.0",
            "target": {"name": "sluice_plan", "kind": ["lib"], "src_path": "/w/crates/plan/src/lib.rs"},
            "profile": {"test": true},
            "executable": "/w/target/debug/deps/sluice_plan-1"
        });
        let binary = binary_of(&message).expect("a test binary");
        assert_eq!(binary.label, "unittests src/lib.rs (sluice-plan)");
        assert_eq!(binary.package_dir, Path::new("/w/crates/plan"));
        let integration = serde_json::json!({
            "reason": "compiler-artifact",
            "manifest_path": "/w/Cargo.toml",
            "target": {"name": "canary", "kind": ["test"], "src_path": "/w/tests/canary/main.rs"},
            "profile": {"test": true},
            "executable": "/w/target/debug/deps/canary-2"
        });
        assert_eq!(
            binary_of(&integration).expect("a test").label,
            "tests/canary/main.rs"
        );
        let library = serde_json::json!({
            "reason": "compiler-artifact",
            "manifest_path": "/w/Cargo.toml",
            "target": {"name": "sluice", "kind": ["lib"], "src_path": "/w/src/lib.rs"},
            "profile": {"test": false},
            "executable": null
        });
        assert!(binary_of(&library).is_none());
    }

    #[test]
    fn a_binary_is_listed_by_its_tests_not_by_what_they_logged() {
        let log = "\nrunning 2 tests\n2026-12-04T17:00:00Z INFO sluice: reconciled\n\
                   test canary::pauses ... ok\ntest results are in\n\
                   test canary::aborts ... ok\n\n\
                   test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(
            libtest_lines(log).collect::<Vec<_>>(),
            [
                "running 2 tests",
                "test canary::pauses ... ok",
                "test canary::aborts ... ok",
                "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            ]
        );
    }

    #[test]
    fn the_longest_binaries_start_first() {
        let binary = |name: &str| Binary {
            name: name.into(),
            label: name.into(),
            executable: PathBuf::new(),
            package_dir: PathBuf::new(),
        };
        let order: Vec<String> = order(vec![binary("cluster"), binary("plugin"), binary("canary")])
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(order, ["canary", "plugin", "cluster"]);
    }
}
