//! The traffic routers of a routed canary, at the edge: reads their objects before the plan,
//! writes what the plan decided after its actions. What to write is decided purely by
//! `sluice-traffic`; this module only fetches and stores objects.
//!
//! A router object another writer changes (an Argo CD sync, a person) is put back once and
//! reported as a Warning event; changed back again soon after, it is left alone for a while and
//! reported as a failure on the rollout, so Sluice never fights another controller in a loop.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, PostParams},
};
use serde_json::Value;
use tracing::{info, warn};

use sluice_api::{GatewayApiConfig, Rollout};
use sluice_traffic::{
    Desired, ObjectRef, Router, RouterError, Write, alb::Alb, ambassador::Ambassador,
    apisix::Apisix, gateway::GatewayApi, istio::Istio, nginx::Nginx, smi::Smi, traefik::Traefik,
};

use super::apply::FIELD_MANAGER;
use crate::error::Error;

/// How long after putting an object back a second change by someone else makes Sluice step
/// aside instead of writing it again.
const FIGHT_WINDOW: Duration = Duration::from_secs(300);

/// The routers a rollout's `trafficRouting` names, with the objects they read.
pub struct Routers {
    routers: Vec<Box<dyn Router + Send + Sync>>,
    /// Per router, its objects as read (`None` where one does not exist).
    current: Vec<Vec<Option<Value>>>,
}

/// The routers of a routed canary; `None` when it routes by replicas. Validation refuses a
/// router Sluice does not run, so every router named here is one it knows.
pub fn of(rollout: &Rollout) -> Option<Vec<Box<dyn Router + Send + Sync>>> {
    let canary = rollout.spec.canary()?;
    let routing = canary.traffic_routing.as_ref()?;
    let managed: Vec<String> = routing
        .managed_routes
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let mut routers: Vec<Box<dyn Router + Send + Sync>> = Vec::new();
    if let Some(Ok(config)) = GatewayApiConfig::of(routing) {
        routers.push(Box::new(GatewayApi::new(&config, &managed)));
    }
    if let Some(config) = &routing.nginx {
        routers.push(Box::new(Nginx::new(config)));
    }
    if let Some(config) = &routing.istio {
        routers.push(Box::new(Istio::new(config, &managed)));
    }
    if let Some(config) = &routing.smi {
        routers.push(Box::new(Smi::new(config)));
    }
    if let Some(config) = &routing.traefik {
        // Traefik v3 serves its CRDs under traefik.io only (traefik.containo.us was v2's).
        routers.push(Box::new(Traefik::new(config)));
    }
    if let Some(config) = &routing.alb {
        routers.push(Box::new(Alb::new(config)));
    }
    if let Some(config) = &routing.ambassador {
        routers.push(Box::new(Ambassador::new(config)));
    }
    if let Some(config) = &routing.apisix {
        routers.push(Box::new(Apisix::new(config, &managed)));
    }
    Some(routers)
}

/// A `Desired` carrying what reading needs (names, max weight), before the plan decided weights.
pub fn probe(rollout: &Rollout) -> Desired {
    let canary = rollout.spec.canary();
    let routing = canary.and_then(|c| c.traffic_routing.as_ref());
    let stable_ping_pong = rollout
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.stable_ping_pong);
    let (stable_service, canary_service) = canary
        .map(|c| c.role_services(stable_ping_pong))
        .unwrap_or_default();
    Desired {
        rollout: rollout.name_any(),
        namespace: rollout.namespace().unwrap_or_default(),
        canary_weight: 0,
        max_weight: routing.and_then(|r| r.max_traffic_weight).unwrap_or(100),
        canary_service: canary_service.unwrap_or_default(),
        stable_service: stable_service.unwrap_or_default(),
        canary_hash: String::new(),
        stable_hash: String::new(),
        header_routes: Vec::new(),
        mirror_routes: Vec::new(),
    }
}

impl Routers {
    /// Reads every router's objects.
    pub async fn read(
        client: &Client,
        routers: Vec<Box<dyn Router + Send + Sync>>,
        probe: &Desired,
    ) -> Result<Self, Error> {
        let mut current = Vec::with_capacity(routers.len());
        for router in &routers {
            let mut objects = Vec::new();
            for object in router.objects(&probe.namespace, &probe.rollout) {
                let found = api(client, &object)
                    .get_opt(&object.name)
                    .await
                    .map_err(|source| Error::Write {
                        action: format!("reading {object}"),
                        source,
                    })?;
                objects.push(found.map(to_value).transpose()?);
            }
            current.push(objects);
        }
        Ok(Self { routers, current })
    }

    /// The most traffic any router gives the canary now; `None` when one cannot say (an object
    /// missing or unusable), with the reason.
    pub fn canary_weight(&self, probe: &Desired) -> Result<i32, RouterError> {
        let mut most = 0;
        for (router, current) in self.routers.iter().zip(&self.current) {
            most = most.max(router.weight(current, probe)?);
        }
        Ok(most)
    }

