//! The Experiment planner, decided without a cluster: a small simulator plays the cluster (it
//! applies the actions, the tests make pods available and set the runs' phases) and each test
//! checks what a user of `kubectl get experiment` would see.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use kube_core::ResourceExt;
use sluice_api::{
    AnalysisPhase, ConditionStatus, Experiment, TemplateStatusCode,
    vocab::{EXPERIMENT_NAME_ANNOTATION, EXPERIMENT_TEMPLATE_ANNOTATION, POD_TEMPLATE_HASH_LABEL},
};

use crate::{
    EventType,
    experiment::{
        COMPLETED_CONDITION, EXPERIMENT_ERROR, EXPERIMENT_FAILED, EXPERIMENT_INCONCLUSIVE,
        EXPERIMENT_RUNNING, EXPERIMENT_SUCCESSFUL, ExperimentAction, ExperimentObserved,
        ExperimentPlan, ExperimentRunView, INVALID_SPEC_CONDITION, NEW_REPLICA_SET_CREATED,
        PROGRESSING_CONDITION, SCALING_REPLICA_SET, plan, template_hash,
    },
};

const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).expect("a time")
}

/// A template named `name` whose pods carry `app: web, role: <name>` and listen on 8080.
fn template(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "selector": { "matchLabels": { "app": "web", "role": name } },
        "template": {
            "metadata": { "labels": { "app": "web", "role": name } },
            "spec": { "containers": [{ "name": "web", "image": "web:1",
                      "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }] }] }
        }
    })
}

/// An experiment `exp` in namespace `shop` with the given spec fields (templates `baseline`
/// and `canary` unless the fields give others).
fn experiment(fields: serde_json::Value) -> Experiment {
    let mut spec = serde_json::json!({ "templates": [template("baseline"), template("canary")] });
    if let (Some(spec), Some(fields)) = (spec.as_object_mut(), fields.as_object()) {
        for (k, v) in fields {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment",
        "metadata": { "name": "exp", "namespace": "shop", "uid": "uid-exp" },
        "spec": spec
    }))
    .expect("an experiment")
}

fn analysis(name: &str, required: bool) -> serde_json::Value {
    serde_json::json!({ "name": name, "templateName": "success-rate",
                        "requiredForCompletion": required })
}

/// The cluster as the tests play it.
struct Sim {
    exp: Experiment,
    observed: ExperimentObserved,
    now: Timestamp,
}

impl Sim {
    fn new(exp: Experiment) -> Self {
        Self {
            exp,
            observed: ExperimentObserved::default(),
            now: at(0),
        }
    }

    /// Plans without applying anything.
    fn plan(&self) -> ExperimentPlan {
        plan(&self.exp, &self.observed, self.now)
    }

    /// One reconcile: plan, carry out the actions, store the status.
    fn reconcile(&mut self) -> ExperimentPlan {
        let plan = self.plan();
        for action in &plan.actions {
            match action {
                ExperimentAction::CreateReplicaSet(rs) => {
                    let template = rs.annotations()[EXPERIMENT_TEMPLATE_ANNOTATION].clone();
                    assert!(
                        !self.observed.replica_sets.contains_key(&template),
                        "ReplicaSet of {template} created twice"
                    );
                    self.observed.replica_sets.insert(template, (**rs).clone());
                }
                ExperimentAction::ScaleReplicaSet { name, to, .. } => {
                    let rs = self
                        .observed
                        .replica_sets
                        .values_mut()
                        .find(|rs| rs.name_any() == *name)
                        .expect("scaling a ReplicaSet that exists");
                    rs.spec.as_mut().expect("a spec").replicas = Some(*to);
                }
                ExperimentAction::CreateService(svc) => {
                    let template = svc.annotations()[EXPERIMENT_TEMPLATE_ANNOTATION].clone();
                    assert!(!self.observed.services.contains_key(&template));
                    self.observed.services.insert(template, svc.name_any());
                }
                ExperimentAction::DeleteService { name } => {
                    self.observed.services.retain(|_, n| n != name);
                }
                ExperimentAction::CreateAnalysisRun { name, analysis } => {
                    let key = self.exp.spec.analyses[*analysis].name.clone();
                    assert!(!self.observed.runs.contains_key(&key), "run {name} twice");
                    self.observed.runs.insert(
                        key,
                        ExperimentRunView {
                            name: name.clone(),
                            ..ExperimentRunView::default()
                        },
                    );
                }
                ExperimentAction::TerminateAnalysisRun { name } => {
                    let run = self
                        .observed
                        .runs
                        .values_mut()
                        .find(|r| r.name == *name)
                        .expect("terminating a run that exists");
                    assert!(!run.terminated, "run {name} terminated twice");
                    run.terminated = true;
                }
            }
        }
        self.exp.status = Some(plan.status.clone());
        plan
    }

