//! What the Rollout controller's caches keep: projections of Rollouts, ReplicaSets and Services
//! instead of the typed objects.
//!
//! A typed Rollout takes about 11 KB in memory (its pod template alone 4.7 KB: the Kubernetes
//! types hold every optional field inline) and a typed ReplicaSet about 4.8 KB even without its
//! template, while what the controller needs between reconciles is a few hundred bytes. So:
//! - a Rollout is kept as its compact JSON (read again by each reconcile: a few tens of
//!   microseconds), with the names that wake it (Services, templates, Deployment) beside it;
//! - a ReplicaSet is kept as the fields `plan` reads, in an index by its controller's uid, so a
//!   reconcile reads its rollout's sets without scanning every set of the cluster;
//! - a Service is kept as its selector and the annotation naming the rollout that manages it.
//!
//! Each projection deserialises from the API's JSON through the typed object, so the watches
//! read it as they read the typed objects, and one the types cannot read still reaches the
//! reconcile as an [`InvalidObject`].

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    sync::{Arc, PoisonError, RwLock},
};

use k8s_openapi::{
    api::{
        apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus},
        core::v1::Service,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Resource,
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::watcher,
};
use serde::{Deserialize, Deserializer};

use sluice_api::{
    Rollout,
    vocab::{
        EPHEMERAL_ANNOTATION, MANAGED_BY_ROLLOUTS_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
        REVISION_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION, TEMPLATE_HASH_ANNOTATION,
    },
};

use super::observe::service_names;
use crate::runtime::trim;

/// The metadata a projection keeps: what the store's key, the controller's queue and the owner
/// mapping read (name, namespace, uid, resourceVersion, generation, the controller reference).
fn slim(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        generation: meta.generation,
        owner_references: meta.owner_references.as_ref().map(|refs| {
            refs.iter()
                .filter(|r| r.controller == Some(true))
                .cloned()
                .collect()
        }),
        ..ObjectMeta::default()
    }
}

/// Implements [`Resource`] for a projection as the kind it projects, so `Api`, the watcher, the
/// store and the controller treat it as that kind.
macro_rules! project_resource {
    ($projection:ty, $kind:ty) => {
        impl Resource for $projection {
            type DynamicType = ();
            type Scope = <$kind as Resource>::Scope;

            fn kind(dt: &()) -> Cow<'_, str> {
                <$kind>::kind(dt)
            }
            fn group(dt: &()) -> Cow<'_, str> {
                <$kind>::group(dt)
            }
            fn version(dt: &()) -> Cow<'_, str> {
                <$kind>::version(dt)
            }
            fn plural(dt: &()) -> Cow<'_, str> {
                <$kind>::plural(dt)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A Rollout as the cache keeps it: its compact JSON (or why the types cannot read it), and the
/// names of the objects whose changes wake it.
#[derive(Clone, Debug)]
pub struct CachedRollout {
    metadata: ObjectMeta,
    wakers: Wakers,
    body: Result<Box<str>, Box<InvalidObject>>,
}

/// The objects a rollout names, whose changes wake it.
#[derive(Clone, Debug, Default)]
struct Wakers {
    services: Box<[Box<str>]>,
    /// AnalysisTemplates and ClusterAnalysisTemplates (`true`) its analyses name.
    templates: Box<[(Box<str>, bool)]>,
    /// The Deployment its `workloadRef` names.
    deployment: Option<Box<str>>,
}

impl CachedRollout {
    /// The projection of a Rollout as the watch read it (trimmed of managedFields and kubectl's
    /// last-applied copy first).
    pub fn of(guard: DeserializeGuard<Rollout>) -> Self {
        match guard.0 {
            Ok(mut rollout) => {
                trim(&mut rollout);
                let wakers = Wakers {
                    services: service_names(&rollout)
                        .into_iter()
                        .map(String::into_boxed_str)
                        .collect(),
                    templates: rollout
                        .spec
                        .analyses()
                        .iter()
                        .flat_map(|(_, analysis)| analysis.templates.iter())
                        .map(|t| {
                            (
                                t.template_name.clone().into_boxed_str(),
                                t.cluster_scope.unwrap_or(false),
                            )
                        })
                        .collect(),
                    deployment: rollout.spec.workload_deployment().map(Box::from),
                };
                let metadata = slim(&rollout.metadata);
                let body = serde_json::to_string(&rollout)
                    .map(String::into_boxed_str)
                    .map_err(|e| {
                        Box::new(InvalidObject {
                            error: format!("the Rollout cannot be written as JSON: {e}"),
                            metadata: metadata.clone(),
                        })
                    });
                Self {
                    metadata,
                    wakers,
                    body,
                }
            }
            Err(mut invalid) => {
                invalid.metadata = slim(&invalid.metadata);
                Self {
                    metadata: invalid.metadata.clone(),
                    wakers: Wakers::default(),
                    body: Err(Box::new(invalid)),
                }
            }
        }
    }

