//! Properties over simulated runs: counters add up, retention holds, a final phase never
//! changes, a failed deciding metric never passes, requeues are in the future (or terminate
//! at once), bounded or terminated runs end, the status round-trips through JSON (restart
//! safety), and dry-run metrics never decide.

use proptest::prelude::*;

use super::*;

/// A metric configuration for the simulator.
#[derive(Clone, Debug)]
struct SimMetric {
    count: Option<u32>,
    interval: u32,
    failure_limit: u32,
    inconclusive_limit: u32,
    error_limit: u32,
    dry_run: bool,
    job: bool,
}

fn sim_metric() -> impl Strategy<Value = SimMetric> {
    (
        prop::option::of(1u32..5),
        1u32..120,
        0u32..3,
        0u32..3,
        0u32..5,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(count, interval, failure_limit, inconclusive_limit, error_limit, dry_run, job)| {
                SimMetric {
                    count,
                    interval,
                    failure_limit: count.map_or(failure_limit, |c| failure_limit.min(c)),
                    inconclusive_limit: count
                        .map_or(inconclusive_limit, |c| inconclusive_limit.min(c)),
                    error_limit,
                    dry_run,
                    job,
                }
            },
        )
}

fn sim_rules(metrics: &[SimMetric]) -> RunRules {
    let spec = json!({
        "metrics": metrics.iter().enumerate().map(|(i, m)| {
            let mut v = web(&format!("m{i}"), json!({
                "interval": format!("{}s", m.interval),
                "failureLimit": m.failure_limit,
                "inconclusiveLimit": m.inconclusive_limit,
                "consecutiveErrorLimit": m.error_limit,
            }));
            if let Some(c) = m.count {
                v["count"] = json!(c);
            }
            v
        }).collect::<Vec<_>>(),
        "dryRun": metrics.iter().enumerate().filter(|(_, m)| m.dry_run)
            .map(|(i, _)| json!({"metricName": format!("^m{i}$")})).collect::<Vec<_>>(),
    });
    rules(spec)
}

fn phase_of(n: u8) -> AnalysisPhase {
    match n % 8 {
        0..=3 => AnalysisPhase::Successful,
        4 => AnalysisPhase::Failed,
        5 => AnalysisPhase::Inconclusive,
        _ => AnalysisPhase::Error,
    }
}

/// Runs the plan against scripted outcomes, checking invariants at every reconcile; returns
/// the final status.
fn simulate(
    metrics: &[SimMetric],
    outcomes: &[u8],
    terminate_at: Option<usize>,
) -> Result<AnalysisRunStatus, TestCaseError> {
    let mut rules = sim_rules(metrics);
    let mut status = AnalysisRunStatus::default();
    let mut now = t(0);
    let mut script = outcomes.iter().copied().cycle();
    let mut completed_phase = None;
    for reconcile in 0..200 {
        if terminate_at == Some(reconcile) {
            rules.terminate = true;
        }
        // Restart safety: the status round-trips through JSON without changing a decision.
        let reread: AnalysisRunStatus =
            serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
        prop_assert_eq!(&reread, &status);
        let due_now = due(&rules, &status, now);
        for d in &due_now {
            let sim = &metrics[d.metric[1..].parse::<usize>().unwrap()];
            let m = match &d.task {
                Task::Terminate(m) => crate::plan::terminated(m.clone(), now),
                Task::Measure if sim.job => {
                    in_flight_until(later(now, StdDuration::from_secs(7)), now)
                }
                Task::Measure | Task::Resume(_) => {
                    finished(phase_of(script.next().unwrap_or(0)), now)
                }
            };
            record(
                rules.metric(&d.metric).unwrap(),
                &mut status,
                m,
                BTreeMap::new(),
                now,
            );
        }
        let a = assess(&rules, &mut status, now);
        for (r, m) in status.metric_results.iter().zip(&rules.metrics) {
            let n = |v: Option<i32>| v.unwrap_or(0);
            prop_assert_eq!(
                n(r.successful) + n(r.failed) + n(r.inconclusive),
                n(r.count)
            );
            prop_assert!(n(r.consecutive_error) <= n(r.error));
            prop_assert!(r.measurements.len() <= m.retention);
            if let Some(c) = m.count {
                prop_assert!(u32::try_from(n(r.count)).unwrap() <= c);
            }
        }
        if let Some(phase) = completed_phase {
            prop_assert_eq!(status.phase, phase, "a final phase never changes");
        }
        if status.phase.is_completed() {
            completed_phase = Some(status.phase);
        }
        // A run never passes while a deciding metric failed.
        if status.phase == AnalysisPhase::Successful {
            for (r, m) in status.metric_results.iter().zip(&rules.metrics) {
                if !m.dry_run {
                    prop_assert!(
                        !matches!(
                            r.phase,
                            AnalysisPhase::Failed
                                | AnalysisPhase::Error
                                | AnalysisPhase::Inconclusive
                        ),
                        "{:?}",
                        status
                    );
                }
            }
        }
        match a.next_due {
            // Measurements in flight are terminated at once when the run stops.
            Some(next) if next == now => {
                let again = due(&rules, &status, now);
                prop_assert!(
                    !again.is_empty() && again.iter().all(|d| matches!(d.task, Task::Terminate(_))),
                    "requeue now only to terminate, got {:?}",
                    again
                );
            }
            Some(next) => {
                prop_assert!(next > now, "requeue in the future, got {next} at {now}");
                now = next;
            }
            None => break,
        }
    }
    Ok(status)
}

