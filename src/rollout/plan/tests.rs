//! Table and property tests of `plan`: a pure simulator plays the cluster (ReplicaSets whose
//! pods become available at once, or never), and an oracle applies Argo CD's health rules to
//! the status, so each stage is checked as a user and Argo CD would see it.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use kube::ResourceExt;
use proptest::prelude::*;

use super::{Action, Observed, Plan, ServiceView, plan, replicasets::SetView};
use crate::api::{
    ConditionStatus, POD_TEMPLATE_HASH_LABEL, Rollout, RolloutConditionType, RolloutPhase,
};

/// A rollout named `web` in namespace `shop` with `replicas` pods and the given canary strategy.
fn rollout(replicas: i32, canary: serde_json::Value) -> Rollout {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "shop", "uid": "uid-1", "generation": 1 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                          "spec": { "containers": [{ "name": "web", "image": "web:1" }] } },
            "strategy": { "canary": canary }
        }
    }))
    .expect("a rollout")
}

/// The cluster as the tests play it.
struct Sim {
    rollout: Rollout,
    sets: Vec<ReplicaSet>,
    services: BTreeMap<String, Option<ServiceView>>,
    now: Timestamp,
    /// Pods of templates with this image never become available.
    broken_image: Option<String>,
    writes: usize,
    /// When set, checked after every single write: the pods the ReplicaSets ask for never
    /// exceed it (writes land one at a time, so every order of them must be safe).
    surge_limit: Option<i32>,
    /// Scaled-down sets keep their extra pods (and report them available) for one more round,
    /// as a real ReplicaSet controller does until the pods are gone.
    slow_scale_down: bool,
    /// The pods a restart reads (the simulator lists none unless a test sets them).
    pods_listed: Option<Vec<super::restart::PodView>>,
    /// The scale-downs that already lingered for a round.
    lingered: std::collections::BTreeSet<(String, i32)>,
}

impl Sim {
    fn new(rollout: Rollout) -> Self {
        let mut services = BTreeMap::new();
        if let Some(c) = rollout.spec.canary() {
            for name in [&c.canary_service, &c.stable_service].into_iter().flatten() {
                services.insert(
                    name.clone(),
                    Some(ServiceView {
                        selector: BTreeMap::from([("app".into(), "web".into())]),
                        managed_by: None,
                    }),
                );
            }
        }
        Self {
            rollout,
            sets: Vec::new(),
            services,
            now: Timestamp::from_second(1_800_000_000).expect("a time"),
            broken_image: None,
            writes: 0,
            surge_limit: None,
            slow_scale_down: false,
            pods_listed: None,
            lingered: std::collections::BTreeSet::new(),
        }
    }

