//! Analysis deciding rollouts on the local cluster, against a real Prometheus (Debian's) that
//! scrapes an exporter the test sets: a canary step's run passes and the rollout completes, a
//! failing background run aborts it, blue/green's pre-promotion run gates the switch and a
//! failing post-promotion run switches the active Service back, a missing template degrades the
//! rollout at once and it goes on when the template appears, and finished runs beyond the
//! history limit are deleted.
#[allow(dead_code)] // the canary tests use the rest of it
#[path = "canary/setup.rs"]
mod setup;

use std::{collections::BTreeMap, time::Duration};

use kube::{
    ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::{Value, json};
use setup::{Setup, blue_green_rollout, condition, create_service, rollout, status};
use sluice_api::{
    AnalysisPhase, AnalysisRun, AnalysisTemplate, PauseReason, RolloutConditionType, RolloutPhase,
};
use sluice_testkit::prometheus::Prometheus;

/// A Prometheus serving a success rate of `ok`% of requests.
async fn prometheus(ok: f64) -> Prometheus {
    let prometheus = Prometheus::start().await;
    set_rate(&prometheus, ok).await;
    prometheus
}

async fn set_rate(prometheus: &Prometheus, ok: f64) {
    prometheus
        .exporter
        .set("http_requests_total{code=\"200\"}", ok);
    prometheus
        .exporter
        .set("http_requests_total{code=\"500\"}", 100.0 - ok);
    let expected = ok / 100.0;
    prometheus
        .wait_for(SUCCESS_RATE, 30, move |v| v == [expected])
        .await;
}

const SUCCESS_RATE: &str = "sum(http_requests_total{code=\"200\"}) / sum(http_requests_total)";

/// The AnalysisTemplate `success-rate`: two measurements a second apart, each must be ≥ 0.95.
async fn template(t: &Setup, prometheus: &Prometheus) {
    template_of(
        t,
        prometheus,
        "success-rate",
        &SUCCESS_RATE.replace("code=", "service!=\"{{args.service}}\",code="),
    )
    .await;
}

/// An AnalysisTemplate `name` whose metric runs `query` twice, a second apart; each result must
/// be ≥ 0.95.
async fn template_of(t: &Setup, prometheus: &Prometheus, name: &str, query: &str) {
    template_with(t, prometheus, name, query, json!({})).await;
}

/// As [`template_of`], with `extra` fields of the metric (conditions, limits, count).
async fn template_with(t: &Setup, prometheus: &Prometheus, name: &str, query: &str, extra: Value) {
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": { "name": name },
        "spec": {
            "args": [{ "name": "service" }],
            "metrics": [{
                "name": "success-rate",
                "interval": "1s",
                "count": 2,
                "successCondition": "result[0] >= 0.95",
                "provider": { "prometheus": {
                    "address": prometheus.url(),
                    "query": query
                } }
            }]
        }
    }))
    .expect("a template");
    let mut template = template;
    if let (Some(metric), Some(extra)) = (template.spec.metrics.first_mut(), extra.as_object()) {
        let mut json = serde_json::to_value(&*metric).expect("a metric");
        if let Some(fields) = json.as_object_mut() {
            fields.extend(extra.clone());
        }
        *metric = serde_json::from_value(json).expect("a metric");
    }
    t.ns.api::<AnalysisTemplate>()
        .create(&PostParams::default(), &template)
        .await
        .expect("creating the AnalysisTemplate");
}

fn analysis(template: &str) -> Value {
    json!({
        "templates": [{ "templateName": template }],
        "args": [{ "name": "service", "value": "unused" }]
    })
}

async fn runs(t: &Setup) -> Vec<AnalysisRun> {
    t.ns.api::<AnalysisRun>()
        .list(&ListParams::default())
        .await
        .expect("listing AnalysisRuns")
        .items
}

