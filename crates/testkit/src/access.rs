//! Reaching the local cluster from a test: its kubeconfig, clients, the kubectl and Helm of its
//! version, and starting it (once per test process) when it is not up.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::paths;

/// The kubeconfig tests use: `SLUICE_TEST_KUBECONFIG`, else the local cluster's.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("SLUICE_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(paths::kubeconfig)
}

/// The kubectl that matches the cluster's version (linked by `cargo xtask cluster up`).
pub fn kubectl() -> Command {
    let mut cmd = Command::new(paths::cluster_dir().join("bin/kubectl"));
    cmd.arg("--kubeconfig").arg(kubeconfig());
    cmd
}

/// The Helm built from its Go module (linked by `cargo xtask cluster up` once built; `cargo xtask
/// test` builds it).
pub fn helm() -> Command {
    let mut cmd = Command::new(paths::cluster_dir().join("bin/helm"));
    cmd.arg("--kubeconfig").arg(kubeconfig());
    cmd
}

/// Makes sure the local cluster answers, starting it (once per test process) when it does not.
fn ensure_cluster() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let answers = Command::new(paths::cluster_dir().join("bin/kubectl"))
            .arg("--kubeconfig")
            .arg(kubeconfig())
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.status.success());
        if answers {
            return;
        }
        xtask_once(
            "cluster.lock",
            &["cluster", "up"],
            || false,
            "target/cluster/logs/",
        );
    });
}

/// Runs `cargo xtask ARGS` to start a service the tests need, once across the test binaries run
/// at once: under the lock file `target/<lock>`, and not at all when `ready` says another binary
/// started it meanwhile. A separate target directory keeps the inner cargo from waiting on the
/// lock the outer `cargo test` holds. Fails the test, naming `logs`, when the command fails.
pub(crate) fn xtask_once(lock: &str, args: &[&str], ready: impl Fn() -> bool, logs: &str) {
    let root = paths::repo_root();
    std::fs::create_dir_all(root.join("target")).expect("creating target/");
    let file = std::fs::File::create(root.join("target").join(lock))
        .unwrap_or_else(|e| panic!("creating target/{lock}: {e}"));
    file.lock()
        .unwrap_or_else(|e| panic!("locking target/{lock}: {e}"));
    if ready() {
        return;
    }
    let command = format!("cargo xtask {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--target-dir",
            "target/xtask",
            "--",
        ])
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running `{command}`: {e}"));
    assert!(status.success(), "`{command}` failed; see {logs}");
}

/// A client for the local cluster, starting the cluster first if needed.
pub async fn client() -> Client {
    ensure_cluster();
    client_for(&kubeconfig()).await
}

/// A client for another kubeconfig (another identity).
pub async fn client_for(path: &Path) -> Client {
    let file =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a Kubernetes client")
}

/// A copy of the test kubeconfig that authenticates with `token` (a ServiceAccount's), written
/// to `target/test-logs/<name>.kubeconfig`: another identity on the same cluster.
pub fn kubeconfig_with_token(token: &str, name: &str) -> PathBuf {
    let mut config: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(kubeconfig()).expect("the test kubeconfig"),
    )
    .expect("a kubeconfig");
    config["users"][0]["user"] = serde_json::json!({ "token": token });
    let path = paths::repo_root().join(format!("target/test-logs/{name}.kubeconfig"));
    std::fs::create_dir_all(path.parent().expect("a directory")).expect("target/test-logs");
    std::fs::write(&path, serde_json::to_string(&config).expect("JSON")).expect("writing it");
    path
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A `spec.restartAt` for now, as the plugin and Argo CD write it (RFC 3339, whole seconds):
/// waits into the next second first and after, so that every existing pod is strictly older
/// and every replacement strictly newer.
pub async fn restart_time() -> jiff::Timestamp {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let round = jiff::TimestampRound::new()
        .smallest(jiff::Unit::Second)
        .mode(jiff::RoundMode::Ceil);
    let at = jiff::Timestamp::now().round(round).expect("a time");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    at
}

/// Installs the TLS crypto provider kube uses (rustls with ring) as the process default, which
/// reqwest built without a provider needs to make a client, as the controller does.
pub(crate) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use kube::client::ConfigExt;
        let Ok(uri) = "https://localhost".parse() else {
            return;
        };
        if let Ok(config) = kube::Config::new(uri).rustls_client_config() {
            let _ = (**config.crypto_provider()).clone().install_default();
        }
    });
}
