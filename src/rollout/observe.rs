//! Reads the cluster into one [`Observed`] snapshot for a rollout, from the controller's
//! caches: no API request per reconcile.

use std::sync::Arc;

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Service};
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use super::plan::{Observed, ServiceView};
use crate::api::{MANAGED_BY_ROLLOUTS_ANNOTATION, Rollout};

/// The caches a reconcile reads.
#[derive(Clone)]
pub struct Caches {
    /// ReplicaSets carrying a pod-template-hash label (the ones rollouts own).
    pub replica_sets: Store<ReplicaSet>,
    /// Services in the watched namespaces.
    pub services: Store<Service>,
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
    Observed {
        replica_sets,
        services,
    }
}
