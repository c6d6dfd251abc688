//! The condition evaluator with real worker processes (the `sluice` binary): a condition that
//! would take the controller's memory or time ends as an Error naming the budget it exceeded,
//! the controller's own memory stays put, and the pool goes on evaluating right after.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use sluice::analysis::evaluator::{Evaluator, WORKER_ARG};
use sluice_analysis::{
    condition::{ConditionError, MetricValue},
    limits::ConditionBudget,
};
use sluice_api::{AnalysisPhase, Metric};

/// The `sluice` binary, whose `__condition-worker` mode the evaluator runs.
const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn evaluator(budget: ConditionBudget) -> Arc<Evaluator> {
    Evaluator::with_worker(budget, SLUICE)
}

fn metric(success: &str, failure: Option<&str>) -> Metric {
    serde_json::from_value(serde_json::json!({
        "name": "m",
        "successCondition": success,
        "failureCondition": failure,
        "provider": {"web": {"url": "http://x"}},
    }))
    .expect("a metric")
}

/// This process's resident memory (`VmRSS`), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// A normal condition gives the right phase: the pool works (again).
async fn evaluates_normally(evaluator: &Evaluator) {
    assert_eq!(
        evaluator
            .assess(&metric("result[0] >= 0.95", None), &vec![0.97].into())
            .await,
        Ok(AnalysisPhase::Successful)
    );
    assert_eq!(
        evaluator
            .assess(&metric("isNaN(result[0])", None), &vec![f64::NAN].into())
            .await,
        Ok(AnalysisPhase::Successful)
    );
}

#[tokio::test]
async fn a_huge_range_from_the_result_ends_on_the_memory_budget() {
    let evaluator = evaluator(ConditionBudget::default());
    assert!(evaluator.isolated());
    evaluates_normally(&evaluator).await;
    let before = rss_bytes();
    // `len(0..200000000) > 0` is refused statically; from the result, it passes the caps and
    // would take 14 GB.
    let huge = metric("len(0..result) > 0", None);
    let error = evaluator
        .assess(&huge, &MetricValue::Int(200_000_000))
        .await
        .expect_err("200 million numbers do not fit in 64 MiB");
    assert_eq!(
        error,
        ConditionError::MemoryBudget {
            condition: "len(0..result) > 0".to_owned(),
            limit: 64 << 20,
        }
    );
    assert_eq!(
        error.to_string(),
        "condition \"len(0..result) > 0\" exceeded its memory budget of 64 MiB"
    );
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "the controller grew by {grown} bytes evaluating it"
    );
    evaluates_normally(&evaluator).await;
}

#[tokio::test]
async fn memory_that_grows_step_by_step_is_stopped_at_the_budget() {
    // The memory budget is what must stop it: the time budget is made long enough that a loaded
    // machine cannot reach it first (the default's 500 ms is a few times what the growth takes).
    let evaluator = evaluator(ConditionBudget {
        max_time: std::time::Duration::from_secs(10),
        ..ConditionBudget::default()
    });
    let before = rss_bytes();
    // 100,000 strings of 8 KiB: 800 MB, one small allocation at a time.
    let growing = metric(
        "len(map(0..result, {repeat(\"abcdefgh\", 1024)})) > 0",
        None,
    );
    let error = evaluator
        .assess(&growing, &MetricValue::Int(100_000))
        .await
        .expect_err("800 MB do not fit in 64 MiB");
    assert!(
        matches!(error, ConditionError::MemoryBudget { limit, .. } if limit == 64 << 20),
        "{error}"
    );
    assert!(rss_bytes().saturating_sub(before) < 32 << 20);
    evaluates_normally(&evaluator).await;
    // The same condition on a small result is fine.
    assert_eq!(
        evaluator.assess(&growing, &MetricValue::Int(10)).await,
        Ok(AnalysisPhase::Successful)
    );
}

#[tokio::test]
async fn a_condition_that_runs_too_long_is_stopped_at_the_time_budget() {
    let evaluator = evaluator(ConditionBudget::default());
    evaluates_normally(&evaluator).await;
    // 400 million steps, little memory.
    let slow = metric("all(0..result, {all(0..result, {# >= 0})})", None);
    let started = Instant::now();
    let error = evaluator
        .assess(&slow, &MetricValue::Int(20_000))
        .await
        .expect_err("far past 500ms");
    let took = started.elapsed();
    assert_eq!(
        error.to_string(),
        "condition \"all(0..result, {all(0..result, {# >= 0})})\" exceeded its time budget of 500ms"
    );
    assert!(
        took < Duration::from_secs(5),
        "stopped after {took:?}, not at the budget"
    );
    evaluates_normally(&evaluator).await;
}

