//! Sluice: a progressive-delivery controller for Kubernetes.
#![forbid(unsafe_code)]

pub mod api;
