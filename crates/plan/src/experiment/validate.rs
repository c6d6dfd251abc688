//! What an experiment's types cannot say (Argo's validation, and the bounds Sluice adds): each
//! problem is a message naming the field, so a person can mend the spec from the status alone.

use std::collections::BTreeMap;

use sluice_api::ExperimentSpec;

use super::objects::{selects, service_ports};

/// Why `spec` cannot run, field by field; `analysis_problems` (found by the controller) are
/// added as they are. Empty: the spec is valid.
pub fn problems(spec: &ExperimentSpec, analysis_problems: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if spec.templates.is_empty() {
        out.push("spec.templates: at least one template is required".to_string());
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in spec.templates.iter().enumerate() {
        let field = format!("spec.templates[{i}]");
        if t.name.is_empty() {
            out.push(format!("{field}.name: must not be empty"));
        } else if let Some(first) = names.insert(t.name.as_str(), i) {
            out.push(format!(
                "{field}.name: {:?} is already the name of spec.templates[{first}]",
                t.name
            ));
        }
        if let Some(replicas) = t.replicas.filter(|r| *r < 0) {
            out.push(format!(
                "{field}.replicas: must not be negative (is {replicas})"
            ));
        }
        if let Some(seconds) = t.min_ready_seconds.filter(|s| *s < 0) {
            out.push(format!(
                "{field}.minReadySeconds: must not be negative (is {seconds})"
            ));
        }
        let labels = t
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        match &t.selector {
            None => out.push(format!("{field}.selector: is required")),
            Some(s)
                if s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                    && s.match_expressions.as_ref().is_none_or(Vec::is_empty) =>
            {
                out.push(format!(
                    "{field}.selector: must not be empty (it would select every pod)"
                ));
            }
            Some(s) if !selects(s, &labels) => out.push(format!(
                "{field}.selector: does not match the template's labels"
            )),
            Some(_) => {}
        }
        // Two templates may share a selector (a canary step's baseline and canary both carry
        // the rollout's): each ReplicaSet's selector adds its own hash, so pods never mix.
        if t.service.is_some() && service_ports(t).is_empty() {
            out.push(format!(
                "{field}.service: the template's containers declare no ports for the Service"
            ));
        }
    }
    let mut analyses: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, a) in spec.analyses.iter().enumerate() {
        let field = format!("spec.analyses[{i}]");
        if a.name.is_empty() {
            out.push(format!("{field}.name: must not be empty"));
        } else if let Some(first) = analyses.insert(a.name.as_str(), i) {
            out.push(format!(
                "{field}.name: {:?} is already the name of spec.analyses[{first}]",
                a.name
            ));
        }
    }
    if let Some(seconds) = spec.progress_deadline_seconds.filter(|s| *s <= 0) {
        out.push(format!(
            "spec.progressDeadlineSeconds: must be positive (is {seconds})"
        ));
    }
    if let Some(seconds) = spec.scale_down_delay_seconds.filter(|s| *s < 0) {
        out.push(format!(
            "spec.scaleDownDelaySeconds: must not be negative (is {seconds})"
        ));
    }
    out.extend(analysis_problems.iter().cloned());
    out
}
