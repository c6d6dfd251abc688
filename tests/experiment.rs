//! Experiments on the local cluster: the templates' ReplicaSets (and Services) come up, the
//! analyses run once every template is available with the templates' hashes as arguments, the
//! experiment ends as its duration or its analyses say, and its pods go away afterwards. A run
//! that fails fails the experiment at once; a terminated experiment is never a pass.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Service};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_api::{
    AnalysisPhase, AnalysisRun, AnalysisTemplate, Experiment, TemplateStatusCode,
    vocab::{TERMINATED_BY_CONTROLLER, TERMINATED_LABEL},
};
use sluice_testkit::{Controller, TestNamespace, install_crds, verdicts::Verdicts};

/// The template `web-check` the experiments' analyses name (see [`Verdicts::template`]).
async fn template(t: &TestNamespace, count: u32) {
    let template: AnalysisTemplate = serde_json::from_value(Verdicts::template("web-check", count))
        .expect("an AnalysisTemplate");
    t.api::<AnalysisTemplate>()
        .create(&PostParams::default(), &template)
        .await
        .expect("creating the template");
}

/// An experiment of two templates (`baseline` with 2 pods, `canary` with 1 and a Service), one
/// analysis calling `url` with the baseline's hash, and these extra spec fields.
fn experiment(name: &str, url: &str, extra: serde_json::Value) -> Experiment {
    let pods = |color: &str| {
        json!({
            "metadata": { "labels": { "app": "exp", "color": color } },
            "spec": { "containers": [{
                "name": "app",
                "image": format!("example/app:{color}"),
                "ports": [{ "name": "http", "containerPort": 8080 }],
            }] },
        })
    };
    let mut spec = json!({
        "scaleDownDelaySeconds": 2,
        "templates": [
            {
                "name": "baseline",
                "replicas": 2,
                "selector": { "matchLabels": { "app": "exp", "color": "blue" } },
                "template": pods("blue"),
            },
            {
                "name": "canary",
                "selector": { "matchLabels": { "app": "exp", "color": "green" } },
                "template": pods("green"),
                "service": {},
            },
        ],
        "analyses": [{
            "name": "check",
            "templateName": "web-check",
            "args": [
                { "name": "url", "value": url },
                { "name": "hash", "value": "{{templates.baseline.podTemplateHash}}" },
            ],
        }],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Experiment",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("an Experiment")
}

async fn create(t: &TestNamespace, experiment: &Experiment) {
    t.api::<Experiment>()
        .create(&PostParams::default(), experiment)
        .await
        .expect("creating the experiment");
}

/// Waits until the experiment's phase is `phase`.
async fn phase(t: &TestNamespace, name: &str, phase: AnalysisPhase, seconds: u64) -> Experiment {
    t.wait_for::<Experiment>(
        name,
        seconds,
        &format!("the experiment {phase:?}"),
        |e: Option<&Experiment>| {
            e.and_then(|e| e.status.as_ref())
                .is_some_and(|s| s.phase == Some(phase))
        },
    )
    .await
}

/// Waits until a ReplicaSet has `replicas` in its spec and as many pods.
async fn scaled(t: &TestNamespace, name: &str, replicas: i32, seconds: u64) -> ReplicaSet {
    t.wait_for::<ReplicaSet>(
        name,
        seconds,
        &format!("{replicas} pods"),
        |rs: Option<&ReplicaSet>| {
            rs.is_some_and(|rs| {
                rs.spec.as_ref().and_then(|s| s.replicas) == Some(replicas)
                    && rs.status.as_ref().map_or(0, |s| s.replicas) == replicas
            })
        },
    )
    .await
}

#[tokio::test]
async fn an_experiment_runs_its_templates_for_its_duration_then_scales_them_down() {
    let t = TestNamespace::new("experiment-duration").await;
    install_crds(&t.client).await;
    let _controller = Controller::start(&t.name).await;
    let verdicts = Verdicts::start().await;
    let url = &verdicts.url;
    template(&t, 1).await;
    create(
        &t,
        &experiment("exp", &format!("{url}/pass"), json!({ "duration": "6s" })),
    )
    .await;

    // Every template available: Running, since availableAt, with both ReplicaSets full.
    let running = phase(&t, "exp", AnalysisPhase::Running, 90).await;
    let status = running.status.expect("a status");
    assert!(status.available_at.is_some(), "{status:?}");
    let baseline = scaled(&t, "exp-baseline", 2, 30).await;
    scaled(&t, "exp-canary", 1, 30).await;
    let hash = |name: &str| {
        status
            .template_statuses
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.pod_template_hash.clone())
            .unwrap_or_else(|| panic!("no hash for {name}: {status:?}"))
    };
    let baseline_hash = hash("baseline");
    assert_eq!(
        baseline
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("rollouts-pod-template-hash")),
        Some(&baseline_hash),
        "the ReplicaSet carries the hash the status reports"
    );
    // The canary template's Service selects its pods, by their hash.
    let service = t
        .api::<Service>()
        .get("exp-canary")
        .await
        .expect("the canary template's Service");
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(
        selector.get("rollouts-pod-template-hash"),
        Some(&hash("canary")),
        "{selector:?}"
    );

    // The duration passes: Successful, the run passed with the baseline's hash as its argument.
    let done = phase(&t, "exp", AnalysisPhase::Successful, 60).await;
    let status = done.status.expect("a status");
    let runs = &status.analysis_runs;
    assert_eq!(runs.len(), 1, "{status:?}");
    assert_eq!(runs[0].phase, AnalysisPhase::Successful, "{status:?}");
    let asked = verdicts.paths();
    assert!(
        asked
            .iter()
            .any(|p| p == &format!("/pass?hash={baseline_hash}")),
        "the analysis was not given the baseline's hash: {asked:?}"
    );
    assert!(
        status
            .template_statuses
            .iter()
            .all(|s| s.status == Some(TemplateStatusCode::Successful)),
        "{status:?}"
    );
    // After scaleDownDelaySeconds, no pods and no Service are left.
    scaled(&t, "exp-baseline", 0, 60).await;
    scaled(&t, "exp-canary", 0, 30).await;
    sluice_testkit::wait(
        async {
            loop {
                let service = t.api::<Service>().get_opt("exp-canary").await?;
                if service.is_none() {
                    return Ok::<_, kube::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
        30,
        "the canary template's Service deleted",
    )
    .await;
}

#[tokio::test]
async fn a_failing_analysis_fails_the_experiment_and_a_terminated_one_is_never_a_pass() {
    let t = TestNamespace::new("experiment-verdicts").await;
    install_crds(&t.client).await;
    let _controller = Controller::start(&t.name).await;
    let verdicts = Verdicts::start().await;
    let url = &verdicts.url;
    template(&t, 600).await;

    // A run that fails ends a one-hour experiment at once.
    create(
        &t,
        &experiment(
            "failing",
            &format!("{url}/fail"),
            json!({ "duration": "1h" }),
        ),
    )
    .await;
    let failed = phase(&t, "failing", AnalysisPhase::Failed, 120).await;
    let message = failed
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("check"),
        "the message names the analysis: {message}"
    );
    scaled(&t, "failing-baseline", 0, 60).await;

    // A required analysis still measuring when the experiment is terminated: Inconclusive,
    // never Successful, and the run is stopped as the controller's doing.
    let required = experiment("stopped", &format!("{url}/pass"), json!({}));
    let mut required = serde_json::to_value(&required).expect("JSON");
    required["spec"]["analyses"][0]["requiredForCompletion"] = json!(true);
    let required: Experiment = serde_json::from_value(required).expect("an Experiment");
    create(&t, &required).await;
    phase(&t, "stopped", AnalysisPhase::Running, 90).await;
    t.wait_for::<AnalysisRun>(
        "stopped-check",
        60,
        "the run measuring",
        |r: Option<&AnalysisRun>| {
            r.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.phase == AnalysisPhase::Running)
        },
    )
    .await;
    t.api::<Experiment>()
        .patch(
            "stopped",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "terminate": true } })),
        )
        .await
        .expect("terminating the experiment");
    let stopped = phase(&t, "stopped", AnalysisPhase::Inconclusive, 60).await;
    let run = t
        .api::<AnalysisRun>()
        .get("stopped-check")
        .await
        .expect("the run");
    assert_eq!(
        run.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TERMINATED_LABEL))
            .map(String::as_str),
        Some(TERMINATED_BY_CONTROLLER),
        "{run:?}"
    );
    scaled(&t, "stopped-baseline", 0, 60).await;
    // It stays Inconclusive: nothing later turns it into a pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = t
        .api::<Experiment>()
        .get("stopped")
        .await
        .expect("the experiment");
    assert_eq!(
        later.status.and_then(|s| s.phase),
        stopped.status.and_then(|s| s.phase)
    );
}
