//! Table and property tests of `plan`: a pure simulator plays the cluster (ReplicaSets whose
//! pods become available at once, or never), and an oracle applies Argo CD's health rules to
//! the status, so each stage is checked as a user and Argo CD would see it.
//!
//! This module holds the simulator and the oracle; the tests live in its children.

mod analysis;
mod argo_seen;
mod bluegreen;
mod canary;
mod experiment;
mod experiment_step;
mod failures;
mod properties;
mod restart;
mod rollback;
mod routed;
mod several;
mod workload;

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use kube_core::ResourceExt;
use sluice_api::{
    ConditionStatus, Rollout, RolloutConditionType, RolloutPhase,
    vocab::{EPHEMERAL_ANNOTATION, POD_TEMPLATE_HASH_LABEL},
};

use super::{Action, Observed, Plan, ServiceView, plan, replicasets::SetView};

/// A rollout named `web` in namespace `shop` with `replicas` pods and the given canary strategy.
fn rollout(replicas: i32, canary: serde_json::Value) -> Rollout {
    rollout_with(replicas, serde_json::json!({ "canary": canary }))
}

/// A rollout named `web` in namespace `shop` with `replicas` pods and the given strategy.
fn rollout_with(replicas: i32, strategy: serde_json::Value) -> Rollout {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "shop", "uid": "uid-1", "generation": 1 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                          "spec": { "containers": [{ "name": "web", "image": "web:1" }] } },
            "strategy": strategy
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
    /// Pods of this image that never become available, in each of its sets (a bad node, a
    /// slow volume): the rest of the set's pods are.
    lame_pods: Option<(String, i32)>,
    writes: usize,
    /// When set, checked after every single write: the pods the ReplicaSets ask for never
    /// exceed it (writes land one at a time, so every order of them must be safe).
    surge_limit: Option<i32>,
    /// Scaled-down sets keep their extra pods (and report them available) for one more round,
    /// as a real ReplicaSet controller does until the pods are gone.
    slow_scale_down: bool,
    /// The pods a restart reads (the simulator lists none unless a test sets them).
    pods_listed: Option<Vec<crate::restart::PodView>>,
    /// The scale-downs that already lingered for a round.
    lingered: std::collections::BTreeSet<(String, i32)>,
    /// The AnalysisRuns, as the AnalysisRun controller would leave them (tests set phases).
    runs: Vec<super::analysis::RunView>,
    /// The router of a routed canary, as it carries the plan's last traffic decision.
    router: Option<sluice_traffic::Desired>,
    /// A router that ignores writes (its objects cannot be written).
    router_stuck: bool,
    /// The next reconcile dies after this many of its writes (before the router's and the
    /// status's).
    crash_after: Option<usize>,
    /// What the cluster holds of the templates the rollout names, by (name, cluster scope):
    /// `None` for one that does not exist. A template not listed exists and is valid.
    templates: BTreeMap<(String, bool), Option<sluice_api::AnalysisTemplateSpec>>,
    /// The events published so far (reason, message): as the controller does, only those of
    /// reconciles whose writes all landed.
    published: Vec<(&'static str, String)>,
    /// The Deployment a `workloadRef` names, as the cluster holds it.
    workload: Option<crate::workload::Workload>,
    /// The Experiments, as the Experiment controller would leave them.
    experiments: Vec<crate::canary::experiment::ExperimentView>,
    /// The Experiments created, as the plan made them.
    experiment_objects: Vec<sluice_api::Experiment>,
    /// How an Experiment ends once it has run [`Sim::experiment_rounds`] rounds; `None`: it
    /// runs until a test sets its phase.
    experiment_outcome: Option<sluice_api::AnalysisPhase>,
    /// Rounds an Experiment runs before it ends.
    experiment_rounds: u32,
    /// Rounds each Experiment has run.
    experiment_ages: BTreeMap<String, u32>,
}

