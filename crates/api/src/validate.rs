//! [`validate`]: the rules of a Rollout spec that its types cannot carry, checked in one pure
//! function, plus the declared fields Sluice does not act on yet (listed in `unsupported.rs`).
//!
//! The controller reports the problems as an `InvalidSpec` condition and waits for the spec
//! to change. The apiserver already enforces the schema (types, ranges, one key per step);
//! the range checks are repeated here because objects also come from files and from older
//! stored versions, and a condition names the field more clearly than a rejected write.

use std::{collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

mod experiment;
mod routing;

use super::{
    BlueGreenStrategy, CanaryStep, CanaryStrategy, IntOrPercent, ReplicaProgressThreshold, Rollout,
    RolloutSpec, StepKind, unsupported::unsupported_fields,
};

/// One thing wrong with a spec, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// JSON path of the field, e.g. `spec.strategy.canary.steps[2].setWeight`.
    pub field: String,
    /// What is wrong, for the condition message.
    pub message: String,
    /// Whether the spec is wrong or merely asks for what Sluice cannot do yet.
    pub kind: ProblemKind,
}

/// The two kinds of spec problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The spec is wrong; Argo Rollouts would refuse it too.
    Invalid,
    /// The field is valid Argo Rollouts, but Sluice does not act on it yet.
    Unsupported,
}

impl SpecProblem {
    /// A rule of the spec is broken.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            kind: ProblemKind::Invalid,
        }
    }

    /// A declared field Sluice ignores today.
    fn unsupported(field: impl Into<String>) -> Self {
        Self::unsupported_because(field, "is not supported by Sluice yet")
    }

    /// Valid Argo Rollouts that Sluice cannot run yet, with the reason.
    pub fn unsupported_because(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            kind: ProblemKind::Unsupported,
        }
    }
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem of the rollout's spec; empty when Sluice can run it as written.
pub fn validate(rollout: &Rollout) -> Vec<SpecProblem> {
    let spec = &rollout.spec;
    let mut problems = Vec::new();
    check_pods(spec, &mut problems);
    check_counts(spec, &mut problems);
    check_strategy(spec, &mut problems);
    if let Some(c) = spec.canary() {
        check_canary(c, &mut problems);
        let name = rollout.metadata.name.as_deref().unwrap_or_default();
        for (i, step) in c.steps.every_action() {
            if let CanaryStep::Experiment(e) = step {
                experiment::check(name, i, e, c.traffic_routing.is_some(), &mut problems);
            }
        }
    }
    if let Some(b) = spec.blue_green() {
        check_blue_green(b, &mut problems);
    }
    problems.extend(
        unsupported_fields(spec)
            .into_iter()
            .map(SpecProblem::unsupported),
    );
    problems
}

/// The path of a step's key.
pub(super) fn step_field(index: usize, kind: StepKind) -> String {
    format!("spec.strategy.canary.steps[{index}].{kind}")
}

/// Template, workloadRef and selector agree.
fn check_pods(spec: &RolloutSpec, problems: &mut Vec<SpecProblem>) {
    match (&spec.template, &spec.workload_ref) {
        (Some(_), Some(_)) => problems.push(SpecProblem::invalid(
            "spec.template",
            "must be empty when spec.workloadRef is set",
        )),
        (None, None) => problems.push(SpecProblem::invalid(
            "spec.template",
            "is required unless spec.workloadRef is set",
        )),
        _ => {}
    }
    let Some(selector) = &spec.selector else {
        if spec.workload_ref.is_none() {
            problems.push(SpecProblem::invalid("spec.selector", "is required"));
        }
        return;
    };
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    if selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && expressions.is_empty()
    {
        problems.push(SpecProblem::invalid(
            "spec.selector",
            "is empty and would select every pod in the namespace",
        ));
        return;
    }
    for (i, e) in expressions.iter().enumerate() {
        if !matches!(
            e.operator.as_str(),
            "In" | "NotIn" | "Exists" | "DoesNotExist"
        ) {
            problems.push(SpecProblem::invalid(
                format!("spec.selector.matchExpressions[{i}].operator"),
                format!(
                    "{:?} is not one of In, NotIn, Exists, DoesNotExist",
                    e.operator
                ),
            ));
            return;
        }
    }
    if let Some(template) = &spec.template {
        let empty = BTreeMap::new();
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .unwrap_or(&empty);
        if !selector_matches(selector, labels) {
            problems.push(SpecProblem::invalid(
                "spec.selector",
                "does not match the labels of spec.template.metadata.labels",
            ));
        }
    }
}

