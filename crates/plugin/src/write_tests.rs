//! Tests of what the writing commands decide to write, and of `lint`, without a cluster: the
//! patches must be the ones Argo CD's resource actions and the Argo Rollouts plugin make.

use serde_json::json;
use sluice_api::{Rollout, model::pod_template_hash, vocab::POD_TEMPLATE_HASH_LABEL};

use super::{
    Error,
    fixtures::*,
    lint::lint,
    promote::{Promotion, promotion},
    set::image_patch,
    skip_step::skip_patch,
    undo::{Undo, undo, without_defaults},
};

#[test]
fn promote_clears_the_controllers_pause_on_the_status() {
    let rollout = canary_paused().rollout;
    assert_eq!(
        promotion(&rollout, false).expect("a promotion"),
        Promotion::Resume {
            status: Some(json!({ "status": { "pauseConditions": null } })),
            spec: None,
        }
    );
}

#[test]
fn promote_unpauses_a_rollout_paused_by_a_person() {
    let mut rollout = canary_healthy().rollout;
    rollout.spec.paused = Some(true);
    assert_eq!(
        promotion(&rollout, false).expect("a promotion"),
        Promotion::Resume {
            status: None,
            spec: Some(json!({ "spec": { "paused": false } })),
        }
    );
}

#[test]
fn promote_of_a_rollout_that_is_not_paused_writes_nothing_and_says_so() {
    let rollout = canary_progressing().rollout;
    let error = promotion(&rollout, false).expect_err("not paused");
    assert!(matches!(&error, Error::NotPaused { name } if name == "shop"));
    assert!(error.to_string().contains("is not paused"), "{error}");
}

#[test]
fn promote_full_sets_promote_full_unless_already_stable() {
    assert_eq!(
        promotion(&canary_progressing().rollout, true).expect("a promotion"),
        Promotion::Full(json!({ "status": { "promoteFull": true } }))
    );
    assert!(matches!(
        promotion(&canary_healthy().rollout, true),
        Ok(Promotion::Nothing(_))
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
