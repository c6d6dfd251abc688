//! A real Traefik (v3.7, built from its Go module) in front of a test namespace, so tests prove
//! routing with real requests: Traefik runs outside the cluster against the local apiserver,
//! watches only the test's namespace with its Gateway API (experimental channel), CRD and Ingress
//! providers, and routes to the pod IPs the [`PodPlayer`](crate::pods::PodPlayer) answers on.
//!
//! [`Traefik::start`] gives it a ServiceAccount token and the cluster's CA, one entry point `web`
//! on a free port of 127.0.0.1, the GatewayClass [`GATEWAY_CLASS`] and a Gateway [`GATEWAY`] in
//! the namespace listening on that port (Traefik binds a Gateway listener to the entry point of
//! the same port). [`Traefik::send`] is a small load generator that counts the answers by pod
//! version; [`Traefik::wait_routed`] and [`Traefik::wait_until`] wait for a route to take effect.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::STANDARD};
use futures::{StreamExt, stream};
use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{Namespace, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::{
    access, gobuild, paths,
    pods::Answer,
    process::{self, LogMode, Process},
    routers,
};

/// The GatewayClass every test's Traefik serves (cluster-scoped, created once).
pub const GATEWAY_CLASS: &str = "sluice-traefik";

/// The Gateway [`Traefik::start`] creates in the test's namespace: HTTPRoutes attach to it with
/// `parentRefs: [{name: traefik}]`.
pub const GATEWAY: &str = "traefik";

/// The entry point IngressRoutes name (`entryPoints: [web]`).
pub const ENTRY_POINT: &str = "web";

/// Traefik's Gateway API controller name.
const CONTROLLER_NAME: &str = "traefik.io/gateway-controller";

/// Where Traefik's identity lives: one ServiceAccount for every test's Traefik, bound once to a
/// ClusterRole with what its three providers read and the statuses they write.
const IDENTITY_NAMESPACE: &str = "sluice-testkit";
const IDENTITY: &str = "traefik";

/// The field manager of what the launcher applies.
const MANAGER: &str = "sluice-testkit-traefik";

/// What `n` requests got: answers counted by the answering pod's version, and the failures.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Requests sent.
    pub sent: usize,
    /// 200 answers by the pod's hash (its `rollouts-pod-template-hash`, else `pod-template-hash`).
    pub by_hash: BTreeMap<String, usize>,
    /// 200 answers by the pod's image.
    pub by_image: BTreeMap<String, usize>,
    /// 200 answers by pod name.
    pub by_pod: BTreeMap<String, usize>,
    /// Requests that failed: a status other than 200, a body that is not a pod's answer, or no
    /// answer at all.
    pub failures: usize,
    /// The first failure, as text.
    pub first_error: Option<String>,
}

impl Tally {
    /// The 200 answers.
    pub fn answered(&self) -> usize {
        self.sent - self.failures
    }

    /// The share of all requests sent that `hash` answered, in 0..=1.
    pub fn share(&self, hash: &str) -> f64 {
        share(self.by_hash.get(hash).copied(), self.sent)
    }

    /// The share of all requests sent that pods of `image` answered, in 0..=1.
    pub fn image_share(&self, image: &str) -> f64 {
        share(self.by_image.get(image).copied(), self.sent)
    }