proptest! {
    #[test]
    fn simulated_runs_keep_their_invariants(
        metrics in prop::collection::vec(sim_metric(), 1..4),
        outcomes in prop::collection::vec(any::<u8>(), 1..40),
        terminate_at in prop::option::of(0usize..30),
    ) {
        let status = simulate(&metrics, &outcomes, terminate_at)?;
        let deciding: Vec<_> = status
            .metric_results
            .iter()
            .filter(|r| !r.dry_run.unwrap_or(false))
            .collect();
        // Failed is the worst phase: any deciding metric that failed fails a completed run.
        if status.phase.is_completed() && deciding.iter().any(|r| r.phase == AnalysisPhase::Failed) {
            prop_assert_eq!(status.phase, AnalysisPhase::Failed);
        }
        // Bounded metrics, or a termination, always end the run.
        let bounded = metrics.iter().all(|m| m.count.is_some());
        if bounded || terminate_at.is_some() {
            prop_assert!(status.phase.is_completed(), "{:?}", status);
            prop_assert!(settled(&status), "{:?}", status);
        }
    }

    #[test]
    fn dry_run_metrics_never_change_the_verdict(
        real in sim_metric(),
        trial in sim_metric(),
        outcomes in prop::collection::vec(any::<u8>(), 1..20),
    ) {
        let real = SimMetric { dry_run: false, count: Some(real.count.unwrap_or(2)), ..real };
        let trial = SimMetric { dry_run: true, ..trial };
        // The real metric always succeeds; the dry run gets the scripted outcomes.
        let alone = simulate(std::slice::from_ref(&real), &[0], None)?;
        let with = simulate_split(&[real.clone(), trial], &outcomes)?.phase;
        prop_assert_eq!(alone.phase, AnalysisPhase::Successful);
        prop_assert!(matches!(with, AnalysisPhase::Successful | AnalysisPhase::Running));
    }
}

/// Like [`simulate`], but metric `m0` always succeeds and the others follow the script.
fn simulate_split(
    metrics: &[SimMetric],
    outcomes: &[u8],
) -> Result<AnalysisRunStatus, TestCaseError> {
    let rules = sim_rules(metrics);
    let mut status = AnalysisRunStatus::default();
    let mut now = t(0);
    let mut script = outcomes.iter().copied().cycle();
    for _ in 0..200 {
        let a = step(&rules, &mut status, now, |name, task| match task {
            Task::Terminate(m) => crate::plan::terminated(m.clone(), now),
            _ if name == "m0" => finished(AnalysisPhase::Successful, now),
            _ => finished(phase_of(script.next().unwrap_or(0)), now),
        })
        .1;
        if status.phase.is_completed() {
            break;
        }
        match a.next_due {
            Some(next) => now = next,
            None => break,
        }
    }
    Ok(status)
}
