//! The canary `experiment` step, played on the simulator: the Experiment it creates, how its
//! phase moves the rollout, and the Experiments stopped when nothing waits on them.

use sluice_api::{AnalysisPhase, PauseReason, vocab::POD_TEMPLATE_HASH_LABEL};

use super::*;

/// A canary whose step 1 is an experiment (a stable baseline and a canary copy, one analysis
/// whose arguments use each kind of source) between two weights.
fn experiment_canary() -> serde_json::Value {
    serde_json::json!({
        "canaryService": "web-canary", "stableService": "web-stable",
        "maxSurge": 1, "maxUnavailable": 0,
        "steps": [
            { "setWeight": 20 },
            { "experiment": {
                "duration": "5m",
                "scaleDownDelaySeconds": 10,
                "dryRun": [{ "metricName": "latency" }],
                "templates": [
                    { "name": "baseline", "specRef": "stable" },
                    { "name": "canary", "specRef": "canary", "replicas": 2,
                      "service": { "name": "web-exp" },
                      "metadata": { "labels": { "role": "exp" }, "annotations": { "a": "b" } },
                      "selector": { "matchLabels": { "app": "web", "role": "exp" } } }
                ],
                "analyses": [{
                    "name": "compare", "templateName": "compare", "clusterScope": true,
                    "requiredForCompletion": true,
                    "args": [
                        { "name": "baseline", "value": "{{templates.baseline.podTemplateHash}}" },
                        { "name": "stable", "valueFrom": { "podTemplateHashValue": "Stable" } },
                        { "name": "latest", "valueFrom": { "podTemplateHashValue": "Latest" } },
                        { "name": "rollout", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
                    ]
                }]
            } },
            { "setWeight": 60 },
            { "pause": {} }
        ]
    })
}

/// Deployed on `web:1`, updated to `web:2`, and reconciled until the experiment step creates its
/// Experiment; the experiment then ends as `outcome` after three rounds (never when `None`).
fn at_experiment(outcome: Option<AnalysisPhase>) -> Sim {
    let mut sim = deployed(experiment_canary(), 5);
    sim.experiment_outcome = outcome;
    sim.set_image("web:2");
    for _ in 0..20 {
        sim.reconcile();
        if !sim.experiments.is_empty() {
            break;
        }
    }
    assert_eq!(sim.experiments.len(), 1, "the step created its Experiment");
    sim
}

/// Reconciles `n` times, a second apart (the simulated Experiment moves on each round, where
/// [`Sim::run`] would stop once nothing changes).
fn rounds(sim: &mut Sim, n: usize) {
    for _ in 0..n {
        sim.reconcile();
        sim.advance(1);
    }
}

fn current_experiment(sim: &Sim) -> Option<String> {
    sim.status().canary.and_then(|c| c.current_experiment)
}

fn progressing_message(sim: &Sim) -> String {
    sim.status()
        .conditions
        .iter()
        .find(|c| c.type_ == RolloutConditionType::Progressing)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[test]
fn reaching_the_step_creates_one_experiment_named_labelled_and_owned() {
    let mut sim = at_experiment(None);
    let (stable, canary) = (sim.hash_of("web:1"), sim.hash_of("web:2"));
    let name = format!("web-{canary}-2-1");
    let object = sim.experiment_objects[0].clone();
    assert_eq!(object.name_any(), name);
    assert_eq!(object.namespace().as_deref(), Some("shop"));
    let labels = object.labels();
    assert_eq!(labels.get(POD_TEMPLATE_HASH_LABEL), Some(&canary));
    assert_eq!(labels.get("rollout-type").map(String::as_str), Some("Step"));
    assert_eq!(labels.get("step-index").map(String::as_str), Some("1"));
    let owner = &object.owner_references()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller
        ),
        ("Rollout", "web", "uid-1", Some(true))
    );
    assert_eq!(current_experiment(&sim), Some(name.clone()));
    // The weights of the steps before hold while it runs, and it is never created again (the
    // simulator refuses a second creation).
    for _ in 0..10 {
        sim.reconcile();
        sim.advance(5);
    }
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 1)]
    );
    assert_eq!(sim.experiments.len(), 1);
    assert_eq!(sim.status().current_step_index, Some(1));
    assert_eq!(current_experiment(&sim), Some(name));
    let _ = stable;
}

