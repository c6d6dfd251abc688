//! Reads the cluster into one [`Observed`] snapshot for a rollout, from the controller's
//! caches: no API request per reconcile (but a list of pods while a restart is pending).

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::reflector::{ObjectRef, Store},
};

use super::cache::{CachedService, SetCache};
use sluice_analysis::args::MAX_TEMPLATES;
use sluice_api::{
    AnalysisRun, AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec,
    ClusterAnalysisTemplate, Experiment, Rollout, SpecProblem,
    model::selector_string,
    vocab::{POD_TEMPLATE_HASH_LABEL, ROLLOUT_TYPE_LABEL},
};
use sluice_plan::{
    Observed, ServiceView,
    analysis::{self, Found, RunView, same_template},
    canary::experiment::ExperimentView,
    restart::PodView,
    workload::{Workload, WorkloadView},
};

/// The caches a reconcile reads.
#[derive(Clone)]
pub struct Caches {
    /// ReplicaSets carrying a pod-template-hash label (the ones rollouts own), by owner.
    pub replica_sets: SetCache,
    /// Services in the watched namespaces, as their selector and manager.
    pub services: Store<CachedService>,
    /// AnalysisRuns carrying a `rollout-type` label (the ones rollouts start), trimmed to what
    /// the plan reads.
    pub analysis_runs: Store<DeserializeGuard<AnalysisRun>>,
    /// AnalysisTemplates in the watched namespaces.
    pub templates: Store<DeserializeGuard<AnalysisTemplate>>,
    /// ClusterAnalysisTemplates.
    pub cluster_templates: Store<DeserializeGuard<ClusterAnalysisTemplate>>,
}

/// The status writes the Rollout cache may not show yet. A write's new version comes back on the
/// watch a moment later; a reconcile woken meanwhile (by the ReplicaSets the write's reconcile
/// just scaled) would read the version the write replaced, plan the step that was already taken
/// from it, scale the sets back and forth, and then fail its own status write with a conflict.
#[derive(Debug, Default)]
pub struct OwnWrites(Mutex<Noted>);

/// Per rollout (namespace, name): the resourceVersion our status write replaced, and when.
type Noted = HashMap<(String, String), (String, Instant)>;

impl OwnWrites {
    /// Notes that a status write replaced `rollout` as it was (its resourceVersion).
    pub fn wrote(&self, rollout: &Rollout) {
        if let Some(replaced) = rollout.resource_version() {
            self.lock().insert(key(rollout), (replaced, Instant::now()));
        }
    }