    /// One reconcile: plan, carry out the actions, let the pods settle, store the status.
    fn reconcile(&mut self) -> Plan {
        let observed = Observed {
            replica_sets: self.sets.clone(),
            services: self.services.clone(),
            pods: self.pods_listed.clone(),
        };
        let plan = plan(&self.rollout, &observed, self.now);
        for action in &plan.actions {
            self.writes += 1;
            match action {
                Action::CreateReplicaSet(rs) => self.sets.push((**rs).clone()),
                Action::ScaleReplicaSet { name, to, .. } => {
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|s| s.name_any() == *name)
                        .expect("scaling a ReplicaSet that exists");
                    rs.spec.as_mut().expect("a spec").replicas = Some(*to);
                }
                Action::DeleteReplicaSet { name } => self.sets.retain(|s| s.name_any() != *name),
                Action::EvictPod { name } => {
                    let pods = self.pods_listed.as_mut().expect("evicting a listed pod");
                    let pod = pods
                        .iter_mut()
                        .find(|p| p.name == *name)
                        .expect("evicting a pod that exists");
                    pod.deleting = true;
                }
                Action::PointService { service, hash } => {
                    let view = self
                        .services
                        .get_mut(service)
                        .and_then(Option::as_mut)
                        .expect("pointing a Service that exists");
                    view.selector
                        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
                    view.managed_by = Some("web".into());
                }
            }
            if let Some(limit) = self.surge_limit {
                let total: i32 = self.pods().iter().map(|(_, n)| n).sum();
                assert!(
                    total <= limit,
                    "after `{action}` the sets ask for {total} pods > {limit}: {:?}",
                    self.pods()
                );
            }
        }
        self.settle();
        if plan.status != self.rollout.status.clone().unwrap_or_default() {
            self.writes += 1;
        }
        self.rollout.status = Some(plan.status.clone());
        plan
    }

    /// The ReplicaSet controller and kubelet: pods match spec.replicas, available unless broken.
    fn settle(&mut self) {
        for rs in &mut self.sets {
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let image = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .map(|s| s.containers[0].image.clone().unwrap_or_default());
            let up = if image == self.broken_image {
                0
            } else {
                replicas
            };
            let before = rs.status.as_ref().map_or(0, |s| s.replicas);
            if self.slow_scale_down
                && replicas < before
                && self.lingered.insert((rs.name_any(), replicas))
            {
                // The extra pods are still there (and serving) this round; next round they go.
                continue;
            }
            rs.status = Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(up),
                available_replicas: Some(up),
                ..Default::default()
            });
        }
    }

    /// Reconciles until nothing is left to do (no actions) or `limit` rounds pass.
    fn run(&mut self, limit: usize) -> Plan {
        let mut last = self.reconcile();
        for _ in 0..limit {
            if last.actions.is_empty() && self.rollout.status.as_ref() == Some(&last.status) {
                let again = self.reconcile();
                if again.actions.is_empty() {
                    return again;
                }
                last = again;
                continue;
            }
            last = self.reconcile();
        }
        last
    }

    fn set_image(&mut self, image: &str) {
        let template = self.rollout.spec.template.as_mut().expect("a template");
        template.spec.as_mut().expect("a pod spec").containers[0].image = Some(image.into());
        self.rollout.metadata.generation = Some(self.rollout.metadata.generation.unwrap_or(1) + 1);
    }

    fn advance(&mut self, seconds: u64) {
        self.now += Duration::from_secs(seconds);
    }

    /// Replicas per image, e.g. `[("web:1", 4), ("web:2", 1)]`, of the sets that have any.
    fn pods(&self) -> Vec<(String, i32)> {
        let mut pods: Vec<(String, i32)> = self
            .sets
            .iter()
            .map(|rs| {
                let spec = rs.spec.as_ref().expect("a spec");
                let image = spec
                    .template
                    .as_ref()
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|s| s.containers[0].image.clone())
                    .unwrap_or_default();
                (image, spec.replicas.unwrap_or(0))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        pods.sort();
        pods
    }

    fn status(&self) -> crate::api::RolloutStatus {
        self.rollout.status.clone().unwrap_or_default()
    }

    fn hash_of(&self, image: &str) -> String {
        self.sets
            .iter()
            .find(|rs| {
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|s| s.containers[0].image.as_deref())
                    == Some(image)
            })
            .and_then(SetView::of)
            .map(|v| v.hash)
            .expect("a set of that image")
    }

    fn service_hash(&self, name: &str) -> Option<String> {
        self.services
            .get(name)?
            .as_ref()?
            .selector
            .get(POD_TEMPLATE_HASH_LABEL)
            .cloned()
    }

    fn patch_status(&mut self, f: impl FnOnce(&mut crate::api::RolloutStatus)) {
        let mut status = self.status();
        f(&mut status);
        self.rollout.status = Some(status);
    }
}

/// Argo CD's built-in health rules for a Rollout, applied to the status (the test oracle).
fn argocd_health(rollout: &Rollout) -> (&'static str, String) {
    let Some(status) = rollout.status.as_ref() else {
        return ("Progressing", "no status".into());
    };
    match status
        .observed_generation
        .as_deref()
        .and_then(|g| g.parse::<i64>().ok())
    {
        Some(g) if Some(g) == rollout.metadata.generation => {}
        _ => {
            return (
                "Progressing",
                "Waiting for rollout spec update to be observed".into(),
            );
        }
    }
    for c in &status.conditions {
        let degraded = c.type_ == RolloutConditionType::InvalidSpec
            || (c.type_ == RolloutConditionType::Progressing
                && (c.reason == "RolloutAborted" || c.reason == "ProgressDeadlineExceeded"));
        if degraded {
            return ("Degraded", c.message.clone());
        }
    }
    if !status.pause_conditions.is_empty() || rollout.spec.is_paused() {
        return ("Suspended", "Rollout is paused".into());
    }
    let Some(current) = status.current_pod_hash.as_deref() else {
        return ("Progressing", "status not reconciled".into());
    };
    let (desired, pods, updated, available) = (
        rollout.spec.desired_replicas(),
        status.replicas.unwrap_or(0),
        status.updated_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    );
    if updated < desired {
        return ("Progressing", "More replicas need to be updated".into());
    }
    if available < updated {
        return (
            "Progressing",
            "updated replicas are still becoming available".into(),
        );
    }
    if pods > updated {
        return ("Progressing", "old replicas are pending termination".into());
    }
    if status.stable_rs.as_deref() != Some(current) {
        return ("Progressing", "Waiting for rollout to finish steps".into());
    }
    ("Healthy", String::new())
}