#[test]
fn the_experiment_copies_the_versions_templates_and_the_steps_settings() {
    let sim = at_experiment(None);
    let (stable, canary) = (sim.hash_of("web:1"), sim.hash_of("web:2"));
    let spec = &sim.experiment_objects[0].spec;
    assert_eq!(spec.duration.as_ref().map(|d| d.as_secs()), Some(300));
    assert_eq!(spec.scale_down_delay_seconds, Some(10));
    assert_eq!(spec.dry_run.len(), 1);
    assert_eq!(spec.terminate, None);
    let image = |t: &sluice_api::TemplateSpec| {
        t.template.spec.as_ref().expect("a pod spec").containers[0]
            .image
            .clone()
            .unwrap_or_default()
    };
    let labels = |t: &sluice_api::TemplateSpec| {
        t.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    };
    let [baseline, copy] = &spec.templates[..] else {
        panic!("two templates: {:?}", spec.templates)
    };
    assert_eq!(
        (baseline.name.as_str(), image(baseline)),
        ("baseline", "web:1".into())
    );
    assert_eq!(baseline.replicas, Some(1), "replicas default to 1");
    // Neither copy carries the rollout's hash: its pods must not join the rollout's Services.
    assert!(!labels(baseline).contains_key(POD_TEMPLATE_HASH_LABEL));
    assert_eq!(
        baseline
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(BTreeMap::from([("app".into(), "web".into())]))
    );
    assert_eq!(
        (copy.name.as_str(), image(copy)),
        ("canary", "web:2".into())
    );
    assert_eq!(copy.replicas, Some(2));
    assert_eq!(
        labels(copy),
        BTreeMap::from([("app".into(), "web".into()), ("role".into(), "exp".into())])
    );
    let annotations = copy
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone());
    assert_eq!(
        annotations.and_then(|a| a.get("a").cloned()).as_deref(),
        Some("b")
    );
    assert_eq!(
        copy.selector.as_ref().and_then(|s| s.match_labels.clone()),
        Some(BTreeMap::from([
            ("app".into(), "web".into()),
            ("role".into(), "exp".into())
        ]))
    );
    assert_eq!(
        copy.service.as_ref().and_then(|s| s.name.as_deref()),
        Some("web-exp")
    );
    let analysis = &spec.analyses[0];
    assert_eq!(
        (analysis.name.as_str(), analysis.template_name.as_str()),
        ("compare", "compare")
    );
    assert_eq!(analysis.cluster_scope, Some(true));
    assert!(analysis.required());
    let args: Vec<(String, Option<String>)> = analysis
        .args
        .iter()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    assert_eq!(
        args,
        [
            (
                "baseline".into(),
                Some("{{templates.baseline.podTemplateHash}}".into())
            ),
            ("stable".into(), Some(stable)),
            ("latest".into(), Some(canary)),
            ("rollout".into(), Some("web".into())),
        ]
    );
}

#[test]
fn a_successful_experiment_completes_the_step_and_the_rollout_goes_on() {
    let mut sim = at_experiment(Some(AnalysisPhase::Successful));
    rounds(&mut sim, 30);
    assert_eq!(
        sim.status().current_step_index,
        Some(3),
        "at the last pause"
    );
    assert_eq!(current_experiment(&sim), None);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 3)]
    );
    assert!(
        sim.published
            .iter()
            .any(|(r, m)| *r == "RolloutStepCompleted" && m.contains("2/4 completed (experiment)")),
        "{:?}",
        sim.published
    );
}

#[test]
fn a_failed_experiment_aborts_the_rollout_naming_the_experiment_and_its_message() {
    for outcome in [AnalysisPhase::Failed, AnalysisPhase::Error] {
        let mut sim = at_experiment(Some(outcome));
        let name = sim.experiments[0].name.clone();
        rounds(&mut sim, 30);
        assert_eq!(sim.status().abort, Some(true), "{outcome:?}");
        let (health, message) = argocd_health(&sim.rollout);
        assert_eq!(health, "Degraded");
        assert!(
            message.contains(&format!("Experiment {name} ended {outcome:?}"))
                && message.contains("the simulated experiment ended"),
            "{message}"
        );
        assert_eq!(sim.pods(), [("web:1".to_string(), 5)], "back to stable");
        // The message stays while the rollout stays aborted.
        sim.advance(60);
        sim.reconcile();
        assert!(progressing_message(&sim).contains(&name));
    }
}

#[test]
fn an_inconclusive_experiment_pauses_until_a_person_promotes() {
    let mut sim = at_experiment(Some(AnalysisPhase::Inconclusive));
    for _ in 0..6 {
        sim.reconcile();
    }
    let status = sim.status();
    assert_eq!(status.current_step_index, Some(1));
    assert!(
        status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveExperiment),
        "{status:?}"
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    assert_eq!(sim.status().abort, None);
    // A promote clears the pause condition: the step is done.
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.reconcile();
    assert_eq!(sim.status().current_step_index, Some(2));
    assert_eq!(current_experiment(&sim), None);
}

/// Counts the `TerminateExperiment` actions of the next reconciles.
fn terminations(sim: &mut Sim, rounds: usize) -> usize {
    (0..rounds)
        .map(|_| {
            sim.reconcile()
                .actions
                .iter()
                .filter(|a| matches!(a, Action::TerminateExperiment { .. }))
                .count()
        })
        .sum()
}