    /// Whether `rollout` is a version a status write of ours has replaced: the cache is behind,
    /// and the watch is about to bring the newer one. Any other version ends the wait.
    pub fn behind(&self, rollout: &Rollout) -> bool {
        let mut writes = self.lock();
        let key = key(rollout);
        match writes.get(&key) {
            // Bounded: a write that changed nothing keeps its version and brings no event.
            Some((replaced, at))
                if Some(replaced) == rollout.resource_version().as_ref()
                    && at.elapsed() < BEHIND_AT_MOST =>
            {
                true
            }
            Some(_) => {
                writes.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Forgets a deleted rollout.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&(namespace.to_owned(), name.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Noted> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long a reconcile may wait for the watch to bring our own write before it plans anyway.
const BEHIND_AT_MOST: Duration = Duration::from_secs(5);

fn key(rollout: &Rollout) -> (String, String) {
    (rollout.namespace().unwrap_or_default(), rollout.name_any())
}

/// The Services a rollout's strategy names.
pub fn service_names(rollout: &Rollout) -> Vec<String> {
    let canary = rollout
        .spec
        .canary()
        .map(|c| [c.canary_service.clone(), c.stable_service.clone()]);
    let ping_pong = rollout
        .spec
        .canary()
        .and_then(|c| c.ping_pong.as_ref())
        .map(|p| [Some(p.ping_service.clone()), Some(p.pong_service.clone())]);
    let blue_green = rollout
        .spec
        .blue_green()
        .map(|b| [Some(b.active_service.clone()), b.preview_service.clone()]);
    canary
        .into_iter()
        .chain(ping_pong)
        .chain(blue_green)
        .flatten()
        .flatten()
        .filter(|n| !n.is_empty())
        .collect()
}

/// What the caches hold for `rollout`.
pub fn observe(rollout: &Rollout, caches: &Caches) -> Observed {
    let namespace = rollout.namespace().unwrap_or_default();
    let uid = rollout.uid();
    let replica_sets = uid
        .as_deref()
        .map(|uid| caches.replica_sets.owned_by(&namespace, uid))
        .unwrap_or_default();
    let services = service_names(rollout)
        .into_iter()
        .map(|name| {
            let found = caches
                .services
                .get(&ObjectRef::new(&name).within(&namespace))
                .map(|svc| ServiceView {
                    selector: svc.selector.clone().unwrap_or_default(),
                    managed_by: svc.managed_by.as_deref().map(str::to_owned),
                });
            (name, found)
        })
        .collect();
    let analysis_runs = caches
        .analysis_runs
        .state()
        .iter()
        .filter(|run| {
            run.namespace().as_deref() == Some(namespace.as_str())
                && run
                    .owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .map(|run| match &run.0 {
            Ok(run) => RunView::of(run),
            Err(invalid) => RunView::unreadable(&invalid.metadata, &invalid.error),
        })
        .collect();
    Observed {
        replica_sets,
        services,
        pods: None,
        analysis_runs,
        traffic: None,
        template_problems: template_problems(rollout, &namespace, caches),
        workload: None,
        experiments: Vec::new(),
    }
}

/// The problems of the templates the rollout's strategy names, as the caches hold them.
fn template_problems(rollout: &Rollout, namespace: &str, caches: &Caches) -> Vec<SpecProblem> {
    // The caches hand out shared objects; the lookups below borrow from these: every template
    // the strategy names, and those they include, within the bound of one run's templates.
    let mut held: Vec<(AnalysisTemplateRef, Result<AnalysisTemplateSpec, String>)> = Vec::new();
    let mut pending: Vec<AnalysisTemplateRef> = rollout
        .spec
        .analyses()
        .into_iter()
        .flat_map(|(_, analysis)| analysis.templates.iter().cloned())
        .collect();
    while let Some(template) = pending.pop() {
        if held.len() >= 2 * MAX_TEMPLATES || held.iter().any(|(t, _)| same_template(t, &template))
        {
            continue;
        }
        let name = &template.template_name;
        let got = if template.cluster_scope.unwrap_or(false) {
            caches
                .cluster_templates
                .get(&ObjectRef::new(name))
                .map(|guard| match &guard.0 {
                    Ok(t) => Ok(t.spec.template.clone()),
                    Err(e) => Err(e.error.clone()),
                })
        } else {
            caches
                .templates
                .get(&ObjectRef::new(name).within(namespace))
                .map(|guard| match &guard.0 {
                    Ok(t) => Ok(t.spec.clone()),
                    Err(e) => Err(e.error.clone()),
                })
        };
        if let Some(got) = got {
            if let Ok(spec) = &got {
                pending.extend(spec.templates.iter().cloned());
            }
            held.push((template, got));
        }
    }
    analysis::template_problems(&rollout.spec, |wanted| {
        match held.iter().find(|(t, _)| same_template(t, wanted)) {
            None => Found::Missing,
            Some((_, Ok(spec))) => Found::Spec(spec),
            Some((_, Err(reason))) => Found::Unreadable(reason),
        }
    })
}

/// The Experiments the rollout's experiment steps created, read from the API (one list per
/// reconcile, and only for a rollout with an experiment step or one still recorded in its
/// status; every other rollout reads nothing).
pub async fn read_experiments(
    client: &kube::Client,
    rollout: &Rollout,
) -> Result<Vec<ExperimentView>, kube::Error> {
    let has_step = rollout.spec.canary().is_some_and(|c| {
        (0..c.steps.len()).any(|i| {
            c.steps
                .actions(i)
                .iter()
                .any(|a| a.kind() == sluice_api::StepKind::Experiment)
        })
    });
    let recorded = rollout
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .is_some_and(|c| c.current_experiment.is_some());
    if !has_step && !recorded {
        return Ok(Vec::new());
    }
    let namespace = rollout.namespace().unwrap_or_default();
    let uid = rollout.uid().unwrap_or_default();
    let experiments: kube::Api<Experiment> = kube::Api::namespaced(client.clone(), &namespace);
    let listed = experiments
        .list(&kube::api::ListParams::default().labels(ROLLOUT_TYPE_LABEL))
        .await?;
    Ok(listed
        .items
        .iter()
        .filter(|e| {
            e.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .map(ExperimentView::of)
        .collect())
}

/// The cache keeps ReplicaSets without their pod template (most of their size, and the plan
/// needs none); an experiment step copying the stable version needs that one's. For a rollout
/// with such a step, the stable ReplicaSet is read whole and its template put back into
/// `observed` (one GET per reconcile of those rollouts only: the step may be reached within
/// this very plan).
pub async fn fill_stable_template(
    client: &kube::Client,
    rollout: &Rollout,
    observed: &mut Observed,
) -> Result<(), kube::Error> {
    let stable = rollout.status.as_ref().and_then(|s| s.stable_rs.as_deref());
    let (Some(canary), Some(stable)) = (rollout.spec.canary(), stable) else {
        return Ok(());
    };
    let copies_stable = (0..canary.steps.len()).any(|i| {
        canary.steps.actions(i).iter().any(|a| match a {
            sluice_api::CanaryStep::Experiment(e) => e
                .templates
                .iter()
                .any(|t| t.spec_ref == sluice_api::SpecRef::Stable),
            _ => false,
        })
    });
    if !copies_stable {
        return Ok(());
    }
    let Some(held) = observed
        .replica_sets
        .iter_mut()
        .find(|rs| rs.labels().get(POD_TEMPLATE_HASH_LABEL).map(String::as_str) == Some(stable))
    else {
        return Ok(());
    };
    if held.spec.as_ref().is_some_and(|s| s.template.is_some()) {
        return Ok(());
    }
    let namespace = rollout.namespace().unwrap_or_default();
    let sets: kube::Api<ReplicaSet> = kube::Api::namespaced(client.clone(), &namespace);
    if let Some(whole) = sets.get_opt(&held.name_any()).await? {
        let template = whole.spec.and_then(|s| s.template);
        if let Some(spec) = held.spec.as_mut() {
            spec.template = template;
        }
    }
    Ok(())
}

/// The Deployment the rollout's `workloadRef` names, read from the API (one read per reconcile
/// of such a rollout, instead of caching every Deployment of the cluster); `None` without one.
pub async fn read_workload(
    client: &kube::Client,
    rollout: &Rollout,
) -> Result<Option<Workload>, kube::Error> {
    let Some(name) = rollout.spec.workload_deployment() else {
        return Ok(None);
    };
    let namespace = rollout.namespace().unwrap_or_default();
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), &namespace);
    let Some(deployment) = deployments.get_opt(name).await? else {
        return Ok(Some(Workload::Missing));
    };
    let spec = deployment.spec.unwrap_or_default();
    Ok(Some(Workload::Found(Box::new(WorkloadView {
        name: name.to_string(),
        template: spec.template,
        selector: Some(spec.selector),
        replicas: spec.replicas.unwrap_or(1),
        generation: deployment.metadata.generation,
    }))))
}

/// The rollout's pods, listed from the API (they are not cached: only a pending restart reads
/// them, and caching every pod of every rollout would cost memory all the time).
pub async fn list_pods(
    client: &kube::Client,
    rollout: &Rollout,
) -> Result<Vec<PodView>, kube::Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), &namespace);
    let Some(selector) = rollout.spec.selector.as_ref().map(selector_string) else {
        return Ok(Vec::new());
    };
    let list = pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|pod| {
            let hash = pod.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
            Some((hash, pod))
        })
        .map(|(hash, pod)| PodView {
            hash,
            ready: pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            created: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0),
            name: pod.name_any(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: &str) -> Rollout {
        let mut rollout = Rollout::new("web", sluice_api::RolloutSpec::default());
        rollout.metadata.namespace = Some("shop".into());
        rollout.metadata.resource_version = Some(version.into());
        rollout
    }

    #[test]
    fn the_version_a_status_write_replaced_is_behind_until_a_newer_one_is_seen() {
        let writes = OwnWrites::default();
        assert!(!writes.behind(&at("10")), "nothing written yet");
        writes.wrote(&at("10"));
        assert!(
            writes.behind(&at("10")),
            "the cache still has what was overwritten"
        );
        assert!(
            writes.behind(&at("10")),
            "and stays behind until the watch catches up"
        );
        assert!(
            !writes.behind(&at("11")),
            "our write (or anyone's) has arrived"
        );
        assert!(
            !writes.behind(&at("10")),
            "once caught up, the note is gone"
        );
    }

    #[test]
    fn rollouts_are_told_apart_by_namespace_and_name_and_a_deleted_one_is_forgotten() {
        let writes = OwnWrites::default();
        writes.wrote(&at("10"));
        let mut elsewhere = at("10");
        elsewhere.metadata.namespace = Some("other".into());
        assert!(!writes.behind(&elsewhere));
        writes.forget("shop", "web");
        assert!(!writes.behind(&at("10")));
    }
}
