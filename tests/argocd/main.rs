//! Sluice under Argo CD, for real: each test commits one of `examples/` (adapted where it says)
//! into a Git repository of its own, points an Argo CD Application at it with the test's
//! namespace as destination, and runs the Sluice controller for that namespace. The assertions are
//! what a user sees in `argocd app get -o json` and in the Application's resource tree: the sync
//! status, the health, and the health of the Rollout and of its AnalysisRuns; the Rollout itself
//! is read only to know where the canary stands.
//!
//! Argo CD runs beside the local cluster (`cargo xtask argocd up`, which `cargo xtask test` does,
//! and which the first test here runs when Argo CD is not up).

mod analysis;
mod app;
mod canary;
mod experiment;
mod routed;