fn condition_reason(sim: &Sim, type_: RolloutConditionType) -> Option<String> {
    sim.status()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone())
}

fn standard_steps() -> serde_json::Value {
    serde_json::json!({
        "canaryService": "web-canary", "stableService": "web-stable",
        "maxSurge": "25%", "maxUnavailable": 0,
        "steps": [ { "setWeight": 20 }, { "pause": { "duration": "10s" } }, { "setWeight": 60 }, { "pause": {} } ]
    })
}

/// A rollout deployed once and Healthy on `web:1`.
fn deployed(canary: serde_json::Value, replicas: i32) -> Sim {
    let mut sim = Sim::new(rollout(replicas, canary));
    sim.run(20);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    sim
}

#[test]
fn a_first_deploy_creates_one_full_replica_set_and_is_healthy_without_steps() {
    let mut sim = Sim::new(rollout(5, standard_steps()));
    let first = sim.reconcile();
    assert!(
        matches!(&first.actions[0], Action::CreateReplicaSet(rs) if rs.spec.as_ref().and_then(|s| s.replicas) == Some(5))
    );
    sim.run(10);
    let status = sim.status();
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);
    assert_eq!(
        status.stable_rs, status.current_pod_hash,
        "the first version is stable at once"
    );
    assert_eq!(
        status.current_step_index,
        Some(4),
        "no steps on a first deploy"
    );
    assert_eq!(status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(argocd_health(&sim.rollout), ("Healthy", String::new()));
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas
        ),
        (Some(5), Some(5), Some(5))
    );
    assert_eq!(status.observed_generation.as_deref(), Some("1"));
    assert_eq!(status.selector.as_deref(), Some("app=web"));
    let hash = status.stable_rs.clone().expect("a stable hash");
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(hash.as_str())
    );
    assert_eq!(
        sim.service_hash("web-canary").as_deref(),
        Some(hash.as_str())
    );
}

#[test]
fn a_canary_walks_its_steps_pauses_and_completes_when_promoted() {
    let mut sim = deployed(standard_steps(), 5);
    let stable = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");

    // setWeight 20 → 1 canary pod of 5, then the timed pause holds.
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 1)]
    );
    let status = sim.status();
    assert_eq!(status.current_step_index, Some(1));
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    assert_eq!(
        status.stable_rs.as_deref(),
        Some(stable.as_str()),
        "the stable does not change mid-rollout"
    );
    let canary = sim.hash_of("web:2");
    assert_eq!(
        sim.service_hash("web-canary").as_deref(),
        Some(canary.as_str()),
        "the canary Service serves the canary"
    );
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(stable.as_str())
    );
    assert_eq!(
        status
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map(|w| (w.canary.weight, w.stable.weight)),
        Some((20, 80))
    );

    // Not yet: 9 s into a 10 s pause.
    sim.advance(9);
    sim.run(5);
    assert_eq!(sim.status().current_step_index, Some(1));
    // After 10 s: setWeight 60 → 3 of 5, then the indefinite pause.
    sim.advance(1);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 3)]
    );
    assert_eq!(sim.status().current_step_index, Some(3));
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    // Time alone does not end an indefinite pause.
    sim.advance(3600);
    sim.run(5);
    assert_eq!(sim.status().current_step_index, Some(3));

    // Promote as Argo CD's resume action and the plugin do: clear the pause conditions.
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(30);
    let status = sim.status();
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
    assert_eq!(status.stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(status.current_step_index, Some(4));
    assert_eq!(argocd_health(&sim.rollout), ("Healthy", String::new()));
    assert_eq!(
        condition_reason(&sim, RolloutConditionType::Progressing).as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        sim.service_hash("web-stable").as_deref(),
        Some(canary.as_str())
    );
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    assert_eq!(sim.status().current_step_index, Some(1));
    sim.patch_status(|s| s.promote_full = Some(true));
    sim.run(30);
    assert_eq!(sim.pods(), [("web:2".to_string(), 5)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
    assert_eq!(
        sim.status().promote_full,
        None,
        "promoteFull is spent once the update completes"
    );
}

#[test]
fn a_step_index_raised_by_someone_else_is_where_the_rollout_continues() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    sim.patch_status(|s| {
        s.current_step_index = Some(2);
        s.pause_conditions.clear();
        s.controller_pause = None;
    });
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 2), ("web:2".to_string(), 3)],
        "setWeight 60 ran"
    );
    assert_eq!(sim.status().current_step_index, Some(3));
}