    fn add(&mut self, result: Result<Answer, String>) {
        self.sent += 1;
        match result {
            Ok(answer) => {
                *self.by_hash.entry(answer.hash).or_default() += 1;
                *self.by_image.entry(answer.image).or_default() += 1;
                *self.by_pod.entry(answer.pod).or_default() += 1;
            }
            Err(e) => {
                self.failures += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

#[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
fn share(count: Option<usize>, sent: usize) -> f64 {
    if sent == 0 {
        return 0.0;
    }
    count.unwrap_or(0) as f64 / sent as f64
}

/// A Traefik process routing one test namespace; killed when dropped (its log's end printed when
/// the test failed).
pub struct Traefik {
    process: Process,
    namespace: String,
    port: u16,
    http: reqwest::Client,
}

impl Traefik {
    /// Starts Traefik for `namespace` (building it on first use) and waits until its entry point
    /// accepts connections. Installs the router CRDs first when the cluster lacks them.
    pub async fn start(namespace: &str) -> Self {
        match Self::try_start(namespace).await {
            Ok(traefik) => traefik,
            Err(e) => panic!("starting Traefik for {namespace}: {e:#}"),
        }
    }

    async fn try_start(namespace: &str) -> Result<Self> {
        let client = access::client().await;
        routers::ensure_installed(&client).await?;
        let binary = binary()?;
        let dir = paths::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).context("creating target/test-logs")?;
        let (server, ca) = cluster_endpoint(&dir.join(format!("traefik-{namespace}.ca.crt")))?;
        let token = dir.join(format!("traefik-{namespace}.token"));
        std::fs::write(&token, identity_token(&client).await?)
            .with_context(|| format!("writing {}", token.display()))?;
        let port = process::free_port()?;
        gateway(&client, namespace, port).await?;

        let mut cmd = Command::new(binary);
        cmd.args([
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            "--log.level=INFO",
            "--log.noColor=true",
            "--accessLog=false",
            // Apply a changed route at once (the default waits 2 s between configurations).
            "--providers.providersThrottleDuration=0s",
        ])
        .arg(format!(
            "--entryPoints.{ENTRY_POINT}.address=127.0.0.1:{port}"
        ));
        for provider in ["kubernetesGateway", "kubernetesCRD", "kubernetesIngress"] {
            let p = format!("--providers.{provider}");
            cmd.arg(format!("{p}=true"))
                .arg(format!("{p}.endpoint={server}"))
                .arg(format!("{p}.token={}", token.display()))
                .arg(format!("{p}.certAuthFilePath={}", ca.display()))
                .arg(format!("{p}.namespaces={namespace}"));
        }
        cmd.arg("--providers.kubernetesGateway.experimentalChannel=true");
        let log = dir.join(format!("traefik-{namespace}.log"));
        let (process, _) = Process::spawn(&mut cmd, &log, LogMode::Truncate)?;
        crate::access::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(16)
            .build()
            .context("an HTTP client")?;
        let mut traefik = Self {
            process,
            namespace: namespace.to_owned(),
            port,
            http,
        };
        traefik.wait_listening(Duration::from_secs(30)).await?;
        Ok(traefik)
    }

    async fn wait_listening(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.process.exited() {
                anyhow::bail!(
                    "traefik exited ({status}) on starting:\n{}",
                    self.process.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "traefik did not listen on 127.0.0.1:{} within {limit:?}:\n{}",
                    self.port,
                    self.process.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The entry point's URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The entry point's port (the Gateway's listener port).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Traefik's log file.
    pub fn log(&self) -> PathBuf {
        self.process.log().to_path_buf()
    }

    /// The last `lines` lines of Traefik's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Sends `n` GET requests for `path` with `headers` (a few at a time) and counts the answers.
    pub async fn send(&self, n: usize, path: &str, headers: &[(&str, &str)]) -> Tally {
        const IN_FLIGHT: usize = 8;
        let url = format!("{}{path}", self.url());
        let results: Vec<Result<Answer, String>> = stream::iter(0..n)
            .map(|_| self.get(&url, headers))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut tally = Tally::default();
        for result in results {
            tally.add(result);
        }
        tally
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        let mut request = self.http.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e:#}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {e:#}"))?;
        if status != reqwest::StatusCode::OK {
            let body: String = body.chars().take(200).collect();
            return Err(format!("GET {url}: {status}: {body}"));
        }
        serde_json::from_str(&body)
            .map_err(|e| format!("GET {url}: not a pod's answer ({e}): {body}"))
    }

    /// Waits until a request for `path` with `headers` is answered 200 by a pod (a route exists
    /// and reaches a served pod); fails the test after `limit` with the last failure and the end
    /// of Traefik's log.
    pub async fn wait_routed(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        limit: Duration,
    ) -> Answer {
        let url = format!("{}{path}", self.url());
        let deadline = Instant::now() + limit;
        loop {
            let failure = match self.get(&url, headers).await {
                Ok(answer) => return answer,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "Traefik for {}: GET {path} {headers:?} not routed to a pod within {limit:?}; \
                 last failure: {failure}\n--- traefik log ({}):\n{}",
                self.namespace,
                self.log().display(),
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends batches of `batch` requests until one satisfies `done` (e.g. both versions answer,
    /// and nothing fails), and returns that batch's tally; fails the test after `limit`, saying
    /// `what` was awaited, with the last tally and the end of Traefik's log.
    pub async fn wait_until(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        batch: usize,
        limit: Duration,
        what: &str,
        done: impl Fn(&Tally) -> bool,
    ) -> Tally {
        let deadline = Instant::now() + limit;
        loop {
            let tally = self.send(batch, path, headers).await;
            if done(&tally) {
                return tally;
            }
            assert!(
                Instant::now() < deadline,
                "Traefik for {}: {what} not seen within {limit:?} (GET {path} {headers:?}); \
                 last batch: {tally:?}\n--- traefik log ({}):\n{}",
                self.namespace,
                self.log().display(),
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- traefik's log ({}):\n{}",
                self.log().display(),
                self.log_tail(40)
            );
        }
    }
}

/// The Traefik binary, built on first use, once per process (the tests of one binary start
/// Traefiks at once, and a build is keyed by the process id).
fn binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            gobuild::TRAEFIK
                .ensure_built()
                .map(|dir| dir.join("traefik"))
                .map_err(|e| {
                    format!(
                        "building Traefik (`cargo xtask cluster build` builds it beforehand): {e:#}"
                    )
                })
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The apiserver's URL, and the cluster's CA written to `ca`, both from the test kubeconfig (so a
/// test pointed at another cluster gets that one's).
fn cluster_endpoint(ca: &std::path::Path) -> Result<(String, PathBuf)> {
    let path = access::kubeconfig();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: Value = serde_norway::from_str(&text)?;
    let cluster = &config["clusters"][0]["cluster"];
    let server = cluster["server"]
        .as_str()
        .context("a kubeconfig without a server")?
        .to_owned();
    let pem = match cluster["certificate-authority-data"].as_str() {
        Some(data) => STANDARD.decode(data).context("the kubeconfig's CA data")?,
        None => {
            let file = cluster["certificate-authority"]
                .as_str()
                .context("a kubeconfig without a CA")?;
            std::fs::read(file).with_context(|| format!("reading {file}"))?
        }
    };
    std::fs::write(ca, pem).with_context(|| format!("writing {}", ca.display()))?;
    Ok((server, ca.to_path_buf()))
}

/// Traefik's ServiceAccount, its ClusterRole and binding (applied, so idempotent), and a fresh
/// token for it.
async fn identity_token(client: &Client) -> Result<String> {
    let params = PatchParams::apply(MANAGER).force();
    let apply = |value: Value| Patch::Apply(value);
    Api::<Namespace>::all(client.clone())
        .patch(
            IDENTITY_NAMESPACE,
            &params,
            &apply(json!({ "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": IDENTITY_NAMESPACE } })),
        )
        .await
        .context("applying Traefik's namespace")?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), IDENTITY_NAMESPACE);
    accounts
        .patch(
            IDENTITY,
            &params,
            &apply(json!({ "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": { "name": IDENTITY, "namespace": IDENTITY_NAMESPACE } })),
        )
        .await
        .context("applying Traefik's ServiceAccount")?;
    let read = ["get", "list", "watch"];
    let write_status = ["get", "update", "patch"];
    Api::<ClusterRole>::all(client.clone())
        .patch(
            MANAGER,
            &params,
            &apply(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": { "name": MANAGER },
                "rules": [
                    { "apiGroups": [""], "resources": ["services", "endpoints", "secrets",
                        "configmaps", "nodes", "namespaces", "pods"], "verbs": read },
                    { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                        "verbs": read },
                    { "apiGroups": ["networking.k8s.io"],
                        "resources": ["ingresses", "ingressclasses"], "verbs": read },
                    { "apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"],
                        "verbs": write_status },
                    { "apiGroups": ["gateway.networking.k8s.io", "gateway.networking.x-k8s.io"],
                        "resources": ["*"], "verbs": read },
                    { "apiGroups": ["gateway.networking.k8s.io", "gateway.networking.x-k8s.io"],
                        "resources": ["*/status"], "verbs": write_status },
                    { "apiGroups": ["traefik.io"], "resources": ["*"], "verbs": read },
                ],
            })),
        )
        .await
        .context("applying Traefik's ClusterRole")?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(
            MANAGER,
            &params,
            &apply(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": { "name": MANAGER },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": MANAGER },
                "subjects": [{ "kind": "ServiceAccount", "name": IDENTITY,
                    "namespace": IDENTITY_NAMESPACE }],
            })),
        )
        .await
        .context("applying Traefik's ClusterRoleBinding")?;
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": { "audiences": [], "expirationSeconds": 6 * 3600 }
    }))?;
    let token = accounts
        .create_token_request(IDENTITY, &PostParams::default(), &request)
        .await
        .context("requesting a token for Traefik's ServiceAccount")?;
    token
        .status
        .map(|s| s.token)
        .context("a TokenRequest answered without a token")
}

/// The GatewayClass (once) and the namespace's Gateway, listening on the entry point's port.
async fn gateway(client: &Client, namespace: &str, port: u16) -> Result<()> {
    let params = PatchParams::apply(MANAGER).force();
    let resource = |kind: &str| {
        ApiResource::from_gvk(&GroupVersionKind::gvk(
            "gateway.networking.k8s.io",
            "v1",
            kind,
        ))
    };
    let classes: Api<DynamicObject> = Api::all_with(client.clone(), &resource("GatewayClass"));
    classes
        .patch(
            GATEWAY_CLASS,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": { "name": GATEWAY_CLASS },
                "spec": { "controllerName": CONTROLLER_NAME },
            })),
        )
        .await
        .context("applying the GatewayClass")?;
    let gateways: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource("Gateway"));
    gateways
        .patch(
            GATEWAY,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": { "name": GATEWAY, "namespace": namespace },
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [{
                        "name": ENTRY_POINT, "protocol": "HTTP", "port": port,
                        "allowedRoutes": { "namespaces": { "from": "Same" } },
                    }],
                },
            })),
        )
        .await
        .context("applying the Gateway")?;
    Ok(())
}
