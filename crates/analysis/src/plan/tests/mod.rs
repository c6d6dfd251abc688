//! Table tests of the schedule, the counters, the limits and the phases, and property tests
//! over simulated runs.

use serde_json::{Value, json};

use super::*;

/// Seconds after a fixed instant.
fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("a time")
}

fn web(name: &str, extra: Value) -> Value {
    let mut metric = json!({"name": name, "provider": {"web": {"url": "http://x"}}});
    if let (Some(m), Some(e)) = (metric.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    metric
}

fn rules(spec: Value) -> RunRules {
    let spec: AnalysisRunSpec = serde_json::from_value(spec).expect("a run spec");
    RunRules::new(&spec).expect("valid rules")
}

fn finished(phase: AnalysisPhase, at: Timestamp) -> Measurement {
    Measurement {
        phase,
        started_at: Some(Time(at)),
        finished_at: Some(Time(at)),
        ..Measurement::default()
    }
}

fn in_flight_until(resume: Timestamp, at: Timestamp) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Running,
        started_at: Some(Time(at)),
        resume_at: Some(Time(resume)),
        ..Measurement::default()
    }
}

/// One reconcile: every due task gets the outcome `outcome(metric, task)` gives.
fn step(
    rules: &RunRules,
    status: &mut AnalysisRunStatus,
    now: Timestamp,
    mut outcome: impl FnMut(&str, &Task) -> Measurement,
) -> (Vec<Due>, Assessment) {
    let due = due(rules, status, now);
    for d in &due {
        let m = outcome(&d.metric, &d.task);
        record(
            rules.metric(&d.metric).expect("a metric"),
            status,
            m,
            BTreeMap::new(),
            now,
        );
    }
    let assessment = assess(rules, status, now);
    (due, assessment)
}

/// A reconcile where every due metric measures `phase`.
fn measure_all(
    rules: &RunRules,
    status: &mut AnalysisRunStatus,
    now: Timestamp,
    phase: AnalysisPhase,
) -> Assessment {
    step(rules, status, now, |_, _| finished(phase, now)).1
}

fn result_of<'a>(status: &'a AnalysisRunStatus, name: &str) -> &'a MetricResult {
    result(status, name).expect("a result")
}

#[test]
fn one_measurement_without_interval() {
    let rules = rules(json!({"metrics": [web("m", json!({"successCondition": "result"}))]}));
    let mut status = AnalysisRunStatus::default();
    let (due, a) = step(&rules, &mut status, t(0), |_, task| {
        assert_eq!(task, &Task::Measure);
        finished(AnalysisPhase::Successful, t(0))
    });
    assert_eq!(due.len(), 1);
    assert_eq!(status.phase, AnalysisPhase::Successful);
    assert_eq!(result_of(&status, "m").phase, AnalysisPhase::Successful);
    assert_eq!(result_of(&status, "m").count, Some(1));
    assert_eq!(status.started_at, Some(Time(t(0))));
    assert_eq!(status.completed_at, Some(Time(t(0))));
    assert_eq!(
        status.run_summary,
        Some(RunSummary {
            count: Some(1),
            successful: Some(1),
            ..RunSummary::default()
        })
    );
    assert_eq!(status.dry_run_summary, Some(RunSummary::default()));
    assert_eq!(a.next_due, None);
    assert!(a.completed_now);
    assert!(settled(&status));
    // Nothing more to do, and nothing changes on another pass.
    let before = status.clone();
    let (due, a) = step(&rules, &mut status, t(100), |_, _| unreachable!());
    assert!(due.is_empty());
    assert!(!a.completed_now);
    assert_eq!(status, before);
}

#[test]
fn a_failed_measurement_fails_the_run_with_argos_message() {
    let rules = rules(json!({"metrics": [web("error-rate", json!({}))]}));
    let mut status = AnalysisRunStatus::default();
    measure_all(&rules, &mut status, t(0), AnalysisPhase::Failed);
    assert_eq!(status.phase, AnalysisPhase::Failed);
    assert_eq!(
        status.message.as_deref(),
        Some("Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)")
    );
    assert_eq!(status.run_summary.as_ref().unwrap().failed, Some(1));
}