    /// Brings every router's objects to `desired`; an object someone else changed since Sluice
    /// last wrote it is put back once (and `drift` is told), a second time it is left alone.
    pub async fn write(
        &self,
        client: &Client,
        rollout: &Rollout,
        desired: &Desired,
        drift: &Drift,
    ) -> Result<Vec<String>, Error> {
        let key = format!("{}/{}", desired.namespace, desired.rollout);
        // What Sluice wrote last for this rollout is what the plan asks again, yet an object
        // differs: another writer changed it (a new step's weight or route is no drift).
        let asked_before = drift.last_written(&key).as_ref() == Some(desired);
        let mut notes = Vec::new();
        for (router, current) in self.routers.iter().zip(&self.current) {
            let writes = router
                .reconcile(current, desired)
                .map_err(|e| Error::Router {
                    router: router.name(),
                    message: e.to_string(),
                })?;
            for write in writes {
                let target = write.target().clone();
                if asked_before {
                    drift.changed_by_another(&target, router.name())?;
                    notes.push(format!(
                        "{target} was changed by another writer; Sluice put back the weights and routes of the rollout"
                    ));
                }
                info!(object = %target, router = router.name(), weight = desired.canary_weight, "writing router object");
                store(client, owned(write, rollout)).await?;
            }
        }
        drift.wrote(key, desired);
        Ok(notes)
    }
}

/// Remembers what Sluice last wrote into each rollout's routers, and which objects it put back
/// after another writer changed them, and when.
#[derive(Debug, Default)]
pub struct Drift {
    put_back: Mutex<HashMap<String, Instant>>,
    written: Mutex<HashMap<String, Desired>>,
}

impl Drift {
    /// What Sluice last brought the routers of the rollout `key` (namespace/name) to.
    fn last_written(&self, key: &str) -> Option<Desired> {
        let written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        written.get(key).cloned()
    }

    /// Notes that the routers of the rollout `key` now carry `desired`.
    fn wrote(&self, key: String, desired: &Desired) {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        written.insert(key, desired.clone());
    }

    /// Forgets a deleted rollout.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        written.remove(&format!("{namespace}/{name}"));
    }

    /// Notes that `object` needs putting back; an error when it was put back within
    /// [`FIGHT_WINDOW`] already.
    fn changed_by_another(&self, object: &ObjectRef, router: &'static str) -> Result<(), Error> {
        let key = format!("{}/{object}", object.api_version());
        let mut seen = self
            .put_back
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, at| at.elapsed() < FIGHT_WINDOW);
        if let Some(at) = seen.get(&key) {
            warn!(object = %object, "router object changed back again; not fighting over it");
            return Err(Error::Router {
                router,
                message: format!(
                    "{object} was changed again by another writer {}s after Sluice put it back; Sluice leaves it alone for {}s: make the other writer ignore its weights and managed rules (Argo CD: ignoreDifferences)",
                    at.elapsed().as_secs(),
                    FIGHT_WINDOW.as_secs()
                ),
            });
        }
        seen.insert(key, Instant::now());
        Ok(())
    }
}

/// An object Sluice creates for a rollout (a canary Ingress, a TrafficSplit, a canary Mapping)
/// is owned by it, as Argo's are: deleting the rollout deletes it, so no copy keeps sending
/// requests to pods that are gone. Only within the rollout's namespace (owners cannot cross).
fn owned(write: Write, rollout: &Rollout) -> Write {
    let Write::Create(object, mut value) = write else {
        return write;
    };
    let same_namespace = rollout.namespace().as_deref() == Some(object.namespace.as_str());
    if let (true, Some(owner)) = (same_namespace, rollout.controller_owner_ref(&()))
        && let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut)
        && !metadata.contains_key("ownerReferences")
        && let Ok(owner) = serde_json::to_value(owner)
    {
        metadata.insert("ownerReferences".into(), Value::Array(vec![owner]));
    }
    Write::Create(object, value)
}

fn api(client: &Client, object: &ObjectRef) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: object.group.to_string(),
        version: object.version.to_string(),
        api_version: object.api_version(),
        kind: object.kind.to_string(),
        plural: object.plural.to_string(),
    };
    Api::namespaced_with(client.clone(), &object.namespace, &resource)
}

fn to_value(object: DynamicObject) -> Result<Value, Error> {
    let name = object.name_any();
    serde_json::to_value(object).map_err(|e| Error::Router {
        router: "read",
        message: format!("object {name} does not serialize: {e}"),
    })
}

fn from_value(object: &ObjectRef, value: Value) -> Result<DynamicObject, Error> {
    serde_json::from_value(value).map_err(|e| Error::Router {
        router: "write",
        message: format!("{object} as decided does not read as an object: {e}"),
    })
}

/// Carries out one router write with Sluice's field manager.
async fn store(client: &Client, write: Write) -> Result<(), Error> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let failed = |action: String| move |source| Error::Write { action, source };
    match write {
        Write::Replace(object, value) => {
            let body = from_value(&object, value)?;
            api(client, &object)
                .replace(&object.name, &params, &body)
                .await
                .map(drop)
                .map_err(failed(format!("writing the weights of {object}")))
        }
        Write::Create(object, value) => {
            let body = from_value(&object, value)?;
            api(client, &object)
                .create(&params, &body)
                .await
                .map(drop)
                .map_err(failed(format!("creating {object}")))
        }
        Write::Delete(object) => match api(client, &object)
            .delete(&object.name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Write {
                action: format!("deleting {object}"),
                source,
            }),
        },
    }
}
