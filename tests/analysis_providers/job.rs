//! The job provider on the local cluster (kwok: a Job's pod exits 0, or 1 with the
//! `sluice.dev/pod-fate: fail` annotation, after `sluice.dev/complete-after`): Jobs owned by
//! the run, Successful and Failed verdicts, a pod that cannot pull its image (an Error, not a
//! wait for ever), termination, garbage collection and clean-up; and
//! a Job is never shared between metrics nor adopted when this measurement did not create it.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::{Api, ResourceExt, api::PostParams};
use serde_json::{Value, json};
use sluice::analysis::{
    evaluator::Evaluator,
    providers::{
        Providers, RunRef,
        job::{job_for, job_name},
    },
};
use sluice_analysis::{limits::AnalysisLimits, plan::Task};
use sluice_api::{
    AnalysisPhase, AnalysisRun, Measurement, Metric,
    vocab::{JOB_NAME_KEY, METRIC_NAME_ANNOTATION, RUN_UID_LABEL},
};
use sluice_testkit::{TestNamespace, install_crds};

use super::metric;

/// A job metric whose pod carries `annotations` (the kwok fate).
fn job_metric(name: &str, annotations: Value) -> Metric {
    metric(json!({
        "name": name,
        "provider": {"job": {
            "metadata": {"labels": {"purpose": "analysis-test"}},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "check", "image": "busybox"}],
                    },
                },
            },
        }},
    }))
}

/// Resumes a measurement until it finishes, failing after `seconds`.
async fn until_finished(
    providers: &Providers,
    run: &RunRef,
    metric: &Metric,
    mut m: Measurement,
    seconds: u64,
) -> Measurement {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while m.phase == AnalysisPhase::Running {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job of {} did not finish within {seconds} s: {m:?}",
            metric.name
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        m = providers
            .perform(run, metric, Task::Resume(m.clone()), 0)
            .await;
    }
    m
}

/// The names of the run's Jobs that are not being deleted.
async fn live_jobs(api: &Api<Job>, run: &RunRef) -> Vec<String> {
    let params = kube::api::ListParams::default().labels(&format!("{RUN_UID_LABEL}={}", run.uid));
    let mut names: Vec<String> = api
        .list(&params)
        .await
        .expect("listing jobs")
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

/// Creates the AnalysisRun `name` measuring `metric` (Jobs are owned by it), and the providers
/// that measure it on the cluster.
async fn run_with_providers(ns: &TestNamespace, name: &str, metric: Metric) -> (RunRef, Providers) {
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {"name": name},
        "spec": {"metrics": [metric]},
    }))
    .expect("a run");
    let run = ns
        .api::<AnalysisRun>()
        .create(&PostParams::default(), &run)
        .await
        .expect("creating the run");
    let providers = Providers::new(
        Some(ns.client.clone()),
        &AnalysisLimits::default(),
        Evaluator::new(Default::default()),
    )
    .expect("providers");
    (RunRef::of(&run), providers)
}