#[tokio::test]
async fn a_passing_step_analysis_lets_the_canary_complete() {
    let prometheus = prometheus(99.0).await;
    let t = Setup::new("analysis-step").await;
    template(&t, &prometheus).await;
    // The step names a template that only includes `success-rate` (Argo's composition): the
    // run measures the included metric.
    let composed: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": { "name": "composed" },
        "spec": { "templates": [{ "templateName": "success-rate" }], "metrics": [] }
    }))
    .expect("a template");
    t.ns.api::<AnalysisTemplate>()
        .create(&PostParams::default(), &composed)
        .await
        .expect("creating the composed template");
    let steps = json!([{ "setWeight": 50 }, { "analysis": analysis("composed") }]);
    t.create(rollout(2, steps, json!({}))).await;
    let first = status(&t.healthy().await).stable_rs;
    t.set_image("example/app:2").await;
    let done = t
        .wait(60, "the canary promoted after its analysis", |r| {
            status(r).phase == Some(RolloutPhase::Healthy)
                && status(r).stable_rs == status(r).current_pod_hash
                && status(r).stable_rs != first
        })
        .await;
    let hash = status(&done).current_pod_hash.expect("a hash");
    let recorded = status(&done)
        .canary
        .and_then(|c| c.current_step_analysis_run_status)
        .expect("the step's run in the status");
    assert_eq!(recorded.status, Some(AnalysisPhase::Successful));
    let run =
        t.ns.api::<AnalysisRun>()
            .get(&recorded.name)
            .await
            .expect("the run");
    assert!(
        run.name_any().starts_with(&format!("app-{hash}-")),
        "{}",
        run.name_any()
    );
    assert_eq!(
        run.labels().get("rollout-type").map(String::as_str),
        Some("Step")
    );
    assert_eq!(
        run.labels().get("step-index").map(String::as_str),
        Some("1")
    );
    assert_eq!(run.owner_references()[0].kind, "Rollout");
    let names: Vec<&str> = run.spec.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["success-rate"],
        "the included template's metric ran"
    );
    let result = &run.status.expect("a status").metric_results[0];
    assert_eq!(result.successful, Some(2), "{result:?}");
    assert!(
        result.measurements[0]
            .value
            .as_deref()
            .is_some_and(|v| v.contains("0.99")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_failing_background_analysis_aborts_the_canary() {
    let prometheus = prometheus(99.0).await;
    let t = Setup::new("analysis-background").await;
    template(&t, &prometheus).await;
    let steps = json!([{ "setWeight": 50 }, { "pause": {} }]);
    let background = json!({ "analysis": analysis("success-rate") });
    t.create(rollout(2, steps, background)).await;
    let stable = status(&t.healthy().await).stable_rs.expect("stable");
    set_rate(&prometheus, 50.0).await;
    t.set_image("example/app:2").await;
    let aborted = t
        .wait(60, "the rollout aborted by its analysis", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
        })
        .await;
    let message = status(&aborted).message.unwrap_or_default();
    assert!(
        message.contains("RolloutAborted") && message.contains("Failed"),
        "{message}"
    );
    let background = status(&aborted)
        .canary
        .and_then(|c| c.current_background_analysis_run_status)
        .expect("the background run");
    assert_eq!(background.status, Some(AnalysisPhase::Failed));
    // Everything back on the stable version.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let replicas = t.replicas().await;
        if replicas.get(&stable) == Some(&2) && replicas.values().sum::<i32>() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{replicas:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        t.selected("app-canary").await.as_deref(),
        Some(stable.as_str())
    );
}

#[tokio::test]
async fn a_missing_template_degrades_at_once_and_the_rollout_goes_on_when_it_appears() {
    let prometheus = prometheus(99.0).await;
    let t = Setup::new("analysis-missing").await;
    let steps = json!([{ "setWeight": 50 }, { "analysis": analysis("success-rate") }]);
    t.create(rollout(2, steps, json!({}))).await;

    // Degraded at once, the template and the field that names it in the message, an
    // InvalidSpec condition, and nothing created.
    let invalid = t
        .wait(30, "Degraded for the missing template", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
        })
        .await;
    let message = status(&invalid).message.unwrap_or_default();
    assert!(
        message.contains(
            "spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate \"success-rate\" not found"
        ),
        "{message}"
    );
    assert!(
        condition(&invalid, RolloutConditionType::InvalidSpec).is_some(),
        "{:?}",
        status(&invalid).conditions
    );
    assert!(t.replicas().await.is_empty(), "nothing is deployed");

    // The template appears: the rollout deploys without anything else changing.
    template(&t, &prometheus).await;
    let healthy = t.healthy().await;
    assert!(condition(&healthy, RolloutConditionType::InvalidSpec).is_none());
    let stable = status(&healthy).stable_rs.expect("a stable set");

    // The template is deleted, then the image updated: Degraded again, the stable set keeps
    // both pods, no canary and no run.
    t.ns.api::<AnalysisTemplate>()
        .delete("success-rate", &DeleteParams::default())
        .await
        .expect("deleting the template");
    t.set_image("example/app:2").await;
    t.wait(30, "Degraded for the deleted template", |r| {
        status(r).phase == Some(RolloutPhase::Degraded)
            && status(r).message.unwrap_or_default().contains("not found")
    })
    .await;
    assert_eq!(
        t.replicas().await,
        BTreeMap::from([(stable.clone(), 2)]),
        "the stable set is untouched"
    );
    assert!(runs(&t).await.is_empty());

    // Back again: the update goes on, through its analysis, to the new version.
    template(&t, &prometheus).await;
    t.wait(60, "the update completed after its analysis", |r| {
        status(r).phase == Some(RolloutPhase::Healthy)
            && status(r).stable_rs == status(r).current_pod_hash
            && status(r).stable_rs.as_deref() != Some(stable.as_str())
    })
    .await;
    let runs = runs(&t).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].status.as_ref().map(|s| s.phase),
        Some(AnalysisPhase::Successful)
    );
}

