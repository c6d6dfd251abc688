//! The rules of a canary `experiment` step, as Argo Rollouts checks them: templates to run,
//! unique template and analysis names, names that make valid ReplicaSet names, and no traffic
//! to the experiment's pods (Sluice does not route it yet).

use std::collections::BTreeSet;

use super::{SpecProblem, step_field};
use crate::{ExperimentStep, StepKind};

/// Characters of a pod template hash, at most (a 32-bit number in Sluice's alphabet).
const HASH_LEN: usize = 10;
/// Digits of a revision allowed for (revisions past 99999 are not expected).
const REVISION_LEN: usize = 5;
/// The longest name Kubernetes accepts for a ReplicaSet (a DNS subdomain).
const NAME_LIMIT: usize = 253;
/// The longest DNS label, which a template name must be (it becomes part of names and labels).
const LABEL_LIMIT: usize = 63;

/// Checks the `experiment` step at `index` of the rollout named `rollout`; `routed` says whether
/// the canary has a traffic router.
pub(super) fn check(
    rollout: &str,
    index: usize,
    step: &ExperimentStep,
    routed: bool,
    problems: &mut Vec<SpecProblem>,
) {
    let field = step_field(index, StepKind::Experiment);
    if step.templates.is_empty() {
        problems.push(SpecProblem::invalid(
            format!("{field}.templates"),
            "must list at least one template to run",
        ));
    }
    let mut seen = BTreeSet::new();
    for (j, template) in step.templates.iter().enumerate() {
        let at = format!("{field}.templates[{j}]");
        if !seen.insert(template.name.as_str()) {
            problems.push(SpecProblem::invalid(
                format!("{at}.name"),
                format!("template name {:?} is used twice", template.name),
            ));
        }
        if let Some(why) = name_problem(rollout, index, &template.name) {
            problems.push(SpecProblem::invalid(format!("{at}.name"), why));
        }
        if template.weight.is_some() && routed {
            problems.push(SpecProblem::unsupported_because(
                format!("{at}.weight"),
                "traffic to an experiment's pods is not supported by Sluice yet",
            ));
        }
        if let Some(r) = template.replicas.filter(|r| *r < 0) {
            problems.push(SpecProblem::invalid(
                format!("{at}.replicas"),
                format!("must not be negative (got {r})"),
            ));
        }
    }
    let mut analyses = BTreeSet::new();
    for (j, analysis) in step.analyses.iter().enumerate() {
        let at = format!("{field}.analyses[{j}]");
        if analysis.name.is_empty() {
            problems.push(SpecProblem::invalid(format!("{at}.name"), "is required"));
        } else if !analyses.insert(analysis.name.as_str()) {
            problems.push(SpecProblem::invalid(
                format!("{at}.name"),
                format!("analysis name {:?} is used twice", analysis.name),
            ));
        }
        if analysis.template_name.is_empty() {
            problems.push(SpecProblem::invalid(
                format!("{at}.templateName"),
                "is required",
            ));
        }
    }
    if let Some(s) = step.scale_down_delay_seconds.filter(|s| *s < 0) {
        problems.push(SpecProblem::invalid(
            format!("{field}.scaleDownDelaySeconds"),
            format!("must not be negative (got {s})"),
        ));
    }
}

/// Why `name` cannot name a template: its ReplicaSet is `<experiment>-<name>`, the experiment
/// `<rollout>-<hash>-<revision>-<step>`, so it must be a DNS label that keeps that name valid.
fn name_problem(rollout: &str, index: usize, name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is required".into());
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let edges = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    if !valid_chars || !edges(name.as_bytes().first()) || !edges(name.as_bytes().last()) {
        return Some(format!(
            "{name:?} would make an invalid ReplicaSet name: use lowercase letters, digits and \
             '-', starting and ending with a letter or digit"
        ));
    }
    if name.len() > LABEL_LIMIT {
        return Some(format!("{name:?} is longer than {LABEL_LIMIT} characters"));
    }
    let longest =
        rollout.len() + HASH_LEN + REVISION_LEN + index.to_string().len() + name.len() + 4;
    (longest > NAME_LIMIT).then(|| {
        format!(
            "{name:?} would make the ReplicaSet name <rollout>-<hash>-<revision>-<step>-{name} \
             longer than {NAME_LIMIT} characters"
        )
    })
}
