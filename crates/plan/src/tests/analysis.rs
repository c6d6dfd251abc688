//! The rollout side of analysis, decided without a cluster: a run is started once, found again by
//! its recorded name or its labels, judged by its phase, and stopped or deleted when nothing
//! waits on it.
use sluice_api::{AnalysisPhase, RolloutAnalysis, RolloutAnalysisRunStatus};

use super::*;
use crate::{
    EventType, Planner,
    analysis::{NewRun, RunKind, RunView, Verdict, require, spend, tidy},
};

fn analysis() -> RolloutAnalysis {
    serde_json::from_value(serde_json::json!({ "templates": [{ "templateName": "success-rate" }] }))
        .expect("an analysis")
}

fn run(name: &str, kind: RunKind, phase: AnalysisPhase, age: i64) -> RunView {
    RunView {
        name: name.into(),
        hash: "h2".into(),
        kind: Some(kind),
        phase,
        message: Some("metric \"rate\" assessed Failed".into()),
        terminating: false,
        spent: false,
        cut_by_controller: false,
        created: Some(Timestamp::from_second(1_800_000_000 + age).expect("a time")),
    }
}

fn observed(runs: Vec<RunView>) -> Observed {
    Observed {
        analysis_runs: runs,
        ..Observed::default()
    }
}

fn planner<'a>(rollout: &'a Rollout, observed: &'a Observed) -> Planner<'a> {
    Planner::new(
        rollout,
        observed,
        Timestamp::from_second(1_800_000_100).expect("a time"),
    )
}

fn created(p: &Planner<'_>) -> Vec<NewRun> {
    p.plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateAnalysisRun(run) => Some((**run).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_step_starts_its_run_once_and_finds_it_again_by_the_recorded_name() {
    let r = rollout(2, standard_steps());
    let none = observed(vec![]);
    let mut p = planner(&r, &none);
    let (verdict, entry) = require(&mut p, RunKind::Step(2), "h2", &analysis(), None);
    assert_eq!(verdict, Verdict::Waiting);
    let runs = created(&p);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].name, "web-h2-1-2");
    assert_eq!(entry.name, "web-h2-1-2");

    // The cache has not seen it yet: the same name again (create is idempotent), no second run.
    let mut p = planner(&r, &none);
    let (_, again) = require(&mut p, RunKind::Step(2), "h2", &analysis(), Some(&entry));
    assert_eq!(again.name, entry.name);
    assert!(created(&p).iter().all(|n| n.name == entry.name));

    // Its status write was lost: the running run is found by its labels.
    let seen = observed(vec![run(
        "web-h2-1-2",
        RunKind::Step(2),
        AnalysisPhase::Running,
        0,
    )]);
    let mut p = planner(&r, &seen);
    let (verdict, _) = require(&mut p, RunKind::Step(2), "h2", &analysis(), None);
    assert_eq!(verdict, Verdict::Waiting);
    assert!(created(&p).is_empty());
}

#[test]
fn verdicts_follow_the_run_phase_and_an_inconclusive_run_pauses_until_promoted() {
    let r = rollout(2, standard_steps());
    let entry = |name: &str| RolloutAnalysisRunStatus {
        name: name.into(),
        status: None,
        message: None,
    };
    for (phase, expected) in [
        (AnalysisPhase::Successful, Verdict::Passed),
        (AnalysisPhase::Running, Verdict::Waiting),
        (AnalysisPhase::Inconclusive, Verdict::Held),
    ] {
        let seen = observed(vec![run("a", RunKind::Step(0), phase, 0)]);
        let mut p = planner(&r, &seen);
        let (verdict, recorded) = require(
            &mut p,
            RunKind::Step(0),
            "h2",
            &analysis(),
            Some(&entry("a")),
        );
        assert_eq!(verdict, expected, "{phase:?}");
        assert_eq!(recorded.status, Some(phase));
    }
    let seen = observed(vec![run("a", RunKind::Step(0), AnalysisPhase::Failed, 0)]);
    let mut p = planner(&r, &seen);
    let (verdict, _) = require(
        &mut p,
        RunKind::Step(0),
        "h2",
        &analysis(),
        Some(&entry("a")),
    );
    assert!(
        matches!(verdict, Verdict::Failed(m) if m.contains("AnalysisRun a ended Failed") && m.contains("assessed Failed"))
    );

    // Inconclusive: paused; once the pause condition is cleared (promote), it passes.
    let seen = observed(vec![run(
        "a",
        RunKind::Step(0),
        AnalysisPhase::Inconclusive,
        0,
    )]);
    let mut p = planner(&r, &seen);
    require(
        &mut p,
        RunKind::Step(0),
        "h2",
        &analysis(),
        Some(&entry("a")),
    );
    assert_eq!(p.status.controller_pause, Some(true));
    assert_eq!(
        p.status.pause_conditions[0].reason,
        sluice_api::PauseReason::InconclusiveAnalysis
    );
    let mut promoted = r.clone();
    let mut status = p.status.clone();
    status.pause_conditions.clear();
    promoted.status = Some(status);
    let mut p = planner(&promoted, &seen);
    let (verdict, _) = require(
        &mut p,
        RunKind::Step(0),
        "h2",
        &analysis(),
        Some(&entry("a")),
    );
    assert_eq!(verdict, Verdict::Passed);
}