    /// The pods of `template`'s ReplicaSet all become available (as many as it asks for).
    fn available(&mut self, template: &str) {
        let rs = self
            .observed
            .replica_sets
            .get_mut(template)
            .expect("the template's ReplicaSet");
        let n = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        rs.status = Some(ReplicaSetStatus {
            replicas: n,
            ready_replicas: Some(n),
            available_replicas: Some(n),
            observed_generation: rs.metadata.generation,
            ..ReplicaSetStatus::default()
        });
    }

    /// Creates the ReplicaSets and makes them available: the experiment runs.
    fn running(&mut self) -> ExperimentPlan {
        self.reconcile();
        let names: Vec<String> = self
            .exp
            .spec
            .templates
            .iter()
            .map(|t| t.name.clone())
            .collect();
        for name in names {
            self.available(&name);
        }
        self.reconcile()
    }

    fn run_phase(&mut self, analysis: &str, phase: AnalysisPhase, message: &str) {
        let run = self.observed.runs.get_mut(analysis).expect("the run");
        run.phase = phase;
        run.message = Some(message.into());
    }

    fn phase(&self) -> AnalysisPhase {
        self.exp
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }

    fn message(&self) -> String {
        self.exp
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default()
    }

    fn template_code(&self, name: &str) -> Option<TemplateStatusCode> {
        self.exp
            .status
            .as_ref()?
            .template_statuses
            .iter()
            .find(|t| t.name == name)?
            .status
    }

    fn replicas(&self, template: &str) -> i32 {
        self.observed.replica_sets[template]
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
    }
}

fn reasons(plan: &ExperimentPlan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

fn created_sets(plan: &ExperimentPlan) -> Vec<ReplicaSet> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            ExperimentAction::CreateReplicaSet(rs) => Some((**rs).clone()),
            _ => None,
        })
        .collect()
}

fn creates_anything(plan: &ExperimentPlan) -> bool {
    plan.actions.iter().any(|a| {
        matches!(
            a,
            ExperimentAction::CreateReplicaSet(_)
                | ExperimentAction::CreateService(_)
                | ExperimentAction::CreateAnalysisRun { .. }
        )
    })
}

