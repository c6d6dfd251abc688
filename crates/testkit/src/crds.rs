//! Installing Sluice's CRDs (from the Rust types) on a cluster, as the tests, the demo and the
//! benchmarks all do before they start a controller.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{conditions, wait::await_condition},
};

/// Applies the CRDs server-side as field manager `manager` and waits until each is Established.
pub async fn install(client: &kube::Client, manager: &str) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(manager).force();
    for crd in sluice_api::crds() {
        let name = crd.metadata.name.clone().context("a CRD without a name")?;
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not Established within 30 s"))??;
    }
    Ok(())
}

/// [`install`] for a test: fails the test when a CRD cannot be applied or is not Established.
pub async fn install_crds(client: &kube::Client) {
    if let Err(e) = install(client, "sluice-tests").await {
        panic!("installing the CRDs: {e:#}");
    }
}
