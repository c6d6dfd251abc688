//! Writes the API refuses: how a failure shows in the status (as Argo Rollouts reports it), that
//! it goes once a plan's writes succeed, and how a hash collision moves the new version's name.
use sluice_api::{
    model::{MESSAGE_LIMIT, pod_template_hash},
    vocab::{TEMPLATE_DIGEST_ANNOTATION, reason},
};

use super::*;
use crate::{
    replicasets::{collision, new_replica_set},
    status::{bump_collision, with_failure},
};

const QUOTA: &str = "replicasets.apps \"web-abc\" is forbidden: exceeded quota: sets, requested: count/replicasets.apps=1, used: count/replicasets.apps=1, limited: count/replicasets.apps=1";

fn failure(status: &sluice_api::RolloutStatus) -> Option<sluice_api::RolloutCondition> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == RolloutConditionType::ReplicaFailure)
        .cloned()
}

#[test]
fn a_refused_replica_set_shows_as_a_replica_failure_condition_over_the_status_as_it_was() {
    let mut sim = deployed(standard_steps(), 4);
    sim.set_image("web:2");
    let prev = sim.status();
    let message = format!("Failed to create new replica set \"web-abc\": {QUOTA}");
    let reported = with_failure(&prev, reason::REPLICA_SET_CREATE_ERROR, &message, sim.now);
    let condition = failure(&reported).expect("a ReplicaFailure condition");
    assert_eq!(
        (
            condition.status,
            condition.reason.as_str(),
            condition.message.as_str()
        ),
        (
            ConditionStatus::True,
            "ReplicaSetCreateError",
            message.as_str()
        )
    );
    let mut rest = reported.clone();
    rest.conditions
        .retain(|c| c.type_ != RolloutConditionType::ReplicaFailure);
    assert_eq!(rest, prev, "nothing the plan meant to do is claimed done");

    // Refused again a minute later: the status is unchanged, so nothing is written again.
    sim.rollout.status = Some(reported.clone());
    sim.advance(60);
    let again = with_failure(
        &reported,
        reason::REPLICA_SET_CREATE_ERROR,
        &message,
        sim.now,
    );
    assert_eq!(again, reported);
}

#[test]
fn a_long_api_message_is_cut_in_the_condition() {
    let prev = sluice_api::RolloutStatus::default();
    let message = "é".repeat(4000);
    let reported = with_failure(&prev, "WriteFailed", &message, Timestamp::UNIX_EPOCH);
    let condition = failure(&reported).expect("a ReplicaFailure condition");
    assert!(condition.message.len() <= MESSAGE_LIMIT);
    assert!(message.starts_with(condition.message.trim_end_matches('…')));
}

#[test]
fn the_failure_is_cleared_by_the_next_plan_whose_writes_succeed() {
    let mut sim = deployed(standard_steps(), 4);
    sim.set_image("web:2");
    let prev = sim.status();
    sim.rollout.status = Some(with_failure(
        &prev,
        reason::REPLICA_SET_CREATE_ERROR,
        QUOTA,
        sim.now,
    ));
    // The quota is raised: the plan creates the set again, and its status has no failure.
    let plan = sim.reconcile();
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet(_))),
        "the refused set is created again: {:?}",
        plan.actions
    );
    assert_eq!(failure(&plan.status), None);
    sim.run(40);
    assert_eq!(failure(&sim.status()), None);
    assert_eq!(sim.status().phase, Some(RolloutPhase::Paused));

    // Also when the spec turns invalid meanwhile: the failure is no longer what holds it.
    let mut sim = deployed(standard_steps(), 4);
    sim.rollout.status = Some(with_failure(&sim.status(), "WriteFailed", QUOTA, sim.now));
    sim.rollout.spec.strategy = None;
    let plan = sim.reconcile();
    assert_eq!(failure(&plan.status), None);
}

#[test]
fn a_bumped_collision_count_names_the_new_version_differently() {
    let mut sim = deployed(standard_steps(), 4);
    sim.set_image("web:2");
    let template = sim.rollout.spec.template.clone().expect("a template");
    let taken = format!("web-{}", pod_template_hash(&template, None));
    let plan = sim.clone_plan();
    assert_eq!(created(&plan), Some(taken.clone()));

    sim.rollout.status = Some(bump_collision(&sim.status()));
    assert_eq!(sim.status().collision_count, Some(1));
    let plan = sim.reconcile();
    let name = created(&plan).expect("a new set");
    assert_ne!(name, taken, "the collision count moves the hash");
    assert_eq!(
        name,
        format!("web-{}", pod_template_hash(&template, Some(1)))
    );
    assert_eq!(
        bump_collision(&sim.status()).collision_count,
        Some(2),
        "each collision bumps it again"
    );
    // The rollout goes on under the new name.
    sim.run(40);
    assert_eq!(sim.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(
        sim.pods(),
        [("web:1".to_string(), 3), ("web:2".to_string(), 1)]
    );
}

/// The name of the ReplicaSet the plan creates, if any.
fn created(plan: &Plan) -> Option<String> {
    plan.actions.iter().find_map(|a| match a {
        Action::CreateReplicaSet(rs) => rs.metadata.name.clone(),
        _ => None,
    })
}

impl Sim {
    /// The next plan, without carrying it out.
    fn clone_plan(&self) -> Plan {
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
        plan(&self.rollout, &observed, self.now)
    }
}

#[test]
fn a_set_under_the_new_name_is_a_collision_unless_this_rollout_made_it_from_this_template() {
    let web = rollout(4, standard_steps());
    let template = web.spec.template.clone().expect("a template");
    let wanted = new_replica_set(&web, &template, "abc", 1, 2);
    assert_eq!(
        collision(&wanted.clone(), &wanted),
        None,
        "made by an earlier attempt whose status write was lost"
    );

    // A Rollout of the same name deleted and created again: another uid.
    let mut recreated = web.clone();
    recreated.metadata.uid = Some("uid-2".into());
    let theirs = new_replica_set(&recreated, &template, "abc", 1, 2);
    let why = collision(&theirs, &wanted).expect("another owner is a collision");
    assert!(why.contains("uid-2") && why.contains("uid-1"), "{why}");

    let mut orphan = wanted.clone();
    orphan.metadata.owner_references = None;
    assert!(collision(&orphan, &wanted).is_some(), "nobody owns it");

    let mut other = template.clone();
    other.spec.as_mut().expect("a pod spec").containers[0].image = Some("web:9".into());
    let other_template = new_replica_set(&web, &other, "abc", 1, 2);
    let why = collision(&other_template, &wanted).expect("another template is a collision");
    assert!(why.contains("another pod template"), "{why}");

    // A set an older Sluice made records no digest: its owner speaks for it.
    let mut older = other_template;
    older
        .metadata
        .annotations
        .as_mut()
        .expect("annotations")
        .remove(TEMPLATE_DIGEST_ANNOTATION);
    assert_eq!(collision(&older, &wanted), None);
}
