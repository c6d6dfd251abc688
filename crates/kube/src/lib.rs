//! How Sluice's programs reach a cluster: the controller, the plugin and the test kit read a
//! kubeconfig path list and a context the way kubectl does, with one function.
#![forbid(unsafe_code)]

use std::path::Path;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The configuration from `kubeconfig` (a path list like `KUBECONFIG`, merged in order) and
/// `context`, else from the default kubeconfig or the in-cluster service account.
pub async fn config(
    kubeconfig: Option<&str>,
    context: Option<String>,
) -> anyhow::Result<kube::Config> {
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    match kubeconfig.filter(|paths| !paths.is_empty()) {
        Some(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in std::env::split_paths(paths).filter(|p| !p.as_os_str().is_empty()) {
                let file = read_kubeconfig(&path)?;
                merged = Some(match merged {
                    Some(first) => first
                        .merge(file)
                        .with_context(|| format!("merging kubeconfig {}", path.display()))?,
                    None => file,
                });
            }
            let merged = merged.context("--kubeconfig names no file")?;
            kube::Config::from_custom_kubeconfig(merged, &options)
                .await
                .with_context(|| format!("loading the Kubernetes configuration from {paths}"))
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("loading the default kubeconfig (~/.kube/config) for --context"),
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, \
             or run in a cluster with a service account",
        ),
    }
}

fn read_kubeconfig(path: &Path) -> anyhow::Result<Kubeconfig> {
    Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))
}