#[test]
fn measurements_follow_the_interval_until_the_count() {
    let rules = rules(json!({"metrics": [web("m", json!({"interval": "60s", "count": 3}))]}));
    let mut status = AnalysisRunStatus::default();
    let a = measure_all(&rules, &mut status, t(0), AnalysisPhase::Successful);
    assert_eq!(a.next_due, Some(t(60)));
    assert_eq!(status.phase, AnalysisPhase::Running);
    assert_eq!(result_of(&status, "m").phase, AnalysisPhase::Running);
    // Early: nothing due, same requeue time, and a status equal to the one read (no write).
    let before = status.clone();
    let a = measure_all(&rules, &mut status, t(30), AnalysisPhase::Failed);
    assert_eq!(status, before);
    assert_eq!(a.next_due, Some(t(60)));
    let a = measure_all(&rules, &mut status, t(60), AnalysisPhase::Successful);
    assert_eq!(a.next_due, Some(t(120)));
    let a = measure_all(&rules, &mut status, t(121), AnalysisPhase::Successful);
    assert_eq!(result_of(&status, "m").count, Some(3));
    assert_eq!(status.phase, AnalysisPhase::Successful);
    assert_eq!(a.next_due, None);
}

#[test]
fn initial_delay_counts_from_the_start_of_the_run() {
    let rules = rules(json!({"metrics": [web("m", json!({"initialDelay": "30s"}))]}));
    let mut status = AnalysisRunStatus::default();
    let (due, a) = step(&rules, &mut status, t(0), |_, _| unreachable!());
    assert!(due.is_empty());
    assert_eq!(a.next_due, Some(t(30)));
    assert_eq!(status.phase, AnalysisPhase::Running);
    // A restart at t(10) keeps the original start.
    let (due, a) = step(&rules, &mut status, t(10), |_, _| unreachable!());
    assert!(due.is_empty());
    assert_eq!(a.next_due, Some(t(30)));
    let (due, _) = step(&rules, &mut status, t(30), |_, _| {
        finished(AnalysisPhase::Successful, t(30))
    });
    assert_eq!(due.len(), 1);
    assert_eq!(status.phase, AnalysisPhase::Successful);
}

#[test]
fn errors_retry_after_ten_seconds_and_error_the_metric_past_the_limit() {
    let rules = rules(json!({"metrics": [web("m", json!({"interval": "5m"}))]}));
    let mut status = AnalysisRunStatus::default();
    for i in 0..5 {
        let now = t(i * 10);
        let a = measure_all(&rules, &mut status, now, AnalysisPhase::Error);
        let r = result_of(&status, "m");
        assert_eq!(r.consecutive_error, Some(i32::try_from(i + 1).unwrap()));
        if i < 4 {
            assert_eq!(
                status.phase,
                AnalysisPhase::Running,
                "after {} errors",
                i + 1
            );
            assert_eq!(a.next_due, Some(t(i * 10 + 10)));
        }
    }
    assert_eq!(status.phase, AnalysisPhase::Error);
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Metric \"m\" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4)"
        )
    );
    let r = result_of(&status, "m");
    assert_eq!((r.error, r.count), (Some(5), None), "errors do not count");
}

#[test]
fn a_success_resets_the_errors_in_a_row() {
    let rules = rules(
        json!({"metrics": [web("m", json!({"interval": "10s", "consecutiveErrorLimit": 1}))]}),
    );
    let mut status = AnalysisRunStatus::default();
    measure_all(&rules, &mut status, t(0), AnalysisPhase::Error);
    measure_all(&rules, &mut status, t(10), AnalysisPhase::Successful);
    assert_eq!(result_of(&status, "m").consecutive_error, None);
    measure_all(&rules, &mut status, t(20), AnalysisPhase::Error);
    assert_eq!(status.phase, AnalysisPhase::Running);
    measure_all(&rules, &mut status, t(30), AnalysisPhase::Error);
    assert_eq!(status.phase, AnalysisPhase::Error);
    assert_eq!(result_of(&status, "m").error, Some(3));
}

