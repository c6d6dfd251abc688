//! Reading the analysis templates a Rollout or an Experiment names, for the runs they create.

use kube::{Api, Client};
use sluice_analysis::args::{ArgsError, MAX_TEMPLATES, flatten_templates, lookup_templates};
use sluice_api::{
    AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec, ClusterAnalysisTemplate,
};
use sluice_plan::analysis::same_template;

use crate::error::Error;

/// Reads the templates `refs` name and, depth first, those they include, each once and within
/// the bound of one run's templates, and merges them into one. The outer error is a read the API
/// refused; the inner one what the templates themselves make impossible (one missing, past the
/// bound, two that disagree), which the run reports.
pub async fn read_merged(
    client: &Client,
    namespace: &str,
    refs: &[AnalysisTemplateRef],
) -> Result<Result<AnalysisTemplateSpec, ArgsError>, Error> {
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), namespace);
    let cluster_templates: Api<ClusterAnalysisTemplate> = Api::all(client.clone());
    let mut found: Vec<(AnalysisTemplateRef, AnalysisTemplateSpec)> = Vec::new();
    let mut tried: Vec<AnalysisTemplateRef> = Vec::new();
    let mut pending: Vec<AnalysisTemplateRef> = refs.to_vec();
    while let Some(template) = pending.pop() {
        if tried.len() > MAX_TEMPLATES || tried.iter().any(|t| same_template(t, &template)) {
            continue;
        }
        tried.push(template.clone());
        let name = &template.template_name;
        let spec = if template.cluster_scope == Some(true) {
            let got = cluster_templates.get_opt(name).await;
            got.map(|t| t.map(|t| t.spec.template))
        } else {
            let got = templates.get_opt(name).await;
            got.map(|t| t.map(|t| t.spec))
        }
        .map_err(|source| Error::Write {
            action: format!("reading analysis template {name}"),
            source,
        })?;
        if let Some(spec) = spec {
            pending.extend(spec.templates.iter().cloned());
            found.push((template, spec));
        }
    }
    Ok(lookup_templates(refs, |r| {
        found
            .iter()
            .find(|(f, _)| same_template(f, r))
            .map(|(_, spec)| spec)
    })
    .and_then(|templates| flatten_templates(&templates)))
}
