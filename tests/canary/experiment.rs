//! The canary `experiment` step, end to end: the rollout holds its weight while an Experiment of
//! the stable and canary templates runs beside it, goes on when the Experiment succeeds, and
//! aborts back to stable when its analysis fails. The experiment's pods never join the
//! rollout's Services.

use kube::{ResourceExt, api::PostParams};
use serde_json::json;
use sluice_api::{AnalysisPhase, AnalysisTemplate, Experiment, RolloutPhase};
use sluice_testkit::verdicts::Verdicts;

use super::setup::{Setup, paused_by_step, rollout, status};

/// A 4-pod canary whose second step is an experiment of a `baseline` (stable) and a `canary`
/// template, judged by a web metric on `path` with the baseline's hash.
fn with_experiment(url: &str, path: &str) -> serde_json::Value {
    rollout(
        4,
        json!([
            { "setWeight": 25 },
            { "experiment": {
                "duration": "4s",
                "templates": [
                    { "name": "baseline", "specRef": "stable",
                      "metadata": { "labels": { "role": "baseline" } } },
                    { "name": "canary", "specRef": "canary",
                      "metadata": { "labels": { "role": "experiment-canary" } } }
                ],
                "analyses": [{
                    "name": "check",
                    "templateName": "web-check",
                    "args": [
                        { "name": "url", "value": format!("{url}{path}") },
                        { "name": "hash", "value": "{{templates.baseline.podTemplateHash}}" }
                    ]
                }]
            } },
            { "setWeight": 50 }
        ]),
        json!({}),
    )
}

async fn setup(test: &str, path: &str) -> (Setup, Verdicts) {
    let t = Setup::new(test).await;
    let verdicts = Verdicts::start().await;
    let template: AnalysisTemplate =
        serde_json::from_value(Verdicts::template("web-check", 1)).expect("a template");
    t.ns.api::<AnalysisTemplate>()
        .create(&PostParams::default(), &template)
        .await
        .expect("creating the template");
    t.create(with_experiment(&verdicts.url, path)).await;
    t.healthy().await;
    (t, verdicts)
}

/// The rollout's Experiments.
async fn experiments(t: &Setup) -> Vec<Experiment> {
    t.ns.api::<Experiment>()
        .list(&Default::default())
        .await
        .expect("listing Experiments")
        .items
}

