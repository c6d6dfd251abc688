//! PURE traffic routers: no client, no runtime, no clock.
//!
//! The plan (`sluice-plan`) decides the weights and the header and mirror routes a canary gets
//! ([`Desired`]); a router here says which objects it reads ([`Router::objects`]), what weight
//! they carry now ([`Router::weight`]), and which writes bring them to what the plan decided
//! ([`Router::reconcile`]). The controller does the reading and writing, so every router is a
//! function of JSON objects, unit-tested without a cluster.
//!
//! A router touches only the fields it owns (weights, the routes it added, the canary copies it
//! made); every other field of an object stays as its owner (Argo CD, Helm, a person) wrote it.

#![forbid(unsafe_code)]

pub mod alb;
pub mod ambassador;
pub mod apisix;
mod common;
pub mod gateway;
pub mod istio;
pub mod nginx;
pub mod smi;
pub mod traefik;

use serde_json::Value;
use sluice_api::{HeaderMatch, RouteMatch};

/// The weights and routes a router's objects must carry, as the plan decided them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The rollout's name (names objects a router derives, such as a canary Ingress).
    pub rollout: String,
    /// The rollout's namespace.
    pub namespace: String,
    /// The canary's share, out of `max_weight`.
    pub canary_weight: i32,
    /// The weight that means all traffic (`maxTrafficWeight`, 100 by default).
    pub max_weight: i32,
    /// `canaryService`.
    pub canary_service: String,
    /// `stableService`.
    pub stable_service: String,
    /// The canary's pod template hash (for routers that split by pod labels, like Istio subsets).
    pub canary_hash: String,
    /// The stable version's pod template hash.
    pub stable_hash: String,
    /// The header routes in force, in `managedRoutes` order.
    pub header_routes: Vec<HeaderRoute>,
    /// The mirror routes in force, in `managedRoutes` order.
    pub mirror_routes: Vec<MirrorRoute>,
}

impl Desired {
    /// The stable version's share: what the canary does not get.
    pub fn stable_weight(&self) -> i32 {
        self.max_weight - self.canary_weight
    }
}

/// A `setHeaderRoute` in force: requests matching its headers go to the canary (several headers
/// combine as each router reads them, as in Argo: all of them for Gateway API, any for Istio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRoute {
    /// The managed route's name.
    pub name: String,
    /// The header conditions (never empty: an empty list removes the route).
    pub matches: Vec<HeaderMatch>,
}

/// A `setMirrorRoute` in force: matching requests are copied to the canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorRoute {
    /// The managed route's name.
    pub name: String,
    /// The request conditions (never empty).
    pub matches: Vec<RouteMatch>,
    /// The share of matching requests copied, 0..=100.
    pub percentage: i32,
}

/// Which object a router reads: enough for a dynamic client to find it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    /// API group (empty for the core group).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Resource name in URLs (lower-case plural).
    pub plural: &'static str,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// `group/version` as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl std::fmt::Display for ObjectRef {
    /// `Kind namespace/name`, for logs, events and conditions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One change a router asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Replace the object (read earlier, with its `resourceVersion`: a concurrent edit makes the
    /// write a conflict, and the router decides again on fresh objects).
    Replace(ObjectRef, Value),
    /// Create an object the router owns (a canary copy).
    Create(ObjectRef, Value),
    /// Delete an object the router created.
    Delete(ObjectRef),
}

impl Write {
    /// The object written.
    pub fn target(&self) -> &ObjectRef {
        match self {
            Write::Replace(r, _) | Write::Create(r, _) | Write::Delete(r) => r,
        }
    }
}

/// Why a router cannot bring its objects to what the plan decided: said on the rollout as a
/// condition and an event, never a panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// An object the router needs does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An object exists but cannot be used as the spec says (no route names the Services, …).
    #[error("{object}: {message}")]
    Invalid {
        /// The object (`Kind namespace/name`).
        object: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The objects a router read, in the order of [`Router::objects`]; `None` where one does not exist.
pub type Current<'a> = &'a [Option<Value>];

/// One traffic router: the objects it reads and the writes that give them the desired state.
pub trait Router {
    /// The router's name as in the spec (`gatewayAPI`, `traefik`, `nginx`, …), for messages.
    fn name(&self) -> &'static str;

    /// The objects to read before deciding, for a rollout in `namespace` named `rollout`.
    fn objects(&self, namespace: &str, rollout: &str) -> Vec<ObjectRef>;

    /// The canary weight the objects carry now (out of the rollout's max weight), if they say;
    /// this is the weight reported as verified and the one the plan's safety rules read.
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError>;

    /// The writes that bring the objects to `desired`: none when they already carry it.
    fn reconcile(&self, current: Current<'_>, desired: &Desired)
    -> Result<Vec<Write>, RouterError>;
}
