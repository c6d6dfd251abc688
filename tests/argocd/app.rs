//! The harness of the Argo CD tests: an Application of a Git repository the test commits to, and
//! what Argo CD shows of it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::Rollout;
use sluice_testkit::{
    Controller, TestNamespace,
    argocd::{self, Repo},
    manifests::status,
};

/// Where each test's manifest lives in its repository.
pub const APP_PATH: &str = "app";

/// The manual pause of `examples/canary.yaml` (its fourth step: `pause: {}`).
pub const MANUAL_PAUSE: i32 = 3;

/// An example, with a pod annotation kwok honours (`sluice.dev/ready-after`) so that new pods
/// take as long to become ready as a readiness probe would make them: each step is then visibly
/// Progressing before it pauses.
pub fn example(file: &str, app: &str) -> String {
    let text = std::fs::read_to_string(sluice_testkit::repo_root().join("examples").join(file))
        .unwrap_or_else(|e| panic!("reading examples/{file}: {e}"));
    let labels = format!("    metadata:\n      labels:\n        app: {app}\n");
    assert!(
        text.contains(&labels),
        "examples/{file}: the pod template's labels moved"
    );
    text.replacen(
        &labels,
        &format!("{labels}      annotations:\n        sluice.dev/ready-after: 2s\n"),
        1,
    )
}

/// What `argocd app get -o json` says about the Application and its Rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub sync: String,
    pub health: String,
    /// The commit the sync status compares with.
    pub revision: String,
    /// The Rollout's health among the Application's resources.
    pub rollout: String,
    pub rollout_message: String,
    /// The resources Argo CD finds out of sync with Git (`Kind/name`).
    pub out_of_sync: Vec<String>,
}

impl View {
    pub fn read(app: &Value, rollout: &str) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let resources = app["status"]["resources"].as_array().into_iter().flatten();
        let resource = resources
            .clone()
            .find(|r| r["kind"] == "Rollout" && r["name"] == rollout);
        let out_of_sync = resources
            .filter(|r| r["status"] != "Synced")
            .map(|r| format!("{}/{}", text(&r["kind"]), text(&r["name"])))
            .collect();
        Self {
            sync: text(&app["status"]["sync"]["status"]),
            health: text(&app["status"]["health"]["status"]),
            revision: text(&app["status"]["sync"]["revision"]),
            rollout: resource.map_or_else(String::new, |r| text(&r["health"]["status"])),
            rollout_message: resource.map_or_else(String::new, |r| text(&r["health"]["message"])),
            out_of_sync,
        }
    }

    pub fn is(&self, sync: &str, health: &str) -> bool {
        self.sync == sync && self.health == health && self.rollout == health
    }
}

/// How an Application syncs and compares with Git.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `syncPolicy.automated.selfHeal`: drift from Git is written back.
    pub self_heal: bool,
    /// Compared with Git by server-side diff (`ServerSideDiff=true`), not Argo CD's default
    /// client-side diff.
    pub server_side_diff: bool,
    /// `syncPolicy.syncOptions` (`ServerSideApply=true`, `RespectIgnoreDifferences=true`, ...).
    pub sync_options: Vec<&'static str>,
    /// `spec.ignoreDifferences`.
    pub ignore_differences: Vec<Value>,
}

impl Policy {
    /// Argo CD's defaults with an automated sync: no self-heal, client-side diff and apply.
    pub fn automated() -> Self {
        Self::default()
    }

    /// An automated sync that also writes drift back (`selfHeal: true`).
    pub fn self_heal() -> Self {
        Self {
            self_heal: true,
            ..Self::default()
        }
    }
}

/// One test: its namespace, the Sluice controller for it, its repository and its Application.
pub struct App {
    pub name: String,
    pub rollout: String,
    pub rollouts: Api<Rollout>,
    /// Every distinct view seen, in order: the report when a wait fails.
    pub seen: Vec<View>,
    // Dropped in this order (after `Drop` deletes the Application): the controller (its log
    // printed on failure), the namespace, the repository.
    _controller: Controller,
    pub ns: TestNamespace,
    pub repo: Repo,
}

