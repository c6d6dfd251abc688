//! The harness of the plugin tests: `kubectl sluice` run through the real kubectl with the
//! plugin on PATH, a namespace with the controller watching it, and the reads the tests make.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::{PauseReason, Rollout, RolloutPhase, vocab::POD_TEMPLATE_HASH_LABEL};
pub use sluice_testkit::manifests::{image, observed, status};
use sluice_testkit::{Controller, TestNamespace, binaries, manifests};

/// A namespace with the controller watching it, and the plugin run inside it.
pub struct Plugin {
    // Dropped in this order: the controller (its log printed on failure) before the namespace.
    _controller: Controller,
    pub ns: TestNamespace,
    pub rollouts: Api<Rollout>,
}

/// What one run of the plugin did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `kubectl sluice ARGS` with the freshly built plugin first on PATH and the test cluster's
/// kubeconfig in KUBECONFIG, as a user's shell would run it.
pub fn kubectl_sluice(args: &[&str]) -> tokio::process::Command {
    // Another package's binary, which cargo does not hand these tests: built once per process.
    let plugin = binaries::workspace_binary("kubectl-sluice", "kubectl-sluice");
    let dir = plugin.parent().expect("the plugin's directory");
    let path = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("a PATH");
    let mut cmd =
        tokio::process::Command::new(sluice_testkit::paths::cluster_dir().join("bin/kubectl"));
    cmd.arg("sluice")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", sluice_testkit::kubeconfig())
        .env_remove("COLUMNS")
        .kill_on_drop(true);
    cmd
}

pub async fn output(mut cmd: tokio::process::Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the plugin ended within 120 s")
        .expect("running kubectl sluice");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn paused_at(r: &Rollout, step: i32) -> bool {
    let s = status(r);
    s.current_step_index == Some(step)
        && s.pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::CanaryPauseStep)
        && s.phase == Some(RolloutPhase::Paused)
}

/// A canary Rollout `app` of `replicas` pods with these steps (no Services: replica weights).
pub fn canary(replicas: i32, steps: Value) -> Value {
    manifests::canary("app", replicas, "example/app:1", steps)
}

impl Plugin {
    pub async fn new(test: &str) -> Self {
        let ns = TestNamespace::new(test).await;
        sluice_testkit::install_crds(&ns.client).await;
        let controller = Controller::start(&ns.name).await;
        let rollouts = ns.api::<Rollout>();
        Self {
            _controller: controller,
            ns,
            rollouts,
        }
    }

    /// Creates the rollout and waits until it is Healthy.
    pub async fn deploy(&self, rollout: Value) -> Rollout {
        let rollout: Rollout = serde_json::from_value(rollout).expect("a Rollout");
        self.rollouts
            .create(&PostParams::default(), &rollout)
            .await
            .expect("creating the Rollout");
        self.healthy().await
    }

    pub async fn wait(&self, seconds: u64, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
        self.ns
            .wait_for("app", seconds, what, move |r: Option<&Rollout>| {
                r.is_some_and(&ok)
            })
            .await
    }

    pub async fn healthy(&self) -> Rollout {
        self.wait(60, "the rollout Healthy and up to date", |r| {
            status(r).phase == Some(RolloutPhase::Healthy) && observed(r)
        })
        .await
    }

    pub async fn get(&self) -> Rollout {
        self.rollouts.get("app").await.expect("reading the rollout")
    }