#[tokio::test]
async fn a_template_that_cannot_run_degrades_the_rollout_before_any_pod_until_it_is_mended() {
    let t = Setup::new("analysis-unrunnable").await;
    let templates = t.ns.api::<AnalysisTemplate>();
    let unsupported: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": { "name": "checks" },
        "spec": {
            "args": [{ "name": "service" }],
            "metrics": [{ "name": "m", "provider": { "plugin": { "argoproj-labs/sample": {} } } }]
        }
    }))
    .expect("a template");
    templates
        .create(&PostParams::default(), &unsupported)
        .await
        .expect("creating the template");
    // The rollout gives no `service`: both problems are named, nothing is deployed.
    let steps = json!([{ "setWeight": 50 }, { "analysis": {
        "templates": [{ "templateName": "checks" }]
    } }]);
    t.create(rollout(2, steps, json!({}))).await;
    let invalid = t
        .wait(30, "Degraded for the template", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
        })
        .await;
    let message = status(&invalid).message.unwrap_or_default();
    assert!(
        message.contains(
            "AnalysisTemplate \"checks\": metrics[0] \"m\": the plugin provider is not supported"
        ) && message.contains("args.service was not resolved"),
        "{message}"
    );
    assert!(t.replicas().await.is_empty(), "nothing is deployed");

    // The template is mended (a web metric) and the rollout gives the argument: deployed.
    let mut mended = templates.get("checks").await.expect("the template");
    mended.spec.metrics = vec![
        serde_json::from_value(json!({ "name": "m", "provider": { "web": {
            "url": "http://127.0.0.1:9/{{args.service}}"
        } } }))
        .expect("a metric"),
    ];
    templates
        .replace("checks", &PostParams::default(), &mended)
        .await
        .expect("mending the template");
    let still = t
        .wait(30, "the remaining problem alone", |r| {
            let message = status(r).message.unwrap_or_default();
            message.contains("args.service") && !message.contains("plugin")
        })
        .await;
    assert_eq!(status(&still).phase, Some(RolloutPhase::Degraded));
    t.patch_spec(json!({ "spec": { "strategy": { "canary": { "steps": [
        { "setWeight": 50 },
        { "analysis": {
            "templates": [{ "templateName": "checks" }],
            "args": [{ "name": "service", "value": "web" }]
        } }
    ] } } } }))
    .await;
    let healthy = t.healthy().await;
    assert!(condition(&healthy, RolloutConditionType::InvalidSpec).is_none());
}