#[test]
fn limits_tolerate_failures_and_inconclusive_results() {
    let rules = rules(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 4, "failureLimit": 1, "inconclusiveLimit": 1,
    }))]}));
    let mut status = AnalysisRunStatus::default();
    let phases = [
        AnalysisPhase::Failed,
        AnalysisPhase::Inconclusive,
        AnalysisPhase::Successful,
        AnalysisPhase::Successful,
    ];
    for (i, phase) in phases.into_iter().enumerate() {
        measure_all(
            &rules,
            &mut status,
            t(i64::try_from(i).unwrap() * 10),
            phase,
        );
    }
    assert_eq!(status.phase, AnalysisPhase::Successful);
    let r = result_of(&status, "m");
    assert_eq!(
        (r.count, r.successful, r.failed, r.inconclusive),
        (Some(4), Some(2), Some(1), Some(1))
    );
}

#[test]
fn inconclusive_past_the_limit_ends_the_run_inconclusive() {
    let rules = rules(json!({"metrics": [web("m", json!({"interval": "10s"}))]}));
    let mut status = AnalysisRunStatus::default();
    let a = measure_all(&rules, &mut status, t(0), AnalysisPhase::Inconclusive);
    assert_eq!(status.phase, AnalysisPhase::Inconclusive);
    assert!(a.completed_now);
    assert_eq!(a.next_due, None);
}

#[test]
fn the_worst_metric_decides_in_argos_order() {
    use AnalysisPhase::*;
    let cases = [
        ([Successful, Failed], Failed),
        ([Error, Failed], Failed),
        ([Inconclusive, Error], Error),
        ([Successful, Inconclusive], Inconclusive),
        ([Successful, Successful], Successful),
    ];
    for (phases, run) in cases {
        let rules = rules(json!({"metrics": [web("a", json!({})), web("b", json!({}))]}));
        let mut status = AnalysisRunStatus::default();
        // Errors need five in a row; a limit of 0 makes one enough.
        let rules = RunRules {
            metrics: rules
                .metrics
                .into_iter()
                .map(|m| MetricRules {
                    consecutive_error_limit: 0,
                    ..m
                })
                .collect(),
            ..rules
        };
        step(&rules, &mut status, t(0), |name, _| {
            finished(if name == "a" { phases[0] } else { phases[1] }, t(0))
        });
        assert_eq!(status.phase, run, "{phases:?}");
    }
    assert_eq!(severity(Failed, Error), Ordering::Greater);
    assert_eq!(severity(Error, Inconclusive), Ordering::Greater);
    assert_eq!(severity(Inconclusive, Pending), Ordering::Greater);
    assert_eq!(severity(Pending, Running), Ordering::Greater);
    assert_eq!(severity(Running, Successful), Ordering::Greater);
}

#[test]
fn dry_run_metrics_are_reported_but_never_decide() {
    let rules = rules(json!({
        "metrics": [web("real", json!({})), web("trial", json!({}))],
        "dryRun": [{"metricName": "trial"}],
    }));
    let mut status = AnalysisRunStatus::default();
    step(&rules, &mut status, t(0), |name, _| {
        let phase = if name == "real" {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Failed
        };
        finished(phase, t(0))
    });
    assert_eq!(status.phase, AnalysisPhase::Successful);
    let trial = result_of(&status, "trial");
    assert_eq!(trial.phase, AnalysisPhase::Failed);
    assert_eq!(trial.dry_run, Some(true));
    assert_eq!(
        trial.message.as_deref(),
        Some("Metric assessed Failed due to failed (1) > failureLimit (0)")
    );
    assert_eq!(
        status.dry_run_summary,
        Some(RunSummary {
            count: Some(1),
            failed: Some(1),
            ..RunSummary::default()
        })
    );
    assert_eq!(status.run_summary.as_ref().unwrap().successful, Some(1));
}

#[test]
fn a_failing_dry_run_does_not_stop_the_others() {
    let rules = rules(json!({
        "metrics": [web("real", json!({"interval": "10s", "count": 2})), web("trial", json!({}))],
        "dryRun": [{"metricName": "trial"}],
    }));
    let mut status = AnalysisRunStatus::default();
    step(&rules, &mut status, t(0), |name, _| {
        let phase = if name == "trial" {
            AnalysisPhase::Failed
        } else {
            AnalysisPhase::Successful
        };
        finished(phase, t(0))
    });
    assert!(!is_terminating(&rules, &status));
    assert_eq!(status.phase, AnalysisPhase::Running);
    let (due, _) = step(&rules, &mut status, t(10), |_, _| {
        finished(AnalysisPhase::Successful, t(10))
    });
    assert_eq!(due.len(), 1);
    assert_eq!(status.phase, AnalysisPhase::Successful);
}

