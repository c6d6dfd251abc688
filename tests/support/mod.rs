//! Test support for integration tests: the local cluster (attached to, or started once per test
//! process), a fresh namespace per test that is removed afterwards, waiting on observable state
//! with a deadline, and a dump of the namespace's events and pods when a test fails.
#![allow(dead_code)] // each test binary uses a different part of this module

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

async fn client_for(path: &Path) -> Client {
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
    for crd in sluice::api::crds() {
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
