//! A canary behind a traffic router: the weight decides the share of requests, the pods only
//! serve it.
//!
//! The rules, each one level-triggered (read from the cluster on every reconcile):
//! - the canary set is sized by the step (`setWeight`, or `setCanaryScale`; at least
//!   `minPodsPerReplicaSet`), the stable set stays full (with `dynamicStableScale`, sized for the
//!   larger of its share now and its share to come), and `maxSurge` does not bind (Argo's rule
//!   for routed canaries);
//! - a set never has fewer pods than the share of requests the router gives it now needs: the
//!   weight moves first, the pods after;
//! - the weight given to the canary never outgrows its available pods: below its target, the
//!   step's weight is scaled by the share of the target that is available, so a canary with no
//!   available pod gets no traffic (and with `dynamicStableScale`, the weight returns to the
//!   stable version only as far as its available pods serve it);
//! - a step completes once the router's objects carry its weight (read back, not assumed);
//! - a set stops getting pods only when no traffic can reach it: no Service selects it, or only
//!   the canary Service does while the router gives the canary nothing; then it waits out its
//!   scale-down delay (`scaleDownDelaySeconds`, after an abort `abortScaleDownDelaySeconds`), so
//!   a proxy still holding its endpoints has time to let go;
//! - abort, and completion, put the whole weight on the stable Service; header and mirror routes
//!   exist only while the canary runs and has an available pod.

use std::time::Duration;

use sluice_api::{
    CanaryStep, CanaryStrategy, PingPong, SetCanaryScale,
    model::weight_at,
    vocab::{POD_TEMPLATE_HASH_LABEL, SCALE_DOWN_DEADLINE_ANNOTATION},
};
use sluice_traffic::{Desired, HeaderRoute, MirrorRoute};

use super::{
    super::{
        Action, Planner,
        bluegreen::deadline_after,
        metadata,
        replicasets::{SetView, add_anti_affinity},
    },
    Canary,
};

/// Argo's default delay before a set that left the traffic is scaled down, both after a
/// completion and after an abort.
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// How often a running canary's router objects are read again when nothing else wakes it.
pub const RECHECK_WHILE_RUNNING: Duration = Duration::from_secs(15);
/// How often a settled rollout's router objects are read again.
pub const RECHECK_AT_REST: Duration = Duration::from_secs(300);

/// How a routed canary reads its router: set when `trafficRouting` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// The weight that means all traffic (`maxTrafficWeight`, 100 by default).
    pub max: i32,
    /// The canary weight the router's objects carry now; `None` when unknown (an object missing
    /// or unreadable), which every rule treats as "the canary may get traffic".
    pub observed: Option<i32>,
    /// `managedRoutes`, in precedence order.
    pub managed: Vec<String>,
}

impl Routing {
    /// The routing of `strategy` and what the controller read of its router, if it routes.
    pub fn of(p: &Planner<'_>, strategy: &CanaryStrategy) -> Option<Self> {
        let routing = strategy.traffic_routing.as_ref()?;
        Some(Self {
            max: routing.max_traffic_weight.unwrap_or(100).max(1),
            observed: p.observed.traffic.as_ref().and_then(|t| t.canary_weight),
            managed: routing
                .managed_routes
                .iter()
                .map(|r| r.name.clone())
                .collect(),
        })
    }

    /// Whether the router may send the canary any request now.
    fn canary_may_serve(&self) -> bool {
        self.observed != Some(0)
    }
}

/// The Services of the stable and the canary role as the status stands now.
fn role_services(p: &Planner<'_>, strategy: &CanaryStrategy) -> (Option<String>, Option<String>) {
    strategy.role_services(p.status.canary.as_ref().and_then(|c| c.stable_ping_pong))
}

/// With `pingPong`, a completed canary's Service becomes the stable one (its selector already
/// names the new version): no selector moves, so no connection is cut; the old stable Service
/// keeps the old version until the next canary.
fn swap_ping_pong(p: &mut Planner<'_>, c: &Canary<'_>) {
    if c.strategy.ping_pong.is_none() {
        return;
    }
    let status = p.status.canary.get_or_insert_with(Default::default);
    status.stable_ping_pong = Some(match status.stable_ping_pong {
        Some(PingPong::Pong) => PingPong::Ping,
        _ => PingPong::Pong,
    });
}

