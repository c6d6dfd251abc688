//! The `job` provider: a Kubernetes Job from the metric's template, owned by the AnalysisRun;
//! Successful when the Job completes, Failed when it fails.
//!
//! As in Argo Rollouts, the Job is named `<run uid>.<metric>.<n>` (`n` counts the metric's
//! measurements from 1, so a retried measurement gets a new Job, and a Job created by a
//! controller that then crashed is found again under the same name), labelled
//! `analysisrun.argoproj.io/uid` and annotated with the run's and the metric's names. Sluice
//! shortens the metric part so the name fits the 63 characters a Job's pods carry it in, and
//! lowercases it. The measurement stays in flight (Running) with `resumeAt` set, so the run is
//! looked at again even when no watch on Jobs wakes it; when the run ends, its Jobs are deleted.

use std::{collections::BTreeMap, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::{
    api::batch::v1::Job,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};

use super::{Provider, ProviderError, RunRef, terminated};
use crate::{
    analysis::plan::error_measurement,
    api::{AnalysisPhase, Measurement, Metric, MetricProvider},
    error::{is_already_exists, is_not_found},
};

/// Label on a metric's Jobs holding the run's uid (Argo's key).
pub const RUN_UID_LABEL: &str = "analysisrun.argoproj.io/uid";
/// Annotation on a metric's Jobs holding the run's name (Argo's key).
pub const RUN_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/name";
/// Annotation on a metric's Jobs holding the metric's name (Argo's key).
pub const METRIC_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/metric-name";
/// Key of the Job's name in a measurement's metadata (Argo's key).
pub const JOB_NAME_KEY: &str = "job-name";
/// How long a Job measurement waits before looking again when nothing wakes the run earlier.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// The longest name a Job may have (its pods carry it in a label).
const MAX_JOB_NAME: usize = 63;

/// The Job's name for a run's `attempt`-th measurement of a metric.
pub fn job_name(run_uid: &str, metric: &str, attempt: u32) -> String {
    let suffix = format!(".{attempt}");
    let sanitized: String = metric
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    let room = MAX_JOB_NAME.saturating_sub(run_uid.len() + 1 + suffix.len());
    let metric_part: String = sanitized.chars().take(room).collect();
    let metric_part = metric_part.trim_matches('-');
    if metric_part.is_empty() {
        format!("{run_uid}{suffix}")
    } else {
        format!("{run_uid}.{metric_part}{suffix}")
    }
}

/// The Job a measurement creates: the metric's template, named, labelled, annotated and owned
/// by the run.
pub fn job_for(run: &RunRef, metric: &Metric, attempt: u32) -> Result<Job, String> {
    let MetricProvider::Job(job) = &metric.provider else {
        return Err("not a job metric".to_owned());
    };
    let template = job.metadata.clone().unwrap_or_default();
    let mut labels = template.labels.unwrap_or_default();
    labels.insert(RUN_UID_LABEL.to_owned(), run.uid.clone());
    let mut annotations = template.annotations.unwrap_or_default();
    annotations.insert(RUN_NAME_ANNOTATION.to_owned(), run.name.clone());
    annotations.insert(METRIC_NAME_ANNOTATION.to_owned(), metric.name.clone());
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&run.uid, &metric.name, attempt)),
            namespace: Some(run.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
                kind: "AnalysisRun".to_owned(),
                name: run.name.clone(),
                uid: run.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(job.spec.clone()),
        status: None,
    })
}

/// The verdict of a finished Job: Successful when `Complete`, Failed when `Failed`; `None`
/// while it runs.
pub fn job_outcome(job: &Job) -> Option<AnalysisPhase> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if holds("Failed") {
        Some(AnalysisPhase::Failed)
    } else if holds("Complete") {
        Some(AnalysisPhase::Successful)
    } else {
        None
    }
}

/// Runs Job metrics with a Kubernetes client.
pub struct JobProvider {
    client: Client,
    poll: Duration,
}