    /// The Rollout, read again from the cached JSON; or why the types cannot read it.
    pub fn read(&self) -> Result<Rollout, Box<InvalidObject>> {
        match &self.body {
            Ok(json) => serde_json::from_str(json).map_err(|e| {
                Box::new(InvalidObject {
                    error: format!("the cached Rollout cannot be read again: {e}"),
                    metadata: self.metadata.clone(),
                })
            }),
            Err(invalid) => Err(invalid.clone()),
        }
    }

    /// Whether the Rollout's strategy names the Service `name` (in its own namespace).
    pub fn names_service(&self, name: &str) -> bool {
        self.wakers.services.iter().any(|s| &**s == name)
    }

    /// Whether its analyses name the template `name` (a ClusterAnalysisTemplate when `cluster`).
    pub fn uses_template(&self, name: &str, cluster: bool) -> bool {
        self.wakers
            .templates
            .iter()
            .any(|(t, c)| &**t == name && *c == cluster)
    }

    /// Whether its `workloadRef` names the Deployment `name`.
    pub fn over_deployment(&self, name: &str) -> bool {
        self.wakers.deployment.as_deref() == Some(name)
    }
}

project_resource!(CachedRollout, Rollout);

impl<'de> Deserialize<'de> for CachedRollout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DeserializeGuard::<Rollout>::deserialize(deserializer).map(Self::of)
    }
}

/// A ReplicaSet as the cache keeps it: its pod-template-hash, the annotations `plan` reads, its
/// replicas and its pods' counts. The pod template (most of its size) is not kept: versions are
/// told apart by their hash, and new sets are built from the Rollout's own template.
#[derive(Clone, Debug)]
pub struct CachedSet {
    metadata: ObjectMeta,
    hash: Option<Box<str>>,
    annotations: Box<[(&'static str, Box<str>)]>,
    replicas: Option<i32>,
    pods: i32,
    ready: Option<i32>,
    available: Option<i32>,
}

/// The annotations of a ReplicaSet that `plan` reads.
const SET_ANNOTATIONS: [&str; 4] = [
    REVISION_ANNOTATION,
    TEMPLATE_HASH_ANNOTATION,
    SCALE_DOWN_DEADLINE_ANNOTATION,
    EPHEMERAL_ANNOTATION,
];

impl CachedSet {
    /// The projection of a ReplicaSet.
    pub fn of(rs: &ReplicaSet) -> Self {
        let annotations = rs.metadata.annotations.as_ref();
        let status = rs.status.as_ref();
        Self {
            metadata: slim(&rs.metadata),
            hash: rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
                .map(|h| h.as_str().into()),
            annotations: SET_ANNOTATIONS
                .iter()
                .filter_map(|key| Some((*key, annotations?.get(*key)?.as_str().into())))
                .collect(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas),
            pods: status.map_or(0, |s| s.replicas),
            ready: status.and_then(|s| s.ready_replicas),
            available: status.and_then(|s| s.available_replicas),
        }
    }

    /// The ReplicaSet `plan` reads: everything the projection kept, in the typed object.
    pub fn to_replica_set(&self) -> ReplicaSet {
        let labels = self
            .hash
            .as_ref()
            .map(|h| BTreeMap::from([(POD_TEMPLATE_HASH_LABEL.to_owned(), h.to_string())]));
        let annotations: BTreeMap<String, String> = self
            .annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_string()))
            .collect();
        ReplicaSet {
            metadata: ObjectMeta {
                labels,
                annotations: Some(annotations),
                ..self.metadata.clone()
            },
            spec: Some(ReplicaSetSpec {
                replicas: self.replicas,
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas: self.pods,
                ready_replicas: self.ready,
                available_replicas: self.available,
                ..ReplicaSetStatus::default()
            }),
        }
    }

    /// The uid of the set's controller, if it has one.
    fn controller_uid(&self) -> Option<&str> {
        self.metadata
            .owner_references
            .as_deref()?
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.as_str())
    }
}