fn terminated(plan: &ExperimentPlan) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            ExperimentAction::TerminateAnalysisRun { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn each_template_gets_a_named_labelled_owned_replica_set() {
    let mut spec = experiment(serde_json::json!({}));
    spec.spec.templates[1].replicas = Some(3);
    spec.spec.templates[1].min_ready_seconds = Some(10);
    let sim = Sim::new(spec);
    let plan = sim.plan();
    let sets = created_sets(&plan);
    assert_eq!(sets.len(), 2);
    let canary = sets
        .iter()
        .find(|rs| rs.name_any() == "exp-canary")
        .expect("exp-canary");
    let hash = canary.labels()[POD_TEMPLATE_HASH_LABEL].clone();
    let spec = canary.spec.as_ref().expect("a spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.min_ready_seconds, Some(10));
    let selector = spec.selector.match_labels.clone().expect("matchLabels");
    assert_eq!(selector["role"], "canary");
    assert_eq!(selector[POD_TEMPLATE_HASH_LABEL], hash);
    let pod_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    assert_eq!(pod_labels["app"], "web");
    assert_eq!(pod_labels[POD_TEMPLATE_HASH_LABEL], hash);
    assert_eq!(canary.annotations()[EXPERIMENT_NAME_ANNOTATION], "exp");
    assert_eq!(
        canary.annotations()[EXPERIMENT_TEMPLATE_ANNOTATION],
        "canary"
    );
    assert_eq!(canary.namespace().as_deref(), Some("shop"));
    let owner = &canary.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Experiment", "exp", "uid-exp")
    );
    assert_eq!(owner.controller, Some(true));
    let baseline = sets
        .iter()
        .find(|rs| rs.name_any() == "exp-baseline")
        .expect("exp-baseline");
    assert_eq!(
        baseline.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "replicas default to 1"
    );
    assert_eq!(
        reasons(&plan),
        vec![NEW_REPLICA_SET_CREATED, NEW_REPLICA_SET_CREATED]
    );
    // The status reports the hashes the analyses' arguments resolve to.
    let status = &plan.status.template_statuses;
    let canary_status = status.iter().find(|t| t.name == "canary").expect("status");
    assert_eq!(
        canary_status.pod_template_hash.as_deref(),
        Some(hash.as_str())
    );
    assert_eq!(canary_status.status, Some(TemplateStatusCode::Progressing));
}

#[test]
fn two_templates_with_one_selector_get_replica_sets_that_never_share_pods() {
    // A canary step's baseline and canary both carry the rollout's selector.
    let mut canary = template("canary");
    canary["selector"] = template("baseline")["selector"].clone();
    canary["template"]["metadata"]["labels"] =
        serde_json::json!({ "app": "web", "role": "baseline" });
    let e = experiment(serde_json::json!({ "templates": [template("baseline"), canary] }));
    let plan = plan(&e, &ExperimentObserved::default(), at(0));
    let sets = created_sets(&plan);
    assert_eq!(sets.len(), 2, "{:?}", plan.status);
    let selectors: Vec<_> = sets
        .iter()
        .map(|rs| rs.spec.as_ref().map(|s| s.selector.clone()))
        .collect();
    assert_ne!(
        selectors[0], selectors[1],
        "each selector carries its own hash"
    );
}

#[test]
fn the_hash_is_stable_and_never_a_rollouts_hash_of_the_same_pod_template() {
    let exp = experiment(serde_json::json!({}));
    let t = &exp.spec.templates[0];
    let hash = template_hash("exp", t, None);
    assert_eq!(hash, template_hash("exp", t, None), "stable across calls");
    assert_ne!(
        hash,
        sluice_api::model::pod_template_hash(&t.template, None),
        "a Rollout running the same pod template has another hash"
    );
    assert_ne!(hash, template_hash("exp2", t, None), "another experiment");
    let mut renamed = t.clone();
    renamed.name = "other".into();
    assert_ne!(
        hash,
        template_hash("exp", &renamed, None),
        "another template"
    );
    assert_ne!(hash, template_hash("exp", t, Some(1)), "a collision count");
    let first = created_sets(&Sim::new(exp.clone()).plan());
    let again = created_sets(&Sim::new(exp).plan());
    assert_eq!(
        first, again,
        "the same experiment plans the same ReplicaSets"
    );
}

#[test]
fn pending_until_every_template_is_available_then_running_with_its_runs() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "analyses": [analysis("smoke", false), analysis("rate", true)] }),
    ));
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Pending);
    sim.available("baseline");
    let plan = sim.reconcile();
    assert_eq!(
        sim.phase(),
        AnalysisPhase::Pending,
        "canary is not available yet"
    );
    assert_eq!(
        sim.template_code("baseline"),
        Some(TemplateStatusCode::Running)
    );
    assert!(
        sim.message().contains("canary (0 of 1 available)"),
        "{}",
        sim.message()
    );
    assert!(
        !creates_anything(&plan),
        "no run before every template is available"
    );

    sim.now = at(20);
    sim.available("canary");
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Running);
    let status = sim.exp.status.clone().expect("a status");
    assert_eq!(status.available_at.map(|t| t.0), Some(at(20)));
    assert!(reasons(&plan).contains(&EXPERIMENT_RUNNING));
    let runs: Vec<(String, usize)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            ExperimentAction::CreateAnalysisRun { name, analysis } => {
                Some((name.clone(), *analysis))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        runs,
        vec![("exp-smoke".to_string(), 0), ("exp-rate".to_string(), 1)]
    );
    assert_eq!(status.analysis_runs.len(), 2);
    assert_eq!(status.analysis_runs[1].analysis_run, "exp-rate");

    // Later: nothing recreated, availableAt kept, no second Running event.
    sim.now = at(60);
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(plan.events.is_empty());
    let status = sim.exp.status.clone().expect("a status");
    assert_eq!(status.available_at.map(|t| t.0), Some(at(20)));
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == PROGRESSING_CONDITION)
        .expect("Progressing");
    assert_eq!(progressing.status, ConditionStatus::True);
    assert_eq!(
        progressing.last_transition_time.0,
        at(0),
        "kept while it holds"
    );
}

