//! Tests of what the writing commands decide to write, and of `lint`, without a cluster: the
//! patches must be the ones Argo CD's resource actions and the Argo Rollouts plugin make.

use serde_json::json;
use sluice_api::{Rollout, model::pod_template_hash, vocab::POD_TEMPLATE_HASH_LABEL};

use super::{
    fixtures::*,
    lint::lint,
    promote::{Promotion, promotion},
    set::image_patch,
    skip_step::skip_patch,
    undo::{Undo, undo, without_defaults},
};

/// The patches and line of a promotion that writes.
fn writes(promotion: Promotion) -> (Option<serde_json::Value>, Option<serde_json::Value>, String) {
    match promotion {
        Promotion::Write { status, spec, said } => (status, spec, said),
        Promotion::Nothing(why) => panic!("expected a write, got nothing: {why}"),
    }
}

#[test]
fn promote_clears_the_controllers_pause_on_the_status() {
    let (status, spec, said) = writes(promotion(&canary_paused().rollout, false));
    assert_eq!(
        status,
        Some(json!({ "status": { "pauseConditions": null } }))
    );
    assert_eq!(spec, None);
    assert_eq!(
        said,
        "rollout \"shop\" promoted (was paused by CanaryPauseStep)"
    );
}

#[test]
fn promote_unpauses_a_person_s_pause_and_moves_the_canary_on_as_argo_does() {
    // Paused by spec.paused only, mid-step: Argo lifts spec.paused and moves to the next step.
    let mut rollout = canary_progressing().rollout;
    rollout.spec.paused = Some(true);
    let (status, spec, said) = writes(promotion(&rollout, false));
    assert_eq!(spec, Some(json!({ "spec": { "paused": false } })));
    assert_eq!(
        status,
        Some(json!({ "status": { "pauseConditions": null, "currentStepIndex": 3 } }))
    );
    assert_eq!(
        said,
        "rollout \"shop\" promoted (was paused by spec.paused): now at step 3/4"
    );
    // All steps done: only the spec.
    let mut done = canary_healthy().rollout;
    done.spec.paused = Some(true);
    let (status, spec, _) = writes(promotion(&done, false));
    assert_eq!(
        (status, spec),
        (None, Some(json!({ "spec": { "paused": false } })))
    );
}

#[test]
fn promote_of_a_canary_that_is_not_paused_moves_it_to_the_next_step() {
    let (status, spec, said) = writes(promotion(&canary_progressing().rollout, false));
    assert_eq!(
        status,
        Some(json!({ "status": { "pauseConditions": null, "currentStepIndex": 3 } }))
    );
    assert_eq!(spec, None);
    assert_eq!(
        said,
        "rollout \"shop\" promoted: step 2 skipped, now at step 3/4"
    );
    // A promote the controller has not read yet leaves its marker: it goes with the skip, or the
    // next pause would read as promoted too.
    let mut pending = canary_paused().rollout;
    if let Some(s) = pending.status.as_mut() {
        s.pause_conditions.clear();
    }
    let (status, _, _) = writes(promotion(&pending, false));
    assert_eq!(
        status,
        Some(json!({ "status": {
            "pauseConditions": null, "currentStepIndex": 2, "controllerPause": null
        } }))
    );
}

#[test]
fn promote_with_nothing_to_move_writes_nothing_and_says_so() {
    for rollout in [canary_healthy().rollout, blue_green_promoted().rollout] {
        let Promotion::Nothing(why) = promotion(&rollout, false) else {
            panic!("nothing to promote in {:?}", rollout.metadata.name);
        };
        assert!(
            why.ends_with("is not paused and has no step left to move to; nothing to promote"),
            "{why}"
        );
    }
}

