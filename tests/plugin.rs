//! The kubectl plugin end to end, as a user runs it: the real kubectl finds `kubectl-sluice` on
//! PATH and `kubectl sluice …` runs it against the local cluster, where the `sluice` controller
//! watches each test's namespace. Every writing command is checked by its effect on the Rollout
//! (and its ReplicaSets and pods), not by the printed line alone.
#[path = "plugin/harness.rs"]
mod harness;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use harness::{
    Plugin, Watching, canary, image, kubectl_sluice, observed, output, paused_at, status,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    ResourceExt,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::RolloutPhase;

#[tokio::test]
async fn promote_resumes_a_paused_canary_and_moves_one_that_is_not_paused_to_its_next_step() {
    let t = Plugin::new("plugin-promote").await;
    let first = t
        .deploy(canary(2, json!([{ "setWeight": 50 }, { "pause": {} }])))
        .await;
    let paused = t.paused_at_first_pause().await;
    let canary_hash = status(&paused).current_pod_hash.expect("a canary hash");
    assert_ne!(status(&first).stable_rs, Some(canary_hash.clone()));

    let out = t.ok(&["promote", "app"]).await;
    assert_eq!(
        out.trim(),
        "rollout \"app\" promoted (was paused by CanaryPauseStep)"
    );
    let done = t
        .wait(60, "the canary promoted to stable", |r| {
            status(r).stable_rs.as_deref() == Some(canary_hash.as_str())
                && status(r).phase == Some(RolloutPhase::Healthy)
        })
        .await;
    assert!(status(&done).pause_conditions.is_empty());

    // Not paused and no step left: exit 0 as Argo's, said so, nothing written.
    let before = t.quiet_version().await;
    let out = t.ok(&["promote", "app"]).await;
    assert_eq!(
        out.trim(),
        "rollout \"app\" is not paused and has no step left to move to; nothing to promote"
    );
    assert_eq!(
        t.get().await.resource_version().unwrap_or_default(),
        before,
        "nothing changed"
    );

    // Not paused, mid-step (a version whose pods never become ready waits at setWeight): it
    // moves on to the next step, the pause, which holds.
    t.never_ready_version("example/app:3").await;
    t.wait(30, "the new version waiting at step 0", |r| {
        observed(r)
            && status(r).phase == Some(RolloutPhase::Progressing)
            && status(r).current_step_index == Some(0)
            && status(r).current_pod_hash.as_deref() != Some(canary_hash.as_str())
    })
    .await;
    let out = t.ok(&["promote", "app"]).await;
    assert_eq!(
        out.trim(),
        "rollout \"app\" promoted: step 0 skipped, now at step 1/2"
    );
    t.wait(30, "paused at the pause step", |r| paused_at(r, 1))
        .await;
}

#[tokio::test]
async fn promote_full_skips_the_remaining_steps() {
    let t = Plugin::new("plugin-promote-full").await;
    t.deploy(canary(
        2,
        json!([{ "setWeight": 50 }, { "pause": {} }, { "setWeight": 75 }, { "pause": {} }]),
    ))
    .await;
    let paused = t.paused_at_first_pause().await;
    let canary_hash = status(&paused).current_pod_hash.expect("a canary hash");
    // Paused by a person too: --full lifts that pause as well (Argo's fix #4265).
    t.ok(&["pause", "app"]).await;

    let out = t.ok(&["promote", "app", "--full"]).await;
    assert!(out.starts_with("rollout \"app\" fully promoted"), "{out}");
    assert!(out.trim().ends_with("; spec.paused lifted"), "{out}");
    assert_eq!(t.get().await.spec.paused, Some(false));
    let done = t
        .wait(60, "fully promoted without the second pause", |r| {
            status(r).stable_rs.as_deref() == Some(canary_hash.as_str())
                && status(r).phase == Some(RolloutPhase::Healthy)
        })
        .await;
    assert_eq!(status(&done).current_step_index, Some(4));
    assert_eq!(t.replicas_of(&canary_hash).await, 2);
}

#[tokio::test]
async fn abort_goes_back_to_stable_and_retry_starts_over() {
    let t = Plugin::new("plugin-abort").await;
    let first = t
        .deploy(canary(2, json!([{ "setWeight": 50 }, { "pause": {} }])))
        .await;
    let stable = status(&first).stable_rs.expect("a stable hash");
    let paused = t.paused_at_first_pause().await;
    let canary_hash = status(&paused).current_pod_hash.expect("a canary hash");

    let out = t.ok(&["abort", "app"]).await;
    assert!(out.starts_with("rollout \"app\" aborted"), "{out}");
    let aborted = t
        .wait(60, "aborted and Degraded", |r| {
            status(r).abort == Some(true) && status(r).phase == Some(RolloutPhase::Degraded)
        })
        .await;
    assert_eq!(status(&aborted).stable_rs, Some(stable.clone()));
    sluice_testkit::wait(
        async {
            while t.replicas_of(&canary_hash).await != 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, ()>(())
        },
        30,
        "the canary scaled down",
    )
    .await;
    assert_eq!(t.replicas_of(&stable).await, 2);
    // `status` of an aborted rollout exits 5, for scripts.
    let run = t.sluice(&["status", "app"]).await;
    assert_eq!(run.code, Some(5), "{run:?}");
    assert!(
        run.stdout.starts_with("Degraded - RolloutAborted"),
        "{run:?}"
    );

    let out = t.ok(&["retry", "rollout", "app"]).await;
    assert!(out.starts_with("rollout \"app\" retried"), "{out}");
    let again = t
        .wait(60, "the update running its steps again", |r| {
            paused_at(r, 1)
        })
        .await;
    assert_ne!(status(&again).abort, Some(true));
    assert_eq!(t.replicas_of(&canary_hash).await, 1, "50% of 2 pods again");

    // Not aborted: nothing to retry, nothing written.
    let before = t.quiet_version().await;
    let out = t.ok(&["retry", "rollout", "app"]).await;
    assert_eq!(
        out.trim(),
        "rollout \"app\" is not aborted; nothing to retry"
    );
    assert_eq!(t.get().await.resource_version().unwrap_or_default(), before);
}

#[tokio::test]
async fn pause_holds_the_rollout_until_promoted() {
    let t = Plugin::new("plugin-pause").await;
    t.deploy(canary(2, json!([{ "setWeight": 50 }]))).await;

    let out = t.ok(&["pause", "app"]).await;
    assert!(out.starts_with("rollout \"app\" paused"), "{out}");
    assert_eq!(t.get().await.spec.paused, Some(true));
    let held = t
        .wait(30, "reported Paused", |r| {
            status(r).phase == Some(RolloutPhase::Paused) && observed(r)
        })
        .await;
    let run = t.sluice(&["status", "app", "--watch=false"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.trim(), "Paused - manually paused");

    // A new image waits while paused.
    t.ok(&["set", "image", "app", "app=example/app:2"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = t.get().await;
    assert_eq!(status(&still).stable_rs, status(&held).stable_rs);

    let out = t.ok(&["promote", "app"]).await;
    assert!(
        out.starts_with("rollout \"app\" promoted (was paused by spec.paused)"),
        "{out}"
    );
    assert_eq!(t.get().await.spec.paused, Some(false));
    let done = t.healthy().await;
    assert_ne!(status(&done).stable_rs, status(&held).stable_rs);
}

#[tokio::test]
async fn restart_replaces_every_pod_now_or_later() {
    let t = Plugin::new("plugin-restart").await;
    t.deploy(canary(2, json!([]))).await;

    // Later: only the time is written.
    let before = jiff::Timestamp::now();
    t.ok(&["restart", "app", "--in", "1h"]).await;
    let at = t.get().await.spec.restart_at.expect("restartAt").0;
    let delta = at.duration_since(before).as_secs();
    assert!(
        (3600..=3610).contains(&delta),
        "restartAt {at} is {delta}s away"
    );

    // Now: every pod is replaced and the controller records it.
    let out = t.ok(&["restart", "app"]).await;
    assert!(
        out.starts_with("rollout \"app\" restarts its pods at"),
        "{out}"
    );
    let at = t.get().await.spec.restart_at.expect("restartAt").0;
    t.wait(60, "status.restartedAt", |r| {
        status(r).restarted_at.as_ref().is_some_and(|s| s.0 >= at)
    })
    .await;
    let pods =
        t.ns.api::<Pod>()
            .list(&ListParams::default().labels("app=app"))
            .await
            .expect("listing pods")
            .items;
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(live.len(), 2);
    for pod in live {
        let created = pod.metadata.creation_timestamp.as_ref().expect("a time").0;
        assert!(created >= at, "{} was not restarted", pod.name_any());
    }
}

#[tokio::test]
async fn set_image_changes_one_container_and_names_the_ones_there_are() {
    let t = Plugin::new("plugin-set-image").await;
    let first = t.deploy(canary(2, json!([]))).await;

    let out = t.ok(&["set", "image", "app", "app=example/app:2"]).await;
    assert_eq!(
        out.trim(),
        "rollout \"app\": container \"app\" set to image example/app:2"
    );
    let done = t.healthy().await;
    assert_eq!(image(&done), "example/app:2");
    assert_ne!(status(&done).stable_rs, status(&first).stable_rs);

    let run = t
        .sluice(&["set", "image", "app", "web=example/web:2"])
        .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("no container named \"web\" (its containers: app)"),
        "{run:?}"
    );
    assert_eq!(image(&t.get().await), "example/app:2");
}

#[tokio::test]
async fn undo_returns_to_the_previous_template_and_its_replica_set() {
    let t = Plugin::new("plugin-undo").await;
    let first = t.deploy(canary(2, json!([]))).await;
    let v1 = status(&first).stable_rs.expect("a stable hash");
    t.ok(&["set", "image", "app", "app=example/app:2"]).await;
    let second = t
        .wait(60, "version 2 stable", |r| {
            status(r).phase == Some(RolloutPhase::Healthy)
                && observed(r)
                && status(r).stable_rs.as_deref() != Some(v1.as_str())
        })
        .await;
    let v2 = status(&second).stable_rs.expect("a stable hash");

    let out = t.ok(&["undo", "app"]).await;
    assert_eq!(
        out.trim(),
        "rollout \"app\" rolled back to the template of revision 1"
    );
    let back = t
        .wait(60, "version 1 stable again", |r| {
            status(r).phase == Some(RolloutPhase::Healthy)
                && observed(r)
                && status(r).stable_rs.as_deref() == Some(v1.as_str())
        })
        .await;
    assert_eq!(image(&back), "example/app:1");
    assert_eq!(
        back.spec.template, first.spec.template,
        "the template as first written, without the API server's defaults"
    );
    assert_eq!(
        t.replicas_of(&v1).await,
        2,
        "the first ReplicaSet serves again"
    );
    assert_eq!(t.replicas_of(&v2).await, 0);

    let run = t.sluice(&["undo", "app", "--to-revision", "99"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("revision 99 is not in the rollout's history"),
        "{run:?}"
    );
}

#[tokio::test]
async fn skip_step_moves_past_a_pause_to_the_next_step() {
    let t = Plugin::new("plugin-skip-step").await;
    t.deploy(canary(
        2,
        json!([{ "setWeight": 50 }, { "pause": {} }, { "pause": {} }, { "setWeight": 100 }, { "pause": {} }]),
    ))
    .await;
    let paused = t.paused_at_first_pause().await;
    let canary_hash = status(&paused).current_pod_hash.expect("a canary hash");

    let out = t.ok(&["skip-step", "app"]).await;
    assert_eq!(
        out.trim(),
        "rollout \"app\" skipped step 1: now at step 2/5"
    );
    // Skipped onto another pause: it holds (it is not taken for a promoted one).
    t.wait(30, "paused at the second pause", |r| paused_at(r, 2))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(paused_at(&t.get().await, 2), "the second pause holds");
    assert_eq!(t.replicas_of(&canary_hash).await, 1);

    // Skipped onto a setWeight: it runs, and the pause after it holds.
    t.ok(&["skip-step", "app"]).await;
    t.wait(30, "paused at the last pause", |r| paused_at(r, 4))
        .await;
    assert_eq!(t.replicas_of(&canary_hash).await, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(paused_at(&t.get().await, 4), "the last pause holds");
}

#[tokio::test]
async fn status_waits_through_a_pause_until_healthy_and_times_out_on_a_stuck_rollout() {
    let t = Plugin::new("plugin-status").await;
    t.deploy(canary(2, json!([{ "setWeight": 50 }, { "pause": {} }])))
        .await;

    // At the pause that waits for a person, `status` goes on waiting (a CI gate must not pass
    // on the first step); promoted meanwhile, it ends 0 on Healthy.
    t.ok(&["set", "image", "app", "app=example/app:2"]).await;
    t.wait(60, "paused at step 1", |r| paused_at(r, 1)).await;
    let promote = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        t.ok(&["promote", "app"]).await
    };
    let (run, _) = tokio::join!(t.sluice(&["status", "app", "-t", "60s"]), promote);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"Paused - CanaryPauseStep"), "{run:?}");
    assert_eq!(lines.last(), Some(&"Healthy"), "{run:?}");

    // A version whose pods never become ready: Progressing until the timeout, exit 3.
    t.never_ready_version("example/app:3").await;
    t.wait(30, "the broken version progressing", |r| {
        observed(r) && status(r).phase == Some(RolloutPhase::Progressing)
    })
    .await;
    let started = Instant::now();
    let run = t.sluice(&["status", "app", "--timeout", "3s"]).await;
    let took = started.elapsed();
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stdout.starts_with("Progressing"), "{run:?}");
    assert!(run.stderr.contains("timed out after 3s"), "{run:?}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "{took:?}"
    );
}

#[tokio::test]
async fn get_list_and_watch_show_the_rollout_as_it_changes() {
    let t = Plugin::new("plugin-get").await;
    // Created from a file by `create -f -w`, which then watches it as `get rollout --watch`.
    let manifest = harness::file(
        &format!("{}.rollout.json", t.ns.name),
        &canary(2, json!([{ "setWeight": 50 }, { "pause": {} }])).to_string(),
    );
    let manifest = manifest.to_string_lossy();
    let mut created = Watching::start(t.command(&["create", "-f", &manifest, "-w", "--no-color"]));
    created.until("rollout.argoproj.io/app created").await;
    created.until("Status:         Healthy").await;
    assert!(
        !created.seen.contains('\x1b'),
        "--no-color: {}",
        created.seen
    );
    assert!(
        created.interrupt().await.success(),
        "Ctrl-C ends create -w cleanly"
    );
    let first = t.healthy().await;
    // Created once: a second create is refused by the API server, said plainly.
    let again = t.sluice(&["create", "-f", &manifest]).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    let stable = status(&first).stable_rs.expect("a stable hash");

    let tree = t.ok(&["get", "rollout", "app"]).await;
    assert!(tree.contains("Status:         Healthy"), "{tree}");
    assert!(tree.contains(&format!("app-{stable}")), "{tree}");
    assert!(tree.contains("revision:1"), "{tree}");
    assert!(!tree.contains('\x1b'), "plain when piped: {tree}");
    let data: Value =
        serde_json::from_str(&t.ok(&["get", "rollout", "app", "-o", "json"]).await).expect("JSON");
    assert_eq!(data["status"], "Healthy");
    assert_eq!(
        data["revisions"][0]["replicaSets"][0]["roles"],
        json!(["stable"])
    );
    assert_eq!(
        data["revisions"][0]["replicaSets"][0]["pods"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // An AnalysisRun of the rollout appears under its revision, and has its own view.
    let run: sluice_api::AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {
            "name": "app-check",
            "labels": { "rollouts-pod-template-hash": stable },
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "app",
                "uid": first.metadata.uid, "controller": true
            }]
        },
        "spec": { "metrics": [{
            "name": "success-rate",
            "provider": { "web": { "url": "http://127.0.0.1:9/rate" } }
        }] }
    }))
    .expect("an AnalysisRun");
    t.ns.api::<sluice_api::AnalysisRun>()
        .create(&PostParams::default(), &run)
        .await
        .expect("creating the AnalysisRun");
    let tree = t.ok(&["get", "rollout", "app"]).await;
    let row = tree
        .lines()
        .find(|l| l.contains("app-check"))
        .unwrap_or_default();
    assert!(row.contains("AnalysisRun"), "{tree}");
    let revision_1 = tree.find("revision:1").unwrap_or(usize::MAX);
    assert!(
        tree.find("app-check") > Some(revision_1),
        "under revision 1: {tree}"
    );
    let details = t.ok(&["get", "analysisrun", "app-check"]).await;
    assert!(
        details.starts_with("Name:           app-check"),
        "{details}"
    );
    assert!(details.contains("success-rate"), "{details}");

    let list = t.ok(&["list", "rollouts"]).await;
    let row: Vec<&str> = list
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["app", "Canary", "Healthy", "2/2", "100", "100"],
        "{list}"
    );

    let run = t.sluice(&["get", "rollout", "nope"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "Rollout \"nope\" not found in namespace \"{}\"",
            t.ns.name
        )),
        "{run:?}"
    );

    let none = t.ok(&["list", "rollouts", "--name", "nope"]).await;
    assert_eq!(
        none.trim(),
        format!("No rollouts found in namespace \"{}\".", t.ns.name)
    );

    // --watch draws the tree, redraws it when the rollout changes, and ends 0 on Ctrl-C;
    // `list --watch` prints the table, then a line per change, each with its time.
    let mut tree = Watching::start(t.command(&["get", "rollout", "app", "--watch"]));
    let mut lines = Watching::start(t.command(&[
        "list",
        "rollouts",
        "--name",
        "app",
        "--watch",
        "--timestamps",
    ]));
    tree.until("revision:1").await;
    lines.until("Healthy").await;
    t.ok(&["set", "image", "app", "app=example/app:2"]).await;
    tree.until("revision:2").await;
    tree.until("Paused").await;
    lines.until("Paused").await;
    assert!(
        tree.interrupt().await.success(),
        "Ctrl-C ends get --watch cleanly"
    );
    let seen = std::mem::take(&mut lines.seen);
    assert!(
        lines.interrupt().await.success(),
        "Ctrl-C ends list --watch cleanly"
    );
    let mut printed = seen.lines();
    assert!(
        printed
            .next()
            .is_some_and(|h| h.split_whitespace().take(2).eq(["TIMESTAMP", "NAME"])),
        "{seen}"
    );
    let rows: Vec<&str> = printed.collect();
    assert!(
        rows.len() >= 2,
        "the first line and at least one change: {seen}"
    );
    for row in rows {
        let at = row.split_whitespace().next().unwrap_or_default();
        assert!(
            at.parse::<jiff::Timestamp>().is_ok() && at.ends_with('Z'),
            "{row:?} in {seen}"
        );
        assert!(row.contains(" app "), "{row:?}");
    }

    // --timeout-seconds ends the watch by itself, exit 0 as Argo's.
    let started = Instant::now();
    let run = t
        .sluice(&["get", "rollout", "app", "-w", "--timeout-seconds", "1"])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("revision:2"), "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn forbidden_names_the_verb_and_the_resource() {
    use k8s_openapi::api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::ServiceAccount,
        rbac::v1::{Role, RoleBinding},
    };

    let t = Plugin::new("plugin-forbidden").await;
    t.deploy(canary(1, json!([]))).await;
    // A user who may read rollouts, and nothing else.
    let pp = PostParams::default();
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "viewer" } })).expect("an account");
    t.ns.api::<ServiceAccount>()
        .create(&pp, &sa)
        .await
        .expect("creating the account");
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "rollout-viewer" },
        "rules": [{ "apiGroups": ["argoproj.io"], "resources": ["rollouts"],
                    "verbs": ["get", "list", "watch"] }]
    }))
    .expect("a role");
    t.ns.api::<Role>()
        .create(&pp, &role)
        .await
        .expect("creating the role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "viewer" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-viewer" },
        "subjects": [{ "kind": "ServiceAccount", "name": "viewer", "namespace": t.ns.name }]
    }))
    .expect("a binding");
    t.ns.api::<RoleBinding>()
        .create(&pp, &binding)
        .await
        .expect("creating the binding");
    let token =
        t.ns.api::<ServiceAccount>()
            .create_token_request(
                "viewer",
                &pp,
                &TokenRequest {
                    spec: TokenRequestSpec {
                        expiration_seconds: Some(600),
                        ..TokenRequestSpec::default()
                    },
                    ..TokenRequest::default()
                },
            )
            .await
            .expect("a token")
            .status
            .expect("the token")
            .token;
    let path = sluice_testkit::kubeconfig_with_token(&token, &t.ns.name);

    let as_viewer = |args: &[&str]| {
        let mut cmd = t.command(args);
        cmd.env("KUBECONFIG", &path);
        output(cmd)
    };
    let run = as_viewer(&["status", "app", "--watch=false"]).await;
    assert_eq!(run.code, Some(0), "reading is allowed: {run:?}");
    let run = as_viewer(&["abort", "app"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.starts_with(&format!(
            "error: forbidden: you may not patch rollouts/status in namespace \"{}\"",
            t.ns.name
        )),
        "{run:?}"
    );
    let run = as_viewer(&["pause", "app"]).await;
    assert!(
        run.stderr
            .contains("you may not patch rollouts in namespace"),
        "{run:?}"
    );
    let run = as_viewer(&["get", "rollout", "app"]).await;
    assert!(
        run.stderr
            .contains("you may not list replicasets in namespace"),
        "{run:?}"
    );

    // kubectl's flags over the admin's kubeconfig: --token authenticates as the account alone
    // (the kubeconfig's credentials set aside), --as impersonates it; a refusal names it, and
    // the token is never printed.
    let viewer = format!("system:serviceaccount:{}:viewer", t.ns.name);
    let run = t
        .sluice(&["status", "app", "--watch=false", "--token", &token])
        .await;
    assert_eq!(run.code, Some(0), "reading is allowed: {run:?}");
    for flags in [["--token", token.as_str()], ["--as", viewer.as_str()]] {
        let mut args = vec!["abort", "app"];
        args.extend(flags);
        let run = t.sluice(&args).await;
        assert_eq!(run.code, Some(1), "{}: {run:?}", flags[0]);
        assert!(
            run.stderr
                .contains("you may not patch rollouts/status in namespace")
                && run.stderr.contains(&format!("User \"{viewer}\"")),
            "{}: {run:?}",
            flags[0]
        );
        assert!(!run.stderr.contains(&token) && !run.stdout.contains(&token));
    }
    assert_ne!(t.get().await.status.and_then(|s| s.abort), Some(true));
}