#[tokio::test]
async fn blue_green_pre_promotion_gates_the_switch_and_a_failed_post_promotion_switches_back() {
    let prometheus = prometheus(99.0).await;
    let t = Setup::new("analysis-bluegreen").await;
    for name in ["app-active", "app-preview"] {
        create_service(&t.ns, name).await;
    }
    template(&t, &prometheus).await;
    // After the switch, the release's own health (set by the test) decides.
    prometheus.exporter.set("release_health", 1.0);
    prometheus
        .wait_for("release_health", 30, |v| v == [1.0])
        .await;
    template_of(&t, &prometheus, "release-health", "release_health").await;
    t.create(blue_green_rollout(
        2,
        json!({
            "prePromotionAnalysis": analysis("success-rate"),
            "postPromotionAnalysis": analysis("release-health"),
            "scaleDownDelaySeconds": 2
        }),
    ))
    .await;
    let old = status(&t.healthy().await).stable_rs.expect("stable");

    // A good version: pre-promotion passes, the switch happens, post-promotion passes.
    t.set_image("example/app:2").await;
    let promoted = t
        .wait(60, "the promotion after both analyses", |r| {
            status(r).phase == Some(RolloutPhase::Healthy)
                && status(r).stable_rs.as_ref() != Some(&old)
        })
        .await;
    let good = status(&promoted).stable_rs.expect("stable");
    let bg = status(&promoted).blue_green.expect("blue/green status");
    assert_eq!(
        bg.pre_promotion_analysis_run_status.and_then(|r| r.status),
        Some(AnalysisPhase::Successful)
    );
    assert_eq!(
        bg.post_promotion_analysis_run_status.and_then(|r| r.status),
        Some(AnalysisPhase::Successful)
    );

    // A bad version found out after the switch: the pre-promotion analysis passes, the active
    // Service switches, the post-promotion one fails, and the active Service goes back.
    prometheus.exporter.set("release_health", 0.0);
    prometheus
        .wait_for("release_health", 30, |v| v == [0.0])
        .await;
    t.set_image("example/app:3").await;
    let aborted = t
        .wait(
            60,
            "the rollout aborted by its post-promotion analysis",
            |r| status(r).phase == Some(RolloutPhase::Degraded),
        )
        .await;
    assert_eq!(
        status(&aborted)
            .blue_green
            .and_then(|b| b.post_promotion_analysis_run_status)
            .and_then(|r| r.status),
        Some(AnalysisPhase::Failed)
    );
    assert_eq!(
        t.selected("app-active").await.as_deref(),
        Some(good.as_str())
    );
    assert_eq!(status(&aborted).stable_rs.as_deref(), Some(good.as_str()));
}

#[tokio::test]
async fn an_inconclusive_analysis_pauses_until_promoted() {
    let prometheus = prometheus(80.0).await;
    let t = Setup::new("analysis-inconclusive").await;
    // 0.8 is neither a success (≥ 0.95) nor a failure (< 0.5).
    let extra = json!({ "failureCondition": "result[0] < 0.5", "count": 1 });
    template_with(&t, &prometheus, "success-rate", SUCCESS_RATE, extra).await;
    let steps = json!([{ "setWeight": 50 }, { "analysis": analysis("success-rate") }]);
    t.create(rollout(2, steps, json!({}))).await;
    let first = status(&t.healthy().await).stable_rs;
    t.set_image("example/app:2").await;
    let paused = t
        .wait(60, "the rollout paused by an inconclusive run", |r| {
            status(r)
                .pause_conditions
                .iter()
                .any(|c| c.reason == PauseReason::InconclusiveAnalysis)
        })
        .await;
    assert_eq!(status(&paused).phase, Some(RolloutPhase::Paused));
    assert_eq!(
        status(&paused).stable_rs,
        first,
        "promoted without evidence"
    );
    t.patch_status(json!({ "pauseConditions": null })).await;
    t.wait(60, "the canary promoted by a person", |r| {
        status(r).phase == Some(RolloutPhase::Healthy) && status(r).stable_rs != first
    })
    .await;
}

