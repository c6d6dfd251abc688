//! Test support for integration tests: the local cluster (attached to, or started once per test
//! process), a fresh namespace per test that is removed afterwards, waiting on observable state
//! with a deadline, and a dump of the namespace's events and pods when a test fails.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod prometheus;

use std::{
    fmt::Debug,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::{Event, Namespace, Pod},
};
use kube::{
    Api, Client, Config, Resource,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{Condition, await_condition},
};
use serde::de::DeserializeOwned;

/// The checkout's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the local cluster (`SLUICE_TEST_KUBECONFIG` points tests elsewhere).
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("SLUICE_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/cluster/kubeconfig"))
}

/// The kubectl that matches the cluster's version (linked by `cargo xtask cluster up`).
pub fn kubectl() -> Command {
    let mut cmd = Command::new(repo_root().join("target/cluster/bin/kubectl"));
    cmd.arg("--kubeconfig").arg(kubeconfig());
    cmd
}

/// Makes sure the local cluster answers, starting it (once per test process) when it does not.
fn ensure_cluster() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let answers = Command::new(repo_root().join("target/cluster/bin/kubectl"))
            .arg("--kubeconfig")
            .arg(kubeconfig())
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.status.success());
        if answers {
            return;
        }
        // Serialise the start between test binaries run at once; a separate target directory keeps
        // the inner cargo from waiting on the lock the outer `cargo test` holds.
        let lock_path = repo_root().join("target/cluster.lock");
        std::fs::create_dir_all(repo_root().join("target")).expect("creating target/");
        let lock = std::fs::File::create(&lock_path).expect("creating the cluster lock file");
        lock.lock().expect("locking the cluster lock file");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(repo_root())
            .args([
                "run",
                "--quiet",
                "--package",
                "xtask",
                "--target-dir",
                "target/xtask",
                "--",
                "cluster",
                "up",
            ])
            .status()
            .expect("running `cargo xtask cluster up`");
        assert!(
            status.success(),
            "`cargo xtask cluster up` failed; see target/cluster/logs/"
        );
    });
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

/// Applies Sluice's CRDs (from the Rust types) and waits until they are Established.
pub async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::conditions::is_crd_established;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in sluice_api::crds() {
        let name = crd.metadata.name.clone().expect("a named CRD");
        api.patch(
            &name,
            &PatchParams::apply("sluice-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        wait(
            await_condition(api.clone(), &name, is_crd_established()),
            30,
            &format!("CRD {name} Established"),
        )
        .await;
    }
}

/// Awaits `fut`, failing the test with `what` when it takes longer than `seconds`.
pub async fn wait<T, E: Debug>(
    fut: impl Future<Output = Result<T, E>>,
    seconds: u64,
    what: &str,
) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), fut).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("waiting for {what}: {e:?}"),
        Err(_) => panic!("timed out after {seconds} s waiting for {what}"),
    }
}

/// A namespace of its own for one test, deleted when the test ends; when the test fails, the
/// namespace's events and pods are printed first.
pub struct TestNamespace {
    /// A client for the cluster.
    pub client: Client,
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// Creates `sluice-<test>-<random suffix>`.
    pub async fn new(test: &str) -> Self {
        let client = client().await;
        let suffix = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        );
        let name = format!("sluice-{}-{suffix}", test.replace('_', "-"))
            .chars()
            .take(63)
            .collect::<String>();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "sluice.dev/test": "true" } }
        }))
        .expect("a namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { client, name }
    }

    /// An API for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Waits until the named object satisfies `condition`, and returns it.
    pub async fn wait_for<K>(
        &self,
        name: &str,
        seconds: u64,
        what: &str,
        condition: impl Condition<K>,
    ) -> K
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + DeserializeOwned
            + Send
            + 'static,
    {
        let found = wait(
            await_condition(self.api::<K>(), name, condition),
            seconds,
            what,
        )
        .await;
        found.unwrap_or_else(|| panic!("{what}: {name} was deleted"))
    }

    async fn dump(client: Client, ns: &str) {
        let mut events = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
        eprintln!("--- events in {ns}:");
        for e in events {
            let object = format!(
                "{}/{}",
                e.involved_object.kind.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default()
            );
            eprintln!(
                "  {:<8} {:<28} {:<40} {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                object,
                e.message.unwrap_or_default()
            );
        }
        eprintln!("--- pods in {ns}:");
        for pod in Api::<Pod>::namespaced(client, ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let status = pod.status.unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            eprintln!(
                "  {:<48} {:<10} ready={ready}",
                pod.metadata.name.unwrap_or_default(),
                status.phase.unwrap_or_default()
            );
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (name, failed) = (self.name.clone(), std::thread::panicking());
        // Drop cannot await, and the test's client lives on the test's (now blocked) runtime: clean
        // up on a thread with a runtime and a client of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = client_for(&kubeconfig()).await;
                if failed {
                    Self::dump(client.clone(), &name).await;
                }
                let _ = Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// A `sluice` controller process watching one test namespace: started from the binary that
/// `cargo test` built, its log in `target/test-logs/<namespace>.log`, stopped when dropped (and the
/// end of its log printed when the test failed).
pub struct Controller {
    child: std::process::Child,
    namespace: String,
    /// The address of `/metrics`, `/healthz` and `/readyz`.
    pub addr: std::net::SocketAddr,
    /// The log file.
    pub log: PathBuf,
}

impl Controller {
    /// Starts the controller for `namespace` and waits until it reports ready (caches filled).
    pub async fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &kubeconfig(), &[]).await
    }

    /// Starts the controller for `namespace` with another kubeconfig (another identity) and
    /// extra flags, and waits until it reports ready.
    pub async fn start_with(namespace: &str, kubeconfig: &Path, args: &[&str]) -> Self {
        let dir = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("creating target/test-logs");
        let log = dir.join(format!("{namespace}.log"));
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening the controller log");
        // A restart appends to the same log: its own lines start here.
        let start = file.metadata().map_or(0, |m| m.len());
        // Port 0: the controller picks a free port and logs it, so no other process can take
        // the port between the test choosing it and the controller binding it.
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .args(["--namespace", namespace, "--log-format", "json"])
            .args(["--log-level", "info,sluice=debug"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .stdout(file.try_clone().expect("the log file"))
            .stderr(file)
            .spawn()
            .expect("starting sluice");
        let mut controller = Self {
            child,
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
    async fn announced_addr(&mut self, start: u64) -> std::net::SocketAddr {
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
            if let Some(status) = self.child.try_wait().expect("polling sluice") {
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
            if let Some(status) = self.child.try_wait().expect("polling sluice") {
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
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash or an evicted pod would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("polling sluice") {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// The last `lines` lines of the controller's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
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

/// The Helm built from its Go module (linked by `cargo xtask cluster up` once built; `cargo xtask
/// test` builds it).
pub fn helm() -> Command {
    let mut cmd = Command::new(repo_root().join("target/cluster/bin/helm"));
    cmd.arg("--kubeconfig").arg(kubeconfig());
    cmd
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