#[tokio::test]
async fn kubeconfig_files_merge_and_the_current_contexts_namespace_is_the_default() {
    let ns = sluice_testkit::TestNamespace::new("plugin-kubeconfig").await;
    sluice_testkit::install_crds(&ns.client).await;
    let rollout: sluice_api::Rollout =
        serde_json::from_value(canary(1, json!([]))).expect("a Rollout");
    ns.api::<sluice_api::Rollout>()
        .create(&PostParams::default(), &rollout)
        .await
        .expect("creating the Rollout");
    // A second file that only adds a context (on the test kubeconfig's cluster and user) and makes
    // it current; KUBECONFIG lists it first, as kubectl merges: the first file to set a value wins.
    let base =
        kube::config::Kubeconfig::read_from(sluice_testkit::kubeconfig()).expect("a kubeconfig");
    let current = base.current_context.clone().expect("a current context");
    let context = base
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone())
        .expect("the current context");
    let dir = sluice_testkit::repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).expect("target/test-logs");
    let extra = dir.join(format!("{}.context.kubeconfig", ns.name));
    let file = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "plugin",
        "contexts": [{ "name": "plugin", "context": {
            "cluster": context.cluster, "user": context.user, "namespace": ns.name
        } }]
    });
    std::fs::write(&extra, file.to_string()).expect("writing a kubeconfig");
    let both = std::env::join_paths([extra.as_path(), sluice_testkit::kubeconfig().as_path()])
        .expect("a path list");
    let run_with = |args: &[&str]| {
        let mut cmd = kubectl_sluice(args);
        cmd.env("KUBECONFIG", &both);
        output(cmd)
    };

    // No -n: the rollout is found in the merged current context's namespace.
    let run = run_with(&["status", "app", "--watch=false"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .starts_with("Progressing - waiting for the controller"),
        "{run:?}"
    );
    // --context picks the other context, whose namespace is another one.
    let elsewhere = context.namespace.unwrap_or_else(|| "default".into());
    let run = run_with(&["status", "app", "--context", &current]).await;
    assert_eq!(run.code, Some(4), "not found is no Degraded: {run:?}");
    assert!(
        run.stderr.contains(&format!(
            "Rollout \"app\" not found in namespace \"{elsewhere}\""
        )),
        "{run:?}"
    );
    // -n wins over the context.
    let run = run_with(&[
        "status",
        "app",
        "--watch=false",
        "--context",
        &current,
        "-n",
        &ns.name,
    ])
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
}

