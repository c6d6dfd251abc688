//! Namespaces of their own for a test or a benchmark run: created with a unique name, deleted
//! afterwards; a failed test's namespace has its events and pods printed first.

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::{Event, Namespace, Pod},
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, ListParams, PostParams},
    runtime::wait::{Condition, await_condition},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{access, wait::wait};

/// `<prefix>-<random suffix>`, cut to the 63 characters a namespace name may have.
pub fn unique_name(prefix: &str) -> String {
    let suffix = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    );
    format!("{prefix}-{suffix}").chars().take(63).collect()
}

/// Creates the namespace `name` with these labels.
pub async fn create(client: &Client, name: &str, labels: Value) -> Result<()> {
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Deletes the namespace `name` (if it exists) and waits, polling every `poll`, until it is
/// gone, so that what comes next starts clean.
pub async fn delete_and_wait(
    client: &Client,
    name: &str,
    limit: Duration,
    poll: Duration,
) -> Result<()> {
    let namespaces = Api::<Namespace>::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::background()).await;
    let deadline = Instant::now() + limit;
    while namespaces.get_opt(name).await?.is_some() {
        if Instant::now() > deadline {
            bail!("namespace {name} still terminating after {limit:?}");
        }
        tokio::time::sleep(poll).await;
    }
    Ok(())
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
        let client = access::client().await;
        let name = unique_name(&format!("sluice-{}", test.replace('_', "-")));
        if let Err(e) = create(&client, &name, json!({ "sluice.dev/test": "true" })).await {
            panic!("{e:#}");
        }
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
                let client = access::client_for(&access::kubeconfig()).await;
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