impl JobProvider {
    /// A provider creating Jobs with `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            poll: DEFAULT_POLL_INTERVAL,
        }
    }

    /// Sets how long a measurement in flight waits before looking at its Job again.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    fn jobs(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// A measurement still in flight, to look at again after the poll interval.
    fn running(&self, mut measurement: Measurement, now: Timestamp) -> Measurement {
        measurement.phase = AnalysisPhase::Running;
        measurement.finished_at = None;
        measurement.resume_at = Some(Time(now.checked_add(self.poll).unwrap_or(now)));
        measurement
    }

    /// Creates the Job (or adopts the one a previous attempt created), in flight.
    async fn create(&self, run: &RunRef, metric: &Metric, attempt: u32) -> Measurement {
        let now = Timestamp::now();
        let job = match job_for(run, metric, attempt) {
            Ok(job) => job,
            Err(e) => return error_measurement(e, now),
        };
        let name = job.metadata.name.clone().unwrap_or_default();
        let api = self.jobs(&run.namespace);
        match api.create(&PostParams::default(), &job).await {
            Ok(_) => tracing::info!(job = %name, metric = %metric.name, "created analysis job"),
            Err(e) if is_already_exists(&e) => match api.get(&name).await {
                Ok(existing) if owned_by(&existing, &run.uid) => {
                    tracing::info!(job = %name, "analysis job already exists; adopting it");
                }
                Ok(_) => {
                    return error_measurement(
                        format!("job {name} exists and belongs to another AnalysisRun"),
                        now,
                    );
                }
                Err(e) => return error_measurement(format!("reading job {name}: {e}"), now),
            },
            Err(e) => return error_measurement(format!("creating job {name}: {e}"), now),
        }
        let measurement = Measurement {
            started_at: Some(Time(now)),
            metadata: BTreeMap::from([(JOB_NAME_KEY.to_owned(), name)]),
            ..Measurement::default()
        };
        self.running(measurement, now)
    }

    /// Deletes one Job and its pods; a Job already gone is fine.
    async fn delete(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        match self
            .jobs(namespace)
            .delete(name, &DeleteParams::foreground())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the metric's Jobs of this run but the newest `keep`.
    async fn delete_old(
        &self,
        run: &RunRef,
        metric: &Metric,
        keep: usize,
    ) -> Result<(), ProviderError> {
        let params = ListParams::default().labels(&format!("{RUN_UID_LABEL}={}", run.uid));
        let mut jobs: Vec<Job> = self
            .jobs(&run.namespace)
            .list(&params)
            .await
            .map_err(|source| ProviderError::Kube {
                action: format!("listing the jobs of AnalysisRun {}", run.name),
                source,
            })?
            .items
            .into_iter()
            .filter(|j| {
                j.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(METRIC_NAME_ANNOTATION))
                    .is_some_and(|m| *m == metric.name)
            })
            .collect();
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let excess = jobs.len().saturating_sub(keep);
        for job in jobs.into_iter().take(excess) {
            let name = job.metadata.name.unwrap_or_default();
            self.delete(&run.namespace, &name)
                .await
                .map_err(|source| ProviderError::Kube {
                    action: format!("deleting job {name}"),
                    source,
                })?;
            tracing::info!(job = %name, "deleted analysis job");
        }
        Ok(())
    }
}