#[test]
fn a_status_that_has_not_caught_up_with_the_replica_set_is_not_available() {
    let mut sim = Sim::new(experiment(serde_json::json!({})));
    sim.reconcile();
    sim.available("baseline");
    sim.available("canary");
    for rs in sim.observed.replica_sets.values_mut() {
        rs.metadata.generation = Some(2);
        if let Some(s) = rs.status.as_mut() {
            s.observed_generation = Some(1);
        }
    }
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Pending);
    assert_eq!(
        sim.template_code("canary"),
        Some(TemplateStatusCode::Progressing)
    );
}

#[test]
fn a_template_that_misses_its_progress_deadline_fails_the_experiment() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "progressDeadlineSeconds": 120 }),
    ));
    let plan = sim.reconcile();
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(120)));
    sim.available("baseline");
    sim.now = at(100);
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Pending);
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(20)),
        "the deadline"
    );

    sim.now = at(120);
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Failed);
    assert_eq!(
        sim.template_code("canary"),
        Some(TemplateStatusCode::Failed)
    );
    let canary = sim
        .exp
        .status
        .as_ref()
        .and_then(|s| s.template_statuses.iter().find(|t| t.name == "canary"))
        .cloned()
        .expect("canary's status");
    let message = canary.message.unwrap_or_default();
    assert!(message.contains("timed out progressing"), "{message}");
    assert!(sim.message().contains("canary"), "{}", sim.message());
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == EXPERIMENT_FAILED && e.type_ == EventType::Warning)
    );
}

#[test]
fn a_templates_transition_time_moves_only_when_its_status_changes() {
    let mut sim = Sim::new(experiment(serde_json::json!({})));
    sim.reconcile();
    let ltt = |sim: &Sim, name: &str| {
        sim.exp
            .status
            .as_ref()
            .and_then(|s| s.template_statuses.iter().find(|t| t.name == name))
            .and_then(|t| t.last_transition_time.clone())
            .map(|t| t.0)
    };
    sim.now = at(30);
    sim.reconcile();
    assert_eq!(ltt(&sim, "canary"), Some(at(0)), "still Progressing");
    sim.available("canary");
    sim.now = at(40);
    sim.reconcile();
    assert_eq!(ltt(&sim, "canary"), Some(at(40)), "became Running");
    assert_eq!(ltt(&sim, "baseline"), Some(at(0)));
}

