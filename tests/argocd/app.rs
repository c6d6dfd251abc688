//! Sluice under Argo CD, for real: each test commits one of `examples/` into a Git repository of
//! its own, points an Argo CD Application at it with the test's namespace as destination, and
//! runs the Sluice controller for that namespace. The assertions are what a user sees in
//! `argocd app get -o json`: the sync status, the health, and the Rollout's health among the
//! Application's resources; the Rollout itself is read only to know where the canary stands.
//!
//! Argo CD runs beside the local cluster (`cargo xtask argocd up`, which `cargo xtask test` does,
//! and which the first test here runs when Argo CD is not up).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
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
const APP_PATH: &str = "app";

/// The manual pause of `examples/canary.yaml` (its fourth step: `pause: {}`).
const MANUAL_PAUSE: i32 = 3;

/// An example, with a pod annotation kwok honours (`sluice.dev/ready-after`) so that new pods
/// take as long to become ready as a readiness probe would make them: each step is then visibly
/// Progressing before it pauses.
fn example(file: &str, app: &str) -> String {
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
struct View {
    sync: String,
    health: String,
    /// The commit the sync status compares with.
    revision: String,
    /// The Rollout's health among the Application's resources.
    rollout: String,
    rollout_message: String,
    /// The resources Argo CD finds out of sync with Git (`Kind/name`).
    out_of_sync: Vec<String>,
}

impl View {
    fn read(app: &Value, rollout: &str) -> Self {
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

    fn is(&self, sync: &str, health: &str) -> bool {
        self.sync == sync && self.health == health && self.rollout == health
    }
}

/// One test: its namespace, the Sluice controller for it, its repository and its Application.
struct App {
    name: String,
    rollout: String,
    rollouts: Api<Rollout>,
    /// Every distinct view seen, in order: the report when a wait fails.
    seen: Vec<View>,
    // Dropped in this order (after `Drop` deletes the Application): the controller (its log
    // printed on failure), the namespace, the repository.
    _controller: Controller,
    ns: TestNamespace,
    repo: Repo,
}

impl App {
    /// Commits `manifest` and creates an Application of it with an automated sync policy
    /// (`selfHeal` as given), compared with Git by client-side diff (Argo CD's default) or
    /// server-side diff; the Sluice controller runs for the namespace.
    async fn new(
        test: &str,
        manifest: &str,
        rollout: &str,
        self_heal: bool,
        server_side_diff: bool,
    ) -> Self {
        argocd::ensure_up().await;
        let ns = TestNamespace::new(test).await;
        sluice_testkit::install_crds(&ns.client).await;
        let controller = Controller::start(&ns.name).await;
        let repo = Repo::new(&ns.name);
        repo.commit(&[(&manifest_path(), manifest)], "the application");
        let mut annotations = json!({});
        if server_side_diff {
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
                "syncPolicy": { "automated": { "prune": true, "selfHeal": self_heal } }
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
    async fn argocd(&self, args: &[&str]) -> String {
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
    async fn get(&mut self, refresh: bool) -> View {
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
    async fn wait_until(
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

    async fn wait(&mut self, seconds: u64, what: &str, ok: impl Fn(&View) -> bool) -> View {
        self.wait_until(seconds, what, ok, |_| Ok(())).await
    }

    /// Polls Argo CD for `seconds`, failing as soon as a view breaks `each`.
    async fn hold(&mut self, seconds: u64, what: &str, each: impl Fn(&View) -> Result<(), String>) {
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
    async fn patch(&self, patch: Value) {
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
    async fn commit(&mut self, manifest: &str, message: &str) -> String {
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
    async fn action(&self, action: &str) {
        let (name, rollout) = (self.name.clone(), self.rollout.clone());
        self.argocd(&[
            "app",
            "actions",
            "run",
            &name,
            action,
            "--kind",
            "Rollout",
            "--resource-name",
            &rollout,
        ])
        .await;
    }

    /// The actions Argo CD offers on the Rollout now, with whether each is enabled.
    async fn actions(&self) -> Vec<(String, bool)> {
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

    async fn get_rollout(&self) -> Rollout {
        self.rollouts
            .get(&self.rollout)
            .await
            .expect("reading the Rollout")
    }

    /// Waits until the Rollout (read from the cluster) satisfies `ok`.
    async fn wait_rollout(
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

    /// Waits until the canary stands at its manual pause, and Argo CD shows it Suspended.
    async fn at_manual_pause(&mut self) {
        self.at_manual_pause_with(|_| Ok(())).await;
    }

    /// [`Self::at_manual_pause`], checking every view Argo CD shows on the way with `each`.
    async fn at_manual_pause_with(&mut self, each: impl Fn(&View) -> Result<(), String>) {
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
    async fn healthy(&mut self, seconds: u64) -> View {
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

fn manifest_path() -> String {
    format!("{APP_PATH}/manifest.yaml")
}

fn applications(ns: &TestNamespace) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    Api::namespaced_with(
        ns.client.clone(),
        argocd::NAMESPACE,
        &ApiResource::from_gvk(&gvk),
    )
}

/// The canary example as it is, and with its image changed.
fn canary(image: &str) -> String {
    example("canary.yaml", "guestbook").replace(
        "ghcr.io/example/guestbook:1.0",
        &format!("ghcr.io/example/guestbook:{image}"),
    )
}

#[tokio::test]
async fn a_synced_canary_is_synced_and_healthy() {
    let mut app = App::new("argocd-sync", &canary("1.0"), "guestbook", false, false).await;
    let view = app.healthy(120).await;
    assert_eq!(view.rollout_message, "", "{view:?}");
}

#[tokio::test]
async fn a_commit_pauses_at_the_manual_step_and_actions_move_it_on() {
    let mut app = App::new("argocd-steps", &canary("1.0"), "guestbook", false, false).await;
    app.healthy(120).await;
    let first = app.seen.len();

    app.commit(&canary("1.1"), "guestbook 1.1").await;
    app.at_manual_pause().await;
    assert!(
        app.seen[first..].iter().any(|v| v.rollout == "Progressing"),
        "never Progressing on the way to the pause: {:#?}",
        app.seen
    );
    let actions = app.actions().await;
    for (action, enabled) in [
        ("resume", true),
        ("promote-full", true),
        ("abort", true),
        ("retry", false),
    ] {
        assert!(
            actions.contains(&(action.to_string(), enabled)),
            "{action} should be {}: {actions:?}",
            if enabled { "enabled" } else { "disabled" }
        );
    }

    // resume: past the manual pause, to the next steps.
    app.action("resume").await;
    app.wait_rollout(60, "the canary past its manual pause", |r| {
        status(r).current_step_index > Some(MANUAL_PAUSE)
    })
    .await;
    // promote-full: the remaining steps skipped.
    app.action("promote-full").await;
    app.healthy(120).await;
    let r = app.get_rollout().await;
    assert_eq!(
        sluice_testkit::manifests::image(&r),
        "ghcr.io/example/guestbook:1.1"
    );
}

#[tokio::test]
async fn abort_is_degraded_and_retry_restarts_the_update() {
    let mut app = App::new("argocd-abort", &canary("1.0"), "guestbook", false, false).await;
    app.healthy(120).await;
    app.commit(&canary("1.1"), "guestbook 1.1").await;
    app.at_manual_pause().await;

    app.action("abort").await;
    let view = app
        .wait(60, "Degraded after abort", |v| v.is("Synced", "Degraded"))
        .await;
    assert!(
        !view.rollout_message.is_empty(),
        "Degraded without a message: {view:?}"
    );
    app.wait_rollout(60, "the canary scaled away after abort", |r| {
        let s = status(r);
        s.abort == Some(true) && s.updated_replicas == Some(0)
    })
    .await;
    let actions = app.actions().await;
    assert!(
        actions.contains(&("retry".to_string(), true)),
        "{actions:?}"
    );

    app.action("retry").await;
    app.wait_rollout(60, "the update restarted", |r| {
        let s = status(r);
        s.abort != Some(true) && s.updated_replicas > Some(0)
    })
    .await;
    // The Application's health follows the Rollout's at its next reconciliation.
    app.wait(60, "no longer Degraded after retry", |v| {
        v.health != "Degraded" && v.rollout != "Degraded"
    })
    .await;
    let degraded_until = app.seen.len();
    app.at_manual_pause().await;
    assert!(
        app.seen[degraded_until..]
            .iter()
            .all(|v| v.health != "Degraded" && v.rollout != "Degraded"),
        "Degraded again after retry: {:#?}",
        app.seen
    );
    app.action("promote-full").await;
    app.healthy(120).await;
}

#[tokio::test]
async fn blue_green_is_suspended_until_promoted() {
    let bluegreen = |version: &str| {
        example("bluegreen.yaml", "checkout").replace(
            "ghcr.io/example/checkout:2.3.0",
            &format!("ghcr.io/example/checkout:{version}"),
        )
    };
    let mut app = App::new(
        "argocd-bluegreen",
        &bluegreen("2.3.0"),
        "checkout",
        false,
        false,
    )
    .await;
    app.healthy(120).await;

    app.commit(&bluegreen("2.4.0"), "checkout 2.4.0").await;
    app.wait(120, "Suspended waiting for promotion", |v| {
        v.is("Synced", "Suspended")
    })
    .await;
    let r = app.get_rollout().await;
    let s = status(&r);
    assert_ne!(
        s.current_pod_hash, s.stable_rs,
        "Suspended before the new version came up: {s:?}"
    );
    app.action("resume").await;
    app.healthy(120).await;
}

#[tokio::test]
async fn restart_replaces_the_pods_and_stays_synced() {
    let mut app = App::new("argocd-restart", &canary("1.0"), "guestbook", true, false).await;
    app.healthy(120).await;
    let hash = status(&app.get_rollout().await)
        .current_pod_hash
        .expect("a current pod hash");
    let before = pods_of(&app, &hash).await;
    assert_eq!(before.len(), 5, "{before:?}");

    // `restart` writes spec.restartAt, which is not in Git: selfHeal must leave it.
    app.action("restart").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let view = app.get(false).await;
        if let Err(broken) = stays_synced(&view) {
            panic!("{broken} during the restart; seen:\n{:#?}", app.seen);
        }
        let now = pods_of(&app, &hash).await;
        if now.len() == 5 && now.iter().all(|p| !before.contains(p)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pods were not all replaced within 120 s: before {before:?}, now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = app.get_rollout().await;
    assert!(r.spec.restart_at.is_some(), "restartAt was reverted");
    app.wait_until(
        120,
        "Synced and Healthy after the restart",
        |v| v.is("Synced", "Healthy"),
        stays_synced,
    )
    .await;
}

/// The invariant of a synced Application: once Argo CD has synced a commit, nothing Sluice
/// writes (Service selectors, ReplicaSets, the Rollout's status) makes it OutOfSync.
fn stays_synced(v: &View) -> Result<(), String> {
    if v.sync == "Synced" {
        Ok(())
    } else {
        Err(format!("the Application is {} ({v:?})", v.sync))
    }
}

/// The names of the pods of the ReplicaSet with this pod template hash (not those terminating).
async fn pods_of(app: &App, hash: &str) -> Vec<String> {
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

/// A canary synced by an Application with `selfHeal`, with client-side or server-side diff:
/// never OutOfSync through the rollout and after it, and neither a manual sync nor a self-heal
/// during the canary restarts it.
async fn self_heal(test: &str, server_side_diff: bool) {
    let mut app = App::new(test, &canary("1.0"), "guestbook", true, server_side_diff).await;
    if server_side_diff {
        // Server-side diff predicts the live Service from a dry-run apply of Git's, and a
        // Service's selector is atomic for server-side apply: the key Sluice added to it is
        // predicted gone. The Services are OutOfSync until that key is ignored.
        let mut services = vec![
            "Service/guestbook-canary".to_string(),
            "Service/guestbook-stable".to_string(),
        ];
        services.sort();
        app.wait(120, "Healthy, the Services OutOfSync", |v| {
            let mut out = v.out_of_sync.clone();
            out.sort();
            v.health == "Healthy" && v.sync == "OutOfSync" && out == services
        })
        .await;
        app.patch(json!({ "spec": { "ignoreDifferences": [{
            "kind": "Service",
            "jsonPointers": ["/spec/selector/rollouts-pod-template-hash"]
        }] } }))
        .await;
    }
    app.healthy(120).await;
    app.hold(15, "Healthy", stays_synced).await;

    app.commit(&canary("1.1"), "guestbook 1.1").await;
    app.at_manual_pause_with(stays_synced).await;
    let paused = status(&app.get_rollout().await);
    let hash = paused.current_pod_hash.clone().expect("a current pod hash");
    let pods = pods_of(&app, &hash).await;
    assert!(!pods.is_empty(), "no canary pods at the pause");

    // A sync by hand during the canary: nothing to change, nothing restarted.
    let name = app.name.clone();
    app.argocd(&["app", "sync", &name, "--timeout", "90"]).await;
    app.hold(10, "Suspended after a manual sync", |v| {
        stays_synced(v)?;
        (v.rollout == "Suspended")
            .then_some(())
            .ok_or(format!("not Suspended: {v:?}"))
    })
    .await;

    // Drift in a field Git owns: self-heal writes it back, and the canary stays where it was.
    let patch = json!({ "spec": { "revisionHistoryLimit": 4 } });
    app.rollouts
        .patch(
            "guestbook",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("changing revisionHistoryLimit behind Argo CD's back");
    app.wait_rollout(90, "self-heal restoring revisionHistoryLimit", |r| {
        r.spec.revision_history_limit == Some(3)
    })
    .await;
    // The write-back is a new generation: Argo CD's health check says Progressing until Sluice
    // has observed it, and nothing else (no new pods, no new steps).
    app.hold(10, "Suspended after self-heal", |v| {
        let observing = v.rollout == "Progressing"
            && v.rollout_message == "Waiting for rollout spec update to be observed";
        (v.rollout == "Suspended" || observing)
            .then_some(())
            .ok_or(format!("{v:?}"))
    })
    .await;
    app.wait(60, "Synced and Suspended after self-heal", |v| {
        v.is("Synced", "Suspended")
    })
    .await;
    let after = status(&app.get_rollout().await);
    assert_eq!(after.current_step_index, Some(MANUAL_PAUSE), "{after:?}");
    assert_eq!(after.current_pod_hash, paused.current_pod_hash, "{after:?}");
    assert_eq!(
        pods_of(&app, &hash).await,
        pods,
        "the canary's pods were replaced"
    );

    app.action("promote-full").await;
    app.wait_until(
        120,
        "Synced and Healthy",
        |v| v.is("Synced", "Healthy"),
        stays_synced,
    )
    .await;
    // After the update: the old ReplicaSet scaled down, the Services' selectors moved.
    app.hold(15, "Healthy after the update", |v| {
        stays_synced(v)?;
        (v.health == "Healthy")
            .then_some(())
            .ok_or(format!("{v:?}"))
    })
    .await;
}

#[tokio::test]
async fn self_heal_stays_synced_and_keeps_the_canary() {
    self_heal("argocd-selfheal", false).await;
}

#[tokio::test]
async fn self_heal_with_server_side_diff_stays_synced_and_keeps_the_canary() {
    self_heal("argocd-ssd", true).await;
}