/// The weight (out of `max`) the step at `index` asks for: the last `setWeight` at or before it,
/// all of it once past the last step.
pub fn step_weight(steps: &[CanaryStep], index: i32, max: i32) -> i32 {
    if usize::try_from(index).is_ok_and(|i| i >= steps.len()) {
        return max;
    }
    weight_at(steps, index).clamp(0, max)
}

/// Pods that serve `weight` out of `max` of `desired` pods' traffic: rounded up, so a weight
/// above zero always has a pod.
pub fn pods_for(desired: i32, weight: i32, max: i32) -> i32 {
    let (desired, weight, max) = (
        i64::from(desired.max(0)),
        i64::from(weight.clamp(0, max)),
        i64::from(max.max(1)),
    );
    i32::try_from((desired * weight + max - 1) / max).unwrap_or(i32::MAX)
}

/// Canary pods at the step at `index`: the last `setCanaryScale` at or before it (`replicas`, or
/// `weight` as a share of `desired`), else as many as the step's traffic weight needs.
pub fn canary_target(steps: &[CanaryStep], index: i32, desired: i32, max: i32) -> i32 {
    let by_weight = pods_for(desired, step_weight(steps, index, max), max);
    let Some(upto) = usize::try_from(index).ok().filter(|i| *i < steps.len()) else {
        return desired;
    };
    let scale = steps[..=upto].iter().rev().find_map(|s| match s {
        CanaryStep::SetCanaryScale(scale) => Some(scale),
        _ => None,
    });
    match scale {
        Some(SetCanaryScale {
            replicas: Some(n), ..
        }) => (*n).clamp(0, desired),
        Some(SetCanaryScale {
            weight: Some(w), ..
        }) => pods_for(desired, *w, 100),
        _ => by_weight,
    }
}

/// The canary weight the step asks for, as far as the canary's available pods can serve it:
/// all of it at the target, the target's available share of it below, none without a pod.
pub fn servable_weight(step_weight: i32, target: i32, available: i32) -> i32 {
    if target <= 0 || available <= 0 {
        return 0;
    }
    if available >= target {
        return step_weight;
    }
    let scaled = i64::from(step_weight) * i64::from(available) / i64::from(target);
    i32::try_from(scaled).unwrap_or(0)
}

/// Pods a version that gets any traffic keeps at least (`minPodsPerReplicaSet`, 1 by default),
/// never more than the rollout's replicas.
fn with_min_pods(c: &Canary<'_>, pods: i32) -> i32 {
    let least = c.strategy.min_pods_per_replica_set.unwrap_or(1).max(1);
    if pods > 0 {
        pods.max(least).min(c.desired.max(pods))
    } else {
        0
    }
}

/// The canary's pods at the step at `index` ([`canary_target`] and `minPodsPerReplicaSet`).
fn target(c: &Canary<'_>, r: &Routing, index: i32) -> i32 {
    with_min_pods(c, canary_target(&c.steps.actions, index, c.desired, r.max))
}

/// Whether `dynamicStableScale` is on: the stable set shrinks as its share does.
fn dynamic(c: &Canary<'_>) -> bool {
    c.strategy.dynamic_stable_scale == Some(true)
}