impl App {
    /// Commits `manifest` and creates an Application of it with an automated sync policy as
    /// `policy` says; the Sluice controller runs for the namespace.
    pub async fn new(test: &str, manifest: &str, rollout: &str, policy: Policy) -> Self {
        argocd::ensure_up().await;
        let ns = TestNamespace::new(test).await;
        sluice_testkit::install_crds(&ns.client).await;
        let controller = Controller::start(&ns.name).await;
        let repo = Repo::new(&ns.name);
        repo.commit(&[(&manifest_path(), manifest)], "the application");
        let mut annotations = json!({});
        if policy.server_side_diff {
            annotations["argocd.argoproj.io/compare-options"] = json!("ServerSideDiff=true");
        }
        let application = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {
                "name": ns.name,
                "namespace": argocd::NAMESPACE,
                "annotations": annotations
            },
            "spec": {
                "project": "default",
                "source": { "repoURL": repo.url(), "targetRevision": "main", "path": APP_PATH },
                "destination": { "server": "https://kubernetes.default.svc", "namespace": ns.name },
                "syncPolicy": {
                    "automated": { "prune": true, "selfHeal": policy.self_heal },
                    "syncOptions": policy.sync_options,
                },
                "ignoreDifferences": policy.ignore_differences,
            }
        });
        let application: DynamicObject =
            serde_json::from_value(application).expect("an Application");
        applications(&ns)
            .create(&PostParams::default(), &application)
            .await
            .expect("creating the Application");
        Self {
            name: ns.name.clone(),
            rollout: rollout.to_string(),
            rollouts: ns.api::<Rollout>(),
            seen: Vec::new(),
            _controller: controller,
            ns,
            repo,
        }
    }

    /// `argocd ARGS`, failing the test unless it succeeds; its stdout.
    pub async fn argocd(&self, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::from(argocd::cli());
        cmd.args(args).kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("argocd {args:?} did not end within 120 s"))
            .expect("running argocd");
        assert!(
            out.status.success(),
            "argocd {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `argocd app get -o json` (with `--refresh`: Argo CD compares with Git again first).
    pub async fn get(&mut self, refresh: bool) -> View {
        let mut args = vec!["app", "get", &self.name, "-o", "json"];
        if refresh {
            args.push("--refresh");
        }
        let text = self.argocd(&args).await;
        let app: Value = serde_json::from_str(&text).expect("argocd app get -o json");
        let view = View::read(&app, &self.rollout);
        if self.seen.last() != Some(&view) {
            self.seen.push(view.clone());
        }
        view
    }

    /// Polls Argo CD until `ok` holds for what it shows, failing with every view seen after
    /// `seconds`; `each` checks every view on the way (an invariant).
    pub async fn wait_until(
        &mut self,
        seconds: u64,
        what: &str,
        ok: impl Fn(&View) -> bool,
        each: impl Fn(&View) -> Result<(), String>,
    ) -> View {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut polls = 0u32;
        loop {
            // Argo CD refreshes on its own when a resource changes; every tenth poll asks too.
            let view = self.get(polls % 10 == 9).await;
            polls += 1;
            if let Err(broken) = each(&view) {
                panic!(
                    "{}: {broken} while waiting for {what}; seen:\n{:#?}",
                    self.name, self.seen
                );
            }
            if ok(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: {what} not seen within {seconds} s; seen:\n{:#?}",
                self.name,
                self.seen
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn wait(&mut self, seconds: u64, what: &str, ok: impl Fn(&View) -> bool) -> View {
        self.wait_until(seconds, what, ok, |_| Ok(())).await
    }

    /// Polls Argo CD for `seconds`, failing as soon as a view breaks `each`.
    pub async fn hold(
        &mut self,
        seconds: u64,
        what: &str,
        each: impl Fn(&View) -> Result<(), String>,
    ) {
        let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while tokio::time::Instant::now() < until {
            let view = self.get(false).await;
            if let Err(broken) = each(&view) {
                panic!("{}: {broken} ({what}); seen:\n{:#?}", self.name, self.seen);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Merges `patch` into the Application (as a user editing it would).
    pub async fn patch(&self, patch: Value) {
        applications(&self.ns)
            .patch(
                &self.name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("patching the Application");
    }

    /// Commits `manifest` and waits until Argo CD has synced that commit.
    pub async fn commit(&mut self, manifest: &str, message: &str) -> String {
        let commit = self.repo.commit(&[(&manifest_path(), manifest)], message);
        self.get(true).await;
        let want = commit.clone();
        self.wait(90, &format!("the commit {commit} synced"), move |v| {
            v.revision == want && v.sync == "Synced"
        })
        .await;
        commit
    }

    /// `argocd app actions run <app> <action> --kind Rollout --resource-name <rollout>`.
    pub async fn action(&self, action: &str) {
        let rollout = self.rollout.clone();
        self.action_on("Rollout", &rollout, action).await;
    }

    /// `argocd app actions run <app> <action> --kind <kind> --resource-name <name>`.
    pub async fn action_on(&self, kind: &str, name: &str, action: &str) {
        let app = self.name.clone();
        self.argocd(&[
            "app",
            "actions",
            "run",
            &app,
            action,
            "--kind",
            kind,
            "--resource-name",
            name,
        ])
        .await;
    }

    /// The health Argo CD shows for the resource `kind/name` of the Application's resource tree
    /// (those in Git and their children, as its UI draws them): `(status, message)`, `None`
    /// while the tree does not hold it.
    pub async fn tree_health(&self, kind: &str, name: &str) -> Option<(String, String)> {
        let tree = argocd::resource_tree(&self.name)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name));
        let nodes = tree["nodes"].as_array().cloned().unwrap_or_default();
        let node = nodes
            .iter()
            .find(|n| n["kind"] == kind && n["name"] == name)?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Some((
            text(&node["health"]["status"]),
            text(&node["health"]["message"]),
        ))
    }

    /// The actions Argo CD offers on the Rollout now, with whether each is enabled.
    pub async fn actions(&self) -> Vec<(String, bool)> {
        let (name, rollout) = (self.name.clone(), self.rollout.clone());
        let text = self
            .argocd(&[
                "app",
                "actions",
                "list",
                &name,
                "--kind",
                "Rollout",
                "--resource-name",
                &rollout,
                "-o",
                "json",
            ])
            .await;
        let list: Value = serde_json::from_str(&text).expect("argocd app actions list -o json");
        list.as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a["Action"].as_str().unwrap_or_default().to_string();
                (name, !a["Disabled"].as_bool().unwrap_or(false))
            })
            .collect()
    }

    pub async fn get_rollout(&self) -> Rollout {
        self.rollouts
            .get(&self.rollout)
            .await
            .expect("reading the Rollout")
    }

    /// Waits until the Rollout (read from the cluster) satisfies `ok`.
    pub async fn wait_rollout(
        &self,
        seconds: u64,
        what: &str,
        ok: impl Fn(&Rollout) -> bool,
    ) -> Rollout {
        self.ns
            .wait_for(&self.rollout, seconds, what, move |r: Option<&Rollout>| {
                r.is_some_and(&ok)
            })
            .await
    }

    /// Waits until Argo CD shows the Application Healthy with exactly its two Services OutOfSync
    /// (over the key Sluice added to their selectors, which server-side diff and server-side
    /// apply see), then ignores that key in the Application.
    pub async fn ignore_the_selector_key_once_seen(&mut self) {
        let services = [
            "Service/guestbook-canary".to_string(),
            "Service/guestbook-stable".to_string(),
        ];
        self.wait(120, "Healthy, the Services OutOfSync", |v| {
            let mut out = v.out_of_sync.clone();
            out.sort();
            v.health == "Healthy" && v.sync == "OutOfSync" && out == services
        })
        .await;
        self.patch(json!({ "spec": { "ignoreDifferences": [{
            "kind": "Service",
            "jsonPointers": ["/spec/selector/rollouts-pod-template-hash"]
        }] } }))
        .await;
    }

    /// Waits until no sync is queued or running and both Services carry Sluice's key again, for
    /// three polls in a row: a self-heal sync Argo CD started before the ignore rule took effect
    /// puts Git's selectors back, and Sluice then restores its key; only after that has settled
    /// does what a test watches say anything about syncs that respect the rule.
    pub async fn settled_with_the_key(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut in_a_row = 0;
        while in_a_row < 3 {
            let application = applications(&self.ns)
                .get(&self.name)
                .await
                .expect("reading the Application");
            let application = serde_json::to_value(&application).expect("an Application as JSON");
            let syncing = application.get("operation").is_some_and(|o| !o.is_null())
                || application["status"]["operationState"]["phase"] == "Running";
            let mut keyed = true;
            for name in ["guestbook-canary", "guestbook-stable"] {
                let service = self
                    .ns
                    .api::<Service>()
                    .get(name)
                    .await
                    .expect("reading a Service");
                keyed &= service
                    .spec
                    .and_then(|s| s.selector)
                    .is_some_and(|s| s.contains_key("rollouts-pod-template-hash"));
            }
            let view = self.get(false).await;
            in_a_row = if !syncing && keyed && view.is("Synced", "Healthy") {
                in_a_row + 1
            } else {
                0
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: syncs still running or a selector without the key after 120 s (syncing {syncing}, keyed {keyed}); seen:\n{:#?}",
                self.name,
                self.seen
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `argocd app sync` by hand, then 10 s in which every view passes `each`.
    pub async fn sync_by_hand(&mut self, each: impl Fn(&View) -> Result<(), String>) {
        let name = self.name.clone();
        self.argocd(&["app", "sync", &name, "--timeout", "90"])
            .await;
        self.hold(10, "after a manual sync", each).await;
    }

    /// Argo CD's `promote-full`, then a wait for Synced and Healthy, never OutOfSync on the way.
    pub async fn promote_full_to_healthy(&mut self) {
        self.action("promote-full").await;
        self.wait_until(
            120,
            "Synced and Healthy",
            |v| v.is("Synced", "Healthy"),
            stays_synced,
        )
        .await;
    }

    /// Waits until the canary stands at its manual pause, and Argo CD shows it Suspended.
    pub async fn at_manual_pause(&mut self) {
        self.at_manual_pause_with(|_| Ok(())).await;
    }

    /// [`Self::at_manual_pause`], checking every view Argo CD shows on the way with `each`.
    pub async fn at_manual_pause_with(&mut self, each: impl Fn(&View) -> Result<(), String>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
        loop {
            let view = self.get(false).await;
            if let Err(broken) = each(&view) {
                panic!(
                    "{}: {broken} on the way to the manual pause; seen:\n{:#?}",
                    self.name, self.seen
                );
            }
            let s = status(&self.get_rollout().await);
            let paused =
                s.current_step_index == Some(MANUAL_PAUSE) && !s.pause_conditions.is_empty();
            if paused && view.is("Synced", "Suspended") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: not Suspended at the manual pause within 150 s (rollout: {s:?}); seen:\n{:#?}",
                self.name,
                self.seen
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until Argo CD shows the Application Synced and Healthy, and the Rollout's update
    /// done (its stable ReplicaSet the current one).
    pub async fn healthy(&mut self, seconds: u64) -> View {
        let view = self
            .wait(seconds, "Synced and Healthy", |v| v.is("Synced", "Healthy"))
            .await;
        let s = status(&self.get_rollout().await);
        assert!(
            s.stable_rs.is_some() && s.stable_rs == s.current_pod_hash,
            "Argo CD shows Healthy, but the rollout is not done: {s:?}"
        );
        view
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // No finalizer: deleting the Application leaves the resources to the namespace's deletion.
        let _ = sluice_testkit::kubectl()
            .args([
                "delete",
                "applications.argoproj.io",
                "--ignore-not-found",
                "--wait=false",
            ])
            .args(["-n", argocd::NAMESPACE, &self.name])
            .output();
    }
}

pub fn manifest_path() -> String {
    format!("{APP_PATH}/manifest.yaml")
}

pub fn applications(ns: &TestNamespace) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    Api::namespaced_with(
        ns.client.clone(),
        argocd::NAMESPACE,
        &ApiResource::from_gvk(&gvk),
    )
}

/// The canary example as it is, and with its image changed.
pub fn canary(image: &str) -> String {
    example("canary.yaml", "guestbook").replace(
        "ghcr.io/example/guestbook:1.0",
        &format!("ghcr.io/example/guestbook:{image}"),
    )
}

/// The invariant of a synced Application: once Argo CD has synced a commit, nothing Sluice
/// writes (Service selectors, ReplicaSets, the Rollout's status) makes it OutOfSync.
pub fn stays_synced(v: &View) -> Result<(), String> {
    if v.sync == "Synced" {
        Ok(())
    } else {
        Err(format!("the Application is {} ({v:?})", v.sync))
    }
}

/// The names of the pods of the ReplicaSet with this pod template hash (not those terminating).
pub async fn pods_of(app: &App, hash: &str) -> Vec<String> {
    let params = ListParams::default().labels(&format!("rollouts-pod-template-hash={hash}"));
    let mut names: Vec<String> = app
        .ns
        .api::<Pod>()
        .list(&params)
        .await
        .expect("listing pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}