#[test]
fn a_lost_status_write_never_starts_a_second_run_even_for_a_finished_one() {
    let r = rollout(2, standard_steps());
    // Created and failed at once (a missing template), and the status never recorded it.
    let seen = observed(vec![run(
        "web-h2-1-0",
        RunKind::Step(0),
        AnalysisPhase::Error,
        0,
    )]);
    let mut p = planner(&r, &seen);
    let (verdict, entry) = require(&mut p, RunKind::Step(0), "h2", &analysis(), None);
    assert!(matches!(verdict, Verdict::Failed(_)), "{verdict:?}");
    assert_eq!(entry.name, "web-h2-1-0");
    assert!(created(&p).is_empty());
}

#[test]
fn a_retry_gets_a_fresh_run_beside_the_spent_one() {
    let r = rollout(2, standard_steps());
    let mut failed = run("web-h2-1-0", RunKind::Step(0), AnalysisPhase::Failed, 0);
    let seen = observed(vec![failed.clone()]);
    let mut p = planner(&r, &seen);
    spend(&mut p, "h2");
    assert_eq!(p.plan.actions.len(), 1);
    assert_eq!(
        p.plan.actions[0].to_string(),
        "mark AnalysisRun web-h2-1-0 spent by a retry"
    );

    failed.spent = true;
    let seen = observed(vec![failed]);
    let mut p = planner(&r, &seen);
    let (verdict, entry) = require(&mut p, RunKind::Step(0), "h2", &analysis(), None);
    assert_eq!(verdict, Verdict::Waiting);
    assert_eq!(entry.name, "web-h2-1-0.2");
}

#[test]
fn runs_nothing_waits_on_are_terminated_and_old_ones_deleted_beyond_the_limits() {
    let mut r = rollout(2, standard_steps());
    r.spec.analysis = serde_json::from_value(serde_json::json!({
        "successfulRunHistoryLimit": 1, "unsuccessfulRunHistoryLimit": 2
    }))
    .expect("limits");
    let seen = observed(vec![
        run("bg", RunKind::Background, AnalysisPhase::Running, 50),
        run("ok-old", RunKind::Step(0), AnalysisPhase::Successful, 1),
        run("ok-new", RunKind::Step(0), AnalysisPhase::Successful, 2),
        run("bad-1", RunKind::Step(0), AnalysisPhase::Failed, 3),
        run("bad-2", RunKind::Step(0), AnalysisPhase::Error, 4),
        run("bad-3", RunKind::Step(0), AnalysisPhase::Failed, 5),
    ]);
    let mut p = planner(&r, &seen);
    tidy(&mut p);
    let mut touched: Vec<String> = p.plan.actions.iter().map(ToString::to_string).collect();
    touched.sort();
    assert_eq!(
        touched,
        [
            "delete AnalysisRun bad-1",
            "delete AnalysisRun ok-old",
            "terminate AnalysisRun bg",
        ]
    );
}

/// A canary of 4 whose second step is an analysis, deployed and Healthy on `web:1`, then
/// updated to `web:2` until the analysis run exists; returns the run's name.
fn at_step_analysis() -> (Sim, String) {
    let mut sim = deployed(
        serde_json::json!({
            "maxSurge": 1, "maxUnavailable": 0,
            "steps": [
                { "setWeight": 25 },
                { "analysis": { "templates": [{ "templateName": "success-rate" }] } },
                { "setWeight": 75 },
            ]
        }),
        4,
    );
    sim.set_image("web:2");
    sim.run(10);
    let run = sim
        .runs
        .iter()
        .find(|r| r.kind == Some(RunKind::Step(1)))
        .expect("the step's run was started")
        .name
        .clone();
    set_phase(&mut sim, &run, AnalysisPhase::Running);
    (sim, run)
}