#[tokio::test]
async fn a_successful_experiment_lets_the_canary_go_on() {
    let (t, verdicts) = setup("canary-experiment-pass", "/pass").await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");
    t.set_image("example/app:2").await;

    // At the step: the experiment recorded, the canary still at its 25 %.
    let at_step = t
        .wait(60, "the experiment step running", |r| {
            status(r).current_step_index == Some(1)
                && status(r)
                    .canary
                    .is_some_and(|c| c.current_experiment.is_some())
        })
        .await;
    let name = status(&at_step)
        .canary
        .and_then(|c| c.current_experiment)
        .expect("the experiment's name");
    let canary = status(&at_step).current_pod_hash.expect("a canary hash");
    assert_eq!(
        t.replicas().await.get(&canary),
        Some(&1),
        "the canary holds the previous step's weight"
    );

    // The experiment runs both versions beside the rollout, under their own hashes, and the
    // Services still select only the rollout's own versions.
    let running =
        t.ns.wait_for::<Experiment>(
            &name,
            90,
            "the experiment Running",
            |e: Option<&Experiment>| {
                e.and_then(|e| e.status.as_ref())
                    .is_some_and(|s| s.phase == Some(AnalysisPhase::Running))
            },
        )
        .await;
    let hashes: Vec<String> = running
        .status
        .as_ref()
        .map(|s| {
            s.template_statuses
                .iter()
                .filter_map(|t| t.pod_template_hash.clone())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(hashes.len(), 2, "{running:?}");
    assert!(
        !hashes.contains(&stable) && !hashes.contains(&canary),
        "the experiment's pods have hashes of their own: {hashes:?}"
    );
    assert_eq!(t.selected("app-stable").await, Some(stable.clone()));
    assert_eq!(t.selected("app-canary").await, Some(canary.clone()));

    // It succeeds: the rollout goes on to the end, and the run was given the baseline's hash.
    let done = t
        .wait(120, "Healthy on the new version", |r| {
            let s = status(r);
            s.phase == Some(RolloutPhase::Healthy) && s.stable_rs == s.current_pod_hash
        })
        .await;
    assert!(
        status(&done)
            .canary
            .is_none_or(|c| c.current_experiment.is_none()),
        "{:?}",
        status(&done)
    );
    let experiment =
        t.ns.api::<Experiment>()
            .get(&name)
            .await
            .expect("the experiment");
    assert_eq!(
        experiment.status.and_then(|s| s.phase),
        Some(AnalysisPhase::Successful)
    );
    let baseline = running
        .status
        .as_ref()
        .and_then(|s| s.template_statuses.iter().find(|t| t.name == "baseline"))
        .and_then(|t| t.pod_template_hash.clone())
        .expect("the baseline's hash");
    assert!(
        verdicts.paths().contains(&format!("/pass?hash={baseline}")),
        "{:?}",
        verdicts.paths()
    );
    assert_eq!(
        experiments(&t).await.len(),
        1,
        "one experiment, created once"
    );
}

#[tokio::test]
async fn a_failed_experiment_aborts_the_rollout_back_to_stable() {
    let (t, _verdicts) = setup("canary-experiment-fail", "/fail").await;
    let stable = status(&t.healthy().await).stable_rs.expect("a stable hash");
    t.set_image("example/app:2").await;

    let aborted = t
        .wait(120, "the rollout aborted", |r| {
            status(r).abort == Some(true)
        })
        .await;
    let message = status(&aborted).message.unwrap_or_default();
    let experiment = experiments(&t).await.pop().expect("the experiment");
    assert!(
        message.contains(&experiment.name_any()),
        "the message names the experiment: {message}"
    );
    assert_eq!(
        experiment.status.and_then(|s| s.phase),
        Some(AnalysisPhase::Failed)
    );
    t.wait(60, "Degraded with every pod on stable", |r| {
        status(r).phase == Some(RolloutPhase::Degraded)
    })
    .await;
    sluice_testkit::wait(
        async {
            loop {
                let replicas = t.replicas().await;
                if replicas.get(&stable) == Some(&4)
                    && replicas
                        .iter()
                        .filter(|(hash, _)| **hash != stable)
                        .all(|(_, n)| *n == 0)
                {
                    return Ok::<_, ()>(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        },
        90,
        "stable back to 4 pods, everything else at 0",
    )
    .await;
}

#[tokio::test]
async fn an_experiment_name_held_by_another_owner_is_left_alone_and_the_next_name_is_used() {
    let t = Setup::new("canary-experiment-collision").await;
    t.create(rollout(
        2,
        json!([
            { "setWeight": 50 },
            { "pause": {} },
            { "experiment": {
                "duration": "2s",
                "templates": [{ "name": "canary", "specRef": "canary" }]
            } }
        ]),
        json!({}),
    ))
    .await;
    t.healthy().await;
    t.set_image("example/app:2").await;
    let paused = t
        .wait(60, "paused before the experiment step", paused_by_step)
        .await;
    let hash = status(&paused).current_pod_hash.expect("the canary's hash");
    let revision = t
        .sets()
        .await
        .into_iter()
        .find(|s| s.labels().get("rollouts-pod-template-hash") == Some(&hash))
        .and_then(|s| s.annotations().get("rollout.argoproj.io/revision").cloned())
        .expect("the canary's revision");
    // The name the step's Experiment would take, held by an Experiment of someone else (another
    // controller instance's, so this one leaves it alone).
    let base = format!("app-{hash}-{revision}-2");
    let foreign: Experiment = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {
            "name": base,
            "labels": { "argo-rollouts.argoproj.io/controller-instance-id": "someone-else" }
        },
        "spec": { "templates": [] }
    }))
    .expect("an Experiment");
    t.ns.api::<Experiment>()
        .create(&PostParams::default(), &foreign)
        .await
        .expect("creating the foreign Experiment");
    t.patch_status(json!({ "pauseConditions": null })).await;

    let done = t
        .wait(120, "Healthy on the new version", |r| {
            let s = status(r);
            s.phase == Some(RolloutPhase::Healthy) && s.stable_rs == s.current_pod_hash
        })
        .await;
    assert_eq!(status(&done).current_pod_hash, Some(hash));
    let names: Vec<String> = experiments(&t).await.iter().map(|e| e.name_any()).collect();
    assert_eq!(names, [base.clone(), format!("{base}.2")]);
    let left =
        t.ns.api::<Experiment>()
            .get(&base)
            .await
            .expect("the foreign one");
    assert!(
        left.owner_references().is_empty(),
        "not taken over: {left:?}"
    );
    assert!(
        left.status.is_none(),
        "not run by this controller: {left:?}"
    );
    let ours =
        t.ns.api::<Experiment>()
            .get(&format!("{base}.2"))
            .await
            .expect("the rollout's experiment");
    assert_eq!(
        ours.status.and_then(|s| s.phase),
        Some(AnalysisPhase::Successful)
    );
}
