//! Sluice: a progressive-delivery controller for Kubernetes that runs Argo Rollouts manifests
//! unchanged.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod client;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod rollout;
pub mod runtime;
pub mod server;
pub mod telemetry;