#[test]
fn a_duration_ends_the_experiment_successfully_and_scales_down_after_the_delay() {
    let mut sim = Sim::new(experiment(serde_json::json!({ "duration": "5m" })));
    let plan = sim.running();
    assert_eq!(sim.phase(), AnalysisPhase::Running);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(300)));
    assert!(
        sim.message().starts_with("Running for 300s"),
        "{}",
        sim.message()
    );

    sim.now = at(299);
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Running);

    sim.now = at(300);
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Successful);
    assert!(reasons(&plan).contains(&EXPERIMENT_SUCCESSFUL));
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(30)),
        "the scale-down"
    );
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, ExperimentAction::ScaleReplicaSet { .. })),
        "not scaled down before the delay"
    );
    let status = sim.exp.status.clone().expect("a status");
    let completed = status
        .conditions
        .iter()
        .find(|c| c.type_ == COMPLETED_CONDITION)
        .expect("Completed");
    assert_eq!(
        (
            completed.status,
            completed.reason.as_str(),
            completed.last_transition_time.0
        ),
        (ConditionStatus::True, "ExperimentCompleted", at(300))
    );
    assert_eq!(
        sim.template_code("canary"),
        Some(TemplateStatusCode::Successful)
    );

    sim.now = at(329);
    assert!(sim.reconcile().actions.is_empty());
    sim.now = at(330);
    let plan = sim.reconcile();
    assert_eq!(sim.replicas("canary"), 0);
    assert_eq!(sim.replicas("baseline"), 0);
    assert!(reasons(&plan).contains(&SCALING_REPLICA_SET));
    assert_eq!(sim.phase(), AnalysisPhase::Successful);
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty() && plan.events.is_empty());
    assert_eq!(plan.requeue_after, None, "nothing left to time");
}

#[test]
fn a_required_analysis_keeps_the_experiment_running_past_its_duration() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "duration": "60s", "analyses": [analysis("rate", true), analysis("smoke", false)] }),
    ));
    sim.running();
    sim.now = at(600);
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Running);
    assert!(
        sim.message()
            .contains("waiting for required analyses: rate"),
        "{}",
        sim.message()
    );
    sim.run_phase("rate", AnalysisPhase::Successful, "");
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Successful);
    assert_eq!(
        terminated(&plan),
        vec!["exp-smoke".to_string()],
        "the optional run is stopped"
    );
    assert!(terminated(&sim.reconcile()).is_empty(), "once");
}

#[test]
fn without_a_duration_the_required_analyses_decide() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "analyses": [analysis("rate", true)] }),
    ));
    let plan = sim.running();
    assert_eq!(
        plan.requeue_after, None,
        "nothing timed while the run judges"
    );
    assert!(sim.message().contains("until required analyses complete"));
    sim.run_phase("rate", AnalysisPhase::Successful, "all good");
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Successful);
}

#[test]
fn a_failed_run_ends_the_experiment_at_once_and_stops_the_others() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "duration": "1h", "analyses": [analysis("rate", false), analysis("latency", false)] }),
    ));
    sim.running();
    sim.now = at(10);
    sim.run_phase(
        "rate",
        AnalysisPhase::Failed,
        "metric \"rate\" assessed Failed",
    );
    sim.run_phase("latency", AnalysisPhase::Running, "");
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Failed);
    assert!(sim.message().contains("\"rate\""), "{}", sim.message());
    assert!(
        sim.message().contains("assessed Failed"),
        "{}",
        sim.message()
    );
    assert_eq!(terminated(&plan), vec!["exp-latency".to_string()]);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == EXPERIMENT_FAILED && e.type_ == EventType::Warning)
    );
    assert_eq!(
        sim.template_code("canary"),
        Some(TemplateStatusCode::Failed)
    );
    // Stopped once; the run's own later verdict changes nothing.
    let plan = sim.reconcile();
    assert!(terminated(&plan).is_empty());
    sim.run_phase("latency", AnalysisPhase::Successful, "");
    sim.run_phase("rate", AnalysisPhase::Successful, "");
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Failed, "a verdict is final");
    assert!(plan.events.is_empty());
}

#[test]
fn a_run_in_error_or_inconclusive_gives_the_experiment_that_phase() {
    for (phase, reason) in [
        (AnalysisPhase::Error, EXPERIMENT_ERROR),
        (AnalysisPhase::Inconclusive, EXPERIMENT_INCONCLUSIVE),
    ] {
        let mut sim = Sim::new(experiment(
            serde_json::json!({ "duration": "1h", "analyses": [analysis("rate", false)] }),
        ));
        sim.running();
        sim.run_phase("rate", phase, "provider unreachable");
        let plan = sim.reconcile();
        assert_eq!(sim.phase(), phase);
        assert!(sim.message().contains("provider unreachable"));
        assert!(reasons(&plan).contains(&reason));
        assert_ne!(
            sim.template_code("canary"),
            Some(TemplateStatusCode::Successful),
            "{phase:?} is never reported as a template's success"
        );
    }
}