    /// `kubectl sluice ARGS -n <namespace>`.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = kubectl_sluice(args);
        cmd.args(["-n", &self.ns.name]);
        cmd
    }

    pub async fn sluice(&self, args: &[&str]) -> Run {
        output(self.command(args)).await
    }

    /// Runs the plugin, failing the test unless it exits 0; returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.sluice(args).await;
        assert_eq!(run.code, Some(0), "kubectl sluice {args:?}: {run:?}");
        run.stdout
    }

    /// Changes the image with the plugin and waits until the canary stands paused at step 1.
    pub async fn paused_at_first_pause(&self) -> Rollout {
        self.ok(&["set", "image", "app", "app=example/app:2"]).await;
        self.wait(60, "the canary paused at step 1", |r| paused_at(r, 1))
            .await
    }

    /// Updates the rollout to `image`, a version whose pods never become ready (the test kit's
    /// pod-fate annotation): it stays at its first step, Progressing.
    pub async fn never_ready_version(&self, image: &str) {
        let patch = serde_json::json!({ "spec": { "template": {
            "metadata": { "annotations": { "sluice.dev/pod-fate": "never-ready" } },
            "spec": { "containers": [{ "name": "app", "image": image }] }
        } } });
        self.rollouts
            .patch(
                "app",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .expect("a version that never gets ready");
    }

    /// The rollout's resourceVersion once it has not changed for a second (the controller has
    /// finished writing), so that a later equal version means nobody wrote.
    pub async fn quiet_version(&self) -> String {
        let mut last = self.get().await.resource_version();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.get().await.resource_version();
            if now == last {
                return now.unwrap_or_default();
            }
            last = now;
        }
        panic!("the rollout kept changing for 20 s");
    }

    /// A kubeconfig for a new ServiceAccount `account` of the namespace, allowed `rules` (a Role's
    /// rules) and nothing else.
    pub async fn kubeconfig_for(&self, account: &str, rules: Value) -> PathBuf {
        use k8s_openapi::api::{
            authentication::v1::{TokenRequest, TokenRequestSpec},
            core::v1::ServiceAccount,
            rbac::v1::{Role, RoleBinding},
        };
        let pp = PostParams::default();
        let sa: ServiceAccount =
            serde_json::from_value(json!({ "metadata": { "name": account } })).expect("an account");
        self.ns
            .api::<ServiceAccount>()
            .create(&pp, &sa)
            .await
            .expect("creating the account");
        let role: Role = serde_json::from_value(json!({
            "metadata": { "name": account },
            "rules": rules,
        }))
        .expect("a role");
        self.ns
            .api::<Role>()
            .create(&pp, &role)
            .await
            .expect("creating the role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": account },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account },
            "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": self.ns.name }]
        }))
        .expect("a binding");
        self.ns
            .api::<RoleBinding>()
            .create(&pp, &binding)
            .await
            .expect("creating the binding");
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = self
            .ns
            .api::<ServiceAccount>()
            .create_token_request(account, &pp, &request)
            .await
            .expect("a token")
            .status
            .expect("the token")
            .token;
        sluice_testkit::kubeconfig_with_token(&token, &format!("{}-{account}", self.ns.name))
    }

    pub async fn replicas_of(&self, hash: &str) -> i32 {
        self.ns
            .api::<ReplicaSet>()
            .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
            .await
            .expect("listing ReplicaSets")
            .items
            .iter()
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum()
    }
}

/// A long-running `kubectl sluice` (a watch), its output read line by line as it comes.
pub struct Watching {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Everything read so far.
    pub seen: String,
}

impl Watching {
    /// Starts `cmd` with its output piped.
    pub fn start(mut cmd: tokio::process::Command) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("starting a watch");
        let stdout = child.stdout.take().expect("its stdout");
        Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            seen: String::new(),
        }
    }

    /// Reads until `needle` has been printed (60 s at most).
    pub async fn until(&mut self, needle: &str) {
        let (lines, seen) = (&mut self.lines, &mut self.seen);
        sluice_testkit::wait(
            async {
                while !seen.contains(needle) {
                    match lines.next_line().await {
                        Ok(Some(line)) => {
                            seen.push_str(&line);
                            seen.push('\n');
                        }
                        other => return Err(format!("the output ended ({other:?}): {seen}")),
                    }
                }
                Ok(())
            },
            60,
            &format!("{needle:?} in the output of the watch"),
        )
        .await;
    }

    /// Ctrl-C (kubectl execs its plugin, so the process started is the plugin), then its exit
    /// status.
    pub async fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("a pid").to_string();
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the watch stopped on Ctrl-C")
            .expect("its exit status")
    }
}

/// Writes `text` to a file of the test's own under target/test-logs and returns its path.
pub fn file(name: &str, text: &str) -> PathBuf {
    let dir = sluice_testkit::repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).expect("target/test-logs");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a file");
    path
}