project_resource!(CachedSet, ReplicaSet);

impl<'de> Deserialize<'de> for CachedSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ReplicaSet::deserialize(deserializer).map(|rs| Self::of(&rs))
    }
}

/// The ReplicaSet cache: every set the watch shows, indexed by its controller's uid, so a
/// reconcile finds its rollout's sets without scanning all of them.
#[derive(Clone, Debug, Default)]
pub struct SetCache(Arc<RwLock<SetState>>);

#[derive(Debug, Default)]
struct SetState {
    live: Sets,
    /// The sets of a re-list in progress, swapped in whole at its end.
    relisted: Option<Sets>,
}

/// Sets by their controller's uid, and each set's controller by its (namespace, name).
#[derive(Debug, Default)]
struct Sets {
    by_owner: HashMap<Box<str>, Vec<Arc<CachedSet>>>,
    owner_of: HashMap<(Box<str>, Box<str>), Box<str>>,
}

fn key(set: &CachedSet) -> (Box<str>, Box<str>) {
    let meta = &set.metadata;
    (
        meta.namespace.as_deref().unwrap_or_default().into(),
        meta.name.as_deref().unwrap_or_default().into(),
    )
}

impl Sets {
    fn remove(&mut self, key: &(Box<str>, Box<str>)) {
        let Some(owner) = self.owner_of.remove(key) else {
            return;
        };
        if let Some(sets) = self.by_owner.get_mut(&owner) {
            sets.retain(|s| {
                s.metadata.namespace.as_deref() != Some(&*key.0)
                    || s.metadata.name.as_deref() != Some(&*key.1)
            });
            if sets.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }

    fn insert(&mut self, set: &CachedSet) {
        let key = key(set);
        self.remove(&key);
        // A set no controller owns is no rollout's: observe reads only owned sets.
        let Some(owner) = set.controller_uid() else {
            return;
        };
        let owner: Box<str> = owner.into();
        self.owner_of.insert(key, owner.clone());
        self.by_owner
            .entry(owner)
            .or_default()
            .push(Arc::new(set.clone()));
    }
}

impl SetCache {
    /// Takes one event of the ReplicaSet watch.
    pub fn apply(&self, event: &watcher::Event<CachedSet>) {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(set) => state.live.insert(set),
            watcher::Event::Delete(set) => state.live.remove(&key(set)),
            watcher::Event::Init => state.relisted = Some(Sets::default()),
            watcher::Event::InitApply(set) => {
                state.relisted.get_or_insert_with(Sets::default).insert(set);
            }
            watcher::Event::InitDone => {
                if let Some(listed) = state.relisted.take() {
                    state.live = listed;
                }
            }
        }
    }

    /// The sets in `namespace` whose controller is the object of `uid`, as typed ReplicaSets.
    pub fn owned_by(&self, namespace: &str, uid: &str) -> Vec<ReplicaSet> {
        let state = self.0.read().unwrap_or_else(PoisonError::into_inner);
        state
            .live
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .map(|s| s.to_replica_set())
            .collect()
    }
}

/// A Service as the cache keeps it: its selector and the `managed-by-rollouts` annotation.
#[derive(Clone, Debug)]
pub struct CachedService {
    metadata: ObjectMeta,
    /// `spec.selector`.
    pub selector: Option<BTreeMap<String, String>>,
    /// The rollout the `managed-by-rollouts` annotation names.
    pub managed_by: Option<Box<str>>,
}

impl CachedService {
    /// The projection of a Service.
    pub fn of(service: &Service) -> Self {
        Self {
            metadata: slim(&service.metadata),
            selector: service.spec.as_ref().and_then(|s| s.selector.clone()),
            managed_by: service
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MANAGED_BY_ROLLOUTS_ANNOTATION))
                .map(|m| m.as_str().into()),
        }
    }
}

project_resource!(CachedService, Service);