/// The weight to give the canary now, with the rollout standing at `index`: the step's, as far
/// as the canary's available pods serve it; with `dynamicStableScale`, never more taken from the
/// canary than the stable set's available pods can serve.
fn weight_now(c: &Canary<'_>, r: &Routing, index: i32, live: bool) -> i32 {
    let steps = &c.steps.actions;
    let mut weight = if live {
        let available = c.set.as_ref().map_or(0, |s| s.available);
        servable_weight(
            step_weight(steps, index, r.max),
            target(c, r, index),
            available,
        )
    } else {
        0
    };
    let beside_stable = c.running && c.stable.as_deref().is_some_and(|s| s != c.hash);
    if dynamic(c) && beside_stable {
        let stable_available = c.counts.stable.map_or(0, |s| s.available);
        let stable_can = if stable_available >= c.desired {
            r.max
        } else {
            let scaled =
                i64::from(stable_available) * i64::from(r.max) / i64::from(c.desired.max(1));
            i32::try_from(scaled).unwrap_or(0)
        };
        let keep = (r.max - stable_can).min(r.observed.unwrap_or(r.max));
        weight = weight.max(keep);
    }
    weight
}

/// The stable set's pods while a canary runs beside it: all of them, or with
/// `dynamicStableScale` what the larger of its share now and its share to come needs (an
/// unknown router keeps it full).
fn stable_pods(c: &Canary<'_>, r: &Routing, weight: i32) -> i32 {
    let Some(observed) = r.observed.filter(|_| dynamic(c)) else {
        return c.desired;
    };
    with_min_pods(c, pods_for(c.desired, r.max - observed.min(weight), r.max))
}

/// Whether a `setWeight` or `setCanaryScale` step at `index` is done: the canary set reached its
/// pods and the router carries the weight they serve.
pub(super) fn step_done(c: &Canary<'_>, r: &Routing, index: i32) -> bool {
    let target = target(c, r, index);
    let at_target = c
        .set
        .as_ref()
        .is_some_and(|s| s.replicas == target && c.progress.met(s.available, target));
    at_target && r.observed == Some(weight_now(c, r, index, true))
}

/// Plans the pods, Services and router of a routed canary standing at `index`.
pub(super) fn plan(p: &mut Planner<'_>, c: &Canary<'_>, r: &Routing, index: i32, aborted: bool) {
    let before = p.status.stable_rs.clone();
    super::complete_if_done(p, c, index, aborted);
    let completed_now = p.status.stable_rs != before && c.running;
    let swapped;
    let r = if completed_now && c.strategy.ping_pong.is_some() {
        swap_ping_pong(p, c);
        // The router was read with the roles before the swap: the canary's weight then is the
        // stable's now.
        swapped = Routing {
            observed: r.observed.map(|w| r.max - w),
            ..r.clone()
        };
        &swapped
    } else {
        r
    };
    let (stable_service, canary_service) = role_services(p, c.strategy);
    let stable_now = super::stable_now(p, c);
    // Still a canary beside another stable version, neither completed nor aborted.
    let live = !aborted && stable_now != c.hash && c.running;
    let weight = weight_now(c, r, index, live);
    // The stable set is sized for where the weight is heading, before the weight can move there.
    let heading = if live {
        weight.min(step_weight(&c.steps.actions, index, r.max))
    } else {
        0
    };
    scale(p, c, r, index, (live, aborted, heading), &stable_now);
    // The canary Service keeps the canary's pods while the router may still send them requests
    // (an abort moves the weight first), and selects the stable version otherwise.
    let serves = c.set.as_ref().is_some_and(|s| s.available > 0);
    let canary_hash = if serves && (!aborted || r.canary_may_serve()) && stable_now != c.hash {
        c.hash.to_string()
    } else {
        stable_now.clone()
    };
    // With pingPong, a Service that is no canary's any more keeps its selector: nothing moves.
    let canary_service_points = c.strategy.ping_pong.is_none() || live;
    p.point_services(&[
        (stable_service.as_ref(), &stable_now),
        (
            canary_service.as_ref().filter(|_| canary_service_points),
            &canary_hash,
        ),
    ]);
    let with_pods = live && c.set.as_ref().is_some_and(|s| s.available > 0);
    let (header_routes, mirror_routes) = if with_pods {
        routes_at(&c.steps.actions, index, &r.managed)
    } else {
        (Vec::new(), Vec::new())
    };
    let desired = Desired {
        rollout: p.rollout.metadata.name.clone().unwrap_or_default(),
        namespace: p.rollout.metadata.namespace.clone().unwrap_or_default(),
        canary_weight: weight,
        max_weight: r.max,
        canary_service: canary_service.clone().unwrap_or_default(),
        stable_service: stable_service.clone().unwrap_or_default(),
        canary_hash,
        stable_hash: stable_now,
        header_routes,
        mirror_routes,
    };
    // The router's objects are not watched: read them back soon after a change, and now and
    // then anyway, so an edit by another writer is seen (and put back) within a bounded time.
    if r.observed != Some(weight) {
        p.requeue_in(Duration::from_secs(1));
    } else if c.running {
        p.requeue_in(RECHECK_WHILE_RUNNING);
    } else {
        p.requeue_in(RECHECK_AT_REST);
    }
    super::super::traffic::report_routed(p, &desired, r.observed);
    p.route(desired);
}

