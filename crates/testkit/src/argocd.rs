//! Argo CD beside the local cluster (`cargo xtask argocd up|down`), for the tests that run Sluice
//! under it as most users do: Argo CD syncs the Rollout from Git, shows its health, and its
//! resource actions promote and abort.
//!
//! Argo CD is built from its Go module (see `gobuild::ARGOCD`) and runs as local processes, as the
//! cluster does: Debian's `redis-server`, the repo server, the application controller and an
//! `argocd-server` without authentication on 127.0.0.1 (the CLI's `--core` mode cannot work here:
//! it port-forwards to Argo CD's pods, and kwok's pods serve no port-forward). Each process is in
//! its own process group with its pid and log under `target/cluster/argocd/`, so `down` (and
//! `cargo xtask cluster down`) stops exactly what `up` started. Applications read plain local
//! repositories by their `file://` URL, as Argo CD's own end-to-end tests do: a test makes one
//! with [`Repo`].

use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    cluster::procs::{Proc, Started, ensure_port_free},
    gobuild::{self, ARGOCD},
    paths, preflight,
};

/// The namespace Argo CD runs in and keeps its Applications and AppProjects in.
pub const NAMESPACE: &str = "argocd";

/// argocd-server's port on 127.0.0.1: plaintext gRPC and HTTP, without authentication.
pub const SERVER_PORT: u16 = 18080;
const REDIS_PORT: u16 = 16379;
const REPO_SERVER_PORT: u16 = 18081;
const CONTROLLER_METRICS_PORT: u16 = 18082;
const SERVER_METRICS_PORT: u16 = 18083;
const REPO_SERVER_METRICS_PORT: u16 = 18084;
/// The commit server (source hydration) is not run; the controller wants an address for it.
const COMMIT_SERVER_PORT: u16 = 18086;

/// The processes in start order (each also the name the binary is started as, which is how the
/// one Argo CD binary knows what to be); `down` stops them in reverse.
const PROCESSES: [&str; 4] = [
    "redis-server",
    "argocd-repo-server",
    "argocd-application-controller",
    "argocd-server",
];

/// The Argo CD module, whose source holds the CRDs and the repo server's helper scripts.
const MODULE: &str = "github.com/argoproj/argo-cd/v3";

/// How often the application controller compares every Application with Git (Argo CD's default
/// is 120 s; the tests also ask for a refresh after each commit).
const APP_RESYNC_SECONDS: &str = "10";

/// The settings Argo CD reads from its namespace (the settings informer only sees objects
/// labelled `part-of: argocd`), and the default project, open to every repository and namespace.
const SETTINGS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}
data:
  timeout.reconciliation: 5s
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-rbac-cm
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-rbac-cm, app.kubernetes.io/part-of: argocd}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cmd-params-cm
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-cmd-params-cm, app.kubernetes.io/part-of: argocd}
---
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-secret, app.kubernetes.io/part-of: argocd}
stringData:
  server.secretkey: c2x1aWNlLWFyZ29jZC10ZXN0LWtleQ==
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: default
  namespace: argocd
