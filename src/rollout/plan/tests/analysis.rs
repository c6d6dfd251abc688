//! The rollout side of analysis, decided without a cluster: a run is started once, found again by
//! its recorded name or its labels, judged by its phase, and stopped or deleted when nothing
//! waits on it.

use super::*;
use crate::api::{AnalysisPhase, RolloutAnalysis, RolloutAnalysisRunStatus};
use crate::rollout::plan::{
    Planner,
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
        crate::api::PauseReason::InconclusiveAnalysis
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