#[test]
fn a_failed_run_outweighs_an_inconclusive_one() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "analyses": [analysis("a", false), analysis("b", false)] }),
    ));
    sim.running();
    sim.run_phase("a", AnalysisPhase::Inconclusive, "");
    sim.run_phase("b", AnalysisPhase::Failed, "");
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Failed);
}

#[test]
fn terminating_before_the_duration_is_inconclusive_never_successful() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "duration": "10m", "analyses": [analysis("rate", false)] }),
    ));
    sim.running();
    sim.run_phase("rate", AnalysisPhase::Running, "");
    sim.now = at(60);
    sim.exp.spec.terminate = Some(true);
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Inconclusive);
    assert!(
        sim.message().contains("before its duration elapsed"),
        "{}",
        sim.message()
    );
    assert!(reasons(&plan).contains(&EXPERIMENT_INCONCLUSIVE));
    assert_eq!(terminated(&plan), vec!["exp-rate".to_string()]);
}

#[test]
fn terminating_before_required_analyses_complete_is_inconclusive() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "analyses": [analysis("rate", true)] }),
    ));
    sim.running();
    sim.exp.spec.terminate = Some(true);
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Inconclusive);
    assert!(sim.message().contains("rate"), "{}", sim.message());
}

#[test]
fn terminating_an_experiment_with_nothing_to_judge_is_successful() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "analyses": [analysis("smoke", false)] }),
    ));
    sim.running();
    assert_eq!(sim.message(), "Running until terminated");
    assert_eq!(sim.reconcile().requeue_after, None);
    sim.exp.spec.terminate = Some(true);
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Successful);
}

#[test]
fn a_required_run_stopped_before_its_verdict_is_no_pass() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "analyses": [analysis("rate", true)] }),
    ));
    sim.running();
    let run = sim.observed.runs.get_mut("rate").expect("the run");
    run.terminated = true;
    run.phase = AnalysisPhase::Successful;
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Inconclusive);
}

#[test]
fn invalid_specs_end_in_error_with_an_invalid_spec_condition_and_create_nothing() {
    let no_selector = {
        let mut t = template("canary");
        if let Some(o) = t.as_object_mut() {
            o.remove("selector");
        }
        t
    };
    let mismatch = {
        let mut t = template("canary");
        t["selector"] = serde_json::json!({ "matchLabels": { "role": "other" } });
        t
    };
    let negative = {
        let mut t = template("canary");
        t["replicas"] = serde_json::json!(-1);
        t
    };
    let cases: Vec<(&str, serde_json::Value, Vec<String>, &str)> = vec![
        (
            "no templates",
            serde_json::json!({ "templates": [] }),
            vec![],
            "at least one template",
        ),
        (
            "one name twice",
            serde_json::json!({ "templates": [template("a"), template("a")] }),
            vec![],
            "already the name",
        ),
        (
            "an analysis name twice",
            serde_json::json!({ "analyses": [analysis("x", false), analysis("x", true)] }),
            vec![],
            "spec.analyses[1].name",
        ),
        (
            "no selector",
            serde_json::json!({ "templates": [template("baseline"), no_selector] }),
            vec![],
            "selector: is required",
        ),
        (
            "a selector that misses its labels",
            serde_json::json!({ "templates": [template("baseline"), mismatch] }),
            vec![],
            "does not match",
        ),
        (
            "negative replicas",
            serde_json::json!({ "templates": [template("baseline"), negative] }),
            vec![],
            "replicas: must not be negative",
        ),
        (
            "an analysis the controller cannot run",
            serde_json::json!({ "analyses": [analysis("rate", true)] }),
            vec!["spec.analyses[0]: AnalysisTemplate \"success-rate\" not found".to_string()],
            "not found",
        ),
    ];
    for (case, fields, analysis_problems, expected) in cases {
        let mut sim = Sim::new(experiment(fields));
        sim.observed.analysis_problems = analysis_problems;
        let plan = sim.reconcile();
        assert_eq!(sim.phase(), AnalysisPhase::Error, "{case}");
        assert!(
            sim.message().starts_with("InvalidSpec: "),
            "{case}: {}",
            sim.message()
        );
        assert!(
            sim.message().contains(expected),
            "{case}: {}",
            sim.message()
        );
        assert!(!creates_anything(&plan), "{case}: {:?}", plan.actions);
        assert!(reasons(&plan).contains(&EXPERIMENT_ERROR), "{case}");
        let status = sim.exp.status.clone().expect("a status");
        let invalid = status
            .conditions
            .iter()
            .find(|c| c.type_ == INVALID_SPEC_CONDITION)
            .expect("InvalidSpec");
        assert_eq!(invalid.status, ConditionStatus::True, "{case}");
        assert!(invalid.message.contains(expected), "{case}");
    }
}