#[test]
fn abort_returns_everything_to_stable_and_retry_starts_over() {
    let mut sim = deployed(standard_steps(), 5);
    let stable = sim.status().stable_rs.expect("stable");
    sim.set_image("web:2");
    sim.run(20);
    sim.patch_status(|s| s.abort = Some(true));
    sim.run(20);
    let status = sim.status();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5)],
        "the canary is scaled to zero, the stable back to full"
    );
    assert_eq!(status.phase, Some(RolloutPhase::Degraded));
    assert!(status.aborted_at.is_some());
    assert_eq!(
        condition_reason(&sim, RolloutConditionType::Progressing).as_deref(),
        Some("RolloutAborted")
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert_eq!(
        sim.service_hash("web-canary").as_deref(),
        Some(stable.as_str()),
        "no traffic to the aborted version"
    );
    // The aborted revision stays down while abort is set.
    sim.advance(600);
    sim.run(10);
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);

    // Retry: abort cleared (as `kubectl sluice retry` and Argo CD's retry action do).
    sim.patch_status(|s| s.abort = None);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 1)],
        "the steps start over at setWeight 20"
    );
    assert_eq!(sim.status().current_step_index, Some(1));
}

#[test]
fn changing_the_template_back_to_stable_rolls_back_at_once() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    sim.set_image("web:1");
    sim.run(20);
    let status = sim.status();
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5)],
        "the canary disappears"
    );
    assert_eq!(status.current_step_index, Some(4), "steps are skipped");
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn spec_paused_holds_the_rollout_where_it_is() {
    let mut sim = deployed(standard_steps(), 5);
    sim.rollout.spec.paused = Some(true);
    sim.set_image("web:2");
    let plan = sim.run(10);
    assert!(plan.actions.is_empty());
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5)],
        "no canary while paused"
    );
    assert_eq!(sim.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(argocd_health(&sim.rollout).0, "Suspended");
    sim.rollout.spec.paused = Some(false);
    sim.run(20);
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 4), ("web:2".to_string(), 1)]
    );
}

#[test]
fn an_invalid_spec_is_reported_and_nothing_is_scaled() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    if let Some(c) = sim
        .rollout
        .spec
        .strategy
        .as_mut()
        .and_then(|s| s.canary.as_mut())
    {
        c.steps[0] = crate::api::CanaryStep::SetWeight(150);
    }
    let plan = sim.reconcile();
    assert!(
        plan.actions.is_empty(),
        "nothing is created or scaled down: {:?}",
        plan.actions
    );
    assert_eq!(sim.pods(), [("web:1".to_string(), 5)]);
    let (health, message) = argocd_health(&sim.rollout);
    assert_eq!(health, "Degraded");
    assert!(
        message.contains("spec.strategy.canary.steps[0].setWeight"),
        "{message}"
    );
    assert!(plan.events.iter().any(|e| e.reason == "InvalidSpec"));
    // Reported once: the same problem does not raise a second event.
    assert!(
        sim.reconcile()
            .events
            .iter()
            .all(|e| e.reason != "InvalidSpec")
    );
}

#[test]
fn a_missing_service_is_an_error_condition_not_a_crash() {
    let mut sim = Sim::new(rollout(3, standard_steps()));
    sim.services.insert("web-canary".into(), None);
    let plan = sim.reconcile();
    assert!(plan.actions.is_empty());
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert!(
        sim.status()
            .message
            .unwrap_or_default()
            .contains("\"web-canary\" not found")
    );
}