#[test]
fn terminate_ends_an_unbounded_run_successfully() {
    let spec = json!({"metrics": [web("m", json!({"interval": "10s"}))]});
    let running = rules(spec.clone());
    let mut status = AnalysisRunStatus::default();
    measure_all(&running, &mut status, t(0), AnalysisPhase::Successful);
    measure_all(&running, &mut status, t(10), AnalysisPhase::Successful);
    assert_eq!(status.phase, AnalysisPhase::Running);
    let mut terminated = running.clone();
    terminated.terminate = true;
    let (due, a) = step(&terminated, &mut status, t(15), |_, _| unreachable!());
    assert!(due.is_empty());
    assert_eq!(status.phase, AnalysisPhase::Successful);
    assert_eq!(status.message.as_deref(), Some("Run Terminated"));
    assert_eq!(a.next_due, None);

    // Terminated before any measurement: Successful too.
    let mut fresh = AnalysisRunStatus::default();
    step(&terminated, &mut fresh, t(0), |_, _| unreachable!());
    assert_eq!(fresh.phase, AnalysisPhase::Successful);

    // Terminated after a failure: stays Failed.
    let mut failed = AnalysisRunStatus::default();
    measure_all(&running, &mut failed, t(0), AnalysisPhase::Failed);
    step(&terminated, &mut failed, t(5), |_, _| unreachable!());
    assert_eq!(failed.phase, AnalysisPhase::Failed);
}

#[test]
fn measurements_in_flight_are_resumed_at_resume_at() {
    let rules = rules(
        json!({"metrics": [{"name": "job", "provider": {"job": {"spec": {"template": {}}}}}]}),
    );
    let mut status = AnalysisRunStatus::default();
    let (_, a) = step(&rules, &mut status, t(0), |_, task| {
        assert_eq!(task, &Task::Measure);
        in_flight_until(t(10), t(0))
    });
    assert_eq!(status.phase, AnalysisPhase::Running);
    assert_eq!(result_of(&status, "job").phase, AnalysisPhase::Running);
    assert_eq!(a.next_due, Some(t(10)));
    assert_eq!(
        attempt(&status, "job"),
        1,
        "a measurement in flight is not counted"
    );
    let (due, _) = step(&rules, &mut status, t(5), |_, _| unreachable!());
    assert!(due.is_empty());
    // Still running at t(10): replaced in place, not appended.
    let (due, a) = step(&rules, &mut status, t(10), |_, task| {
        let Task::Resume(m) = task else {
            panic!("{task:?}")
        };
        Measurement {
            resume_at: Some(Time(t(20))),
            ..m.clone()
        }
    });
    assert_eq!(due.len(), 1);
    assert_eq!(result_of(&status, "job").measurements.len(), 1);
    assert_eq!(a.next_due, Some(t(20)));
    step(&rules, &mut status, t(20), |_, task| {
        let Task::Resume(m) = task else {
            panic!("{task:?}")
        };
        Measurement {
            phase: AnalysisPhase::Failed,
            ..m.clone()
        }
    });
    let r = result_of(&status, "job");
    assert_eq!(r.measurements.len(), 1);
    assert_eq!(r.measurements[0].finished_at, Some(Time(t(20))));
    assert_eq!(r.measurements[0].resume_at, None);
    assert_eq!(status.phase, AnalysisPhase::Failed);
    assert_eq!(attempt(&status, "job"), 2);
}

#[test]
fn a_failure_terminates_measurements_still_in_flight() {
    let rules = rules(json!({"metrics": [
        {"name": "job", "provider": {"job": {"spec": {"template": {}}}}},
        web("web", json!({})),
    ]}));
    let mut status = AnalysisRunStatus::default();
    step(&rules, &mut status, t(0), |name, _| {
        if name == "job" {
            in_flight_until(t(60), t(0))
        } else {
            finished(AnalysisPhase::Failed, t(0))
        }
    });
    // The verdict does not wait for the Job.
    assert_eq!(status.phase, AnalysisPhase::Failed);
    assert!(!settled(&status));
    let (due, a) = step(&rules, &mut status, t(1), |_, task| {
        let Task::Terminate(m) = task else {
            panic!("{task:?}")
        };
        crate::plan::terminated(m.clone(), t(1))
    });
    assert_eq!(due.len(), 1);
    assert!(settled(&status));
    assert_eq!(status.phase, AnalysisPhase::Failed);
    assert_eq!(a.next_due, None);
}

