//! What Sluice's integration tests, its benchmark harness and its developer commands share, so
//! that each is written once: reaching the local cluster (and building and starting it), test
//! namespaces, the controller and Prometheus launchers, a headless Chromium and the dashboard, Argo CD beside the cluster, the workspace's binaries, Rollout
//! manifests, and waiting on observable state with a deadline; for the traffic routers, their
//! CRDs on the cluster, pods that answer real requests, and a real Traefik in front of them.
//!
//! Test-facing helpers panic with a message naming what failed (a failed test is the report);
//! the ones the developer commands use return `anyhow::Result`.

mod access;
pub mod argocd;
pub mod binaries;
pub mod browser;
pub mod cluster;
pub mod controller;
pub mod crds;
pub mod gobuild;
pub mod graphite;
pub mod influxdb;
pub mod load;
pub mod manifests;
pub mod namespace;
pub mod paths;
pub mod pods;
pub mod preflight;
pub mod process;
pub mod prometheus;
pub mod routers;
pub mod traefik;
pub mod verdicts;
pub mod wait;

pub use access::{
    client, client_for, helm, kubeconfig, kubeconfig_with_token, kubectl, restart_time, run_ok,
};
pub use controller::Controller;
pub use crds::install_crds;
pub use namespace::TestNamespace;
pub use paths::repo_root;
pub use wait::wait;