#[test]
fn promote_of_an_inconclusive_step_analysis_passes_the_step_as_argo_does() {
    let mut rollout = canary_paused().rollout;
    let status = rollout.status.as_mut().expect("a status");
    status.pause_conditions[0].reason = sluice_api::PauseReason::InconclusiveAnalysis;
    status
        .canary
        .get_or_insert_default()
        .current_step_analysis_run_status = Some(from(json!({
        "name": "shop-7d9f8c6b5-2-1", "status": "Inconclusive"
    })));
    let (status, spec, said) = writes(promotion(&rollout, false));
    assert_eq!(
        status,
        Some(json!({ "status": {
            "pauseConditions": null, "controllerPause": false, "currentStepIndex": 2
        } }))
    );
    assert_eq!(spec, None);
    assert_eq!(
        said,
        "rollout \"shop\" promoted (was paused by InconclusiveAnalysis): the inconclusive analysis step passes, now at step 2/4"
    );
}

#[test]
fn promote_full_sets_promote_full_unless_already_stable_and_lifts_spec_paused() {
    let (status, spec, _) = writes(promotion(&canary_progressing().rollout, true));
    assert_eq!(status, Some(json!({ "status": { "promoteFull": true } })));
    assert_eq!(spec, None);
    let mut paused = canary_paused().rollout;
    paused.spec.paused = Some(true);
    let (status, spec, said) = writes(promotion(&paused, true));
    assert_eq!(status, Some(json!({ "status": { "promoteFull": true } })));
    assert_eq!(spec, Some(json!({ "spec": { "paused": false } })));
    assert!(said.ends_with("; spec.paused lifted"), "{said}");
    assert!(matches!(
        promotion(&canary_healthy().rollout, true),
        Promotion::Nothing(_)
    ));
}

#[test]
fn skip_step_moves_one_step_on_and_clears_the_pause_like_argo_cd() {
    let (patch, next) = skip_patch(&canary_paused().rollout).expect("a step to skip");
    assert_eq!(next, 2);
    // The controller's pause marker goes too, or a pause the rollout lands on reads as promoted.
    assert_eq!(
        patch,
        json!({ "status": { "currentStepIndex": 2, "pauseConditions": null, "controllerPause": null } })
    );
    let (patch, _) = skip_patch(&canary_progressing().rollout).expect("a step to skip");
    assert_eq!(patch, json!({ "status": { "currentStepIndex": 3 } }));
    assert!(
        skip_patch(&canary_healthy().rollout).is_err(),
        "all steps run"
    );
    assert!(
        skip_patch(&blue_green_preview().rollout).is_err(),
        "no steps"
    );
}

#[test]
fn set_image_tests_the_container_name_before_changing_its_image() {
    let rollout = canary_paused().rollout;
    assert_eq!(
        image_patch(&rollout, "shop", "registry.example/shop:2.2").expect("a patch"),
        json!([
            { "op": "test", "path": "/spec/template/spec/containers/0/name", "value": "shop" },
            { "op": "add", "path": "/spec/template/spec/containers/0/image",
              "value": "registry.example/shop:2.2" }
        ])
    );
    let error = image_patch(&rollout, "web", "x:1").expect_err("no such container");
    assert_eq!(
        error.to_string(),
        "the rollout has no container named \"web\" (its containers: shop)"
    );
}

#[test]
fn set_image_reaches_init_and_ephemeral_containers_and_star_sets_every_one() {
    let mut rollout = canary_paused().rollout;
    if let Some(spec) = rollout.spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
        spec.init_containers = Some(vec![from(json!({ "name": "migrate", "image": "m:1" }))]);
        spec.ephemeral_containers = Some(vec![from(json!({ "name": "debug", "image": "d:1" }))]);
    }
    assert_eq!(
        image_patch(&rollout, "debug", "d:2").expect("a patch"),
        json!([
            { "op": "test", "path": "/spec/template/spec/ephemeralContainers/0/name", "value": "debug" },
            { "op": "add", "path": "/spec/template/spec/ephemeralContainers/0/image", "value": "d:2" }
        ])
    );
    let every = image_patch(&rollout, "*", "x:9").expect("a patch");
    let paths: Vec<&str> = every
        .as_array()
        .into_iter()
        .flatten()
        .filter(|op| op["op"] == "add")
        .filter_map(|op| op["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/spec/template/spec/initContainers/0/image",
            "/spec/template/spec/containers/0/image",
            "/spec/template/spec/ephemeralContainers/0/image",
        ]
    );
    let error = image_patch(&rollout, "web", "x:1").expect_err("no such container");
    assert_eq!(
        error.to_string(),
        "the rollout has no container named \"web\" (its containers: migrate, shop, debug)"
    );
}