#[test]
fn no_progress_past_the_deadline_degrades_and_can_abort() {
    let mut canary = standard_steps();
    canary["maxUnavailable"] = 1.into();
    let mut sim = deployed(canary, 4);
    sim.rollout.spec.progress_deadline_seconds = Some(60);
    sim.rollout.spec.progress_deadline_abort = Some(true);
    sim.broken_image = Some("web:2".into());
    sim.set_image("web:2");
    sim.run(10);
    assert_eq!(sim.status().phase, Some(RolloutPhase::Progressing));
    sim.advance(61);
    let plan = sim.reconcile();
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "ProgressDeadlineExceeded")
    );
    sim.run(10);
    assert_eq!(argocd_health(&sim.rollout).0, "Degraded");
    assert_eq!(
        sim.status().abort,
        Some(true),
        "progressDeadlineAbort aborts"
    );
    assert_eq!(sim.pods(), [("web:1".to_string(), 4)]);
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let mut sim = deployed(serde_json::json!({ "steps": [] }), 2);
    sim.rollout.spec.revision_history_limit = Some(1);
    for image in ["web:2", "web:3", "web:4"] {
        sim.set_image(image);
        sim.run(20);
    }
    assert_eq!(sim.pods(), [("web:4".to_string(), 2)]);
    assert_eq!(
        sim.sets.len(),
        2,
        "the current set and one old one are kept"
    );
}

#[test]
fn a_steady_rollout_writes_nothing() {
    let mut sim = deployed(standard_steps(), 3);
    let writes = sim.writes;
    for _ in 0..5 {
        sim.advance(30);
        let plan = sim.reconcile();
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, None, "no timer on a healthy rollout");
    }
    assert_eq!(sim.writes, writes, "no status patch when nothing changed");
}

#[test]
fn a_restarted_controller_resumes_the_same_pause_timer() {
    let mut sim = deployed(standard_steps(), 5);
    sim.set_image("web:2");
    sim.run(20);
    let started = sim.status().pause_conditions[0].start_time.clone();
    // A new process reads the same status: the pause keeps its start time and ends on schedule.
    sim.advance(4);
    let plan = sim.reconcile();
    assert_eq!(sim.status().pause_conditions[0].start_time, started);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(6)));
}

#[test]
fn a_rollout_without_steps_is_a_rolling_update_within_surge_and_unavailability() {
    let mut sim = deployed(serde_json::json!({ "maxSurge": 1, "maxUnavailable": 0 }), 4);
    sim.surge_limit = Some(5);
    sim.set_image("web:2");
    for _ in 0..40 {
        sim.reconcile();
        let total: i32 = sim.pods().iter().map(|(_, n)| n).sum();
        assert!(
            total <= 5,
            "never more than replicas + maxSurge pods: {:?}",
            sim.pods()
        );
    }
    assert_eq!(sim.pods(), [("web:2".to_string(), 4)]);
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over random sizes, limits and steps: pods never exceed replicas + maxSurge, available pods
    /// never drop below replicas − maxUnavailable, weights stay within 0..=100, and the step
    /// index never moves backwards within a revision; the rollout ends Healthy.
    #[test]
    fn invariants_hold_along_any_canary(
        replicas in 1i32..12,
        surge in 0i32..4,
        unavailable in 0i32..4,
        weights in proptest::collection::vec(0i32..=100, 0..5),
    ) {
        prop_assume!(surge + unavailable > 0);
        let steps: Vec<serde_json::Value> = weights.iter().flat_map(|w| [serde_json::json!({ "setWeight": w }), serde_json::json!({ "pause": { "duration": 5 } })]).collect();
        let mut sim = deployed(serde_json::json!({ "maxSurge": surge, "maxUnavailable": unavailable, "steps": steps }), replicas);
        sim.surge_limit = Some(replicas + surge);
        sim.set_image("web:2");
        let mut last_index = 0;
        for _ in 0..200 {
            let plan = sim.reconcile();
            let total: i32 = sim.pods().iter().map(|(_, n)| n).sum();
            prop_assert!(total <= replicas + surge, "{total} pods > {replicas} + {surge}");
            let available: i32 = sim.sets.iter().filter_map(|s| s.status.as_ref()?.available_replicas).sum();
            prop_assert!(available >= replicas - unavailable, "{available} available < {replicas} - {unavailable}");
            if let Some(w) = plan.status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
                prop_assert!((0..=100).contains(&w.canary.weight) && w.canary.weight + w.stable.weight == 100);
            }
            let index = plan.status.current_step_index.unwrap_or(0);
            prop_assert!(index >= last_index, "the step index went back from {last_index} to {index}");
            last_index = index;
            sim.advance(1);
        }
        prop_assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
        prop_assert_eq!(sim.pods(), vec![("web:2".to_string(), replicas)]);
    }
}