#[test]
fn a_running_experiment_whose_spec_turns_invalid_stops_and_scales_down() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "analyses": [analysis("rate", false)], "scaleDownDelaySeconds": 0 }),
    ));
    sim.running();
    sim.observed.analysis_problems = vec!["spec.analyses[0]: template gone".into()];
    let plan = sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Error);
    assert_eq!(terminated(&plan), vec!["exp-rate".to_string()]);
    assert_eq!(sim.replicas("canary"), 0);
    assert_eq!(sim.replicas("baseline"), 0);
    assert!(!creates_anything(&plan));
}

#[test]
fn a_template_asking_for_a_service_gets_one_once_its_replica_set_exists() {
    let mut exp = experiment(serde_json::json!({ "duration": "60s", "scaleDownDelaySeconds": 5 }));
    exp.spec.templates[0].service = Some(sluice_api::TemplateService { name: None });
    exp.spec.templates[1].service = Some(sluice_api::TemplateService {
        name: Some("canary-preview".into()),
    });
    let mut sim = Sim::new(exp);
    let plan = sim.reconcile();
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, ExperimentAction::CreateService(_))),
        "not before the ReplicaSet exists"
    );
    let plan = sim.reconcile();
    let services: Vec<_> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            ExperimentAction::CreateService(s) => Some((**s).clone()),
            _ => None,
        })
        .collect();
    let names: Vec<String> = services.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, vec!["exp-baseline", "canary-preview"]);
    let canary = &services[1];
    let spec = canary.spec.as_ref().expect("a spec");
    let hash = sim.observed.replica_sets["canary"].labels()[POD_TEMPLATE_HASH_LABEL].clone();
    let selector = spec.selector.clone().expect("a selector");
    assert_eq!(selector["role"], "canary");
    assert_eq!(selector[POD_TEMPLATE_HASH_LABEL], hash);
    let port = &spec.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), 8080, Some("TCP"))
    );
    assert_eq!(canary.owner_references()[0].uid, "uid-exp");
    let names_in_status: Vec<Option<String>> = plan
        .status
        .template_statuses
        .iter()
        .map(|t| t.service_name.clone())
        .collect();
    assert_eq!(
        names_in_status,
        vec![Some("exp-baseline".into()), Some("canary-preview".into())]
    );
    assert!(
        !sim.reconcile()
            .actions
            .iter()
            .any(|a| matches!(a, ExperimentAction::CreateService(_))),
        "created once"
    );

    sim.available("baseline");
    sim.available("canary");
    sim.reconcile();
    sim.now = at(60);
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Successful);
    assert_eq!(sim.observed.services.len(), 2, "kept until the scale-down");
    sim.now = at(65);
    let plan = sim.reconcile();
    let deleted: Vec<&ExperimentAction> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, ExperimentAction::DeleteService { .. }))
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(sim.observed.services.is_empty());
}