/// The rollout of `canary_healthy` with ReplicaSets whose templates the API server defaulted,
/// named by the hash of the rollout template they were made from.
fn history() -> (Rollout, Vec<k8s_openapi::api::apps::v1::ReplicaSet>) {
    let objects = canary_healthy();
    let mut sets = objects.replica_sets;
    for rs in &mut sets {
        let image = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref()?.containers[0].image.clone());
        let original: k8s_openapi::api::core::v1::PodTemplateSpec =
            from(template(&image.unwrap_or_default()));
        let hash = pod_template_hash(&original, None);
        let mut defaulted = from::<k8s_openapi::api::core::v1::PodTemplateSpec>(json!({
            "metadata": { "labels": { "app": "shop", POD_TEMPLATE_HASH_LABEL: hash } },
            "spec": {
                "containers": [{
                    "name": "shop", "image": original.spec.as_ref().map(|s| s.containers[0].image.clone()),
                    "imagePullPolicy": "IfNotPresent", "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                "schedulerName": "default-scheduler", "securityContext": {},
                "terminationGracePeriodSeconds": 30
            }
        }));
        if let Some(spec) = rs.spec.as_mut() {
            spec.template = Some(std::mem::take(&mut defaulted));
        }
        rs.metadata
            .labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
    }
    (objects.rollout, sets)
}

#[test]
fn undo_restores_the_previous_revisions_template_as_it_was_written() {
    let (rollout, sets) = history();
    let Undo::Restore {
        revision,
        template: restored,
    } = undo(&rollout, &sets, None).expect("a previous revision")
    else {
        panic!("expected a restore");
    };
    assert_eq!(revision, 1);
    // The API server's defaults are gone again and so is the hash label: the controller sees
    // the very template of revision 1.
    assert_eq!(*restored, from(template("registry.example/shop:2.0")));
    assert_eq!(
        undo(&rollout, &sets, Some(2)).expect("revision 2"),
        Undo::AlreadyThere(2)
    );
    let error = undo(&rollout, &sets, Some(7)).expect_err("no revision 7");
    assert_eq!(
        error.to_string(),
        "revision 7 is not in the rollout's history (revisions: 2, 1)"
    );
}

#[test]
fn defaults_a_person_wrote_are_kept_when_the_hash_says_so() {
    let written: k8s_openapi::api::core::v1::PodTemplateSpec = from(json!({
        "spec": { "containers": [{ "name": "a", "image": "x:1", "imagePullPolicy": "IfNotPresent" }] }
    }));
    let stripped = without_defaults(&written).expect("a template");
    assert_ne!(stripped, written);
    assert_ne!(
        pod_template_hash(&stripped, None),
        pod_template_hash(&written, None),
        "undo compares hashes, so it keeps `written` for a ReplicaSet made from it"
    );
}

#[test]
fn lint_reads_every_document_and_names_each_field() {
    let text = r#"
apiVersion: v1
kind: Service
metadata: { name: shop }
spec: { ports: [{ port: 80 }] }
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: { name: good }
spec:
  selector: { matchLabels: { app: good } }
  template:
    metadata: { labels: { app: good } }
    spec: { containers: [{ name: app, image: app:1 }] }
  strategy: { canary: { steps: [{ setWeight: 20 }, { pause: {} }] } }
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: { name: bad }
spec:
  selector: { matchLabels: { app: bad } }
  template:
    metadata: { labels: { app: other } }
    spec: { containers: [{ name: app, image: app:1 }] }
  strategy:
    canary:
      canaryService: same
      stableService: same
      steps: [{ setWeight: 120 }]
"#;
    let (findings, rollouts) = lint(text);
    assert_eq!(rollouts, 2);
    let lines: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {}: {}", f.object, f.field, f.message))
        .collect();
    assert_eq!(
        lines,
        [
            "Rollout/bad: spec.selector: does not match the labels of spec.template.metadata.labels",
            "Rollout/bad: spec.strategy.canary.steps[0].setWeight: must be between 0 and 100 (got 120)",
            "Rollout/bad: spec.strategy.canary.stableService: must differ from canaryService (both are \"same\")",
        ]
    );
}

#[test]
fn lint_applies_argo_s_traffic_routing_rules() {
    let text = r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: { name: routed }
spec:
  selector: { matchLabels: { app: routed } }
  template:
    metadata: { labels: { app: routed } }
    spec: { containers: [{ name: app, image: app:1 }] }
  strategy:
    canary:
      stableService: routed-stable
      trafficRouting:
        plugins: { argoproj-labs/gatewayAPI: { httpRoute: routed } }
        maxTrafficWeight: 10
        managedRoutes: [{ name: beta }]
      steps:
        - setWeight: 20
        - setHeaderRoute: { name: gamma, match: [{ headerName: X-Beta, headerValue: { exact: "yes" } }] }
"#;
    let (findings, _) = lint(text);
    let lines: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect();
    assert_eq!(
        lines,
        [
            "spec.strategy.canary.canaryService: is required with trafficRouting: the router splits requests between the canary and stable Services",
            "spec.strategy.canary.steps[0].setWeight: must not exceed maxTrafficWeight 10 (got 20)",
            "spec.strategy.canary.steps[1].setHeaderRoute.name: \"gamma\" is not in spec.strategy.canary.trafficRouting.managedRoutes",
        ]
    );
}

#[test]
fn lint_reports_a_document_that_is_not_a_rollout_at_all() {
    let (findings, rollouts) = lint(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: x}\nspec: {replicas: many}\n",
    );
    assert_eq!(rollouts, 1);
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].message.starts_with("is not a valid Rollout"),
        "{:?}",
        findings[0]
    );
    let (findings, _) = lint("kind: [unclosed\n");
    assert!(
        findings[0].message.starts_with("is not valid YAML"),
        "{findings:?}"
    );
}

#[test]
fn lint_checks_analysis_templates_and_their_conditions_against_the_caps() {
    let deep = format!("{}1{} == 1", "(".repeat(40), ")".repeat(40));
    let text = format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{ name: fine }}
spec:
  args: [{{ name: service }}]
  metrics:
    - name: rate
      successCondition: "result[0] >= 0.95"
      provider: {{ prometheus: {{ query: 'rate(x{{service="{{{{args.service}}}}"}}[5m])' }} }}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{ name: huge }}
spec:
  metrics:
    - name: m
      successCondition: "len(0..200000000) > 0"
      provider: {{ web: {{ url: "http://example.com" }} }}
---
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {{ name: deep }}
spec:
  metrics:
    - name: m
      successCondition: "{deep}"
      provider: {{ web: {{ url: "http://example.com" }} }}
"#
    );
    let (findings, checked) = lint(&text);
    assert_eq!(checked, 3);
    let lines: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {}", f.object, f.message))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("AnalysisTemplate/huge: ") && lines[0].contains("the limit is 100000"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("ClusterAnalysisTemplate/deep: ")
            && lines[1].contains("nests 40 levels deep; the limit is 32"),
        "{lines:?}"
    );
}