#[tokio::test]
async fn prometheus_gone_mid_run_is_an_error_and_an_abort_never_a_promotion() {
    let mut prometheus = prometheus(99.0).await;
    let t = Setup::new("analysis-gone").await;
    let extra = json!({ "count": 30, "consecutiveErrorLimit": 0 });
    template_with(&t, &prometheus, "success-rate", SUCCESS_RATE, extra).await;
    let steps = json!([{ "setWeight": 50 }, { "analysis": analysis("success-rate") }]);
    t.create(rollout(2, steps, json!({}))).await;
    let first = status(&t.healthy().await).stable_rs;
    t.set_image("example/app:2").await;
    t.wait(60, "the analysis measuring", |r| {
        status(r)
            .canary
            .and_then(|c| c.current_step_analysis_run_status)
            .is_some_and(|s| s.status == Some(AnalysisPhase::Running))
    })
    .await;
    prometheus.stop();
    let aborted = t
        .wait(60, "the rollout aborted", |r| {
            status(r).phase == Some(RolloutPhase::Degraded)
        })
        .await;
    assert_eq!(status(&aborted).stable_rs, first);
    assert_eq!(
        status(&aborted)
            .canary
            .and_then(|c| c.current_step_analysis_run_status)
            .and_then(|s| s.status),
        Some(AnalysisPhase::Error)
    );
}

/// `spec.paused` (what `kubectl sluice pause` and Argo CD's pause action write) during a step's
/// analysis: the run keeps measuring instead of being terminated (a terminated run reads
/// Successful, which once let the unanalysed version through on resume), and a failure while
/// paused aborts the rollout.
#[tokio::test]
async fn a_pause_during_a_step_analysis_keeps_its_run_and_a_failure_still_aborts() {
    let prometheus = prometheus(99.0).await;
    let t = Setup::new("analysis-paused").await;
    template_with(
        &t,
        &prometheus,
        "success-rate",
        SUCCESS_RATE,
        json!({ "count": 60, "failureLimit": 0 }),
    )
    .await;
    let steps = json!([{ "setWeight": 50 }, { "analysis": analysis("success-rate") }]);
    t.create(rollout(2, steps, json!({}))).await;
    t.healthy().await;
    t.set_image("example/app:2").await;
    let analysing = t
        .wait(60, "the step's run measuring", |r| {
            status(r)
                .canary
                .and_then(|c| c.current_step_analysis_run_status)
                .is_some_and(|s| s.status == Some(AnalysisPhase::Running))
        })
        .await;
    let name = status(&analysing)
        .canary
        .and_then(|c| c.current_step_analysis_run_status)
        .expect("the step's run")
        .name;
    t.patch_spec(json!({ "spec": { "paused": true } })).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let run = t.ns.api::<AnalysisRun>().get(&name).await.expect("the run");
    assert!(
        !run.spec.is_terminated(),
        "a pause does not terminate the step's run"
    );
    assert_eq!(
        run.status.as_ref().map(|s| s.phase),
        Some(AnalysisPhase::Running)
    );

    set_rate(&prometheus, 50.0).await;
    let aborted = t
        .wait(
            60,
            "the rollout aborted by its analysis while paused",
            |r| status(r).phase == Some(RolloutPhase::Degraded),
        )
        .await;
    let recorded = status(&aborted)
        .canary
        .and_then(|c| c.current_step_analysis_run_status)
        .expect("the step's run");
    assert_eq!(recorded.name, name);
    assert_eq!(recorded.status, Some(AnalysisPhase::Failed));
}