impl Sim {
    fn new(rollout: Rollout) -> Self {
        let mut services = BTreeMap::new();
        let named: Vec<String> = match rollout.spec.strategy() {
            Some(sluice_api::Strategy::Canary(c)) => [&c.canary_service, &c.stable_service]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            Some(sluice_api::Strategy::BlueGreen(b)) => std::iter::once(b.active_service.clone())
                .chain(b.preview_service.clone())
                .collect(),
            None => Vec::new(),
        };
        for name in &named {
            services.insert(
                name.clone(),
                Some(ServiceView {
                    selector: BTreeMap::from([("app".into(), "web".into())]),
                    managed_by: None,
                }),
            );
        }
        Self {
            rollout,
            sets: Vec::new(),
            services,
            now: Timestamp::from_second(1_800_000_000).expect("a time"),
            broken_image: None,
            lame_pods: None,
            writes: 0,
            surge_limit: None,
            slow_scale_down: false,
            pods_listed: None,
            lingered: std::collections::BTreeSet::new(),
            runs: Vec::new(),
            router: None,
            router_stuck: false,
            crash_after: None,
            published: Vec::new(),
            workload: None,
            templates: BTreeMap::new(),
            experiments: Vec::new(),
            experiment_objects: Vec::new(),
            experiment_outcome: Some(sluice_api::AnalysisPhase::Successful),
            experiment_rounds: 3,
            experiment_ages: BTreeMap::new(),
        }
    }

    /// The problems of the templates the rollout names, as the controller finds them.
    fn template_problems(&self) -> Vec<sluice_api::SpecProblem> {
        let valid = sluice_api::AnalysisTemplateSpec {
            metrics: vec![
                serde_json::from_value(serde_json::json!({
                    "name": "m", "provider": {"web": {"url": "http://example"}}
                }))
                .expect("a metric"),
            ],
            ..Default::default()
        };
        crate::analysis::template_problems(&self.rollout.spec, |t| {
            let key = (t.template_name.clone(), t.cluster_scope.unwrap_or(false));
            match self.templates.get(&key) {
                None => crate::analysis::Found::Spec(&valid),
                Some(None) => crate::analysis::Found::Missing,
                Some(Some(spec)) => crate::analysis::Found::Spec(spec),
            }
        })
    }

    /// What the plan reads of the router: the weight it carries (0 before any write).
    fn traffic(&self) -> Option<super::traffic::TrafficView> {
        let routed = self
            .rollout
            .spec
            .canary()
            .is_some_and(|c| c.traffic_routing.is_some());
        routed.then(|| super::traffic::TrafficView {
            canary_weight: Some(self.router.as_ref().map_or(0, |d| d.canary_weight)),
        })
    }