fn set_phase(sim: &mut Sim, name: &str, phase: AnalysisPhase) {
    for r in sim.runs.iter_mut().filter(|r| r.name == name) {
        r.phase = phase;
    }
}

fn terminated(sim: &Sim) -> Vec<String> {
    sim.runs
        .iter()
        .filter(|r| r.terminating)
        .map(|r| r.name.clone())
        .collect()
}

#[test]
fn a_pause_keeps_the_step_analysis_running_and_its_failure_still_aborts() {
    let (mut sim, run) = at_step_analysis();
    sim.rollout.spec.paused = Some(true);
    sim.advance(30);
    sim.run(10);
    assert_eq!(
        terminated(&sim),
        Vec::<String>::new(),
        "paused, not stopped"
    );
    assert_eq!(sim.status().current_step_index, Some(1));

    // It fails while the rollout is paused: the rollout aborts, as Argo's does.
    set_phase(&mut sim, &run, AnalysisPhase::Failed);
    sim.run(10);
    assert_eq!(sim.status().abort, Some(true));
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
}

#[test]
fn a_run_the_controller_cut_short_is_no_pass_and_a_fresh_run_decides() {
    let (mut sim, run) = at_step_analysis();
    // What an earlier controller did (or any cut it makes): terminated, read Successful.
    for r in sim.runs.iter_mut().filter(|r| r.name == run) {
        r.terminating = true;
        r.cut_by_controller = true;
        r.phase = AnalysisPhase::Successful;
    }
    sim.run(10);
    assert_eq!(
        sim.status().current_step_index,
        Some(1),
        "a terminated run never promotes the step"
    );
    let fresh: Vec<String> = sim
        .runs
        .iter()
        .filter(|r| r.kind == Some(RunKind::Step(1)) && r.name != run)
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(
        fresh,
        [format!("{run}.2")],
        "a fresh run analyses the version"
    );
    assert_eq!(
        sim.status()
            .canary
            .and_then(|c| c.current_step_analysis_run_status)
            .map(|s| s.name),
        Some(format!("{run}.2"))
    );

    // Its pass is the one that counts.
    set_phase(&mut sim, &format!("{run}.2"), AnalysisPhase::Successful);
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn a_person_terminating_a_run_lets_the_step_pass_as_in_argo() {
    let (mut sim, run) = at_step_analysis();
    for r in sim.runs.iter_mut().filter(|r| r.name == run) {
        r.terminating = true;
        r.phase = AnalysisPhase::Successful;
    }
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn retry_after_a_failed_analysis_starts_a_new_run_in_the_same_reconcile() {
    // Background analysis is needed from the first step, so the retry's first reconcile reads it.
    let mut sim = deployed(
        serde_json::json!({
            "maxSurge": 1, "maxUnavailable": 0,
            "analysis": { "templates": [{ "templateName": "success-rate" }] },
            "steps": [ { "setWeight": 25 }, { "pause": {} } ]
        }),
        4,
    );
    sim.set_image("web:2");
    sim.run(10);
    let background = |sim: &Sim| {
        sim.status()
            .canary
            .and_then(|c| c.current_background_analysis_run_status)
            .map(|s| s.name)
    };
    let run = background(&sim).expect("the background run started");
    set_phase(&mut sim, &run, AnalysisPhase::Failed);
    sim.run(10);
    assert_eq!(sim.status().abort, Some(true));

    sim.patch_status(|s| s.abort = None);
    let retried = sim.reconcile();
    assert_ne!(
        retried.status.abort,
        Some(true),
        "the old failure is spent, not read again"
    );
    let fresh = background(&sim).expect("the retry's run is recorded");
    assert_ne!(fresh, run, "a new run in the retry's first reconcile");
    assert!(
        retried
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateAnalysisRun(r) if r.name == fresh)),
        "{:?}",
        retried.actions
    );
    sim.run(10);
    assert_ne!(sim.status().abort, Some(true));
}

#[test]
fn a_pause_start_in_the_future_is_no_time_waited() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(10);
    assert_eq!(sim.status().current_step_index, Some(1), "at the 10s pause");
    let future = sim.now + Duration::from_secs(3600);
    sim.patch_status(|s| {
        for c in &mut s.pause_conditions {
            c.start_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(future);
        }
    });
    sim.reconcile();
    assert_eq!(
        sim.status().current_step_index,
        Some(1),
        "an hour in the future is not ten seconds waited"
    );
    let start = sim.status().pause_conditions[0].start_time.0;
    assert_eq!(start, sim.now, "the pause starts over now, not in an hour");
    sim.advance(11);
    sim.run(10);
    assert_eq!(sim.status().current_step_index, Some(3));
}