#[test]
fn a_service_for_containers_without_ports_is_an_invalid_spec() {
    let mut exp = experiment(serde_json::json!({}));
    exp.spec.templates[0].service = Some(sluice_api::TemplateService::default());
    if let Some(spec) = exp.spec.templates[0].template.spec.as_mut() {
        spec.containers[0].ports = None;
    }
    let mut sim = Sim::new(exp);
    sim.reconcile();
    assert_eq!(sim.phase(), AnalysisPhase::Error);
    assert!(sim.message().contains("no ports"), "{}", sim.message());
}

#[test]
fn a_replica_set_scaled_by_someone_else_is_put_back_while_running() {
    let mut sim = Sim::new(experiment(serde_json::json!({})));
    sim.running();
    if let Some(spec) = sim
        .observed
        .replica_sets
        .get_mut("canary")
        .and_then(|rs| rs.spec.as_mut())
    {
        spec.replicas = Some(0);
    }
    let plan = sim.reconcile();
    assert!(plan.actions.contains(&ExperimentAction::ScaleReplicaSet {
        name: "exp-canary".into(),
        from: 0,
        to: 1
    }));
    assert!(reasons(&plan).contains(&SCALING_REPLICA_SET));
}

#[test]
fn requeue_is_the_earliest_timed_thing() {
    // A Progressing template's deadline (100s) comes before the duration could start.
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "duration": "30s", "progressDeadlineSeconds": 100 }),
    ));
    sim.reconcile();
    sim.available("baseline");
    sim.available("canary");
    sim.now = at(10);
    let plan = sim.reconcile();
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(30)),
        "the duration's end"
    );
    // Running with a template that fell back to Progressing: its deadline is sooner.
    if let Some(status) = sim
        .observed
        .replica_sets
        .get_mut("canary")
        .and_then(|rs| rs.status.as_mut())
    {
        status.available_replicas = Some(0);
    }
    sim.now = at(35);
    let plan = sim.reconcile();
    assert_eq!(
        sim.template_code("canary"),
        Some(TemplateStatusCode::Progressing)
    );
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(5)),
        "the duration ends first"
    );
}

#[test]
fn a_template_deadline_sooner_than_the_duration_is_the_requeue() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "duration": "1h", "progressDeadlineSeconds": 100 }),
    ));
    assert_eq!(sim.running().requeue_after, Some(Duration::from_secs(3600)));
    if let Some(status) = sim
        .observed
        .replica_sets
        .get_mut("baseline")
        .and_then(|rs| rs.status.as_mut())
    {
        status.available_replicas = Some(0);
    }
    sim.now = at(35);
    let plan = sim.reconcile();
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(100)));
    sim.now = at(135);
    sim.reconcile();
    assert_eq!(
        sim.phase(),
        AnalysisPhase::Failed,
        "a running template that stays down fails"
    );
}

#[test]
fn planning_is_restart_safe() {
    let mut sim = Sim::new(experiment(
        serde_json::json!({ "duration": "60s", "analyses": [analysis("rate", true)] }),
    ));
    let first = sim.plan();
    let second = sim.plan();
    assert_eq!(first.actions, second.actions);
    assert_eq!(first.status, second.status);
    sim.reconcile();
    assert!(created_sets(&sim.plan()).is_empty(), "no second ReplicaSet");
    sim.available("baseline");
    sim.available("canary");
    sim.reconcile();
    assert!(!creates_anything(&sim.plan()), "no second run");
    // The status write was lost, not the writes: nothing is created twice either.
    sim.exp.status = None;
    let plan = sim.plan();
    assert!(!creates_anything(&plan), "{:?}", plan.actions);
}

#[test]
fn a_run_view_reads_phase_message_and_terminate() {
    let run: sluice_api::AnalysisRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": { "name": "exp-rate" },
        "spec": { "metrics": [], "terminate": true }
    }))
    .expect("a run");
    let view = ExperimentRunView::of(&run);
    assert_eq!(view.name, "exp-rate");
    assert_eq!(view.phase, AnalysisPhase::Pending, "no status yet");
    assert!(view.terminated);
}