#[tokio::test]
async fn no_cluster_reachable_is_said_with_the_server() {
    // The local cluster is not used, but `cluster up` is what links its kubectl.
    sluice_testkit::client().await;
    let dir = sluice_testkit::repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).expect("target/test-logs");
    let path: PathBuf = dir.join("plugin-unreachable.kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n\
         clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         contexts: [{name: gone, context: {cluster: gone, user: me, namespace: shop}}]\n\
         users: [{name: me, user: {token: x}}]\n",
    )
    .expect("writing a kubeconfig");
    let mut cmd = kubectl_sluice(&["get", "rollout", "app"]);
    cmd.env("KUBECONFIG", Path::new(&path));
    let run = output(cmd).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: no cluster reachable at https://127.0.0.1:9"),
        "{run:?}"
    );
    // -s over a kubeconfig whose cluster answers: the flag's server is the one tried, and named.
    let run = output(kubectl_sluice(&[
        "get",
        "rollout",
        "app",
        "-n",
        "shop",
        "-s",
        "https://127.0.0.1:9",
        "--request-timeout",
        "5s",
    ]))
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: no cluster reachable at https://127.0.0.1:9"),
        "{run:?}"
    );
}

#[tokio::test]
async fn watches_end_with_one_line_when_the_rollout_is_deleted_or_watching_is_forbidden() {
    let t = Plugin::new("plugin-watch-end").await;
    t.deploy(canary(1, json!([]))).await;
    // A version whose pods never become ready: Progressing for good, so `status --watch` waits.
    t.never_ready_version("example/app:2").await;
    t.wait(30, "the broken version progressing", |r| {
        observed(r) && status(r).phase == Some(RolloutPhase::Progressing)
    })
    .await;

    // A user who may read everything the commands show, but not watch rollouts.
    let getter = t
        .kubeconfig_for(
            "getter",
            json!([
                { "apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get", "list"] },
                { "apiGroups": ["argoproj.io"], "resources": ["analysisruns"], "verbs": ["list", "watch"] },
                { "apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list", "watch"] },
                { "apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"] },
            ]),
        )
        .await;
    for (args, code) in [
        (&["status", "app"][..], 4),
        (&["get", "rollout", "app", "--watch"][..], 1),
    ] {
        let mut cmd = t.command(args);
        cmd.env("KUBECONFIG", &getter);
        let started = Instant::now();
        let run = output(cmd).await;
        assert_eq!(run.code, Some(code), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with(&format!(
                "error: forbidden: you may not watch rollouts in namespace \"{}\"",
                t.ns.name
            )),
            "{args:?}: {run:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }

    // Both watches running, then the rollout is deleted: each ends at once with one line
    // (`status` exits 4, could not watch; `get` exits 1).
    let status_watch = tokio::spawn(output(t.command(&["status", "app", "--watch"])));
    let get_watch = tokio::spawn(output(t.command(&["get", "rollout", "app", "--watch"])));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !status_watch.is_finished() && !get_watch.is_finished(),
        "both wait on the progressing rollout"
    );
    t.rollouts
        .delete("app", &kube::api::DeleteParams::default())
        .await
        .expect("deleting the rollout");
    for (which, watch, code) in [("status", status_watch, 4), ("get", get_watch, 1)] {
        let run = tokio::time::timeout(Duration::from_secs(30), watch)
            .await
            .unwrap_or_else(|_| panic!("{which} --watch still running 30 s after the deletion"))
            .expect("the watch task");
        assert_eq!(run.code, Some(code), "{which}: {run:?}");
        assert_eq!(
            run.stderr, "error: the rollout \"app\" was deleted\n",
            "{which}: {run:?}"
        );
    }
}