#[test]
fn a_progress_time_in_the_future_never_exceeds_the_deadline() {
    let mut canary = standard_steps();
    canary["maxUnavailable"] = 1.into();
    let mut sim = deployed(canary, 4);
    sim.rollout.spec.progress_deadline_seconds = Some(60);
    sim.rollout.spec.progress_deadline_abort = Some(true);
    sim.broken_image = Some("web:2".into());
    sim.set_image("web:2");
    sim.run(10);
    let future = sim.now + Duration::from_secs(3600);
    sim.patch_status(|s| {
        for c in &mut s.conditions {
            c.last_update_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(future);
        }
    });
    let plan = sim.reconcile();
    assert!(
        plan.events
            .iter()
            .all(|e| e.reason != "ProgressDeadlineExceeded"),
        "an hour ahead is not an hour without progress: {:?}",
        plan.events
    );
    assert_ne!(sim.status().abort, Some(true));
    // The deadline counts from now on.
    sim.advance(61);
    sim.run(10);
    assert_eq!(sim.status().abort, Some(true));
}

#[test]
fn a_missing_template_is_an_invalid_spec_until_it_appears() {
    let steps = serde_json::json!({
        "maxSurge": 1, "maxUnavailable": 0,
        "steps": [
            { "setWeight": 25 },
            { "analysis": { "templates": [
                { "templateName": "success-rate" },
                { "templateName": "latency", "clusterScope": true },
            ] } },
        ]
    });
    let key = |name: &str, cluster: bool| (name.to_owned(), cluster);

    // First deploy with the ClusterAnalysisTemplate missing: nothing is created, Degraded at
    // once, the field and the kind named.
    let mut sim = Sim::new(rollout(4, steps.clone()));
    sim.templates = BTreeMap::from([(key("latency", true), None)]);
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    let (health, message) = argocd_health(&sim.rollout);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains(
            "spec.strategy.canary.steps[1].analysis.templates[1]: ClusterAnalysisTemplate \"latency\" not found"
        ),
        "{message}"
    );
    // A namespaced template of the same name is another template.
    sim.templates = BTreeMap::from([(key("latency", false), None)]);
    sim.reconcile();
    assert_ne!(argocd_health(&sim.rollout).0, "Degraded");

    // It appears: the rollout deploys and is Healthy.
    sim.templates.clear();
    sim.run(10);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(sim.pods(), [("web:1".to_string(), 4)]);

    // An update whose template is deleted meanwhile: the stable set keeps every pod, nothing
    // moves until the template is back, then the update goes on to its analysis step.
    sim.set_image("web:2");
    sim.templates = BTreeMap::from([(key("success-rate", false), None)]);
    sim.run(10);
    assert_eq!(sim.pods(), [("web:1".to_string(), 4)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    sim.templates.clear();
    sim.run(10);
    assert!(
        sim.runs.iter().any(|r| r.kind == Some(RunKind::Step(1))),
        "the step's run starts once the template is back"
    );
    assert_ne!(argocd_health(&sim.rollout).0, "Degraded");
}

#[test]
fn a_template_that_cannot_run_or_lacks_an_argument_is_reported_before_anything_is_scaled() {
    let template = |spec: serde_json::Value| -> sluice_api::AnalysisTemplateSpec {
        serde_json::from_value(spec).expect("a template spec")
    };
    let web = serde_json::json!({"web": {"url": "http://example/{{args.service}}"}});
    let steps = |args: serde_json::Value| {
        serde_json::json!({
            "steps": [
                { "setWeight": 25 },
                { "analysis": { "templates": [{ "templateName": "t" }], "args": args } },
            ]
        })
    };
    let key = ("t".to_owned(), false);
    let problems = |sim: &mut Sim| {
        let plan = sim.reconcile();
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(sim.pods(), Vec::<(String, i32)>::new());
        argocd_health(&sim.rollout)
    };

    // A provider Sluice does not have: refused by name before the first pod.
    let mut sim = Sim::new(rollout(2, steps(serde_json::json!([]))));
    sim.templates.insert(
        key.clone(),
        Some(template(serde_json::json!({"metrics": [
            {"name": "m", "provider": {"plugin": {"argoproj-labs/sample": {}}}}
        ]}))),
    );
    let (health, message) = problems(&mut sim);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains("spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate \"t\": metrics[0] \"m\": the plugin provider is not supported"),
        "{message}"
    );

    // A condition that does not parse.
    sim.templates.insert(
        key.clone(),
        Some(template(serde_json::json!({"metrics": [
            {"name": "m", "successCondition": "result >", "provider": web.clone()}
        ], "args": [{"name": "service", "value": "x"}]}))),
    );
    let (health, message) = problems(&mut sim);
    assert_eq!(health, "Degraded");
    assert!(message.contains("AnalysisTemplate \"t\": "), "{message}");

    // An argument the template requires and the rollout does not give (Argo's #1052).
    sim.templates.insert(
        key.clone(),
        Some(template(serde_json::json!({
            "metrics": [{"name": "m", "provider": web.clone()}],
            "args": [{"name": "service"}],
        }))),
    );
    let (health, message) = problems(&mut sim);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains("spec.strategy.canary.steps[1].analysis.args: args.service was not resolved: AnalysisTemplate \"t\" requires it"),
        "{message}"
    );

    // A template that includes one that does not exist, then one requiring the argument.
    sim.templates.insert(
        key.clone(),
        Some(template(serde_json::json!({
            "templates": [{"templateName": "base"}],
            "metrics": [],
        }))),
    );
    sim.templates.insert(("base".to_owned(), false), None);
    let (health, message) = problems(&mut sim);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains("AnalysisTemplate \"t\" includes templates that cannot be used: AnalysisTemplate \"base\" not found"),
        "{message}"
    );
    sim.templates.insert(
        ("base".to_owned(), false),
        Some(template(serde_json::json!({
            "metrics": [{"name": "m", "provider": web.clone()}],
            "args": [{"name": "service"}],
        }))),
    );
    let (_, message) = problems(&mut sim);
    assert!(
        message.contains("args.service was not resolved: AnalysisTemplate \"t\" requires it"),
        "{message}"
    );

    // Given by the rollout: valid, deployed.
    let mut sim = Sim::new(rollout(
        2,
        steps(serde_json::json!([{"name": "service", "value": "web"}])),
    ));
    sim.templates.insert(
        key,
        Some(template(serde_json::json!({
            "metrics": [{"name": "m", "provider": web}],
            "args": [{"name": "service"}],
        }))),
    );
    sim.run(10);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

