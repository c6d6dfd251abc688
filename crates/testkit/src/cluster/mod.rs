//! The local cluster behind `cargo xtask cluster up|down|status|build`: a real Kubernetes control
//! plane on 127.0.0.1.
//!
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built from their Go modules,
//! with kwok playing the nodes and the pods. State lives in `target/cluster/` of the checkout; the
//! binaries live in the shared cache (see `gobuild`). Every listener is bound to 127.0.0.1.

mod certs;
pub(crate) mod procs;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::STANDARD};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use procs::{Proc, Started};

use crate::{
    gobuild::{self, ETCD, KUBERNETES, KWOK},
    paths,
};

/// The apiserver's port on 127.0.0.1.
pub const APISERVER_PORT: u16 = 6443;
const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;
const CONTROLLER_MANAGER_PORT: u16 = 10257;
const SCHEDULER_PORT: u16 = 10259;

/// The processes in start order; `down` stops them in reverse.
const PROCESSES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// The annotation kwok selects the nodes it plays by.
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Options of `cluster up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpOptions {
    /// How many fake nodes to create.
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// How many pods each fake node accepts.
    #[arg(long, default_value_t = 500)]
    pub pods_per_node: u32,
    /// Record every API request (Metadata level, JSON lines) in `logs/audit.log`, so benchmarks
    /// can count one client's requests by its user agent. Restarts a cluster started without it.
    #[arg(long)]
    pub audit: bool,
}

impl Default for UpOptions {
    fn default() -> Self {
        Self {
            nodes: 2,
            pods_per_node: 500,
            audit: false,
        }
    }
}

/// The audit log of a cluster started with `--audit`.
pub fn audit_log() -> PathBuf {
    paths::cluster_dir().join("logs").join("audit.log")
}

/// Marks a cluster started with `--audit`.
fn audit_marker() -> PathBuf {
    paths::cluster_dir().join("audit-enabled")
}

/// Every request once, when its response is complete, without bodies.
const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
";

/// Builds every binary the cluster and the chart tests use, without starting anything.
pub fn build() -> Result<()> {
    for component in gobuild::ALL {
        let dir = component.ensure_built()?;
        eprintln!(
            "{} {}: {}",
            component.name,
            component.version,
            dir.display()
        );
    }
    link_tools(&paths::cluster_dir())
}

/// Starts the cluster unless it is already up, and writes `target/cluster/kubeconfig`.
pub async fn up(options: &UpOptions) -> Result<()> {
    let started = Instant::now();
    let dir = paths::cluster_dir();
    let procs: Vec<Proc> = PROCESSES.iter().map(|name| Proc::new(&dir, name)).collect();
    let running = procs.iter().filter(|p| p.running_pid().is_some()).count();
    let audit_missing = options.audit && !audit_marker().exists();
    if running == procs.len() && !audit_missing && ready(&paths::kubeconfig()).await.is_ok() {
        ensure_nodes(options).await?;
        link_tools(&dir)?;
        crate::pods::route_pod_ips_or_warn();
        crate::routers::install(&ready(&paths::kubeconfig()).await?).await?;
        eprintln!(
            "cluster already up; kubeconfig: {}",
            paths::kubeconfig().display()
        );
        return Ok(());
    }
    if running > 0 {
        eprintln!(
            "cluster {} ({running} of {} processes up); restarting it",
            if audit_missing {
                "without an audit log"
            } else {
                "partly up"
            },
            procs.len()
        );
        down()?;
    }
    for component in [&ETCD, &KUBERNETES, &KWOK] {
        component.ensure_built()?;
    }
    for (port, what) in [
        (APISERVER_PORT, "kube-apiserver"),
        (ETCD_CLIENT_PORT, "etcd"),
        (ETCD_PEER_PORT, "etcd peer"),
        (CONTROLLER_MANAGER_PORT, "kube-controller-manager"),
        (SCHEDULER_PORT, "kube-scheduler"),
    ] {
        procs::ensure_port_free(port, what)?;
    }
    let pki = dir.join("pki");
    certs::ensure(&pki)?;
    write_kubeconfig(&pki, &paths::kubeconfig())?;
    link_tools(&dir)?;
    let kubeconfig = paths::kubeconfig();

    let etcd_data = dir.join("etcd");
    if etcd_data.exists() {
        std::fs::remove_dir_all(&etcd_data).context("removing stale etcd data")?;
    }
    let by_name = |name: &str| {
        procs
            .iter()
            .find(|p| p.name == name)
            .context("unknown process")
    };
    let etcd = by_name("etcd")?;
    eprintln!("starting etcd and kube-apiserver");
    let mut children = vec![etcd.start(&ETCD.binary("etcd")?, &etcd_args(&etcd_data))?];
    let apiserver = by_name("kube-apiserver")?;
    let apiserver_bin = KUBERNETES.binary("kube-apiserver")?;
    let mut apiserver_flags = apiserver_args(&pki);
    let _ = std::fs::remove_file(audit_marker());
    if options.audit {
        let policy = dir.join("audit-policy.yaml");
        std::fs::write(&policy, AUDIT_POLICY).context("writing the audit policy")?;
        let _ = std::fs::remove_file(audit_log());
        apiserver_flags.extend(args(&[
            format!("--audit-policy-file={}", file(&policy)),
            format!("--audit-log-path={}", file(&audit_log())),
            "--audit-log-format=json".into(),
            "--audit-log-maxsize=500".into(),
            "--audit-log-maxbackup=1".into(),
            // Batched: the log must not slow the requests it counts.
            "--audit-log-mode=batch".into(),
            "--audit-log-batch-max-wait=1s".into(),
        ]));
        std::fs::write(audit_marker(), "").context("marking the audit log")?;
    }
    children.push(apiserver.start(&apiserver_bin, &apiserver_flags)?);
    wait_ready(&kubeconfig, &mut children, &apiserver.log_file()).await?;
    eprintln!("kube-apiserver ready after {:.1?}", started.elapsed());

    let controller_manager = by_name("kube-controller-manager")?;
    eprintln!("starting kube-controller-manager, kube-scheduler and kwok");
    children.push(controller_manager.start(
        &KUBERNETES.binary("kube-controller-manager")?,
        &controller_manager_args(&pki, &kubeconfig, &dir),
    )?);
    let scheduler = by_name("kube-scheduler")?;
    children.push(scheduler.start(
        &KUBERNETES.binary("kube-scheduler")?,
        &scheduler_args(&kubeconfig),
    )?);
    let stages = dir.join("kwok-stages.yaml");
    std::fs::write(&stages, include_str!("kwok-stages.yaml")).context("writing the kwok stages")?;
    let kwok = by_name("kwok")?;
    children.push(kwok.start(&KWOK.binary("kwok")?, &kwok_args(&kubeconfig, &stages))?);

    ensure_nodes(options).await?;
    eprintln!("waiting for the nodes and the first pods");
    wait_usable(&kubeconfig, &mut children).await?;
    crate::pods::route_pod_ips_or_warn();
    eprintln!("installing the traffic routers' CRDs");
    crate::routers::install(&ready(&kubeconfig).await?).await?;
    eprintln!(
        "cluster up in {:.1?} (Kubernetes {}, {} nodes); kubeconfig: {}",
        started.elapsed(),
        KUBERNETES.version,
        options.nodes,
        kubeconfig.display()
    );
    Ok(())
}

/// Stops Argo CD if it runs beside the cluster, then every process `up` started, in reverse
/// order, and drops the etcd data.
pub fn down() -> Result<()> {
    // Argo CD runs beside the cluster and caches what it saw there: a cluster that goes down
    // (or restarts with new etcd data, as `up` does to add an audit log) takes it along, and the
    // next `argocd up` starts it against the new cluster.
    crate::argocd::down()?;
    let dir = paths::cluster_dir();
    for name in PROCESSES.iter().rev() {
        let proc = Proc::new(&dir, name);
        if proc.stop(Duration::from_secs(10))? {
            eprintln!("stopped {name}");
        }
    }
    let etcd_data = dir.join("etcd");
    if etcd_data.exists() {
        std::fs::remove_dir_all(&etcd_data).context("removing etcd data")?;
    }
    crate::pods::unroute_pod_ips_or_warn();
    Ok(())
}

/// Prints each process with its pid and memory, the apiserver's health and the nodes; says
/// whether the cluster is up (down is an answer, not an error).
pub async fn status() -> Result<bool> {
    let dir = paths::cluster_dir();
    let mut total = 0;
    for name in PROCESSES {
        let proc = Proc::new(&dir, name);
        match (proc.running_pid(), proc.rss_bytes()) {
            (Some(pid), rss) => {
                total += rss.unwrap_or(0);
                println!(
                    "{name:<24} running  pid {pid:<8} rss {:>5} MiB",
                    rss.unwrap_or(0) >> 20
                );
            }
            (None, _) => println!("{name:<24} stopped"),
        }
    }
    println!("{:<24} {:>29} MiB", "total", total >> 20);
    match ready(&paths::kubeconfig()).await {
        Ok(client) => {
            let version = client.apiserver_version().await?;
            let nodes = Api::<Node>::all(client).list(&Default::default()).await?;
            let ready_nodes = nodes.items.iter().filter(|n| node_ready(n)).count();
            println!(
                "apiserver ready ({}), nodes ready: {ready_nodes}/{}",
                version.git_version,
                nodes.items.len()
            );
            println!("kubeconfig: {}", paths::kubeconfig().display());
            Ok(true)
        }
        Err(e) => {
            println!("the cluster is not up: {e:#}");
            Ok(false)
        }
    }
}

/// A client for the kubeconfig, if the apiserver answers `/readyz`.
pub async fn ready(kubeconfig: &Path) -> Result<Client> {
    let client = client(kubeconfig).await?;
    let request = http::Request::get("/readyz").body(Vec::new())?;
    let text = tokio::time::timeout(Duration::from_secs(2), client.request_text(request))
        .await
        .context("apiserver /readyz timed out")??;
    if text.trim() != "ok" {
        bail!("apiserver /readyz: {text}");
    }
    Ok(client)
}

/// A client from a kubeconfig file.
pub async fn client(kubeconfig: &Path) -> Result<Client> {
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

async fn wait_ready(kubeconfig: &Path, procs: &mut [Started], log: &Path) -> Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(client) = ready(kubeconfig).await {
            return Ok(client);
        }
        check_alive(procs)?;
        if Instant::now() > deadline {
            bail!(
                "the apiserver was not ready within 60 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the nodes are Ready and the default ServiceAccount exists (pods can be created).
async fn wait_usable(kubeconfig: &Path, procs: &mut [Started]) -> Result<()> {
    let client = ready(kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = nodes.list(&Default::default()).await?;
        let nodes_ready = !list.items.is_empty() && list.items.iter().all(node_ready);
        if nodes_ready && accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        check_alive(procs)?;
        if Instant::now() > deadline {
            bail!(
                "nodes or the default ServiceAccount not ready within 90 s; see {}",
                paths::cluster_dir().join("logs").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn check_alive(procs: &mut [Started]) -> Result<()> {
    procs.iter_mut().try_for_each(Started::check_alive)
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Creates (or keeps) the fake nodes kwok plays.
async fn ensure_nodes(options: &UpOptions) -> Result<()> {
    let client = ready(&paths::kubeconfig()).await?;
    let nodes: Api<Node> = Api::all(client);
    let params = PatchParams::apply("sluice-xtask").force();
    for i in 0..options.nodes {
        let name = format!("kwok-node-{i}");
        let pods = options.pods_per_node.to_string();
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": { KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0" },
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/role": "agent",
                },
            },
            "status": {
                "allocatable": { "cpu": "32", "memory": "256Gi", "pods": pods },
                "capacity": { "cpu": "32", "memory": "256Gi", "pods": pods },
            },
        }))?;
        if nodes.get_opt(&name).await?.is_none() {
            nodes
                .patch(&name, &params, &Patch::Apply(&node))
                .await
                .with_context(|| format!("creating node {name}"))?;
        }
    }
    Ok(())
}

/// Links the built kubectl (and Helm, once built) into `target/cluster/bin/`, a stable path for
/// tests and people (the kubectl on PATH may be older than the cluster).
fn link_tools(dir: &Path) -> Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let mut tools = vec![("kubectl", KUBERNETES.binary("kubectl")?)];
    if let Ok(helm) = gobuild::HELM.binary("helm")
        && helm.is_file()
    {
        tools.push(("helm", helm));
    }
    for (name, target) in tools {
        let link = bin.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

fn write_kubeconfig(pki: &Path, path: &Path) -> Result<()> {
    let read = |file: &str| -> Result<String> {
        Ok(STANDARD
            .encode(std::fs::read(pki.join(file)).with_context(|| format!("reading {file}"))?))
    };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "sluice-local", "cluster": {
            "server": format!("https://127.0.0.1:{APISERVER_PORT}"),
            "certificate-authority-data": read("ca.crt")?,
        }}],
        "users": [{ "name": "sluice-admin", "user": {
            "client-certificate-data": read("admin.crt")?,
            "client-key-data": read("admin.key")?,
        }}],
        "contexts": [{ "name": "sluice-local", "context": { "cluster": "sluice-local", "user": "sluice-admin", "namespace": "default" }}],
        "current-context": "sluice-local",
    });
    std::fs::write(path, serde_norway::to_string(&config)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn args(list: &[String]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn file(path: &Path) -> String {
    path.display().to_string()
}

fn etcd_args(data: &Path) -> Vec<OsString> {
    args(&[
        "--name=sluice-local".into(),
        format!("--data-dir={}", file(data)),
        format!("--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}"),
        format!("--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}"),
        format!("--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
        format!("--initial-cluster=sluice-local=http://127.0.0.1:{ETCD_PEER_PORT}"),
        // A throwaway test store: no fsync removes the disk-sync stalls.
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
        "--quota-backend-bytes=8589934592".into(),
    ])
}

fn apiserver_args(pki: &Path) -> Vec<OsString> {
    let p = |f: &str| file(&pki.join(f));
    args(&[
        format!("--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={APISERVER_PORT}"),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        "--authorization-mode=Node,RBAC".into(),
        // Without it the apiserver warns about its loopback address every 10 s.
        "--endpoint-reconciler-type=none".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
    ])
}

fn controller_manager_args(pki: &Path, kubeconfig: &Path, dir: &Path) -> Vec<OsString> {
    let p = |f: &str| file(&pki.join(f));
    let kc = file(kubeconfig);
    args(&[
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={CONTROLLER_MANAGER_PORT}"),
        "--leader-elect=false".into(),
        "--controllers=*".into(),
        "--use-service-account-credentials=false".into(),
        format!("--service-account-private-key-file={}", p("sa.key")),
        format!("--root-ca-file={}", p("ca.crt")),
        format!("--cluster-signing-cert-file={}", p("ca.crt")),
        format!("--cluster-signing-key-file={}", p("ca.key")),
        // Otherwise it tries to write to /usr/libexec/kubernetes.
        format!("--flex-volume-plugin-dir={}", file(&dir.join("flexvolume"))),
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics".into(),
        "--profiling=false".into(),
        // The defaults (20 QPS, 5 ReplicaSet workers) make the cluster, not the rollout
        // controller under test, the bottleneck once a thousand rollouts move at once.
        "--kube-api-qps=300".into(),
        "--kube-api-burst=600".into(),
        "--concurrent-replicaset-syncs=20".into(),
    ])
}

fn scheduler_args(kubeconfig: &Path) -> Vec<OsString> {
    let kc = file(kubeconfig);
    args(&[
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={SCHEDULER_PORT}"),
        "--leader-elect=false".into(),
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics".into(),
        "--profiling=false".into(),
        "--kube-api-qps=300".into(),
        "--kube-api-burst=600".into(),
    ])
}

fn kwok_args(kubeconfig: &Path, stages: &Path) -> Vec<OsString> {
    args(&[
        format!("--kubeconfig={}", file(kubeconfig)),
        "--manage-all-nodes=false".into(),
        format!("--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"),
        "--node-lease-duration-seconds=40".into(),
        "--cidr=10.0.0.0/16".into(),
        "--node-ip=127.0.0.1".into(),
        format!("--config={}", file(stages)),
    ])
}