#[test]
fn an_abort_stops_the_running_experiment_once() {
    let mut sim = at_experiment(None);
    sim.patch_status(|s| s.abort = Some(true));
    assert_eq!(terminations(&mut sim, 5), 1);
    assert!(sim.experiments[0].terminated);
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);
}

#[test]
fn a_full_promotion_stops_the_running_experiment_and_completes() {
    let mut sim = at_experiment(None);
    sim.patch_status(|s| s.promote_full = Some(true));
    assert_eq!(terminations(&mut sim, 10), 1);
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(current_experiment(&sim), None);
}

#[test]
fn a_new_revision_stops_the_running_experiment() {
    let mut sim = at_experiment(None);
    sim.set_image("web:3");
    assert_eq!(terminations(&mut sim, 5), 1);
}

#[test]
fn a_completed_experiment_is_not_stopped() {
    let mut sim = at_experiment(Some(AnalysisPhase::Successful));
    assert_eq!(terminations(&mut sim, 10), 0);
}

#[test]
fn a_retry_never_counts_the_aborted_attempts_experiment() {
    let mut sim = at_experiment(None);
    let first = sim.experiments[0].name.clone();
    sim.patch_status(|s| s.abort = Some(true));
    rounds(&mut sim, 10);
    // Terminated by Sluice with a duration: Inconclusive, and never a verdict for the retry.
    sim.experiment_outcome = Some(AnalysisPhase::Successful);
    sim.patch_status(|s| s.abort = None);
    rounds(&mut sim, 60);
    let names: Vec<&str> = sim.experiments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, [first.as_str(), &format!("{first}.2")]);
    assert!(sim.experiments[0].spent);
    assert_eq!(sim.status().current_step_index, Some(3));
}

#[test]
fn a_weighted_template_with_a_router_is_an_invalid_spec_naming_the_field() {
    let mut canary = experiment_canary();
    canary["trafficRouting"] = serde_json::json!({ "nginx": { "stableIngress": "web" } });
    canary["steps"][1]["experiment"]["templates"][1]["weight"] = serde_json::json!(10);
    let mut sim = Sim::new(rollout(5, canary));
    sim.reconcile();
    let (health, message) = argocd_health(&sim.rollout);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains("spec.strategy.canary.steps[1].experiment.templates[1].weight"),
        "{message}"
    );
    assert!(sim.experiments.is_empty());
}

#[test]
fn a_field_ref_the_rollout_lacks_is_an_invalid_spec() {
    let mut canary = experiment_canary();
    canary["steps"][1]["experiment"]["analyses"][0]["args"][3]["valueFrom"]["fieldRef"]["fieldPath"] =
        serde_json::json!("metadata.labels['missing']");
    let mut sim = Sim::new(rollout(5, canary));
    sim.reconcile();
    let (health, message) = argocd_health(&sim.rollout);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains("steps[1].experiment.analyses[0].args[3]") && message.contains("fieldRef"),
        "{message}"
    );
}

#[test]
fn the_view_reads_labels_phase_and_who_stopped_it() {
    let sim = at_experiment(None);
    let mut object = sim.experiment_objects[0].clone();
    object.spec.terminate = Some(true);
    object
        .labels_mut()
        .insert("sluice.dev/terminated-by".into(), "controller".into());
    object.status = Some(sluice_api::ExperimentStatus {
        phase: Some(AnalysisPhase::Inconclusive),
        message: Some("stopped".into()),
        ..Default::default()
    });
    let view = crate::canary::experiment::ExperimentView::of(&object);
    assert_eq!(view.hash, sim.hash_of("web:2"));
    assert_eq!(view.step, Some(1));
    assert_eq!(view.phase, Some(AnalysisPhase::Inconclusive));
    assert!(view.terminated && view.cut_by_controller && !view.spent);
    assert!(!view.is_evidence(), "stopped by Sluice: no verdict");
}

#[test]
fn an_experiment_deleted_while_the_step_waits_is_made_again_and_judged_anew() {
    let mut sim = at_experiment(None);
    let first = current_experiment(&sim).expect("the step's experiment");
    rounds(&mut sim, 2);
    // Someone deletes it: the next reconcile lists the rollout's experiments without it.
    sim.experiments.clear();
    rounds(&mut sim, 2);
    assert_eq!(sim.experiments.len(), 1, "one new experiment");
    let second = &sim.experiments[0];
    assert_eq!(second.name, first, "the freed name is taken again");
    assert_eq!(current_experiment(&sim).as_deref(), Some(first.as_str()));
    assert_eq!(
        sim.status().current_step_index,
        Some(1),
        "still at the step"
    );
    // It is judged as any: a success lets the rollout go on.
    sim.experiments[0].phase = Some(AnalysisPhase::Successful);
    sim.run(30);
    assert_eq!(
        sim.status().current_step_index,
        Some(3),
        "at the last pause"
    );
}
