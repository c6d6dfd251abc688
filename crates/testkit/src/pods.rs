//! Pods that answer real requests. kwok runs no containers, so a test that sends traffic through a
//! real proxy needs something behind the pod IPs: the [`PodPlayer`] watches a namespace's pods and,
//! for each one that is Running and Ready, listens on its IP and container port and answers every
//! HTTP request with 200 and a small JSON body naming the pod's version. A pod that stops being
//! Ready, or is deleted, stops being served (its listener is closed), so a request still routed to
//! it fails as it would against a real container that went away.
//!
//! The pod IPs are reachable because `cluster up` makes kwok's pod range local
//! ([`route_pod_ips`]).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::ListParams,
    runtime::{WatchStreamExt, watcher},
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::access;

/// kwok's pod range (its `--cidr` in `cluster::kwok_args`): the addresses `cluster up` makes
/// local so that the test kit can play the pods' containers.
pub const POD_CIDR: &str = "10.0.0.0/16";

/// The port a pod is served on when its first container declares none.
pub const DEFAULT_PORT: u16 = 8080;

/// The label naming a Rollout pod's version (Argo Rollouts' and Sluice's).
const ROLLOUT_HASH_LABEL: &str = "rollouts-pod-template-hash";

/// The label naming a Deployment pod's version, used when the Rollout one is absent.
const DEPLOYMENT_HASH_LABEL: &str = "pod-template-hash";

/// How often the pods are listed when no watch event came: a pod is served as soon as a watch
/// event says it became Ready (milliseconds, ahead of the EndpointSlice a proxy routes by, as a
/// real container listens before it is Ready), the poll is only a fallback.
const POLL: Duration = Duration::from_millis(100);

/// Makes kwok's pod range local, so that this machine can listen on any pod IP and reach it.
///
/// Why a route and not loopback pod IPs: EndpointSlices refuse addresses in 127.0.0.0/8, so pods
/// with such IPs would never be a Service's endpoints. With `local 10.0.0.0/16 dev lo` in the
/// local table, every pod IP kwok assigns is an address of this machine, and nothing leaves it.
/// Needs root (the project's machines and CI run as root); adding it twice is not an error.
pub fn route_pod_ips() -> Result<()> {
    ip_route("add", &["File exists"])
}

/// Removes the route [`route_pod_ips`] added (when the cluster goes down); absent is not an error.
pub fn unroute_pod_ips() -> Result<()> {
    ip_route("del", &["No such process", "Cannot find"])
}

/// Whether kwok's pod range is local (the route of [`route_pod_ips`] is there).
pub fn pod_ips_routed() -> bool {
    Command::new("ip")
        .args(["route", "show", "table", "local"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with(&format!("local {POD_CIDR} ")))
        })
}

/// [`route_pod_ips`] for `cluster up`: without root the cluster still comes up, with a warning
/// that only the traffic tests will fail.
pub(crate) fn route_pod_ips_or_warn() {
    if let Err(e) = route_pod_ips() {
        eprintln!("warning: pod IPs stay unreachable, the traffic tests will fail: {e:#}");
    }
}

/// [`unroute_pod_ips`] for `cluster down`, which goes on whatever happens.
pub(crate) fn unroute_pod_ips_or_warn() {
    if let Err(e) = unroute_pod_ips() {
        eprintln!("warning: {e:#}");
    }
}

fn ip_route(verb: &str, harmless: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args([
            "route", verb, "local", POD_CIDR, "dev", "lo", "table", "local",
        ])
        .output()
        .context("running `ip route` (package iproute2)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || harmless.iter().any(|h| stderr.contains(h)) {
        return Ok(());
    }
    bail!(
        "`ip route {verb} local {POD_CIDR} dev lo table local` failed ({}): {}",
        output.status,
        stderr.trim()
    )
}

/// What a played pod answers: its name and version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The pod's name.
    pub pod: String,
    /// Its `rollouts-pod-template-hash` label (else its `pod-template-hash`; empty if neither).
    pub hash: String,
    /// Its first container's image.
    pub image: String,
}

/// A pod being served.
#[derive(Clone, Debug)]
pub struct Served {
    /// What it answers.
    pub answer: Answer,
    /// Where it listens (pod IP and container port).
    pub addr: SocketAddr,
    /// How many requests it had answered at the player's last look (every 100 ms).
    pub requests: u64,
}

#[derive(Default)]
struct Shared {
    served: BTreeMap<String, Served>,
    /// The last problem seen (listing pods, binding a pod's address), for failure messages.
    last_error: Option<String>,
}