#[test]
fn retention_keeps_the_newest_measurements() {
    let rules = rules(json!({
        "metrics": [web("kept", json!({"interval": "1s"})), web("few", json!({"interval": "1s"}))],
        "measurementRetention": [{"metricName": "few", "limit": 3}],
    }));
    let mut status = AnalysisRunStatus::default();
    let mut trimmed = Vec::new();
    for i in 0..12 {
        trimmed = measure_all(&rules, &mut status, t(i), AnalysisPhase::Successful).trimmed;
    }
    assert_eq!(result_of(&status, "kept").measurements.len(), 10);
    assert_eq!(result_of(&status, "few").measurements.len(), 3);
    assert_eq!(
        result_of(&status, "few").measurements[2].finished_at,
        Some(Time(t(11)))
    );
    assert_eq!(result_of(&status, "kept").count, Some(12));
    assert_eq!(trimmed, [("kept".to_owned(), 10), ("few".to_owned(), 3)]);
}

#[test]
fn an_invalid_spec_is_an_error_once() {
    let mut status = AnalysisRunStatus::default();
    invalid(&mut status, &SpecError::NoMetrics, t(0));
    assert_eq!(status.phase, AnalysisPhase::Error);
    assert_eq!(
        status.message.as_deref(),
        Some("Analysis spec invalid: no metrics specified")
    );
    let before = status.clone();
    invalid(&mut status, &SpecError::NoMetrics, t(50));
    assert_eq!(status, before);
}

#[test]
fn provider_metadata_is_kept_with_the_result() {
    let rules = rules(json!({"metrics": [web("m", json!({}))]}));
    let mut status = AnalysisRunStatus::default();
    let meta = BTreeMap::from([("ResolvedPrometheusQuery".to_owned(), "up".to_owned())]);
    record(
        &rules.metrics[0],
        &mut status,
        finished(AnalysisPhase::Successful, t(0)),
        meta.clone(),
        t(0),
    );
    assert_eq!(result_of(&status, "m").metadata, meta);
}

mod properties;

#[test]
fn a_zero_interval_never_makes_a_hot_loop() {
    let rules = rules(json!({"metrics": [web("m", json!({"interval": "0s"}))]}));
    let mut status = AnalysisRunStatus::default();
    let mut now = t(0);
    let mut measured = 0;
    // Ten seconds of passes, each at the moment the plan asks for: one measurement a second.
    while now < t(10) {
        let (due, a) = step(&rules, &mut status, now, |_, _| {
            finished(AnalysisPhase::Successful, now)
        });
        measured += due.len();
        let next = a.next_due.expect("an unbounded metric measures again");
        assert!(
            next.duration_since(now).as_secs_f64() >= 1.0,
            "next measurement {next} only {:?} after {now}",
            next.duration_since(now)
        );
        now = next;
    }
    assert_eq!(measured, 10);
}

/// Runs the measurements `phases` of metric `m`, ten seconds apart; returns the run's phase
/// after each one.
fn run_through(
    rules: &RunRules,
    phases: &[AnalysisPhase],
) -> (AnalysisRunStatus, Vec<AnalysisPhase>) {
    let mut status = AnalysisRunStatus::default();
    let mut seen = Vec::new();
    for (i, phase) in phases.iter().enumerate() {
        measure_all(
            rules,
            &mut status,
            t(i64::try_from(i).unwrap() * 10),
            *phase,
        );
        seen.push(status.phase);
    }
    (status, seen)
}