#[tokio::test]
async fn terminate_ends_a_running_analysis_run_and_leaves_a_completed_one() {
    let t = Plugin::new("plugin-terminate").await;
    let runs = t.ns.api::<sluice_api::AnalysisRun>();
    // A run that never ends by itself: its metric calls a port nobody listens on, tolerating
    // many errors, measuring every second; made by `create analysisrun` from a template that
    // `create -f` created, the port an argument.
    let template = harness::file(
        &format!("{}.template.yaml", t.ns.name),
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: checks}\n\
         spec:\n  args: [{name: port}]\n  metrics:\n  - name: m\n    interval: 1s\n    \
         consecutiveErrorLimit: 1000\n    provider: {web: {url: 'http://127.0.0.1:{{args.port}}/'}}\n",
    );
    let out = t.ok(&["create", "-f", &template.to_string_lossy()]).await;
    assert_eq!(out, "analysistemplate.argoproj.io/checks created\n");
    let missing = t
        .sluice(&["create", "analysisrun", "--from", "checks"])
        .await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.contains("args.port was not resolved"),
        "{missing:?}"
    );
    let out = t
        .ok(&[
            "create",
            "analysisrun",
            "--from",
            "checks",
            "--name",
            "checks",
            "-a",
            "port=9",
        ])
        .await;
    assert_eq!(out, "analysisrun.argoproj.io/checks created\n");
    let created = runs.get("checks").await.expect("the run");
    assert_eq!(
        serde_json::to_value(&created.spec.args).expect("JSON"),
        json!([{ "name": "port", "value": "9" }])
    );
    let phase = |r: &sluice_api::AnalysisRun| r.status.as_ref().map(|s| s.phase);
    t.ns.wait_for(
        "checks",
        30,
        "the run measuring",
        |r: Option<&sluice_api::AnalysisRun>| {
            r.is_some_and(|r| phase(r) == Some(sluice_api::AnalysisPhase::Running))
        },
    )
    .await;

    let out = t.ok(&["terminate", "analysisrun", "checks"]).await;
    assert_eq!(out.trim(), "analysisrun \"checks\" terminated");
    let ended =
        t.ns.wait_for(
            "checks",
            30,
            "the run ended",
            |r: Option<&sluice_api::AnalysisRun>| {
                r.is_some_and(|r| phase(r).is_some_and(|p| p.is_completed()))
            },
        )
        .await;
    assert_eq!(ended.spec.terminate, Some(true));

    // Completed: said so, nothing written.
    let before = ended.resource_version();
    let out = t.ok(&["terminate", "ar", "checks"]).await;
    assert!(out.contains("already completed"), "{out}");
    let after = runs.get("checks").await.expect("the run");
    assert_eq!(after.resource_version(), before, "nothing changed");

    // A run that does not exist: a clear error, non-zero.
    let missing = t.sluice(&["terminate", "analysisrun", "nope"]).await;
    assert_ne!(missing.code, Some(0), "{missing:?}");
    assert!(missing.stderr.contains("nope"), "{missing:?}");
}

