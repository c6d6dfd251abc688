//! Sluice: a progressive-delivery controller for Kubernetes that runs Argo Rollouts manifests
//! unchanged. This crate is the controller process: the Rollout and AnalysisRun controllers on
//! one [`runtime`], their client, metrics, health server and leader election. What they decide
//! is decided purely in `sluice-plan` and `sluice-analysis`, over the types of `sluice-api`;
//! `docs/architecture.md` draws the whole house.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod client;
pub mod error;
pub mod events;
pub mod experiment;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod rollout;
pub mod runtime;
pub mod server;
pub mod telemetry;