impl<'de> Deserialize<'de> for CachedService {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Service::deserialize(deserializer).map(|s| Self::of(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_rollout() -> serde_json::Value {
        let text = include_str!("../../tests/fixtures/api/rollout-with-status.yaml");
        serde_norway::from_str(text).expect("the fixture is YAML")
    }

    #[test]
    fn a_cached_rollout_reads_back_as_the_rollout_the_watch_read() {
        let json = fixture_rollout();
        let typed: Rollout = serde_json::from_value(json.clone()).expect("a Rollout");
        let cached: CachedRollout = serde_json::from_value(json).expect("a cached Rollout");
        let read = cached.read().expect("read again");
        assert_eq!(
            serde_json::to_value(&read).expect("json"),
            serde_json::to_value(&typed).expect("json"),
            "nothing is lost between the watch and the reconcile"
        );
        assert!(cached.names_service("guestbook-canary"));
        assert!(cached.names_service("guestbook-stable"));
        assert!(!cached.names_service("guestbook"));
        assert_eq!(cached.meta().name.as_deref(), Some("guestbook"));
        assert_eq!(cached.meta().resource_version.as_deref(), Some("183642"));
    }

    #[test]
    fn a_rollout_the_types_cannot_read_is_cached_as_invalid_with_its_name() {
        let mut json = fixture_rollout();
        json["spec"]["replicas"] = "five".into();
        let cached: CachedRollout = serde_json::from_value(json).expect("the guard reads it");
        let invalid = cached.read().expect_err("not a Rollout");
        assert_eq!(invalid.metadata.name.as_deref(), Some("guestbook"));
        assert!(
            invalid.error.contains("replicas") || invalid.error.contains("five"),
            "{}",
            invalid.error
        );
    }

    fn set(name: &str, owner: Option<&str>, hash: &str) -> ReplicaSet {
        let owners = owner.map(|uid| {
            serde_json::json!([{ "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "name": "app", "uid": uid, "controller": true }])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "shop", "uid": format!("{name}-uid"),
                "resourceVersion": "7",
                "labels": { POD_TEMPLATE_HASH_LABEL: hash, "app": "app" },
                "annotations": { REVISION_ANNOTATION: "3", "unrelated": "x" },
                "ownerReferences": owners,
            },
            "spec": {
                "replicas": 4,
                "selector": { "matchLabels": { "app": "app" } },
                "template": { "spec": { "containers": [{ "name": "app", "image": "app:1" }] } }
            },
            "status": { "replicas": 4, "readyReplicas": 3, "availableReplicas": 2 }
        }))
        .expect("a ReplicaSet")
    }

    #[test]
    fn a_cached_set_keeps_what_the_plan_reads() {
        let whole = set("app-abc", Some("r-1"), "abc");
        let back = CachedSet::of(&whole).to_replica_set();
        let (a, b) = (
            sluice_plan::replicasets::SetView::of(&whole),
            sluice_plan::replicasets::SetView::of(&back),
        );
        assert_eq!(a, b, "the plan sees the same set");
        assert_eq!(
            back.metadata.owner_references,
            whole.metadata.owner_references
        );
        assert!(
            back.spec.and_then(|s| s.template).is_none(),
            "no pod template kept"
        );
    }

    #[test]
    fn the_set_index_follows_owners_deletions_and_relists() {
        let cache = SetCache::default();
        let event = |rs: ReplicaSet| CachedSet::of(&rs);
        cache.apply(&watcher::Event::Apply(event(set("a-1", Some("r-1"), "1"))));
        cache.apply(&watcher::Event::Apply(event(set("a-2", Some("r-1"), "2"))));
        cache.apply(&watcher::Event::Apply(event(set("b-1", Some("r-2"), "1"))));
        cache.apply(&watcher::Event::Apply(event(set("orphan", None, "1"))));
        let names = |uid: &str| {
            let mut names: Vec<String> = cache
                .owned_by("shop", uid)
                .iter()
                .map(|rs| rs.metadata.name.clone().unwrap_or_default())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names("r-1"), ["a-1", "a-2"]);
        assert_eq!(names("r-2"), ["b-1"]);
        assert!(
            cache.owned_by("elsewhere", "r-1").is_empty(),
            "namespaces apart"
        );
        // Adopted by another rollout: it moves.
        cache.apply(&watcher::Event::Apply(event(set("a-2", Some("r-2"), "2"))));
        assert_eq!(names("r-1"), ["a-1"]);
        assert_eq!(names("r-2"), ["a-2", "b-1"]);
        cache.apply(&watcher::Event::Delete(event(set("a-1", Some("r-1"), "1"))));
        assert!(names("r-1").is_empty());
        // A re-list replaces everything at its end, not before.
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(event(set(
            "c-1",
            Some("r-3"),
            "1",
        ))));
        assert_eq!(
            names("r-2"),
            ["a-2", "b-1"],
            "the old state serves until the list is whole"
        );
        cache.apply(&watcher::Event::InitDone);
        assert!(names("r-2").is_empty());
        assert_eq!(names("r-3"), ["c-1"]);
    }
}