    /// One reconcile: plan, carry out the actions, let the pods settle, store the status.
    fn reconcile(&mut self) -> Plan {
        let observed = Observed {
            replica_sets: self.sets.clone(),
            services: self.services.clone(),
            pods: self.pods_listed.clone(),
            analysis_runs: self.runs.clone(),
            traffic: self.traffic(),
            template_problems: self.template_problems(),
            workload: self.workload.clone(),
            experiments: self.experiments.clone(),
        };
        let plan = plan(&self.rollout, &observed, self.now);
        self.check_switches(&plan);
        self.check_traffic(&plan);
        let crash = self.crash_after.take();
        for action in plan.actions.iter().take(crash.unwrap_or(usize::MAX)) {
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
                Action::ScaleWorkload { to, .. } => {
                    if let Some(crate::workload::Workload::Found(view)) = self.workload.as_mut() {
                        view.replicas = *to;
                    }
                }
                Action::AnnotateReplicaSet { name, key, value } => {
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|s| s.name_any() == *name)
                        .expect("annotating a ReplicaSet that exists");
                    rs.annotations_mut()
                        .insert((*key).to_string(), value.clone());
                }
                Action::UnannotateReplicaSet { name, key } => {
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|s| s.name_any() == *name)
                        .expect("unannotating a ReplicaSet that exists");
                    rs.annotations_mut().remove(*key);
                }
                Action::EvictPod { name } => {
                    let pods = self.pods_listed.as_mut().expect("evicting a listed pod");
                    let pod = pods
                        .iter_mut()
                        .find(|p| p.name == *name)
                        .expect("evicting a pod that exists");
                    pod.deleting = true;
                }
                Action::CreateAnalysisRun(run) => {
                    if !self.runs.iter().any(|r| r.name == run.name) {
                        self.runs.push(super::analysis::RunView {
                            name: run.name.clone(),
                            hash: run.hash.clone(),
                            kind: Some(run.kind),
                            phase: sluice_api::AnalysisPhase::Pending,
                            message: None,
                            terminating: false,
                            spent: false,
                            cut_by_controller: false,
                            created: Some(self.now),
                        });
                    }
                }
                Action::TerminateAnalysisRun { name } => {
                    let run = self
                        .runs
                        .iter_mut()
                        .find(|r| r.name == *name)
                        .expect("terminating a run that exists");
                    // As the AnalysisRun controller ends a terminated run, and with the label
                    // the terminate patch sets.
                    run.terminating = true;
                    run.cut_by_controller = true;
                    run.phase = sluice_api::AnalysisPhase::Successful;
                }
                Action::DeleteAnalysisRun { name } => self.runs.retain(|r| r.name != *name),
                Action::SpendAnalysisRun { name } => {
                    for run in self.runs.iter_mut().filter(|r| r.name == *name) {
                        run.spent = true;
                    }
                }
                Action::SetPodMetadata { name, wanted, .. } => {
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|s| s.name_any() == *name)
                        .expect("labelling a ReplicaSet that exists");
                    rs.annotations_mut().insert(
                        EPHEMERAL_ANNOTATION.into(),
                        serde_json::to_string(wanted).expect("json"),
                    );
                }
                Action::CreateExperiment(experiment) => {
                    let name = experiment.name_any();
                    assert!(
                        !self.experiments.iter().any(|e| e.name == name),
                        "Experiment {name} created twice"
                    );
                    let mut view = crate::canary::experiment::ExperimentView::of(experiment);
                    view.phase = Some(sluice_api::AnalysisPhase::Pending);
                    self.experiments.push(view);
                    self.experiment_objects.push((**experiment).clone());
                }
                Action::TerminateExperiment { name } => {
                    let object = self
                        .experiment_objects
                        .iter()
                        .find(|e| e.name_any() == *name)
                        .expect("terminating an Experiment that exists");
                    // Sluice's rule: stopped before anything was judged is Inconclusive, unless
                    // there was nothing to judge.
                    let judged = object.spec.duration.is_some()
                        || object.spec.analyses.iter().any(|a| a.required());
                    let view = self
                        .experiments
                        .iter_mut()
                        .find(|e| e.name == *name)
                        .expect("terminating an Experiment that exists");
                    assert!(!view.terminated, "Experiment {name} terminated twice");
                    view.terminated = true;
                    view.cut_by_controller = true;
                    if !view.is_completed() {
                        view.phase = Some(if judged {
                            sluice_api::AnalysisPhase::Inconclusive
                        } else {
                            sluice_api::AnalysisPhase::Successful
                        });
                    }
                }
                Action::SpendExperiment { name } => {
                    for view in self.experiments.iter_mut().filter(|e| e.name == *name) {
                        view.spent = true;
                    }
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
        if crash.is_some() {
            // The controller died after those writes: no router write, no status write.
            self.settle();
            return plan;
        }
        if let Some(desired) = plan.traffic.as_ref().filter(|_| !self.router_stuck) {
            self.router = Some(desired.clone());
        }
        self.settle();
        if plan.status != self.rollout.status.clone().unwrap_or_default() {
            self.writes += 1;
        }
        self.rollout.status = Some(plan.status.clone());
        self.published
            .extend(plan.events.iter().map(|e| (e.reason, e.message.clone())));
        plan
    }

    /// A routed canary's promise: no set traffic reaches is scaled down, and the router sends
    /// the canary requests (by weight or header) only when the version its Service selects once
    /// this plan's writes land has an available pod.
    fn check_traffic(&self, plan: &Plan) {
        let Some(canary) = self
            .rollout
            .spec
            .canary()
            .filter(|c| c.traffic_routing.is_some())
        else {
            return;
        };
        // The Services of each role as the status stands (with pingPong they take turns).
        let stable_ping_pong = self
            .rollout
            .status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .and_then(|c| c.stable_ping_pong);
        let (stable_svc, canary_svc) = canary.role_services(stable_ping_pong);
        let (stable_svc, canary_svc) = (
            stable_svc.unwrap_or_default(),
            canary_svc.unwrap_or_default(),
        );
        let weight = self.router.as_ref().map_or(0, |d| d.canary_weight);
        let max = canary
            .traffic_routing
            .as_ref()
            .and_then(|t| t.max_traffic_weight)
            .unwrap_or(100);
        let desired_pods = self.rollout.spec.desired_replicas();
        let views: Vec<SetView> = self.sets.iter().filter_map(SetView::of).collect();
        // The pods each version needs for the share of requests its Services get now.
        let needs = |hash: &str| {
            let mut share = 0;
            if self.service_hash(&stable_svc).as_deref() == Some(hash) {
                share += max - weight;
            }
            if self.service_hash(&canary_svc).as_deref() == Some(hash) {
                share += weight;
            }
            super::canary::routed::pods_for(desired_pods, share, max)
        };
        let mut canary_hash = self.service_hash(&canary_svc);
        for action in &plan.actions {
            match action {
                Action::ScaleReplicaSet { name, from, to } if to < from => {
                    let set = views.iter().find(|s| s.name == *name).expect("a set");
                    assert!(
                        *to >= needs(&set.hash),
                        "{name} was scaled down from {from} to {to} while its Services' share of the requests needs {} pods (router weight {weight})",
                        needs(&set.hash)
                    );
                }
                Action::PointService { service, hash } if *service == canary_svc => {
                    canary_hash = Some(hash.clone());
                }
                _ => {}
            }
        }
        let Some(desired) = plan.traffic.as_ref() else {
            return;
        };
        if desired.canary_service != canary_svc {
            // The roles swapped in this plan: the canary's Service is the one it names.
            canary_hash = self.service_hash(&desired.canary_service);
        }
        let available = views
            .iter()
            .filter(|s| Some(&s.hash) == canary_hash.as_ref())
            .map(|s| s.available)
            .sum::<i32>();
        if desired.canary_weight > 0 || !desired.header_routes.is_empty() {
            assert!(
                available > 0,
                "the router was asked to send the canary requests ({desired:?}) with no available pod behind its Service"
            );
        }
        assert!((0..=desired.max_weight).contains(&desired.canary_weight));
    }

    /// Blue/green's promise: the active Service is switched to the current version only when its
    /// set is fully available, and a set the active Service selects is never scaled down.
    fn check_switches(&self, plan: &Plan) {
        let Some(bg) = self.rollout.spec.blue_green() else {
            return;
        };
        let desired = self.rollout.spec.desired_replicas();
        let current = plan.status.current_pod_hash.clone();
        let active = self.service_hash(&bg.active_service);
        for action in &plan.actions {
            match action {
                Action::PointService { service, hash }
                    if *service == bg.active_service && Some(hash) == current.as_ref() =>
                {
                    let set = self
                        .sets
                        .iter()
                        .filter_map(SetView::of)
                        .find(|s| s.hash == *hash)
                        .expect("switching to a set that exists");
                    assert!(
                        super::bluegreen::fully_available(&set, desired),
                        "the active Service was switched to {set:?}, which is not fully available"
                    );
                }
                Action::ScaleReplicaSet { name, to, .. } => {
                    let set = self
                        .sets
                        .iter()
                        .filter_map(SetView::of)
                        .find(|s| s.name == *name)
                        .expect("scaling a set that exists");
                    if Some(&set.hash) == active.as_ref() {
                        assert!(
                            *to >= desired.min(set.replicas),
                            "the set the active Service selects was scaled down to {to}: {set:?}"
                        );
                    }
                    if *to == 0
                        && let Some(deadline) = set.scale_down_deadline
                    {
                        assert!(
                            self.now >= deadline || bg.scale_down_delay_revision_limit.is_some(),
                            "{} was scaled down before its deadline {deadline}",
                            set.name
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// The ReplicaSet controller and kubelet: pods match spec.replicas, available unless broken;
    /// the Experiment controller: an Experiment runs, then ends as [`Sim::experiment_outcome`].
    fn settle(&mut self) {
        for view in self.experiments.iter_mut().filter(|e| !e.is_completed()) {
            let age = self.experiment_ages.entry(view.name.clone()).or_default();
            *age += 1;
            view.phase = Some(sluice_api::AnalysisPhase::Running);
            if *age > self.experiment_rounds
                && let Some(outcome) = self.experiment_outcome
            {
                view.phase = Some(outcome);
                view.message = Some(format!("the simulated experiment ended {outcome:?}"));
            }
        }
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
                match &self.lame_pods {
                    Some((lame, count)) if image.as_ref() == Some(lame) => {
                        (replicas - count).max(0)
                    }
                    _ => replicas,
                }
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

    fn status(&self) -> sluice_api::RolloutStatus {
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

    fn patch_status(&mut self, f: impl FnOnce(&mut sluice_api::RolloutStatus)) {
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