#[test]
fn set_canary_scale_sizes_the_canary_and_the_weight_sizes_the_stable_set() {
    let steps = serde_json::json!({
        "steps": [
            { "setCanaryScale": { "replicas": 3 } },
            { "setWeight": 10 },
            { "pause": {} },
            { "setCanaryScale": { "matchTrafficWeight": true } },
            { "setWeight": 50 },
            { "pause": {} },
        ]
    });
    let mut sim = deployed(steps, 10);
    sim.set_image("web:2");
    sim.run(30);
    assert_eq!(sim.status().current_step_index, Some(2));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 9), ("web:2".to_string(), 3)],
        "3 canary pods by setCanaryScale; the stable set leaves room for 10%"
    );
    sim.patch_status(|s| s.pause_conditions.clear());
    sim.run(30);
    assert_eq!(sim.status().current_step_index, Some(5));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 5), ("web:2".to_string(), 5)],
        "matchTrafficWeight: the canary follows the weight again"
    );
}

#[test]
fn a_step_completes_only_once_the_scaled_down_pods_are_gone() {
    let mut sim = deployed(standard_steps(), 5);
    sim.slow_scale_down = true;
    sim.set_image("web:2");
    for _ in 0..40 {
        let plan = sim.reconcile();
        if !plan.status.pause_conditions.is_empty() {
            let lingering: Vec<_> = sim
                .sets
                .iter()
                .filter(|s| {
                    s.status.as_ref().map_or(0, |st| st.replicas)
                        > s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(0)
                })
                .map(ResourceExt::name_any)
                .collect();
            assert!(
                lingering.is_empty(),
                "paused while {lingering:?} still shrink"
            );
            let weights = plan.status.canary.and_then(|c| c.weights).expect("weights");
            assert_eq!((weights.canary.weight, weights.stable.weight), (20, 80));
            return;
        }
    }
    panic!("the first pause was never reached");
}

#[test]
fn restart_at_evicts_old_pods_a_few_at_a_time_and_records_the_restart() {
    let mut sim = deployed(serde_json::json!({ "maxSurge": 1, "maxUnavailable": 1 }), 4);
    let hash = sim.status().stable_rs.expect("a stable set");
    let before = sim.now;
    sim.pods_listed = Some(
        (0..4)
            .map(|i| super::restart::PodView {
                name: format!("web-{i}"),
                hash: hash.clone(),
                created: before,
                ready: true,
                deleting: false,
            })
            .collect(),
    );
    sim.advance(60);
    let at = sim.now;
    sim.rollout.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
    let mut evictions = 0;
    for round in 0..40 {
        let plan = sim.reconcile();
        let evicting = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::EvictPod { .. }))
            .count();
        assert!(
            evicting <= 1,
            "round {round}: {evicting} evictions at once with maxUnavailable 1"
        );
        evictions += evicting;
        // The ReplicaSet replaces each evicted pod with a new, ready one.
        let pods = sim.pods_listed.as_mut().expect("pods");
        for pod in pods.iter_mut().filter(|p| p.deleting) {
            *pod = super::restart::PodView {
                name: format!("{}-new", pod.name),
                hash: hash.clone(),
                created: at,
                ready: true,
                deleting: false,
            };
        }
        if sim.status().restarted_at.is_some() {
            break;
        }
    }
    assert_eq!(evictions, 4, "every old pod was restarted once");
    assert_eq!(sim.status().restarted_at.map(|t| t.0), Some(at));
    assert!(
        !super::restart::pending(&sim.rollout, sim.now),
        "done: no more listing of pods"
    );
    assert_eq!(argocd_health(&sim.rollout).0, "Healthy");
}

#[test]
fn a_restart_waits_while_a_pod_is_not_ready() {
    let mut sim = deployed(serde_json::json!({ "maxSurge": 1, "maxUnavailable": 2 }), 3);
    let hash = sim.status().stable_rs.expect("a stable set");
    let before = sim.now;
    sim.pods_listed = Some(
        (0..3)
            .map(|i| super::restart::PodView {
                name: format!("web-{i}"),
                hash: hash.clone(),
                created: before,
                ready: i != 0,
                deleting: false,
            })
            .collect(),
    );
    sim.advance(10);
    sim.rollout.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        sim.now,
    ));
    let plan = sim.reconcile();
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::EvictPod { .. })),
        "no eviction while a pod is not ready: {:?}",
        plan.actions
    );
    assert!(plan.requeue_after.is_some());
}

#[test]
fn conditions_are_always_present_for_argo_cd() {
    let mut sim = Sim::new(rollout(2, standard_steps()));
    sim.reconcile();
    let status = sim.status();
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == RolloutConditionType::Available)
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == RolloutConditionType::Progressing
                && c.status == ConditionStatus::True)
    );
}