/// The header and mirror routes in force at `index`: for each managed route, the last step at or
/// before `index` that sets it, unless that step removes it.
pub fn routes_at(
    steps: &[CanaryStep],
    index: i32,
    managed: &[String],
) -> (Vec<HeaderRoute>, Vec<MirrorRoute>) {
    let upto = usize::try_from(index).unwrap_or(0).min(steps.len());
    let mut headers = Vec::new();
    let mut mirrors = Vec::new();
    for name in managed {
        let last = steps[..upto.saturating_add(1).min(steps.len())]
            .iter()
            .rev()
            .find(|s| match s {
                CanaryStep::SetHeaderRoute(h) => h.name.as_deref() == Some(name.as_str()),
                CanaryStep::SetMirrorRoute(m) => m.name == *name,
                _ => false,
            });
        match last {
            Some(CanaryStep::SetHeaderRoute(h)) if !h.matches.is_empty() => {
                headers.push(HeaderRoute {
                    name: name.clone(),
                    matches: h.matches.clone(),
                });
            }
            Some(CanaryStep::SetMirrorRoute(m)) if !m.matches.is_empty() => {
                mirrors.push(MirrorRoute {
                    name: name.clone(),
                    matches: m.matches.clone(),
                    percentage: m.percentage.unwrap_or(100).clamp(0, 100),
                });
            }
            _ => {}
        }
    }
    (headers, mirrors)
}

/// Sizes every set: the canary to its step, the stable set full, and a set no traffic can reach
/// down to zero once its delay is over.
fn scale(
    p: &mut Planner<'_>,
    c: &Canary<'_>,
    r: &Routing,
    index: i32,
    (live, aborted, weight): (bool, bool, i32),
    stable_now: &str,
) {
    let serving = serving_hashes(p, c, r, stable_now);
    let mut waiting = 0;
    let mut moves: Vec<(SetView, i32)> = Vec::new();
    let canary_to = if live {
        Some(live_canary_pods(c, r, index))
    } else if !aborted && stable_now == c.hash {
        Some(c.desired)
    } else {
        None
    };
    for set in p.sets.clone() {
        let to = if set.hash == c.hash && canary_to.is_some() {
            canary_to
        } else if set.hash == stable_now && stable_now != c.hash {
            Some(stable_pods(c, r, weight))
        } else if serving.contains(&set.hash) {
            keep_serving(p, &set);
            None
        } else {
            leave(p, c, &set, aborted, &mut waiting)
        };
        if let Some(to) = to {
            moves.push((set, to));
        }
    }
    for (set, to) in moves.iter().filter(|(set, to)| *to < set.replicas) {
        p.scale_set(set, *to);
    }
    if c.set.is_none() && !aborted {
        create(p, c, canary_to.unwrap_or(0), stable_now);
    }
    for (set, to) in moves.iter().filter(|(set, to)| *to > set.replicas) {
        p.scale_set(set, *to);
    }
}