/// Each phase a run reaches is said once on the rollout, with Argo's reason (the one its
/// `on-analysis-run-*` notifications listen to): not again while the status records it.
#[test]
fn a_run_s_new_phase_is_an_event_once_with_argo_s_reason() {
    let r = rollout(2, standard_steps());
    let entry = |phase: Option<AnalysisPhase>| RolloutAnalysisRunStatus {
        name: "a".into(),
        status: phase,
        message: None,
    };
    let events = |phase: AnalysisPhase, before: Option<AnalysisPhase>| {
        let seen = observed(vec![run("a", RunKind::Step(0), phase, 0)]);
        let mut p = planner(&r, &seen);
        let (_, recorded) = require(
            &mut p,
            RunKind::Step(0),
            "h2",
            &analysis(),
            Some(&entry(before)),
        );
        assert_eq!(recorded.status, Some(phase), "the status records the phase");
        p.plan
            .events
            .iter()
            .map(|e| (e.type_, e.reason, e.message.clone()))
            .collect::<Vec<_>>()
    };
    let running = events(AnalysisPhase::Running, None);
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].0, EventType::Normal);
    assert_eq!(running[0].1, "AnalysisRunRunning");
    assert!(events(AnalysisPhase::Running, Some(AnalysisPhase::Running)).is_empty());
    assert!(events(AnalysisPhase::Pending, None).is_empty());

    let failed = events(AnalysisPhase::Failed, Some(AnalysisPhase::Running));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, EventType::Warning);
    assert_eq!(failed[0].1, "AnalysisRunFailed");
    assert!(
        failed[0].2.contains("AnalysisRun a Failed (was Running)")
            && failed[0].2.contains("assessed Failed"),
        "{}",
        failed[0].2
    );
    let error = events(AnalysisPhase::Error, Some(AnalysisPhase::Running));
    assert_eq!(
        (error[0].0, error[0].1),
        (EventType::Warning, "AnalysisRunError")
    );
    let passed = events(AnalysisPhase::Successful, Some(AnalysisPhase::Running));
    assert_eq!(
        (passed[0].0, passed[0].1),
        (EventType::Normal, "AnalysisRunSuccessful")
    );
    assert!(events(AnalysisPhase::Failed, Some(AnalysisPhase::Failed)).is_empty());
}