#[test]
fn a_disabled_failure_limit_lets_successes_in_a_row_decide() {
    use AnalysisPhase::*;
    // Argo: `failureLimit: -1` "isn't applicable", so failures do not fail the metric; the
    // metric succeeds once consecutiveSuccessLimit successes come in a row.
    let rules = rules(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 5, "failureLimit": -1, "consecutiveSuccessLimit": 2,
    }))]}));
    let (status, seen) = run_through(&rules, &[Failed, Failed, Successful, Successful]);
    assert_eq!(seen, [Running, Running, Running, Successful]);
    let r = result_of(&status, "m");
    assert_eq!((r.failed, r.consecutive_success), (Some(2), Some(2)));
}

#[test]
fn without_a_failure_limit_a_count_reached_short_of_the_successes_fails() {
    use AnalysisPhase::*;
    let rules = rules(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 3, "failureLimit": -1, "consecutiveSuccessLimit": 2,
    }))]}));
    let (status, seen) = run_through(&rules, &[Successful, Failed, Successful]);
    assert_eq!(seen, [Running, Running, Failed]);
    assert_eq!(result_of(&status, "m").consecutive_success, Some(1));
}

#[test]
fn with_a_failure_limit_a_count_reached_short_of_the_successes_is_inconclusive() {
    use AnalysisPhase::*;
    let rules = rules(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 3, "failureLimit": 1, "consecutiveSuccessLimit": 2,
    }))]}));
    let (_, seen) = run_through(&rules, &[Successful, Failed, Successful]);
    assert_eq!(seen, [Running, Running, Inconclusive]);
    // The failure limit still fails the metric first.
    let (_, seen) = run_through(&rules, &[Failed, Failed]);
    assert_eq!(seen, [Running, Failed]);
}

#[test]
fn successes_in_a_row_end_a_metric_before_its_count_and_reset_on_anything_else() {
    use AnalysisPhase::*;
    let rules = rules(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 10, "failureLimit": 3, "consecutiveErrorLimit": 3,
        "consecutiveSuccessLimit": 2,
    }))]}));
    let (status, seen) = run_through(&rules, &[Successful, Error, Successful, Inconclusive]);
    assert_eq!(seen, [Running, Running, Running, Inconclusive]);
    assert_eq!(result_of(&status, "m").consecutive_success, None);
    let (_, seen) = run_through(&rules, &[Successful, Failed, Successful, Successful]);
    assert_eq!(seen, [Running, Running, Running, Successful]);
}

/// `ttlStrategy`: the outcome's own TTL first, then `secondsAfterCompletion`; nothing before the
/// run completes or for an outcome no TTL covers.
#[test]
fn a_completed_run_expires_by_its_outcome_s_ttl_then_by_the_completion_ttl() {
    let spec = |ttl: Value| -> AnalysisRunSpec {
        serde_json::from_value(json!({ "metrics": [web("m", json!({}))], "ttlStrategy": ttl }))
            .expect("a run spec")
    };
    let ended = |phase: AnalysisPhase| AnalysisRunStatus {
        phase,
        completed_at: Some(Time(t(100))),
        ..AnalysisRunStatus::default()
    };
    let all = spec(json!({
        "secondsAfterCompletion": 60, "secondsAfterSuccess": 10, "secondsAfterFailure": 30
    }));
    assert_eq!(
        expires_at(&all, &ended(AnalysisPhase::Successful)),
        Some(t(110))
    );
    assert_eq!(
        expires_at(&all, &ended(AnalysisPhase::Failed)),
        Some(t(130))
    );
    assert_eq!(expires_at(&all, &ended(AnalysisPhase::Error)), Some(t(160)));
    assert_eq!(
        expires_at(&all, &ended(AnalysisPhase::Inconclusive)),
        Some(t(160))
    );
    assert_eq!(expires_at(&all, &ended(AnalysisPhase::Running)), None);

    let failures_only = spec(json!({ "secondsAfterFailure": 0 }));
    assert_eq!(
        expires_at(&failures_only, &ended(AnalysisPhase::Failed)),
        Some(t(100))
    );
    assert_eq!(
        expires_at(&failures_only, &ended(AnalysisPhase::Successful)),
        None
    );

    let mut no_time = ended(AnalysisPhase::Successful);
    no_time.completed_at = None;
    assert_eq!(expires_at(&all, &no_time), None);
    let none = spec(json!(null));
    assert_eq!(expires_at(&none, &ended(AnalysisPhase::Successful)), None);
}