/// The canary's pods while it runs: the step's, but while the router still carries a larger
/// weight than the step's (the weight goes down first), no fewer than that weight needs.
fn live_canary_pods(c: &Canary<'_>, r: &Routing, index: i32) -> i32 {
    let target = target(c, r, index);
    let current = c.set.as_ref().map_or(0, |s| s.replicas);
    // The weight the canary holds now or keeps: the router's, or what the stable set cannot take
    // back yet. Above the step's own weight, its pods stay (a setCanaryScale the user chose at
    // the step's weight is theirs to choose).
    let held = match r.observed {
        Some(w) => w.max(weight_now(c, r, index, true)),
        None => return target.max(current),
    };
    let step = step_weight(&c.steps.actions, index, r.max);
    let needed = if held > step {
        with_min_pods(c, pods_for(c.desired, held, r.max))
    } else {
        0
    };
    target.max(needed.min(current))
}

/// The versions traffic can reach now or once this plan's writes land: the one the stable
/// Service selects (and will select), and the one the canary Service selects while the router
/// may send it requests.
fn serving_hashes(p: &Planner<'_>, c: &Canary<'_>, r: &Routing, stable_now: &str) -> Vec<String> {
    let selected = |service: Option<&String>| {
        service
            .and_then(|s| p.observed.services.get(s.as_str()))
            .and_then(Option::as_ref)
            .and_then(|v| v.selector.get(POD_TEMPLATE_HASH_LABEL).cloned())
    };
    let (stable_service, canary_service) = role_services(p, c.strategy);
    let mut hashes = vec![stable_now.to_string()];
    hashes.extend(selected(stable_service.as_ref()));
    if r.canary_may_serve() {
        hashes.extend(selected(canary_service.as_ref()));
    }
    hashes
}

/// A set traffic still reaches keeps its pods; a scale-down deadline written when it last left
/// the traffic is void.
fn keep_serving(p: &mut Planner<'_>, set: &SetView) {
    if set.scale_down_deadline.is_some() {
        p.act(Action::UnannotateReplicaSet {
            name: set.name.clone(),
            key: SCALE_DOWN_DEADLINE_ANNOTATION,
        });
    }
}

/// What a set no traffic reaches is scaled to: nothing once its delay is over (written as a
/// deadline on the set when it first left the traffic); an aborted canary whose
/// `abortScaleDownDelaySeconds` is 0 keeps its pods, as in Argo. At most
/// `scaleDownDelayRevisionLimit` old sets wait at once (newest first); the others go now.
fn leave(
    p: &mut Planner<'_>,
    c: &Canary<'_>,
    set: &SetView,
    aborted: bool,
    waiting: &mut i32,
) -> Option<i32> {
    if set.replicas == 0 {
        return None;
    }
    let aborted_canary = aborted && set.hash == c.hash;
    let limit = c.strategy.scale_down_delay_revision_limit;
    if !aborted_canary && limit.is_some_and(|l| *waiting >= l) {
        return Some(0);
    }
    *waiting += 1;
    let delay = if aborted_canary {
        let delay = c
            .strategy
            .abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS);
        if delay == 0 {
            return None;
        }
        delay
    } else {
        c.strategy
            .scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    };
    if delay <= 0 {
        return Some(0);
    }
    match set.scale_down_deadline {
        None => {
            p.act(Action::AnnotateReplicaSet {
                name: set.name.clone(),
                key: SCALE_DOWN_DEADLINE_ANNOTATION,
                value: deadline_after(p.now, delay),
            });
            p.requeue_in(Duration::from_secs(u64::try_from(delay).unwrap_or(0)));
            None
        }
        Some(_) => match set.scale_down_wait(p.now) {
            Some(left) => {
                p.requeue_in(left);
                None
            }
            None => Some(0),
        },
    }
}

/// Creates the canary's set with `replicas` pods.
fn create(p: &mut Planner<'_>, c: &Canary<'_>, replicas: i32, stable_now: &str) {
    let mut rs = p.new_set(c.template, c.hash, replicas);
    if stable_now != c.hash {
        if let Some(rule) = c.strategy.anti_affinity.as_ref() {
            add_anti_affinity(&mut rs, rule, stable_now);
        }
        metadata::stamp(&mut rs, c.strategy.canary_metadata.as_ref());
    }
    p.create_set(rs);
}
