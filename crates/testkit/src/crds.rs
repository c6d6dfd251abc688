//! Installing Sluice's CRDs (from the Rust types) on a cluster, as the tests, the demo and the
//! benchmarks all do before they start a controller.
//!
//! Every test installs them, so the work is done once: the CRDs are generated once per process
//! (deriving their schemas takes seconds in a debug build), and a CRD the cluster already holds
//! as generated (its fingerprint annotation says so) is not applied again; applying five CRDs of
//! 200–300 KB server-side for each of a hundred tests was a large share of the API server's work
//! during the suite.

use std::{sync::OnceLock, time::Duration};

use anyhow::{Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{conditions, wait::await_condition},
};

/// The annotation that records which generated content a CRD on the cluster holds. It is written
/// only once the CRD is Established, so a CRD carrying it can be used at once.
const FINGERPRINT: &str = "sluice.dev/generated-fingerprint";

/// The CRDs and the fingerprint of each, generated once per process.
fn generated() -> &'static [(CustomResourceDefinition, String)] {
    static GENERATED: OnceLock<Vec<(CustomResourceDefinition, String)>> = OnceLock::new();
    GENERATED.get_or_init(|| {
        sluice_api::crds()
            .into_iter()
            .map(|crd| {
                let text = serde_json::to_vec(&crd).unwrap_or_default();
                let fingerprint = format!("{:016x}", crate::gobuild::fnv1a(&text));
                (crd, fingerprint)
            })
            .collect()
    })
}

/// Applies the CRDs server-side as field manager `manager` and waits until each is Established;
/// a CRD the cluster already holds as generated is left as it is.
pub async fn install(client: &kube::Client, manager: &str) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(manager).force();
    let crds = tokio::task::spawn_blocking(generated)
        .await
        .context("generating the CRDs")?;
    for (crd, fingerprint) in crds {
        let name = crd.metadata.name.clone().context("a CRD without a name")?;
        let held = api
            .get_metadata_opt(&name)
            .await
            .with_context(|| format!("reading CRD {name}"))?;
        // The mark holds the generation it was written at: any later change of the spec (Argo
        // Rollouts' own CRDs installed by a benchmark) bumps it, and the CRD is applied again.
        let held_as_generated = held.as_ref().is_some_and(|m| {
            m.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(FINGERPRINT))
                .is_some_and(|mark| *mark == mark_of(fingerprint, m.metadata.generation))
        });
        if held_as_generated {
            continue;
        }
        let applied = api
            .patch(&name, &params, &Patch::Apply(crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not Established within 30 s"))??;
        // A field manager of its own, so the next apply (which does not name the annotation)
        // leaves it alone until the content changes and it is written again.
        let mark = mark_of(fingerprint, applied.metadata.generation);
        let mark = serde_json::json!({ "metadata": { "annotations": { FINGERPRINT: mark } } });
        api.patch(
            &name,
            &PatchParams {
                field_manager: Some(format!("{manager}-fingerprint")),
                ..PatchParams::default()
            },
            &Patch::Merge(&mark),
        )
        .await
        .with_context(|| format!("marking CRD {name}"))?;
    }
    Ok(())
}

/// The annotation's value for content `fingerprint` at spec generation `generation`.
fn mark_of(fingerprint: &str, generation: Option<i64>) -> String {
    format!("{fingerprint}@{}", generation.unwrap_or_default())
}

/// [`install`] for a test: fails the test when a CRD cannot be applied or is not Established.
pub async fn install_crds(client: &kube::Client) {
    if let Err(e) = install(client, "sluice-tests").await {
        panic!("installing the CRDs: {e:#}");
    }
}