/// Whether a Job's controller is the run of that uid.
fn owned_by(job: &Job, uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// The Job a measurement created, from its metadata.
fn job_of(measurement: &Measurement) -> Option<&str> {
    measurement
        .metadata
        .get(JOB_NAME_KEY)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

impl Provider for JobProvider {
    fn kind(&self) -> &'static str {
        "job"
    }

    fn measure<'a>(
        &'a self,
        run: &'a RunRef,
        metric: &'a Metric,
        attempt: u32,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(self.create(run, metric, attempt))
    }

    fn resume<'a>(
        &'a self,
        run: &'a RunRef,
        _metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let now = Timestamp::now();
            let Some(name) = job_of(&measurement).map(str::to_owned) else {
                return error_measurement("job metadata reference missing", now);
            };
            match self.jobs(&run.namespace).get(&name).await {
                Ok(job) => match job_outcome(&job) {
                    Some(phase) => {
                        tracing::info!(job = %name, ?phase, "analysis job finished");
                        Measurement {
                            phase,
                            finished_at: Some(Time(now)),
                            resume_at: None,
                            ..measurement
                        }
                    }
                    None => self.running(measurement, now),
                },
                Err(e) => Measurement {
                    phase: AnalysisPhase::Error,
                    message: Some(format!("reading job {name}: {e}")),
                    finished_at: Some(Time(now)),
                    resume_at: None,
                    ..measurement
                },
            }
        })
    }

    fn terminate<'a>(
        &'a self,
        run: &'a RunRef,
        _metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let now = Timestamp::now();
            let Some(name) = job_of(&measurement).map(str::to_owned) else {
                return terminated(measurement, now);
            };
            match self.delete(&run.namespace, &name).await {
                Ok(()) => {
                    tracing::info!(job = %name, "analysis job terminated");
                    terminated(measurement, now)
                }
                Err(e) => Measurement {
                    phase: AnalysisPhase::Error,
                    message: Some(format!("deleting job {name}: {e}")),
                    finished_at: Some(Time(now)),
                    resume_at: None,
                    ..measurement
                },
            }
        })
    }

    fn garbage_collect<'a>(
        &'a self,
        run: &'a RunRef,
        metric: &'a Metric,
        limit: usize,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.delete_old(run, metric, limit))
    }

    fn finish<'a>(
        &'a self,
        run: &'a RunRef,
        metric: &'a Metric,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.delete_old(run, metric, 0))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run() -> RunRef {
        RunRef {
            name: "web-6d4f-2".into(),
            namespace: "shop".into(),
            uid: "0d6a2f5e-8c1b-4b9e-9d0a-1e2f3a4b5c6d".into(),
        }
    }

    fn metric(name: &str) -> Metric {
        serde_json::from_value(json!({
            "name": name,
            "provider": {"job": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "check", "image": "busybox"}],
                }}},
            }},
        }))
        .expect("a job metric")
    }

    #[test]
    fn names_fit_a_label_and_follow_argo() {
        let uid = run().uid;
        assert_eq!(job_name(&uid, "smoke", 1), format!("{uid}.smoke.1"));
        let long = job_name(&uid, "A_Very_Long_Metric_Name_Indeed_Much_Too_Long", 12);
        assert!(long.len() <= 63, "{long} ({})", long.len());
        assert!(long.starts_with(&format!("{uid}.a-very-long")), "{long}");
        assert!(long.ends_with(".12"), "{long}");
        assert_eq!(job_name(&uid, "___", 3), format!("{uid}.3"));
    }

    #[test]
    fn the_job_is_owned_labelled_and_annotated() {
        let job = job_for(&run(), &metric("smoke"), 2).unwrap();
        let meta = &job.metadata;
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[RUN_UID_LABEL], run().uid);
        assert_eq!(labels["team"], "a");
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations[RUN_NAME_ANNOTATION], "web-6d4f-2");
        assert_eq!(annotations[METRIC_NAME_ANNOTATION], "smoke");
        assert_eq!(annotations["note"], "x");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.api_version.as_str()),
            ("AnalysisRun", "argoproj.io/v1alpha1")
        );
        assert_eq!(owner.uid, run().uid);
        assert_eq!(owner.controller, Some(true));
        assert!(owned_by(&job, &run().uid));
        assert_eq!(job.spec.unwrap().backoff_limit, Some(0));
    }

    #[test]
    fn outcome_from_conditions() {
        let with = |conditions: serde_json::Value| -> Job {
            serde_json::from_value(json!({"status": {"conditions": conditions}})).unwrap()
        };
        assert_eq!(job_outcome(&Job::default()), None);
        assert_eq!(
            job_outcome(&with(json!([{"type": "Complete", "status": "True"}]))),
            Some(AnalysisPhase::Successful)
        );
        assert_eq!(
            job_outcome(&with(json!([{"type": "Failed", "status": "True"}]))),
            Some(AnalysisPhase::Failed)
        );
        assert_eq!(
            job_outcome(&with(json!([
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "False"},
            ]))),
            None
        );
    }
}