/// `get experiment`, `list experiments` and `terminate experiment` on an experiment the
/// controller runs: the tree shows each template's ReplicaSet and pods, the list its status, and
/// terminate ends it (with nothing to judge, Successful) and scales its pods away.
#[tokio::test]
async fn experiments_are_shown_listed_and_terminated() {
    let t = Plugin::new("plugin-experiment").await;
    let pods = |color: &str| {
        json!({
            "metadata": { "labels": { "app": "exp", "color": color } },
            "spec": { "containers": [{ "name": "app", "image": format!("example/app:{color}") }] },
        })
    };
    let experiment: sluice_api::Experiment = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Experiment",
        "metadata": { "name": "exp" },
        "spec": {
            "scaleDownDelaySeconds": 0,
            "templates": [
                { "name": "blue", "replicas": 2,
                  "selector": { "matchLabels": { "app": "exp", "color": "blue" } },
                  "template": pods("blue") },
                { "name": "green",
                  "selector": { "matchLabels": { "app": "exp", "color": "green" } },
                  "template": pods("green") },
            ],
        },
    }))
    .expect("an Experiment");
    let experiments = t.ns.api::<sluice_api::Experiment>();
    experiments
        .create(&PostParams::default(), &experiment)
        .await
        .expect("creating the experiment");
    let phase = |want: sluice_api::AnalysisPhase| {
        move |e: Option<&sluice_api::Experiment>| {
            e.and_then(|e| e.status.as_ref())
                .is_some_and(|s| s.phase == Some(want))
        }
    };
    t.ns.wait_for(
        "exp",
        90,
        "the experiment Running",
        phase(sluice_api::AnalysisPhase::Running),
    )
    .await;

    let tree = t.ok(&["get", "experiment", "exp", "--no-color"]).await;
    for shown in [
        "exp",
        "Running",
        "exp-blue",
        "exp-green",
        "example/app:blue",
    ] {
        assert!(tree.contains(shown), "{shown} not in:\n{tree}");
    }
    let list = t.ok(&["list", "experiments"]).await;
    let row = list
        .lines()
        .find(|l| l.starts_with("exp "))
        .unwrap_or_else(|| panic!("no row for exp in:\n{list}"));
    assert!(row.contains("Running"), "{list}");

    let out = t.ok(&["terminate", "experiment", "exp"]).await;
    assert_eq!(out.trim(), "experiment 'exp' terminated");
    t.ns.wait_for(
        "exp",
        60,
        "the experiment Successful",
        phase(sluice_api::AnalysisPhase::Successful),
    )
    .await;
    let sets = t.ns.api::<k8s_openapi::api::apps::v1::ReplicaSet>();
    sluice_testkit::wait(
        async {
            loop {
                let blue = sets.get("exp-blue").await?;
                if blue.spec.and_then(|s| s.replicas) == Some(0) {
                    return Ok::<_, kube::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
        30,
        "the experiment's pods scaled away",
    )
    .await;
    let tree = t.ok(&["get", "experiment", "exp", "--no-color"]).await;
    assert!(tree.contains("Successful"), "{tree}");
}
