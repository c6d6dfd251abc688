//! Reads the cluster into one [`Observed`] snapshot for a rollout, from the controller's
//! caches: no API request per reconcile (but a list of pods while a restart is pending).

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Pod, Service},
};
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use super::plan::{
    Observed, ServiceView, analysis::RunView, replicasets::selector_string, restart::PodView,
};
use crate::api::{AnalysisRun, MANAGED_BY_ROLLOUTS_ANNOTATION, POD_TEMPLATE_HASH_LABEL, Rollout};

/// The caches a reconcile reads.
#[derive(Clone)]
pub struct Caches {
    /// ReplicaSets carrying a pod-template-hash label (the ones rollouts own).
    pub replica_sets: Store<ReplicaSet>,
    /// Services in the watched namespaces.
    pub services: Store<Service>,
    /// AnalysisRuns carrying a `rollout-type` label (the ones rollouts start), trimmed to what
    /// the plan reads.
    pub analysis_runs: Store<AnalysisRun>,
}

/// The Services a rollout's strategy names.
pub fn service_names(rollout: &Rollout) -> Vec<String> {
    let canary = rollout
        .spec
        .canary()
        .map(|c| [c.canary_service.clone(), c.stable_service.clone()]);
    let blue_green = rollout
        .spec
        .blue_green()
        .map(|b| [Some(b.active_service.clone()), b.preview_service.clone()]);
    canary
        .into_iter()
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
    let owned = |rs: &Arc<ReplicaSet>| {
        rs.namespace().as_deref() == Some(namespace.as_str())
            && rs
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
    };
    let replica_sets = caches
        .replica_sets
        .state()
        .into_iter()
        .filter(owned)
        .map(|rs| (*rs).clone())
        .collect();
    let services = service_names(rollout)
        .into_iter()
        .map(|name| {
            let found = caches
                .services
                .get(&ObjectRef::new(&name).within(&namespace))
                .map(|svc| ServiceView {
                    selector: svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.clone())
                        .unwrap_or_default(),
                    managed_by: svc
                        .annotations()
                        .get(MANAGED_BY_ROLLOUTS_ANNOTATION)
                        .cloned(),
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
        .map(|run| RunView::of(run))
        .collect();
    Observed {
        replica_sets,
        services,
        pods: None,
        analysis_runs,
    }
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