/// Plays the containers of a namespace's pods that match a label selector (see the module docs);
/// stops serving all of them when dropped.
pub struct PodPlayer {
    namespace: String,
    selector: String,
    shared: Arc<Mutex<Shared>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodPlayer {
    /// Starts playing the pods of `namespace` that match `selector` (e.g. `app=web`; empty: all).
    ///
    /// It runs on a thread with its own runtime and its own client of the test cluster, so pods
    /// keep answering whatever the test's runtime is doing. Fails the test when the pod IPs are
    /// not local (the cluster was started without the route, or not as root).
    pub fn start(namespace: &str, selector: &str) -> Self {
        assert!(
            pod_ips_routed(),
            "pod IPs are not reachable: the route `local {POD_CIDR} dev lo table local` is missing \
             (`cargo xtask cluster up` adds it; it needs root)"
        );
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = oneshot::channel();
        let (ns, sel, state) = (namespace.to_owned(), selector.to_owned(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("pod-player-{namespace}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(play(ns, sel, state, stopped)),
                    Err(e) => note(&state, format!("starting the pod player's runtime: {e}")),
                }
            })
            .unwrap_or_else(|e| panic!("starting the pod player's thread: {e}"));
        Self {
            namespace: namespace.to_owned(),
            selector: selector.to_owned(),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The pods served now, by name.
    pub fn served(&self) -> BTreeMap<String, Served> {
        self.lock().served.clone()
    }

    /// Waits until exactly `pods` pods are served, failing the test after `limit` with what is
    /// served and the last problem seen.
    pub async fn wait_serving(&self, pods: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let served = self.served();
            if served.len() == pods {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} pods of {}/{{{}}} served after {limit:?}, want {pods}: {:?}; last problem: {}",
                    served.len(),
                    self.namespace,
                    self.selector,
                    served.keys().collect::<Vec<_>>(),
                    self.lock().last_error.as_deref().unwrap_or("none")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PodPlayer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn note(shared: &Mutex<Shared>, problem: String) {
    shared.lock().unwrap_or_else(|e| e.into_inner()).last_error = Some(problem);
}

/// One pod's server: dropping it (its `stop`) closes its listener and its connections.
struct Server {
    uid: String,
    addr: SocketAddr,
    answer: Answer,
    requests: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The player's loop: list the pods every [`POLL`], start a server for each servable pod, stop the
/// servers of pods that are no longer servable.
async fn play(
    namespace: String,
    selector: String,
    shared: Arc<Mutex<Shared>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let client = match client().await {
        Ok(client) => client,
        Err(e) => return note(&shared, format!("{e:#}")),
    };
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let params = ListParams::default().labels(&selector);
    let mut changes = watcher(pods.clone(), watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut servers: BTreeMap<String, Server> = BTreeMap::new();
    loop {
        match pods.list(&params).await {
            Ok(list) => {
                let wanted: BTreeMap<String, (SocketAddr, Answer, String)> = list
                    .items
                    .iter()
                    .filter_map(servable)
                    .map(|(addr, answer, uid)| (answer.pod.clone(), (addr, answer, uid)))
                    .collect();
                // Dropping a server closes it.
                servers.retain(|name, server| {
                    wanted
                        .get(name)
                        .is_some_and(|(addr, _, uid)| *addr == server.addr && *uid == server.uid)
                });
                for (name, (addr, answer, uid)) in wanted {
                    if servers.contains_key(&name) {
                        continue;
                    }
                    match serve(addr, &answer).await {
                        Ok(server) => {
                            servers.insert(name, Server { uid, ..server });
                        }
                        Err(e) => note(&shared, format!("serving pod {name} on {addr}: {e:#}")),
                    }
                }
                let served = servers
                    .iter()
                    .map(|(name, s)| {
                        let served = Served {
                            answer: s.answer.clone(),
                            addr: s.addr,
                            requests: s.requests.load(Ordering::Relaxed),
                        };
                        (name.clone(), served)
                    })
                    .collect();
                shared.lock().unwrap_or_else(|e| e.into_inner()).served = served;
            }
            Err(e) => note(&shared, format!("listing pods in {namespace}: {e}")),
        }
        tokio::select! {
            _ = &mut stopped => break,
            _ = changes.next() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
    for (_, server) in std::mem::take(&mut servers) {
        let _ = server.stop.send(());
        // Idle connections close at once; a request in flight gets a second.
        let _ = tokio::time::timeout(Duration::from_secs(1), server.task).await;
    }
}

async fn client() -> Result<Client> {
    let path = access::kubeconfig();
    let file = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(Client::try_from(config)?)
}

/// Where and as what a pod is served, and its uid, if it is Running, Ready, has an IP and is not
/// being deleted.
fn servable(pod: &Pod) -> Option<(SocketAddr, Answer, String)> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if status.phase.as_deref() != Some("Running") || !ready {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    let spec = pod.spec.as_ref()?;
    let container = spec.containers.first()?;
    let port = container
        .ports
        .as_ref()
        .and_then(|ports| ports.first())
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_PORT);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let hash = labels
        .get(ROLLOUT_HASH_LABEL)
        .or_else(|| labels.get(DEPLOYMENT_HASH_LABEL))
        .cloned()
        .unwrap_or_default();
    let answer = Answer {
        pod: pod.metadata.name.clone()?,
        hash,
        image: container.image.clone().unwrap_or_default(),
    };
    Some((
        SocketAddr::new(ip, port),
        answer,
        pod.metadata.uid.clone().unwrap_or_default(),
    ))
}

/// Listens on `addr` and answers every request with 200 and `answer` as JSON, until the returned
/// server is dropped: then the listener closes at once, idle connections are closed and a request
/// in flight is answered last.
async fn serve(addr: SocketAddr, answer: &Answer) -> Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let body = serde_json::to_string(answer)?;
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let body = body.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Server {
        uid: String::new(),
        addr,
        answer: answer.clone(),
        requests,
        stop,
        task,
    })
}