#[tokio::test]
async fn workers_answer_as_the_in_process_evaluator_does() {
    let isolated = evaluator(ConditionBudget::default());
    let local = Evaluator::in_process(ConditionBudget::default());
    let web = |v: serde_json::Value| MetricValue::from(&v);
    let cases: Vec<(Metric, MetricValue)> = vec![
        (metric("isNaN(result[0])", None), vec![f64::NAN].into()),
        (metric("isNaN(result[0])", None), vec![0.5].into()),
        (metric("isInf(result)", None), f64::NEG_INFINITY.into()),
        (
            metric("result > 0.5", Some("result < 0.2")),
            MetricValue::Float(0.3),
        ),
        (
            metric("all(result, {# < 100})", None),
            vec![1.0, 99.0].into(),
        ),
        (
            metric("default(result, 0) < 5", None),
            web(serde_json::json!(null)),
        ),
        (
            metric("result.ok && result.items[1] == \"é\"", None),
            web(serde_json::json!({"ok": true, "items": [1, "é"]})),
        ),
        // Errors: an index out of range, not a boolean, an unknown variable.
        (metric("result[0] >= 0.95", None), Vec::<f64>::new().into()),
        (metric("result[0] + 1", None), vec![1.0].into()),
        (metric("results[0] > 1", None), vec![1.0].into()),
        // Refused before any worker sees it.
        (metric("len(0..200000000) > 0", None), MetricValue::Nil),
    ];
    for (metric, value) in cases {
        let remote = isolated.assess(&metric, &value).await;
        let here = local.assess(&metric, &value).await;
        assert_eq!(remote, here, "{metric:?} on {value:?}");
    }
}

#[tokio::test]
async fn many_evaluations_at_once_share_the_pool() {
    let evaluator = evaluator(ConditionBudget::default());
    let slow = metric("all(0..result, {all(0..result, {# >= 0})})", None);
    let fine = metric("result[0] < 10", None);
    let runs = (0..24).map(|i| {
        let evaluator = Arc::clone(&evaluator);
        let (slow, fine) = (slow.clone(), fine.clone());
        async move {
            if i % 8 == 0 {
                evaluator
                    .assess(&slow, &MetricValue::Int(20_000))
                    .await
                    .map_err(|e| matches!(e, ConditionError::TimeBudget { .. }))
            } else {
                evaluator
                    .assess(&fine, &vec![f64::from(i)].into())
                    .await
                    .map_err(|_| false)
            }
        }
    });
    let outcomes = futures::future::join_all(runs).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match (i % 8 == 0, outcome) {
            (true, Err(true)) => {}
            (false, Ok(phase)) => assert_eq!(
                phase,
                if i < 10 {
                    AnalysisPhase::Successful
                } else {
                    AnalysisPhase::Failed
                },
                "run {i}"
            ),
            (_, other) => panic!("run {i}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_worker_that_cannot_start_is_an_error_not_an_unbounded_evaluation() {
    let evaluator = Evaluator::with_worker(ConditionBudget::default(), "/nonexistent/sluice");
    let error = evaluator
        .assess(&metric("result > 1", None), &2.0.into())
        .await
        .expect_err("no worker");
    assert!(
        matches!(error, ConditionError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("/nonexistent/sluice"), "{error}");
}

#[test]
fn a_worker_exits_when_the_controller_closes_its_input() {
    let budget = serde_json::to_string(&ConditionBudget::default()).expect("a budget");
    let mut worker = Command::new(SLUICE)
        .args([WORKER_ARG, budget.as_str()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the worker starts");
    let mut ready = String::new();
    BufReader::new(worker.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("a line");
    assert_eq!(ready, "ready\n");
    drop(worker.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = worker.try_wait().expect("status") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker outlived its input");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_worker_whose_controller_vanished_exits_while_its_input_is_still_open() {
    let budget = serde_json::to_string(&ConditionBudget::default()).expect("a budget");
    // A shell starts the worker on the shell's (open) standard input, prints its pid and
    // exits: the worker is orphaned, though nothing closed its input.
    let mut shell = Command::new("sh")
        .args([
            "-c",
            // fd 3: the shell's input, which an asynchronous command would not get as fd 0.
            "exec 3<&0; \"$0\" \"$1\" \"$2\" $$ <&3 >/dev/null & echo $!",
            SLUICE,
            WORKER_ARG,
            budget.as_str(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let mut pid = String::new();
    BufReader::new(shell.stdout.take().expect("stdout"))
        .read_line(&mut pid)
        .expect("the worker's pid");
    let pid = pid.trim().to_owned();
    // Held open until the end (`wait` would close it).
    let input = shell.stdin.take();
    assert!(shell.wait().expect("sh exits").success());
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() {
        assert!(
            Instant::now() < deadline,
            "the orphaned worker {pid} is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(input);
}

/// The pids of this process's workers whose budget argument contains `marker`.
fn workers_with(marker: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| {
            let pid = entry.ok()?.file_name().into_string().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = stat.rsplit(')').next()?;
            let mut fields = after_name.split_whitespace();
            let (state, parent) = (fields.next()?, fields.next()?);
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            (parent == me
                && state != "Z"
                && cmdline.contains(WORKER_ARG)
                && cmdline.contains(marker))
            .then_some(pid)
        })
        .collect()
}

#[tokio::test]
async fn a_worker_killed_while_idle_is_replaced_without_an_error() {
    // A budget of its own tells this test's workers from the other tests'.
    let budget = ConditionBudget {
        max_nodes: 511,
        ..ConditionBudget::default()
    };
    let evaluator = evaluator(budget);
    evaluates_normally(&evaluator).await;
    let idle = workers_with("\"max_nodes\":511");
    assert!(!idle.is_empty(), "no idle worker found");
    for pid in &idle {
        let killed = Command::new("kill")
            .args(["-9", pid])
            .status()
            .expect("kill");
        assert!(killed.success());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !workers_with("\"max_nodes\":511").is_empty() {
        assert!(Instant::now() < deadline, "the killed workers still run");
        std::thread::sleep(Duration::from_millis(20));
    }
    evaluates_normally(&evaluator).await;
}