#[tokio::test]
async fn jobs_pass_fail_terminate_and_are_cleaned_up() {
    let ns = TestNamespace::new("analysis-jobs").await;
    install_crds(&ns.client).await;
    let (run, providers) = run_with_providers(&ns, "checks", job_metric("pass", json!({}))).await;
    let jobs: Api<Job> = ns.api();

    // A Job that succeeds: created in flight, owned by the run, then Successful.
    let pass = job_metric("pass", json!({"sluice.dev/complete-after": "1s"}));
    let m = providers.perform(&run, &pass, Task::Measure, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:?}");
    assert!(m.resume_at.is_some() && m.finished_at.is_none(), "{m:?}");
    let name = m.metadata[JOB_NAME_KEY].clone();
    assert_eq!(name, format!("{}.pass.1", run.uid));
    let job = jobs.get(&name).await.expect("the job");
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("AnalysisRun", run.uid.as_str())
    );
    assert_eq!(job.annotations()[METRIC_NAME_ANNOTATION], "pass");
    assert_eq!(job.labels()["purpose"], "analysis-test");
    // Measuring the same attempt again (a controller restarted before recording) adopts it.
    let again = providers.perform(&run, &pass, Task::Measure, 1).await;
    assert_eq!(again.phase, AnalysisPhase::Running, "{again:?}");
    let done = until_finished(&providers, &run, &pass, m, 90).await;
    assert_eq!(done.phase, AnalysisPhase::Successful, "{done:?}");
    assert!(done.finished_at.is_some() && done.resume_at.is_none());

    // A Job that fails.
    let fail = job_metric("fail", json!({"sluice.dev/pod-fate": "fail"}));
    let m = providers.perform(&run, &fail, Task::Measure, 1).await;
    let done = until_finished(&providers, &run, &fail, m, 90).await;
    assert_eq!(done.phase, AnalysisPhase::Failed, "{done:?}");

    // A Job still running when the run ends: terminated, its Job deleted.
    let slow = job_metric("slow", json!({"sluice.dev/complete-after": "10m"}));
    let m = providers.perform(&run, &slow, Task::Measure, 1).await;
    let slow_job = m.metadata[JOB_NAME_KEY].clone();
    let m = providers.perform(&run, &slow, Task::Terminate(m), 1).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.message.as_deref(), Some("Metric Terminated"));
    assert!(!live_jobs(&jobs, &run).await.contains(&slow_job));

    // Garbage collection keeps the newest Jobs of a metric; finishing removes them all.
    let m = providers.perform(&run, &pass, Task::Measure, 2).await;
    let second = m.metadata[JOB_NAME_KEY].clone();
    let provider = providers.for_metric(&pass).expect("the job provider");
    provider
        .garbage_collect(&run, &pass, 1)
        .await
        .expect("garbage collection");
    let live = live_jobs(&jobs, &run).await;
    assert!(live.contains(&second) && !live.contains(&name), "{live:?}");
    for metric in [&pass, &fail] {
        provider.finish(&run, metric).await.expect("clean-up");
    }
    assert_eq!(live_jobs(&jobs, &run).await, Vec::<String>::new());

    // A Job whose pod cannot pull its image would wait for ever: an Error naming why.
    let stuck = job_metric("stuck", json!({"sluice.dev/pod-fate": "image-pull"}));
    let m = providers.perform(&run, &stuck, Task::Measure, 1).await;
    let done = until_finished(&providers, &run, &stuck, m, 60).await;
    assert_eq!(done.phase, AnalysisPhase::Error, "{done:?}");
    let message = done.message.unwrap_or_default();
    assert!(
        message.contains("cannot start") && message.contains("ImagePullBackOff"),
        "{message}"
    );

    // A Job that disappeared is an Error, not a success.
    let gone = Measurement {
        phase: AnalysisPhase::Running,
        metadata: [(JOB_NAME_KEY.to_owned(), "no-such-job".to_owned())].into(),
        ..Measurement::default()
    };
    let m = providers.perform(&run, &pass, Task::Resume(gone), 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
}

#[tokio::test]
async fn job_metrics_never_share_or_adopt_a_job_they_did_not_create() {
    let ns = TestNamespace::new("analysis-job-names").await;
    install_crds(&ns.client).await;
    let (run, providers) = run_with_providers(&ns, "names", job_metric("a_b", json!({}))).await;
    let jobs: Api<Job> = ns.api();

    // Two metrics whose names sanitise alike: a Job each, each its own verdict.
    let failing = job_metric("a_b", json!({"sluice.dev/pod-fate": "fail"}));
    let passing = job_metric("a-b", json!({"sluice.dev/complete-after": "1s"}));
    let first = providers.perform(&run, &failing, Task::Measure, 1).await;
    let second = providers.perform(&run, &passing, Task::Measure, 1).await;
    assert_eq!(first.phase, AnalysisPhase::Running, "{first:?}");
    assert_eq!(second.phase, AnalysisPhase::Running, "{second:?}");
    assert_ne!(
        first.metadata[JOB_NAME_KEY], second.metadata[JOB_NAME_KEY],
        "two metrics share a Job"
    );
    let failed = until_finished(&providers, &run, &failing, first, 90).await;
    let passed = until_finished(&providers, &run, &passing, second, 90).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");

    // A Job under the name a measurement would create, owned by the run but made for another
    // metric (or by someone else): an Error naming the collision, never adopted nor deleted.
    let squatted = job_metric("squatted", json!({"sluice.dev/complete-after": "1s"}));
    let name = job_name(&run.uid, "squatted", 1);
    let mut squatter = job_for(&run, &job_metric("other", json!({})), 1).expect("a job");
    squatter.metadata.name = Some(name.clone());
    jobs.create(&PostParams::default(), &squatter)
        .await
        .expect("creating the squatting job");
    let m = providers.perform(&run, &squatted, Task::Measure, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    let text = m.message.clone().unwrap_or_default();
    assert!(
        text.contains(&name) && text.contains("not adopted") && text.contains("\"other\""),
        "{text}"
    );
    // A measurement pointed at that Job (a status edited by hand) is no verdict either, and
    // terminating it leaves the Job alone.
    let pointed = Measurement {
        phase: AnalysisPhase::Running,
        metadata: [(JOB_NAME_KEY.to_owned(), name.clone())].into(),
        ..Measurement::default()
    };
    let m = until_finished(&providers, &run, &squatted, pointed.clone(), 10).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    let m = providers
        .perform(&run, &squatted, Task::Terminate(pointed), 1)
        .await;
    assert_eq!(m.message.as_deref(), Some("Metric Terminated"));
    let job = jobs
        .get(&name)
        .await
        .expect("the squatting job is still there");
    assert!(job.metadata.deletion_timestamp.is_none());
}
