//! The contract with users: the `argoproj.io/v1alpha1` resources Sluice serves, shaped so that
//! Argo Rollouts manifests apply unchanged.
//!
//! - [`Rollout`] (`rollout.rs`, with `canary.rs`, `steps.rs`, `bluegreen.rs`, `traffic.rs`
//!   and `status.rs`),
//! - [`AnalysisTemplate`], [`ClusterAnalysisTemplate`] (`analysis.rs`, `providers.rs`,
//!   `vendor_metrics.rs`),
//! - [`AnalysisRun`] (`analysis_run.rs`).
//!
//! Types carry the rules: a canary step and a metric provider are enums with one variant per
//! kind, phases are enums, durations are [`Duration`] and pod counts [`IntOrPercent`], each
//! parsed once when the object is read. What the types cannot say is checked by
//! [`validate()`], which also lists the fields Sluice declares but does not act on yet.
//!
//! [`vocab`] names every label, annotation and reason once; [`model`] derives what every reader
//! of a Rollout computes alike (the pod template hash, the weight at a step).
//!
//! Serialisation is faithful: an optional field the user left out stays out, and a field
//! written is written back as it was. Empty lists and maps count as absent and are omitted.

#![forbid(unsafe_code)]

mod analysis;
mod analysis_run;
mod bluegreen;
mod canary;
mod duration;
mod experiment;
mod intstr;
mod keyed;
pub mod model;
mod providers;
mod rollout;
mod schema;
mod status;
mod steps;
mod traffic;
mod unsupported;
mod validate;
mod vendor_metrics;
pub mod vocab;

#[cfg(test)]
mod tests;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;

pub use self::{
    analysis::*, analysis_run::*, bluegreen::*, canary::*, duration::*, experiment::*, intstr::*,
    providers::*, rollout::*, status::*, steps::*, traffic::*, validate::*, vendor_metrics::*,
};

/// The CustomResourceDefinitions Sluice serves, in the order `cargo xtask crds` writes them.
///
/// Embedded Kubernetes types (the pod template, a metric's Job spec) keep their full schema, so
/// the apiserver validates and prunes them as it does for a Deployment, but not their upstream
/// descriptions: those would triple the Rollout CRD past what client-side `kubectl apply` can
/// store, and `kubectl explain pod` has them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        Rollout::crd(),
        AnalysisTemplate::crd(),
        ClusterAnalysisTemplate::crd(),
        AnalysisRun::crd(),
        Experiment::crd(),
    ]
    .into_iter()
    .map(schema::without_embedded_descriptions)
    .map(schema::without_one_of)
    .collect()
}
