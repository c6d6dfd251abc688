//! Where things live: the checkout, the per-checkout cluster state, and the shared build cache.

use std::path::{Path, PathBuf};

/// The root of the Sluice checkout (the workspace directory).
pub fn repo_root() -> PathBuf {
    // This crate lives in `<root>/crates/testkit`.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Runtime state of the local cluster of this checkout: pids, logs, certificates, etcd data, kubeconfig.
pub fn cluster_dir() -> PathBuf {
    repo_root().join("target").join("cluster")
}

/// The kubeconfig that `cluster up` writes (a fixed interface: tests and tools read it).
pub fn kubeconfig() -> PathBuf {
    cluster_dir().join("kubeconfig")
}

/// The build cache shared by every clone and by CI: Go module and build caches and the built binaries.
///
/// `SLUICE_CACHE` overrides it; otherwise `$XDG_CACHE_HOME/sluice` or `~/.cache/sluice`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("sluice");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("sluice")
}