spec:
  sourceRepos: ['*']
  destinations: [{namespace: '*', server: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
"#;

/// Argo CD's state in this checkout: `pids/`, `logs/`, `bin/` (the binary under each process's
/// name, and the repo server's scripts), the repo server's temporary files, the test repositories.
pub fn dir() -> PathBuf {
    paths::cluster_dir().join("argocd")
}

fn procs() -> Vec<Proc> {
    let dir = dir();
    PROCESSES.iter().map(|name| Proc::new(&dir, name)).collect()
}

/// Whether every process is running and argocd-server accepts connections.
pub fn is_up() -> bool {
    procs().iter().all(|p| p.running_pid().is_some()) && port_answers(SERVER_PORT)
}

fn port_answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// Builds Argo CD (first time only), installs its CRDs and settings on the local cluster, and
/// starts its processes unless they are already up. The cluster must be up.
pub async fn up() -> Result<()> {
    let started = Instant::now();
    preflight::check(preflight::ARGOCD)?;
    let kubeconfig = paths::kubeconfig();
    crate::cluster::ready(&kubeconfig)
        .await
        .context("the local cluster is not up (`cargo xtask cluster up` starts it)")?;
    let binary = ARGOCD.ensure_built()?.join("argocd");
    let dir = dir();
    // Every time, even when the processes run: a cluster restarted under them has lost these.
    eprintln!("installing Argo CD's CRDs and settings in namespace {NAMESPACE}");
    install(&kubeconfig)?;
    let procs = procs();
    let running = procs.iter().filter(|p| p.running_pid().is_some()).count();
    if running == procs.len() && port_answers(SERVER_PORT) {
        eprintln!("Argo CD already up; server: 127.0.0.1:{SERVER_PORT}");
        return Ok(());
    }
    if running > 0 {
        eprintln!(
            "Argo CD partly up ({running} of {} processes); restarting it",
            procs.len()
        );
        down()?;
    }
    for (port, what) in [
        (REDIS_PORT, "Argo CD's redis"),
        (REPO_SERVER_PORT, "argocd-repo-server"),
        (REPO_SERVER_METRICS_PORT, "argocd-repo-server metrics"),
        (
            CONTROLLER_METRICS_PORT,
            "argocd-application-controller metrics",
        ),
        (SERVER_PORT, "argocd-server"),
        (SERVER_METRICS_PORT, "argocd-server metrics"),
    ] {
        ensure_port_free(port, what)?;
    }
    let bin = prepare_bin(&dir, &binary)?;

    let kc = kubeconfig.display().to_string();
    let tmp = dir.join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).context("removing the repo server's old files")?;
    }
    std::fs::create_dir_all(&tmp).context("creating the repo server's TMPDIR")?;
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .context("a PATH for the repo server")?;
    let redis = format!("127.0.0.1:{REDIS_PORT}");
    let repo_server = format!("127.0.0.1:{REPO_SERVER_PORT}");
    let kube_env = [
        ("KUBECONFIG", OsString::from(&kc)),
        ("ARGOCD_FAKE_IN_CLUSTER", "true".into()),
    ];
    let mut children: Vec<Started> = Vec::new();

    eprintln!(
        "starting redis-server, argocd-repo-server, argocd-application-controller and argocd-server"
    );
    let by_name = |name: &str| {
        procs
            .iter()
            .find(|p| p.name == name)
            .context("unknown process")
    };
    children.push(by_name("redis-server")?.start(
        Path::new("redis-server"),
        &args(&[
            "--bind",
            "127.0.0.1",
            "--port",
            &REDIS_PORT.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
    )?);
    wait_port(REDIS_PORT, "redis-server", &mut children)?;

    children.push(start_with_env(
        by_name("argocd-repo-server")?,
        &bin,
        &[
            ("PATH", path),
            ("ARGOCD_GPG_ENABLED", "false".into()),
            ("ARGOCD_ASK_PASS_SOCK", dir.join("askpass.sock").into()),
            ("TMPDIR", tmp.into()),
        ],
        &args(&[
            "--address",
            "127.0.0.1",
            "--port",
            &REPO_SERVER_PORT.to_string(),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            &REPO_SERVER_METRICS_PORT.to_string(),
            "--disable-tls",
            "--client-ca-path=",
            "--redis",
            &redis,
        ]),
    )?);
    wait_port(REPO_SERVER_PORT, "argocd-repo-server", &mut children)?;

    children.push(start_with_env(
        by_name("argocd-application-controller")?,
        &bin,
        &kube_env,
        &args(&[
            "--kubeconfig",
            &kc,
            "--namespace",
            NAMESPACE,
            "--repo-server",
            &repo_server,
            "--repo-server-plaintext",
            "--redis",
            &redis,
            "--metrics-port",
            &CONTROLLER_METRICS_PORT.to_string(),
            "--commit-server",
            &format!("127.0.0.1:{COMMIT_SERVER_PORT}"),
            "--app-resync",
            APP_RESYNC_SECONDS,
        ]),
    )?);
    wait_port(
        CONTROLLER_METRICS_PORT,
        "argocd-application-controller",
        &mut children,
    )?;

    children.push(start_with_env(
        by_name("argocd-server")?,
        &bin,
        &kube_env,
        &args(&[
            "--kubeconfig",
            &kc,
            "--namespace",
            NAMESPACE,
            "--insecure",
            "--disable-auth",
            "--address",
            "127.0.0.1",
            "--port",
            &SERVER_PORT.to_string(),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            &SERVER_METRICS_PORT.to_string(),
            "--repo-server",
            &repo_server,
            "--repo-server-plaintext",
            "--redis",
            &redis,
            // No web UI assets and no Dex: the tests use the API through the CLI.
            "--staticassets",
            "/nonexistent",
            "--dex-server",
            "127.0.0.1:1",
        ]),
    )?);
    wait_port(SERVER_PORT, "argocd-server", &mut children)?;
    wait_cli(&mut children)?;
    eprintln!(
        "Argo CD {} up in {:.1?}; server: 127.0.0.1:{SERVER_PORT}, logs: {}",
        ARGOCD.version,
        started.elapsed(),
        dir.join("logs").display()
    );
    Ok(())
}

/// Stops every process `up` started, in reverse order (the cluster's objects stay).
pub fn down() -> Result<()> {
    let dir = dir();
    for name in PROCESSES.iter().rev() {
        if Proc::new(&dir, name).stop(Duration::from_secs(10))? {
            eprintln!("stopped {name}");
        }
    }
    Ok(())
}

/// Starts `bin/<name>` through `env`, which sets the variables and then becomes the program (the
/// pid stays the one recorded, and the command line names the process).
fn start_with_env(
    proc: &Proc,
    bin: &Path,
    env: &[(&str, OsString)],
    flags: &[OsString],
) -> Result<Started> {
    let mut list: Vec<OsString> = env
        .iter()
        .map(|(key, value)| {
            let mut pair = OsString::from(format!("{key}="));
            pair.push(value);
            pair
        })
        .collect();
    list.push(bin.join(proc.name).into());
    list.extend_from_slice(flags);
    proc.start(Path::new("env"), &list)
}

/// `bin/`: the built binary under each name it runs as, and the scripts the repo server runs
/// (executable copies: the module cache's files are read-only and not executable).
fn prepare_bin(dir: &Path, binary: &Path) -> Result<PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for name in [
        "argocd",
        "argocd-repo-server",
        "argocd-application-controller",
        "argocd-server",
    ] {
        let link = bin.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(binary, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let hack = gobuild::module_dir(MODULE, ARGOCD.version)?.join("hack");
    for script in ["git-verify-wrapper.sh", "gpg-wrapper.sh", "git-ask-pass.sh"] {
        let target = bin.join(script);
        let _ = std::fs::remove_file(&target);
        std::fs::copy(hack.join(script), &target)
            .with_context(|| format!("copying {script} from {}", hack.display()))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", target.display()))?;
    }
    Ok(bin)
}

/// Applies Argo CD's CRDs (server-side: they are too big for the last-applied annotation), its
/// namespace, settings and default project.
fn install(kubeconfig: &Path) -> Result<()> {
    let kubectl = gobuild::kubectl()?;
    let crds = gobuild::module_dir(MODULE, ARGOCD.version)?.join("manifests/crds");
    let kubectl_cmd = || {
        let mut cmd = Command::new(&kubectl);
        cmd.arg("--kubeconfig").arg(kubeconfig);
        cmd
    };
    let mut apply = kubectl_cmd();
    apply.args([
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=sluice-argocd",
    ]);
    for crd in ["application", "appproject", "applicationset"] {
        apply.arg("-f").arg(crds.join(format!("{crd}-crd.yaml")));
    }
    gobuild::run_quiet(&mut apply).context("applying Argo CD's CRDs")?;
    // A CRD created a moment ago may have no conditions yet, which `kubectl wait` reports as an
    // error instead of waiting: try again for a while.
    let mut tries = 0;
    loop {
        let waited = gobuild::run_quiet(kubectl_cmd().args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/applications.argoproj.io",
            "crd/appprojects.argoproj.io",
            "crd/applicationsets.argoproj.io",
        ]));
        match waited {
            Ok(()) => break,
            Err(_) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e).context("waiting for Argo CD's CRDs"),
        }
    }
    let namespace = dir().join("namespace.yaml");
    std::fs::create_dir_all(dir())?;
    std::fs::write(
        &namespace,
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"),
    )?;
    let settings = dir().join("settings.yaml");
    std::fs::write(&settings, SETTINGS).context("writing Argo CD's settings")?;
    for file in [&namespace, &settings] {
        gobuild::run_quiet(
            kubectl_cmd()
                .args([
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "--field-manager=sluice-argocd",
                    "-f",
                ])
                .arg(file),
        )
        .with_context(|| format!("applying {}", file.display()))?;
    }
    Ok(())
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// Waits until something accepts connections on `port`, failing when a started process exits.
fn wait_port(port: u16, what: &str, children: &mut [Started]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !port_answers(port) {
        children.iter_mut().try_for_each(Started::check_alive)?;
        if Instant::now() > deadline {
            bail!(
                "{what} did not listen on 127.0.0.1:{port} within 60 s; see {}",
                dir().join("logs").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Waits until the CLI lists Applications through the server (its caches are filled).
fn wait_cli(children: &mut [Started]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = cli()
            .args(["app", "list", "-o", "name"])
            .output()
            .context("running the argocd CLI")?;
        if output.status.success() {
            return Ok(());
        }
        children.iter_mut().try_for_each(Started::check_alive)?;
        if Instant::now() > deadline {
            bail!(
                "`argocd app list` failed for 60 s: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The `argocd` CLI against the local argocd-server (plaintext, no login), as a user runs it.
pub fn cli() -> Command {
    let dir = dir();
    let mut cmd = Command::new(dir.join("bin").join("argocd"));
    cmd.arg("--config").arg(dir.join("cli-config")).args([
        "--server",
        &format!("127.0.0.1:{SERVER_PORT}"),
        "--plaintext",
    ]);
    cmd
}

/// The resource tree argocd-server serves for the Application `app`
/// (`GET /api/v1/applications/<app>/resource-tree`): every resource Argo CD shows for it, those in
/// Git and their children, each with the health Argo CD gives it.
pub async fn resource_tree(app: &str) -> Result<serde_json::Value> {
    crate::access::ensure_crypto_provider();
    let url = format!("http://127.0.0.1:{SERVER_PORT}/api/v1/applications/{app}/resource-tree");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("an HTTP client")?;
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{url} answered {body}"))
}

/// Makes sure Argo CD answers for a test, bringing it up with `cargo xtask argocd up` (once per
/// test process, serialised between test binaries) when it does not; starts the cluster first
/// if needed.
pub async fn ensure_up() {
    let _ = crate::access::client().await;
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        if is_up() {
            return;
        }
        crate::access::xtask_once(
            "argocd.lock",
            &["argocd", "up"],
            is_up,
            "target/cluster/argocd/logs/",
        );
    });
}

/// A Git repository of one test (branch `main`) under `target/cluster/argocd/repos/`, which Argo
/// CD reads by its `file://` URL; removed when dropped unless the test failed.
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// Creates an empty repository named `name`.
    pub fn new(name: &str) -> Self {
        let dir = dir().join("repos").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let repo = Self { dir };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    /// The URL an Application's `spec.source.repoURL` names.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// Writes the files (paths relative to the repository) and commits them; returns the commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let file = self.dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
            }
            std::fs::write(&file, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        }
        self.git(&["add", "--all"]);
        self.git(&[
            "-c",
            "user.name=Sluice tests",
            "-c",
            "user.email=tests@sluice.invalid",
            "commit",
            "--quiet",
            "-m",
            message,
        ]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    fn git(&self, args: &[&str]) -> String {
        crate::run_ok(Command::new("git").arg("-C").arg(&self.dir).args(args))
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
