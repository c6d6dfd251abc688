//! The `job` provider: a Kubernetes Job from the metric's template, owned by the AnalysisRun;
//! Successful when the Job completes, Failed when it fails.
//!
//! As in Argo Rollouts, the Job is named `<run uid>.<metric>.<n>` (`n` counts the metric's
//! measurements from 1, so a retried measurement gets a new Job, and a Job created by a
//! controller that then crashed is found again under the same name), labelled
//! `analysisrun.argoproj.io/uid` and annotated with the run's and the metric's names. A metric
//! name that is not already a short lowercase DNS label is sanitised and shortened so the name
//! fits the 63 characters a Job's pods carry it in, and a hash of the exact metric name is
//! added (`<uid>.<shortened>.<hash>.<n>`), so two metrics never share a Job. The measurement
//! stays in flight (Running) with `resumeAt` set, so the run is looked at again even when no
//! watch on Jobs wakes it; when the run ends, its Jobs are deleted.
//!
//! A Job is only ever read, adopted or deleted when it is this run's Job for this metric: its
//! controller is the run (owner uid), its uid label is the run's, and its metric annotation is
//! the metric's name. A Job of that name that is anything else is an Error measurement naming
//! the collision, never a verdict read from someone else's Job.

use std::{collections::BTreeMap, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::{
    api::{batch::v1::Job, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams, Preconditions},
};
use sluice_analysis::plan::error_measurement;
use sluice_api::{
    AnalysisPhase, Measurement, Metric, MetricProvider,
    model::cut,
    vocab::{
        GROUP, JOB_NAME_KEY, METRIC_NAME_ANNOTATION, RUN_NAME_ANNOTATION, RUN_UID_LABEL, VERSION,
    },
};

use super::{Provider, ProviderError, RunRef, terminated};
use crate::error::{is_already_exists, is_not_found};

/// How long a Job measurement waits before looking again when nothing wakes the run earlier.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// The longest name a Job may have (its pods carry it in a label).
const MAX_JOB_NAME: usize = 63;

/// Hex digits of the metric name's hash in a Job's name.
const HASH_DIGITS: usize = 10;

/// A hash of a metric's name that is the same in every build and process (64-bit FNV-1a), to
/// tell apart metrics whose names sanitise or shorten to the same text.
fn name_hash(metric: &str) -> String {
    let hash = metric.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")[..HASH_DIGITS].to_owned()
}

/// The Job's name for a run's `attempt`-th measurement of a metric: `<uid>.<metric>.<n>` (as
/// in Argo) when the metric's name is a lowercase DNS label that fits, otherwise
/// `<uid>.<sanitised, shortened>.<hash>.<n>`. The two forms have a different number of dots,
/// so no metric's name is ever another's.
pub fn job_name(run_uid: &str, metric: &str, attempt: u32) -> String {
    let suffix = format!(".{attempt}");
    let room = MAX_JOB_NAME.saturating_sub(run_uid.len() + 1 + suffix.len());
    let plain = !metric.is_empty()
        && metric.len() <= room
        && metric
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !metric.starts_with('-')
        && !metric.ends_with('-');
    if plain {
        return format!("{run_uid}.{metric}{suffix}");
    }
    let hash = name_hash(metric);
    let room = room.saturating_sub(HASH_DIGITS + 1);
    let sanitized: String = metric
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .take(room)
        .collect();
    let metric_part = match sanitized.trim_matches('-') {
        "" => "m",
        part => part,
    };
    format!("{run_uid}.{metric_part}.{hash}{suffix}")
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
                api_version: format!("{}/{}", GROUP, VERSION),
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

/// Why a pod's containers wait that no retry by the kubelet will end on its own: the image
/// cannot be pulled (backing off after failed pulls), is not a valid name, or may not be pulled.
const CANNOT_START: [&str; 3] = ["ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"];

/// The most of the kubelet's message kept in a measurement.
const KUBELET_MESSAGE_LIMIT: usize = 256;

/// The label the Job controller puts on a Job's pods, naming the Job.
const POD_JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Why a Job's pod cannot start, if one of its containers waits on an image it cannot get: the
/// Job would otherwise wait for ever, and its measurement with it. A measurement, not a verdict:
/// the check never ran.
pub fn cannot_start(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    containers.into_iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        CANNOT_START.contains(&reason).then(|| {
            let message = cut(
                waiting.message.as_deref().unwrap_or_default(),
                KUBELET_MESSAGE_LIMIT,
            );
            format!(
                "pod {} cannot start: container {} is waiting: {reason}{}{message}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                c.name,
                if message.is_empty() { "" } else { ": " },
            )
        })
    })
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

    fn jobs(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Why the Job `name` cannot run, if one of its pods cannot start ([`cannot_start`]); a pod
    /// list that fails says nothing (the Job is looked at again).
    async fn stuck(&self, namespace: &str, name: &str) -> Option<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default()
            .labels(&format!("{POD_JOB_NAME_LABEL}={name}"))
            .limit(10);
        match pods.list(&params).await {
            Ok(list) => list.items.iter().find_map(cannot_start),
            Err(e) => {
                tracing::debug!(job = %name, error = %e, "listing the job's pods failed");
                None
            }
        }
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
                Ok(existing) => match not_ours(&existing, run, &metric.name) {
                    None => {
                        tracing::info!(job = %name, "analysis job already exists; adopting it");
                    }
                    Some(reason) => {
                        tracing::warn!(job = %name, metric = %metric.name, %reason, "analysis job name taken");
                        return error_measurement(
                            collision(&name, run, &metric.name, &reason),
                            now,
                        );
                    }
                },
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

    /// Deletes one Job (of that uid, when given) and its pods; a Job already gone is fine.
    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<String>,
    ) -> Result<(), kube::Error> {
        let params = DeleteParams::foreground().preconditions(Preconditions {
            uid,
            resource_version: None,
        });
        match self.jobs(namespace).delete(name, &params).await {
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
            .filter(|j| not_ours(j, run, &metric.name).is_none())
            .collect();
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let excess = jobs.len().saturating_sub(keep);
        for job in jobs.into_iter().take(excess) {
            let name = job.metadata.name.unwrap_or_default();
            self.delete(&run.namespace, &name, job.metadata.uid)
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

/// Why a Job is not the one this run created for this metric, `None` when it is: its
/// controller must be the run, its uid label the run's uid, its metric annotation the metric.
pub fn not_ours(job: &Job, run: &RunRef, metric: &str) -> Option<String> {
    if run.uid.is_empty() || !owned_by(job, &run.uid) {
        return Some(format!(
            "it is not controlled by AnalysisRun {} (uid {})",
            run.name, run.uid
        ));
    }
    let label = job
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(RUN_UID_LABEL));
    if label.map(String::as_str) != Some(run.uid.as_str()) {
        return Some(format!("its {RUN_UID_LABEL} label is {label:?}"));
    }
    let annotated = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(METRIC_NAME_ANNOTATION));
    if annotated.map(String::as_str) != Some(metric) {
        return Some(format!("it is the job of metric {annotated:?}"));
    }
    None
}

/// The message of a Job name already taken by a Job that is not this measurement's.
fn collision(name: &str, run: &RunRef, metric: &str, reason: &str) -> String {
    format!(
        "job {name} already exists and is not AnalysisRun {}'s job for metric {metric:?} \
         ({reason}); it is not adopted",
        run.name
    )
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
        metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let now = Timestamp::now();
            let Some(name) = job_of(&measurement).map(str::to_owned) else {
                return error_measurement("job metadata reference missing", now);
            };
            let found = self.jobs(&run.namespace).get(&name).await.map(|job| {
                let reason = not_ours(&job, run, &metric.name);
                (job, reason)
            });
            match found {
                Ok((_, Some(reason))) => Measurement {
                    phase: AnalysisPhase::Error,
                    message: Some(collision(&name, run, &metric.name, &reason)),
                    finished_at: Some(Time(now)),
                    resume_at: None,
                    ..measurement
                },
                Ok((job, None)) => match job_outcome(&job) {
                    Some(phase) => {
                        tracing::info!(job = %name, ?phase, "analysis job finished");
                        Measurement {
                            phase,
                            finished_at: Some(Time(now)),
                            resume_at: None,
                            ..measurement
                        }
                    }
                    None => match self.stuck(&run.namespace, &name).await {
                        Some(why) => {
                            tracing::warn!(job = %name, %why, "analysis job cannot start");
                            Measurement {
                                phase: AnalysisPhase::Error,
                                message: Some(format!("job {name}: {why}")),
                                finished_at: Some(Time(now)),
                                resume_at: None,
                                ..measurement
                            }
                        }
                        None => self.running(measurement, now),
                    },
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
        metric: &'a Metric,
        measurement: Measurement,
    ) -> BoxFuture<'a, Measurement> {
        Box::pin(async move {
            let now = Timestamp::now();
            let Some(name) = job_of(&measurement).map(str::to_owned) else {
                return terminated(measurement, now);
            };
            // Only this run's Job is deleted, and only the one that was looked at (its uid).
            let uid = match self.jobs(&run.namespace).get(&name).await {
                Ok(job) => match not_ours(&job, run, &metric.name) {
                    None => job.metadata.uid,
                    Some(reason) => {
                        tracing::warn!(job = %name, %reason, "not deleting a job this run did not create");
                        return terminated(measurement, now);
                    }
                },
                Err(e) if is_not_found(&e) => return terminated(measurement, now),
                Err(e) => {
                    return Measurement {
                        phase: AnalysisPhase::Error,
                        message: Some(format!("reading job {name}: {e}")),
                        finished_at: Some(Time(now)),
                        resume_at: None,
                        ..measurement
                    };
                }
            };
            match self.delete(&run.namespace, &name, uid).await {
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
            started_at: None,
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
        let folded = job_name(&uid, "___", 3);
        assert!(folded.starts_with(&format!("{uid}.m.")) && folded.ends_with(".3"));
    }

    /// A valid Job name: a DNS subdomain of at most 63 characters (its pods' label).
    fn valid(name: &str) -> bool {
        name.len() <= 63
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn metrics_whose_names_fold_or_shorten_alike_get_different_jobs() {
        let uid = run().uid;
        let long = "error-rate-of-the-checkout-service-in-the-eu-west-region";
        let names = [
            "a-b",
            "a_b",
            "A-B",
            "a.b",
            "a b",
            "___",
            "-",
            "m",
            &format!("{long}-p50"),
            &format!("{long}-p99"),
            &format!("{long}_p99"),
            "a-b.0123456789",
        ];
        let mut seen = std::collections::BTreeMap::new();
        for attempt in [1, 9, 10, u32::MAX] {
            for metric in names {
                let name = job_name(&uid, metric, attempt);
                assert!(valid(&name), "{metric:?}: {name} is not a valid job name");
                if let Some(other) = seen.insert(name.clone(), (metric, attempt)) {
                    panic!("{metric:?} #{attempt} and {other:?} share the job {name}");
                }
            }
        }
        // A metric named like another's hashed form still has a Job of its own.
        let hashed = job_name(&uid, "a_b", 1);
        let middle = hashed
            .strip_prefix(&format!("{uid}."))
            .and_then(|n| n.strip_suffix(".1"))
            .unwrap();
        assert_ne!(job_name(&uid, middle, 1), hashed);
        // The hash is the same in every process: a restarted controller finds its Job again.
        assert_eq!(job_name(&uid, "a_b", 1), hashed);
        assert_eq!(name_hash("a_b"), name_hash("a_b"));
        assert_ne!(name_hash("a_b"), name_hash("a-b"));
    }

    #[test]
    fn only_this_runs_job_for_this_metric_is_ours() {
        let run = run();
        let job = job_for(&run, &metric("smoke"), 1).unwrap();
        assert_eq!(not_ours(&job, &run, "smoke"), None);
        let other_metric = not_ours(&job, &run, "latency").expect("another metric's job");
        assert!(other_metric.contains("\"smoke\""), "{other_metric}");
        let other_run = RunRef {
            uid: "11111111-2222-3333-4444-555555555555".into(),
            ..run.clone()
        };
        assert!(not_ours(&job, &other_run, "smoke").is_some());
        let mut unowned = job.clone();
        unowned.metadata.owner_references = None;
        assert!(not_ours(&unowned, &run, "smoke").is_some());
        let mut relabelled = job.clone();
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(RUN_UID_LABEL.into(), "someone-else".into());
        assert!(not_ours(&relabelled, &run, "smoke").is_some());
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
    fn a_pod_waiting_on_an_image_it_cannot_get_cannot_start() {
        let pod = |waiting: serde_json::Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "check-x"},
                "status": {"phase": "Pending", "containerStatuses": [
                    {"name": "check", "image": "busybox", "imageID": "", "ready": false,
                     "restartCount": 0, "state": {"waiting": waiting}}
                ]}
            }))
            .unwrap()
        };
        assert_eq!(
            cannot_start(&pod(
                json!({"reason": "ImagePullBackOff", "message": "Back-off pulling image \"busybox\""})
            ))
            .as_deref(),
            Some(
                "pod check-x cannot start: container check is waiting: ImagePullBackOff: \
                 Back-off pulling image \"busybox\""
            )
        );
        assert!(cannot_start(&pod(json!({"reason": "InvalidImageName"}))).is_some());
        // A first failed pull is retried, and a container being created is on its way.
        assert_eq!(cannot_start(&pod(json!({"reason": "ErrImagePull"}))), None);
        assert_eq!(
            cannot_start(&pod(json!({"reason": "ContainerCreating"}))),
            None
        );
        assert_eq!(cannot_start(&Pod::default()), None);
        let long = "x".repeat(10_000);
        let message = cannot_start(&pod(json!({"reason": "ImagePullBackOff", "message": long})))
            .expect("stuck");
        assert!(message.len() < 400, "{}", message.len());
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