/// Whether a label selector selects a pod with these labels.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// Counts and seconds are not negative; the deadline leaves time to become available.
fn check_counts(spec: &RolloutSpec, problems: &mut Vec<SpecProblem>) {
    let mut counts = vec![
        ("spec.replicas", spec.replicas),
        ("spec.minReadySeconds", spec.min_ready_seconds),
        ("spec.revisionHistoryLimit", spec.revision_history_limit),
        (
            "spec.progressDeadlineSeconds",
            spec.progress_deadline_seconds,
        ),
    ];
    if let Some(c) = spec.canary() {
        counts.extend([
            (
                "spec.strategy.canary.scaleDownDelaySeconds",
                c.scale_down_delay_seconds,
            ),
            (
                "spec.strategy.canary.abortScaleDownDelaySeconds",
                c.abort_scale_down_delay_seconds,
            ),
            (
                "spec.strategy.canary.scaleDownDelayRevisionLimit",
                c.scale_down_delay_revision_limit,
            ),
            (
                "spec.strategy.canary.minPodsPerReplicaSet",
                c.min_pods_per_replica_set,
            ),
        ]);
    }
    if let Some(b) = spec.blue_green() {
        counts.extend([
            (
                "spec.strategy.blueGreen.previewReplicaCount",
                b.preview_replica_count,
            ),
            (
                "spec.strategy.blueGreen.autoPromotionSeconds",
                b.auto_promotion_seconds,
            ),
            (
                "spec.strategy.blueGreen.scaleDownDelaySeconds",
                b.scale_down_delay_seconds,
            ),
            (
                "spec.strategy.blueGreen.abortScaleDownDelaySeconds",
                b.abort_scale_down_delay_seconds,
            ),
            (
                "spec.strategy.blueGreen.scaleDownDelayRevisionLimit",
                b.scale_down_delay_revision_limit,
            ),
        ]);
    }
    for (field, value) in counts {
        if let Some(v) = value.filter(|v| *v < 0) {
            problems.push(SpecProblem::invalid(
                field,
                format!("must not be negative (got {v})"),
            ));
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if spec.progress_deadline() <= min_ready {
        problems.push(SpecProblem::invalid(
            "spec.progressDeadlineSeconds",
            format!(
                "must be greater than minReadySeconds ({} <= {min_ready})",
                spec.progress_deadline()
            ),
        ));
    }
}

/// Exactly one strategy.
fn check_strategy(spec: &RolloutSpec, problems: &mut Vec<SpecProblem>) {
    match (spec.canary(), spec.blue_green()) {
        (None, None) => problems.push(SpecProblem::invalid(
            "spec.strategy",
            "one of canary or blueGreen is required",
        )),
        (Some(_), Some(_)) => problems.push(SpecProblem::invalid(
            "spec.strategy",
            "canary and blueGreen are mutually exclusive; set only one",
        )),
        _ => {}
    }
}

/// Steps, surge limits and Services of a canary.
/// `replicaProgressThreshold`: a type Sluice knows and a value that can be met.
fn check_progress_threshold(threshold: &ReplicaProgressThreshold, problems: &mut Vec<SpecProblem>) {
    let field = "spec.strategy.canary.replicaProgressThreshold";
    match threshold.type_.as_str() {
        "Percent" | "Pods" => {}
        other => problems.push(SpecProblem::invalid(
            format!("{field}.type"),
            format!("must be Percent or Pods (got {other:?})"),
        )),
    }
    if threshold.value <= 0 || (threshold.type_ == "Percent" && threshold.value > 100) {
        let range = if threshold.type_ == "Percent" {
            "between 1 and 100"
        } else {
            "greater than 0"
        };
        problems.push(SpecProblem::invalid(
            format!("{field}.value"),
            format!("must be {range} (got {})", threshold.value),
        ));
    }
}

fn check_canary(canary: &CanaryStrategy, problems: &mut Vec<SpecProblem>) {
    for (i, step) in canary.steps.every_action() {
        match step {
            CanaryStep::SetWeight(w)
                if *w < 0 || (*w > 100 && canary.traffic_routing.is_none()) =>
            {
                problems.push(SpecProblem::invalid(
                    step_field(i, StepKind::SetWeight),
                    format!("must be between 0 and 100 (got {w})"),
                ))
            }
            CanaryStep::Analysis(analysis) => {
                check_analysis(&step_field(i, StepKind::Analysis), analysis, problems);
            }
            CanaryStep::SetCanaryScale(scale) => {
                if let Some(w) = scale.weight.filter(|w| !(0..=100).contains(w)) {
                    problems.push(SpecProblem::invalid(
                        format!("{}.weight", step_field(i, StepKind::SetCanaryScale)),
                        format!("must be between 0 and 100 (got {w})"),
                    ));
                }
            }
            _ => {}
        }
    }
    routing::check(canary, problems);
    if let Some(threshold) = canary.replica_progress_threshold.as_ref() {
        check_progress_threshold(threshold, problems);
    }
    if let Some(background) = canary.analysis.as_ref() {
        check_analysis(
            "spec.strategy.canary.analysis",
            &background.analysis,
            problems,
        );
    }
    if canary.max_surge_or_default().is_zero() && canary.max_unavailable_or_default().is_zero() {
        problems.push(SpecProblem::invalid(
            "spec.strategy.canary.maxSurge",
            "maxSurge and maxUnavailable cannot both be zero: no pod could ever be replaced",
        ));
    }
    check_at_most_100_percent(
        "spec.strategy.canary.maxUnavailable",
        canary.max_unavailable,
        problems,
    );
    let named = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let canary_service = named(&canary.canary_service);
    if canary_service.is_some() && canary_service == named(&canary.stable_service) {
        problems.push(SpecProblem::invalid(
            "spec.strategy.canary.stableService",
            format!(
                "must differ from canaryService (both are {:?})",
                canary_service.unwrap_or_default()
            ),
        ));
    }
}

/// An analysis the rollout starts must name what to run.
fn check_analysis(field: &str, analysis: &crate::RolloutAnalysis, problems: &mut Vec<SpecProblem>) {
    if analysis.templates.is_empty() {
        problems.push(SpecProblem::invalid(
            format!("{field}.templates"),
            "must name at least one AnalysisTemplate or ClusterAnalysisTemplate",
        ));
    }
    for (i, template) in analysis.templates.iter().enumerate() {
        if template.template_name.is_empty() {
            problems.push(SpecProblem::invalid(
                format!("{field}.templates[{i}].templateName"),
                "is required",
            ));
        }
    }
}

/// Services and limits of a blue/green strategy.
fn check_blue_green(blue_green: &BlueGreenStrategy, problems: &mut Vec<SpecProblem>) {
    if blue_green.active_service.is_empty() {
        problems.push(SpecProblem::invalid(
            "spec.strategy.blueGreen.activeService",
            "is required",
        ));
    } else if blue_green.preview_service.as_ref() == Some(&blue_green.active_service) {
        problems.push(SpecProblem::invalid(
            "spec.strategy.blueGreen.previewService",
            format!(
                "must differ from activeService (both are {:?})",
                blue_green.active_service
            ),
        ));
    }
    let runs = [
        ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
        ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
    ];
    for (field, analysis) in runs {
        if let Some(analysis) = analysis {
            check_analysis(
                &format!("spec.strategy.blueGreen.{field}"),
                analysis,
                problems,
            );
        }
    }
    check_at_most_100_percent(
        "spec.strategy.blueGreen.maxUnavailable",
        blue_green.max_unavailable,
        problems,
    );
}

/// More than all pods cannot be unavailable.
fn check_at_most_100_percent(
    field: &str,
    value: Option<IntOrPercent>,
    problems: &mut Vec<SpecProblem>,
) {
    if let Some(IntOrPercent::Percent(p)) =
        value.filter(|v| matches!(v, IntOrPercent::Percent(p) if *p > 100))
    {
        problems.push(SpecProblem::invalid(
            field,
            format!("cannot exceed 100% (got {p}%)"),
        ));
    }
}
